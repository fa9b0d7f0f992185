"""A real search end to end: Ray, Optuna, ASHA and PyTorch on MovieLens-100K, tiny budget."""

from __future__ import annotations

import json
import math
import threading

import pandas as pd
import pytest
import yaml

from tune_rec.cli import main
from tune_rec.errors import ResourceError
from tune_rec.report import watch_report
from tune_rec.search.runner import check_resources
from tune_rec.space import parse_search_space

pytestmark = [pytest.mark.slow, pytest.mark.ray]

TINY_SPACE = """
name: tiny
max_epochs: 4
num_samples: 5
seed: 3
searcher: {type: tpe, n_startup_trials: 2}
scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
resources: {cpus_per_trial: 1, max_concurrent_trials: 1}
params:
  schedule: {distribution: choice, values: [fixed, increase]}
  alpha: {distribution: uniform, low: 0.5, high: 1.5, when: {schedule: fixed}}
  alpha_start: {value: 0.1, when: {schedule: increase}}
  alpha_end: {distribution: uniform, low: 0.5, high: 1.5, when: {schedule: increase}}
  lr: {distribution: loguniform, low: 0.003, high: 0.03}
  embedding_dim: 16
"""


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, ml100k_dir, ray_local):
    folder = tmp_path_factory.mktemp("search")
    space = folder / "tiny.yaml"
    space.write_text(TINY_SPACE)
    code = main(
        [
            "search",
            "--space",
            str(space),
            "--results-dir",
            str(folder / "results"),
            "--name",
            "tiny",
            "--no-report",
            "--confirm-top",
            "2",
            "--confirm-seeds",
            "2",
            "--audit-pruned",
            "1",
        ]
    )
    assert code == 0
    return folder / "results" / "tiny"


def test_folder_holds_every_file(experiment):
    for name in (
        "search_space.yaml",
        "settings.json",
        "trials.parquet",
        "epochs.parquet",
        "best_config.yaml",
    ):
        assert (experiment / name).is_file(), name


def test_one_epoch_row_per_epoch_run(experiment):
    trials = pd.read_parquet(experiment / "trials.parquet")
    epochs = pd.read_parquet(experiment / "epochs.parquet")
    assert len(trials) == 5
    counts = epochs.groupby("trial_id").size()
    for row in trials.itertuples():
        assert counts[row.trial_id] == row.n_epochs
        assert sorted(epochs[epochs.trial_id == row.trial_id].epoch) == list(range(row.n_epochs))
    for column in ("alpha", "loss_embedding", "loss_ranking", "loss_target", "map@10"):
        assert epochs[column].notna().all(), column


def test_settings_record_completed_outcome(experiment):
    settings = json.loads((experiment / "settings.json").read_text())
    assert settings["outcome"]["status"] == "completed"


def test_stopped_trials_are_marked(experiment):
    trials = pd.read_parquet(experiment / "trials.parquet")
    stopped = trials[trials.stopped_early]
    assert len(stopped) >= 1
    assert (stopped.n_epochs < 4).all()
    assert (stopped.status == "stopped").all()
    assert (trials[trials.status == "finished"].n_epochs == 4).all()


def test_conditional_params_only_where_they_apply(experiment):
    trials = pd.read_parquet(experiment / "trials.parquet")
    fixed = trials[trials["config.schedule"] == "fixed"]
    increase = trials[trials["config.schedule"] == "increase"]
    assert fixed["config.alpha_end"].isna().all()
    assert increase["config.alpha"].isna().all()
    assert fixed["config.alpha"].notna().all()


def test_alpha_spans_full_budget_in_stopped_trials(experiment):
    epochs = pd.read_parquet(experiment / "epochs.parquet")
    trials = pd.read_parquet(experiment / "trials.parquet").set_index("trial_id")
    for trial_id, rows in epochs.groupby("trial_id"):
        if trials.loc[trial_id, "config.schedule"] != "increase":
            continue
        end = trials.loc[trial_id, "config.alpha_end"]
        expected = [0.1 + (end - 0.1) * t / 3 for t in rows.epoch]
        assert rows.alpha.tolist() == pytest.approx(expected)


