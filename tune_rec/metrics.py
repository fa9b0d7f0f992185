"""Ranking metrics (MAP@k, NDCG@10, Recall@10) and the evaluator of one split.

Two protocols rank a user's items by score and judge the top against the held-out ratings:

- ``rated``: rank the user's held-out rated items (validation or test) only.
- ``full``: rank every item that the user has not rated in train (and, for the test split, not
  in validation either).

Under both, an item is relevant when it is held out for the user with a rating of at least
``relevance_threshold``. With R the user's number of relevant held-out items and rel_i the
relevance at rank i:

- AP@k = (1 / min(k, R)) * sum_{i <= k} precision@i * rel_i (``normalisation="min_k_r"``), or
  the same sum divided by R (``normalisation="r"``, as trec_eval and ranx define it).
- NDCG@k uses binary gains, 1 / log2(i + 1) discounts and an ideal DCG over min(R, k) hits.
- Recall@k = hits in the top k / R.

Users with R = 0 have no defined AP. They are skipped, counted as ``n_users_skipped`` and never
scored 0 or NaN. MAP@k and the other means run over the remaining users.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

import numpy as np
import torch

from tune_rec.config import Normalisation, Protocol
from tune_rec.data.dataset import Dataset, Interactions
from tune_rec.errors import InvalidInputError, NonFiniteLossError

logger = logging.getLogger(__name__)

Split = Literal["validation", "test"]

MAP_KS: tuple[int, ...] = (1, 5, 10)
"""Cutoffs of the reported MAP@k keys."""
NDCG_K = 10
RECALL_K = 10
_K_MAX = max(*MAP_KS, NDCG_K, RECALL_K)

PROTOCOLS: tuple[str, ...] = get_args(Protocol)
NORMALISATIONS: tuple[str, ...] = get_args(Normalisation)
SPLITS: tuple[str, ...] = get_args(Split)

# Held-out pairs scored at once by the rated protocol alone: 2**16 pairs gather 16 MiB of
# float32 factors of 64 dimensions from each table.
_PAIRS_PER_SLICE = 2**16
# Scores per chunk of the full protocol when no chunk size is given: 2**22 float32 values are
# 16 MiB, enough for every user of ML-100K (1682 items) in one chunk.
DEFAULT_CHUNK_SCORES = 2**22


def metric_keys(protocols: Sequence[str] = PROTOCOLS) -> list[str]:
    """Return the keys that `Evaluator.evaluate` returns for ``protocols``, in order.

    The first protocol gets the plain keys (``map@10``). Each other one gets its name and an
    underscore as prefix (``full_map@10``).
    """
    plain = [f"map@{k}" for k in MAP_KS]
    plain += [f"ndcg@{NDCG_K}", f"recall@{RECALL_K}", "n_users_evaluated", "n_users_skipped"]
    keys = []
    for position, protocol in enumerate(protocols):
        prefix = "" if position == 0 else f"{protocol}_"
        keys += [prefix + key for key in plain]
    return keys


def topk_metrics(
    relevant_topk: torch.Tensor,
    n_relevant: torch.Tensor,
    ks: Sequence[int] = MAP_KS,
    normalisation: Normalisation = "min_k_r",
    ndcg_k: int = NDCG_K,
    recall_k: int = RECALL_K,
) -> dict[str, torch.Tensor]:
    """Compute each user's AP@k, NDCG@k and Recall@k from the relevance of their top items.

    Every user passed must have at least one relevant item: drop users with R = 0 before the
    call, because their AP is undefined (the evaluator counts them as skipped).

    Args:
        relevant_topk: Bool tensor [n_users, k_max]. Entry (u, i) is True when the item that
            user u ranks at position i + 1 is relevant. Positions past the end of a short
            candidate list are False.
        n_relevant: Integer tensor [n_users]: R, each user's number of relevant held-out
            items, including those outside the top k_max.
        ks: Cutoffs of AP@k, each between 1 and k_max.
        normalisation: ``"min_k_r"`` divides AP@k by min(k, R); ``"r"`` divides it by R.
        ndcg_k: Cutoff of NDCG, at most k_max.
        recall_k: Cutoff of Recall, at most k_max.

    Returns:
        Float64 tensors [n_users] keyed ``map@{k}`` (the per-user AP@k, whose mean is MAP@k),
        ``ndcg@{ndcg_k}`` and ``recall@{recall_k}``. No value is NaN.

    Raises:
        InvalidInputError: On a wrong shape or dtype, a cutoff outside 1..k_max, an unknown
            normalisation, a user with R < 1, or a user with more relevant items in the top
            k_max than R.
    """
    _validate_topk_inputs(relevant_topk, n_relevant, ks, normalisation, ndcg_k, recall_k)
    return _topk_metrics(relevant_topk, n_relevant, ks, normalisation, ndcg_k, recall_k)


def _validate_topk_inputs(
    relevant_topk: torch.Tensor,
    n_relevant: torch.Tensor,
    ks: Sequence[int],
    normalisation: str,
    ndcg_k: int,
    recall_k: int,
) -> None:
    if relevant_topk.dtype != torch.bool or relevant_topk.dim() != 2:
        raise InvalidInputError(
            "relevant_topk must be a 2-D bool tensor [n_users, k_max]; got "
            f"dtype {relevant_topk.dtype} with shape {tuple(relevant_topk.shape)}"
        )
    if n_relevant.dtype.is_floating_point or n_relevant.dtype == torch.bool:
        raise InvalidInputError(f"n_relevant must be an integer tensor; got {n_relevant.dtype}")
    if tuple(n_relevant.shape) != (relevant_topk.shape[0],):
        raise InvalidInputError(
            f"n_relevant must have shape ({relevant_topk.shape[0]},), one count per row of "
            f"relevant_topk; got {tuple(n_relevant.shape)}"
        )
    if normalisation not in NORMALISATIONS:
        raise InvalidInputError(
            f"normalisation must be one of {', '.join(NORMALISATIONS)}; got {normalisation!r}"
        )

    k_max = relevant_topk.shape[1]
    cutoffs = {f"ks entry {k!r}": k for k in ks}
    cutoffs.update({"ndcg_k": ndcg_k, "recall_k": recall_k})
    for name, k in cutoffs.items():
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= k_max:
            raise InvalidInputError(
                f"{name} must be an integer from 1 to k_max = {k_max}, the number of columns "
                f"of relevant_topk; got {k!r}. Pass more columns or a smaller cutoff"
            )
    if n_relevant.numel() == 0:
        return

    n_without = int((n_relevant < 1).sum())
    if n_without:
        raise InvalidInputError(
            f"n_relevant must be at least 1 for every user; {n_without} users have fewer. "
            "AP is undefined without a relevant item: drop those users before the call"
        )
    n_over = int((relevant_topk.sum(dim=1) > n_relevant).sum())
    if n_over:
        raise InvalidInputError(
            f"{n_over} users have more relevant items in relevant_topk than their n_relevant; "
            "n_relevant must count every relevant held-out item of the user"
        )


def _topk_metrics(
    relevant_topk: torch.Tensor,
    n_relevant: torch.Tensor,
    ks: Sequence[int],
    normalisation: str,
    ndcg_k: int,
    recall_k: int,
) -> dict[str, torch.Tensor]:
    relevance = relevant_topk.to(torch.float64)
    ranks = torch.arange(1, relevance.shape[1] + 1, dtype=torch.float64, device=relevance.device)
    n_relevant = n_relevant.to(relevance.device)
    n_relevant_float = n_relevant.to(torch.float64)

    # hits[:, i] is the number of relevant items in the top i + 1, so hits / ranks is
    # precision@(i + 1). Summed over the relevant ranks up to i + 1, it gives the numerator
    # of AP@(i + 1).
    hits = relevance.cumsum(dim=1)
    precision_sums = (hits / ranks * relevance).cumsum(dim=1)

    values = {}
    divide_by_min_k_r = normalisation == "min_k_r"
    for k in ks:
        divisor = n_relevant_float.clamp(max=k) if divide_by_min_k_r else n_relevant_float
        values[f"map@{k}"] = precision_sums[:, k - 1] / divisor

    discounts = 1.0 / torch.log2(ranks[:ndcg_k] + 1.0)
    dcg = (relevance[:, :ndcg_k] * discounts).sum(dim=1)
    ideal_dcg = discounts.cumsum(dim=0)[n_relevant.clamp(max=ndcg_k) - 1]
    values[f"ndcg@{ndcg_k}"] = dcg / ideal_dcg

    values[f"recall@{recall_k}"] = hits[:, recall_k - 1] / n_relevant_float
    return values


@dataclass(frozen=True)
class _RatedBlock:
    """Evaluated users ``row_start:row_stop``, ranked together under the rated protocol.

    Their held-out pairs ``pair_start:pair_stop`` sit at the flat ``positions`` of a
    [row_stop - row_start, width] matrix, one row per user, padded to the block's largest
    held-out count.
    """

    row_start: int
    row_stop: int
    pair_start: int
    pair_stop: int
    width: int
    positions: torch.Tensor  # int64 [pair_stop - pair_start]

    def to(self, device: torch.device) -> _RatedBlock:
        return replace(self, positions=self.positions.to(device))


@dataclass(frozen=True)
class _RatedIndex:
    """Held-out pairs of the evaluated users, sorted by user, and the blocks that rank them."""

    pair_users: torch.Tensor  # int64 [n_pairs], internal user ids
    pair_items: torch.Tensor  # int64 [n_pairs]
    pair_relevant: torch.Tensor  # bool [n_pairs]
    blocks: list[_RatedBlock]

    def to(self, device: torch.device) -> _RatedIndex:
        return _RatedIndex(
            self.pair_users.to(device),
            self.pair_items.to(device),
            self.pair_relevant.to(device),
            [block.to(device) for block in self.blocks],
        )


@dataclass(frozen=True)
class _UserChunk:
    """Evaluated users ``start:stop``, scored together as one [n_chunk_users, n_items] matrix.

    ``excluded_positions`` are the flat positions in that matrix of the items that the full
    protocol ranks last: the user's train items (and validation items, for the test split).
    ``pair_positions`` are those of the chunk's held-out pairs, rated pairs
    ``pair_start:pair_stop``.
    """

    start: int
    stop: int
    pair_start: int
    pair_stop: int
    users: torch.Tensor  # int64 [stop - start], internal user ids
    excluded_positions: torch.Tensor  # int64
    pair_positions: torch.Tensor  # int64 [pair_stop - pair_start]

    def to(self, device: torch.device) -> _UserChunk:
        return _UserChunk(
            self.start,
            self.stop,
            self.pair_start,
            self.pair_stop,
            self.users.to(device),
            self.excluded_positions.to(device),
            self.pair_positions.to(device),
        )


@dataclass(frozen=True)
class _Index:
    """Everything `Evaluator.evaluate` reads, on one device."""

    n_relevant: torch.Tensor  # int64 [n_users_evaluated]
    rated: _RatedIndex
    chunks: list[_UserChunk]
    relevant_keys: torch.Tensor  # int64, sorted row * n_items + item of relevant pairs

    def to(self, device: torch.device) -> _Index:
        return _Index(
            self.n_relevant.to(device),
            self.rated.to(device),
            [chunk.to(device) for chunk in self.chunks],
            self.relevant_keys.to(device),
        )


class Evaluator:
    """Ranking metrics of one split of a dataset, under the rated and full protocols.

    Construction validates the dataset and precomputes index tensors so that each
    `evaluate` call is a few gathers, one matrix product per chunk of users and top-k
    selections. Build one evaluator per dataset and split, and call it every epoch.

    The evaluated users are those with at least one relevant held-out item; the others are
    counted in ``n_users_skipped``. Both protocols evaluate the same users.

    Args:
        dataset: The split ratings, with contiguous 0-based ids.
        split: ``"validation"`` or ``"test"``, the held-out ratings to judge against.
        relevance_threshold: A held-out rating at or above it makes the item relevant.
        normalisation: AP@k divisor, ``"min_k_r"`` for min(k, R) or ``"r"`` for R.
        chunk_size: Users scored at once by the full protocol, so memory grows as
            chunk_size x n_items rather than n_users x n_items. None picks as many users as fit
            in 2**22 scores. The rated protocol ranks users in blocks of as many scores,
            padded to each block's largest held-out count.

    Raises:
        InvalidInputError: On an unknown split or normalisation, a non-finite threshold or a
            chunk size below 1. Also on ids outside the dataset's ranges, on a (user, item)
            pair held out twice or also present in an excluded split, and on a split without
            any relevant held-out rating.
    """

    def __init__(
        self,
        dataset: Dataset,
        split: Split = "validation",
        relevance_threshold: float = 4.0,
        normalisation: Normalisation = "min_k_r",
        chunk_size: int | None = None,
    ) -> None:
        _validate_evaluator_settings(split, relevance_threshold, normalisation, chunk_size)
        self.split = split
        self.relevance_threshold = float(relevance_threshold)
        self.normalisation = normalisation
        self.n_users = dataset.n_users
        self.n_items = dataset.n_items

        held_out = dataset.validation if split == "validation" else dataset.test
        # The splits whose items the full protocol ranks last, by name.
        excluded = {"train": dataset.train}
        if split == "test":
            excluded["validation"] = dataset.validation
        _validate_pairs(dataset, split, held_out, excluded)

        relevant = held_out.ratings >= self.relevance_threshold
        n_relevant = np.bincount(held_out.users[relevant], minlength=self.n_users)
        evaluated_users = np.flatnonzero(n_relevant > 0)
        if evaluated_users.size == 0:
            raise InvalidInputError(
                f"the {split} split has no rating at or above relevance_threshold = "
                f"{self.relevance_threshold:g}, so no user can be evaluated; lower the "
                "threshold or check the rating scale"
            )
        self.n_users_evaluated = int(evaluated_users.size)
        self.n_users_skipped = self.n_users - self.n_users_evaluated
        if chunk_size is None:
            chunk_size = max(1, DEFAULT_CHUNK_SCORES // max(self.n_items, 1))
        self.chunk_size = chunk_size

        # row_of_user[u] is u's row among the evaluated users, or -1 for a skipped user.
        row_of_user = np.full(self.n_users, -1, dtype=np.int64)
        row_of_user[evaluated_users] = np.arange(evaluated_users.size)
        rated, pair_rows = _build_rated_index(
            held_out, relevant, row_of_user, evaluated_users, chunk_size * self.n_items
        )
        self._index = _Index(
            n_relevant=torch.from_numpy(n_relevant[evaluated_users].astype(np.int64)),
            rated=rated,
            chunks=_build_chunks(
                excluded,
                row_of_user,
                evaluated_users,
                pair_rows,
                rated.pair_items.numpy(),
                self.n_items,
                chunk_size,
            ),
            relevant_keys=torch.from_numpy(
                np.sort(
                    row_of_user[held_out.users[relevant]] * self.n_items + held_out.items[relevant]
                )
            ),
        )
        self._index_on_device: dict[torch.device, _Index] = {}
        logger.debug(
            "evaluator of the %s split: %d users evaluated, %d skipped, %d held-out pairs, "
            "%d chunks of up to %d users, %d blocks of the rated protocol",
            split,
            self.n_users_evaluated,
            self.n_users_skipped,
            pair_rows.size,
            len(self._index.chunks),
            chunk_size,
            len(rated.blocks),
        )

    def evaluate(
        self,
        user_factors: torch.Tensor,
        item_factors: torch.Tensor,
        user_bias: torch.Tensor | None = None,
        item_bias: torch.Tensor | None = None,
        protocols: Sequence[Protocol] = ("rated", "full"),
    ) -> dict[str, float]:
        """Score every evaluated user's items with the model's factors and average the metrics.

        The score is ``mu + b_u + b_i + p_u . q_i``. Rankings are per user, so the global mean
        and ``user_bias`` do not change any metric: ``user_bias`` is only checked. Ties between
        scores are broken by `torch.topk`, deterministically on CPU.

        Args:
            user_factors: Float tensor [n_users, d].
            item_factors: Float tensor [n_items, d], on the same device. Scores are computed
                in its dtype.
            user_bias: Optional float tensor [n_users].
            item_bias: Optional float tensor [n_items]; None means no item bias.
            protocols: Protocols to compute, at least one, each once.

        Returns:
            For the first protocol, the keys ``map@1``, ``map@5``, ``map@10``, ``ndcg@10``,
            ``recall@10``, ``n_users_evaluated`` and ``n_users_skipped``. For each other
            protocol, the same keys prefixed with its name and an underscore, such as
            ``full_map@10``. See `metric_keys`.

        Raises:
            InvalidInputError: On an unknown or repeated protocol, or factors or biases of the
                wrong shape or on different devices.
            NonFiniteLossError: When a factor or bias is NaN or infinite.
        """
        self._validate_model(user_factors, item_factors, user_bias, item_bias, protocols)
        index = self._index_on(item_factors.device)

        with torch.inference_mode():
            item_factors = item_factors.detach()
            user_factors = user_factors.detach().to(item_factors.dtype)
            if item_bias is not None:
                item_bias = item_bias.detach().to(item_factors.dtype)

            top_items = pair_scores = None
            if "full" in protocols:
                top_items, pair_scores = self._score_chunks(
                    index, user_factors, item_factors, item_bias, "rated" in protocols
                )
            else:
                pair_scores = _score_pairs(index.rated, user_factors, item_factors, item_bias)

            results: dict[str, float] = {}
            for position, protocol in enumerate(protocols):
                if protocol == "rated":
                    relevant_topk = _rank_rated(index.rated, pair_scores)
                else:
                    relevant_topk = self._judge_full(index.relevant_keys, top_items)
                per_user = _topk_metrics(
                    relevant_topk, index.n_relevant, MAP_KS, self.normalisation, NDCG_K, RECALL_K
                )
                means = torch.stack(list(per_user.values())).mean(dim=1).tolist()
                prefix = "" if position == 0 else f"{protocol}_"
                for key, mean in zip(per_user, means, strict=True):
                    results[prefix + key] = mean
                results[prefix + "n_users_evaluated"] = self.n_users_evaluated
                results[prefix + "n_users_skipped"] = self.n_users_skipped
        return results

    def _score_chunks(
        self,
        index: _Index,
        user_factors: torch.Tensor,
        item_factors: torch.Tensor,
        item_bias: torch.Tensor | None,
        with_pairs: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return each evaluated user's top items under the full protocol.

        With ``with_pairs``, also return the scores of the held-out pairs, read from the same
        score matrices before the excluded items are masked.
        """
        k = min(_K_MAX, self.n_items)
        device = item_factors.device
        top_items = torch.empty((self.n_users_evaluated, k), dtype=torch.int64, device=device)
        pair_scores = None
        if with_pairs:
            pair_scores = torch.empty(
                index.rated.pair_items.shape, dtype=item_factors.dtype, device=device
            )

        for chunk in index.chunks:
            chunk_factors = user_factors[chunk.users]
            if item_bias is None:
                scores = chunk_factors @ item_factors.T
            else:
                scores = torch.addmm(item_bias, chunk_factors, item_factors.T)
            flat_scores = scores.view(-1)
            if pair_scores is not None:
                pair_scores[chunk.pair_start : chunk.pair_stop] = flat_scores[chunk.pair_positions]
            flat_scores.index_fill_(0, chunk.excluded_positions, -math.inf)
            top_items[chunk.start : chunk.stop] = torch.topk(scores, k, dim=1).indices
        return top_items, pair_scores

    def _judge_full(self, relevant_keys: torch.Tensor, top_items: torch.Tensor) -> torch.Tensor:
        """Return whether each top item is a relevant held-out item of its user."""
        rows = torch.arange(top_items.shape[0], device=top_items.device).unsqueeze(1)
        keys = rows * self.n_items + top_items
        found = torch.searchsorted(relevant_keys, keys).clamp_(max=relevant_keys.numel() - 1)
        return _pad_columns(relevant_keys[found] == keys)

    def _index_on(self, device: torch.device) -> _Index:
        # NOTE: the tests run on CPU only; evaluation with factors on a GPU has not been run.
        if device.type == "cpu":
            return self._index
        if device not in self._index_on_device:
            self._index_on_device[device] = self._index.to(device)
        return self._index_on_device[device]

    def _validate_model(
        self,
        user_factors: torch.Tensor,
        item_factors: torch.Tensor,
        user_bias: torch.Tensor | None,
        item_bias: torch.Tensor | None,
        protocols: Sequence[str],
    ) -> None:
        if isinstance(protocols, str) or not protocols:
            raise InvalidInputError(
                f"protocols must be a non-empty sequence of {', '.join(PROTOCOLS)}; "
                f"got {protocols!r}"
            )
        for protocol in protocols:
            if protocol not in PROTOCOLS:
                raise InvalidInputError(
                    f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}"
                )
        if len(set(protocols)) != len(protocols):
            raise InvalidInputError(f"protocols must not repeat a protocol; got {protocols!r}")

        if user_factors.dim() != 2 or user_factors.shape[0] != self.n_users:
            raise InvalidInputError(
                f"user_factors must have shape ({self.n_users}, d); got "
                f"{tuple(user_factors.shape)}"
            )
        if item_factors.shape != (self.n_items, user_factors.shape[1]):
            raise InvalidInputError(
                f"item_factors must have shape ({self.n_items}, {user_factors.shape[1]}) to "
                f"match user_factors; got {tuple(item_factors.shape)}"
            )
        named = {"user_factors": user_factors, "item_factors": item_factors}
        for name, bias, size in (
            ("user_bias", user_bias, self.n_users),
            ("item_bias", item_bias, self.n_items),
        ):
            if bias is None:
                continue
            if bias.shape != (size,):
                raise InvalidInputError(
                    f"{name} must have shape ({size},); got {tuple(bias.shape)}. "
                    "Squeeze an embedding weight of shape (n, 1) first"
                )
            named[name] = bias
        for name, tensor in named.items():
            if not tensor.dtype.is_floating_point:
                raise InvalidInputError(
                    f"{name} must be a floating-point tensor; got {tensor.dtype}"
                )
            if tensor.device != item_factors.device:
                raise InvalidInputError(
                    f"{name} is on {tensor.device} but item_factors on {item_factors.device}; "
                    "move them to one device"
                )

        # A float64 sum is NaN or infinite exactly when some element is, because float32
        # values cannot overflow it. One sum per tensor costs far less than isfinite().all().
        sums = torch.stack([tensor.detach().sum(dtype=torch.float64) for tensor in named.values()])
        finite = torch.isfinite(sums).tolist()
        for name, is_finite in zip(named, finite, strict=True):
            if not is_finite:
                raise NonFiniteLossError(
                    f"{name} contains NaN or infinite values, so items cannot be ranked; "
                    "lower the learning rate or check the loss for divergence"
                )


