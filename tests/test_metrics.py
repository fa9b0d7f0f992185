"""Tests of the ranking metrics and the evaluator, on hand-computed and random fixtures."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tune_rec.data.dataset import Dataset, Interactions
from tune_rec.errors import InvalidInputError, NonFiniteLossError
from tune_rec.metrics import Evaluator, metric_keys, topk_metrics

REPO_ROOT = Path(__file__).resolve().parents[1]
METRICS = ("map@1", "map@5", "map@10", "ndcg@10", "recall@10")


def log2_discount(rank: int) -> float:
    return 1.0 / math.log2(rank + 1)


def interactions(triples: list[tuple[int, int, float]]) -> Interactions:
    users, items, ratings = zip(*triples, strict=True) if triples else ((), (), ())
    return Interactions(
        users=np.array(users, dtype=np.int64),
        items=np.array(items, dtype=np.int64),
        ratings=np.array(ratings, dtype=np.float32),
    )


def make_dataset(n_users: int, n_items: int, train, validation, test=()) -> Dataset:
    return Dataset(
        name="fixture",
        n_users=n_users,
        n_items=n_items,
        train=interactions(list(train)),
        validation=interactions(list(validation)),
        test=interactions(list(test)),
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        checksum="",
    )


def score_model(scores: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Return factors whose dot products are exactly ``scores`` [n_users, n_items]."""
    user_factors = torch.tensor(scores, dtype=torch.float64)
    item_factors = torch.eye(scores.shape[1], dtype=torch.float64)
    return user_factors, item_factors


# The 3-user fixture, 16 items, validation split, threshold 4. Each user's validation items
# are listed in decreasing score, so the list order is the rated protocol's ranking.
#
# User 0: items 0..4 rated 5, 3, 4, 2, 1, so relevance by rank is 1 0 1 0 0 and R = 2.
#   AP@1 = 1/min(1, 2) * 1 = 1.   AP@5 = AP@10 = 1/2 * (1/1 + 2/3) = 5/6.
#   NDCG@10 = (1 + 1/log2(4)) / (1 + 1/log2(3)) = 1.5 / 1.6309298 = 0.9197208.
#   Recall@10 = 2/2 = 1.
# User 1: items 0..11; relevance by rank 0 1 0 0 1 0 1 0 0 0 0 1, so R = 4 and one relevant
#   item is outside the top 10.
#   AP@1 = 0.   AP@5 = 1/4 * (1/2 + 2/5) = 0.225.   AP@10 = 1/4 * (1/2 + 2/5 + 3/7) = 0.3321429.
#   NDCG@10 = (1/log2(3) + 1/log2(6) + 1/log2(8)) / (1 + 1/log2(3) + 1/log2(4) + 1/log2(5))
#           = 1.3511159 / 2.5616064 = 0.5274487.
#   Recall@10 = 3/4.
# User 2: items 0 and 1 rated 3 and 2, so R = 0: skipped, counted, and not part of any mean.
#
# Rated means: MAP@1 = 1/2, MAP@5 = (5/6 + 0.225)/2, MAP@10 = (5/6 + 0.3321429)/2,
# NDCG@10 = (0.9197208 + 0.5274487)/2, Recall@10 = (1 + 3/4)/2.
# With the R normalisation only user 0's AP@1 changes: 1/2 instead of 1, so MAP@1 = 1/4.
#
# Full protocol: user 0's train item 10 scores 100 and must be masked. The unrated item 15
# scores 9.5, between items 0 and 1, so user 0's relevance by rank becomes 1 0 0 1 0 ... :
#   AP@1 = 1.   AP@5 = AP@10 = 1/2 * (1 + 2/4) = 3/4.
#   NDCG@10 = (1 + 1/log2(5)) / (1 + 1/log2(3)) = 1.4306766 / 1.6309298 = 0.8772153.
# User 1's unrated items score below its validation items and its train item 12 (score 100) is
# masked, so its values are the rated ones.
USER_0_RATINGS = [5, 3, 4, 2, 1]
USER_1_RATINGS = [3, 4, 2, 1, 5, 3, 4, 3, 2, 1, 3, 5]


