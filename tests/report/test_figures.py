"""Figures of the report: layout, traces and the fixed colour of each schedule type."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tune_rec.report.figures import (
    OTHER_COLOUR,
    SCHEDULE_COLOURS,
    _gapped_lines,
    importance_figure,
    loss_grid_figure,
    metric_per_epoch_figure,
    parallel_coordinates_figure,
    schedule_colour,
    seed_repeats_figure,
)
from tune_rec.report.importance import Importances
from tune_rec.report.reader import load_experiment
from tune_rec.report.reruns import seed_repeats
from tune_rec.report.summary import best_trial_ids, row_verdicts
from tune_rec.schedules import SCHEDULE_TYPES


def _hex_to_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def test_schedule_colour_fixed_and_distinct() -> None:
    colours = [schedule_colour(schedule) for schedule in SCHEDULE_TYPES]

    assert len(set(colours)) == len(SCHEDULE_TYPES)
    assert schedule_colour("fixed") == SCHEDULE_COLOURS["fixed"]
    assert schedule_colour("no-such-type") == OTHER_COLOUR
    assert OTHER_COLOUR not in colours


def test_gapped_lines_separate_trials() -> None:
    frame = pd.DataFrame(
        {
            "trial_id": ["a", "a", "b", "b", "b"],
            "training_iteration": [1, 2, 1, 2, 3],
            "loss": [1.0, 0.5, 2.0, 1.5, 1.0],
        }
    )

    x, y, ids = _gapped_lines(frame, "loss")

    assert len(x) == 6
    assert math.isnan(x[2])
    assert math.isnan(y[2])
    assert ids[2] is None
    assert list(ids[:2]) == ["a", "a"]
    assert list(y[3:]) == [2.0, 1.5, 1.0]


def _loss_grid(make_experiment, **kwargs):
    experiment = load_experiment(make_experiment(**kwargs))
    verdicts = row_verdicts(experiment, best_trial_ids(experiment))
    return experiment, verdicts, loss_grid_figure(experiment, verdicts)


def test_loss_grid_one_row_per_schedule_type(make_experiment) -> None:
    _, verdicts, figure = _loss_grid(
        make_experiment, n_trials=12, max_epochs=8, schedules=("fixed", "increase", "step")
    )

    titles = [annotation.text for annotation in figure.layout.annotations]
    assert [row.schedule for row in verdicts] == ["fixed", "increase", "step"]
    assert len(figure.data) == 3 * 4 * 2
    assert len(titles) == 12
    assert titles[0].startswith("<b>fixed</b> · embedding loss")
    assert titles[3] == "<b>fixed</b> · alpha"
    assert titles[6].startswith("<b>increase</b> · target loss · no signal")


def test_loss_grid_best_trial_drawn_strongly(make_experiment) -> None:
    _, verdicts, figure = _loss_grid(make_experiment, n_trials=9, max_epochs=8)

    strong = [trace for trace in figure.data if trace.line.width == 3]
    faint = [trace for trace in figure.data if trace.line.width == 1]
    assert len(strong) == len(faint) == 3 * 4
    for row in verdicts:
        names = {trace.name for trace in strong if row.trial_id in trace.name}
        assert names == {f"best {row.schedule}: {row.trial_id}"}
    increase = next(trace for trace in strong if "increase" in trace.name)
    assert increase.line.color == SCHEDULE_COLOURS["increase"]


def test_loss_grid_axes_titled_with_units(make_experiment) -> None:
    _, _, figure = _loss_grid(make_experiment, n_trials=3, max_epochs=8)

    y_titles = {figure.layout[f"yaxis{index}"].title.text for index in range(1, 5)}
    x_titles = [figure.layout[f"xaxis{index}"].title.text for index in range(1, 13)]
    assert y_titles == {"MSE", "BPR loss", "weighted sum", "alpha"}
    assert x_titles[-4:] == ["epoch"] * 4
    assert x_titles[:8] == [None] * 8
    assert list(figure.layout.xaxis1.range) == [1, 8]


def test_loss_grid_empty_without_trials() -> None:
    assert loss_grid_figure(None, []) is None


def test_metric_figure_one_trace_per_type_with_rungs(make_experiment) -> None:
    experiment = load_experiment(make_experiment(n_trials=9, max_epochs=12))

    figure = metric_per_epoch_figure(experiment, [1, 3, 9], "MAP@10")

    assert [trace.name.split(" ")[0] for trace in figure.data] == ["fixed", "increase", "decrease"]
    assert len(figure.layout.shapes) == 3
    assert figure.layout.yaxis.title.text == "validation MAP@10"
    red, green, blue = _hex_to_rgb(SCHEDULE_COLOURS["decrease"])
    assert figure.data[2].line.color.startswith(f"rgba({red},{green},{blue},")


def test_metric_figure_none_without_values(make_experiment) -> None:
    experiment = load_experiment(make_experiment(n_trials=3, max_epochs=4, write_epochs=False))

    assert metric_per_epoch_figure(experiment, [], "MAP@10") is None


def test_parallel_coordinates_log_axis_and_missing(make_experiment) -> None:
    experiment = load_experiment(make_experiment(n_trials=9, max_epochs=4))
    space = {"lr": [{"when": {}, "distribution": "loguniform", "low": 1e-4, "high": 1e-1}]}

    figure = parallel_coordinates_figure(
        experiment.trials, ["schedule", "alpha", "lr"], "map@10", "MAP@10", space
    )

    dimensions = {dimension.label: dimension for dimension in figure.data[0].dimensions}
    assert list(dimensions) == ["schedule", "alpha", "lr (log)", "MAP@10"]
    assert list(dimensions["schedule"].ticktext) == ["decrease", "fixed", "increase"]
    assert dimensions["alpha"].ticktext[0] == "n/a"
    lr = experiment.trials["config.lr"].to_numpy()
    np.testing.assert_allclose(dimensions["lr (log)"].values, np.log10(lr))


def test_parallel_coordinates_needs_two_trials(make_experiment) -> None:
    experiment = load_experiment(make_experiment(n_trials=1, max_epochs=4))

    assert parallel_coordinates_figure(experiment.trials, ["lr"], "map@10", "MAP@10") is None


def test_importance_figure_largest_on_top() -> None:
    importances = Importances({"lr": 0.7, "l2": 0.2, "beta": 0.1}, "PED-ANOVA", "x", 10)

    figure = importance_figure(importances, "MAP@10")

    assert list(figure.data[0].y) == ["beta", "l2", "lr"]
    assert "PED-ANOVA" in figure.layout.title.text


def test_importance_figure_none_when_empty() -> None:
    assert importance_figure(Importances({}, "none", "x", 0), "MAP@10") is None


def test_seed_repeats_figure_traces(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=3, n_confirm_seeds=4)
    repeats = seed_repeats(load_experiment(path))

    figure = seed_repeats_figure(repeats, "MAP@10")

    seeds, means, search = figure.data
    assert len(seeds.y) == 3 * 4
    intervals = [row.intervals["map@10"] for row in repeats.rows]
    assert list(means.y) == [interval.mean for interval in intervals]
    assert np.allclose(means.error_y.array, [i.high - i.mean for i in intervals])
    assert np.allclose(means.error_y.arrayminus, [i.mean - i.low for i in intervals])
    assert list(means.marker.color) == [schedule_colour(row.schedule) for row in repeats.rows]
    assert list(search.y) == [row.search_value for row in repeats.rows]
    # The three markers of a config sit apart, around the config's tick.
    assert list(figure.layout.xaxis.tickvals) == [0.0, 1.0, 2.0]
    assert search.x[0] < means.x[0] < seeds.x[0]
    labels = list(figure.layout.xaxis.ticktext)
    winner_index = [row.trial_id for row in repeats.rows].index(repeats.winner_id)
    assert labels[winner_index].endswith("<b>winner</b>")
    assert sum("winner" in label for label in labels) == 1


def test_seed_repeats_figure_without_repeats(make_experiment) -> None:
    experiment = load_experiment(make_experiment(n_trials=6, max_epochs=5))

    assert seed_repeats_figure(seed_repeats(experiment), "MAP@10") is None
    assert seed_repeats_figure(None, "MAP@10") is None


def test_seed_repeats_figure_one_seed(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=2, n_confirm_seeds=1)

    figure = seed_repeats_figure(seed_repeats(load_experiment(path)), "MAP@10")

    means = figure.data[1]
    assert list(means.error_y.array) == [0.0, 0.0]
