"""Build Ray Tune's Tuner from a search space: searcher, scheduler, resources, storage."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from tune_rec.data.dataset import Dataset
from tune_rec.experiment import ExperimentLog
from tune_rec.search.optuna_searcher import TrialAwareOptunaSearch
from tune_rec.search.recorder import EndedTrialStopper, ExperimentRecorder
from tune_rec.search.runner import SearchOptions, fixed_values
from tune_rec.search.schedulers import PerScheduleASHA
from tune_rec.search.tracking import build_callbacks
from tune_rec.search.trainable import train_trial
from tune_rec.space import SearchSpace

logger = logging.getLogger(__name__)


def build_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """Return the Optuna sampler of the space's searcher type, seeded with the space's seed."""
    searcher = space.searcher
    if searcher.type == "random":
        return optuna.samplers.RandomSampler(seed=space.seed)
    if searcher.type == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=space.seed)
    return optuna.samplers.TPESampler(
        seed=space.seed, n_startup_trials=searcher.n_startup_trials, multivariate=True
    )


def build_searcher(space: SearchSpace) -> TrialAwareOptunaSearch:
    """Return the define-by-run Optuna searcher of the space."""
    return TrialAwareOptunaSearch(
        max_epochs=space.max_epochs,
        space=space.define_by_run,
        metric=space.metric,
        mode=space.mode,
        sampler=build_sampler(space),
    )


def build_scheduler(space: SearchSpace) -> TrialScheduler:
    """Return ASHA over epochs, or FIFO (every trial to the full budget).

    Metric and mode are set on the TuneConfig only: Ray rejects them on both.
    """
    scheduler = space.scheduler
    if scheduler.type == "fifo":
        return FIFOScheduler()
    asha_kwargs = {
        "time_attr": "training_iteration",
        "max_t": space.max_epochs,
        "grace_period": min(scheduler.grace_period, space.max_epochs),
        "reduction_factor": scheduler.reduction_factor,
    }
    if scheduler.compare == "schedule_type":
        return PerScheduleASHA(key="schedule", **asha_kwargs)
    return ASHAScheduler(**asha_kwargs)


def checkpoint_epochs(space: SearchSpace, every: int) -> list[int]:
    """Return the epoch counts after which a trial checkpoints.

    ASHA's rungs (grace_period times powers of the reduction factor) are where it stops
    trials, so a stopped trial can be continued from exactly where it stopped; every
    ``every`` epochs keeps retries short; the last epoch is always kept.
    """
    epochs = set(range(every, space.max_epochs + 1, every)) | {space.max_epochs}
    scheduler = space.scheduler
    if scheduler.type == "asha":
        rung = float(min(scheduler.grace_period, space.max_epochs))
        while rung < space.max_epochs:
            epochs.add(int(rung))
            rung *= scheduler.reduction_factor
    return sorted(epochs)


def build_trainable(options: SearchOptions, dataset: Dataset) -> Any:
    """Return the trainable with the dataset put into Ray's object store once."""
    space = options.space
    resources = space.resources
    trainable = tune.with_parameters(
        train_trial,
        dataset=dataset,
        fixed=fixed_values(space),
        data=space.data.model_dump(),
        checkpoint_epochs=checkpoint_epochs(space, options.checkpoint_every),
        metric=space.metric,
    )
    return tune.with_resources(
        trainable, {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}
    )


def run_config(folder: Path, options: SearchOptions, log: ExperimentLog) -> tune.RunConfig:
    """Return the RunConfig that stores Ray's experiment state inside the experiment folder.

    The folder's parent is Ray's ``storage_path``: on a cluster of several machines it must be
    a path that every node reaches (a shared file system), because each trial writes its
    checkpoints and logs there from the node it runs on.

    Raises:
        InvalidInputError: a tracker of ``options`` cannot be used.
    """
    callbacks = [
        ExperimentRecorder(log, progress_seconds=options.progress_seconds),
        *build_callbacks(folder, options),
    ]
    return tune.RunConfig(
        name=folder.name,
        storage_path=str(folder.parent),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=options.max_failures),
        callbacks=callbacks,
        stop=EndedTrialStopper(folder, log.max_epochs, log.metric, log.mode),
        verbose=0,
    )


def max_concurrent_trials(space: SearchSpace) -> int | None:
    """Return the space's limit, else as many trials as the cluster's CPUs and GPUs fit.

    Without a limit, Tune with a searcher keeps one trial pending at a time, and with actor
    reuse a single process on one node may run every short trial in turn.
    """
    import ray

    resources = space.resources
    if resources.max_concurrent_trials is not None:
        return resources.max_concurrent_trials
    available = ray.cluster_resources()
    fits = [int(available.get("CPU", 0.0) // resources.cpus_per_trial)]
    if resources.gpus_per_trial > 0:
        fits.append(int(available.get("GPU", 0.0) // resources.gpus_per_trial))
    return max(1, min(fits))


def build_tuner(
    folder: Path, options: SearchOptions, dataset: Dataset, log: ExperimentLog
) -> tune.Tuner:
    """Return a new Tuner for the search of ``options``."""
    space = options.space
    num_samples = space.num_samples
    if space.searcher.type == "grid":
        num_samples = space.n_grid_points()
    tune_config = tune.TuneConfig(
        metric=space.metric,
        mode=space.mode,
        search_alg=build_searcher(space),
        scheduler=build_scheduler(space),
        num_samples=num_samples,
        trial_dirname_creator=_trial_dirname,
        max_concurrent_trials=max_concurrent_trials(space),
        reuse_actors=True,
    )
    return tune.Tuner(
        build_trainable(options, dataset),
        tune_config=tune_config,
        run_config=run_config(folder, options, log),
    )


def restore_tuner(folder: Path, options: SearchOptions, dataset: Dataset) -> tune.Tuner:
    """Return the Tuner of an interrupted search, with its searcher and scheduler state.

    Trials that were running or pending continue. Trials that had failed stay failed, as
    tune-rec's tables record them: a failure is a NaN loss or a crash, and a retry within the
    search already happened under ``--max-failures``.
    """
    return tune.Tuner.restore(str(folder), trainable=build_trainable(options, dataset))


def _trial_dirname(trial: Any) -> str:
    """Name a trial's folder by its id; Ray's default name spells out the whole config."""
    return f"trial_{trial.trial_id}"


@contextmanager
def keep_signal_handlers() -> Iterator[None]:
    """Restore the SIGINT and SIGUSR1 handlers that ``Tuner.fit`` replaces.

    Ray Tune installs handlers that end the run at the next step and leaves them installed
    after a fit that finishes, so a later Ctrl-C would only print Tune's warning.
    """
    signals = [signal.SIGINT]
    if hasattr(signal, "SIGUSR1"):
        signals.append(signal.SIGUSR1)
    saved = {number: signal.getsignal(number) for number in signals}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for number, handler in saved.items():
                if handler is not None:
                    signal.signal(number, handler)
