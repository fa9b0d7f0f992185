"""Ray's MLflow callback with metric names that MLflow accepts, imported only when used."""

from __future__ import annotations

from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from tune_rec.search.tracking import tracker_key

# Keys of Ray's results that are not measurements of the trial.
_NOT_METRICS = frozenset({"config", "pid", "timestamp", "done", "should_checkpoint"})


class MLflowTracker(MLflowLoggerCallback):
    """Ray's MLflow callback with metric names that MLflow accepts.

    One MLflow run per trial, named after the trial, with the trial's config as parameters
    and the numeric values of every epoch's result as metrics at step ``training_iteration``
    (the number of epochs done). Keys with ``@`` are renamed by :func:`tracker_key`; Ray's
    bookkeeping values (process id, wall-clock timestamp, flags) and the config, which is
    already logged as parameters, are left out.
    """

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        metrics = {
            tracker_key(key): value for key, value in result.items() if key not in _NOT_METRICS
        }
        super().log_trial_result(iteration, trial, metrics)
