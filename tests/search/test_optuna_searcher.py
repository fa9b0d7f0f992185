"""What Optuna's study holds after each way a trial can end (Ray imported, not started)."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from tune_rec.search.optuna_searcher import TrialAwareOptunaSearch
from tune_rec.space import parse_search_space

SPACE = {
    "max_epochs": 10,
    "params": {
        "schedule": {"distribution": "choice", "values": ["fixed", "increase"]},
        "alpha": {
            "distribution": "uniform",
            "low": 0.5,
            "high": 1.5,
            "when": {"schedule": "fixed"},
        },
        "alpha_start": {"value": 0.0, "when": {"schedule": "increase"}},
        "alpha_end": {"value": 1.0, "when": {"schedule": "increase"}},
        "lr": {"distribution": "loguniform", "low": 0.001, "high": 0.1},
    },
}


@pytest.fixture
def searcher():
    space = parse_search_space(SPACE)
    return TrialAwareOptunaSearch(
        max_epochs=10,
        space=space.define_by_run,
        metric="map@10",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )


def _report(searcher, trial_id, values):
    for iteration, value in enumerate(values, start=1):
        searcher.on_trial_result(trial_id, {"map@10": value, "training_iteration": iteration})


def _state(searcher, trial_id):
    return searcher._ot_trials[trial_id].number, searcher._ot_study.trials


def test_config_has_plain_keys_only(searcher):
    for index in range(10):
        config = searcher.suggest(f"t{index}")
        assert not any("[" in key for key in config)
        if config["schedule"] == "fixed":
            assert "alpha_start" not in config
        else:
            assert "alpha" not in config
            assert config["alpha_end"] == 1.0


def test_stopped_trial_is_pruned_at_last_epoch(searcher):
    searcher.suggest("stopped")
    _report(searcher, "stopped", [0.5, 0.6, 0.7])
    searcher.on_trial_complete("stopped", {"map@10": 0.7, "training_iteration": 3})
    number, trials = _state(searcher, "stopped")
    assert trials[number].state == TrialState.PRUNED
    assert trials[number].last_step == 3
    assert trials[number].intermediate_values[3] == 0.7
    # Optuna gives a pruned trial its last intermediate value; TPE weighs it as pruned.
    assert trials[number].value == 0.7


def test_finished_trial_is_complete(searcher):
    searcher.suggest("done")
    _report(searcher, "done", [0.5] * 10)
    searcher.on_trial_complete("done", {"map@10": 0.8, "training_iteration": 10})
    number, trials = _state(searcher, "done")
    assert trials[number].state == TrialState.COMPLETE
    assert trials[number].value == 0.8


@pytest.mark.parametrize("error, value", [(True, 0.5), (False, math.nan), (False, math.inf)])
def test_failed_or_nan_trial_is_failed(searcher, error, value):
    searcher.suggest("bad")
    _report(searcher, "bad", [0.5, value])
    searcher.on_trial_complete("bad", {"map@10": value, "training_iteration": 2}, error=error)
    number, trials = _state(searcher, "bad")
    assert trials[number].state == TrialState.FAIL
    assert not any(t.state == TrialState.RUNNING for t in trials)


def test_nan_result_not_reported_to_optuna(searcher):
    searcher.suggest("nan")
    _report(searcher, "nan", [0.5, math.nan])
    number, trials = _state(searcher, "nan")
    assert trials[number].intermediate_values == {1: 0.5}


def test_checkpoints_at_asha_rungs():
    from tune_rec.search.tuner import checkpoint_epochs

    space = parse_search_space(
        {
            **SPACE,
            "max_epochs": 30,
            "scheduler": {"type": "asha", "grace_period": 3, "reduction_factor": 3},
        }
    )
    assert checkpoint_epochs(space, every=10) == [3, 9, 10, 20, 27, 30]
    fifo = parse_search_space({**SPACE, "scheduler": {"type": "fifo"}})
    assert checkpoint_epochs(fifo, every=5) == [5, 10]
