"""Counts, epoch budget, best trials and convergence verdicts of an experiment, for the report."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tune_rec.experiment import FAILED, FINISHED, RUNNING, STOPPED
from tune_rec.report.convergence import (
    DEFAULT_TOLERANCE,
    DEFAULT_WINDOW,
    Verdict,
    convergence_verdict,
)
from tune_rec.report.reader import SCHEDULE_COLUMN, UNKNOWN_SCHEDULE, Experiment
from tune_rec.schedules import SCHEDULE_TYPES

STATUSES: tuple[str, ...] = (FINISHED, STOPPED, FAILED, RUNNING)
LOSS_LABELS: dict[str, str] = {
    "loss_embedding": "embedding loss",
    "loss_ranking": "ranking loss",
    "loss_target": "target loss",
}
# Config keys that are experiment settings rather than searched parameters.
_SETTING_KEYS = ("max_epochs", "seed")


@dataclass(frozen=True)
class EpochBudget:
    """Epochs that the trials ran against the epochs of running every trial to the budget."""

    n_epochs_run: int
    n_epochs_full: int
    """n_trials x max_epochs; 0 when max_epochs is unknown."""

    @property
    def fraction(self) -> float | None:
        """``n_epochs_run / n_epochs_full``, or None when the full cost is unknown."""
        return self.n_epochs_run / self.n_epochs_full if self.n_epochs_full else None


@dataclass(frozen=True)
class RowVerdict:
    """Convergence of the best trial of one schedule type."""

    schedule: str
    trial_id: str
    n_epochs: int
    alpha_changes: bool
    components: dict[str, Verdict]
    """One verdict per loss key of LOSS_LABELS."""
    converged: bool
    basis: str
    """The losses that the row's verdict rests on, in words."""


def order_schedule_types(types: list[str]) -> list[str]:
    """Sort schedule types: fixed, increase, decrease, the other known types, then the rest."""
    known = [schedule for schedule in SCHEDULE_TYPES if schedule in types]
    others = sorted(schedule for schedule in set(types) if schedule not in SCHEDULE_TYPES)
    if UNKNOWN_SCHEDULE in others:
        others.remove(UNKNOWN_SCHEDULE)
        others.append(UNKNOWN_SCHEDULE)
    return known + others


def count_statuses(trials: pd.DataFrame) -> dict[str, int]:
    """Count trials per status: the four known statuses always, any other that occurs after."""
    counts = trials["status"].value_counts()
    result = {status: int(counts.get(status, 0)) for status in STATUSES}
    for status, count in counts.items():
        if status not in result:
            result[str(status)] = int(count)
    return result


def epoch_budget(experiment: Experiment) -> EpochBudget:
    """Compare the epochs run with n_trials x max_epochs.

    max_epochs comes from settings.json; without it, from each trial's config.max_epochs.
    """
    trials = experiment.trials
    n_epochs_run = int(trials["n_epochs"].sum())
    max_epochs = experiment.settings.get("max_epochs")
    if isinstance(max_epochs, int) and max_epochs > 0:
        return EpochBudget(n_epochs_run, len(trials) * max_epochs)
    if "config.max_epochs" in trials and trials["config.max_epochs"].notna().all():
        return EpochBudget(n_epochs_run, int(trials["config.max_epochs"].sum()))
    return EpochBudget(n_epochs_run, 0)


def _sort_ascending(mode: str) -> bool:
    return mode != "max"


def best_trial_ids(experiment: Experiment) -> dict[str, str]:
    """Pick the best trial of each schedule type, in the order of order_schedule_types.

    The best trial has the best last validation value of the search metric among the finished
    trials of its type. A type without such a finished trial takes the best of its other
    trials. A type whose trials have no value yet takes the trial with the most epochs.
    """
    trials = experiment.trials
    column = f"last_{experiment.metric}"
    result: dict[str, str] = {}
    for schedule in order_schedule_types(list(trials[SCHEDULE_COLUMN].unique())):
        group = trials[trials[SCHEDULE_COLUMN] == schedule]
        scored = group[group[column].notna()] if column in group else group.iloc[0:0]
        finished = scored[scored["status"] == FINISHED]
        candidates = finished if len(finished) else scored
        if len(candidates):
            ordered = candidates.sort_values(
                column, ascending=_sort_ascending(experiment.mode), kind="stable"
            )
        else:
            ordered = group.sort_values("n_epochs", ascending=False, kind="stable")
        result[schedule] = str(ordered["trial_id"].iloc[0])
    return result


def top_trials(experiment: Experiment, top_k: int) -> pd.DataFrame:
    """Return the ``top_k`` finished trials by last validation value of the search metric."""
    trials = experiment.trials
    column = f"last_{experiment.metric}"
    if column not in trials:
        return trials.iloc[0:0]
    finished = trials[(trials["status"] == FINISHED) & trials[column].notna()]
    ordered = finished.sort_values(
        column, ascending=_sort_ascending(experiment.mode), kind="stable"
    )
    return ordered.head(top_k)


def space_params(settings: dict[str, Any]) -> dict[str, Any]:
    """Return the ``params`` mapping of the parsed search space in settings.json, if any."""
    space = settings.get("space")
    if not isinstance(space, dict):
        return {}
    params = space.get("params", space)
    return params if isinstance(params, dict) else {}


def param_alternatives(spec: Any) -> list[dict[str, Any]]:
    """Return the alternatives of one search-space param as dicts; [] for any other value.

    The parsed space lists, per config key, alternatives such as ``{"distribution":
    "uniform", "low": 0.0, "high": 0.5, "when": {"schedule": ["increase"]}}``; a single dict is
    read as one alternative.
    """
    if isinstance(spec, dict):
        return [spec]
    if isinstance(spec, list) and spec and all(isinstance(item, dict) for item in spec):
        return list(spec)
    return []