@pytest.fixture
def three_users() -> tuple[Dataset, torch.Tensor, torch.Tensor]:
    validation = [(0, item, rating) for item, rating in enumerate(USER_0_RATINGS)]
    validation += [(1, item, rating) for item, rating in enumerate(USER_1_RATINGS)]
    validation += [(2, 0, 3), (2, 1, 2)]
    train = [(0, 10, 5), (0, 11, 5), (1, 12, 5), (1, 13, 5), (2, 2, 4), (2, 3, 5)]
    dataset = make_dataset(3, 16, train, validation)

    scores = np.zeros((3, 16))
    scores[0, :5] = [10, 9, 8, 7, 6]
    scores[0, 10] = 100.0
    scores[0, 15] = 9.5
    scores[1, :12] = np.arange(12, 0, -1)
    scores[1, 12] = 100.0
    scores[1, 14] = 0.5
    scores[2, :2] = [1, 2]
    user_factors, item_factors = score_model(scores)
    return dataset, user_factors, item_factors


USER_0_NDCG = 1.5 / (1 + 1 / math.log2(3))
USER_1_AP10 = (1 / 2 + 2 / 5 + 3 / 7) / 4
USER_1_NDCG = (1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(8)) / sum(
    log2_discount(rank) for rank in range(1, 5)
)
USER_0_FULL_NDCG = (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))


def test_three_users_hand_values_match_comments():
    assert math.isclose(USER_0_NDCG, 0.9197208, abs_tol=1e-7)
    assert math.isclose(USER_1_AP10, 0.3321429, abs_tol=1e-7)
    assert math.isclose(USER_1_NDCG, 0.5274487, abs_tol=1e-7)
    assert math.isclose(USER_0_FULL_NDCG, 0.8772153, abs_tol=1e-7)


def test_evaluate_rated_three_users(three_users):
    dataset, user_factors, item_factors = three_users

    result = Evaluator(dataset).evaluate(user_factors, item_factors, protocols=("rated",))

    assert result["map@1"] == pytest.approx(0.5)
    assert result["map@5"] == pytest.approx((5 / 6 + 0.225) / 2)
    assert result["map@10"] == pytest.approx((5 / 6 + USER_1_AP10) / 2)
    assert result["ndcg@10"] == pytest.approx((USER_0_NDCG + USER_1_NDCG) / 2)
    assert result["recall@10"] == pytest.approx(0.875)
    assert result["n_users_evaluated"] == 2
    assert result["n_users_skipped"] == 1


def test_evaluate_full_three_users(three_users):
    dataset, user_factors, item_factors = three_users

    result = Evaluator(dataset).evaluate(user_factors, item_factors, protocols=("full",))

    assert result["map@1"] == pytest.approx(0.5)
    assert result["map@5"] == pytest.approx((3 / 4 + 0.225) / 2)
    assert result["map@10"] == pytest.approx((3 / 4 + USER_1_AP10) / 2)
    assert result["ndcg@10"] == pytest.approx((USER_0_FULL_NDCG + USER_1_NDCG) / 2)
    assert result["recall@10"] == pytest.approx(0.875)
    assert result["n_users_evaluated"] == 2
    assert result["n_users_skipped"] == 1


def test_evaluate_r_normalisation_three_users(three_users):
    dataset, user_factors, item_factors = three_users

    by_min_k_r = Evaluator(dataset, normalisation="min_k_r").evaluate(user_factors, item_factors)
    by_r = Evaluator(dataset, normalisation="r").evaluate(user_factors, item_factors)

    assert by_min_k_r["map@1"] == pytest.approx(0.5)
    assert by_r["map@1"] == pytest.approx(0.25)
    assert by_r["map@5"] == pytest.approx(by_min_k_r["map@5"])
    assert by_r["ndcg@10"] == pytest.approx(by_min_k_r["ndcg@10"])


