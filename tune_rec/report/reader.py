"""Reading an experiment folder: settings.json, trials.parquet, epochs.parquet and the results
that a finished search adds (confirm.parquet, reruns.parquet, audit.parquet, best_config.yaml).

The search may still be writing the folder, so every file is optional. A file that is missing is
recorded in ``Experiment.notes`` and replaced by an empty table. The search writes every file
atomically, so one that exists but cannot be read is corrupt, and reading it raises
InvalidInputError, so that a report command fails before it replaces a good report. Trials that
appear in epochs.parquet but not (yet) in trials.parquet are added as running trials. Missing
per-trial values (epochs run, last and best metrics) are filled from epochs.parquet. The files of
a finished search are None until the search writes them, and their absence is no note.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tune_rec.errors import InvalidInputError
from tune_rec.experiment import (
    BEST_CONFIG_FILE,
    EPOCHS_FILE,
    LOSS_KEYS,
    METRIC_KEYS,
    RUNNING,
    SETTINGS_FILE,
    STOPPED,
    TRIALS_FILE,
    read_settings,
    read_table,
)

logger = logging.getLogger(__name__)

# The searcher's Optuna storage, where the search keeps one.
OPTUNA_FILE = "optuna.db"
# Written at the end of a search by tune_rec.search.runner from tune_rec.confirm's results. The
# names are repeated here because importing those modules loads SciPy, Ray and PyTorch.
CONFIRM_FILE = "confirm.parquet"
RERUNS_FILE = "reruns.parquet"
AUDIT_FILE = "audit.parquet"
UNKNOWN_SCHEDULE = "unknown"
SCHEDULE_COLUMN = "config.schedule"


@dataclass
class Experiment:
    """The contents of one experiment folder, normalised for the report."""

    path: Path
    settings: dict[str, Any]
    """Parsed settings.json; empty when the file is missing or invalid."""
    trials: pd.DataFrame
    """One row per trial, with at least trial_id, status, stopped_early, error, n_epochs and
    config.schedule (``unknown`` where not recorded)."""
    epochs: pd.DataFrame
    """One row per trial and epoch, sorted by trial_id and epoch."""
    notes: list[str] = field(default_factory=list)
    """Sentences about missing, unreadable or derived data, shown in the report header."""
    confirm: pd.DataFrame | None = None
    """confirm.parquet: one row per config repeated with fresh seeds (mean, std and 95 %
    interval of each metric); None when the search has not written it."""
    reruns: pd.DataFrame | None = None
    """reruns.parquet: one row per seed repeat or audited trial, with its metrics or error."""
    audit: pd.DataFrame | None = None
    """audit.parquet: the stopped trials continued to the full budget, with their margin over
    the winner's value."""
    best_config: dict[str, Any] | None = None
    """Parsed best_config.yaml: the winner's config, metrics and source (selected_by)."""

    @property
    def optuna_db(self) -> Path | None:
        """The Optuna storage file of the searcher, if the folder has one."""
        path = self.path / OPTUNA_FILE
        return path if path.is_file() else None

    @property
    def metric(self) -> str:
        """The search metric (validation), ``map@10`` unless settings.json names another."""
        return str(self.settings.get("metric") or "map@10")

    @property
    def mode(self) -> str:
        """``max`` or ``min``: the direction in which the search metric improves."""
        return "min" if self.settings.get("mode") == "min" else "max"


# The next step that an error about a corrupt file of the experiment suggests to the report.
_REPORT_FIX = "restore it from a copy, or move it out of the folder to write the report without it"


def _read_settings(path: Path, notes: list[str]) -> dict[str, Any]:
    settings = read_settings(path, fix=_REPORT_FIX)
    if settings is None:
        notes.append(f"{SETTINGS_FILE} is missing, so the settings below are unknown.")
        return {}
    return settings


def _read_parquet(path: Path, name: str, notes: list[str]) -> pd.DataFrame | None:
    frame = read_table(path, name, fix=_REPORT_FIX)
    if frame is None:
        notes.append(f"{name} is missing.")
    return frame


def _read_optional_parquet(path: Path, name: str) -> pd.DataFrame | None:
    """Read a file of a finished search; None, without a note, when it is not there yet."""
    frame = read_table(path, name, fix=_REPORT_FIX)
    if frame is not None and "source_trial" in frame:
        frame = frame[frame["source_trial"].notna()].copy()
        frame["source_trial"] = frame["source_trial"].astype(str)
    return frame


def _read_best_config(path: Path) -> dict[str, Any] | None:
    file = path / BEST_CONFIG_FILE
    if not file.is_file():
        return None
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise InvalidInputError(
            f"{file} is corrupt: it is not valid YAML ({error}); {_REPORT_FIX}"
        ) from error
    if not isinstance(document, dict):
        raise InvalidInputError(
            f"{file} is corrupt: it does not contain a YAML mapping; {_REPORT_FIX}"
        )
    return document


def _normalise_epochs(epochs: pd.DataFrame | None) -> pd.DataFrame:
    if epochs is None:
        epochs = pd.DataFrame({"trial_id": pd.Series(dtype="object")})
    epochs = epochs.copy()
    if "trial_id" not in epochs:
        epochs["trial_id"] = pd.Series(dtype="object")
    epochs = epochs[epochs["trial_id"].notna()]
    epochs["trial_id"] = epochs["trial_id"].astype(str)

    if "epoch" not in epochs and "training_iteration" in epochs:
        epochs["epoch"] = epochs["training_iteration"] - 1
    if "epoch" not in epochs:
        # Without epoch numbers, the file order of each trial's rows is the epoch order.
        epochs["epoch"] = epochs.groupby("trial_id").cumcount()
    if "training_iteration" not in epochs:
        epochs["training_iteration"] = epochs["epoch"] + 1
    for key in ("alpha", *LOSS_KEYS, *METRIC_KEYS):
        if key not in epochs:
            epochs[key] = float("nan")

    # A trial that resumed from a checkpoint may report an epoch twice: the later row counts.
    epochs = epochs.drop_duplicates(subset=["trial_id", "epoch"], keep="last")
    return epochs.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)


