"""The joint-loss model: biased matrix factorisation trained on a rating loss and a ranking loss.

Score of user u for item i: ``s(u, i) = mu + b_u + b_i + p_u . q_i``, with ``mu`` the training
mean (a constant, not learned).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

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


class RowGradients(NamedTuple):
    """Gradients of a batch per gathered row, in the order of the batch's indices, with its
    loss sums (see :meth:`JointLossModel.row_gradients`)."""

    user_factors: torch.Tensor
    item_factors: torch.Tensor
    user_bias: torch.Tensor
    item_bias: torch.Tensor
    sums: torch.Tensor


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
        sums = self.accumulate_packed_gradients(
            users, torch.cat((items, negatives)), ratings - self.global_mean, weights
        )
        embedding = sums[0] / n
        ranking = sums[1] / n
        target = (
            weights.alpha * embedding + weights.beta * ranking + weights.l2 * sums[2:].sum() / n
        )
        return torch.stack((embedding, ranking, target))

    @torch.no_grad()
    def accumulate_packed_gradients(
        self,
        users: torch.Tensor,
        items_and_negatives: torch.Tensor,
        centred_ratings: torch.Tensor,
        weights: LossWeights,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Write the gradient of a batch's target loss into ``.grad``, from packed inputs.

        This is :meth:`accumulate_gradients` for a training loop that prepares its inputs once
        per epoch, and it returns loss sums rather than means, so that a loop can add them up
        without a division per batch. The gradient is the same. Arguments and result are
        those of :meth:`row_gradients`.
        """
        rows = self.row_gradients(users, items_and_negatives, centred_ratings, weights, out)
        parameters = (self.user_factors, self.item_factors, self.user_bias, self.item_bias)
        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
        torch._foreach_zero_([parameter.grad for parameter in parameters])
        self.user_factors.grad.index_add_(0, users, rows.user_factors)
        self.item_factors.grad.index_add_(0, items_and_negatives, rows.item_factors)
        self.user_bias.grad.index_add_(0, users, rows.user_bias)
        self.item_bias.grad.index_add_(0, items_and_negatives, rows.item_bias)
        return rows.sums

    @torch.no_grad()
    def row_gradients(
        self,
        users: torch.Tensor,
        items_and_negatives: torch.Tensor,
        centred_ratings: torch.Tensor,
        weights: LossWeights,
        out: torch.Tensor | None = None,
    ) -> RowGradients:
        """Return the gradient of a batch's target loss per gathered row, and its loss sums.

        Row k of each gradient belongs to ``users[k]`` or ``items_and_negatives[k]``. A row
        that a batch gathers twice has two gradients, which add up.

        Args:
            users: User ids [n].
            items_and_negatives: Item ids [2n]: the batch's n rated items, then the n
                negatives in the same order.
            centred_ratings: The ratings minus ``global_mean`` [n].
            weights: Weights of the target loss.
            out: Optional float tensor [6] that receives the loss sums.

        Returns:
            The gradients, and ``sums``: a tensor of 6 sums over the batch, namely the squared
            errors, the BPR terms ``-log sigmoid(s(u, i) - s(u, j))``, and the squared norms
            of the gathered user factors, item factors (items and negatives), user biases and
            item biases. The batch's target loss is ``(alpha * sums[0] + beta * sums[1] + l2 *
            sums[2:].sum()) / n``.
        """
        n = users.shape[0]
        user_vec = self.user_factors.index_select(0, users)
        item_rows = self.item_factors.index_select(0, items_and_negatives)
        user_b = self.user_bias.index_select(0, users)
        item_rows_b = self.item_bias.index_select(0, items_and_negatives)
        # Row 0 holds the rated items, row 1 the negatives.
        pair_rows = item_rows.view(2, n, -1)

        # Scores without mu and b_u, which the BPR difference cancels: [2, n].
        partial = torch.linalg.vecdot(pair_rows, user_vec).add_(item_rows_b.view(2, n))
        error = torch.add(partial[0], user_b).sub_(centred_ratings)
        # s(u, j) - s(u, i): BPR's term is softplus of it, and its derivative the sigmoid.
        reverse_difference = torch.sub(partial[1], partial[0])

        # Derivatives of the target with respect to s(u, i) (row 0) and s(u, j) (row 1).
        d_scores = torch.empty_like(partial)
        torch.sigmoid(reverse_difference, out=d_scores[1]).mul_(weights.beta / n)
        d_error = error * (2.0 * weights.alpha / n)
        torch.sub(d_error, d_scores[1], out=d_scores[0])
        decay = 2.0 * weights.l2 / n

        d_user = torch.mul(user_vec, decay)
        d_user.addcmul_(d_scores[0].unsqueeze(1), pair_rows[0])
        d_user.addcmul_(d_scores[1].unsqueeze(1), pair_rows[1])
        d_item = torch.mul(pair_rows, decay).addcmul_(d_scores.unsqueeze(2), user_vec)
        d_user_b = torch.add(d_error, user_b, alpha=decay)
        d_item_b = torch.add(d_scores.view(-1), item_rows_b, alpha=decay)

        # softplus(x) = -log sigmoid(-x); torch's softplus returns x itself above x = 20, within
        # 2e-9 of the exact value.
        flat_user = user_vec.view(-1)
        flat_item = item_rows.view(-1)
        sums = (
            torch.dot(error, error),
            F.softplus(reverse_difference).sum(),
            torch.dot(flat_user, flat_user),
            torch.dot(flat_item, flat_item),
            torch.dot(user_b, user_b),
            torch.dot(item_rows_b, item_rows_b),
        )
        return RowGradients(
            user_factors=d_user,
            item_factors=d_item.view(2 * n, -1),
            user_bias=d_user_b,
            item_bias=d_item_b,
            sums=torch.stack(sums) if out is None else torch.stack(sums, out=out),
        )