def test_evaluate_keys_prefix_later_protocols(three_users):
    dataset, user_factors, item_factors = three_users
    evaluator = Evaluator(dataset)

    rated_first = evaluator.evaluate(user_factors, item_factors, protocols=("rated", "full"))
    full_first = evaluator.evaluate(user_factors, item_factors, protocols=("full", "rated"))

    assert list(rated_first) == metric_keys(("rated", "full"))
    assert "full_map@10" in rated_first
    assert "rated_map@10" in full_first
    assert rated_first["full_map@5"] == pytest.approx(full_first["map@5"])
    assert rated_first["map@5"] == pytest.approx(full_first["rated_map@5"])
    assert rated_first["map@5"] != pytest.approx(rated_first["full_map@5"])


def test_evaluate_skips_user_without_relevant_item(three_users):
    dataset, user_factors, item_factors = three_users

    result = Evaluator(dataset).evaluate(user_factors, item_factors)

    # Scoring the skipped user 2 as 0 would give MAP@1 = 1/3, and as NaN a NaN mean.
    for key, value in result.items():
        assert not math.isnan(value), key
    assert result["map@1"] == pytest.approx(0.5)
    assert result["n_users_skipped"] == 1
    assert result["full_n_users_skipped"] == 1
    assert result["n_users_evaluated"] + result["n_users_skipped"] == dataset.n_users


def test_evaluate_skips_user_without_held_out_item():
    validation = [(0, 0, 5), (0, 1, 1)]
    train = [(0, 2, 5), (1, 0, 4), (1, 1, 3)]
    dataset = make_dataset(2, 3, train, validation)
    user_factors, item_factors = score_model(np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))

    result = Evaluator(dataset).evaluate(user_factors, item_factors)

    assert result["n_users_evaluated"] == 1
    assert result["n_users_skipped"] == 1
    assert result["map@1"] == pytest.approx(1.0)
    assert result["full_map@1"] == pytest.approx(1.0)


def test_evaluate_full_masks_train_items():
    # Train item 0 scores highest; the relevant validation item 1 comes second.
    train = [(0, 0, 5), (0, 3, 2)]
    validation = [(0, 1, 5), (0, 2, 1)]
    dataset = make_dataset(1, 5, train, validation)
    user_factors, item_factors = score_model(np.array([[10.0, 5.0, 1.0, 9.0, 0.0]]))

    result = Evaluator(dataset).evaluate(user_factors, item_factors, protocols=("full",))

    assert result["map@1"] == pytest.approx(1.0)
    assert result["ndcg@10"] == pytest.approx(1.0)


def test_evaluate_test_split_masks_validation_items():
    # Validation item 1 scores highest; the relevant test item 2 comes second. Item 0 is in train.
    train = [(0, 0, 5)]
    validation = [(0, 1, 5)]
    test = [(0, 2, 4), (0, 3, 1)]
    dataset = make_dataset(1, 5, train, validation, test)
    user_factors, item_factors = score_model(np.array([[20.0, 10.0, 5.0, 1.0, 0.0]]))

    test_full = Evaluator(dataset, split="test").evaluate(
        user_factors, item_factors, protocols=("full",)
    )
    validation_full = Evaluator(dataset, split="validation").evaluate(
        user_factors, item_factors, protocols=("full",)
    )

    assert test_full["map@1"] == pytest.approx(1.0)
    assert test_full["recall@10"] == pytest.approx(1.0)
    # Judged on validation, item 1 is the relevant one and ranks first once train is masked.
    assert validation_full["map@1"] == pytest.approx(1.0)


