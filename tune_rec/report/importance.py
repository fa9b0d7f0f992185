"""Parameter importances of the search metric, from optuna.db or from trials.parquet.

With optuna.db (the searcher's Optuna storage), the importances come from its completed trials.
Without it, an in-memory Optuna study is built from the finished trials in trials.parquet, with
each parameter's distribution taken from the search space in settings.json where it contains
every observed value, otherwise inferred from the observed values.

fANOVA is tried first. It needs scikit-learn; where it fails, PED-ANOVA (Optuna's default since
5.0, no extra dependency) is used instead, and the report notes the fallback.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tune_rec.experiment import FINISHED
from tune_rec.report.reader import OPTUNA_FILE, TRIALS_FILE, Experiment
from tune_rec.report.summary import (
    distribution_name,
    param_alternatives,
    space_params,
    split_params,
)

logger = logging.getLogger(__name__)

MIN_TRIALS = 2


@dataclass(frozen=True)
class Importances:
    """Importance of each parameter for the search metric, largest first."""

    values: dict[str, float]
    """Parameter name to importance; the importances sum to 1. Empty when none were computed."""
    method: str
    """The evaluator that produced them (``fANOVA`` or ``PED-ANOVA``), or ``none``."""
    source: str
    """The file whose trials were used."""
    n_trials: int
    notes: list[str] = field(default_factory=list)
    """Sentences about left-out parameters, fallbacks and failures."""


@dataclass(frozen=True)
class _Record:
    params: dict[str, Any]
    distributions: dict[str, Any]
    value: float


def _python_value(value: Any) -> Any:
    """Convert a numpy scalar to the plain Python value that Optuna's distributions accept."""
    return value.item() if hasattr(value, "item") else value


def _alternative_distribution(alternative: dict[str, Any]) -> Any | None:
    """Build the Optuna distribution of one alternative; None for a constant or unknown kind."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    kind = distribution_name(alternative)
    choices = alternative.get("values", alternative.get("choices"))
    if isinstance(choices, list) and choices:
        return CategoricalDistribution(choices)
    low, high = alternative.get("low"), alternative.get("high")
    if not kind or not all(isinstance(bound, int | float) for bound in (low, high)):
        return None
    if low >= high:
        return None
    log = "log" in kind or bool(alternative.get("log"))
    try:
        if "int" in kind:
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    except ValueError:
        return None


def _distribution_from_spec(spec: Any) -> Any | None:
    """Build one Optuna distribution that covers every alternative of a search-space param.

    Alternatives of one kind are merged: choices by union, ranges by their overall bounds (log
    only when every range is). Returns None for a constant, a mix of kinds or an unknown format.
    """
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if isinstance(spec, list) and spec and not any(isinstance(item, dict) for item in spec):
        return CategoricalDistribution(spec)
    distributions = [_alternative_distribution(item) for item in param_alternatives(spec)]
    if not distributions or any(distribution is None for distribution in distributions):
        return None
    if len(distributions) == 1:
        return distributions[0]

    if all(isinstance(item, CategoricalDistribution) for item in distributions):
        choices = [choice for item in distributions for choice in item.choices]
        return CategoricalDistribution(list(dict.fromkeys(choices)))
    if all(isinstance(item, FloatDistribution | IntDistribution) for item in distributions):
        low = min(item.low for item in distributions)
        high = max(item.high for item in distributions)
        log = all(item.log for item in distributions)
        if all(isinstance(item, IntDistribution) for item in distributions):
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    return None


def _infer_distribution(values: pd.Series) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return CategoricalDistribution(sorted({str(value) for value in values}))
    low, high = float(values.min()), float(values.max())
    if pd.api.types.is_integer_dtype(values):
        return IntDistribution(int(low), int(high))
    # Values spread over two or more decades were most likely drawn log-uniformly.
    return FloatDistribution(low, high, log=low > 0 and high / low >= 100)


def _contains_all(distribution: Any, values: pd.Series) -> bool:
    # Optuna 5.1 has no public containment check; create_trial uses this same private one.
    try:
        return all(
            distribution._contains(distribution.to_internal_repr(_python_value(value)))
            for value in values
        )
    except (ValueError, TypeError):
        return False


def _records_from_trials(experiment: Experiment) -> list[_Record]:
    """Turn the finished trials into records; a parameter is absent where its value is null."""
    from optuna.distributions import CategoricalDistribution

    trials = experiment.trials
    column = f"last_{experiment.metric}"
    if column not in trials:
        return []
    finished = trials[(trials["status"] == FINISHED) & trials[column].notna()]
    space = space_params(experiment.settings)

    distributions: dict[str, Any] = {}
    as_text: set[str] = set()
    searched, _ = split_params(experiment)
    for key in searched:
        values = finished[f"config.{key}"].dropna()
        if values.empty:
            continue
        distribution = _distribution_from_spec(space.get(key))
        if distribution is None or not _contains_all(distribution, values):
            distribution = _infer_distribution(values)
            if isinstance(distribution, CategoricalDistribution):
                as_text.add(key)
        distributions[key] = distribution

    records = []
    for _, row in finished.iterrows():
        params = {}
        for key in distributions:
            value = row[f"config.{key}"]
            if pd.isna(value):
                continue
            params[key] = str(value) if key in as_text else _python_value(value)
        records.append(_Record(params, distributions, float(row[column])))
    return records


def _records_from_optuna_db(db_path: Path, notes: list[str]) -> list[_Record] | None:
    """Read the completed trials of the single study in optuna.db; None where that fails."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    # Opening an RDB storage can create or migrate tables, and the search may still be writing
    # the file: read a copy.
    with tempfile.TemporaryDirectory(prefix="tune-rec-report-") as directory:
        copy = Path(directory) / OPTUNA_FILE
        storage = None
        try:
            shutil.copyfile(db_path, copy)
            storage = optuna.storages.RDBStorage(f"sqlite:///{copy}")
            names = optuna.get_all_study_names(storage)
            if len(names) != 1:
                notes.append(f"{OPTUNA_FILE} contains {len(names)} studies instead of 1; ignored.")
                return None
            study = optuna.load_study(study_name=names[0], storage=storage)
            if len(study.directions) != 1:
                notes.append(f"{OPTUNA_FILE} contains a multi-objective study; ignored.")
                return None
            completed = study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
            )
        except (OSError, RuntimeError, ValueError, KeyError, SQLAlchemyError) as error:
            logger.warning("cannot read %s: %s", db_path, error)
            notes.append(f"{OPTUNA_FILE} could not be read ({error}).")
            return None
        finally:
            if storage is not None:
                storage.engine.dispose()
    records = [
        _Record(dict(trial.params), dict(trial.distributions), float(trial.value))
        for trial in completed
        if trial.value is not None and math.isfinite(trial.value)
    ]
    notes.append(
        f"{OPTUNA_FILE} records trials that the scheduler stopped early as completed, with the "
        "value of their last epoch, so their early values take part."
    )
    return records


