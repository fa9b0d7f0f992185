"""Plotly figures of the report: loss grid, MAP per epoch, parallel coordinates, importances,
seed repeats.

Every schedule type has one colour on every figure (SCHEDULE_COLOURS). The curves of many trials
are drawn as one trace per schedule type, with gaps between trials, so that a figure of 200
trials x 50 epochs stays small and quick to render.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tune_rec.report.importance import Importances
from tune_rec.report.reader import SCHEDULE_COLUMN, UNKNOWN_SCHEDULE, Experiment
from tune_rec.report.reruns import RepeatRow, SeedRepeats
from tune_rec.report.summary import (
    LOSS_LABELS,
    RowVerdict,
    is_choice_spec,
    is_log_spec,
    order_schedule_types,
)

# Okabe-Ito colours, distinguishable with the common kinds of colour blindness.
SCHEDULE_COLOURS: dict[str, str] = {
    "fixed": "#0072B2",
    "increase": "#D55E00",
    "decrease": "#009E73",
    "cosine": "#CC79A7",
    "exponential": "#E69F00",
    "step": "#56B4E9",
}
OTHER_COLOUR = "#666666"
LOSS_UNITS: dict[str, str] = {
    "loss_embedding": "MSE",
    "loss_ranking": "BPR loss",
    "loss_target": "weighted sum",
}
FONT = {"family": "Helvetica, Arial, sans-serif", "size": 13}
EPOCH_AXIS_TITLE = "epoch"
# Share of the other trials' points that a loss panel's y range must cover (with the best trial).
FAINT_COVERAGE = 0.96


def schedule_colour(schedule: str) -> str:
    """Return the colour of a schedule type: fixed per known type, grey for any other."""
    return SCHEDULE_COLOURS.get(schedule, OTHER_COLOUR)


def _faint(colour: str, opacity: float = 0.3) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{opacity})"


def _base_layout(figure: go.Figure, title: str, height: int) -> None:
    figure.update_layout(
        template="plotly_white",
        title={"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 16}},
        font=FONT,
        height=height,
        margin={"l": 70, "r": 30, "t": 70, "b": 60},
    )


def _gapped_lines(frame: pd.DataFrame, y_column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join the curves of several trials into one line with a gap between trials.

    ``frame`` must be sorted by trial_id and epoch.
    """
    ids = frame["trial_id"].to_numpy(dtype=object)
    x = frame["training_iteration"].to_numpy(dtype=float)
    y = frame[y_column].to_numpy(dtype=float)
    breaks = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    return (
        np.insert(x, breaks, np.nan),
        np.insert(y, breaks, np.nan),
        np.insert(ids, breaks, None),
    )


def _epochs_with_schedule(experiment: Experiment) -> pd.DataFrame:
    schedules = experiment.trials.set_index("trial_id")[SCHEDULE_COLUMN]
    epochs = experiment.epochs
    return epochs.assign(schedule=epochs["trial_id"].map(schedules).fillna(UNKNOWN_SCHEDULE))


def _robust_range(strong: np.ndarray, faint: np.ndarray) -> list[float] | None:
    """Return a y range that covers the best trial and most of the other trials' points."""
    strong = strong[np.isfinite(strong)]
    faint = faint[np.isfinite(faint)]
    if strong.size == 0 and faint.size == 0:
        return None
    parts = [strong] if strong.size else []
    if faint.size:
        tail = (1.0 - FAINT_COVERAGE) / 2
        parts.append(np.quantile(faint, [tail, 1.0 - tail]))
    low = min(float(part.min()) for part in parts)
    high = max(float(part.max()) for part in parts)
    pad = (high - low) * 0.06 or abs(high) * 0.05 or 1.0
    return [low - pad, high + pad]


def epoch_axis_range(experiment: Experiment) -> list[float]:
    """Return the x range that shows epochs 1 to max_epochs, the same on every panel."""
    max_epochs = experiment.settings.get("max_epochs")
    if not isinstance(max_epochs, int) or max_epochs < 1:
        recorded = experiment.epochs["training_iteration"].max()
        max_epochs = int(recorded) if pd.notna(recorded) else 1
    if max_epochs == 1:
        return [0.5, 1.5]
    return [1, max_epochs]


def _cell_title(schedule: str, label: str, verdict: str) -> str:
    return f"<b>{schedule}</b> · {label} · {verdict}"


def _verdict_words(row: RowVerdict, key: str) -> str:
    if key == "loss_target" and row.alpha_changes:
        return "no signal (alpha changes)"
    return "converged" if row.components[key].converged else "not converged"


