"""The training loop, usable without Ray: one :class:`EpochRecord` per epoch.

Example::

    trainer = Trainer(config, dataset)
    for record in trainer.epochs():
        print(record.epoch, record.loss_target, record.metrics["map@10"])

The loop is seeded: the same config, seed and data give the same numbers on CPU. It runs on one
thread by default because intra-op parallelism changes the order of floating-point sums, and
therefore the last digits of every result.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from tune_rec.config import DataSettings, TrainConfig
from tune_rec.data.dataset import Dataset
from tune_rec.errors import NonFiniteLossError
from tune_rec.metrics import Evaluator
from tune_rec.model import JointLossModel, LossWeights
from tune_rec.schedules import alpha_at

logger = logging.getLogger(__name__)

PROTOCOLS = ("rated", "full")

# Rejection rounds of negative sampling before the few remaining draws are accepted as they are;
# only users who rated nearly every item need more than a handful.
_MAX_NEGATIVE_ROUNDS = 50


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch produced: alpha, the three losses, validation metrics and its duration."""

    epoch: int
    alpha: float
    loss_embedding: float
    loss_ranking: float
    loss_target: float
    metrics: dict[str, float] = field(default_factory=dict)
    epoch_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return a flat dict: the epoch's values and its metrics under their keys."""
        return {
            "epoch": self.epoch,
            "alpha": self.alpha,
            "loss_embedding": self.loss_embedding,
            "loss_ranking": self.loss_ranking,
            "loss_target": self.loss_target,
            **self.metrics,
            "epoch_seconds": self.epoch_seconds,
        }