def test_evaluate_test_split_ranks_test_items_only():
    train = [(0, 0, 5)]
    validation = [(0, 1, 5)]
    test = [(0, 2, 1), (0, 3, 4)]
    dataset = make_dataset(1, 5, train, validation, test)
    # Under rated, only test items 2 (not relevant) and 3 (relevant) are ranked.
    user_factors, item_factors = score_model(np.array([[20.0, 10.0, 5.0, 1.0, 0.0]]))

    result = Evaluator(dataset, split="test").evaluate(
        user_factors, item_factors, protocols=("rated",)
    )

    assert result["map@1"] == pytest.approx(0.0)
    assert result["map@5"] == pytest.approx(0.5)
    assert result["recall@10"] == pytest.approx(1.0)


def test_evaluate_bias_effects(three_users):
    dataset, user_factors, item_factors = three_users
    evaluator = Evaluator(dataset)
    # A large bias on item 1 puts it first for both users; it is relevant for user 1 only.
    item_bias = torch.zeros(16, dtype=torch.float64)
    item_bias[1] = 1000.0
    user_bias = torch.tensor([5.0, -3.0, 1.0], dtype=torch.float64)

    plain = evaluator.evaluate(user_factors, item_factors, protocols=("rated",))
    with_user_bias = evaluator.evaluate(
        user_factors, item_factors, user_bias=user_bias, protocols=("rated",)
    )
    with_item_bias = evaluator.evaluate(
        user_factors, item_factors, item_bias=item_bias, protocols=("rated",)
    )

    assert with_user_bias == plain
    # By relevance, user 0 now ranks 0 1 1 0 0: AP@1 = 0, AP@5 = (1/2 + 2/3) / 2.
    # User 1 ranks 1 0 0 0 1 0 1 ...: AP@1 = 1, AP@5 = (1 + 2/5) / 4.
    assert with_item_bias["map@5"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + (1 + 2 / 5) / 4) / 2)
    assert with_item_bias["map@5"] != pytest.approx(plain["map@5"])


def test_topk_metrics_normalisations_r_above_k():
    # R = 12 relevant items, all of the top 10 relevant.
    relevant_topk = torch.ones((1, 10), dtype=torch.bool)
    n_relevant = torch.tensor([12])

    by_min_k_r = topk_metrics(relevant_topk, n_relevant, normalisation="min_k_r")
    by_r = topk_metrics(relevant_topk, n_relevant, normalisation="r")

    # min(k, R) = 10: (1/10) * (10 precisions of 1) = 1. R: (1/12) * 10 = 5/6.
    assert by_min_k_r["map@10"].item() == pytest.approx(1.0)
    assert by_r["map@10"].item() == pytest.approx(10 / 12)
    assert by_min_k_r["map@5"].item() == pytest.approx(1.0)
    assert by_r["map@5"].item() == pytest.approx(5 / 12)
    assert by_min_k_r["ndcg@10"].item() == pytest.approx(1.0)
    assert by_r["recall@10"].item() == pytest.approx(10 / 12)


def test_topk_metrics_hand_values():
    # Relevance by rank 0 1 1 0 0 0 0 0 0 1 with R = 3:
    # AP@1 = 0, AP@5 = (1/2 + 2/3) / 3, AP@10 = (1/2 + 2/3 + 3/10) / 3,
    # NDCG@10 = (1/log2(3) + 1/log2(4) + 1/log2(11)) / (1 + 1/log2(3) + 1/log2(4)).
    relevant_topk = torch.tensor([[0, 1, 1, 0, 0, 0, 0, 0, 0, 1]], dtype=torch.bool)

    values = topk_metrics(relevant_topk, torch.tensor([3]))

    assert values["map@1"].item() == pytest.approx(0.0)
    assert values["map@5"].item() == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert values["map@10"].item() == pytest.approx((1 / 2 + 2 / 3 + 3 / 10) / 3)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    dcg = 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(11)
    assert values["ndcg@10"].item() == pytest.approx(dcg / ideal)
    assert values["recall@10"].item() == pytest.approx(1.0)


