"""Convergence verdict of one loss curve: a pure rule over the curve's last epochs.

The rule looks at the last ``window + 1`` values, so ``window`` epoch-to-epoch steps, and compares
each change with the value at the start of that tail (``scale = max(|v[-1 - window]|, eps)``).
A curve has converged when all three hold:

1. net change: ``|v[-1] - v[-1 - window]| / scale`` is below ``tolerance``;
2. trend: the least-squares slope of the tail, times ``window``, divided by ``scale``, is below
   ``tolerance`` in absolute value, so a curve still clearly falling or rising is never converged
   even if its two end points happen to be close;
3. spread: ``(max(tail) - min(tail)) / scale`` is below ``tolerance``, so a curve that oscillates
   around a flat level is not converged.

A curve with fewer than ``window + 1`` values, or with a NaN or infinite value in its tail, is not
converged. The reason of a curve that fails the rule reads "still falling" or "still rising" when
its trend covers at least half its spread, and "oscillating" otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tune_rec.errors import InvalidInputError

DEFAULT_WINDOW = 5
DEFAULT_TOLERANCE = 0.01


@dataclass(frozen=True)
class Verdict:
    """Outcome of the convergence rule for one curve."""

    converged: bool
    reason: str
    """One sentence with the measured relative changes and the tolerance."""


def describe_rule(window: int = DEFAULT_WINDOW, tolerance: float = DEFAULT_TOLERANCE) -> str:
    """Return the convergence rule in words, with its window and tolerance."""
    return (
        f"A curve has converged when, over its last {window} epochs, its net change, its "
        f"linear trend (least-squares slope times {window} epochs) and its spread (max minus "
        f"min) each stay below {tolerance:.1%} of its value {window} epochs before the last. "
        f"A curve with fewer than {window + 1} epochs, or with a NaN or infinite value among its "
        "last epochs, has not converged."
    )


def _validate_rule(window: int, tolerance: float, eps: float) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise InvalidInputError(
            f"window must be an integer of at least 1 (epochs); got {window!r}"
        )
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise InvalidInputError(
            f"tolerance must be a positive finite fraction such as 0.01; got {tolerance!r}"
        )
    if not (math.isfinite(eps) and eps > 0):
        raise InvalidInputError(f"eps must be a small positive finite number; got {eps!r}")


def _least_squares_slope(values: Sequence[float]) -> float:
    """Return the slope per step of the least-squares line through ``values``."""
    n = len(values)
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    variance = sum((x - mean_x) ** 2 for x in range(n))
    return covariance / variance


def convergence_verdict(
    values: Sequence[float],
    window: int = DEFAULT_WINDOW,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    eps: float = 1e-12,
) -> Verdict:
    """Decide whether a per-epoch curve has converged by the rule in this module's docstring.

    Args:
        values: The curve, one value per epoch in epoch order.
        window: Number of final epoch-to-epoch steps that the rule inspects.
        tolerance: Largest relative change, trend and spread allowed, as a fraction (0.01 = 1 %).
        eps: Floor of the scale, so that a curve near zero does not divide by zero.

    Returns:
        The verdict and a sentence that gives the measured numbers.

    Raises:
        InvalidInputError: ``window`` is not a positive integer, or ``tolerance`` or ``eps`` is
            not a positive finite number.
    """
    _validate_rule(window, tolerance, eps)

    n_values = len(values)
    if n_values < window + 1:
        return Verdict(
            False, f"not enough epochs: {n_values} of the {window + 1} that the rule needs"
        )

    tail = [float(value) for value in values[-(window + 1) :]]
    for offset, value in enumerate(tail):
        if not math.isfinite(value):
            epoch = n_values - len(tail) + offset
            return Verdict(False, f"non-finite value {value} at epoch index {epoch}")

    scale = max(abs(tail[0]), eps)
    net_change = (tail[-1] - tail[0]) / scale
    trend = _least_squares_slope(tail) * window / scale
    spread = (max(tail) - min(tail)) / scale
    measured = (
        f"over the last {window} epochs: net change {net_change:+.2%}, trend {trend:+.2%}, "
        f"spread {spread:.2%} (tolerance {tolerance:.2%})"
    )

    moving = abs(trend) >= tolerance or abs(net_change) >= tolerance
    # A steady fall or rise spans its spread with its trend; swings around a level have a
    # spread far above their trend.
    if moving and 2 * abs(trend) >= spread:
        direction = trend if abs(trend) >= tolerance else net_change
        word = "falling" if direction < 0 else "rising"
        return Verdict(False, f"still {word} {measured}")
    if moving or spread >= tolerance:
        return Verdict(False, f"oscillating {measured}")
    return Verdict(True, f"flat {measured}")
