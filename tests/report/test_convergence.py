"""The convergence rule on synthetic curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tune_rec.errors import InvalidInputError
from tune_rec.report.convergence import convergence_verdict, describe_rule


def test_verdict_flat_curve_converged() -> None:
    curve = [3.0, 2.0, 1.5] + [1.2] * 8

    verdict = convergence_verdict(curve)

    assert verdict.converged
    assert verdict.reason.startswith("flat")


def test_verdict_still_falling_not_converged() -> None:
    curve = [2.0 * math.exp(-epoch / 10) + 1.0 for epoch in range(20)]

    verdict = convergence_verdict(curve)

    assert not verdict.converged
    assert verdict.reason.startswith("still falling")


def test_verdict_still_rising_not_converged() -> None:
    curve = [0.5 + 0.01 * epoch for epoch in range(12)]

    verdict = convergence_verdict(curve)

    assert not verdict.converged
    assert verdict.reason.startswith("still rising")


def test_verdict_oscillating_not_converged() -> None:
    # Same value at both ends of the window, but swinging by 10 % in between.
    curve = [1.0, 1.0, 1.1, 0.9, 1.1, 0.9, 1.0]

    verdict = convergence_verdict(curve)

    assert not verdict.converged
    assert verdict.reason.startswith("oscillating")


def test_verdict_single_epoch_not_enough() -> None:
    verdict = convergence_verdict([0.7])

    assert not verdict.converged
    assert verdict.reason == "not enough epochs: 1 of the 6 that the rule needs"


def test_verdict_empty_curve_not_enough() -> None:
    verdict = convergence_verdict([])

    assert not verdict.converged
    assert verdict.reason.startswith("not enough epochs: 0")


def test_verdict_noisy_but_flat_converged() -> None:
    rng = np.random.default_rng(0)
    curve = list(2.0 + rng.normal(0.0, 0.002, 30))

    verdict = convergence_verdict(curve)

    assert verdict.converged, verdict.reason


def test_verdict_noise_beyond_tolerance_not_converged() -> None:
    rng = np.random.default_rng(0)
    curve = list(2.0 + rng.normal(0.0, 0.1, 30))

    verdict = convergence_verdict(curve)

    assert not verdict.converged


def test_verdict_exactly_window_plus_one_epochs() -> None:
    assert convergence_verdict([1.0] * 6, window=5).converged
    assert not convergence_verdict([1.0] * 5, window=5).converged


def test_verdict_looks_only_at_last_window() -> None:
    curve = [10.0, 5.0, 2.0, 1.0, 1.0, 1.0, 1.0]

    assert convergence_verdict(curve, window=3).converged
    assert not convergence_verdict(curve, window=5).converged


def test_verdict_tolerance_controls_outcome() -> None:
    curve = [1.0, 0.998, 0.996, 0.994, 0.992, 0.99]

    assert not convergence_verdict(curve, tolerance=0.005).converged
    assert convergence_verdict(curve, tolerance=0.02).converged


def test_verdict_nan_in_tail_not_converged() -> None:
    curve = [1.0] * 5 + [float("nan")]

    verdict = convergence_verdict(curve)

    assert not verdict.converged
    assert "non-finite" in verdict.reason


def test_verdict_zero_curve_does_not_divide_by_zero() -> None:
    assert convergence_verdict([0.0] * 8).converged
    assert not convergence_verdict([0.0] * 7 + [1e-3]).converged


def test_verdict_reason_names_tolerance() -> None:
    verdict = convergence_verdict([1.0] * 10, tolerance=0.02)

    assert "tolerance 2.00%" in verdict.reason


@pytest.mark.parametrize("window", [0, -1, 2.5, True])
def test_verdict_invalid_window_rejected(window) -> None:
    with pytest.raises(InvalidInputError, match="window must be an integer of at least 1"):
        convergence_verdict([1.0] * 10, window=window)


@pytest.mark.parametrize("tolerance", [0.0, -0.1, float("nan"), float("inf")])
def test_verdict_invalid_tolerance_rejected(tolerance) -> None:
    with pytest.raises(InvalidInputError, match="tolerance must be a positive finite fraction"):
        convergence_verdict([1.0] * 10, tolerance=tolerance)


def test_describe_rule_states_window_and_tolerance() -> None:
    text = describe_rule(window=7, tolerance=0.02)

    assert "last 7 epochs" in text
    assert "2.0%" in text
    assert "fewer than 8 epochs" in text


@given(
    level=st.floats(min_value=0.01, max_value=100.0),
    relative_change=st.floats(min_value=0.011, max_value=0.5),
    falling=st.booleans(),
    window=st.integers(min_value=1, max_value=10),
)
def test_verdict_linear_trend_beyond_tolerance_never_converged(
    level: float, relative_change: float, falling: bool, window: int
) -> None:
    sign = -1.0 if falling else 1.0
    step = sign * level * relative_change / window
    curve = [level + step * index for index in range(window + 1)]

    verdict = convergence_verdict(curve, window=window, tolerance=0.01)

    assert not verdict.converged
    assert verdict.reason.startswith("still falling" if falling else "still rising")


@given(
    level=st.floats(min_value=-100.0, max_value=100.0).filter(lambda value: abs(value) > 1e-3),
    n_epochs=st.integers(min_value=6, max_value=40),
)
def test_verdict_constant_curve_always_converged(level: float, n_epochs: int) -> None:
    assert convergence_verdict([level] * n_epochs).converged
