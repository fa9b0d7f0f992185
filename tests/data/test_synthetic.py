import numpy as np
import pandas as pd
import pytest

from tune_rec.data.synthetic import default_sizes, generate_ratings, synthetic_dataset
from tune_rec.errors import InvalidInputError


def test_default_sizes_match_movielens_100k():
    assert default_sizes(100_000) == (943, 1682)


def test_default_sizes_scale_users_and_items():
    assert default_sizes(10_000_000) == (94_300, 16_820)


def test_generate_ratings_counts_and_columns():
    ratings = generate_ratings(20_000, seed=1)
    assert len(ratings) == 20_000
    assert list(ratings.columns) == ["user", "item", "rating"]
    assert ratings["user"].dtype == np.int64
    assert ratings["item"].dtype == np.int64
    assert ratings["rating"].dtype == np.float32


def test_generate_ratings_pairs_distinct():
    ratings = generate_ratings(20_000, seed=1)
    assert not ratings.duplicated(["user", "item"]).any()


def test_generate_ratings_ids_and_values_in_range():
    n_users, n_items = default_sizes(20_000)
    ratings = generate_ratings(20_000, seed=1)
    assert ratings["user"].between(0, n_users - 1).all()
    assert ratings["item"].between(0, n_items - 1).all()
    assert set(ratings["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_generate_ratings_same_seed_same_frame():
    first = generate_ratings(5_000, seed=3)
    second = generate_ratings(5_000, seed=3)
    pd.testing.assert_frame_equal(first, second)


def test_generate_ratings_other_seed_other_frame():
    first = generate_ratings(5_000, seed=3)
    second = generate_ratings(5_000, seed=4)
    assert not first.equals(second)


def test_generate_ratings_user_floor_and_cap():
    ratings = generate_ratings(30_000, n_users=200, n_items=300, seed=0, activity_sigma=3.0)
    counts = ratings["user"].value_counts()
    assert counts.min() >= 20
    assert counts.max() <= 150
    assert len(counts) == 200


def test_generate_ratings_activity_skewed():
    counts = generate_ratings(100_000, seed=0)["user"].value_counts()
    assert counts.max() > 5 * counts.median()


def test_generate_ratings_popularity_skewed():
    counts = generate_ratings(100_000, seed=0)["item"].value_counts().sort_values()[::-1]
    top_share = counts.iloc[: len(counts) // 10].sum() / counts.sum()
    assert 0.3 < top_share < 0.6


def test_generate_ratings_zero_exponent_flat():
    counts = generate_ratings(50_000, n_users=500, n_items=1000, seed=0, popularity_exponent=0.0)[
        "item"
    ].value_counts()
    assert counts.max() < 2 * counts.mean()


def test_generate_ratings_rejects_small_count():
    with pytest.raises(InvalidInputError, match="n_ratings must be an integer of at least 1"):
        generate_ratings(0)


def test_generate_ratings_rejects_floor_over_ratings():
    with pytest.raises(InvalidInputError, match="n_users x min_ratings_per_user"):
        generate_ratings(1_000, n_users=100, n_items=500)


def test_generate_ratings_rejects_too_few_items():
    with pytest.raises(InvalidInputError, match="does not fit in 10 users"):
        generate_ratings(1_000, n_users=10, n_items=100, min_ratings_per_user=5)


def test_generate_ratings_rejects_floor_over_cap():
    with pytest.raises(InvalidInputError, match="min_ratings_per_user = 20 exceeds"):
        generate_ratings(1_000, n_users=10, n_items=30)


def test_generate_ratings_rejects_negative_exponent():
    with pytest.raises(InvalidInputError, match="popularity_exponent must be finite"):
        generate_ratings(5_000, popularity_exponent=-1.0)


def test_synthetic_dataset_splits_every_rating():
    dataset = synthetic_dataset(10_000, seed=2)
    n_split = len(dataset.train) + len(dataset.validation) + len(dataset.test)
    assert n_split == 10_000
    assert dataset.name == "synthetic-10000"
    assert len(dataset.validation) == pytest.approx(1_000, rel=0.05)


def test_synthetic_dataset_checksum_follows_arguments():
    first = synthetic_dataset(5_000, seed=2)
    same = synthetic_dataset(5_000, seed=2)
    other = synthetic_dataset(5_000, seed=2, activity_sigma=0.5)
    assert first.checksum == same.checksum
    assert first.checksum != other.checksum
