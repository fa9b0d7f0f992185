"""Counts, epoch budget, best trials, verdict rows and rungs of an experiment."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tune_rec.report.reader import load_experiment
from tune_rec.report.summary import (
    best_trial_ids,
    count_statuses,
    epoch_budget,
    is_log_spec,
    order_schedule_types,
    row_verdicts,
    scheduler_rungs,
    split_params,
    top_trials,
)


def test_order_schedule_types_reference_first() -> None:
    ordered = order_schedule_types(["step", "unknown", "zeta", "decrease", "fixed", "increase"])

    assert ordered == ["fixed", "increase", "decrease", "step", "zeta", "unknown"]


def test_count_statuses_all_known_present() -> None:
    trials = pd.DataFrame({"status": ["finished", "finished", "stopped", "pending"]})

    counts = count_statuses(trials)

    assert counts == {"finished": 2, "stopped": 1, "failed": 0, "running": 0, "pending": 1}


def test_epoch_budget_against_full_runs(make_experiment) -> None:
    path = make_experiment(n_trials=4, max_epochs=10, n_epochs=[10, 1, 3, 10])

    budget = epoch_budget(load_experiment(path))

    assert budget.n_epochs_run == 24
    assert budget.n_epochs_full == 40
    assert budget.fraction == pytest.approx(0.6)


def test_epoch_budget_without_settings_uses_config(make_experiment) -> None:
    path = make_experiment(n_trials=2, max_epochs=5, n_epochs=[5, 1], write_settings=False)

    budget = epoch_budget(load_experiment(path))

    assert budget.n_epochs_full == 10


def test_best_trial_prefers_finished(make_experiment) -> None:
    path = make_experiment(
        n_trials=4,
        max_epochs=6,
        schedules=("fixed",),
        statuses=["finished", "stopped", "finished", "running"],
        n_epochs=[6, 1, 6, 3],
    )
    trials = pd.read_parquet(path / "trials.parquet")
    trials["last_map@10"] = [0.5, 0.9, 0.6, 0.95]
    trials.to_parquet(path / "trials.parquet")

    best = best_trial_ids(load_experiment(path))

    assert best == {"fixed": "trial_0002"}


def test_best_trial_falls_back_to_any(make_experiment) -> None:
    path = make_experiment(
        n_trials=3,
        max_epochs=6,
        schedules=("increase",),
        statuses=["running", "stopped", "failed"],
        n_epochs=[2, 1, 1],
    )
    trials = pd.read_parquet(path / "trials.parquet")
    trials["last_map@10"] = [0.6, 0.7, 0.4]
    trials.to_parquet(path / "trials.parquet")

    best = best_trial_ids(load_experiment(path))

    assert best == {"increase": "trial_0001"}


def test_best_trial_mode_min(make_experiment) -> None:
    path = make_experiment(n_trials=3, max_epochs=6, schedules=("fixed",), n_epochs=[6, 6, 6])
    settings = json.loads((path / "settings.json").read_text())
    settings["mode"] = "min"
    (path / "settings.json").write_text(json.dumps(settings))
    trials = pd.read_parquet(path / "trials.parquet")
    trials["last_map@10"] = [0.5, 0.3, 0.7]
    trials.to_parquet(path / "trials.parquet")

    assert best_trial_ids(load_experiment(path)) == {"fixed": "trial_0001"}


def test_best_trial_one_per_schedule_type_in_order(make_experiment) -> None:
    path = make_experiment(n_trials=9, max_epochs=4, schedules=("decrease", "fixed", "increase"))

    best = best_trial_ids(load_experiment(path))

    assert list(best) == ["fixed", "increase", "decrease"]


def test_top_trials_finished_only_sorted(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9)
    experiment = load_experiment(path)

    top = top_trials(experiment, 3)

    assert set(top["status"]) == {"finished"}
    assert len(top) == min(3, (experiment.trials["status"] == "finished").sum())
    assert top["last_map@10"].is_monotonic_decreasing


def test_split_params_searched_and_fixed(make_experiment) -> None:
    experiment = load_experiment(make_experiment(n_trials=6, max_epochs=4))

    searched, fixed = split_params(experiment)

    assert searched[:4] == ["schedule", "alpha", "alpha_start", "alpha_end"]
    assert {"lr", "l2", "beta"} <= set(searched)
    assert "max_epochs" not in searched
    assert "warmup_epochs" not in searched
    assert fixed["max_epochs"] == 4
    assert fixed["seed"] == 0


def test_row_verdicts_alpha_changes_uses_components(make_experiment) -> None:
    experiment = load_experiment(make_experiment(n_trials=6, max_epochs=8))
    best = best_trial_ids(experiment)

    rows = {row.schedule: row for row in row_verdicts(experiment, best)}

    assert not rows["fixed"].alpha_changes
    assert rows["increase"].alpha_changes
    assert rows["decrease"].alpha_changes
    assert "target loss alone is no convergence signal" in rows["increase"].basis
    assert rows["fixed"].basis == "all three losses, because alpha is constant"


def test_row_verdict_converged_ignores_target_when_alpha_changes(make_experiment) -> None:
    path = make_experiment(n_trials=1, max_epochs=12, schedules=("increase",), n_epochs=[12])
    epochs = pd.read_parquet(path / "epochs.parquet")
    epochs["loss_embedding"] = 1.0
    epochs["loss_ranking"] = 0.3
    epochs["loss_target"] = epochs["alpha"] * 1.0 + 0.1 * 0.3
    epochs.to_parquet(path / "epochs.parquet")
    experiment = load_experiment(path)

    (row,) = row_verdicts(experiment, best_trial_ids(experiment))

    assert not row.components["loss_target"].converged
    assert row.converged


def test_row_verdict_fixed_needs_all_three(make_experiment) -> None:
    path = make_experiment(n_trials=1, max_epochs=12, schedules=("fixed",), n_epochs=[12])
    epochs = pd.read_parquet(path / "epochs.parquet")
    epochs["loss_embedding"] = 1.0
    epochs["loss_ranking"] = 0.3
    epochs["loss_target"] = [1.0 - 0.05 * epoch for epoch in range(12)]
    epochs.to_parquet(path / "epochs.parquet")
    experiment = load_experiment(path)

    (row,) = row_verdicts(experiment, best_trial_ids(experiment))

    assert row.components["loss_embedding"].converged
    assert not row.converged


@pytest.mark.parametrize(
    ("scheduler", "max_epochs", "expected"),
    [
        ({"type": "asha", "grace_period": 1, "reduction_factor": 3}, 50, [1, 3, 9, 27]),
        ({"type": "asha", "grace_period": 2, "reduction_factor": 2}, 20, [2, 4, 8, 16]),
        ({"type": "asha", "grace_period": 1, "reduction_factor": 3}, 27, [1, 3, 9, 27]),
        ({"type": "asha", "grace_period": 1, "reduction_factor": 3, "max_t": 9}, 50, [1, 3, 9]),
        ({"type": "asha", "grace_period": 4, "reduction_factor": 2}, 3, []),
        ({"type": "fifo"}, 50, []),
        ({"type": "asha", "grace_period": 1, "reduction_factor": 1}, 50, []),
        ({"type": "asha"}, 50, []),
    ],
)
def test_scheduler_rungs(scheduler: dict, max_epochs: int, expected: list[int]) -> None:
    settings = {"scheduler": scheduler, "max_epochs": max_epochs}

    assert scheduler_rungs(settings) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ([{"when": {}, "distribution": "loguniform", "low": 1e-3, "high": 0.1}], True),
        ([{"when": {}, "distribution": "lograndint", "low": 8, "high": 64}], True),
        (
            [
                {"when": {}, "distribution": "loguniform", "low": 0.05, "high": 2.0},
                {"when": {}, "distribution": "uniform", "low": 0.0, "high": 0.5},
            ],
            False,
        ),
        ([{"when": {}, "value": 1024}], False),
        (None, False),
    ],
)
def test_is_log_spec(spec, expected: bool) -> None:
    assert is_log_spec(spec) is expected


def test_split_params_space_constant_is_fixed(make_experiment) -> None:
    path = make_experiment(n_trials=4, max_epochs=4)
    settings = json.loads((path / "settings.json").read_text())
    settings["space"]["params"]["batch_size"] = [{"when": {}, "value": 1024}]
    (path / "settings.json").write_text(json.dumps(settings))
    trials = pd.read_parquet(path / "trials.parquet")
    trials["config.batch_size"] = 1024
    trials.to_parquet(path / "trials.parquet")

    searched, fixed = split_params(load_experiment(path))

    assert "batch_size" not in searched
    assert fixed["batch_size"] == 1024


def test_row_verdict_step_in_warmup_alpha_changes(make_experiment) -> None:
    path = make_experiment(n_trials=1, max_epochs=20, schedules=("step",), n_epochs=[3])
    epochs = pd.read_parquet(path / "epochs.parquet")
    epochs["alpha"] = 0.5
    epochs.to_parquet(path / "epochs.parquet")
    experiment = load_experiment(path)

    (row,) = row_verdicts(experiment, best_trial_ids(experiment))

    assert row.alpha_changes