def test_topk_metrics_rejects_user_without_relevant_item():
    with pytest.raises(InvalidInputError, match="n_relevant must be at least 1"):
        topk_metrics(torch.zeros((2, 10), dtype=torch.bool), torch.tensor([1, 0]))


def test_topk_metrics_rejects_cutoff_above_columns():
    with pytest.raises(InvalidInputError, match="ks entry 10 must be an integer from 1 to"):
        topk_metrics(torch.zeros((1, 5), dtype=torch.bool), torch.tensor([1]))


def test_topk_metrics_rejects_more_hits_than_n_relevant():
    with pytest.raises(InvalidInputError, match="more relevant items in relevant_topk"):
        topk_metrics(torch.ones((1, 10), dtype=torch.bool), torch.tensor([2]))


def test_topk_metrics_rejects_float_relevance():
    with pytest.raises(InvalidInputError, match="relevant_topk must be a 2-D bool tensor"):
        topk_metrics(torch.zeros((1, 10)), torch.tensor([1]))


def test_topk_metrics_rejects_unknown_normalisation():
    with pytest.raises(InvalidInputError, match="normalisation must be one of min_k_r, r"):
        topk_metrics(
            torch.zeros((1, 10), dtype=torch.bool), torch.tensor([1]), normalisation="trec"
        )


# Slow reference: one user at a time, straight from the definitions.
def reference_metrics(
    dataset: Dataset,
    split: str,
    scores: np.ndarray,
    protocol: str,
    normalisation: str,
    threshold: float = 4.0,
) -> dict[str, float]:
    held_out = dataset.validation if split == "validation" else dataset.test
    excluded_parts = [dataset.train] + ([dataset.validation] if split == "test" else [])
    per_user: dict[str, list[float]] = {key: [] for key in METRICS}
    n_skipped = 0
    for user in range(dataset.n_users):
        mine = held_out.users == user
        held_items = held_out.items[mine].tolist()
        relevant = set(held_out.items[mine & (held_out.ratings >= threshold)].tolist())
        n_relevant = len(relevant)
        if n_relevant == 0:
            n_skipped += 1
            continue
        if protocol == "rated":
            candidates = held_items
        else:
            excluded = set()
            for part in excluded_parts:
                excluded |= set(part.items[part.users == user].tolist())
            candidates = [item for item in range(dataset.n_items) if item not in excluded]
        ranked = sorted(candidates, key=lambda item: -scores[user, item])
        hits = [item in relevant for item in ranked]

        for k in (1, 5, 10):
            n_hits, total = 0, 0.0
            for rank, hit in enumerate(hits[:k], start=1):
                if hit:
                    n_hits += 1
                    total += n_hits / rank
            divisor = min(k, n_relevant) if normalisation == "min_k_r" else n_relevant
            per_user[f"map@{k}"].append(total / divisor)
        dcg = sum(log2_discount(rank) for rank, hit in enumerate(hits[:10], start=1) if hit)
        ideal = sum(log2_discount(rank) for rank in range(1, min(n_relevant, 10) + 1))
        per_user["ndcg@10"].append(dcg / ideal)
        per_user["recall@10"].append(sum(hits[:10]) / n_relevant)

    result = {key: float(np.mean(values)) for key, values in per_user.items()}
    result["n_users_evaluated"] = dataset.n_users - n_skipped
    result["n_users_skipped"] = n_skipped
    return result


def random_dataset(seed: int, n_users: int = 40, n_items: int = 60) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        n_rated = int(rng.integers(0, 30))
        for position, item in enumerate(rng.choice(n_items, size=n_rated, replace=False)):
            # The first ratings go to test, the next to validation, the rest to train.
            if position < n_rated * 0.2:
                part = 2
            elif position < n_rated * 0.35:
                part = 1
            else:
                part = 0
            rows.append((part, user, int(item), float(rng.integers(1, 6))))
    parts = [[(user, item, rating) for p, user, item, rating in rows if p == k] for k in range(3)]
    return make_dataset(n_users, n_items, parts[0], parts[1], parts[2])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("split", ["validation", "test"])
