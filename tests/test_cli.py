"""The command line: help, exit codes, stdout for results and stderr for logs."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from tune_rec.cli import build_parser, main
from tune_rec.space import parse_search_space

RESUMED_SPACE = """
name: resumed
max_epochs: 2
num_samples: 2
seed: 1
searcher: {type: random}
scheduler: {type: fifo}
params:
  alpha: {distribution: uniform, low: 0.5, high: 1.5}
  embedding_dim: 8
"""


@pytest.mark.parametrize(
    "command", [["search"], ["train"], ["export"], ["report"], ["data", "fetch"], ["data", "info"]]
)
def test_help_of_each_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: tune-rec" in capsys.readouterr().out


def test_search_help_gives_units(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = capsys.readouterr().out
    assert "in epochs" in text
    assert "GPUs per trial" in text


def test_top_level_help_lists_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "exit codes:" in text
    for line in ("  0    success", "  1    the run failed", "  2    invalid input", "  130  "):
        assert line in text, line


@pytest.mark.parametrize(
    ("command", "fragments"),
    [
        (["export"], ["--format {yaml,json}", "yaml or json (default: yaml)", "(default: 5)"]),
        (["report"], ["--top TOP", "1 or more (default: 10)"]),
        (["data", "info"], ["yaml or json (default: yaml)"]),
    ],
)
def test_help_states_choices_and_defaults(command, fragments, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fragment in fragments:
        assert fragment in text, fragment


def test_unknown_flag_is_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--space", "x.yaml", "--num-sample", "3"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --num-sample" in capsys.readouterr().err


def test_zero_samples_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--space", "x.yaml", "--num-samples", "0"])
    assert exit_info.value.code == 2
    assert "must be at least 1; got 0" in capsys.readouterr().err


def test_missing_space_file_exit_2(tmp_path, capsys):
    code = main(["search", "--space", str(tmp_path / "none.yaml")])
    assert code == 2
    assert "none.yaml" in capsys.readouterr().err


def test_search_needs_space_or_resume(capsys):
    assert main(["search"]) == 2
    assert "--space" in capsys.readouterr().err


def test_invalid_space_exit_2_before_ray(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("params:\n  lr: {distribution: loguniform, low: 0, high: 0.1}\n")
    assert main(["search", "--space", str(path)]) == 2
    err = capsys.readouterr().err
    assert "params.lr" in err
    assert "ray" not in sys.modules or "Ray" not in err


def test_train_missing_config_exit_2(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "best.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_train_invalid_config_exit_2(tmp_path, capsys):
    path = tmp_path / "best.yaml"
    path.write_text(
        yaml.safe_dump({"config": {"schedule": "increase", "alpha_start": 1.0, "alpha_end": 0.5}})
    )
    assert main(["train", "--config", str(path)]) == 2
    assert "alpha_start < alpha_end" in capsys.readouterr().err


def test_export_of_non_experiment_exit_2(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "not an experiment folder" in capsys.readouterr().err


def test_data_info_prints_yaml(ml100k_dir, capsys):
    assert main(["data", "info", "--data-dir", str(ml100k_dir)]) == 0
    captured = capsys.readouterr()
    document = yaml.safe_load(captured.out)
    assert document["n_users"] == 943
    assert document["checksum"].startswith("06416e59")
    assert "Using the verified copy" in captured.err


def test_data_info_missing_file_exit_2(tmp_path, capsys):
    assert main(["data", "info", "--data", str(tmp_path / "ratings.csv")]) == 2
    assert "ratings.csv" in capsys.readouterr().err


def test_train_small_config(ml100k_dir, tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump({"config": {"alpha": 1.0, "max_epochs": 2, "embedding_dim": 8}})
    )
    assert main(["-q", "train", "--config", str(path), "--test"]) == 0
    document = yaml.safe_load(capsys.readouterr().out)
    assert 0.5 < document["validation"]["map@10"] < 1.0
    assert "map@10" in document["test"]


@pytest.mark.parametrize(
    ("argv", "verbose", "quiet"),
    [
        (["-q", "train", "--config", "c.yaml"], 0, 1),
        (["train", "--config", "c.yaml", "-q"], 0, 1),
        (["train", "--config", "c.yaml"], 0, 0),
        (["-v", "search", "--space", "s.yaml", "-vv"], 2, 0),
        (["data", "info", "--quiet"], 0, 1),
    ],
)
def test_log_flags_before_or_after_command(argv, verbose, quiet):
    args = build_parser().parse_args(argv)
    assert args.verbose == verbose
    assert args.quiet == quiet


def test_console_script_installed():
    result = subprocess.run(
        [sys.executable, "-m", "tune_rec", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("tune-rec ")


def test_parser_rejects_unknown_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["tune"])
    assert exit_info.value.code == 2


def _ended_experiment(folder, statuses, best_config=True):
    """Write the files that a search with these trial statuses leaves behind, without Ray."""
    folder.mkdir(parents=True)
    space = parse_search_space(yaml.safe_load(RESUMED_SPACE))
    settings = {
        "name": folder.name,
        "metric": "map@10",
        "mode": "max",
        "num_samples": space.num_samples,
        "searcher": {"type": "random"},
        "space": space.to_dict(),
        "reruns": {"confirm_top": 1, "confirm_seeds": 1, "audit_pruned": 0},
        "max_failures": 1,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "search_space.yaml").write_text(RESUMED_SPACE)
    trials = pd.DataFrame(
        {"trial_id": [f"t{index}" for index in range(len(statuses))], "status": statuses}
    )
    trials.to_parquet(folder / "trials.parquet")
    if best_config:
        (folder / "best_config.yaml").write_text(
            yaml.safe_dump({"config": {"alpha": 1.0}, "source": {"trial_id": "t0"}})
        )
    return folder


def test_resume_finished_search_keeps_best_config(tmp_path, capsys):
    folder = _ended_experiment(tmp_path / "done", ["finished", "finished"])
    best = folder / "best_config.yaml"
    before = (best.read_bytes(), best.stat().st_mtime_ns)

    code = main(["search", "--resume", str(folder)])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (best.read_bytes(), best.stat().st_mtime_ns) == before
    summary = yaml.safe_load(captured.out)
    assert summary["status"] == "finished"
    assert summary["best_config"] == str(best)
    assert "has already finished, so there is nothing to resume" in captured.err
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_resume_warns_about_ignored_flags(tmp_path, capsys):
    folder = _ended_experiment(tmp_path / "done", ["finished", "finished"])
    argv = ["search", "--resume", str(folder), "--max-epochs", "9", "--seed", "4"]
    argv += ["--confirm-top", "5", "--audit-pruned", "0", "--overwrite", "--name", "other"]

    assert main(argv) == 0

    err = capsys.readouterr().err
    assert "these flags are ignored" in err
    assert "--max-epochs 9 (the search keeps 2)" in err
    assert "--seed 4 (the search keeps 1)" in err
    assert "--confirm-top 5 (the search keeps 1)" in err
    assert "--overwrite (a resume never replaces its experiment)" in err
    assert f"--name other (the resume writes to {folder})" in err
    # Equal to the first run's value, so nothing is ignored.
    assert "--audit-pruned" not in err


def test_resume_flags_of_first_run_not_warned(tmp_path, capsys):
    folder = _ended_experiment(tmp_path / "done", ["finished", "finished"])
    argv = ["search", "--resume", str(folder), "--max-epochs", "2", "--confirm-seeds", "1"]
    argv += ["--name", "done", "--results-dir", str(tmp_path)]

    assert main(argv) == 0

    assert "ignored" not in capsys.readouterr().err


def test_resume_reruns_from_settings():
    from tune_rec.cli import _resume_reruns

    args = build_parser().parse_args(["search", "--resume", "x", "--confirm-top", "5"])
    stored = {"reruns": {"confirm_top": 1, "confirm_seeds": 2, "audit_pruned": 0}}

    assert _resume_reruns(args, stored) == {
        "confirm_top": 1,
        "confirm_seeds": 2,
        "audit_pruned": 0,
    }
    # An experiment that stored none takes the flags, else the defaults.
    assert _resume_reruns(args, {}) == {"confirm_top": 5, "confirm_seeds": 3, "audit_pruned": 2}


def test_resume_without_finished_trial_exit_2(tmp_path, capsys):
    folder = _ended_experiment(tmp_path / "dead", ["failed", "failed"], best_config=False)

    assert main(["search", "--resume", str(folder)]) == 2

    err = capsys.readouterr().err
    assert "has ended with no finished trial, so there is nothing to resume" in err
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


@pytest.mark.parametrize("where", ["flag", "space"])
def test_search_stores_absolute_data_path(tmp_path, monkeypatch, where):
    from tune_rec.cli import _space_from_flags

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ratings").mkdir()
    data = "data: {path: ratings/r.tsv}\n" if where == "space" else ""
    (tmp_path / "s.yaml").write_text(data + "params:\n  alpha: 1.0\n")
    argv = ["search", "--space", "s.yaml"]
    if where == "flag":
        argv += ["--data", "ratings/r.tsv"]

    space = _space_from_flags(build_parser().parse_args(argv))

    assert space.data.path == str(tmp_path / "ratings" / "r.tsv")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--confirm-seeds", "1e9", "must be a whole number; got '1e9'"),
        ("--confirm-top", "abc", "must be a whole number; got 'abc'"),
        ("--seed", "x", "must be a whole number; got 'x'"),
        ("--cpus-per-trial", "x", "must be a number; got 'x'"),
    ],
)
def test_flag_value_not_a_number_exit_2(flag, value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["search", "--space", "s.yaml", flag, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
