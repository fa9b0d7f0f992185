"""Settings of one training run: the trial config, the data settings and their checks.

A trial config is flat (the keys that a search space's ``params`` may set); the data settings
are shared by every trial of an experiment. Both reject unknown keys.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tune_rec.schedules import SCHEDULE_PARAMS, ScheduleType

Protocol = Literal["rated", "full"]
Normalisation = Literal["min_k_r", "r"]


class DataSettings(BaseModel):
    """Where the ratings come from and how they are split and judged relevant."""

    model_config = ConfigDict(extra="forbid")

    dataset: Literal["ml-100k"] | None = "ml-100k"
    """Built-in dataset, fetched and verified by tune-rec; ignored when ``path`` is set."""
    path: str | None = None
    """A ratings file of your own: TSV, CSV or Parquet with user, item, rating(, timestamp)."""
    rating_scale: tuple[float, float] | None = None
    """Lowest and highest valid rating; values outside are rejected. None: no check."""
    relevance_threshold: float = 4.0
    """A held-out item is relevant when its rating is at least this value."""
    split: Literal["random", "temporal"] = "random"
    """Per-user split: seeded random, or each user's latest ratings held out."""
    split_seed: int | None = None
    """Seed of the split; None takes the run's seed. Seed repeats keep the split fixed."""
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check_fractions(self) -> DataSettings:
        total = self.test_fraction + self.validation_fraction
        if total >= 1.0:
            raise ValueError(
                "test_fraction + validation_fraction must be below 1 to leave training "
                f"ratings; got {self.test_fraction} + {self.validation_fraction} = {total}"
            )
        return self


class TrainConfig(BaseModel):
    """One trial's config: the model, its loss weights, the optimiser and the budget."""

    model_config = ConfigDict(extra="forbid")

    schedule: ScheduleType = "fixed"
    """Schedule type of alpha, the embedding-loss weight."""
    alpha: float | None = Field(None, ge=0.0)
    """Alpha of the ``fixed`` schedule."""
    alpha_start: float | None = Field(None, ge=0.0)
    """Alpha at epoch 0 for the other schedule types."""
    alpha_end: float | None = Field(None, ge=0.0)
    """Alpha at the last epoch (``step``: after the warm-up)."""
    warmup_epochs: int | None = Field(None, ge=0)
    """Epochs at ``alpha_start`` before a ``step`` schedule switches to ``alpha_end``."""
    beta: float = Field(0.1, ge=0.0)
    """Weight of the ranking loss."""
    ranking_loss: Literal["bpr"] = "bpr"
    l2: float = Field(0.05, ge=0.0)
    """Weight of the squared norms of the batch's embeddings and biases, per rating.

    Matrix factorisation on MovieLens-100K overfits within a few epochs below about 0.01.
    """
    lr: float = Field(0.01, gt=0.0)
    """Adam learning rate."""
    optimizer: Literal["adam", "sparse_adam"] = "adam"
    """``adam`` moves every embedding and bias at every step. ``sparse_adam`` (lazy Adam, as
    ``torch.optim.SparseAdam``) moves only the rows of the step's batch, so that a step costs
    time in proportion to the batch rather than to the tables: the choice for large
    catalogues."""
    embedding_dim: int = Field(64, ge=1)
    batch_size: int = Field(1024, ge=1)
    """Training ratings per step."""
    max_epochs: int = Field(20, ge=1)
    """Full budget T: the alpha schedule spans it even when a trial is stopped early."""
    init_std: float = Field(0.05, gt=0.0)
    """Standard deviation of the initial embeddings."""
    protocol: Protocol = "rated"
    """Evaluation protocol of the search metric; both protocols are computed every epoch."""
    normalisation: Normalisation = "min_k_r"
    """AP@k divisor: min(k, R) (default) or R, the user's number of relevant items."""
    seed: int = 0

    @model_validator(mode="after")
    def _check_schedule(self) -> TrainConfig:
        needed = SCHEDULE_PARAMS[self.schedule]
        missing = [key for key in needed if getattr(self, key) is None]
        if missing:
            raise ValueError(
                f"schedule {self.schedule!r} needs {', '.join(needed)}; missing "
                f"{', '.join(missing)}"
            )
        for key in ("alpha", "alpha_start", "alpha_end", "beta", "lr", "l2"):
            value = getattr(self, key)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{key} must be finite; got {value}")
        start, end = self.alpha_start, self.alpha_end
        if self.schedule == "increase" and not start < end:
            raise ValueError(
                f"schedule 'increase' needs alpha_start < alpha_end; got {start} and {end}"
            )
        if self.schedule == "decrease" and not start > end:
            raise ValueError(
                f"schedule 'decrease' needs alpha_start > alpha_end; got {start} and {end}"
            )
        if self.schedule == "exponential" and (start <= 0 or end <= 0):
            raise ValueError(
                "schedule 'exponential' needs alpha_start and alpha_end above 0; "
                f"got {start} and {end}"
            )
        return self

    def schedule_params(self) -> dict[str, float]:
        """Return the parameters that this config's schedule type reads."""
        return {key: getattr(self, key) for key in SCHEDULE_PARAMS[self.schedule]}


# Keys of TrainConfig that a search space may set under ``params``. Seed, budget and protocol are
# experiment settings, set once for all trials.
SEARCHABLE_KEYS: tuple[str, ...] = tuple(
    key
    for key in TrainConfig.model_fields
    if key not in {"seed", "max_epochs", "protocol", "normalisation"}
)