def loss_grid_figure(experiment: Experiment, verdicts: list[RowVerdict]) -> go.Figure | None:
    """Draw the three losses and alpha per epoch: one row per schedule type.

    The best trial of each type is drawn strongly, the other trials of that type faintly.
    Returns None when no best trial has a recorded epoch.
    """
    if not verdicts:
        return None
    epochs = _epochs_with_schedule(experiment)
    if not epochs["trial_id"].isin([row.trial_id for row in verdicts]).any():
        return None
    keys = [*LOSS_LABELS, "alpha"]
    titles = []
    for row in verdicts:
        titles += [
            _cell_title(row.schedule, LOSS_LABELS[k], _verdict_words(row, k)) for k in LOSS_LABELS
        ]
        titles.append(f"<b>{row.schedule}</b> · alpha")

    n_rows = len(verdicts)
    x_range = epoch_axis_range(experiment)
    figure = make_subplots(
        rows=n_rows,
        cols=4,
        column_widths=[0.29, 0.29, 0.29, 0.13],
        subplot_titles=titles,
        horizontal_spacing=0.045,
        vertical_spacing=min(0.3 / n_rows, 0.12),
    )
    for index, annotation in enumerate(figure.layout.annotations):
        annotation.font = {"size": 12, "color": schedule_colour(verdicts[index // 4].schedule)}

    for row_index, row in enumerate(verdicts, start=1):
        colour = schedule_colour(row.schedule)
        group = epochs[epochs["schedule"] == row.schedule]
        best = group[group["trial_id"] == row.trial_id]
        others = group[group["trial_id"] != row.trial_id]
        for col_index, key in enumerate(keys, start=1):
            x, y, ids = _gapped_lines(others, key)
            figure.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    customdata=ids,
                    mode="lines",
                    line={"color": _faint(colour), "width": 1},
                    name=f"other {row.schedule} trials",
                    hovertemplate="trial %{customdata}<br>epoch %{x}<br>%{y:.4g}<extra></extra>",
                    showlegend=False,
                ),
                row=row_index,
                col=col_index,
            )
            figure.add_trace(
                go.Scatter(
                    x=best["training_iteration"],
                    y=best[key],
                    mode="lines+markers" if len(best) < 3 else "lines",
                    line={"color": colour, "width": 3},
                    name=f"best {row.schedule}: {row.trial_id}",
                    hovertemplate=(
                        f"best trial {row.trial_id}<br>epoch %{{x}}<br>%{{y:.4g}}<extra></extra>"
                    ),
                    showlegend=False,
                ),
                row=row_index,
                col=col_index,
            )
            y_range = _robust_range(best[key].to_numpy(float), y)
            unit = LOSS_UNITS.get(key, "alpha")
            figure.update_yaxes(title_text=unit, range=y_range, row=row_index, col=col_index)
            figure.update_xaxes(
                title_text=EPOCH_AXIS_TITLE if row_index == n_rows else None,
                range=x_range,
                row=row_index,
                col=col_index,
            )

    _base_layout(
        figure, "Loss components and alpha per epoch, by schedule type", 90 + 250 * n_rows
    )
    figure.update_layout(margin={"l": 70, "r": 20, "t": 90, "b": 60})
    return figure


def metric_per_epoch_figure(
    experiment: Experiment, rungs: list[int], metric_label: str
) -> go.Figure | None:
    """Draw the validation search metric per epoch of every trial, coloured by schedule type.

    Dotted vertical lines mark the scheduler's rungs. Returns None when no epoch has a value.
    """
    epochs = _epochs_with_schedule(experiment)
    metric = experiment.metric
    if metric not in epochs or epochs[metric].notna().sum() == 0:
        return None
    figure = go.Figure()
    for schedule in order_schedule_types(list(epochs["schedule"].unique())):
        group = epochs[epochs["schedule"] == schedule]
        x, y, ids = _gapped_lines(group, metric)
        figure.add_trace(
            go.Scatter(
                x=x,
                y=y,
                customdata=ids,
                mode="lines",
                line={"color": _faint(schedule_colour(schedule), 0.55), "width": 1.2},
                name=f"{schedule} ({group['trial_id'].nunique()} trials)",
                hovertemplate=(
                    f"{schedule}<br>trial %{{customdata}}<br>epoch %{{x}}<br>"
                    "%{y:.4f}<extra></extra>"
                ),
            )
        )
    for rung in rungs:
        figure.add_vline(x=rung, line={"color": "#888888", "dash": "dot", "width": 1})
    _base_layout(figure, f"Validation {metric_label} per epoch of every trial", 480)
    figure.update_layout(
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0.0},
        margin={"l": 70, "r": 30, "t": 100, "b": 60},
    )
    figure.update_xaxes(title_text=EPOCH_AXIS_TITLE, range=epoch_axis_range(experiment))
    figure.update_yaxes(title_text=f"validation {metric_label}")
    return figure