def _validate_evaluator_settings(
    split: str, relevance_threshold: float, normalisation: str, chunk_size: int | None
) -> None:
    if split not in SPLITS:
        raise InvalidInputError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if normalisation not in NORMALISATIONS:
        raise InvalidInputError(
            f"normalisation must be one of {', '.join(NORMALISATIONS)}; got {normalisation!r}"
        )
    if not math.isfinite(relevance_threshold):
        raise InvalidInputError(
            f"relevance_threshold must be a finite rating; got {relevance_threshold}"
        )
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise InvalidInputError(
            f"chunk_size must be a positive integer or None; got {chunk_size!r}"
        )


def _validate_pairs(
    dataset: Dataset, split: str, held_out: Interactions, excluded: dict[str, Interactions]
) -> None:
    """Raise InvalidInputError unless ids are in range and held-out pairs are unique and new.

    A held-out pair that repeats, or that also sits in train (or validation, for test), would
    be counted twice or ranked last by the full protocol while still counting as relevant.
    """
    for name, part in {split: held_out, **excluded}.items():
        for kind, ids, size in (
            ("user", part.users, dataset.n_users),
            ("item", part.items, dataset.n_items),
        ):
            if ids.size and (ids.min() < 0 or ids.max() >= size):
                raise InvalidInputError(
                    f"{name} {kind} ids must lie in 0..{size - 1} (n_{kind}s = {size}); got "
                    f"values from {ids.min()} to {ids.max()}. Map ids to contiguous 0-based ids"
                )

    held_out_keys = held_out.users.astype(np.int64) * dataset.n_items + held_out.items
    n_repeated = held_out_keys.size - np.unique(held_out_keys).size
    if n_repeated:
        raise InvalidInputError(
            f"the {split} split repeats {n_repeated} (user, item) pairs; keep one rating "
            "per pair (the latest) before splitting"
        )
    for name, part in excluded.items():
        part_keys = part.users.astype(np.int64) * dataset.n_items + part.items
        n_shared = int(np.isin(held_out_keys, part_keys).sum())
        if n_shared:
            raise InvalidInputError(
                f"{n_shared} (user, item) pairs of the {split} split are also in {name}; "
                "a pair may appear in one split only"
            )


