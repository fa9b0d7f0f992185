"""Everything the report shows about one experiment, computed once for the HTML and the PNGs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from tune_rec.errors import InvalidInputError
from tune_rec.experiment import FINISHED
from tune_rec.report import figures
from tune_rec.report.convergence import DEFAULT_TOLERANCE, DEFAULT_WINDOW
from tune_rec.report.importance import Importances, compute_importances
from tune_rec.report.reader import Experiment
from tune_rec.report.reruns import PruningAudit, SeedRepeats, pruning_audit, seed_repeats
from tune_rec.report.summary import (
    EpochBudget,
    RowVerdict,
    best_trial_ids,
    count_statuses,
    epoch_budget,
    row_verdicts,
    scheduler_rungs,
    space_params,
    split_params,
    top_trials,
)


@dataclass
class ReportData:
    """The numbers, tables and figures of one report."""

    experiment: Experiment
    metric_label: str
    """The search metric as printed, for example MAP@10."""
    status_counts: dict[str, int]
    budget: EpochBudget
    best_ids: dict[str, str]
    """Best trial of each schedule type, in display order."""
    verdicts: list[RowVerdict]
    window: int
    tolerance: float
    rungs: list[int]
    top: pd.DataFrame
    searched: list[str]
    fixed: dict[str, Any]
    importances: Importances
    parallel_note: str
    repeats: SeedRepeats | None = None
    """The seed repeats of the top configs; None until the search has written them."""
    audit: PruningAudit | None = None
    """The audited stopped trials; None when the search audited none."""
    figures: dict[str, go.Figure] = field(default_factory=dict)
    """Figures by name, in page order; a figure without data to draw is absent."""


def _parallel_trials(experiment: Experiment) -> tuple[pd.DataFrame, str]:
    """Return the trials for the parallel-coordinates plot and a sentence saying which."""
    trials = experiment.trials
    column = f"last_{experiment.metric}"
    if column not in trials:
        return trials.iloc[0:0], "No trial has a value of the search metric yet."
    scored = trials[trials[column].notna()]
    finished = scored[scored["status"] == FINISHED]
    if len(finished) >= 2:
        return finished, f"Each line is one of the {len(finished)} finished trials."
    return scored, (
        "Fewer than 2 trials have finished, so every trial with a value is drawn, including "
        "trials stopped early or still running, at their last epoch."
    )


def analyse_experiment(
    experiment: Experiment,
    *,
    top_k: int = 10,
    window: int = DEFAULT_WINDOW,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ReportData:
    """Compute the report's numbers and build its figures.

    Raises:
        InvalidInputError: ``top_k`` is not a positive integer, or the convergence rule's
            ``window`` or ``tolerance`` is invalid.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidInputError(f"top_k must be an integer of at least 1; got {top_k!r}")

    metric_label = experiment.metric.upper()
    best_ids = best_trial_ids(experiment)
    verdicts = row_verdicts(experiment, best_ids, window=window, tolerance=tolerance)
    rungs = scheduler_rungs(experiment.settings)
    searched, fixed = split_params(experiment)
    importances = compute_importances(experiment)
    parallel, parallel_note = _parallel_trials(experiment)
    repeats = seed_repeats(experiment)

    candidates = {
        "losses": figures.loss_grid_figure(experiment, verdicts),
        "metric_per_epoch": figures.metric_per_epoch_figure(experiment, rungs, metric_label),
        "parallel_coordinates": figures.parallel_coordinates_figure(
            parallel, searched, experiment.metric, metric_label, space_params(experiment.settings)
        ),
        "importances": figures.importance_figure(importances, metric_label),
        "seed_repeats": figures.seed_repeats_figure(
            repeats, repeats.metric.upper() if repeats else metric_label
        ),
    }
    return ReportData(
        experiment=experiment,
        metric_label=metric_label,
        status_counts=count_statuses(experiment.trials),
        budget=epoch_budget(experiment),
        best_ids=best_ids,
        verdicts=verdicts,
        window=window,
        tolerance=tolerance,
        rungs=rungs,
        top=top_trials(experiment, top_k),
        searched=searched,
        fixed=fixed,
        importances=importances,
        parallel_note=parallel_note,
        repeats=repeats,
        audit=pruning_audit(experiment),
        figures={name: figure for name, figure in candidates.items() if figure is not None},
    )
