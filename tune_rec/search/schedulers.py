"""ASHA with rungs per schedule type: a fairer comparison of alpha schedules."""

from __future__ import annotations

import logging
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

logger = logging.getLogger(__name__)


class PerScheduleASHA(FIFOScheduler):
    """Runs one ASHA per schedule type, so that trials compete only within their type.

    Ray's ASHA compares every trial at a rung with every other. A schedule whose alpha rises
    late looks weak in early epochs against a fixed alpha and is stopped before its ramp; with
    one ASHA per type it is stopped only when it trails trials of the same schedule type.
    Each type therefore keeps the top ``1 / reduction_factor`` of its own trials at a rung.

    Args:
        key: Config key of the schedule type.
        **asha_kwargs: Passed to every ASHAScheduler (time_attr, max_t, grace_period,
            reduction_factor).
    """

    def __init__(self, key: str = "schedule", **asha_kwargs: Any) -> None:
        super().__init__()
        self._key = key
        self._asha_kwargs = asha_kwargs
        self._by_type: dict[str, ASHAScheduler] = {}
        self._metric: str | None = None
        self._mode: str | None = None

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        self._metric, self._mode = metric, mode
        for scheduler in self._by_type.values():
            scheduler.set_search_properties(metric, mode, **spec)
        return True

    def _scheduler(self, trial: Any) -> ASHAScheduler:
        schedule = str(trial.config.get(self._key))
        if schedule not in self._by_type:
            scheduler = ASHAScheduler(**self._asha_kwargs)
            scheduler.set_search_properties(self._metric, self._mode)
            self._by_type[schedule] = scheduler
            logger.debug("new ASHA rungs for schedule type %s", schedule)
        return self._by_type[schedule]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._scheduler(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self._scheduler(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._scheduler(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._scheduler(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(
            f"{schedule}: {scheduler.debug_string()}"
            for schedule, scheduler in sorted(self._by_type.items())
        )