def _score_pairs(
    rated: _RatedIndex,
    user_factors: torch.Tensor,
    item_factors: torch.Tensor,
    item_bias: torch.Tensor | None,
) -> torch.Tensor:
    """Return the score of each held-out pair, without the terms that are constant per user.

    Pairs are scored in slices, so that the gathered factors take at most
    ``_PAIRS_PER_SLICE`` rows of each table at a time.
    """
    n_pairs = rated.pair_items.shape[0]
    scores = torch.empty(n_pairs, dtype=item_factors.dtype, device=item_factors.device)
    for start in range(0, n_pairs, _PAIRS_PER_SLICE):
        pairs = slice(start, start + _PAIRS_PER_SLICE)
        items = rated.pair_items[pairs]
        torch.linalg.vecdot(
            user_factors[rated.pair_users[pairs]], item_factors[items], out=scores[pairs]
        )
        if item_bias is not None:
            scores[pairs] += item_bias[items]
    return scores


def _rank_rated(rated: _RatedIndex, pair_scores: torch.Tensor) -> torch.Tensor:
    """Return the relevance of each user's top held-out items under the rated protocol."""
    ranked = []
    for block in rated.blocks:
        shape = (block.row_stop - block.row_start, block.width)
        pairs = slice(block.pair_start, block.pair_stop)
        # Padding scores -inf, so it ranks after every candidate, and its relevance is False.
        scores = torch.full(shape, -math.inf, dtype=pair_scores.dtype, device=pair_scores.device)
        scores.view(-1)[block.positions] = pair_scores[pairs]
        relevance = torch.zeros(shape, dtype=torch.bool, device=pair_scores.device)
        relevance.view(-1)[block.positions] = rated.pair_relevant[pairs]
        top_positions = torch.topk(scores, min(_K_MAX, block.width), dim=1).indices
        ranked.append(_pad_columns(relevance.gather(1, top_positions)))
    return torch.cat(ranked)


