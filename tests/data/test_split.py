"""Tests of the per-user split, the id maps, load_dataset and describe_dataset."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tune_rec.config import DataSettings
from tune_rec.data import (
    ML100K_SHA256,
    Dataset,
    Interactions,
    check_disjoint,
    check_evaluable,
    describe_dataset,
    load_dataset,
    load_ratings,
    split_ratings,
)
from tune_rec.errors import DataError, InvalidInputError

SPLITS = ("train", "validation", "test")


def _ratings_per_user(counts: dict[int, int], *, item_offset: int = 0) -> pd.DataFrame:
    """Build ratings where user u rates items 0..counts[u]-1 at timestamps 0..counts[u]-1."""
    rows = [
        (user, item + item_offset, float(1 + item % 5), item)
        for user, count in counts.items()
        for item in range(count)
    ]
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


def _split(ratings: pd.DataFrame, **kwargs: object) -> Dataset:
    arguments = {"seed": 0, "name": "tiny", "checksum": "0" * 64, **kwargs}
    return split_ratings(ratings, **arguments)  # type: ignore[arg-type]


def _pairs(interactions: Interactions) -> set[tuple[int, int]]:
    return set(zip(interactions.users.tolist(), interactions.items.tolist(), strict=True))


def _count_per_user(interactions: Interactions, n_users: int) -> list[int]:
    return np.bincount(interactions.users, minlength=n_users).tolist()


@pytest.fixture(scope="module")
def ml100k_random(ml100k_dir: Path) -> Dataset:
    return load_dataset(DataSettings(), seed=0, data_dir=ml100k_dir)


@pytest.fixture(scope="module")
def ml100k_ratings(ml100k_dir: Path) -> pd.DataFrame:
    return load_ratings(ml100k_dir / "ml-100k" / "u.data")


def test_load_dataset_ml100k_sizes(ml100k_random: Dataset) -> None:
    assert ml100k_random.name == "ml-100k"
    assert ml100k_random.checksum == ML100K_SHA256
    assert ml100k_random.n_users == 943
    assert ml100k_random.n_items == 1682
    assert sum(len(getattr(ml100k_random, split)) for split in SPLITS) == 100_000


def test_load_dataset_ml100k_fractions(ml100k_random: Dataset) -> None:
    assert 0.19 <= len(ml100k_random.test) / 100_000 <= 0.21
    assert 0.09 <= len(ml100k_random.validation) / 100_000 <= 0.11
    assert 0.68 <= len(ml100k_random.train) / 100_000 <= 0.72


def test_load_dataset_ml100k_disjoint(ml100k_random: Dataset) -> None:
    train = _pairs(ml100k_random.train)
    validation = _pairs(ml100k_random.validation)
    test = _pairs(ml100k_random.test)

    assert not train & validation
    assert not train & test
    assert not validation & test
    check_disjoint(ml100k_random)


def test_load_dataset_ml100k_metadata(ml100k_random: Dataset, ml100k_dir: Path) -> None:
    metadata = ml100k_random.metadata
    assert metadata["n_ratings"] == 100_000
    assert metadata["n_duplicates_dropped"] == 0
    assert metadata["source"] == str(ml100k_dir / "ml-100k" / "u.data")
    assert metadata["split"] == "random"
    assert metadata["seed"] == 0


def test_load_dataset_ml100k_same_seed_identical(ml100k_random: Dataset, ml100k_dir: Path) -> None:
    again = load_dataset(DataSettings(), seed=0, data_dir=ml100k_dir)
    for split in SPLITS:
        np.testing.assert_array_equal(
            getattr(again, split).users, getattr(ml100k_random, split).users
        )
        np.testing.assert_array_equal(
            getattr(again, split).items, getattr(ml100k_random, split).items
        )


def test_load_dataset_ml100k_other_seed_differs(ml100k_random: Dataset, ml100k_dir: Path) -> None:
    other = load_dataset(DataSettings(), seed=1, data_dir=ml100k_dir)
    assert _pairs(other.test) != _pairs(ml100k_random.test)
    assert _count_per_user(other.test, 943) == _count_per_user(ml100k_random.test, 943)


def test_load_dataset_ml100k_temporal_latest_in_test(
    ml100k_dir: Path, ml100k_ratings: pd.DataFrame
) -> None:
    dataset = load_dataset(DataSettings(split="temporal"), seed=0, data_dir=ml100k_dir)

    # Look up each split rating's timestamp through the original ids.
    stamps = ml100k_ratings.set_index(["user", "item"])["timestamp"]
    latest = {}
    earliest = {}
    for split in SPLITS:
        interactions = getattr(dataset, split)
        index = pd.MultiIndex.from_arrays(
            [dataset.user_ids[interactions.users], dataset.item_ids[interactions.items]]
        )
        frame = pd.DataFrame({"user": interactions.users, "stamp": stamps.loc[index].to_numpy()})
        latest[split] = frame.groupby("user")["stamp"].max()
        earliest[split] = frame.groupby("user")["stamp"].min()

    # Every ML-100K user has at least 20 ratings, so each one holds out test and validation.
    assert len(earliest["test"]) == 943
    assert (earliest["test"] >= latest["validation"]).all()
    assert (earliest["validation"] >= latest["train"].loc[earliest["validation"].index]).all()
    user_latest = ml100k_ratings.groupby("user")["timestamp"].max()
    assert (latest["test"].to_numpy() == user_latest.loc[dataset.user_ids].to_numpy()).all()


def test_split_counts_per_user() -> None:
    # n = 1 and 2 stay in train; n = 3: 1 test; n = 5: 1 test and round(0.5) = 0 validation;
    # n = 10: 2 test and 1 validation; n = 15: 3 test and round(1.5) = 2 validation.
    dataset = _split(_ratings_per_user({1: 1, 2: 2, 3: 3, 5: 5, 10: 10, 15: 15}))

    assert _count_per_user(dataset.test, 6) == [0, 0, 1, 1, 2, 3]
    assert _count_per_user(dataset.validation, 6) == [0, 0, 0, 0, 1, 2]
    assert _count_per_user(dataset.train, 6) == [1, 2, 2, 4, 7, 10]


def test_split_users_below_three_all_train() -> None:
    # With test_fraction 0.4, n = 2 would round to one test rating; n = 3 holds one out.
    dataset = _split(_ratings_per_user({1: 2, 2: 3}), test_fraction=0.4, validation_fraction=0.1)

    assert _count_per_user(dataset.train, 2) == [2, 2]
    assert _count_per_user(dataset.test, 2) == [0, 1]
    assert _count_per_user(dataset.validation, 2) == [0, 0]


def test_split_keeps_one_training_rating() -> None:
    # n = 4 with 0.45 / 0.45 would hold out 2 + 2; validation gives one back to train.
    ratings = _ratings_per_user({1: 4, 2: 3})
    dataset = _split(ratings, test_fraction=0.45, validation_fraction=0.45)

    assert _count_per_user(dataset.train, 2) == [1, 1]
    assert _count_per_user(dataset.test, 2) == [2, 1]
    assert _count_per_user(dataset.validation, 2) == [1, 1]


def test_split_ids_sorted_and_contiguous() -> None:
    ratings = pd.DataFrame(
        {
            "user": [30, 10, 20, 10],
            "item": [700, 500, 600, 700],
            "rating": [1.0, 2.0, 3.0, 4.0],
        }
    )
    dataset = _split(ratings)

    assert dataset.user_ids.tolist() == [10, 20, 30]
    assert dataset.item_ids.tolist() == [500, 600, 700]
    assert dataset.n_users == 3
    assert dataset.n_items == 3
    triples = {
        (int(dataset.user_ids[u]), int(dataset.item_ids[i]), float(r))
        for split in SPLITS
        for u, i, r in zip(
            getattr(dataset, split).users,
            getattr(dataset, split).items,
            getattr(dataset, split).ratings,
            strict=True,
        )
    }
    assert triples == {(30, 700, 1.0), (10, 500, 2.0), (20, 600, 3.0), (10, 700, 4.0)}


def test_split_array_dtypes() -> None:
    dataset = _split(_ratings_per_user({1: 10, 2: 10}))
    for split in SPLITS:
        interactions = getattr(dataset, split)
        assert interactions.users.dtype == np.int64
        assert interactions.items.dtype == np.int64
        assert interactions.ratings.dtype == np.float32


def test_split_held_out_only_items_get_ids() -> None:
    # User 1's latest rating is item 99, which no one else rated: the temporal split puts it in
    # test, and it must still count as an item.
    ratings = pd.concat(
        [
            _ratings_per_user({1: 4, 2: 4}),
            pd.DataFrame({"user": [1], "item": [99], "rating": [5.0], "timestamp": [1000]}),
        ],
        ignore_index=True,
    )
    dataset = _split(ratings, method="temporal")

    assert dataset.n_items == 5
    assert dataset.item_ids.tolist() == [0, 1, 2, 3, 99]
    assert (0, 4) in _pairs(dataset.test)


def test_split_temporal_holds_out_latest() -> None:
    ratings = _ratings_per_user({7: 10}).sample(frac=1.0, random_state=3)
    dataset = _split(ratings, method="temporal")

    # Items equal timestamps here, so the latest items are the held-out ones.
    assert sorted(dataset.test.items.tolist()) == [8, 9]
    assert dataset.validation.items.tolist() == [7]


def test_split_temporal_ties_follow_seed() -> None:
    ratings = pd.DataFrame(
        {"user": [1] * 10, "item": range(10), "rating": [3.0] * 10, "timestamp": [5] * 10}
    )
    tests = {
        tuple(sorted(_split(ratings, method="temporal", seed=s).test.items)) for s in range(8)
    }

    assert len(tests) > 1
    assert (
        _split(ratings, method="temporal", seed=4).test.items.tolist()
        == _split(ratings, method="temporal", seed=4).test.items.tolist()
    )


def test_split_random_seed_changes_split() -> None:
    ratings = _ratings_per_user({1: 20, 2: 20, 3: 20})
    first = _split(ratings, seed=0)
    again = _split(ratings, seed=0)
    other = _split(ratings, seed=1)

    assert _pairs(first.test) == _pairs(again.test)
    assert _pairs(first.validation) == _pairs(again.validation)
    assert _pairs(first.test) != _pairs(other.test)


def test_split_million_ratings_fast() -> None:
    rng = np.random.default_rng(0)
    n_ratings = 1_000_000
    keys = rng.choice(100_000 * 5_000, size=n_ratings, replace=False)
    ratings = pd.DataFrame(
        {
            "user": keys // 5_000,
            "item": keys % 5_000,
            "rating": rng.integers(1, 6, size=n_ratings).astype(float),
            "timestamp": rng.integers(0, 10**9, size=n_ratings),
        }
    )

    start = time.perf_counter()
    dataset = _split(ratings, method="temporal")
    elapsed = time.perf_counter() - start

    assert sum(len(getattr(dataset, split)) for split in SPLITS) == n_ratings
    # The split took about 0.7 s on 2 CPU cores when this test was written. The bound leaves
    # room for slower machines.
    assert elapsed < 5.0


@pytest.mark.parametrize(
    ("ratings", "kwargs", "match"),
    [
        (_ratings_per_user({1: 5}), {"method": "newest"}, "split method must be one of"),
        (_ratings_per_user({1: 5}), {"test_fraction": 1.2}, r"test_fraction must be in \[0, 1\)"),
        (
            _ratings_per_user({1: 5}),
            {"test_fraction": 0.6, "validation_fraction": 0.4},
            "must be below 1",
        ),
        (_ratings_per_user({1: 5}).iloc[:0], {}, "the ratings are empty"),
        (_ratings_per_user({1: 5}).drop(columns="rating"), {}, "lack the column rating"),
        (
            _ratings_per_user({1: 5}).drop(columns="timestamp"),
            {"method": "temporal"},
            "temporal split needs a timestamp column",
        ),
        (
            pd.concat([_ratings_per_user({1: 5}), _ratings_per_user({1: 1})]),
            {},
            r"\(user 1, item 0\) is rated more than once",
        ),
    ],
    ids=["method", "fraction", "sum", "empty", "column", "timestamp", "duplicate"],
)
def test_split_invalid_input(ratings: pd.DataFrame, kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        _split(ratings, **kwargs)


def test_check_disjoint_names_pair() -> None:
    dataset = _split(_ratings_per_user({1: 10, 2: 10}, item_offset=100))
    leaked = dataclasses.replace(
        dataset,
        validation=Interactions(
            users=np.append(dataset.validation.users, dataset.test.users[0]),
            items=np.append(dataset.validation.items, dataset.test.items[0]),
            ratings=np.append(dataset.validation.ratings, np.float32(3.0)),
        ),
    )
    user = dataset.user_ids[dataset.test.users[0]]
    item = dataset.item_ids[dataset.test.items[0]]

    with pytest.raises(
        ValueError, match=rf"\(user {user}, item {item}\) is in both the validation and the test"
    ):
        check_disjoint(leaked)


def test_describe_dataset_values() -> None:
    ratings = _ratings_per_user({1: 10, 2: 10})
    summary = describe_dataset(_split(ratings, name="tiny", checksum="ab" * 32))

    assert summary["name"] == "tiny"
    assert summary["checksum"] == "ab" * 32
    assert summary["n_users"] == 2
    assert summary["n_items"] == 10
    assert summary["n_ratings"] == 20
    assert summary["n_ratings_per_split"] == {"train": 14, "validation": 2, "test": 4}
    assert summary["rating_histogram"] == {"1": 4, "2": 4, "3": 4, "4": 4, "5": 4}
    assert summary["density"] == pytest.approx(1.0)
    assert isinstance(summary["global_mean"], float)


def test_describe_dataset_ml100k_plain_values(ml100k_random: Dataset) -> None:
    summary = describe_dataset(ml100k_random)

    # yaml.safe_dump rejects NumPy scalars, so this fails on any left in the summary.
    assert yaml.safe_load(yaml.safe_dump(summary)) == summary
    assert json.loads(json.dumps(summary)) == summary
    assert summary["n_ratings"] == 100_000
    assert summary["rating_histogram"] == {
        "1": 6110,
        "2": 11370,
        "3": 27145,
        "4": 34174,
        "5": 21201,
    }
    assert summary["density"] == pytest.approx(100_000 / (943 * 1682))


def test_load_dataset_own_file(tmp_path: Path) -> None:
    path = tmp_path / "my-ratings.csv"
    lines = ["user,item,rating,timestamp"]
    lines += [f"{user},{item},{1 + item % 5},{item}" for user in (1, 2) for item in range(10)]
    lines.append("1,3,5,99")  # a later rating of (1, 3) replaces the earlier one
    path.write_text("\n".join(lines) + "\n")

    dataset = load_dataset(
        DataSettings(path=str(path), split="temporal", rating_scale=(1, 5)), seed=3
    )

    assert dataset.name == "my-ratings"
    assert dataset.checksum == hashlib.sha256(path.read_bytes()).hexdigest()
    assert dataset.metadata["n_ratings"] == 20
    assert dataset.metadata["n_duplicates_dropped"] == 1
    assert dataset.metadata["source"] == str(path)
    assert dataset.metadata["split"] == "temporal"
    # The kept (1, 3) rating is user 1's latest, so the temporal split holds it out for test.
    assert (0, 3) in _pairs(dataset.test)


def test_load_dataset_own_file_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("1,2,9\n")
    with pytest.raises(DataError, match="outside the rating scale"):
        load_dataset(DataSettings(path=str(path), rating_scale=(1, 5)), seed=0)


def test_load_dataset_no_source() -> None:
    with pytest.raises(InvalidInputError, match="set data.path"):
        load_dataset(DataSettings(dataset=None), seed=0)


def _split_users(counts: dict[int, int]) -> Dataset:
    return split_ratings(_ratings_per_user(counts), seed=0, name="small", checksum="0" * 64)


def test_check_evaluable_accepts_relevant_ratings() -> None:
    check_evaluable(_split_users({user: 20 for user in range(5)}), relevance_threshold=4.0)


def test_check_evaluable_threshold_above_ratings() -> None:
    dataset = _split_users({user: 20 for user in range(5)})

    with pytest.raises(
        InvalidInputError, match=r"relevance_threshold = 10 \(the highest is [1-5]\)"
    ):
        check_evaluable(dataset, relevance_threshold=10.0)


@pytest.mark.parametrize("n_ratings", [2, 4])
def test_check_evaluable_empty_validation_split(n_ratings: int) -> None:
    dataset = _split_users({user: n_ratings for user in range(5)})

    with pytest.raises(InvalidInputError) as error:
        check_evaluable(dataset, relevance_threshold=1.0)

    message = str(error.value)
    assert "the validation split of small is empty" in message
    # round(0.1 * n) is 1 from n = 6 on; round(0.5) is 0, as Python rounds half to even.
    assert "a user needs at least 6 ratings" in message
    assert f"the most of any user is {n_ratings}" in message


def test_check_evaluable_empty_test_split() -> None:
    ratings = _ratings_per_user({user: 20 for user in range(3)})
    dataset = split_ratings(
        ratings,
        seed=0,
        name="small",
        checksum="0" * 64,
        test_fraction=0.01,
        validation_fraction=0.5,
    )

    with pytest.raises(InvalidInputError, match="the test split of small is empty"):
        check_evaluable(dataset, relevance_threshold=1.0)