def test_best_config_is_plain_and_retrains(experiment, capsys):
    path = experiment / "best_config.yaml"
    document = yaml.safe_load(path.read_text())
    assert document["config"]["max_epochs"] == 4
    assert document["seed"] == 3
    assert len(document["data_checksum"]) == 64
    assert "test_map@10" in document["metrics"]
    recorded = document["metrics"]["map@10"]

    capsys.readouterr()
    assert main(["train", "--config", str(path)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert math.isclose(printed["validation"]["map@10"], recorded, abs_tol=1e-6)
    assert abs(printed["difference_map@10"]) <= 1e-6


def test_best_is_best_mean_of_top_finished(experiment):
    trials = pd.read_parquet(experiment / "trials.parquet")
    summary = pd.read_parquet(experiment / "confirm.parquet")
    document = yaml.safe_load((experiment / "best_config.yaml").read_text())
    finished = trials[trials.status == "finished"].sort_values("last_map@10", ascending=False)
    assert summary.source_trial.tolist() == finished.trial_id.head(2).tolist()
    assert (summary.n_seeds == 2).all()
    best = summary.loc[summary["map@10_mean"].idxmax()]
    assert document["source"]["trial_id"] == best.source_trial
    assert "mean validation map@10 over 2 fresh seeds" in document["source"]["selected_by"]
    assert document["confirmation"]["map@10_mean"] == pytest.approx(best["map@10_mean"])
    assert document["confirmation"]["test_map@10_ci_low"] <= best["test_map@10_mean"]
    winner = trials.set_index("trial_id").loc[best.source_trial]
    assert winner["test_map@10"] == pytest.approx(document["metrics"]["test_map@10"])


def test_test_metrics_only_for_winner(experiment):
    trials = pd.read_parquet(experiment / "trials.parquet")
    assert trials["test_map@10"].notna().sum() == 1


def test_seed_repeats_use_fresh_seeds(experiment):
    reruns = pd.read_parquet(experiment / "reruns.parquet")
    repeats = reruns[reruns.kind == "confirm"]
    assert sorted(set(repeats.seed)) == [4, 5]
    assert repeats["test_map@10"].notna().all()


def test_audit_continues_a_stopped_trial(experiment):
    audit = pd.read_parquet(experiment / "audit.parquet")
    trials = pd.read_parquet(experiment / "trials.parquet").set_index("trial_id")
    assert len(audit) == 1
    row = audit.iloc[0]
    assert trials.loc[row.source_trial, "status"] == "stopped"
    assert row.from_checkpoint
    assert row.stopped_at == trials.loc[row.source_trial, "n_epochs"]
    assert row.margin == pytest.approx(row["map@10"] - row.winner_value)


def test_checkpoints_removed_after_search(experiment):
    assert not list(experiment.glob("trial_*/checkpoint_*"))


def test_export_top_configs(experiment, tmp_path, capsys):
    assert (
        main(
            [
                "export",
                str(experiment),
                "--top",
                "2",
                "--format",
                "json",
                "--output",
                str(tmp_path),
            ]
        )
        == 0
    )
    written = sorted(tmp_path.glob("config_*.json"))
    assert [p.name for p in written][0] == "config_1.json"
    import json

    first = json.loads(written[0].read_text())
    assert first["source"]["rank"] == 1
    best = yaml.safe_load((experiment / "best_config.yaml").read_text())
    assert first["source"]["trial_id"] == best["source"]["trial_id"]
    assert first["confirmation"]["n_seeds"] == 2
    assert main(["train", "--config", str(written[0])]) == 0


def test_existing_name_rejected(experiment, capsys):
    space = experiment / "search_space.yaml"
    code = main(
        [
            "search",
            "--space",
            str(space),
            "--results-dir",
            str(experiment.parent),
            "--name",
            "tiny",
            "--no-report",
        ]
    )
    assert code == 2
    assert "already exists" in capsys.readouterr().err


def test_gpu_request_without_gpus_fails_fast(ray_local):
    space = parse_search_space(
        yaml.safe_load(TINY_SPACE) | {"resources": {"cpus_per_trial": 1, "gpus_per_trial": 1}}
    )
    with pytest.raises(ResourceError, match="gpus_per_trial is 1.0 but the Ray cluster has 0"):
        check_resources(space)


def test_too_many_cpus_fails_fast(ray_local):
    space = parse_search_space(yaml.safe_load(TINY_SPACE) | {"resources": {"cpus_per_trial": 8}})
    with pytest.raises(ResourceError, match="cpus_per_trial is 8.0 but the Ray cluster has 2"):
        check_resources(space)


DIVERGING_SPACE = """
name: diverging
max_epochs: 2
seed: 0
searcher: {type: grid}
scheduler: {type: fifo}
params:
  schedule: fixed
  alpha: 1.0
  lr: {distribution: grid, values: [0.01, 1.0e+20]}
  embedding_dim: 8
"""


def test_nan_trial_fails_and_search_goes_on(tmp_path, ml100k_dir, ray_local, capsys):
    space = tmp_path / "diverging.yaml"
    space.write_text(DIVERGING_SPACE)
    code = main(
        [
            "search",
            "--space",
            str(space),
            "--results-dir",
            str(tmp_path),
            "--name",
            "nan",
            "--no-report",
        ]
    )
    assert code == 0
    trials = pd.read_parquet(tmp_path / "nan" / "trials.parquet").set_index("config.lr")
    failed = trials.loc[1e20]
    assert failed.status == "failed"
    assert "became" in failed.error
    assert "at epoch 0" in failed.error
    assert trials.loc[0.01].status == "finished"
    document = yaml.safe_load((tmp_path / "nan" / "best_config.yaml").read_text())
    assert document["config"]["lr"] == 0.01
    assert "failed" in capsys.readouterr().err


def test_no_finished_trial_exits_non_zero(tmp_path, ml100k_dir, ray_local, capsys):
    space = tmp_path / "diverging.yaml"
    space.write_text(DIVERGING_SPACE.replace("[0.01, 1.0e+20]", "[1.0e+20, 1.0e+21]"))
    code = main(
        [
            "search",
            "--space",
            str(space),
            "--results-dir",
            str(tmp_path),
            "--name",
            "all-nan",
            "--no-report",
        ]
    )
    assert code == 1
    assert "no trial finished" in capsys.readouterr().err
    folder = tmp_path / "all-nan"
    assert not (folder / "best_config.yaml").exists()
    assert (folder / "trials.parquet").exists()
    outcome = json.loads((folder / "settings.json").read_text())["outcome"]
    assert outcome["status"] == "failed"
    assert "no trial finished" in outcome["message"]

    # A watch started on it stops at once instead of waiting for best_config.yaml.
    stop = threading.Event()
    results = []
    watch = threading.Thread(
        target=lambda: results.append(watch_report(folder, 0.1, stop=stop)), daemon=True
    )
    watch.start()
    watch.join(60)
    stop.set()
    assert not watch.is_alive()
    assert results[0].search_ended
    assert "no trial finished" in results[0].failure


def test_loopback_detection():
    from tune_rec.search.ray_session import _is_loopback

    assert _is_loopback("127.0.0.1")
    assert _is_loopback("localhost")
    assert _is_loopback("::1")
    assert not _is_loopback("0.0.0.0")
    assert not _is_loopback("10.1.2.3")


def test_overwrite_keeps_old_experiment_on_failed_check(experiment, capsys):
    before = sorted(p.name for p in experiment.iterdir())
    code = main(
        [
            "search",
            "--space",
            str(experiment / "search_space.yaml"),
            "--results-dir",
            str(experiment.parent),
            "--name",
            "tiny",
            "--overwrite",
            "--gpus-per-trial",
            "1",
            "--no-report",
        ]
    )
    assert code == 2
    assert "gpus_per_trial" in capsys.readouterr().err
    assert sorted(p.name for p in experiment.iterdir()) == before


def test_interrupt_after_trials_recorded(tmp_path, ml100k_dir, ray_local, monkeypatch, capsys):
    from tune_rec.search import runner

    def interrupted_finish(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "finish_search", interrupted_finish)
    space = tmp_path / "two.yaml"
    space.write_text(DIVERGING_SPACE.replace("1.0e+20", "0.02"))
    code = main(
        ["search", "--space", str(space), "--results-dir", str(tmp_path), "--name", "stop"]
    )
    assert code == 130
    settings = json.loads((tmp_path / "stop" / "settings.json").read_text())
    assert settings["outcome"]["status"] == "interrupted"
    assert "after the trials" in settings["outcome"]["message"]
    assert "resume it with: tune-rec search --resume" in capsys.readouterr().err
