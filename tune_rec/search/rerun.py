"""Reruns after a search: seed repeats of the top configs, and the audit of stopped trials
continued from their checkpoints to the full budget. They run as Ray trials, or in this process
when that is sooner."""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune

from tune_rec.confirm import confirmation_seeds, select_audit_trials, train_rerun
from tune_rec.data.dataset import Dataset
from tune_rec.errors import NonFiniteLossError
from tune_rec.experiment import EPOCHS_FILE, ExperimentLog
from tune_rec.search.runner import SearchOptions, fixed_values
from tune_rec.search.trainable import CHECKPOINT_FILE
from tune_rec.search.tuner import keep_signal_handlers

logger = logging.getLogger(__name__)

RERUN_EXPERIMENT = "reruns"
# Seconds until a new Ray trial process can train: a Python worker that imports Ray Tune and
# torch, measured on a 2-core machine.
TRIAL_PROCESS_START_SECONDS = 6.0


def rerun_trial(
    config: dict[str, Any], *, dataset: Dataset, fixed: dict[str, Any], data: dict[str, Any]
) -> None:
    """Ray trainable of one rerun: train it and report its metrics once."""
    tune.report(train_rerun(config["run"], dataset, fixed, data))


def latest_checkpoint(folder: Path, trial_id: str) -> Path | None:
    """Return the trainer state of a trial's latest checkpoint, or None if it has none."""
    candidates = sorted(
        (Path(folder) / f"trial_{trial_id}").glob(f"checkpoint_*/{CHECKPOINT_FILE}")
    )
    return candidates[-1] if candidates else None


def plan_reruns(folder: Path, options: SearchOptions, log: ExperimentLog) -> list[dict[str, Any]]:
    """Return one run description per seed repeat and per audited trial."""
    space = options.space
    runs = []
    for rank, trial in enumerate(log.ranked_trials()[: options.confirm_top], start=1):
        for seed in confirmation_seeds(space.seed, options.confirm_seeds):
            runs.append(
                {
                    "kind": "confirm",
                    "source_trial": trial.trial_id,
                    "rank": rank,
                    "seed": seed,
                    "params": dict(trial.config),
                    "checkpoint": None,
                }
            )
    for trial in select_audit_trials(log, options.audit_pruned):
        checkpoint = latest_checkpoint(folder, trial.trial_id)
        if checkpoint is None:
            logger.info(
                "trial %s has no checkpoint; the audit trains it from epoch 0", trial.trial_id
            )
        runs.append(
            {
                "kind": "audit",
                "source_trial": trial.trial_id,
                "rank": None,
                "seed": space.seed,
                "params": dict(trial.config),
                "checkpoint": str(checkpoint) if checkpoint else None,
                "stopped_at": len(trial.epochs),
            }
        )
    return runs


