import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tune_rec.schedules import SCHEDULE_PARAMS, SCHEDULE_TYPES, alpha_at

alphas = st.floats(min_value=0.01, max_value=10.0)
budgets = st.integers(min_value=2, max_value=200)


def test_fixed_is_constant():
    values = [alpha_at("fixed", t, 10, {"alpha": 0.7}) for t in range(10)]
    assert values == [0.7] * 10


@pytest.mark.parametrize("schedule", ["increase", "decrease", "cosine", "exponential"])
def test_ramp_reaches_ends(schedule):
    params = {"alpha_start": 0.2, "alpha_end": 1.5}
    assert alpha_at(schedule, 0, 30, params) == pytest.approx(0.2)
    assert alpha_at(schedule, 29, 30, params) == pytest.approx(1.5)


def test_linear_midpoint():
    params = {"alpha_start": 0.0, "alpha_end": 1.0}
    assert alpha_at("increase", 5, 11, params) == pytest.approx(0.5)
    assert alpha_at("decrease", 5, 11, {"alpha_start": 1.0, "alpha_end": 0.0}) == 0.5


def test_exponential_constant_ratio():
    params = {"alpha_start": 0.1, "alpha_end": 1.0}
    values = [alpha_at("exponential", t, 5, params) for t in range(5)]
    ratios = [b / a for a, b in zip(values, values[1:], strict=False)]
    assert ratios == pytest.approx([ratios[0]] * 4)


def test_step_switches_after_warmup():
    params = {"alpha_start": 0.0, "alpha_end": 1.0, "warmup_epochs": 3}
    values = [alpha_at("step", t, 6, params) for t in range(6)]
    assert values == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]


def test_single_epoch_budget_uses_start():
    assert alpha_at("increase", 0, 1, {"alpha_start": 0.3, "alpha_end": 1.0}) == 0.3


def test_unknown_schedule_rejected():
    with pytest.raises(ValueError, match="schedule must be one of .*got 'linear'"):
        alpha_at("linear", 0, 10, {})


def test_every_type_has_params():
    assert set(SCHEDULE_PARAMS) == set(SCHEDULE_TYPES)


@given(start=alphas, end=alphas, budget=budgets, data=st.data())
def test_ramps_stay_between_ends(start, end, budget, data):
    epoch = data.draw(st.integers(min_value=0, max_value=budget - 1))
    params = {"alpha_start": start, "alpha_end": end}
    low, high = min(start, end), max(start, end)
    for schedule in ("increase", "cosine", "exponential"):
        value = alpha_at(schedule, epoch, budget, params)
        assert low - 1e-9 <= value <= high + 1e-9


@given(start=alphas, end=alphas, budget=budgets)
def test_linear_is_monotone(start, end, budget):
    params = {"alpha_start": start, "alpha_end": end}
    values = [alpha_at("increase", t, budget, params) for t in range(budget)]
    steps = [b - a for a, b in zip(values, values[1:], strict=False)]
    assert all(math.copysign(1, s) == math.copysign(1, end - start) or s == 0 for s in steps)


@given(budget=budgets, stop=st.integers(min_value=1, max_value=199))
def test_stopped_trial_sees_full_run_alphas(budget, stop):
    """Alpha depends on the budget T only, never on where a scheduler stops the trial."""
    stop = min(stop, budget)
    params = {"alpha_start": 0.0, "alpha_end": 2.0}
    full = [alpha_at("cosine", t, budget, params) for t in range(budget)]
    stopped = [alpha_at("cosine", t, budget, params) for t in range(stop)]
    assert stopped == full[:stop]