def distribution_name(alternative: dict[str, Any]) -> str:
    """Return an alternative's distribution (``uniform``, ``choice`` ...), or "" for a constant."""
    return str(alternative.get("distribution") or alternative.get("type") or "").lower()


def is_log_spec(spec: Any) -> bool:
    """Return whether every alternative of a search-space param is log-scaled (loguniform ...)."""
    alternatives = param_alternatives(spec)
    return bool(alternatives) and all(
        "log" in distribution_name(alternative) or bool(alternative.get("log"))
        for alternative in alternatives
    )


def is_choice_spec(spec: Any) -> bool:
    """Return whether every alternative of a search-space param picks from a list of values."""
    alternatives = param_alternatives(spec)
    return bool(alternatives) and all(
        isinstance(alternative.get("values"), list) for alternative in alternatives
    )


def split_params(experiment: Experiment) -> tuple[list[str], dict[str, Any]]:
    """Split the config keys into searched parameters and values fixed for every trial.

    A key is searched when it takes more than one value across trials, or when the search space
    lists it with a distribution. Keys without any value (never recorded) are left out.

    Returns:
        The searched keys without the ``config.`` prefix, in the search space's order (schedule
        first) and then in column order, and the fixed keys with their value.
    """
    trials = experiment.trials
    space = space_params(experiment.settings)
    order = ["schedule", *(key for key in space if key != "schedule")]

    def position(column: str) -> int:
        key = column.removeprefix("config.")
        return order.index(key) if key in order else len(order)

    columns = sorted(
        (column for column in trials.columns if column.startswith("config.")), key=position
    )
    searched: list[str] = []
    fixed: dict[str, Any] = {}
    for column in columns:
        key = column.removeprefix("config.")
        values = trials[column].dropna()
        if key == "schedule":
            values = values[values != UNKNOWN_SCHEDULE]
        if values.empty:
            continue
        n_unique = values.astype(str).nunique()
        in_space = any(
            distribution_name(alternative) for alternative in param_alternatives(space.get(key))
        )
        if key not in _SETTING_KEYS and (n_unique > 1 or in_space):
            searched.append(key)
        elif n_unique == 1:
            fixed[key] = values.iloc[0]
    return searched, fixed


def _alpha_changes(schedule: str, alphas: pd.Series) -> bool:
    """Return whether alpha changes during training, by schedule type or by recorded alphas.

    Every known type except fixed changes alpha over the full budget, even where a trial
    stopped before the change (a step schedule still in its warm-up, for example).
    """
    values = alphas.dropna()
    varies = len(values) >= 2 and bool(values.max() - values.min() > 1e-12)
    if schedule in SCHEDULE_TYPES:
        return schedule != "fixed" or varies
    return varies


def row_verdicts(
    experiment: Experiment,
    best_ids: dict[str, str],
    *,
    window: int = DEFAULT_WINDOW,
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[RowVerdict]:
    """Apply the convergence rule to the three losses of each schedule type's best trial.

    The row converges when all three losses do, except where alpha changes during training:
    there the target loss moves with alpha, so the row rests on the embedding and ranking
    losses alone.
    """
    epochs = experiment.epochs
    trials = experiment.trials.set_index("trial_id")
    verdicts = []
    for schedule, trial_id in best_ids.items():
        curve = epochs[epochs["trial_id"] == trial_id]
        components = {
            key: convergence_verdict(curve[key].tolist(), window, tolerance) for key in LOSS_LABELS
        }
        alpha_changes = _alpha_changes(schedule, curve["alpha"])
        if alpha_changes:
            basis_keys = ["loss_embedding", "loss_ranking"]
            basis = (
                "the embedding and ranking losses, because alpha changes during training and "
                "so the target loss alone is no convergence signal"
            )
        else:
            basis_keys = list(LOSS_LABELS)
            basis = "all three losses, because alpha is constant"
        n_epochs = trials.loc[trial_id, "n_epochs"] if trial_id in trials.index else len(curve)
        verdicts.append(
            RowVerdict(
                schedule=schedule,
                trial_id=trial_id,
                n_epochs=int(n_epochs),
                alpha_changes=alpha_changes,
                components=components,
                converged=all(components[key].converged for key in basis_keys),
                basis=basis,
            )
        )
    return verdicts


def scheduler_rungs(settings: dict[str, Any]) -> list[int]:
    """Return the epochs at which ASHA compares trials; [] for other schedulers.

    The rungs are grace_period x reduction_factor^k for k = 0 .. int(log(max_t / grace_period)
    / log(reduction_factor)), as Ray Tune 2.60's ASHA computes them (``_Bracket`` in
    ``ray.tune.schedulers.async_hyperband``), with max_t the scheduler's or else max_epochs.
    """
    scheduler = settings.get("scheduler")
    if not isinstance(scheduler, dict) or scheduler.get("type") != "asha":
        return []
    grace = scheduler.get("grace_period")
    factor = scheduler.get("reduction_factor")
    max_t = scheduler.get("max_t", settings.get("max_epochs"))
    if not all(isinstance(value, int | float) for value in (grace, factor, max_t)):
        return []
    if grace < 1 or factor <= 1 or max_t < grace:
        return []
    n_rungs = int(math.log(max_t / grace) / math.log(factor) + 1)
    return [int(grace * factor**k) for k in range(n_rungs)]