def _build_rated_index(
    held_out: Interactions,
    relevant: np.ndarray,
    row_of_user: np.ndarray,
    evaluated_users: np.ndarray,
    block_entries: int = DEFAULT_CHUNK_SCORES,
) -> tuple[_RatedIndex, np.ndarray]:
    """Return the rated protocol's index and the row of each of its pairs.

    Consecutive users form blocks of at most ``block_entries`` padded entries (or one user),
    so that ranking memory grows with the block, not with all users times the heaviest
    user's held-out count.
    """
    rows = row_of_user[held_out.users]
    keep = rows >= 0
    rows, items, relevant = rows[keep], held_out.items[keep].astype(np.int64), relevant[keep]
    order = np.lexsort((items, rows))
    rows, items, relevant = rows[order], items[order], relevant[order]

    counts = np.bincount(rows, minlength=evaluated_users.size)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    columns = np.arange(rows.size) - starts[rows]
    blocks = []
    for row_start, row_stop in _block_bounds(counts, block_entries):
        width = int(counts[row_start:row_stop].max())
        pair_start = int(starts[row_start])
        pair_stop = int(starts[row_stop - 1] + counts[row_stop - 1])
        pairs = slice(pair_start, pair_stop)
        positions = (rows[pairs] - row_start) * width + columns[pairs]
        blocks.append(
            _RatedBlock(
                row_start, row_stop, pair_start, pair_stop, width, torch.from_numpy(positions)
            )
        )
    index = _RatedIndex(
        pair_users=torch.from_numpy(evaluated_users[rows].astype(np.int64)),
        pair_items=torch.from_numpy(items),
        pair_relevant=torch.from_numpy(relevant),
        blocks=blocks,
    )
    return index, rows


