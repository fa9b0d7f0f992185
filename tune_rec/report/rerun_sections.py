"""HTML of the report's seed-repeats and pruning-audit sections, built from a ReportData.

Every value taken from the experiment folder goes through ``html.escape``. The seed-repeats
figure is embedded by the caller (see tune_rec.report.html).
"""

from __future__ import annotations

import math
from html import escape

from tune_rec.experiment import BEST_CONFIG_FILE, STOPPED
from tune_rec.report.analysis import ReportData
from tune_rec.report.reader import AUDIT_FILE, CONFIRM_FILE
from tune_rec.report.reruns import REPEAT_METRICS, AuditRow, Interval, RepeatRow
from tune_rec.report.sections import MISSING, format_value, html_table, schedule_chip

MAX_FAILURES_SHOWN = 10


def _interval_cell(interval: Interval | None) -> str:
    """Show a mean ± the half width of its 95 % interval, with the standard deviation below."""
    if interval is None or math.isnan(interval.mean):
        return MISSING
    if math.isnan(interval.half_width):
        return f"{interval.mean:.4f}<br><small class='muted'>one seed: no interval</small>"
    return (
        f'<span class="nowrap">{interval.mean:.4f} ± {interval.half_width:.4f}</span>'
        f"<br><small class='muted'>std {interval.std:.4f}</small>"
    )


def _difference(search_value: float, interval: Interval | None) -> str:
    if interval is None or math.isnan(search_value) or math.isnan(interval.mean):
        return MISSING
    return f"{search_value - interval.mean:+.4f}"


def _failure_list(failures: list[tuple[str, str]], rerun_kind: str) -> str:
    """List failed reruns as (which run, error) pairs."""
    if not failures:
        return ""
    items = "".join(
        f"<li><code>{escape(run)}</code>: {escape(error)}</li>"
        for run, error in failures[:MAX_FAILURES_SHOWN]
    )
    more = len(failures) - MAX_FAILURES_SHOWN
    more_text = f"<li>and {more} more</li>" if more > 0 else ""
    return (
        f"<p>{len(failures)} {escape(rerun_kind)} failed and are left out of the table:</p>"
        f'<ul class="errors">{items}{more_text}</ul>'
    )


def _max_epochs_text(data: ReportData) -> str:
    max_epochs = data.experiment.settings.get("max_epochs")
    return f"the full budget of {max_epochs} epochs" if max_epochs else "the full budget"


def _repeat_row_cells(row: RepeatRow, metric: str, winner_id: str | None) -> list[str]:
    winner = ' <b class="good">winner</b>' if row.trial_id == winner_id else ""
    cells = [
        str(row.rank) if row.rank is not None else MISSING,
        f'<span class="nowrap"><code>{escape(row.trial_id)}</code>{winner}</span>',
        schedule_chip(row.schedule),
        str(row.n_seeds),
        escape(format_value(row.search_value)),
    ]
    cells += [_interval_cell(row.intervals.get(key)) for key in REPEAT_METRICS]
    cells.append(_difference(row.search_value, row.intervals.get(metric)))
    cells += [_interval_cell(row.intervals.get(f"test_{key}")) for key in REPEAT_METRICS]
    return cells


def _winner_paragraph(data: ReportData) -> str:
    repeats = data.repeats
    if repeats.winner_id is None:
        return (
            f"<p>{BEST_CONFIG_FILE} is not written yet, so the winner is not known; the search "
            "writes it after the seed repeats.</p>"
        )
    row = repeats.row(repeats.winner_id)
    schedule = f" ({escape(row.schedule)})" if row is not None else ""
    text = f"<p><b>Winner: <code>{escape(repeats.winner_id)}</code>{schedule}</b>"
    if repeats.selected_by:
        text += f", selected by {escape(repeats.selected_by)}"
    text += "."
    if row is not None and row.rank is not None and row.rank > 1:
        text += (
            f" Its single seed ranked it #{row.rank} in the search; the mean over fresh seeds "
            "put it first."
        )
    interval = row.intervals.get(repeats.metric) if row is not None else None
    if interval is not None and not math.isnan(interval.mean) and not math.isnan(row.search_value):
        text += (
            f" Its validation {escape(repeats.metric.upper())} is {row.search_value:.4f} in the "
            f"search and {interval.mean:.4f} on average over {row.n_seeds} fresh seeds."
        )
    return text + "</p>"


