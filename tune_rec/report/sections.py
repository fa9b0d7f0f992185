"""HTML fragments of the report's sections, built from a ReportData.

Every value taken from the experiment folder goes through ``html.escape``. The figures are
embedded by the caller (see tune_rec.report.html), so these functions only return text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

import pandas as pd

from tune_rec.experiment import FAILED, STOPPED
from tune_rec.report.analysis import ReportData
from tune_rec.report.convergence import describe_rule
from tune_rec.report.figures import FAINT_COVERAGE, schedule_colour
from tune_rec.report.reader import METRIC_KEYS, SCHEDULE_COLUMN
from tune_rec.report.reference import REFERENCE_BETA, REFERENCE_METRICS, REFERENCE_TABLE
from tune_rec.report.reruns import best_config_source, format_interval
from tune_rec.report.summary import LOSS_LABELS, order_schedule_types

MISSING = "–"
MAX_ERRORS_SHOWN = 10


def format_value(value: Any) -> str:
    """Format a table value: 4 decimals, scientific notation for small floats, – for null."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (
        isinstance(value, float) and value.is_integer() and abs(value) >= 1
    ):
        return f"{int(value)}"
    if isinstance(value, float):
        return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    if hasattr(value, "item"):
        return format_value(value.item())
    return str(value)


def format_param(value: Any) -> str:
    """Format a config value: 3 significant digits for floats, – for null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.3g}"
    return format_value(value)


def html_table(headers: Sequence[str], rows: Iterable[Sequence[str]], css_class: str = "") -> str:
    """Build an HTML table. Header names are escaped here, and cells must already be HTML."""
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    class_attribute = f' class="{css_class}"' if css_class else ""
    return f"<table{class_attribute}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def schedule_chip(schedule: str) -> str:
    """Return the schedule type's name after a square of its colour, as HTML."""
    colour = schedule_colour(schedule)
    return (
        f'<span class="nowrap"><span class="chip" style="background:{colour}"></span>'
        f"{escape(schedule)}</span>"
    )


def _describe_settings(settings: Any) -> str:
    """Render a searcher or scheduler setting as 'type (key=value, ...)'."""
    if not isinstance(settings, dict):
        return escape(format_value(settings))
    kind = settings.get("type", "unknown")
    details = ", ".join(
        f"{key}={format_value(value)}" for key, value in settings.items() if key != "type"
    )
    return escape(f"{kind} ({details})" if details else str(kind))


def header_section(data: ReportData) -> str:
    """Describe the experiment: name, data, protocol, searcher, scheduler, counts, budget."""
    experiment = data.experiment
    settings = experiment.settings
    data_settings = settings.get("data") if isinstance(settings.get("data"), dict) else {}
    name = settings.get("name") or experiment.path.name
    dataset = data_settings.get("path") or data_settings.get("dataset") or MISSING
    split = (
        f"{format_value(data_settings.get('split'))} split; relevant when rating ≥ "
        f"{format_value(data_settings.get('relevance_threshold'))}"
    )
    sizes = ", ".join(
        f"{key.removeprefix('n_')} {format_value(data_settings.get(key))}"
        for key in ("n_users", "n_items", "n_train", "n_validation", "n_test")
        if key in data_settings
    )
    versions = settings.get("versions")
    version_text = (
        ", ".join(f"{key} {value}" for key, value in versions.items())
        if isinstance(versions, dict)
        else MISSING
    )
    rows = [
        ("dataset", escape(str(dataset))),
        (
            "checksum (SHA-256)",
            f"<code>{escape(str(data_settings.get('checksum', MISSING)))}</code>",
        ),
        ("split", escape(split)),
        ("sizes", escape(sizes or MISSING)),
        (
            "protocol",
            escape(
                f"{format_value(settings.get('protocol'))}, AP@k normalisation "
                f"{format_value(settings.get('normalisation'))}"
            ),
        ),
        ("metric", escape(f"validation {experiment.metric}, mode {experiment.mode}")),
        ("searcher", _describe_settings(settings.get("searcher", MISSING))),
        ("scheduler", _describe_settings(settings.get("scheduler", MISSING))),
        (
            "budget",
            escape(
                f"max_epochs {format_value(settings.get('max_epochs'))}, num_samples "
                f"{format_value(settings.get('num_samples'))}, seed "
                f"{format_value(settings.get('seed'))}"
            ),
        ),
        ("versions", escape(version_text)),
    ]
    settings_table = "".join(
        f"<tr><th>{escape(key)}</th><td>{value}</td></tr>" for key, value in rows
    )

    notes = "".join(f"<li>{escape(note)}</li>" for note in experiment.notes)
    notes_html = f'<div class="notes"><ul>{notes}</ul></div>' if notes else ""
    created = escape(str(settings.get("created_at", MISSING)))
    return (
        f"<h1>Experiment {escape(str(name))}</h1>"
        f'<p class="muted">Created {created}. Folder <code>{escape(str(experiment.path))}'
        "</code>. Epochs are counted from 1 (Ray Tune's training_iteration) on every axis.</p>"
        f"{notes_html}"
        f'<div class="columns"><div><h2>Settings</h2><table class="keyvalue">{settings_table}'
        f"</table></div><div>{_trials_summary(data)}</div></div>"
    )


