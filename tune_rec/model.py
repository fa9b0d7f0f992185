"""The joint-loss model: biased matrix factorisation trained on a rating loss and a ranking loss.

Score of user u for item i: ``s(u, i) = mu + b_u + b_i + p_u . q_i``, with ``mu`` the training
mean (a constant, not learned).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class BatchLosses:
    """The loss components of one batch, as differentiable scalars."""

    embedding: torch.Tensor
    ranking: torch.Tensor
    regularisation: torch.Tensor


class JointLossModel(nn.Module):
    """Biased matrix factorisation with embeddings of ``embedding_dim``.

    Args:
        n_users: Number of users (internal ids 0 .. n_users - 1).
        n_items: Number of items.
        embedding_dim: Length of each user and item embedding.
        global_mean: ``mu``, the mean training rating.
        init_std: Standard deviation of the normal initial embeddings; biases start at 0.
        generator: Seeded generator for the initial embeddings.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        embedding_dim: int,
        global_mean: float,
        init_std: float,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        self.global_mean = float(global_mean)
        self.user_factors = nn.Parameter(
            torch.randn(n_users, embedding_dim, generator=generator) * init_std
        )
        self.item_factors = nn.Parameter(
            torch.randn(n_items, embedding_dim, generator=generator) * init_std
        )
        self.user_bias = nn.Parameter(torch.zeros(n_users))
        self.item_bias = nn.Parameter(torch.zeros(n_items))

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Return ``s(u, i)`` for the pairs ``(users[k], items[k])``."""
        dot = (self.user_factors[users] * self.item_factors[items]).sum(dim=1)
        return self.global_mean + self.user_bias[users] + self.item_bias[items] + dot

    def batch_losses(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        ratings: torch.Tensor,
        negatives: torch.Tensor,
    ) -> BatchLosses:
        """Compute the three loss components of a batch of training ratings.

        The embedding loss is the mean squared error of ``s(u, i)`` against the rating. The
        ranking loss is BPR, ``-log sigmoid(s(u, i) - s(u, j))`` with ``j = negatives[k]`` an
        item that u has not rated in training. The regularisation is the batch mean of the
        squared norms of every embedding and bias that the batch touches.
        """
        user_vec = self.user_factors[users]
        item_vec = self.item_factors[items]
        negative_vec = self.item_factors[negatives]
        user_b = self.user_bias[users]
        item_b = self.item_bias[items]
        negative_b = self.item_bias[negatives]

        predicted = self.global_mean + user_b + item_b + (user_vec * item_vec).sum(dim=1)
        embedding = F.mse_loss(predicted, ratings)

        # mu and b_u cancel in s(u, i) - s(u, j).
        difference = item_b - negative_b + (user_vec * (item_vec - negative_vec)).sum(dim=1)
        ranking = -F.logsigmoid(difference).mean()

        squared = (
            user_vec.square().sum()
            + item_vec.square().sum()
            + negative_vec.square().sum()
            + user_b.square().sum()
            + item_b.square().sum()
            + negative_b.square().sum()
        )
        return BatchLosses(embedding, ranking, squared / users.shape[0])
