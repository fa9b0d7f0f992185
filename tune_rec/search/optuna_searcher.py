"""OptunaSearch adapted to tune-rec: complete configs, pruned stopped trials, failed NaNs."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import Any

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

logger = logging.getLogger(__name__)


class TrialAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna what really happened to each trial.

    Ray's OptunaSearch records a trial that the scheduler stopped as COMPLETE with its last,
    early value, which biases TPE towards configs that look good early. Here such a trial is
    told as PRUNED at its last epoch; a trial that failed, or whose metric is NaN or infinite,
    is told as FAIL, so that no Optuna trial is left RUNNING.

    The define-by-run function returns the complete config (suggested values and constants
    under their config keys); that dict is the trial's config, so the Optuna parameter names
    may differ from the config keys.

    Args:
        max_epochs: Full budget of a trial; a trial that completes with fewer epochs was stopped.
        **kwargs: Passed to OptunaSearch.
    """

    def __init__(self, *, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_epochs = max_epochs

    def _suggest_from_define_by_run_func(
        self, func: Callable[[Any], dict[str, Any] | None], ot_trial: Any
    ) -> dict[str, Any]:
        return dict(func(ot_trial) or {})

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        value = result.get(self.metric) if result else None
        finite = isinstance(value, int | float) and math.isfinite(value)
        if error or not finite:
            state, value = TrialState.FAIL, None
        elif result.get("training_iteration", self._max_epochs) < self._max_epochs:
            # Optuna takes the last intermediate value (reported every epoch) as the value.
            state, value = TrialState.PRUNED, None
        else:
            state = TrialState.COMPLETE
        self._completed_trials.add(trial_id)
        try:
            self._ot_study.tell(ot_trial, value, state=state)
        except RuntimeError as error:
            # Optuna's GridSampler stops the study after the last grid point, which raises
            # outside study.optimize (Optuna 5.1) once the trial is already recorded.
            logger.debug("Optuna after telling trial %s: %s", trial_id, error)
        logger.debug("sent Optuna the state of trial %s: %s", trial_id, state.name)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        value = result.get(self.metric)
        if not (isinstance(value, int | float) and math.isfinite(value)):
            return
        with warnings.catch_warnings():
            # After a resume, Tune repeats the epochs after the last snapshot; Optuna keeps the
            # first value of a step and warns about the repeat, which is expected here.
            warnings.filterwarnings("ignore", message=".*is already reported")
            super().on_trial_result(trial_id, result)