def sample_negatives(
    users: torch.Tensor,
    positive_keys: torch.Tensor,
    n_items: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Draw for each user in ``users`` an item uniformly among those it has not rated in training.

    Args:
        users: User ids, one draw per entry.
        positive_keys: Sorted ``user * n_items + item`` keys of the training ratings.
        n_items: Number of items.
        generator: Seeded generator.

    Returns:
        Item ids. A user who rated every item keeps a draw that is one of its training items.
    """
    negatives = torch.randint(n_items, users.shape, generator=generator)
    pending = torch.arange(users.shape[0])
    for _ in range(_MAX_NEGATIVE_ROUNDS):
        keys = users[pending] * n_items + negatives[pending]
        position = torch.searchsorted(positive_keys, keys).clamp_(max=positive_keys.shape[0] - 1)
        rated = positive_keys[position] == keys
        pending = pending[rated]
        if pending.numel() == 0:
            break
        negatives[pending] = torch.randint(n_items, pending.shape, generator=generator)
    return negatives


class Trainer:
    """Trains one config on one dataset, an epoch at a time, and evaluates every epoch.

    Args:
        config: The trial config.
        dataset: The split ratings.
        data: Settings of the data, for the relevance threshold.
        device: Torch device to train on.
        n_threads: Intra-op threads of torch; 1 keeps results reproducible to the last digit.
    """

    def __init__(
        self,
        config: TrainConfig,
        dataset: Dataset,
        data: DataSettings | None = None,
        *,
        device: str | torch.device = "cpu",
        n_threads: int | None = 1,
    ) -> None:
        if n_threads is not None:
            torch.set_num_threads(n_threads)
        self.config = config
        self.dataset = dataset
        self.device = torch.device(device)
        self.epoch = 0
        self.generator = torch.Generator().manual_seed(config.seed)
        threshold = (data or DataSettings()).relevance_threshold

        torch.manual_seed(config.seed)
        self.model = JointLossModel(
            dataset.n_users,
            dataset.n_items,
            config.embedding_dim,
            dataset.global_mean,
            config.init_std,
            self.generator,
        ).to(self.device)
        # The fused kernel updates all four tables in one pass; the per-tensor loop costs more
        # than the rest of a batch.
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, fused=True)

        train = dataset.train
        # Copies: arrays from Ray's object store are read-only, which torch does not support.
        self._users = torch.tensor(train.users, dtype=torch.int64)
        self._items = torch.tensor(train.items, dtype=torch.int64)
        self._ratings = torch.tensor(train.ratings, dtype=torch.float32)
        self._positive_keys = torch.sort(self._users * dataset.n_items + self._items).values
        other = "full" if config.protocol == "rated" else "rated"
        self._protocols = (config.protocol, other)
        self.evaluator = Evaluator(
            dataset,
            split="validation",
            relevance_threshold=threshold,
            normalisation=config.normalisation,
        )

    def epochs(self) -> Iterator[EpochRecord]:
        """Yield one record per epoch from the current epoch up to ``max_epochs``."""
        while self.epoch < self.config.max_epochs:
            yield self.run_epoch()

    def fit(self) -> EpochRecord:
        """Train to the full budget and return the last epoch's record."""
        records = list(self.epochs())
        if not records:
            raise ValueError(f"nothing to train: epoch {self.epoch} is already the budget")
        return records[-1]

    def run_epoch(self) -> EpochRecord:
        """Train one epoch, evaluate on the validation split and return its record.

        Raises:
            NonFiniteLossError: a loss or metric became NaN or infinite.
        """
        config = self.config
        started = time.perf_counter()
        epoch = self.epoch
        alpha = alpha_at(config.schedule, epoch, config.max_epochs, config.schedule_params())

        order = torch.randperm(self._users.shape[0], generator=self.generator)
        users = self._users[order]
        items = self._items[order]
        ratings = self._ratings[order]
        negatives = sample_negatives(
            users, self._positive_keys, self.dataset.n_items, self.generator
        )
        if self.device.type != "cpu":
            users, items, ratings, negatives = (
                t.to(self.device, non_blocking=True) for t in (users, items, ratings, negatives)
            )

        self.model.train()
        weights = LossWeights(alpha=alpha, beta=config.beta, l2=config.l2)
        # Sums weighted by batch length, kept on the device to avoid a sync per batch.
        sums = torch.zeros(3, device=self.device)
        for start in range(0, users.shape[0], config.batch_size):
            batch = slice(start, start + config.batch_size)
            losses = self.model.accumulate_gradients(
                users[batch], items[batch], ratings[batch], negatives[batch], weights
            )
            self.optimizer.step()
            sums += losses * losses.new_tensor(users[batch].shape[0])

        loss_embedding, loss_ranking, loss_target = (sums / users.shape[0]).tolist()
        self._check_finite(
            epoch,
            {
                "loss_embedding": loss_embedding,
                "loss_ranking": loss_ranking,
                "loss_target": loss_target,
            },
        )

        metrics = self.evaluate()
        self._check_finite(epoch, {key: metrics[key] for key in ("map@10", "ndcg@10")})
        self.epoch += 1
        record = EpochRecord(
            epoch=epoch,
            alpha=alpha,
            loss_embedding=loss_embedding,
            loss_ranking=loss_ranking,
            loss_target=loss_target,
            metrics=metrics,
            epoch_seconds=time.perf_counter() - started,
        )
        logger.debug("epoch %d: %s", epoch, record.as_dict())
        return record

    @torch.no_grad()
    def evaluate(self, evaluator: Evaluator | None = None) -> dict[str, float]:
        """Return the metrics of the current model, on the validation split by default."""
        self.model.eval()
        model = self.model
        return (evaluator or self.evaluator).evaluate(
            model.user_factors.detach().cpu(),
            model.item_factors.detach().cpu(),
            model.user_bias.detach().cpu(),
            model.item_bias.detach().cpu(),
            protocols=self._protocols,
        )

    def state_dict(self) -> dict[str, Any]:
        """Return what a checkpoint needs to continue training exactly where it stopped."""
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`."""
        self.epoch = int(state["epoch"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])

    @staticmethod
    def _check_finite(epoch: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"{key} became {value} at epoch {epoch}; lower lr or the loss weights "
                    "(alpha, beta), or raise l2"
                )