class PendingReruns:
    """Reruns that have started; :meth:`result` waits for their table.

    Reruns in this process train on threads, so they can go on while Ray shuts down. Reruns on
    Ray have already finished.
    """

    def __init__(
        self,
        *,
        table: pd.DataFrame | None = None,
        pool: ThreadPoolExecutor | None = None,
        futures: list[Future] | None = None,
    ) -> None:
        self._table = table
        self._pool = pool
        self._futures = futures or []

    def result(self) -> pd.DataFrame:
        """Wait for the reruns and return one row per run, in the order of the runs."""
        if self._table is None:
            try:
                self._table = pd.DataFrame([future.result() for future in self._futures])
            finally:
                self.cancel()
        return self._table

    def cancel(self) -> None:
        """Drop the reruns that have not started. Those already training run to their end."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def run_reruns(
    folder: Path,
    options: SearchOptions,
    dataset: Dataset,
    runs: list[dict[str, Any]],
    *,
    in_process: bool | None = None,
) -> pd.DataFrame:
    """Run ``runs`` and return one row per run with its metrics (see :func:`start_reruns`)."""
    return start_reruns(folder, options, dataset, runs, in_process=in_process).result()


def start_reruns(
    folder: Path,
    options: SearchOptions,
    dataset: Dataset,
    runs: list[dict[str, Any]],
    *,
    in_process: bool | None = None,
) -> PendingReruns:
    """Start ``runs`` in this process on threads, or run them as Ray trials before returning.

    Args:
        folder: The experiment folder.
        options: The search's options.
        dataset: The split ratings.
        runs: Descriptions from :func:`plan_reruns`.
        in_process: Train in this process (True) or as Ray trials (False). None decides by
            :func:`runs_in_process`: in this process when that should finish sooner than Ray
            trials, whose processes take seconds to start.
    """
    space = options.space
    fixed = fixed_values(space)
    data = space.data.model_dump()
    estimated_in_process, local_seconds = runs_in_process(folder, options, runs)
    if in_process is None:
        in_process = estimated_in_process
    n_audits = sum(run["kind"] == "audit" for run in runs)
    kinds = f"{len(runs) - n_audits} seed repeats and {n_audits} pruning audit runs"
    if in_process:
        n_threads = max(1, min(len(runs), _local_cpus()))
        logger.info(
            "rerunning %d trials in this process on %d threads (about %.0f s of training on "
            "one): %s",
            len(runs),
            n_threads,
            local_seconds,
            kinds,
        )

        def train(run: dict[str, Any]) -> dict[str, Any]:
            try:
                metrics, error = train_rerun(run, dataset, fixed, data), None
            except NonFiniteLossError as failure:
                logger.error(
                    "rerun of trial %s with seed %d failed: %s",
                    run["source_trial"],
                    run["seed"],
                    failure,
                )
                metrics, error = {}, failure
            return _rerun_row(run, metrics, error)

        # Each run has its own generator and torch runs one intra-op thread, so the results do
        # not depend on the number of threads. Torch releases the GIL inside its kernels.
        pool = ThreadPoolExecutor(n_threads, thread_name_prefix="rerun")
        return PendingReruns(pool=pool, futures=[pool.submit(train, run) for run in runs])

    trainable = tune.with_parameters(rerun_trial, dataset=dataset, fixed=fixed, data=data)
    resources = space.resources
    tuner = tune.Tuner(
        tune.with_resources(
            trainable, {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}
        ),
        param_space={"run": tune.grid_search(runs)},
        tune_config=tune.TuneConfig(
            reuse_actors=True, max_concurrent_trials=resources.max_concurrent_trials
        ),
        run_config=tune.RunConfig(
            name=RERUN_EXPERIMENT,
            storage_path=str(folder),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
        ),
    )
    logger.info("rerunning %d trials as Ray trials: %s", len(runs), kinds)
    with keep_signal_handlers():
        results = tuner.fit()
    return PendingReruns(
        table=pd.DataFrame(
            [
                _rerun_row(result.config["run"], result.metrics or {}, result.error)
                for result in results
            ]
        )
    )


def runs_in_process(
    folder: Path, options: SearchOptions, runs: list[dict[str, Any]]
) -> tuple[bool, float]:
    """Decide whether ``runs`` train in this process, and estimate how long that takes.

    The estimate is the runs' epochs times the median epoch time of the search. Ray trials
    share that time among the cluster's CPUs but first start their processes, which import Ray
    Tune and torch: about 6 s on a 2-core machine. Runs that need a GPU always go to Ray.

    Returns:
        Whether to train in this process, and the estimated seconds of training there.
    """
    import ray

    space = options.space
    resources = space.resources
    epochs = sum(
        space.max_epochs - (run.get("stopped_at") or 0 if run["checkpoint"] else 0) for run in runs
    )
    local_seconds = epochs * _median_epoch_seconds(folder)
    if resources.gpus_per_trial > 0 or not runs or not math.isfinite(local_seconds):
        return False, local_seconds
    slots = int(ray.cluster_resources().get("CPU", 0.0) // resources.cpus_per_trial)
    if resources.max_concurrent_trials is not None:
        slots = min(slots, resources.max_concurrent_trials)
    slots = max(1, min(slots, len(runs)))
    ray_seconds = TRIAL_PROCESS_START_SECONDS + local_seconds / slots
    return local_seconds <= ray_seconds, local_seconds


def _local_cpus() -> int:
    """Return the number of CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _median_epoch_seconds(folder: Path) -> float:
    """Return the search's median epoch time, or NaN when its epochs table has none."""
    path = folder / EPOCHS_FILE
    if not path.exists():
        return math.nan
    seconds = pd.read_parquet(path, columns=["epoch_seconds"])["epoch_seconds"].dropna()
    return float(seconds.median()) if len(seconds) else math.nan


def _rerun_row(run: dict[str, Any], metrics: dict[str, Any], error: object) -> dict[str, Any]:
    """Return the reruns table's row of one run."""
    row = {key: run[key] for key in ("kind", "source_trial", "rank", "seed")}
    row["stopped_at"] = run.get("stopped_at")
    row["from_checkpoint"] = bool(run.get("checkpoint"))
    if error is not None:
        row["error"] = str(error)
    row.update(
        {
            key: value
            for key, value in metrics.items()
            if key.startswith(("map@", "ndcg@", "recall@", "test_"))
        }
    )
    return row
