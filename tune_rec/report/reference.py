"""Table 1 of the reference study: MAP@k on MovieLens-100K for three alpha settings.

The study trained one joint-loss model with beta = 0.1. It does not publish its split, its
relevance threshold or its exact MAP@k definition, so these numbers are a reference to show
beside ours, never a target to tune the protocol towards.
"""

from __future__ import annotations

from dataclasses import dataclass

REFERENCE_BETA = 0.1
REFERENCE_METRICS: tuple[str, ...] = ("map@1", "map@5", "map@10")


@dataclass(frozen=True)
class ReferenceRow:
    """One setting of the study's Table 1."""

    setting: str
    values: dict[str, float]
    """MAP@1, MAP@5 and MAP@10 as published."""


# Keyed by the schedule type that reproduces each setting.
REFERENCE_TABLE: dict[str, ReferenceRow] = {
    "fixed": ReferenceRow(
        "alpha = 1.0 (fixed)", {"map@1": 0.888, "map@5": 0.865, "map@10": 0.842}
    ),
    "increase": ReferenceRow(
        "alpha increasing during training", {"map@1": 0.819, "map@5": 0.804, "map@10": 0.775}
    ),
    "decrease": ReferenceRow(
        "alpha decreasing during training", {"map@1": 0.8375, "map@5": 0.822, "map@10": 0.794}
    ),
}
