"""Seed repeats and the pruning audit of a finished search, as the report shows them.

A finished search retrains its top configs with fresh seeds (confirm.parquet, one summary row
per config, and reruns.parquet, one row per seed) and continues some of the trials that the
scheduler stopped to the full budget (audit.parquet). best_config.yaml names the winner and how
it was selected. These functions turn those files into rows for the report's tables and figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tune_rec.report.reader import SCHEDULE_COLUMN, UNKNOWN_SCHEDULE, Experiment

REPEAT_METRICS: tuple[str, ...] = ("map@1", "map@5", "map@10")
CONFIRM_KIND = "confirm"
AUDIT_KIND = "audit"


@dataclass(frozen=True)
class Interval:
    """Mean of a metric over fresh seeds, with its sample standard deviation and 95 % interval.

    With one seed the deviation and the interval bounds are NaN.
    """

    mean: float
    std: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        """Half the width of the confidence interval; NaN without an interval."""
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class RepeatRow:
    """One config of the top finished trials, retrained with fresh seeds."""

    trial_id: str
    rank: int | None
    """Rank of the trial in the search by its single-seed validation value, 1 = best."""
    schedule: str
    n_seeds: int
    search_value: float
    """The trial's last-epoch validation value in the search (one seed); NaN if unknown."""
    intervals: dict[str, Interval]
    """By metric key: validation keys (``map@10``) and test keys (``test_map@10``)."""
    seed_values: list[float]
    """Validation value of SeedRepeats.metric of each fresh seed, from reruns.parquet."""


@dataclass(frozen=True)
class SeedRepeats:
    """The seed repeats of an experiment and the winner that they selected."""

    metric: str
    """The validation metric of the figure and the search-value column: the search metric
    where confirm.parquet summarises it, else map@10."""
    rows: list[RepeatRow]
    """Ordered by rank."""
    winner_id: str | None
    """The trial of best_config.yaml; None until the search has written it."""
    selected_by: str | None
    """How the winner was chosen, in words: best_config.yaml's source.selected_by."""
    seeds: list[int]
    failures: list[tuple[str, str, str]]
    """(trial id, seed, error) of each seed repeat that failed."""

    def row(self, trial_id: str) -> RepeatRow | None:
        """Return the repeated config of ``trial_id``, or None if it was not repeated."""
        return next((row for row in self.rows if row.trial_id == trial_id), None)


@dataclass(frozen=True)
class AuditRow:
    """One trial that the scheduler stopped, continued to the full budget."""

    trial_id: str
    schedule: str
    stopped_at: int | None
    """Epochs that the trial had run when the scheduler stopped it."""
    value_at_stop: float
    value_full: float
    """Validation value of the search metric after the full budget."""
    winner_value: float
    margin: float
    """Positive when the audited trial is better than the winner's value."""
    would_have_won: bool
    from_checkpoint: bool | None
    """Whether the audit continued from the trial's checkpoint rather than from epoch 0."""


@dataclass(frozen=True)
class PruningAudit:
    """The audited stopped trials of an experiment and the verdict on early stopping."""

    metric: str
    rows: list[AuditRow]
    """Largest margin first."""
    failures: list[tuple[str, str]]
    """(trial id, error) of each audit rerun that failed."""
    verdict: str
    """One sentence: whether any audited trial would have beaten the winner."""


def _float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def _optional_int(value: Any) -> int | None:
    number = _float(value)
    return None if math.isnan(number) else int(number)


def _is_error(value: Any) -> bool:
    return not pd.isna(value) and str(value).strip() != ""


def _schedules(experiment: Experiment) -> dict[str, str]:
    trials = experiment.trials
    return dict(zip(trials["trial_id"], trials[SCHEDULE_COLUMN], strict=True))


def _reruns_of_kind(experiment: Experiment, kind: str) -> pd.DataFrame:
    reruns = experiment.reruns
    if reruns is None or "kind" not in reruns or "source_trial" not in reruns:
        return pd.DataFrame({"source_trial": pd.Series(dtype="object")})
    return reruns[reruns["kind"].astype(str) == kind]


