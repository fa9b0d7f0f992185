"""Rewriting the report while a search runs, until best_config.yaml appears or on a stop."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml

from tune_rec.errors import InvalidInputError
from tune_rec.report import ImageExportError, WatchResult, watch_report
from tune_rec.report import watch as watch_module
from tune_rec.report.watch import SETTLE_REWRITES, validate_interval

HAS_KALEIDO = importlib.util.find_spec("kaleido") is not None
FINISHED_SEARCH_FILES = ("reruns.parquet", "confirm.parquet", "audit.parquet")
# Upper bound, in seconds, on every wait of these tests; the watches run at 0.1 s.
TIMEOUT = 60


class _WatchThread(threading.Thread):
    """Run watch_report in a daemon thread and keep its result or error."""

    def __init__(self, folder: Path, interval: float, **kwargs) -> None:
        super().__init__(daemon=True)
        self.folder, self.interval, self.kwargs = folder, interval, kwargs
        self.result: WatchResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = watch_report(self.folder, self.interval, **self.kwargs)
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            self.error = error


def _wait_for(condition, description: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {TIMEOUT} s waiting for {description}")
        time.sleep(0.05)


def _running_folder(make_experiment, name: str = "running") -> Path:
    """Return an experiment folder of a search that has not written best_config.yaml."""
    return make_experiment(name, n_trials=12, max_epochs=9)


def _add_finished_search_files(make_experiment, folder: Path) -> None:
    """Copy the files that a finished search writes last into ``folder``, best config last."""
    finished = make_experiment(
        "finished-source", n_trials=12, max_epochs=9, n_confirm=3, n_audit=2
    )
    for name in FINISHED_SEARCH_FILES:
        shutil.copyfile(finished / name, folder / name)
    shutil.copyfile(finished / "best_config.yaml", folder / "best_config.yaml")
    # The search flushes trials.parquet right after best_config.yaml.
    shutil.copyfile(finished / "trials.parquet", folder / "trials.parquet")


def _make_trials_older(folder: Path) -> None:
    old = time.time() - 3600
    os.utime(folder / "trials.parquet", (old, old))


@pytest.mark.parametrize("value", [0, -1, 0.0, float("nan"), float("inf"), "10", True, None])
def test_validate_interval_rejects(value) -> None:
    with pytest.raises(InvalidInputError, match="--watch must be a"):
        validate_interval(value, name="--watch")


def test_validate_interval_accepts_positive() -> None:
    assert validate_interval(0.5) == 0.5
    assert validate_interval(2) == 2.0


def test_watch_invalid_interval_writes_nothing(make_experiment) -> None:
    folder = _running_folder(make_experiment)

    with pytest.raises(InvalidInputError, match="interval_seconds must be a positive"):
        watch_report(folder, 0)

    assert not (folder / "report.html").exists()


def test_watch_completed_search_rewrites_once(make_experiment) -> None:
    folder = make_experiment(n_trials=12, max_epochs=9, n_confirm=2)
    start = time.monotonic()

    result = watch_report(folder, 600)

    assert time.monotonic() - start < TIMEOUT
    assert result.n_rewrites == 1
    assert result.search_ended
    assert result.report == folder / "report.html"
    assert result.pngs == []
    assert "<h2>6. Seed repeats of the top configs</h2>" in result.report.read_text()


def test_watch_stops_when_best_config_appears(make_experiment, caplog) -> None:
    caplog.set_level(logging.INFO, logger="tune_rec.report.watch")
    folder = _running_folder(make_experiment)
    report = folder / "report.html"
    thread = _WatchThread(folder, 0.1)

    thread.start()
    _wait_for(report.exists, "the first rewrite")
    assert "No seed repeats: confirm.parquet is not in the folder" in report.read_text()
    _add_finished_search_files(make_experiment, folder)
    thread.join(TIMEOUT)

    assert not thread.is_alive()
    assert thread.error is None
    assert thread.result.search_ended
    assert thread.result.n_rewrites >= 2
    html = report.read_text()
    assert "No seed repeats" not in html
    assert "<b>Winner: <code>" in html
    messages = [record.getMessage() for record in caplog.records]
    assert sum(message.startswith("rewrite ") for message in messages) == (
        thread.result.n_rewrites
    )
    assert messages[-1].endswith("the search has ended, so the watch stops")


def test_watch_waits_for_trials_after_best_config(make_experiment) -> None:
    folder = _running_folder(make_experiment)
    finished = make_experiment("finished", n_trials=12, max_epochs=9, n_confirm=2)
    thread = _WatchThread(folder, 0.1)

    thread.start()
    _wait_for((folder / "report.html").exists, "the first rewrite")
    shutil.copyfile(finished / "best_config.yaml", folder / "best_config.yaml")
    _make_trials_older(folder)
    thread.join(TIMEOUT)

    assert not thread.is_alive()
    assert thread.result.search_ended
    # The first rewrite, then SETTLE_REWRITES that wait for trials.parquet, then the last one.
    assert thread.result.n_rewrites >= SETTLE_REWRITES + 2


def test_watch_interrupted_best_config_keeps_watching(make_experiment) -> None:
    folder = make_experiment(n_trials=12, max_epochs=9, write_best_config=True)
    path = folder / "best_config.yaml"
    document = yaml.safe_load(path.read_text())
    document["source"]["interrupted"] = True
    path.write_text(yaml.safe_dump(document))
    thread = _WatchThread(folder, 0.1)

    thread.start()
    _wait_for((folder / "report.html").exists, "the first rewrite")
    time.sleep(0.5)
    assert thread.is_alive()
    del document["source"]["interrupted"]
    path.write_text(yaml.safe_dump(document))
    thread.join(TIMEOUT)

    assert not thread.is_alive()
    assert thread.result.search_ended


def _record_outcome(folder: Path, status: str, message: str | None = None) -> None:
    settings = json.loads((folder / "settings.json").read_text())
    settings["outcome"] = {"status": status, "at": "2025-01-01T13:00:00+00:00", "message": message}
    (folder / "settings.json").write_text(json.dumps(settings))


def test_watch_stops_when_search_records_failure(make_experiment, caplog) -> None:
    caplog.set_level(logging.INFO, logger="tune_rec.report.watch")
    folder = _running_folder(make_experiment)
    _record_outcome(folder, "running")
    thread = _WatchThread(folder, 0.1)

    thread.start()
    _wait_for((folder / "report.html").exists, "the first rewrite")
    time.sleep(0.3)
    assert thread.is_alive()
    _record_outcome(folder, "failed", "no trial finished (12 trials, 12 failed)")
    thread.join(TIMEOUT)

    assert not thread.is_alive()
    assert thread.error is None
    assert thread.result.search_ended
    assert thread.result.failure == "no trial finished (12 trials, 12 failed)"
    assert not (folder / "best_config.yaml").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "ended without a winner" in warnings[0]
    assert "no trial finished" in warnings[0]


def test_watch_stops_when_every_trial_failed(make_experiment) -> None:
    # No recorded outcome, as in an experiment of an older tune-rec: the tables tell.
    folder = make_experiment(n_trials=4, max_epochs=4, statuses=["failed"] * 4)
    stop = threading.Event()
    thread = _WatchThread(folder, 0.1, stop=stop)

    thread.start()
    thread.join(TIMEOUT)
    stop.set()

    assert not thread.is_alive()
    assert thread.result.n_rewrites == 1
    assert thread.result.search_ended
    assert "all 4 trials ended and none finished" in thread.result.failure


def test_watch_keeps_watching_fewer_trials_than_requested(make_experiment) -> None:
    folder = make_experiment(n_trials=4, max_epochs=4, statuses=["failed"] * 4)
    settings = json.loads((folder / "settings.json").read_text())
    settings["num_samples"] = 8
    (folder / "settings.json").write_text(json.dumps(settings))
    stop = threading.Event()
    thread = _WatchThread(folder, 0.1, stop=stop)

    thread.start()
    _wait_for((folder / "report.html").exists, "the first rewrite")
    time.sleep(0.3)
    assert thread.is_alive()
    stop.set()
    thread.join(TIMEOUT)

    assert not thread.result.search_ended
    assert thread.result.failure is None


def test_watch_interrupted_outcome_keeps_watching(make_experiment, caplog) -> None:
    caplog.set_level(logging.INFO, logger="tune_rec.report.watch")
    folder = make_experiment(n_trials=4, max_epochs=4, statuses=["failed"] * 4)
    _record_outcome(folder, "interrupted", "search interrupted after 4 of 8 trials")
    stop = threading.Event()
    thread = _WatchThread(folder, 0.1, stop=stop)

    thread.start()
    _wait_for((folder / "report.html").exists, "the first rewrite")
    time.sleep(0.3)
    assert thread.is_alive()
    stop.set()
    thread.join(TIMEOUT)

    assert not thread.result.search_ended
    messages = [record.getMessage() for record in caplog.records]
    assert sum("was interrupted" in message for message in messages) == 1


def test_watch_stop_event_ends_watch(make_experiment) -> None:
    folder = _running_folder(make_experiment)
    stop = threading.Event()
    thread = _WatchThread(folder, 0.1, stop=stop)

    thread.start()
    _wait_for((folder / "report.html").exists, "the first rewrite")
    stop.set()
    thread.join(TIMEOUT)

    assert not thread.is_alive()
    assert thread.error is None
    assert not thread.result.search_ended
    assert thread.result.n_rewrites >= 1


def test_watch_keyboard_interrupt_returns(make_experiment, monkeypatch) -> None:
    folder = _running_folder(make_experiment)
    real_write_report = watch_module.write_report
    calls = []

    def write_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write_report(*args, **kwargs)

    monkeypatch.setattr(watch_module, "write_report", write_then_interrupt)

    result = watch_report(folder, 0.05)

    assert result.n_rewrites == 2
    assert not result.search_ended


def test_watch_first_rewrite_invalid_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="is not an experiment folder"):
        watch_report(tmp_path, 0.1)


def test_watch_folder_gone_later_retries(make_experiment, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="tune_rec.report.watch")
    folder = _running_folder(make_experiment)
    stop = threading.Event()
    thread = _WatchThread(folder, 0.1, stop=stop)

    thread.start()
    _wait_for((folder / "report.html").exists, "the first rewrite")
    folder.rename(folder.with_name("moved"))
    _wait_for(
        lambda: any("retrying later" in record.getMessage() for record in caplog.records),
        "the warning about the missing folder",
    )
    stop.set()
    thread.join(TIMEOUT)

    assert not thread.is_alive()
    assert thread.error is None
    assert thread.result.report == folder / "report.html"


@pytest.mark.skipif(HAS_KALEIDO, reason="Kaleido is installed, so export does not fail")
def test_watch_png_without_kaleido_raises(make_experiment) -> None:
    folder = _running_folder(make_experiment)

    with pytest.raises(ImageExportError, match="Kaleido 1 or later"):
        watch_report(folder, 0.1, png=True)

    assert (folder / "report.html").exists()


def test_watch_png_each_rewrite(make_experiment, monkeypatch, tmp_path: Path) -> None:
    folder = make_experiment(n_trials=12, max_epochs=9, n_confirm=2)
    written = []

    def write_pngs(experiment_dir, **kwargs):
        written.append(Path(experiment_dir))
        return [Path(experiment_dir) / "figures" / "losses.png"]

    monkeypatch.setattr(watch_module, "write_pngs", write_pngs)

    result = watch_report(folder, 0.1, png=True)

    assert written == [folder]
    assert result.pngs == [folder / "figures" / "losses.png"]
