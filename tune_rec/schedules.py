"""Alpha schedules: the weight of the embedding loss as a pure function of the epoch.

Every schedule takes the 0-based epoch ``t`` and the full budget ``max_epochs`` (T). T is the
configured budget, never the epoch at which a scheduler stops a trial, so a trial stopped early
saw exactly the alphas of a full run. Ramps reach their end value at the last epoch, t = T - 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

ScheduleType = Literal["fixed", "increase", "decrease", "cosine", "exponential", "step"]

SCHEDULE_TYPES: tuple[str, ...] = (
    "fixed",
    "increase",
    "decrease",
    "cosine",
    "exponential",
    "step",
)

# Config keys that each schedule type reads; the search space may define only these for it.
SCHEDULE_PARAMS: dict[str, tuple[str, ...]] = {
    "fixed": ("alpha",),
    "increase": ("alpha_start", "alpha_end"),
    "decrease": ("alpha_start", "alpha_end"),
    "cosine": ("alpha_start", "alpha_end"),
    "exponential": ("alpha_start", "alpha_end"),
    "step": ("alpha_start", "alpha_end", "warmup_epochs"),
}


def _progress(epoch: int, max_epochs: int) -> float:
    """Return the fraction of the ramp done at ``epoch``: 0 at the first epoch, 1 at the last."""
    if max_epochs <= 1:
        return 0.0
    return min(max(epoch, 0), max_epochs - 1) / (max_epochs - 1)


def fixed(epoch: int, max_epochs: int, *, alpha: float) -> float:
    """Return the constant ``alpha``."""
    return alpha


def linear(epoch: int, max_epochs: int, *, alpha_start: float, alpha_end: float) -> float:
    """Interpolate linearly from ``alpha_start`` at epoch 0 to ``alpha_end`` at epoch T - 1."""
    return alpha_start + (alpha_end - alpha_start) * _progress(epoch, max_epochs)


def cosine(epoch: int, max_epochs: int, *, alpha_start: float, alpha_end: float) -> float:
    """Move from ``alpha_start`` to ``alpha_end`` along a half cosine: slow at both ends."""
    weight = (1.0 - math.cos(math.pi * _progress(epoch, max_epochs))) / 2.0
    return alpha_start + (alpha_end - alpha_start) * weight


def exponential(epoch: int, max_epochs: int, *, alpha_start: float, alpha_end: float) -> float:
    """Interpolate geometrically: a constant ratio between consecutive epochs.

    Both ends must be positive.
    """
    ratio = alpha_end / alpha_start
    return alpha_start * ratio ** _progress(epoch, max_epochs)


def step(
    epoch: int, max_epochs: int, *, alpha_start: float, alpha_end: float, warmup_epochs: int
) -> float:
    """Hold ``alpha_start`` for the first ``warmup_epochs`` epochs, then ``alpha_end``."""
    return alpha_start if epoch < warmup_epochs else alpha_end


_FUNCTIONS: dict[str, Callable[..., float]] = {
    "fixed": fixed,
    "increase": linear,
    "decrease": linear,
    "cosine": cosine,
    "exponential": exponential,
    "step": step,
}


def alpha_at(schedule: str, epoch: int, max_epochs: int, params: dict[str, float]) -> float:
    """Return alpha for ``epoch`` under the schedule type ``schedule`` and its parameters.

    Raises:
        ValueError: the schedule type is unknown.
    """
    if schedule not in _FUNCTIONS:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULE_TYPES)}; got {schedule!r}")
    kwargs = {key: params[key] for key in SCHEDULE_PARAMS[schedule]}
    return float(_FUNCTIONS[schedule](epoch, max_epochs, **kwargs))
