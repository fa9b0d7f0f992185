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
class LossWeights:
    """Weights of the target loss: ``alpha * embedding + beta * ranking + l2 * regularisation``."""

    alpha: float
    beta: float
    l2: float


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

    @torch.no_grad()
    def accumulate_gradients(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        ratings: torch.Tensor,
        negatives: torch.Tensor,
        weights: LossWeights,
    ) -> torch.Tensor:
        """Write the gradient of the batch's target loss into each parameter's ``.grad``.

        The gradient is the one that autograd gives for :meth:`batch_losses` combined with
        ``weights``, written in closed form: autograd's backward of an embedding lookup fills a
        zero tensor of the whole table once per lookup, and those fills dominate an epoch.

        Returns:
            The embedding, ranking and target loss of the batch, as one tensor of 3 values.
        """
        n = users.shape[0]
        user_vec = self.user_factors.index_select(0, users)
        item_and_negative = torch.cat((items, negatives))
        item_rows = self.item_factors.index_select(0, item_and_negative)
        item_vec, negative_vec = item_rows[:n], item_rows[n:]
        user_b = self.user_bias.index_select(0, users)
        item_rows_b = self.item_bias.index_select(0, item_and_negative)
        item_b, negative_b = item_rows_b[:n], item_rows_b[n:]

        error = self.global_mean + user_b + item_b + (user_vec * item_vec).sum(dim=1) - ratings
        difference = item_b - negative_b + (user_vec * (item_vec - negative_vec)).sum(dim=1)
        embedding = error.square().mean()
        ranking = -F.logsigmoid(difference).mean()
        squared = (
            user_vec.square().sum() + item_rows.square().sum()
            + user_b.square().sum() + item_rows_b.square().sum()
        )
        target = weights.alpha * embedding + weights.beta * ranking + weights.l2 * squared / n

        # Derivatives of the target with respect to each pair's error and score difference.
        d_error = (2.0 * weights.alpha / n) * error
        d_difference = (-weights.beta / n) * torch.sigmoid(-difference)
        decay = 2.0 * weights.l2 / n

        d_user = (
            (d_error + d_difference).unsqueeze(1) * item_vec
            - d_difference.unsqueeze(1) * negative_vec
            + decay * user_vec
        )
        d_item = torch.cat(
            (
                (d_error + d_difference).unsqueeze(1) * user_vec,
                -d_difference.unsqueeze(1) * user_vec,
            )
        ) + decay * item_rows
        d_user_b = d_error + decay * user_b
        d_item_b = torch.cat((d_error + d_difference, -d_difference)) + decay * item_rows_b

        for parameter, index, values in (
            (self.user_factors, users, d_user),
            (self.item_factors, item_and_negative, d_item),
            (self.user_bias, users, d_user_b),
            (self.item_bias, item_and_negative, d_item_b),
        ):
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            else:
                parameter.grad.zero_()
            parameter.grad.index_add_(0, index, values)
        return torch.stack((embedding, ranking, target))