@pytest.mark.parametrize("normalisation", ["min_k_r", "r"])
def test_evaluate_matches_reference_loop(seed, split, normalisation):
    dataset = random_dataset(seed)
    generator = torch.Generator().manual_seed(seed)
    user_factors = torch.randn(dataset.n_users, 8, generator=generator, dtype=torch.float64)
    item_factors = torch.randn(dataset.n_items, 8, generator=generator, dtype=torch.float64)
    item_bias = torch.randn(dataset.n_items, generator=generator, dtype=torch.float64)
    scores = (user_factors @ item_factors.T + item_bias).numpy()
    evaluator = Evaluator(dataset, split=split, normalisation=normalisation)

    result = evaluator.evaluate(user_factors, item_factors, item_bias=item_bias)

    for protocol, prefix in (("rated", ""), ("full", "full_")):
        expected = reference_metrics(dataset, split, scores, protocol, normalisation)
        for key, value in expected.items():
            assert result[prefix + key] == pytest.approx(value, abs=1e-12), prefix + key


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 1000])
def test_evaluate_chunked_equals_unchunked(chunk_size):
    dataset = random_dataset(seed=11, n_users=25)
    generator = torch.Generator().manual_seed(11)
    user_factors = torch.randn(dataset.n_users, 8, generator=generator, dtype=torch.float64)
    item_factors = torch.randn(dataset.n_items, 8, generator=generator, dtype=torch.float64)
    item_bias = torch.randn(dataset.n_items, generator=generator, dtype=torch.float64)

    for split in ("validation", "test"):
        whole = Evaluator(dataset, split=split, chunk_size=10_000)
        chunked = Evaluator(dataset, split=split, chunk_size=chunk_size)

        expected = whole.evaluate(user_factors, item_factors, item_bias=item_bias)
        result = chunked.evaluate(user_factors, item_factors, item_bias=item_bias)

        assert result == pytest.approx(expected, abs=1e-12)
        assert len(whole._index.rated.blocks) == 1
        if chunk_size == 1:
            assert len(chunked._index.rated.blocks) > 1


def test_evaluate_rated_alone_equals_rated_with_full():
    dataset = random_dataset(seed=5)
    generator = torch.Generator().manual_seed(5)
    user_factors = torch.randn(dataset.n_users, 8, generator=generator, dtype=torch.float64)
    item_factors = torch.randn(dataset.n_items, 8, generator=generator, dtype=torch.float64)
    evaluator = Evaluator(dataset, chunk_size=4)

    alone = evaluator.evaluate(user_factors, item_factors, protocols=("rated",))
    together = evaluator.evaluate(user_factors, item_factors, protocols=("rated", "full"))

    for key, value in alone.items():
        assert together[key] == pytest.approx(value, abs=1e-12), key