def _empty_trials() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trial_id": pd.Series(dtype="object"),
            "status": pd.Series(dtype="object"),
        }
    )


def _add_trials_seen_only_in_epochs(
    trials: pd.DataFrame, epochs: pd.DataFrame, notes: list[str]
) -> pd.DataFrame:
    known = set(trials["trial_id"])
    extra_ids = [trial_id for trial_id in epochs["trial_id"].unique() if trial_id not in known]
    if not extra_ids:
        return trials
    notes.append(
        f"{len(extra_ids)} trial(s) appear in {EPOCHS_FILE} but not in {TRIALS_FILE}; they are "
        "counted as running and their config is unknown."
    )
    extra = pd.DataFrame({"trial_id": extra_ids, "status": RUNNING})
    return pd.concat([trials, extra], ignore_index=True)


def _fill_from_epochs(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Fill the last and best metrics where trials.parquet has no value, and update n_epochs."""
    grouped = epochs.groupby("trial_id", sort=False)
    n_epochs = grouped["epoch"].count()
    recorded = pd.to_numeric(trials["trial_id"].map(n_epochs), errors="coerce").fillna(0)
    if "n_epochs" not in trials:
        trials["n_epochs"] = 0
    # Either file can lag behind the other while the search runs: the larger count is newer.
    reported = pd.to_numeric(trials["n_epochs"], errors="coerce").fillna(0)
    trials["n_epochs"] = reported.where(reported >= recorded, recorded).astype("int64")

    for key in METRIC_KEYS:
        # Rows are sorted by epoch, so "last" is the latest non-missing value of each trial.
        last = grouped[key].last()
        best = grouped[key].max()
        for prefix, values in (("last_", last), ("best_", best)):
            column = f"{prefix}{key}"
            if column not in trials:
                trials[column] = float("nan")
            filled = trials[column].astype("float64")
            trials[column] = filled.fillna(trials["trial_id"].map(values))
    return trials


def _normalise_trials(
    trials: pd.DataFrame | None, epochs: pd.DataFrame, notes: list[str]
) -> pd.DataFrame:
    trials = _empty_trials() if trials is None else trials.copy()
    if "trial_id" not in trials:
        notes.append(f"{TRIALS_FILE} has no trial_id column, so it was ignored.")
        trials = _empty_trials()
    trials = trials[trials["trial_id"].notna()]
    trials["trial_id"] = trials["trial_id"].astype(str)
    trials = trials.drop_duplicates(subset=["trial_id"], keep="last")
    trials = _add_trials_seen_only_in_epochs(trials.reset_index(drop=True), epochs, notes)

    if "status" not in trials:
        trials["status"] = RUNNING
    trials["status"] = trials["status"].fillna(RUNNING).astype(str).str.lower()
    if "stopped_early" not in trials:
        trials["stopped_early"] = trials["status"] == STOPPED
    trials["stopped_early"] = trials["stopped_early"].fillna(False).astype(bool)
    if "error" not in trials:
        trials["error"] = None
    if SCHEDULE_COLUMN not in trials:
        trials[SCHEDULE_COLUMN] = UNKNOWN_SCHEDULE
    trials[SCHEDULE_COLUMN] = trials[SCHEDULE_COLUMN].fillna(UNKNOWN_SCHEDULE).astype(str)
    return _fill_from_epochs(trials, epochs).reset_index(drop=True)


def load_experiment(path: Path) -> Experiment:
    """Read an experiment folder, tolerating missing and partly written files.

    Args:
        path: The experiment folder, for example ``results/<experiment>``.

    Returns:
        The settings, the normalised trial and epoch tables and, where the search has written
        them, its seed repeats, pruning audit and best config.

    Raises:
        InvalidInputError: The folder does not exist, contains none of settings.json,
            trials.parquet and epochs.parquet, or one of its files is corrupt.
    """
    path = Path(path)
    if not path.is_dir():
        raise InvalidInputError(
            f"experiment folder not found: {path}; pass the folder of one experiment, "
            "for example results/<experiment>"
        )
    expected = (SETTINGS_FILE, TRIALS_FILE, EPOCHS_FILE)
    if not any((path / name).exists() for name in expected):
        raise InvalidInputError(
            f"{path} contains none of {', '.join(expected)}, so it is not an experiment "
            "folder; pass the folder of one experiment, for example results/<experiment>"
        )

    notes: list[str] = []
    settings = _read_settings(path, notes)
    epochs = _normalise_epochs(_read_parquet(path, EPOCHS_FILE, notes))
    trials = _normalise_trials(_read_parquet(path, TRIALS_FILE, notes), epochs, notes)
    return Experiment(
        path=path,
        settings=settings,
        trials=trials,
        epochs=epochs,
        notes=notes,
        confirm=_read_optional_parquet(path, CONFIRM_FILE),
        reruns=_read_optional_parquet(path, RERUNS_FILE),
        audit=_read_optional_parquet(path, AUDIT_FILE),
        best_config=_read_best_config(path),
    )