def _failures(reruns: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Return (trial id, seed or "", error) of each rerun with an error."""
    if "error" not in reruns:
        return []
    failed = reruns[reruns["error"].map(_is_error).astype(bool)]
    seeds = failed["seed"] if "seed" in failed else pd.Series(None, index=failed.index)
    return [
        (str(trial_id), "" if pd.isna(seed) else str(int(seed)), str(error))
        for trial_id, seed, error in zip(
            failed["source_trial"], seeds, failed["error"], strict=True
        )
    ]


def _interval(summary: pd.Series, key: str) -> Interval:
    return Interval(
        mean=_float(summary.get(f"{key}_mean")),
        std=_float(summary.get(f"{key}_std")),
        low=_float(summary.get(f"{key}_ci_low")),
        high=_float(summary.get(f"{key}_ci_high")),
    )


def best_config_source(experiment: Experiment) -> dict[str, Any]:
    """Return the source section of best_config.yaml (trial_id, selected_by ...); {} if none."""
    source = (experiment.best_config or {}).get("source")
    return source if isinstance(source, dict) else {}


def seed_repeats(experiment: Experiment) -> SeedRepeats | None:
    """Collect the seed repeats of an experiment; None when confirm.parquet has no row."""
    confirm = experiment.confirm
    if confirm is None or confirm.empty or "source_trial" not in confirm:
        return None

    metric = experiment.metric
    if f"{metric}_mean" not in confirm:
        metric = "map@10"
    keys = [
        key
        for key in (*REPEAT_METRICS, *(f"test_{key}" for key in REPEAT_METRICS))
        if f"{key}_mean" in confirm
    ]
    schedules = _schedules(experiment)
    search_values = experiment.trials.set_index("trial_id").get(f"last_{metric}")
    repeats = _reruns_of_kind(experiment, CONFIRM_KIND)

    rows = []
    for _, summary in confirm.iterrows():
        trial_id = str(summary["source_trial"])
        runs = repeats[repeats["source_trial"] == trial_id]
        seed_values = runs[metric].dropna().astype(float).tolist() if metric in runs else []
        search_value = math.nan
        if search_values is not None and trial_id in search_values.index:
            search_value = _float(search_values.loc[trial_id])
        rows.append(
            RepeatRow(
                trial_id=trial_id,
                rank=_optional_int(summary.get("rank")),
                schedule=schedules.get(trial_id, UNKNOWN_SCHEDULE),
                n_seeds=_optional_int(summary.get("n_seeds")) or len(seed_values),
                search_value=search_value,
                intervals={key: _interval(summary, key) for key in keys},
                seed_values=seed_values,
            )
        )
    rows.sort(key=lambda row: (row.rank is None, row.rank or 0, row.trial_id))

    seeds = []
    if "seed" in repeats:
        seeds = sorted({int(seed) for seed in repeats["seed"].dropna()})
    source = best_config_source(experiment)
    winner_id, selected_by = source.get("trial_id"), source.get("selected_by")
    return SeedRepeats(
        metric=metric,
        rows=rows,
        winner_id=str(winner_id) if winner_id is not None else None,
        selected_by=str(selected_by) if selected_by is not None else None,
        seeds=seeds,
        failures=_failures(repeats),
    )


def _value_at_epoch(experiment: Experiment, trial_id: str, n_epochs: int | None) -> float:
    """Return a trial's validation value of the search metric after ``n_epochs`` epochs.

    Falls back on the trial's last recorded value when that epoch is not in epochs.parquet.
    """
    metric = experiment.metric
    epochs = experiment.epochs
    if n_epochs is not None and metric in epochs:
        match = epochs[
            (epochs["trial_id"] == trial_id) & (epochs["training_iteration"] == n_epochs)
        ]
        if len(match) and pd.notna(match[metric].iloc[-1]):
            return float(match[metric].iloc[-1])
    trials = experiment.trials
    column = f"last_{metric}"
    if column in trials:
        values = trials.loc[trials["trial_id"] == trial_id, column]
        if len(values):
            return _float(values.iloc[0])
    return math.nan


def describe_audit(rows: list[AuditRow], metric_label: str) -> str:
    """Return one sentence on whether any audited trial would have beaten the winner.

    ``rows`` must be ordered by margin, largest first.
    """
    if not rows:
        return "No audited trial ran to the full budget, so the audit has no verdict."
    winners = [row for row in rows if row.would_have_won]
    n_rows = len(rows)
    if not winners:
        closest = rows[0]
        if closest.margin == 0:
            shortfall = "tied with the winner"
        else:
            shortfall = f"fell short by {abs(closest.margin):.4f} {metric_label}"
        if n_rows == 1:
            return (
                f"The audited trial {closest.trial_id} ({closest.schedule}) would not have "
                f"beaten the winner: it {shortfall}."
            )
        return (
            f"None of the {n_rows} audited trials would have beaten the winner; the closest, "
            f"trial {closest.trial_id} ({closest.schedule}), {shortfall}."
        )
    if len(winners) == 1:
        row = winners[0]
        return (
            f"Trial {row.trial_id} ({row.schedule}) would have won by {row.margin:.4f} "
            f"{metric_label}: the scheduler stopped a config that, run to the full budget, "
            "beats the winner."
        )
    listed = ", ".join(f"trial {row.trial_id} by {row.margin:.4f}" for row in winners)
    return (
        f"{len(winners)} of the {n_rows} audited trials would have won ({listed} "
        f"{metric_label}): the scheduler stopped configs that, run to the full budget, beat "
        "the winner."
    )


def pruning_audit(experiment: Experiment) -> PruningAudit | None:
    """Collect the audited stopped trials; None when the search audited none."""
    audit = experiment.audit
    if audit is not None and "source_trial" not in audit:
        audit = None
    audit_reruns = _reruns_of_kind(experiment, AUDIT_KIND)
    failures = [(trial, error) for trial, _, error in _failures(audit_reruns)]
    if (audit is None or audit.empty) and not failures:
        return None

    metric = experiment.metric
    sign = -1.0 if experiment.mode == "min" else 1.0
    schedules = _schedules(experiment)
    rows = []
    for _, audited in (audit if audit is not None else pd.DataFrame()).iterrows():
        trial_id = str(audited["source_trial"])
        stopped_at = _optional_int(audited.get("stopped_at"))
        value_full = _float(audited.get(metric))
        winner_value = _float(audited.get("winner_value"))
        margin = _float(audited.get("margin"))
        if math.isnan(margin):
            margin = sign * (value_full - winner_value)
        would_have_won = audited.get("would_have_won")
        from_checkpoint = audited.get("from_checkpoint")
        rows.append(
            AuditRow(
                trial_id=trial_id,
                schedule=schedules.get(trial_id, UNKNOWN_SCHEDULE),
                stopped_at=stopped_at,
                value_at_stop=_value_at_epoch(experiment, trial_id, stopped_at),
                value_full=value_full,
                winner_value=winner_value,
                margin=margin,
                would_have_won=bool(would_have_won) if pd.notna(would_have_won) else margin > 0,
                from_checkpoint=bool(from_checkpoint) if pd.notna(from_checkpoint) else None,
            )
        )
    rows.sort(key=lambda row: -row.margin if not math.isnan(row.margin) else math.inf)
    return PruningAudit(
        metric=metric,
        rows=rows,
        failures=failures,
        verdict=describe_audit(rows, metric.upper()),
    )


def format_interval(interval: Interval, n_seeds: int) -> str:
    """Format a mean with the half width of its interval: ``0.8412 ± 0.0043 (3 seeds)``."""
    seeds = f"{n_seeds} seed" if n_seeds == 1 else f"{n_seeds} seeds"
    if math.isnan(interval.mean):
        return f"– ({seeds})"
    if math.isnan(interval.half_width):
        return f"{interval.mean:.4f} ({seeds})"
    return f"{interval.mean:.4f} ± {interval.half_width:.4f} ({seeds})"