def test_evaluate_short_candidate_lists():
    # Each user has fewer than 10 items to rank under both protocols.
    train = [(0, 0, 5), (1, 1, 5)]
    validation = [(0, 1, 4), (0, 2, 1), (1, 2, 5)]
    dataset = make_dataset(2, 4, train, validation)
    user_factors, item_factors = score_model(
        np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 1.0, 2.0]])
    )

    result = Evaluator(dataset).evaluate(user_factors, item_factors)

    # Rated: user 0 ranks 2 (no) then 1 (yes); user 1 ranks its only item 2 (yes).
    assert result["map@1"] == pytest.approx(0.5)
    assert result["map@10"] == pytest.approx((1 / 2 + 1) / 2)
    # Full: user 0 ranks 3, 2, 1; user 1 ranks 3, 2, 0.
    assert result["full_map@10"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert result["full_recall@10"] == pytest.approx(1.0)


def test_evaluate_accepts_float32_and_embedding_bias_shapes(three_users):
    dataset, user_factors, item_factors = three_users
    evaluator = Evaluator(dataset)

    result = evaluator.evaluate(
        user_factors.float(),
        item_factors.float(),
        user_bias=torch.zeros(3),
        item_bias=torch.zeros(16),
    )

    assert result["map@1"] == pytest.approx(0.5)


def test_evaluate_does_not_track_gradients(three_users):
    dataset, user_factors, item_factors = three_users
    user_factors = user_factors.clone().requires_grad_(True)

    result = Evaluator(dataset).evaluate(user_factors, item_factors)

    assert result["map@1"] == pytest.approx(0.5)
    assert user_factors.grad is None


def test_evaluate_rejects_nan_factors(three_users):
    dataset, user_factors, item_factors = three_users
    item_factors = item_factors.clone()
    item_factors[3, 3] = math.nan

    with pytest.raises(NonFiniteLossError, match="item_factors contains NaN or infinite"):
        Evaluator(dataset).evaluate(user_factors, item_factors)


def test_evaluate_rejects_infinite_bias(three_users):
    dataset, user_factors, item_factors = three_users
    item_bias = torch.zeros(16, dtype=torch.float64)
    item_bias[0] = math.inf

    with pytest.raises(NonFiniteLossError, match="item_bias contains NaN or infinite"):
        Evaluator(dataset).evaluate(user_factors, item_factors, item_bias=item_bias)


def test_evaluate_rejects_wrong_factor_shape(three_users):
    dataset, user_factors, item_factors = three_users

    with pytest.raises(InvalidInputError, match=r"item_factors must have shape \(16, 16\)"):
        Evaluator(dataset).evaluate(user_factors, item_factors[:, :4])


def test_evaluate_rejects_column_bias(three_users):
    dataset, user_factors, item_factors = three_users

    with pytest.raises(InvalidInputError, match=r"item_bias must have shape \(16,\)"):
        Evaluator(dataset).evaluate(user_factors, item_factors, item_bias=torch.zeros(16, 1))


@pytest.mark.parametrize(
    ("protocols", "message"),
    [
        (("rated", "rated"), "must not repeat a protocol"),
        (("ranked",), "protocol must be one of rated, full; got 'ranked'"),
        ((), "protocols must be a non-empty sequence"),
        ("rated", "protocols must be a non-empty sequence"),
    ],
)
def test_evaluate_rejects_bad_protocols(three_users, protocols, message):
    dataset, user_factors, item_factors = three_users

    with pytest.raises(InvalidInputError, match=message):
        Evaluator(dataset).evaluate(user_factors, item_factors, protocols=protocols)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"split": "train"}, "split must be one of validation, test; got 'train'"),
        ({"normalisation": "trec"}, "normalisation must be one of min_k_r, r"),
        ({"relevance_threshold": math.nan}, "relevance_threshold must be a finite rating"),
        ({"chunk_size": 0}, "chunk_size must be a positive integer or None; got 0"),
        ({"relevance_threshold": 6.0}, "has no rating at or above relevance_threshold = 6"),
    ],
)
def test_evaluator_rejects_bad_settings(three_users, settings, message):
    dataset, _, _ = three_users

    with pytest.raises(InvalidInputError, match=message):
        Evaluator(dataset, **settings)


def test_evaluator_rejects_pair_in_two_splits():
    dataset = make_dataset(1, 3, train=[(0, 0, 5)], validation=[(0, 0, 4), (0, 1, 5)])

    with pytest.raises(InvalidInputError, match="1 .user, item. pairs of the validation split"):
        Evaluator(dataset)


def test_evaluator_rejects_test_pair_in_validation():
    dataset = make_dataset(1, 3, train=[(0, 2, 5)], validation=[(0, 0, 4)], test=[(0, 0, 5)])

    with pytest.raises(InvalidInputError, match="of the test split are also in validation"):
        Evaluator(dataset, split="test")


