"""Monitoring a search: MLflow runs, TensorBoard event files and the console progress line."""

from __future__ import annotations

import logging
import math
import struct
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tune_rec.cli import main
from tune_rec.errors import InvalidInputError, SearchFailedError
from tune_rec.experiment import ExperimentLog
from tune_rec.search.recorder import ExperimentRecorder, progress_line
from tune_rec.search.tracking import check_mlflow_store, tracker_key

SPACE = """
name: tracked
max_epochs: 3
num_samples: 3
seed: 21
searcher: {type: random}
scheduler: {type: fifo}
resources: {cpus_per_trial: 1}
params:
  schedule: fixed
  alpha: {distribution: uniform, low: 0.5, high: 1.5}
  lr: {distribution: loguniform, low: 0.003, high: 0.03}
  embedding_dim: 8
"""


def _read_tensorboard_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Return each scalar tag of a TensorBoard event file with its (step, value) pairs.

    An event file is a sequence of records: 8-byte length, 4-byte CRC, an Event protobuf and
    its 4-byte CRC.
    """
    from tensorboardX.proto import event_pb2

    data = path.read_bytes()
    scalars: dict[str, list[tuple[int, float]]] = {}
    position = 0
    while position < len(data):
        (length,) = struct.unpack("<Q", data[position : position + 8])
        position += 12
        event = event_pb2.Event()
        event.ParseFromString(data[position : position + length])
        position += length + 4
        for value in event.summary.value:
            if value.WhichOneof("value") == "simple_value":
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, ml100k_dir, ray_local):
    """Run a search that logs to a local MLflow file store; return its folder and store."""
    pytest.importorskip("mlflow", reason="MLflow is not installed: pip install 'tune-rec[mlflow]'")
    folder = tmp_path_factory.mktemp("tracked")
    space = folder / "tracked.yaml"
    space.write_text(SPACE)
    store = f"file://{folder / 'mlruns'}"
    with pytest.MonkeyPatch.context() as patch:
        # MLflow 3 rejects a file store unless this is set; a server or sqlite store needs not.
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        code = main(
            [
                "search",
                "--space",
                str(space),
                "--results-dir",
                str(folder / "results"),
                "--name",
                "tracked",
                "--mlflow-uri",
                store,
                "--mlflow-experiment",
                "tune-rec-tracked",
                "--no-report",
                "--confirm-top",
                "0",
                "--audit-pruned",
                "0",
            ]
        )
    assert code == 0
    return SimpleNamespace(folder=folder / "results" / "tracked", store=store)


@pytest.fixture(scope="module")
def mlflow_runs(tracked):
    """Return the MLflow client and the runs of the search, keyed by trial id."""
    from mlflow.tracking import MlflowClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        client = MlflowClient(tracking_uri=tracked.store)
        experiment = client.get_experiment_by_name("tune-rec-tracked")
        runs = client.search_runs([experiment.experiment_id])
        histories = {
            run.info.run_name.rsplit("_", 1)[-1]: client.get_metric_history(
                run.info.run_id, "map_10"
            )
            for run in runs
        }
    return {
        "runs": {run.info.run_name.rsplit("_", 1)[-1]: run for run in runs},
        "map_10": histories,
    }


@pytest.mark.slow
@pytest.mark.ray
def test_mlflow_run_per_trial(tracked, mlflow_runs):
    trials = pd.read_parquet(tracked.folder / "trials.parquet")
    runs = mlflow_runs["runs"]
    assert sorted(runs) == sorted(trials.trial_id)
    for trial in trials.to_dict("records"):
        run = runs[trial["trial_id"]]
        assert run.info.status == "FINISHED"
        assert float(run.data.params["lr"]) == pytest.approx(trial["config.lr"])
        assert run.data.tags["tune_rec.experiment"] == "tracked"


@pytest.mark.slow
@pytest.mark.ray
def test_mlflow_map10_every_epoch(tracked, mlflow_runs):
    epochs = pd.read_parquet(tracked.folder / "epochs.parquet")
    for trial_id, rows in epochs.groupby("trial_id"):
        history = sorted((metric.step, metric.value) for metric in mlflow_runs["map_10"][trial_id])
        assert [step for step, _ in history] == [1, 2, 3]
        expected = rows.sort_values("epoch")["map@10"].tolist()
        assert [value for _, value in history] == pytest.approx(expected, abs=1e-12)


@pytest.mark.slow
@pytest.mark.ray
def test_mlflow_leaves_out_bookkeeping(mlflow_runs):
    run = next(iter(mlflow_runs["runs"].values()))
    assert "loss_target" in run.data.metrics
    for key in ("pid", "timestamp", "done", "config/lr", "map@10"):
        assert key not in run.data.metrics, key


@pytest.mark.slow
@pytest.mark.ray
def test_tensorboard_tags_map_10(tracked):
    epochs = pd.read_parquet(tracked.folder / "epochs.parquet")
    for trial_id, rows in epochs.groupby("trial_id"):
        files = list((tracked.folder / f"trial_{trial_id}").glob("events.out.tfevents.*"))
        assert len(files) == 1, trial_id
        scalars = _read_tensorboard_scalars(files[0])
        assert not any("@" in tag for tag in scalars)
        points = sorted(scalars["ray/tune/map_10"])
        assert [step for step, _ in points] == [1, 2, 3]
        expected = rows.sort_values("epoch")["map@10"].tolist()
        assert [value for _, value in points] == pytest.approx(expected, abs=1e-6)
        assert "ray/tune/loss_target" in scalars


@pytest.mark.slow
@pytest.mark.ray
def test_progress_line_after_search(tracked):
    log = ExperimentLog.load(tracked.folder, max_epochs=3, metric="map@10", mode="max")
    epochs = pd.read_parquet(tracked.folder / "epochs.parquet")
    best = epochs[epochs.epoch == 2]["map@10"].max()
    assert progress_line(log) == (
        f"0 running, 3 finished, 0 stopped, 0 failed; best map@10 so far {best:.4f}"
    )


def _log_with_each_status(folder: Path) -> ExperimentLog:
    log = ExperimentLog(folder, max_epochs=2, metric="map@10", mode="max")
    for epoch in range(2):
        log.add_result("finished", {"lr": 0.01}, {"epoch": epoch, "map@10": 0.70 + epoch / 10})
    log.complete("finished", {"lr": 0.01})
    log.add_result("stopped", {"lr": 0.02}, {"epoch": 0, "map@10": 0.85})
    log.complete("stopped", {"lr": 0.02})
    log.add_result("failed", {"lr": 0.03}, {"epoch": 0, "map@10": math.nan, "error": "NaN loss"})
    log.complete("failed", {"lr": 0.03})
    log.add_result("running", {"lr": 0.04}, {"epoch": 0, "map@10": 0.60})
    return log


def test_progress_line_counts_statuses(tmp_path):
    line = progress_line(_log_with_each_status(tmp_path))
    assert line == "1 running, 1 finished, 1 stopped, 1 failed; best map@10 so far 0.8500"


def test_progress_line_min_mode(tmp_path):
    log = ExperimentLog(tmp_path, max_epochs=1, metric="loss_target", mode="min")
    log.add_result("a", {}, {"epoch": 0, "loss_target": 0.5, "map@10": 0.1})
    log.add_result("b", {}, {"epoch": 0, "loss_target": 0.25, "map@10": 0.1})
    assert progress_line(log).endswith("best loss_target so far 0.2500")


def test_progress_line_without_results(tmp_path):
    log = ExperimentLog(tmp_path, max_epochs=1, metric="map@10", mode="max")
    assert (
        progress_line(log) == "0 running, 0 finished, 0 stopped, 0 failed; best map@10 so far n/a"
    )


@pytest.fixture
def recorder_log(monkeypatch, caplog):
    """Let the recorder's log lines reach caplog, which the command line's setup turns off."""
    monkeypatch.setattr(logging.getLogger("tune_rec"), "propagate", True)
    caplog.set_level(logging.INFO, logger="tune_rec.search.recorder")
    return caplog


@pytest.mark.parametrize(("progress_seconds", "n_lines"), [(0.0, 0), (0.01, 1)])
def test_recorder_progress_lines(tmp_path, recorder_log, progress_seconds, n_lines):
    log = ExperimentLog(tmp_path, max_epochs=3, metric="map@10", mode="max")
    recorder = ExperimentRecorder(log, flush_seconds=3600, progress_seconds=progress_seconds)
    trial = SimpleNamespace(trial_id="t1", config={"lr": 0.01})
    time.sleep(0.02)
    recorder.on_trial_result(1, [trial], trial, {"epoch": 0, "map@10": 0.75})
    lines = [r.getMessage() for r in recorder_log.records if r.getMessage().startswith("progress")]
    assert len(lines) == n_lines
    if n_lines:
        assert (
            lines[0]
            == "progress: 1 running, 0 finished, 0 stopped, 0 failed; best map@10 so far 0.7500"
        )


@pytest.fixture
def captured_options(monkeypatch, ml100k_dir, tmp_path):
    """Run the search command up to the search itself and return the options it built."""
    captured = []

    def capture(options, dataset):
        captured.append(options)
        raise SearchFailedError("stopped by the test before the search")

    monkeypatch.setattr("tune_rec.search.runner.run_search", capture)
    space = tmp_path / "tracked.yaml"
    space.write_text(SPACE)

    def run(*flags: str, global_flags: tuple[str, ...] = ()):
        arguments = ["search", "--space", str(space), "--results-dir", str(tmp_path), *flags]
        code = main([*global_flags, *arguments])
        assert code == 1
        return captured[-1]

    return run


@pytest.mark.parametrize(("global_flags", "expected"), [((), 10.0), (("-q",), 0.0)])
def test_quiet_turns_progress_off(captured_options, global_flags, expected):
    options = captured_options(global_flags=global_flags)
    assert options.progress_seconds == expected


def test_cli_forwards_mlflow_flags(captured_options, monkeypatch, tmp_path):
    pytest.importorskip("mlflow", reason="MLflow is not installed: pip install 'tune-rec[mlflow]'")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = f"file://{tmp_path / 'mlruns'}"
    options = captured_options("--mlflow-uri", store, "--mlflow-experiment", "named")
    assert options.mlflow_uri == store
    assert options.mlflow_experiment == "named"


def test_cli_mlflow_experiment_needs_uri(tmp_path, capsys):
    code = main(["search", "--space", str(tmp_path / "x.yaml"), "--mlflow-experiment", "named"])
    assert code == 2
    assert "--mlflow-experiment needs --mlflow-uri" in capsys.readouterr().err


def test_cli_rejects_unusable_mlflow_store(tmp_path, capsys):
    pytest.importorskip("mlflow", reason="MLflow is not installed: pip install 'tune-rec[mlflow]'")
    started = time.monotonic()
    code = main(
        ["search", "--space", str(tmp_path / "x.yaml"), "--mlflow-uri", "unknown-scheme://x"]
    )
    assert code == 2
    assert "--mlflow-uri unknown-scheme://x: MLflow cannot use this tracking store" in (
        capsys.readouterr().err
    )
    assert time.monotonic() - started < 30


def test_check_mlflow_store_without_mlflow(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.exceptions", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(InvalidInputError, match=r"needs MLflow.*pip install 'tune-rec\[mlflow\]'"):
        check_mlflow_store("file:///tmp/mlruns")


@pytest.mark.parametrize(
    ("key", "expected"),
    [("map@10", "map_10"), ("full_ndcg@10", "full_ndcg_10"), ("alpha", "alpha")],
)
def test_tracker_key(key, expected):
    assert tracker_key(key) == expected
