"""Config files that ``tune-rec train --config`` runs: best_config.yaml and the top-K export."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from tune_rec import __version__
from tune_rec.config import DataSettings, TrainConfig
from tune_rec.errors import InvalidInputError
from tune_rec.experiment import (
    BEST_CONFIG_FILE,
    FINISHED,
    METRIC_KEYS,
    SETTINGS_FILE,
    TRIALS_FILE,
    plain,
    read_settings,
    read_table,
    write_json_atomic,
    write_yaml_atomic,
)

# The next step that an error about a corrupt file of the experiment suggests to the export.
_EXPORT_FIX = "restore it from a copy; the export cannot rank the trials without it"
# Keys of settings.json that the export reads.
_SETTINGS_KEYS = ("name", "metric", "mode", "fixed", "data_settings", "data")


def versions() -> dict[str, str]:
    """Return the versions of Python and of the packages that shape the results."""
    import numpy
    import optuna
    import torch

    found = {
        "tune_rec": __version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": str(numpy.__version__),
        "optuna": str(optuna.__version__),
        "pandas": str(pd.__version__),
    }
    try:
        import ray

        found["ray"] = str(ray.__version__)
    except ImportError:
        pass
    return found


def run_config_document(
    config: TrainConfig,
    data: DataSettings,
    *,
    metrics: dict[str, float],
    checksum: str,
    source: dict[str, Any],
) -> dict[str, Any]:
    """Return a config file's content: what to train, what it reached and what produced it.

    ``tune-rec train --config`` reads the ``config`` and ``data`` sections; the others record
    provenance.
    """
    return plain(
        {
            # Keys left at None (the parameters of other schedules) are left out.
            "config": config.model_dump(exclude_none=True),
            "data": data.model_dump(),
            "metrics": {key: value for key, value in metrics.items() if value is not None},
            "seed": config.seed,
            "data_checksum": checksum,
            "source": source,
            "versions": versions(),
        }
    )


def write_best_config(folder: Path, document: dict[str, Any]) -> Path:
    """Write best_config.yaml into the experiment folder atomically and return its path."""
    path = Path(folder) / BEST_CONFIG_FILE
    write_yaml_atomic(path, document)
    return path


def load_run_config(path: Path) -> tuple[TrainConfig, DataSettings, dict[str, Any]]:
    """Read a config file written by tune-rec (or by hand) and validate it.

    Raises:
        InvalidInputError: the file is missing, not YAML, or its config is invalid.
    """
    import yaml
    from pydantic import ValidationError

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(
            f"config file {path} not found; pass the best_config.yaml of an experiment, "
            "for example results/<experiment>/best_config.yaml"
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise InvalidInputError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(document, dict) or "config" not in document:
        raise InvalidInputError(
            f"config file {path} has no 'config' section; expected the format of "
            "best_config.yaml (sections config, data, metrics)"
        )
    try:
        config = TrainConfig(**document["config"])
        data = DataSettings(**(document.get("data") or {}))
    except (ValidationError, TypeError) as error:
        raise InvalidInputError(f"config file {path} is invalid: {error}") from error
    metrics = document.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise InvalidInputError(
            f"config file {path} is invalid: its metrics section is {metrics!r}, not a mapping "
            "of metric names to values; remove it or restore it from the experiment"
        )
    recorded = (metrics or {}).get("map@10")
    if recorded is not None and (
        isinstance(recorded, bool) or not isinstance(recorded, int | float)
    ):
        raise InvalidInputError(
            f"config file {path} is invalid: metrics map@10 is {recorded!r}, not a number; "
            "remove it or restore it from the experiment"
        )
    return config, data, document


def top_configs(folder: Path, top: int) -> list[dict[str, Any]]:
    """Return the ``top`` finished trials of an experiment as config documents, best first.

    The order is the one that chose best_config.yaml: configs with seed repeats first, by
    their mean validation metric, then the other finished trials by their last-epoch value.

    Raises:
        InvalidInputError: the folder is not an experiment, one of its files is corrupt, or
            ``top`` is below 1.
    """
    folder = Path(folder)
    if top < 1:
        raise InvalidInputError(f"--top must be at least 1; got {top}")
    if not (folder / SETTINGS_FILE).is_file() or not (folder / TRIALS_FILE).is_file():
        raise InvalidInputError(
            f"{folder} is not an experiment folder with results: {SETTINGS_FILE} or "
            f"{TRIALS_FILE} is missing; pass a folder under results/ that a search wrote"
        )
    settings = read_settings(folder, fix=_EXPORT_FIX) or {}
    missing = [key for key in _SETTINGS_KEYS if key not in settings]
    if missing:
        raise InvalidInputError(
            f"{folder / SETTINGS_FILE} is corrupt: it lacks {', '.join(missing)}, which "
            f"tune-rec search writes; {_EXPORT_FIX}"
        )
    trials = read_table(folder, TRIALS_FILE, fix=_EXPORT_FIX)
    metric, mode = settings["metric"], settings["mode"]
    missing = [key for key in ("trial_id", "status", f"last_{metric}") if key not in trials]
    if missing:
        raise InvalidInputError(
            f"{folder / TRIALS_FILE} is corrupt: it has no column {', '.join(missing)}; "
            f"{_EXPORT_FIX}"
        )
    finished = trials[trials["status"] == FINISHED].dropna(subset=[f"last_{metric}"])
    confirmation = _read_confirmation(folder)
    repeated = finished["trial_id"].isin(list(confirmation))
    sign = -1.0 if mode == "max" else 1.0
    finished = finished.assign(
        _group=(~repeated).astype(int),
        _key=[
            sign * confirmation[trial_id][f"{metric}_mean"]
            if trial_id in confirmation
            else sign * value
            for trial_id, value in zip(
                finished["trial_id"], finished[f"last_{metric}"], strict=True
            )
        ],
    )
    finished = finished.sort_values(["_group", "_key"]).head(top)

    data = DataSettings(**settings["data_settings"])
    documents = []
    for rank, row in enumerate(finished.to_dict("records"), start=1):
        config_values = {
            key.removeprefix("config."): value
            for key, value in row.items()
            if key.startswith("config.") and not pd.isna(value)
        }
        config = TrainConfig(**{**config_values, **settings["fixed"]})
        metrics = {key: row.get(f"last_{key}") for key in METRIC_KEYS}
        metrics |= {
            key: row[key] for key in row if key.startswith("test_") and not pd.isna(row[key])
        }
        source = {
            "experiment": settings["name"],
            "trial_id": row["trial_id"],
            "rank": rank,
            "selected_by": (
                f"mean validation {metric} ({mode}) over the seed repeats"
                if row["trial_id"] in confirmation
                else f"last-epoch validation {metric} ({mode}) among finished trials"
            ),
        }
        document = run_config_document(
            config, data, metrics=metrics, checksum=settings["data"]["checksum"], source=source
        )
        if row["trial_id"] in confirmation:
            document["confirmation"] = confirmation[row["trial_id"]]
        documents.append(document)
    return documents


def _read_confirmation(folder: Path) -> dict[str, dict[str, Any]]:
    """Return the seed-repeat summary of each repeated trial, by trial id."""
    from tune_rec.confirm import CONFIRM_FILE

    summary = read_table(folder, CONFIRM_FILE, fix=_EXPORT_FIX)
    if summary is None:
        return {}
    return {
        row["source_trial"]: plain(
            {key: value for key, value in row.items() if key not in ("source_trial", "rank")}
        )
        for row in summary.to_dict("records")
    }


def export_top(
    folder: Path, top: int, fmt: Literal["yaml", "json"], output: Path | None = None
) -> list[Path]:
    """Write the top configs of an experiment as one file each and return their paths.

    Files go to ``output`` (default ``<experiment>/exports``) as ``config_<rank>.<fmt>``.
    """
    documents = top_configs(folder, top)
    target = Path(output) if output else Path(folder) / "exports"
    paths = []
    for document in documents:
        path = target / f"config_{document['source']['rank']}.{fmt}"
        if fmt == "yaml":
            write_yaml_atomic(path, document)
        else:
            write_json_atomic(path, document)
        paths.append(path)
    return paths
