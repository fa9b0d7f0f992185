"""A Tune callback that keeps the experiment folder's trial and epoch tables up to date."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

from tune_rec.experiment import FAILED, FINISHED, STOPPED, ExperimentLog

logger = logging.getLogger(__name__)


class ExperimentRecorder(Callback):
    """Writes trials.parquet and epochs.parquet while the search runs.

    The tables are rewritten atomically at most every ``flush_seconds`` and at every trial's
    end, so a report of a running experiment, or a crash, sees every epoch written so far.
    It also logs a progress line with the best validation metric so far.

    Args:
        log: The experiment's tables.
        flush_seconds: Least time between two writes of the tables, in seconds.
        progress_seconds: Time between two progress lines, in seconds; 0 turns them off.
    """

    def __init__(
        self, log: ExperimentLog, flush_seconds: float = 5.0, progress_seconds: float = 10.0
    ) -> None:
        self.log = log
        self.flush_seconds = flush_seconds
        self.progress_seconds = progress_seconds
        self._last_flush = 0.0
        self._last_progress = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment state. The tables are not pickled:
        # on a resume they are read back from the experiment folder, which is up to date.
        state = self.__dict__.copy()
        log = state.pop("log")
        state["_log_settings"] = (log.folder, log.max_epochs, log.metric, log.mode)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        folder, max_epochs, metric, mode = state.pop("_log_settings")
        self.__dict__.update(state)
        self.log = ExperimentLog.load(folder, max_epochs=max_epochs, metric=metric, mode=mode)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        logger.info("trial %s started: %s", trial.trial_id, _describe(trial.config))

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self.log.add_result(trial.trial_id, trial.config, result)
        if result.get("error"):
            logger.error("trial %s failed: %s", trial.trial_id, result["error"])
            self.flush()
            return
        self._maybe_flush()
        self._maybe_progress()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log.complete(trial.trial_id, trial.config)
        record = self.log.trials[trial.trial_id]
        if record.status == FAILED:
            return
        verb = {FINISHED: "finished", STOPPED: "stopped by the scheduler"}[record.status]
        value = _last_metric(record, self.log.metric)
        logger.info(
            "trial %s %s after %d epochs: %s %s",
            trial.trial_id,
            verb,
            len(record.epochs),
            self.log.metric,
            _format(value),
        )
        self.flush()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        message = _error_message(trial)
        self.log.complete(trial.trial_id, trial.config, error=message)
        logger.error("trial %s failed: %s", trial.trial_id, message)
        self.flush()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.flush()

    def flush(self) -> None:
        """Write both tables now."""
        self.log.flush()
        self._last_flush = time.monotonic()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def _maybe_progress(self) -> None:
        if not self.progress_seconds:
            return
        if time.monotonic() - self._last_progress < self.progress_seconds:
            return
        self._last_progress = time.monotonic()
        logger.info("progress: %s", progress_line(self.log))


def progress_line(log: ExperimentLog) -> str:
    """Return the count of trials per status and the best last-epoch metric so far."""
    counts = {"running": 0, FINISHED: 0, STOPPED: 0, FAILED: 0}
    for trial in log.trials.values():
        counts[trial.status] = counts.get(trial.status, 0) + 1
    values = [_last_metric(t, log.metric) for t in log.trials.values() if t.status != FAILED]
    values = [v for v in values if v is not None and math.isfinite(v)]
    pick = max if log.mode == "max" else min
    best = _format(pick(values)) if values else "n/a"
    parts = ", ".join(f"{count} {status}" for status, count in counts.items())
    return f"{parts}; best {log.metric} so far {best}"


def _last_metric(record: Any, metric: str) -> float | None:
    if not record.epochs:
        return None
    value = record.epochs[max(record.epochs)].get(metric)
    return None if value is None else float(value)


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _describe(config: dict[str, Any]) -> str:
    return ", ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in sorted(config.items())
    )


def _error_message(trial: Any) -> str:
    """Return the last line of the trial's error file: the exception and its message."""
    path = trial.error_file
    if path and Path(path).exists():
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
    return "the trial raised an error; see its error.txt in the experiment folder"


class EndedTrialStopper(Stopper):
    """Stops, at its first result, a trial that had already ended before a resume.

    Ray's restore may restart a trial that ASHA had stopped, because the stop decision was not
    yet in its last snapshot; tune-rec's own tables know, so such a trial stays stopped.
    """

    def __init__(self, folder: Path, max_epochs: int, metric: str, mode: str) -> None:
        self._settings = (Path(folder), max_epochs, metric, mode)
        self._ended: set[str] = set()
        self._logged = False

    def __getstate__(self) -> dict[str, Any]:
        return {"_settings": self._settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._settings = state["_settings"]
        folder, max_epochs, metric, mode = self._settings
        log = ExperimentLog.load(folder, max_epochs=max_epochs, metric=metric, mode=mode)
        self._ended = set(log.closed)
        # Tune unpickles the stopper several times during a restore. Only the copy that
        # receives results logs the count.
        self._logged = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if self._ended and not self._logged:
            self._logged = True
            logger.info("%d trials had ended before the resume; they stay ended", len(self._ended))
        return trial_id in self._ended

    def stop_all(self) -> bool:
        return False
