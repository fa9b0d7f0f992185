"""The experiment folder: its file names, atomic writes, and the trial and epoch tables.

Everything here is free of Ray, so that the report and the exports read an experiment without
a running Ray, and while a search is still writing it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow
import yaml

from tune_rec.errors import InvalidInputError

SETTINGS_FILE = "settings.json"
SPACE_FILE = "search_space.yaml"
TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
BEST_CONFIG_FILE = "best_config.yaml"
REPORT_FILE = "report.html"

METRIC_KEYS = ("map@1", "map@5", "map@10", "ndcg@10", "recall@10")
LOSS_KEYS = ("loss_embedding", "loss_ranking", "loss_target")
# Columns of epochs.parquet besides the trial id, in this order when present.
EPOCH_COLUMNS = (
    "epoch",
    "training_iteration",
    "alpha",
    *LOSS_KEYS,
    *METRIC_KEYS,
    "n_users_evaluated",
    "n_users_skipped",
    "epoch_seconds",
    "time_total_s",
)

# Trial statuses in trials.parquet.
FINISHED, STOPPED, FAILED, RUNNING = "finished", "stopped", "failed", "running"

# Status of the last run of a search, under settings.json's "outcome" key: "running" from the
# start of a run, then "completed" (best_config.yaml written), "failed" (no winner, or Ray
# failed) or "interrupted" (Ctrl-C, and a resume continues it). A run killed by a signal
# leaves "running" behind.
OUTCOME_KEY = "outcome"
SEARCH_RUNNING, SEARCH_COMPLETED, SEARCH_FAILED, SEARCH_INTERRUPTED = (
    "running",
    "completed",
    "failed",
    "interrupted",
)

# Key of settings.json that stores --confirm-top, --confirm-seeds and --audit-pruned, which a
# resume reads back.
RERUNS_KEY = "reruns"

# Default next step that an error about a corrupt file of an experiment suggests.
RESTORE_FIX = "restore it from a copy"


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write a file through ``write(temporary_path)``, then rename it over ``path``.

    A reader never sees a half-written file, and a crash leaves the previous version intact.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        # mkstemp creates the file readable by its owner only; results are for the team.
        os.chmod(temporary, 0o666 & ~_umask())
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def dump_yaml(data: Any) -> str:
    """Return ``data`` as block-style YAML, each string on one line however long."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=math.inf)


def write_yaml_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as block-style YAML with plain values, atomically."""
    write_text_atomic(path, dump_yaml(data))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def write_parquet_atomic(path: Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` as Parquet (pyarrow), atomically."""
    write_atomic(path, lambda temporary: frame.to_parquet(temporary, index=False))


def plain(value: Any) -> Any:
    """Return ``value`` with NumPy scalars turned into Python numbers, for YAML and JSON."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


@dataclass
class TrialRecord:
    """The record of one trial: its config, status and every epoch's row."""

    trial_id: str
    config: dict[str, Any]
    status: str = RUNNING
    error: str | None = None
    epochs: dict[int, dict[str, Any]] = field(default_factory=dict)


