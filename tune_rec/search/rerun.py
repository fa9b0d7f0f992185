"""Reruns after a search, as Ray trials: seed repeats of the top configs, and the audit of
stopped trials continued from their checkpoints to the full budget."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from ray import tune

from tune_rec.config import DataSettings, TrainConfig
from tune_rec.confirm import confirmation_seeds, select_audit_trials
from tune_rec.data.dataset import Dataset
from tune_rec.experiment import ExperimentLog
from tune_rec.metrics import Evaluator
from tune_rec.search.runner import SearchOptions, fixed_values
from tune_rec.search.trainable import CHECKPOINT_FILE
from tune_rec.training import Trainer

logger = logging.getLogger(__name__)

RERUN_EXPERIMENT = "reruns"


def rerun_trial(
    config: dict[str, Any], *, dataset: Dataset, fixed: dict[str, Any], data: dict[str, Any]
) -> None:
    """Train one rerun to the full budget and report its validation and test metrics once.

    ``config["run"]`` holds the kind (``confirm`` or ``audit``), the source trial, the seed,
    the trial's params and, for an audit, the checkpoint to continue from.
    """
    run = config["run"]
    data_settings = DataSettings(**data)
    train_config = TrainConfig(**{**run["params"], **fixed, "seed": run["seed"]})
    trainer = Trainer(train_config, dataset, data_settings)
    if run.get("checkpoint"):
        trainer.load_state_dict(
            torch.load(run["checkpoint"], weights_only=True, map_location="cpu")
        )
    record = trainer.fit()
    test = Evaluator(
        dataset,
        split="test",
        relevance_threshold=data_settings.relevance_threshold,
        normalisation=train_config.normalisation,
    )
    test_metrics = {f"test_{key}": value for key, value in trainer.evaluate(test).items()}
    tune.report({**record.metrics, **test_metrics, "epoch": record.epoch})


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


def run_reruns(
    folder: Path, options: SearchOptions, dataset: Dataset, runs: list[dict[str, Any]]
) -> pd.DataFrame:
    """Run ``runs`` as Ray trials and return one row per run with its metrics."""
    space = options.space
    trainable = tune.with_parameters(
        rerun_trial, dataset=dataset, fixed=fixed_values(space), data=space.data.model_dump()
    )
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
    logger.info("rerunning %d trials: seed repeats and the pruning audit", len(runs))
    results = tuner.fit()
    rows = []
    for result in results:
        run = result.config["run"]
        row = {key: run[key] for key in ("kind", "source_trial", "rank", "seed")}
        row["stopped_at"] = run.get("stopped_at")
        row["from_checkpoint"] = bool(run.get("checkpoint"))
        if result.error is not None:
            row["error"] = str(result.error)
        row.update(
            {
                key: value
                for key, value in (result.metrics or {}).items()
                if key.startswith(("map@", "ndcg@", "recall@", "test_"))
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)