def seed_repeats_section(data: ReportData) -> str:
    """Tabulate each repeated config's fresh-seed means and intervals, and name the winner."""
    repeats = data.repeats
    if repeats is None:
        if data.experiment.best_config is None:
            reason = "the search writes it when it finishes, after retraining its top configs"
        else:
            reason = (
                "the search ran without seed repeats (--confirm-top 0), or none of them finished"
            )
        return f"<p>No seed repeats: {CONFIRM_FILE} is not in the folder; {escape(reason)}.</p>"

    metric_label = repeats.metric.upper()
    seeds = ", ".join(str(seed) for seed in repeats.seeds) or MISSING
    search_seed = format_value(data.experiment.settings.get("seed"))
    intro = (
        f"The top {len(repeats.rows)} finished trials by single-seed validation {metric_label} "
        f"were each trained again to {_max_epochs_text(data)} with fresh seeds ({seeds}; the "
        f"search used seed {search_seed}). A search value is the maximum of many noisy "
        "estimates, so it tends to be optimistic; the fresh seeds give an estimate that the "
        "selection did not bias. Each cell gives the mean over the fresh seeds ± the half "
        "width of its 95 % Student-t interval, with the sample standard deviation below."
    )
    headers = [
        "rank",
        "trial",
        "schedule type",
        "seeds",
        f"search {metric_label} (1 seed)",
        *(f"{key.upper()} mean" for key in REPEAT_METRICS),
        "search − mean",
        *(f"test {key.upper()} mean" for key in REPEAT_METRICS),
    ]
    rows = [_repeat_row_cells(row, repeats.metric, repeats.winner_id) for row in repeats.rows]
    notes = (
        "<p>Rank is the config's place in the search by its single-seed value. The MAP@k "
        "means are validation values; search − mean is the search value minus the "
        f"fresh-seed mean of validation {escape(metric_label)}, positive where the search "
        "value was optimistic. Test metrics are computed only for these finished winners, the "
        "repeated top configs, and are never used for selection: the winner is chosen on "
        "validation metrics alone.</p>"
    )
    return (
        f"<p>{escape(intro)}</p>"
        + _winner_paragraph(data)
        + f'<div class="scroll">{html_table(headers, rows, "top")}</div>'
        + notes
        + _failure_list(
            [
                (f"{trial_id} seed {seed}" if seed else trial_id, error)
                for trial_id, seed, error in repeats.failures
            ],
            "seed repeats",
        )
    )


def _audit_row_cells(row: AuditRow) -> list[str]:
    margin_class = "bad" if row.would_have_won else "muted"
    if row.from_checkpoint is None:
        continued = MISSING
    elif row.from_checkpoint:
        continued = "its last checkpoint"
    else:
        continued = "epoch 0 (no checkpoint)"
    return [
        f"<code>{escape(row.trial_id)}</code>",
        schedule_chip(row.schedule),
        str(row.stopped_at) if row.stopped_at is not None else MISSING,
        escape(format_value(row.value_at_stop)),
        escape(format_value(row.value_full)),
        escape(format_value(row.winner_value)),
        f'<span class="{margin_class}">{row.margin:+.4f}</span>'
        if not math.isnan(row.margin)
        else MISSING,
        '<b class="bad">yes</b>' if row.would_have_won else "no",
        continued,
    ]


def pruning_audit_section(data: ReportData) -> str:
    """Tabulate the stopped trials run to the full budget, with the one-line verdict."""
    audit = data.audit
    if audit is None:
        if data.experiment.best_config is None:
            reason = "the search writes it when it finishes"
        else:
            reason = (
                "the search ran without an audit (--audit-pruned 0), the scheduler stopped no "
                "trial, or no audited trial finished"
            )
        return f"<p>No pruning audit: {AUDIT_FILE} is not in the folder; {escape(reason)}.</p>"

    metric_label = audit.metric.upper()
    n_stopped = int((data.experiment.trials["status"] == STOPPED).sum())
    margin_rule = (
        "winner's value − audited value"
        if data.experiment.mode == "min"
        else "audited value − winner's value"
    )
    intro = (
        f"The scheduler stopped {n_stopped} trials early. The audit continued "
        f"{len(audit.rows) + len(audit.failures)} of them, spread over the schedule types, to "
        f"{_max_epochs_text(data)} with the search's seed, from their last checkpoint where "
        f"one was kept. The winner's value is the winner's own last-epoch validation "
        f"{metric_label} in the search, one seed like each audited run. Margin = "
        f"{margin_rule}, so a positive margin means the audited trial would have beaten the "
        "winner."
    )
    headers = [
        "trial",
        "schedule type",
        "stopped at epoch",
        f"{metric_label} when stopped",
        f"{metric_label} at full budget",
        f"winner's {metric_label}",
        "margin",
        "would have won",
        "continued from",
    ]
    rows = [_audit_row_cells(row) for row in audit.rows]
    verdict_class = "bad" if any(row.would_have_won for row in audit.rows) else "good"
    table = html_table(headers, rows, "top") if rows else ""
    return (
        f'<p><b class="{verdict_class}">{escape(audit.verdict)}</b></p>'
        f"<p>{escape(intro)}</p>"
        + (f'<div class="scroll">{table}</div>' if table else "")
        + _failure_list(audit.failures, "audit reruns")
    )