class ExperimentLog:
    """The trial and epoch tables of an experiment, kept in memory and flushed to Parquet.

    Rows are keyed by (trial id, epoch), so a result reported twice (after a resume, for
    example) replaces the earlier row instead of duplicating it.

    Args:
        folder: The experiment folder.
        max_epochs: Full budget of every trial; a trial that ends earlier without an error was
            stopped by the scheduler.
        metric: The search metric, for the best and last columns.
        mode: ``max`` or ``min``.
    """

    def __init__(self, folder: Path, *, max_epochs: int, metric: str, mode: str) -> None:
        self.folder = Path(folder)
        self.max_epochs = max_epochs
        self.metric = metric
        self.mode = mode
        self.trials: dict[str, TrialRecord] = {}
        # Test-split metrics, computed only for finished winners.
        self.test_metrics: dict[str, dict[str, float]] = {}
        # Trials that had ended when this log was loaded from disk. After a resume, Ray may
        # restart such a trial; its further results are ignored and its status kept.
        self.closed: set[str] = set()

    @classmethod
    def load(cls, folder: Path, *, max_epochs: int, metric: str, mode: str) -> ExperimentLog:
        """Read the tables that an earlier run of the same experiment wrote, if any.

        Raises:
            InvalidInputError: trials.parquet or epochs.parquet exists but cannot be read.
        """
        log = cls(folder, max_epochs=max_epochs, metric=metric, mode=mode)
        trials = read_table(log.folder, TRIALS_FILE)
        epochs = read_table(log.folder, EPOCHS_FILE)
        if trials is not None:
            for row in trials.to_dict("records"):
                config = {
                    key.removeprefix("config."): value
                    for key, value in row.items()
                    if key.startswith("config.") and not _is_missing(value)
                }
                log.trials[row["trial_id"]] = TrialRecord(
                    row["trial_id"], config, row["status"], row.get("error")
                )
                if row["status"] in (FINISHED, STOPPED, FAILED):
                    log.closed.add(row["trial_id"])
                tests = {
                    key: value
                    for key, value in row.items()
                    if key.startswith("test_") and not _is_missing(value)
                }
                if tests:
                    log.test_metrics[row["trial_id"]] = tests
        if epochs is not None:
            for row in epochs.to_dict("records"):
                trial = log.trials.setdefault(row["trial_id"], TrialRecord(row["trial_id"], {}))
                trial.epochs[int(row["epoch"])] = {
                    key: value for key, value in row.items() if key != "trial_id"
                }
        return log

    def add_result(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        """Record one epoch's result of a trial.

        A result with an ``error`` key is the trial's last word: it failed, for example on a
        NaN loss, and the result holds no epoch to record.
        """
        if trial_id in self.closed:
            return
        trial = self.trials.setdefault(trial_id, TrialRecord(trial_id, dict(config)))
        if not trial.config:
            trial.config = dict(config)
        if result.get("error"):
            trial.status, trial.error = FAILED, str(result["error"])
            return
        trial.status = RUNNING
        row = {key: result[key] for key in result if _is_epoch_column(key)}
        trial.epochs[int(result["epoch"])] = row

    def complete(self, trial_id: str, config: dict[str, Any], error: str | None = None) -> None:
        """Mark a trial as finished, stopped early or failed."""
        if trial_id in self.closed:
            return
        trial = self.trials.setdefault(trial_id, TrialRecord(trial_id, dict(config)))
        if error is None and trial.status == FAILED:
            return
        if error is not None:
            trial.status, trial.error = FAILED, error
        elif len(trial.epochs) >= self.max_epochs:
            trial.status, trial.error = FINISHED, None
        else:
            trial.status, trial.error = STOPPED, None

    def n_ended(self) -> int:
        """Return the number of trials that finished, were stopped or failed."""
        return sum(t.status in (FINISHED, STOPPED, FAILED) for t in self.trials.values())

    def epochs_frame(self) -> pd.DataFrame:
        """Return one row per trial and epoch, ordered by trial and epoch."""
        rows = [
            {"trial_id": trial.trial_id, **trial.epochs[epoch]}
            for trial in self.trials.values()
            for epoch in sorted(trial.epochs)
        ]
        frame = pd.DataFrame(rows)
        if frame.empty:
            return pd.DataFrame(columns=["trial_id", *EPOCH_COLUMNS])
        return frame

    def trials_frame(self) -> pd.DataFrame:
        """Return one row per trial: status, config, epochs run, best and last metrics."""
        config_keys = sorted({key for trial in self.trials.values() for key in trial.config})
        rows = []
        for trial in self.trials.values():
            row: dict[str, Any] = {
                "trial_id": trial.trial_id,
                "status": trial.status,
                "stopped_early": trial.status == STOPPED,
                "error": trial.error,
                "n_epochs": len(trial.epochs),
                # Where the trial trained: "cpu" or "cuda", from its epoch rows.
                "device": _trial_device(trial),
            }
            for key in config_keys:
                row[f"config.{key}"] = trial.config.get(key)
            row |= self._metric_summary(trial)
            row |= self.test_metrics.get(trial.trial_id, {})
            rows.append(row)
        return pd.DataFrame(rows)

    def _metric_summary(self, trial: TrialRecord) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        ordered = [trial.epochs[epoch] for epoch in sorted(trial.epochs)]
        pick = max if self.mode == "max" else min
        for key in (*METRIC_KEYS, *LOSS_KEYS):
            values = [row[key] for row in ordered if not _is_missing(row.get(key))]
            summary[f"last_{key}"] = values[-1] if values else None
            best_pick = min if key in LOSS_KEYS else pick
            summary[f"best_{key}"] = best_pick(values) if values else None
        return summary

    def flush(self) -> None:
        """Write trials.parquet and epochs.parquet atomically."""
        write_parquet_atomic(self.folder / EPOCHS_FILE, self.epochs_frame())
        write_parquet_atomic(self.folder / TRIALS_FILE, self.trials_frame())

    def best_trial(self) -> TrialRecord | None:
        """Return the finished trial with the best last-epoch validation metric, or None."""
        ranked = self.ranked_trials()
        return ranked[0] if ranked else None

    def ranked_trials(self) -> list[TrialRecord]:
        """Return the finished trials, best first by their last-epoch search metric.

        Only trials that ran the full budget compete, so an early high score that a trial did
        not keep cannot win; test metrics play no part.
        """
        finished = [t for t in self.trials.values() if t.status == FINISHED and t.epochs]
        finished = [
            t for t in finished if not _is_missing(t.epochs[max(t.epochs)].get(self.metric))
        ]
        return sorted(
            finished,
            key=lambda t: t.epochs[max(t.epochs)][self.metric],
            reverse=self.mode == "max",
        )


def _trial_device(trial: TrialRecord) -> str | None:
    """Return the devices that a trial's epochs ran on, comma-separated, or None if unknown."""
    devices = sorted({row["device"] for row in trial.epochs.values() if row.get("device")})
    return ",".join(devices) or None


def _is_epoch_column(key: str) -> bool:
    if key in EPOCH_COLUMNS or key in ("device", "node_id"):
        return True
    return any(key.endswith(metric) for metric in METRIC_KEYS) or key.endswith(
        ("_users_evaluated", "_users_skipped")
    )


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def read_table(folder: Path, name: str, *, fix: str = RESTORE_FIX) -> pd.DataFrame | None:
    """Return a Parquet table of the experiment, or None if it has not been written yet.

    tune-rec writes its tables atomically, so a file that exists but cannot be read is corrupt
    rather than half-written.

    Args:
        folder: The experiment folder.
        name: The file name, such as ``trials.parquet``.
        fix: The next step that the error message suggests for a corrupt file.

    Raises:
        InvalidInputError: the file exists but is not a readable Parquet file.
    """
    path = Path(folder) / name
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pyarrow.ArrowException) as error:
        raise InvalidInputError(
            f"{path} is corrupt: it is not a readable Parquet file ({error}); {fix}"
        ) from error