def _block_bounds(counts: np.ndarray, block_entries: int) -> list[tuple[int, int]]:
    """Cut rows into consecutive blocks whose rows x largest count stays within
    ``block_entries``, or a single row."""
    bounds = []
    start, width = 0, 0
    for row, count in enumerate(counts.tolist()):
        grown = max(width, count)
        if row > start and (row + 1 - start) * grown > block_entries:
            bounds.append((start, row))
            start, grown = row, count
        width = grown
    bounds.append((start, len(counts)))
    return bounds


def _build_chunks(
    excluded: dict[str, Interactions],
    row_of_user: np.ndarray,
    evaluated_users: np.ndarray,
    pair_rows: np.ndarray,
    pair_items: np.ndarray,
    n_items: int,
    chunk_size: int,
) -> list[_UserChunk]:
    """Split the evaluated users into chunks and locate excluded and held-out pairs in each."""
    rows = row_of_user[np.concatenate([part.users for part in excluded.values()])]
    items = np.concatenate([part.items for part in excluded.values()]).astype(np.int64)
    keep = rows >= 0
    order = np.argsort(rows[keep], kind="stable")
    rows, items = rows[keep][order], items[keep][order]

    chunks = []
    for start in range(0, evaluated_users.size, chunk_size):
        stop = min(start + chunk_size, evaluated_users.size)
        low, high = np.searchsorted(rows, [start, stop])
        pair_start, pair_stop = np.searchsorted(pair_rows, [start, stop])
        excluded_positions = (rows[low:high] - start) * n_items + items[low:high]
        pair_positions = (pair_rows[pair_start:pair_stop] - start) * n_items + pair_items[
            pair_start:pair_stop
        ]
        chunks.append(
            _UserChunk(
                start=start,
                stop=stop,
                pair_start=int(pair_start),
                pair_stop=int(pair_stop),
                users=torch.from_numpy(evaluated_users[start:stop].astype(np.int64)),
                excluded_positions=torch.from_numpy(excluded_positions),
                pair_positions=torch.from_numpy(pair_positions),
            )
        )
    return chunks


def _pad_columns(relevant_topk: torch.Tensor) -> torch.Tensor:
    """Pad with False columns up to the largest cutoff, for lists shorter than it."""
    n_missing = _K_MAX - relevant_topk.shape[1]
    if n_missing <= 0:
        return relevant_topk
    return torch.nn.functional.pad(relevant_topk, (0, n_missing), value=False)