def _format_number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}"


def _numeric_ticks(
    numbers: pd.Series, log_scale: bool, discrete: bool
) -> tuple[list[float], list[str]]:
    """Choose the ticks of a numeric axis.

    A log axis gets its decades, a discrete axis with at most 6 values gets each value, and any
    other axis 5 evenly spaced ticks.
    """
    low, high = float(numbers.min()), float(numbers.max())
    if log_scale:
        decades = [float(power) for power in range(math.ceil(low), math.floor(high) + 1)]
        tickvals = decades if len(decades) >= 2 else list(np.linspace(low, high, 4))
        return tickvals, [f"{10**value:.2g}" for value in tickvals]
    unique = sorted(numbers.dropna().unique())
    tickvals = unique if discrete and len(unique) <= 6 else list(np.linspace(low, high, 5))
    return [float(value) for value in tickvals], [_format_number(value) for value in tickvals]


def _parallel_dimension(
    values: pd.Series, key: str, log_scale: bool, discrete: bool
) -> dict | None:
    """Build one parcoords dimension; null values sit on an extra "n/a" tick below the rest."""
    present = values.dropna()
    if present.empty:
        return None
    has_missing = bool(values.isna().any())
    if pd.api.types.is_bool_dtype(present) or not pd.api.types.is_numeric_dtype(present):
        labels = sorted(present.astype(str).unique())
        if has_missing:
            labels = ["n/a", *labels]
        codes = {label: float(code) for code, label in enumerate(labels)}
        encoded = values.map(lambda value: codes["n/a" if pd.isna(value) else str(value)])
        return {
            "label": key,
            "values": encoded.to_numpy(float),
            "tickvals": list(codes.values()),
            "ticktext": labels,
            "range": [-0.3, max(len(labels) - 1, 0) + 0.3],
        }

    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    if log_scale:
        numbers = np.log10(numbers.where(numbers > 0))
    low, high = float(numbers.min()), float(numbers.max())
    tickvals, ticktext = _numeric_ticks(numbers, log_scale, discrete)
    if has_missing:
        missing_at = low - 0.15 * (high - low or 1.0)
        numbers = numbers.fillna(missing_at)
        tickvals = [missing_at, *tickvals]
        ticktext = ["n/a", *ticktext]
        low = missing_at
    return {
        "label": f"{key} (log)" if log_scale else key,
        "values": numbers.to_numpy(float),
        "tickvals": tickvals,
        "ticktext": ticktext,
        "range": [low, high] if high > low else [low - 1, high + 1],
    }


def _is_log_scaled(values: pd.Series, spec: object) -> bool:
    """Return whether an axis should be logarithmic, as the search space or the values suggest."""
    numbers = pd.to_numeric(values.dropna(), errors="coerce")
    if numbers.empty or not pd.api.types.is_float_dtype(numbers) or numbers.min() <= 0:
        return False
    if is_log_spec(spec):
        return True
    # Values spread over two or more decades were most likely drawn log-uniformly.
    return bool(numbers.max() / numbers.min() >= 100)


def parallel_coordinates_figure(
    trials: pd.DataFrame,
    params: list[str],
    metric: str,
    metric_label: str,
    space: dict[str, object] | None = None,
) -> go.Figure | None:
    """Draw each trial as a line through its searched parameters, ending at its metric.

    A parameter gets a log axis when the search space (``space``, the parsed ``params``) names
    a log distribution for it, or when its values span two or more decades. Returns None when
    there are fewer than 2 trials or no parameter to show.
    """
    column = f"last_{metric}"
    if len(trials) < 2 or not params or column not in trials:
        return None
    space = space or {}
    dimensions = []
    for key in params:
        values = trials[f"config.{key}"]
        spec = space.get(key)
        discrete = is_choice_spec(spec) or pd.api.types.is_integer_dtype(values)
        dimension = _parallel_dimension(values, key, _is_log_scaled(values, spec), discrete)
        if dimension is not None:
            dimensions.append(dimension)
    scores = trials[column].to_numpy(float)
    dimensions.append({"label": metric_label, "values": scores})

    figure = go.Figure(
        go.Parcoords(
            line={
                "color": scores,
                "colorscale": "Viridis",
                # The last axis shows the metric, so a colour bar would only repeat it.
                "showscale": False,
            },
            dimensions=dimensions,
            labelside="bottom",
        )
    )
    _base_layout(figure, f"Searched parameters against validation {metric_label}", 500)
    figure.update_layout(margin={"l": 80, "r": 60, "t": 80, "b": 70})
    return figure