def read_settings(folder: Path, *, fix: str = RESTORE_FIX) -> dict[str, Any] | None:
    """Return the parsed settings.json of an experiment, or None if the folder has none.

    Args:
        folder: The experiment folder.
        fix: The next step that the error message suggests for a corrupt file.

    Raises:
        InvalidInputError: the file exists but is not a JSON object.
    """
    path = Path(folder) / SETTINGS_FILE
    if not path.exists():
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(
            f"{path} is corrupt: it is not valid JSON ({error}); {fix}"
        ) from error
    if not isinstance(settings, dict):
        raise InvalidInputError(
            f"{path} is corrupt: it contains a JSON {type(settings).__name__}, not the object "
            f"of settings that a search writes; {fix}"
        )
    return settings


def search_completed(folder: Path) -> bool:
    """Return whether best_config.yaml exists and is not the record of an interrupted search.

    An interrupted search writes best_config.yaml with ``source.interrupted: true`` and
    rewrites it when a resume finishes, so that file alone does not mean the search has ended.
    """
    path = Path(folder) / BEST_CONFIG_FILE
    if not path.is_file():
        return False
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    source = document.get("source") if isinstance(document, dict) else None
    return not (isinstance(source, dict) and source.get("interrupted"))


def record_outcome(folder: Path, status: str, message: str | None = None) -> None:
    """Store how the current run of the search ended (or that it runs) in settings.json.

    Does nothing when the folder has no settings.json, which a search writes before its first
    trial.
    """
    settings = read_settings(folder)
    if settings is None:
        return
    settings[OUTCOME_KEY] = {
        "status": status,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "message": message,
    }
    write_json_atomic(Path(folder) / SETTINGS_FILE, settings)


def recorded_outcome(settings: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """Return the status and message of the outcome in settings.json, or (None, None).

    Experiments written before tune-rec recorded outcomes have none.
    """
    outcome = (settings or {}).get(OUTCOME_KEY)
    if not isinstance(outcome, dict):
        return None, None
    return outcome.get("status"), outcome.get("message")


def ended_without_winner(settings: dict[str, Any] | None, trials: pd.DataFrame | None) -> bool:
    """Return whether every requested trial has ended and none finished, from the tables alone.

    Such a search has no winner, so it never writes best_config.yaml. This reads only
    settings.json and trials.parquet, for experiments whose outcome was never recorded (a
    search written by an older tune-rec). A grid search counts its grid points, which
    settings.json does not store, so it is never judged here.
    """
    if not settings or trials is None or "status" not in trials:
        return False
    searcher = settings.get("searcher")
    if isinstance(searcher, dict) and searcher.get("type") == "grid":
        return False
    n_requested = settings.get("num_samples")
    if not isinstance(n_requested, int) or n_requested < 1:
        return False
    statuses = trials["status"].astype(str)
    n_ended = int(statuses.isin([FINISHED, STOPPED, FAILED]).sum())
    return n_ended >= n_requested and not (statuses == FINISHED).any()


def iter_config_columns(frame: pd.DataFrame) -> Iterable[str]:
    """Yield the ``config.*`` columns of a trials table."""
    return (column for column in frame.columns if column.startswith("config."))