def _trials_summary(data: ReportData) -> str:
    counts = data.status_counts
    n_trials = sum(counts.values())
    labels = {STOPPED: "stopped early"}
    rows = "".join(
        f"<tr><th>{escape(labels.get(status, status))}</th><td>{count}</td></tr>"
        for status, count in counts.items()
    )
    num_samples = data.experiment.settings.get("num_samples")
    planned = f" of {num_samples} planned" if isinstance(num_samples, int) else ""

    budget = data.budget
    if budget.fraction is None:
        budget_text = f"The trials ran {budget.n_epochs_run} epochs; max_epochs is unknown."
    else:
        budget_text = (
            f"The trials ran {budget.n_epochs_run} epochs of the {budget.n_epochs_full} that "
            f"running every trial to max_epochs would have cost ({n_trials} trials x max_epochs): "
            f"{budget.fraction:.1%}, a saving of {1 - budget.fraction:.1%}."
        )
    return (
        f'<h2>Trials</h2><table class="keyvalue"><tr><th>trials</th><td>{n_trials}{planned}'
        f"</td></tr>{rows}</table><p>{escape(budget_text)}</p>{_winner_line(data)}"
        f"{_failed_trials(data)}"
    )


def _winner_line(data: ReportData) -> str:
    """Name the winner of best_config.yaml and how it was selected, where the file exists."""
    source = best_config_source(data.experiment)
    if source.get("trial_id") is None:
        return ""
    text = f"<p>Winner (best_config.yaml): <code>{escape(str(source['trial_id']))}</code>"
    if source.get("selected_by"):
        text += f", selected by {escape(str(source['selected_by']))}"
    if source.get("interrupted"):
        text += ", chosen when the search was interrupted"
    return text + ".</p>"


def _failed_trials(data: ReportData) -> str:
    trials = data.experiment.trials
    failed = trials[trials["status"] == FAILED]
    if failed.empty:
        return ""
    items = "".join(
        f"<li><code>{escape(str(row.trial_id))}</code>: {escape(format_value(row.error))}</li>"
        for row in failed.head(MAX_ERRORS_SHOWN).itertuples()
    )
    more = len(failed) - MAX_ERRORS_SHOWN
    more_text = f"<li>and {more} more</li>" if more > 0 else ""
    return f'<p>Failed trials:</p><ul class="errors">{items}{more_text}</ul>'


def loss_caption(data: ReportData) -> str:
    """Explain how to read the loss grid."""
    return (
        "<p>One row per schedule type. The thick line is the best trial of the type (the best "
        f"last validation {escape(data.metric_label)} among its finished trials, else among all "
        "its trials); the faint lines are its other trials. The embedding loss is the mean "
        "squared error of the predicted ratings, the ranking loss is BPR, and the target loss "
        "is alpha x embedding + beta x ranking + l2 x squared norms. The narrow right-hand panel "
        "is the alpha schedule. Each y range covers the best trial and the middle "
        f"{FAINT_COVERAGE:.0%} of the other trials' points; double-click a panel to see all "
        "of them.</p>"
    )


def convergence_section(data: ReportData) -> str:
    """Tabulate the convergence verdict of each best trial's three losses."""
    if not data.verdicts:
        return "<p>No trial has recorded an epoch yet.</p>"
    rows = []
    for row in data.verdicts:
        cells = [
            schedule_chip(row.schedule),
            f"<code>{escape(row.trial_id)}</code>",
            str(row.n_epochs),
        ]
        for key in LOSS_LABELS:
            verdict = row.components[key]
            word = "converged" if verdict.converged else "not converged"
            css = "good" if verdict.converged else "bad"
            if key == "loss_target" and row.alpha_changes:
                word = "not used: alpha changes"
                css = "muted"
            reason = f"<small>{escape(verdict.reason)}</small>"
            cells.append(f'<span class="{css}">{escape(word)}</span><br>{reason}')
        overall = "converged" if row.converged else "not converged"
        css = "good" if row.converged else "bad"
        cells.append(
            f'<b class="{css}">{overall}</b><br><small>based on {escape(row.basis)}</small>'
        )
        rows.append(cells)
    headers = ["schedule type", "best trial", "epochs", *LOSS_LABELS.values(), "verdict"]
    rule = describe_rule(data.window, data.tolerance)
    return (
        f"<p>{escape(rule)} Where alpha changes during training, the target loss moves with "
        "alpha even when the model has stopped learning, so it is no convergence signal: the "
        "row's verdict then rests on the embedding and ranking losses.</p>"
        + html_table(headers, rows, "verdicts")
    )


