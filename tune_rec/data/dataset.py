"""The split ratings that training and evaluation read: contiguous ids, NumPy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Interactions:
    """One split's ratings as parallel arrays of internal ids (0-based, contiguous)."""

    users: np.ndarray  # int64
    items: np.ndarray  # int64
    ratings: np.ndarray  # float32

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True)
class Dataset:
    """Ratings split per user into train, validation and test, with the id maps back.

    ``user_ids[u]`` and ``item_ids[i]`` are the original ids of internal user ``u`` and item
    ``i``. ``checksum`` is the SHA-256 of the ratings file that the data came from.
    """

    name: str
    n_users: int
    n_items: int
    train: Interactions
    validation: Interactions
    test: Interactions
    user_ids: np.ndarray
    item_ids: np.ndarray
    checksum: str
    metadata: dict = field(default_factory=dict)

    @property
    def global_mean(self) -> float:
        """Mean training rating: the constant ``mu`` of the score."""
        return float(self.train.ratings.mean())