def test_evaluator_rejects_repeated_held_out_pair():
    dataset = make_dataset(1, 3, train=[(0, 2, 5)], validation=[(0, 0, 4), (0, 0, 5)])

    with pytest.raises(InvalidInputError, match="the validation split repeats 1"):
        Evaluator(dataset)


def test_evaluator_rejects_item_id_out_of_range():
    dataset = make_dataset(1, 3, train=[(0, 2, 5)], validation=[(0, 3, 4)])

    with pytest.raises(InvalidInputError, match=r"validation item ids must lie in 0..2"):
        Evaluator(dataset)


def test_metric_keys_prefix_later_protocols():
    assert metric_keys(("full",))[:3] == ["map@1", "map@5", "map@10"]
    assert metric_keys(("rated", "full"))[7:10] == ["full_map@1", "full_map@5", "full_map@10"]
    assert len(metric_keys()) == 14


def split_ml100k(path: Path, seed: int = 0) -> Dataset:
    """Split u.data per user at random: 20 % test, 10 % validation, the rest train."""
    frame = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "timestamp"])
    frame["user"] = pd.factorize(frame["user"], sort=True)[0]
    frame["item"] = pd.factorize(frame["item"], sort=True)[0]
    frame = frame.iloc[np.random.default_rng(seed).permutation(len(frame))]
    position = frame.groupby("user").cumcount().to_numpy()
    count = frame.groupby("user")["item"].transform("size").to_numpy()
    n_test, n_validation = np.round(0.2 * count), np.round(0.1 * count)
    part = np.where(position < n_test, 2, np.where(position < n_test + n_validation, 1, 0))
    triples = frame[["user", "item", "rating"]].to_numpy()
    return make_dataset(
        int(frame["user"].max()) + 1,
        int(frame["item"].max()) + 1,
        *(map(tuple, triples[part == k]) for k in range(3)),
    )


def test_evaluate_random_factors_on_ml100k(ml100k_dir):
    dataset = split_ml100k(ml100k_dir / "ml-100k" / "u.data")
    generator = torch.Generator().manual_seed(0)
    user_factors = torch.randn(dataset.n_users, 64, generator=generator)
    item_factors = torch.randn(dataset.n_items, 64, generator=generator)

    result = Evaluator(dataset, split="test").evaluate(user_factors, item_factors)

    # A random order of each user's test items gives rated MAP@10 near 0.56 (20 % split,
    # threshold 4). Ranking all unrated items at random almost never hits a relevant one.
    assert 0.5 < result["map@10"] < 0.62
    assert result["full_map@10"] < 0.05
    assert result["n_users_evaluated"] + result["n_users_skipped"] == 943
    assert result["n_users_skipped"] < 50


def test_bench_evaluation_smoke():
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_evaluation.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )

    assert completed.returncode == 0, completed.stderr
    assert "rated+full" in completed.stdout
    assert "validation" in completed.stdout


def test_rated_pairs_scored_in_slices(monkeypatch):
    dataset = random_dataset(seed=13)
    generator = torch.Generator().manual_seed(13)
    user_factors = torch.randn(dataset.n_users, 8, generator=generator, dtype=torch.float64)
    item_factors = torch.randn(dataset.n_items, 8, generator=generator, dtype=torch.float64)
    item_bias = torch.randn(dataset.n_items, generator=generator, dtype=torch.float64)
    evaluator = Evaluator(dataset)
    # With the full protocol the pair scores come from its chunks, so rated runs alone here.
    expected = evaluator.evaluate(
        user_factors, item_factors, item_bias=item_bias, protocols=("rated", "full")
    )

    monkeypatch.setattr("tune_rec.metrics._PAIRS_PER_SLICE", 3)
    sliced = evaluator.evaluate(
        user_factors, item_factors, item_bias=item_bias, protocols=("rated",)
    )

    for key, value in sliced.items():
        assert value == pytest.approx(expected[key], abs=1e-12), key