def importance_figure(importances: Importances, metric_label: str) -> go.Figure | None:
    """Draw the parameter importances as horizontal bars, largest on top."""
    if not importances.values:
        return None
    names = list(importances.values)[::-1]
    values = [importances.values[name] for name in names]
    figure = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            marker={"color": "#4C72B0"},
            text=[f"{value:.1%}" for value in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    height = 150 + 32 * len(names)
    _base_layout(
        figure,
        f"Parameter importance for validation {metric_label} ({importances.method})",
        height,
    )
    upper = max(values) * 1.15 if values and max(values) > 0 else 1.0
    figure.update_xaxes(
        title_text="importance (share of the total, unitless)", tickformat=".0%", range=[0, upper]
    )
    figure.update_yaxes(title_text=None, automargin=True)
    return figure


def _repeat_label(row: RepeatRow, winner_id: str | None) -> str:
    rank = f"#{row.rank} " if row.rank is not None else ""
    suffix = " · <b>winner</b>" if row.trial_id == winner_id else ""
    return f"{rank}{row.trial_id}<br>{row.schedule}{suffix}"


# Horizontal offsets, in config slots, that keep the three markers of a config apart.
_SEARCH_OFFSET = -0.18
_SEEDS_OFFSET = 0.18


def seed_repeats_figure(repeats: SeedRepeats | None, metric_label: str) -> go.Figure | None:
    """Draw each repeated config's fresh-seed mean with its 95 % interval beside its search value.

    The search value is the single seed that ranked the config among the top ones, so it tends
    to sit above the fresh-seed mean. Returns None without seed repeats or without a mean.
    """
    if repeats is None:
        return None
    rows = [row for row in repeats.rows if repeats.metric in row.intervals]
    rows = [row for row in rows if np.isfinite(row.intervals[repeats.metric].mean)]
    if not rows:
        return None

    slots = np.arange(len(rows), dtype=float)
    intervals = [row.intervals[repeats.metric] for row in rows]
    means = np.array([interval.mean for interval in intervals])
    above = np.nan_to_num(np.array([interval.high for interval in intervals]) - means)
    below = np.nan_to_num(means - np.array([interval.low for interval in intervals]))

    figure = go.Figure()
    seed_x = [index + _SEEDS_OFFSET for index, row in enumerate(rows) for _ in row.seed_values]
    seed_y = [value for row in rows for value in row.seed_values]
    if seed_y:
        figure.add_trace(
            go.Scatter(
                x=seed_x,
                y=seed_y,
                mode="markers",
                marker={"symbol": "circle-open", "size": 8, "color": "#555555"},
                name="each fresh seed",
                hovertemplate="fresh seed: %{y:.4f}<extra></extra>",
            )
        )
    figure.add_trace(
        go.Scatter(
            x=slots,
            y=means,
            customdata=[f"{row.trial_id}, {row.n_seeds} seeds" for row in rows],
            mode="markers",
            marker={
                "symbol": "square",
                "size": 12,
                "color": [schedule_colour(row.schedule) for row in rows],
            },
            error_y={
                "type": "data",
                "symmetric": False,
                "array": above,
                "arrayminus": below,
                "color": "#333333",
                "thickness": 1.5,
                "width": 8,
            },
            name="fresh-seed mean with 95 % interval",
            hovertemplate="%{customdata}<br>mean %{y:.4f}<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=slots + _SEARCH_OFFSET,
            y=[row.search_value for row in rows],
            customdata=[row.trial_id for row in rows],
            mode="markers",
            marker={
                "symbol": "diamond",
                "size": 12,
                "color": "rgba(0,0,0,0)",
                "line": {"color": "#B3261E", "width": 2},
            },
            name="search value (the one seed that ranked it)",
            hovertemplate="%{customdata}<br>search %{y:.4f}<extra></extra>",
        )
    )
    _base_layout(figure, f"Validation {metric_label}: search value against fresh seeds", 430)
    figure.update_layout(
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0.0},
        margin={"l": 70, "r": 30, "t": 100, "b": 70},
    )
    figure.update_xaxes(
        tickvals=slots,
        ticktext=[_repeat_label(row, repeats.winner_id) for row in rows],
        range=[-0.6, len(rows) - 0.4],
        showgrid=False,
        zeroline=False,
    )
    figure.update_yaxes(title_text=f"validation {metric_label}", tickformat=".3f")
    return figure


def n_figures(html: str) -> int:
    """Count the Plotly figures embedded in a report page."""
    return html.count('class="plotly-graph-div"')
