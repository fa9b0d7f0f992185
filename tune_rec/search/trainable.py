"""The Ray Tune function trainable: a thin adapter around :class:`tune_rec.training.Trainer`."""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from tune_rec.config import DataSettings, TrainConfig
from tune_rec.data.dataset import Dataset
from tune_rec.errors import NonFiniteLossError
from tune_rec.training import Trainer

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "trainer.pt"


def train_trial(
    config: dict[str, Any],
    *,
    dataset: Dataset,
    fixed: dict[str, Any],
    data: dict[str, Any],
    checkpoint_epochs: list[int],
    metric: str,
) -> None:
    """Train one trial and report every epoch's alpha, losses and validation metrics to Tune.

    Args:
        config: The sampled config (keys of TrainConfig).
        dataset: The split ratings, shared by every trial through Ray's object store.
        fixed: Experiment-wide TrainConfig values: seed, max_epochs, protocol, normalisation.
        data: DataSettings as a dict.
        checkpoint_epochs: Epochs (1-based counts of epochs done) after which to checkpoint:
            the scheduler's rungs, so that a stopped trial can be continued where it stopped,
            regular intervals for fault tolerance, and the last epoch.
        metric: The search metric, reported as NaN when the trial fails on a non-finite loss.
    """
    train_config = TrainConfig(**{**config, **fixed})
    device = "cuda" if torch.cuda.is_available() and _assigned_gpus() > 0 else "cpu"
    trainer = Trainer(train_config, dataset, DataSettings(**data), device=device)

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(
                Path(folder) / CHECKPOINT_FILE, weights_only=True, map_location="cpu"
            )
        trainer.load_state_dict(state)
        logger.info("trial resumes from its checkpoint at epoch %d", trainer.epoch)

    try:
        _train_and_report(trainer, device, set(checkpoint_epochs))
    except NonFiniteLossError as error:
        # Reported rather than raised: retrying a deterministic divergence from a checkpoint
        # would diverge again. The result marks the trial failed and carries no epoch row.
        tune.report({"epoch": trainer.epoch, metric: math.nan, "error": str(error)})


def _train_and_report(trainer: Trainer, device: str, checkpoint_epochs: set[int]) -> None:
    import ray

    # The node id distinguishes trials on two nodes of one machine, which share node_ip.
    node_id = ray.get_runtime_context().get_node_id()
    for record in trainer.epochs():
        metrics = {**record.as_dict(), "device": device, "node_id": node_id}
        if trainer.epoch in checkpoint_epochs:
            with tempfile.TemporaryDirectory() as folder:
                torch.save(trainer.state_dict(), Path(folder) / CHECKPOINT_FILE)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)


def _assigned_gpus() -> int:
    import ray

    try:
        return len(ray.get_gpu_ids())
    except RuntimeError:
        return 0