def _alpha_schedule(trial: pd.Series) -> str:
    """Describe a trial's alpha schedule: alpha, or alpha_start → alpha_end."""
    alpha = trial.get("config.alpha")
    if alpha is not None and pd.notna(alpha):
        return format_param(alpha)
    start, end = trial.get("config.alpha_start"), trial.get("config.alpha_end")
    if start is None or end is None or pd.isna(start) or pd.isna(end):
        return MISSING
    text = f"{format_param(start)} → {format_param(end)}"
    warmup = trial.get("config.warmup_epochs")
    if warmup is not None and pd.notna(warmup):
        text += f" after {format_param(warmup)} epochs"
    return text


def reference_section(data: ReportData) -> str:
    """Set the best trial of each schedule type beside the reference study's Table 1."""
    experiment = data.experiment
    trials = experiment.trials.set_index("trial_id")
    types = order_schedule_types([*REFERENCE_TABLE, *data.best_ids])
    rows = []
    for schedule in types:
        reference = REFERENCE_TABLE.get(schedule)
        trial_id = data.best_ids.get(schedule)
        trial = trials.loc[trial_id] if trial_id is not None else None
        cells = [
            schedule_chip(schedule),
            f'<span class="wrap">{escape(reference.setting)}</span>' if reference else MISSING,
            f"<code>{escape(trial_id)}</code> ({escape(str(trial['status']))})"
            if trial is not None
            else "no trial",
            '<span class="wrap">'
            + escape(
                f"alpha {_alpha_schedule(trial)}, beta {format_param(trial.get('config.beta'))}"
            )
            + "</span>"
            if trial is not None
            else MISSING,
        ]
        repeated = data.repeats.row(trial_id) if data.repeats and trial_id else None
        for key in REFERENCE_METRICS:
            ours = trial.get(f"last_{key}") if trial is not None else None
            theirs = reference.values[key] if reference else None
            text = format_value(ours)
            if ours is not None and theirs is not None and pd.notna(ours):
                text += f' <small class="muted">({ours - theirs:+.3f})</small>'
            if repeated is not None and key in repeated.intervals:
                interval = format_interval(repeated.intervals[key], repeated.n_seeds)
                text += f"<br><small>{escape(interval)}</small>"
            cells.append(text)
        for key in REFERENCE_METRICS:
            # As published: 0.8375 has four decimals, the other values three.
            cells.append(f"{reference.values[key]:g}" if reference else MISSING)
        rows.append(cells)
    ours_headers = [f"ours {key.upper()}" for key in REFERENCE_METRICS]
    study_headers = [f"study {key.upper()}" for key in REFERENCE_METRICS]
    headers = [
        "schedule type",
        "study setting",
        "our best trial",
        "its config",
        *ours_headers,
        *study_headers,
    ]

    data_settings = (
        experiment.settings.get("data")
        if isinstance(experiment.settings.get("data"), dict)
        else {}
    )
    protocol = (
        f"Ours: last-epoch validation MAP@k of the best trial of each type, protocol "
        f"{format_value(experiment.settings.get('protocol'))}, AP@k normalisation "
        f"{format_value(experiment.settings.get('normalisation'))}, relevant when rating ≥ "
        f"{format_value(data_settings.get('relevance_threshold'))}, "
        f"{format_value(data_settings.get('split'))} split. Differences (ours − study) are in "
        "brackets."
    )
    if data.repeats is not None and any(data.repeats.row(i) for i in data.best_ids.values()):
        protocol += (
            " Where a type's best trial was among the configs retrained with fresh seeds, the "
            "line below its value gives the mean over those seeds ± the half width of its 95 % "
            "interval (section 6)."
        )
    return (
        f'<div class="scroll">{html_table(headers, rows, "reference")}</div>'
        + f"<p>{escape(protocol)} The study's values are those of its Table 1 (MovieLens-100K, "
        f"beta = {REFERENCE_BETA}). The study does not publish its split, its relevance "
        "threshold or its MAP@k definition, so its numbers are a reference and not a "
        "like-for-like comparison.</p>"
    )


def metric_caption(data: ReportData) -> str:
    """Explain the per-epoch metric figure and the scheduler's rungs."""
    text = (
        f"Validation {data.metric_label} after each epoch of every trial, coloured by schedule "
        "type. A line that ends early is a trial that the scheduler stopped, that failed or "
        "that is still running."
    )
    if data.rungs:
        text += (
            " Dotted vertical lines mark the scheduler's rungs (epochs "
            + ", ".join(str(rung) for rung in data.rungs)
            + "), where ASHA compares trials and stops the weaker ones."
        )
    return f"<p>{escape(text)}</p>"