def _drop_unusable_params(records: list[_Record], notes: list[str]) -> list[str]:
    """Return the parameters set in every record and taking at least two values."""
    names = set(records[0].params)
    for record in records[1:]:
        names &= set(record.params)
    every = set().union(*(record.params for record in records))
    conditional = sorted(every - names)
    if conditional:
        notes.append(
            "Left out because they are set in only some trials: " + ", ".join(conditional) + "."
        )
    constant = sorted(
        name for name in names if len({repr(record.params[name]) for record in records}) < 2
    )
    if constant:
        notes.append("Left out because they take one value only: " + ", ".join(constant) + ".")
    return sorted(names - set(constant))


def _evaluate(
    records: list[_Record], params: list[str], direction: str, notes: list[str]
) -> tuple[dict[str, float], str]:
    import optuna

    study = optuna.create_study(direction=direction)
    for record in records:
        study.add_trial(
            optuna.trial.create_trial(
                params={name: record.params[name] for name in params},
                distributions={name: record.distributions[name] for name in params},
                value=record.value,
            )
        )
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return optuna.importance.get_param_importances(study, evaluator=evaluator), "fANOVA"
    except (ImportError, RuntimeError, ValueError) as error:
        logger.debug("fANOVA failed, falling back to PED-ANOVA: %s", error)
        reason = (
            "it needs scikit-learn (pip install scikit-learn)"
            if isinstance(error, ImportError)
            else f"it failed: {error}"
        )
        notes.append(f"fANOVA was not used because {reason}; PED-ANOVA was used instead.")
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    return optuna.importance.get_param_importances(study, evaluator=evaluator), "PED-ANOVA"


def compute_importances(experiment: Experiment) -> Importances:
    """Compute the importance of each searched parameter for the search metric.

    Returns empty importances, with notes that explain why, when there are fewer than 2
    finished trials or no parameter that varies in all of them.
    """
    import optuna

    notes: list[str] = []
    records = None
    source = TRIALS_FILE
    if experiment.optuna_db is not None:
        records = _records_from_optuna_db(experiment.optuna_db, notes)
        source = OPTUNA_FILE
    if records is None:
        source = TRIALS_FILE
        records = _records_from_trials(experiment)

    if len(records) < MIN_TRIALS:
        notes.append(
            f"Importances need at least {MIN_TRIALS} finished trials with a value of "
            f"{experiment.metric}; {source} has {len(records)}."
        )
        return Importances({}, "none", source, len(records), notes)
    params = _drop_unusable_params(records, notes)
    if not params:
        notes.append("No parameter is set in every trial with more than one value.")
        return Importances({}, "none", source, len(records), notes)

    direction = "minimize" if experiment.mode == "min" else "maximize"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            values, method = _evaluate(records, params, direction, notes)
    except (RuntimeError, ValueError) as error:
        logger.warning("parameter importances failed: %s", error)
        notes.append(f"Parameter importances failed: {error}")
        return Importances({}, "none", source, len(records), notes)
    finally:
        optuna.logging.set_verbosity(verbosity)
    ordered = dict(sorted(values.items(), key=lambda item: item[1], reverse=True))
    return Importances(ordered, method, source, len(records), notes)