_ALPHA_KEYS = ("alpha", "alpha_start", "alpha_end", "warmup_epochs")


def _metric_header(column: str) -> str:
    prefix, _, key = column.partition("_")
    label = key.upper() if key.startswith(("map", "ndcg")) else key
    return {"last": label, "best": f"best {label}", "test": f"test {label}"}[prefix]


def top_configs_section(data: ReportData) -> str:
    """Tabulate the best finished trials with their searched parameters and metrics."""
    top = data.top
    if top.empty:
        return (
            f"<p>No trial has finished with a value of {escape(data.experiment.metric)} yet, so "
            "there is no top config to show.</p>"
        )
    test_columns = [
        f"test_{key}"
        for key in METRIC_KEYS
        if f"test_{key}" in top and top[f"test_{key}"].notna().any()
    ]
    metric_columns = [f"last_{key}" for key in METRIC_KEYS if f"last_{key}" in top]
    metric_columns.append(f"best_{data.experiment.metric}")
    show_alpha = any(key in data.searched for key in _ALPHA_KEYS)
    params = [key for key in data.searched if key not in (*_ALPHA_KEYS, "schedule")]

    headers = ["rank", "trial", "epochs", "schedule"]
    headers += ["alpha schedule"] if show_alpha else []
    headers += [*params, *map(_metric_header, metric_columns)]
    rows = []
    winner_id = _winner_id(data)
    for rank, (_, trial) in enumerate(top.iterrows(), start=1):
        winner = ' <b class="good">winner</b>' if str(trial["trial_id"]) == winner_id else ""
        cells = [
            str(rank),
            f'<span class="nowrap"><code>{escape(str(trial["trial_id"]))}</code>{winner}</span>',
            str(trial["n_epochs"]),
            schedule_chip(str(trial[SCHEDULE_COLUMN])),
        ]
        if show_alpha:
            cells.append(escape(_alpha_schedule(trial)))
        cells += [escape(format_param(trial.get(f"config.{key}"))) for key in params]
        cells += [escape(format_value(trial.get(column))) for column in metric_columns]
        rows.append(cells)

    fixed = ", ".join(f"{key} = {format_param(value)}" for key, value in data.fixed.items())
    notes = [
        f"Ranked by validation {data.metric_label} at the last epoch; winners are selected on "
        "validation metrics only. The metric columns are validation values at the last epoch, "
        f"except best {data.metric_label}, the best epoch's value."
    ]
    if show_alpha:
        notes.append(
            "The alpha schedule column gives alpha for fixed schedules and alpha_start → "
            "alpha_end for the others (step: after warmup_epochs epochs)."
        )
    if winner_id is not None and data.repeats is not None:
        notes.append(
            "The winner is the config with the best mean validation value over fresh seeds "
            "(section 6), so it need not be ranked first here."
        )
    if fixed:
        notes.append(f"Set to one value in every trial: {fixed}.")
    notes_html = "".join(f"<p>{escape(note)}</p>" for note in notes)
    return (
        f'<div class="scroll">{html_table(headers, rows, "top")}</div>{notes_html}'
        + _test_metrics_table(top, test_columns)
    )


def _winner_id(data: ReportData) -> str | None:
    trial_id = best_config_source(data.experiment).get("trial_id")
    return str(trial_id) if trial_id is not None else None


def _test_metrics_table(top: pd.DataFrame, test_columns: list[str]) -> str:
    """Tabulate the test metrics of the top trials that have them, apart from the ranking."""
    if not test_columns:
        return ""
    with_test = top[top[test_columns].notna().any(axis=1)]
    rows = [
        [f"<code>{escape(str(trial['trial_id']))}</code>"]
        + [escape(format_value(trial.get(column))) for column in test_columns]
        for _, trial in with_test.iterrows()
    ]
    headers = ["trial", *map(_metric_header, test_columns)]
    return (
        "<p>Test split, computed only for finished winners and never used to rank them:</p>"
        + html_table(headers, rows, "top")
    )


def importance_caption(data: ReportData) -> str:
    """Say where the importances come from, which evaluator made them and what was left out."""
    importances = data.importances
    if importances.values:
        text = (
            f"Importance of each parameter for validation {data.metric_label}, computed with "
            f"{importances.method} (Optuna) over the {importances.n_trials} completed trials of "
            f"{importances.source}."
        )
    else:
        text = "No parameter importances were computed."
    notes = " ".join(importances.notes)
    return f"<p>{escape(text)} {escape(notes)}</p>"
