"""Split ratings per user into train, validation and test, and build the Dataset.

Each user with n ratings holds out ``round(test_fraction * n)`` ratings for test and
``round(validation_fraction * n)`` for validation (``round`` as Python's: half to even). At
least one rating of every user stays in train, and users with fewer than
:data:`MIN_RATINGS_TO_HOLD_OUT` ratings keep all of them in train. The split is vectorised
with NumPy: one sort of all ratings by user, then by the split's order within each user.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from tune_rec.config import DataSettings
from tune_rec.data.dataset import Dataset, Interactions
from tune_rec.data.fetch import ML100K_SHA256, fetch_ml100k, sha256_file
from tune_rec.data.ratings import deduplicate, load_ratings
from tune_rec.errors import InvalidInputError

logger = logging.getLogger(__name__)

SplitMethod = Literal["random", "temporal"]
SPLIT_METHODS: tuple[str, ...] = ("random", "temporal")
SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")
MIN_RATINGS_TO_HOLD_OUT = 3

_TRAIN, _VALIDATION, _TEST = 0, 1, 2


def split_ratings(
    ratings: pd.DataFrame,
    *,
    seed: int,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    method: SplitMethod = "random",
    name: str,
    checksum: str,
) -> Dataset:
    """Map ids to contiguous internal ids and split each user's ratings.

    Internal ids follow the sorted order of the original ids. Every user and item gets one,
    including those that appear only in the validation or test split.

    Args:
        ratings: Columns ``user``, ``item``, ``rating`` and, for the temporal split,
            ``timestamp``, with each (user, item) pair at most once (see
            :func:`deduplicate`).
        seed: Seed of the order within each user: the random split's order, and the temporal
            split's tie-break among equal timestamps. The same ratings and seed give the same
            split.
        test_fraction: Share of each user's ratings held out for test.
        validation_fraction: Share of each user's ratings held out for validation.
        method: ``random``, or ``temporal`` to hold out each user's latest ratings: the latest
            for test, the next latest for validation.
        name: Dataset name, such as ``ml-100k``.
        checksum: SHA-256 of the ratings file.

    Returns:
        The split dataset. Its metadata has ``n_ratings``, ``split``, ``seed``,
        ``test_fraction`` and ``validation_fraction``.

    Raises:
        InvalidInputError: A fraction or the method is invalid, a column is missing, the
            ratings are empty, or a (user, item) pair occurs twice.
    """
    _check_split_arguments(test_fraction, validation_fraction, method)
    _check_ratings_frame(ratings, method)

    user_ids, user_index = np.unique(ratings["user"].to_numpy(), return_inverse=True)
    item_ids, item_index = np.unique(ratings["item"].to_numpy(), return_inverse=True)
    user_index = user_index.astype(np.int64).ravel()
    item_index = item_index.astype(np.int64).ravel()
    _check_no_duplicate_pairs(user_index, item_index, user_ids, item_ids)

    timestamps = ratings["timestamp"].to_numpy() if method == "temporal" else None
    assignment = _assign_splits(
        user_index, len(user_ids), timestamps, seed, test_fraction, validation_fraction
    )

    values = ratings["rating"].to_numpy(dtype=np.float32)
    splits = {
        split_name: Interactions(
            users=user_index[assignment == code],
            items=item_index[assignment == code],
            ratings=values[assignment == code],
        )
        for code, split_name in enumerate(SPLIT_NAMES)
    }
    dataset = Dataset(
        name=name,
        n_users=len(user_ids),
        n_items=len(item_ids),
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        user_ids=user_ids,
        item_ids=item_ids,
        checksum=checksum,
        metadata={
            "n_ratings": len(ratings),
            "split": method,
            "seed": seed,
            "test_fraction": test_fraction,
            "validation_fraction": validation_fraction,
        },
    )
    check_disjoint(dataset)

    logger.info(
        "Split %d ratings of %s (%s, seed %d): %d train, %d validation, %d test",
        len(ratings),
        name,
        method,
        seed,
        len(dataset.train),
        len(dataset.validation),
        len(dataset.test),
    )
    return dataset


def check_disjoint(dataset: Dataset) -> None:
    """Raise ValueError if any (user, item) pair is in two splits.

    Raises:
        ValueError: Names the first shared pair by its original ids, the two splits and the
            number of overlaps found.
    """
    keys = np.concatenate(
        [_pair_keys(getattr(dataset, split_name), dataset.n_items) for split_name in SPLIT_NAMES]
    )
    codes = np.repeat(
        np.arange(len(SPLIT_NAMES), dtype=np.int8),
        [len(getattr(dataset, split_name)) for split_name in SPLIT_NAMES],
    )

    # After sorting by key, a pair in two splits shows up as neighbours with equal keys and
    # different split codes. One sort of all keys is much faster than np.intersect1d per pair
    # of splits.
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    sorted_codes = codes[order]
    shared = (sorted_keys[1:] == sorted_keys[:-1]) & (sorted_codes[1:] != sorted_codes[:-1])
    if shared.any():
        first = int(np.argmax(shared))
        user, item = divmod(int(sorted_keys[first]), dataset.n_items)
        codes_of_pair = sorted_codes[first : first + 2]
        first_split = SPLIT_NAMES[codes_of_pair.min()]
        second_split = SPLIT_NAMES[codes_of_pair.max()]
        raise ValueError(
            f"(user {dataset.user_ids[user]}, item {dataset.item_ids[item]}) is in both "
            f"the {first_split} and the {second_split} split of {dataset.name} "
            f"({int(shared.sum())} overlaps in total). A pair may be in one split only"
        )


def check_evaluable(dataset: Dataset, relevance_threshold: float) -> None:
    """Raise InvalidInputError unless the validation and test splits can be evaluated.

    A search evaluates every trial on the validation split after each epoch, and its winner on
    the test split, so each split needs at least one held-out rating at or above
    ``relevance_threshold``. Checked before a search starts, so that the data fails at once
    rather than in every trial.

    Raises:
        InvalidInputError: a split is empty because no user has enough ratings, or none of
            its ratings is at or above the threshold.
    """
    n_ratings_per_user = np.bincount(
        np.concatenate([getattr(dataset, name).users for name in SPLIT_NAMES]),
        minlength=dataset.n_users,
    )
    for split_name in ("validation", "test"):
        held_out = getattr(dataset, split_name)
        if len(held_out) == 0:
            fraction = dataset.metadata.get(f"{split_name}_fraction")
            raise InvalidInputError(
                f"the {split_name} split of {dataset.name} is empty, because no user has "
                f"enough ratings to hold one out: with {split_name}_fraction {fraction}, a "
                f"user needs at least {_min_ratings_to_hold_out(dataset, split_name)} "
                f"ratings, and the most of any user is {int(n_ratings_per_user.max())}. Use "
                f"a ratings file with more ratings per user, or raise "
                f"data.{split_name}_fraction"
            )
        highest = float(held_out.ratings.max())
        if highest < relevance_threshold:
            raise InvalidInputError(
                f"no {split_name} rating of {dataset.name} is at or above "
                f"data.relevance_threshold = {relevance_threshold:g} (the highest is "
                f"{highest:g}), so no user has a relevant item to rank; set "
                f"data.relevance_threshold to {highest:g} or less"
            )


def _min_ratings_to_hold_out(dataset: Dataset, split_name: str) -> str:
    """Return the smallest number of a user's ratings that puts one of them in the split."""
    counts = np.arange(1, 10_001)
    n_test, n_validation = _held_out_counts(
        counts,
        dataset.metadata.get("test_fraction", 0.2),
        dataset.metadata.get("validation_fraction", 0.1),
    )
    held_out = n_test if split_name == "test" else n_validation
    enough = counts[held_out >= 1]
    return str(int(enough[0])) if enough.size else f"more than {counts[-1]}"


def load_dataset(settings: DataSettings, *, seed: int, data_dir: Path | None = None) -> Dataset:
    """Load, deduplicate and split the ratings that ``settings`` names.

    With ``settings.path`` set, that file is read, named after its stem, and its checksum is
    its SHA-256. Otherwise MovieLens-100K is fetched into ``data_dir`` (see
    :func:`fetch_ml100k`).

    Args:
        settings: Data source, rating scale and split settings.
        seed: Seed of the split, unless ``settings.split_seed`` sets one.
        data_dir: Directory for MovieLens-100K, or None for the default data directory.

    Returns:
        The split dataset. Its metadata adds ``n_ratings`` (after deduplication),
        ``n_duplicates_dropped`` and ``source``, the path of the ratings file, to the
        split's.

    Raises:
        DataError: The ratings file is missing or invalid, or MovieLens-100K could not be
            fetched.
        InvalidInputError: Neither ``path`` nor ``dataset`` is set, or the temporal split is
            requested for ratings without timestamps.
    """
    if settings.path is not None:
        source = Path(settings.path).expanduser()
        ratings = load_ratings(source, rating_scale=settings.rating_scale)
        name = source.stem
        checksum = sha256_file(source)
    elif settings.dataset == "ml-100k":
        source = fetch_ml100k(data_dir)
        ratings = load_ratings(source, rating_scale=settings.rating_scale)
        name = "ml-100k"
        # fetch_ml100k returns only a copy that matches this checksum.
        checksum = ML100K_SHA256
    else:
        raise InvalidInputError(
            "data settings name no ratings: set data.path to a ratings file or data.dataset "
            "to ml-100k"
        )

    unique = deduplicate(ratings)
    dataset = split_ratings(
        unique,
        seed=seed if settings.split_seed is None else settings.split_seed,
        test_fraction=settings.test_fraction,
        validation_fraction=settings.validation_fraction,
        method=settings.split,
        name=name,
        checksum=checksum,
    )
    metadata = {
        **dataset.metadata,
        "n_ratings": len(unique),
        "n_duplicates_dropped": len(ratings) - len(unique),
        "source": str(source),
    }
    return dataclasses.replace(dataset, metadata=metadata)


def describe_dataset(dataset: Dataset) -> dict:
    """Summarise a dataset in plain Python values, for printing as a table, JSON or YAML.

    Returns:
        ``name``, ``checksum``, ``n_users``, ``n_items``, ``n_ratings``,
        ``n_ratings_per_split`` (train, validation, test), ``rating_histogram`` (rating as
        text, such as ``"4"`` or ``"3.5"``, to its count over all splits, lowest first),
        ``density`` (ratings per user-item cell), ``global_mean`` (mean training rating) and
        ``metadata``.
    """
    n_ratings_per_split = {
        split_name: len(getattr(dataset, split_name)) for split_name in SPLIT_NAMES
    }
    n_ratings = sum(n_ratings_per_split.values())
    all_ratings = np.concatenate(
        [getattr(dataset, split_name).ratings for split_name in SPLIT_NAMES]
    )
    values, counts = np.unique(all_ratings, return_counts=True)
    n_cells = dataset.n_users * dataset.n_items
    return {
        "name": dataset.name,
        "checksum": dataset.checksum,
        "n_users": int(dataset.n_users),
        "n_items": int(dataset.n_items),
        "n_ratings": int(n_ratings),
        "n_ratings_per_split": n_ratings_per_split,
        "rating_histogram": {
            f"{float(value):g}": int(count) for value, count in zip(values, counts, strict=True)
        },
        "density": n_ratings / n_cells if n_cells else 0.0,
        "global_mean": dataset.global_mean if len(dataset.train) else None,
        "metadata": dict(dataset.metadata),
    }


def _check_split_arguments(test_fraction: float, validation_fraction: float, method: str) -> None:
    for key, value in (
        ("test_fraction", test_fraction),
        ("validation_fraction", validation_fraction),
    ):
        if not 0.0 <= value < 1.0:
            raise InvalidInputError(f"{key} must be in [0, 1); got {value}")
    if test_fraction + validation_fraction >= 1.0:
        raise InvalidInputError(
            "test_fraction + validation_fraction must be below 1 to leave training ratings; "
            f"got {test_fraction} + {validation_fraction}"
        )
    if method not in SPLIT_METHODS:
        raise InvalidInputError(
            f"split method must be one of {', '.join(SPLIT_METHODS)}; got {method!r}"
        )


def _check_ratings_frame(ratings: pd.DataFrame, method: str) -> None:
    missing = [column for column in ("user", "item", "rating") if column not in ratings]
    if missing:
        raise InvalidInputError(
            f"ratings lack the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}. "
            "Load them with load_ratings"
        )
    if ratings.empty:
        raise InvalidInputError("the ratings are empty, so there is nothing to split")
    if method == "temporal":
        if "timestamp" not in ratings:
            raise InvalidInputError(
                "the temporal split needs a timestamp column, and the ratings have none. Add "
                "timestamps to the file or set data.split to random"
            )
        if ratings["timestamp"].isna().any():
            raise InvalidInputError(
                "the temporal split needs a timestamp on every rating, but "
                f"{int(ratings['timestamp'].isna().sum())} are missing"
            )


def _pair_keys(interactions: Interactions, n_items: int) -> np.ndarray:
    """Encode each (user, item) pair of internal ids as one int64, ``user * n_items + item``."""
    return interactions.users.astype(np.int64) * n_items + interactions.items.astype(np.int64)


def _check_no_duplicate_pairs(
    user_index: np.ndarray, item_index: np.ndarray, user_ids: np.ndarray, item_ids: np.ndarray
) -> None:
    keys = np.sort(user_index * len(item_ids) + item_index)
    repeated = keys[1:][keys[1:] == keys[:-1]]
    if repeated.size:
        user, item = divmod(int(repeated[0]), len(item_ids))
        raise InvalidInputError(
            f"(user {user_ids[user]}, item {item_ids[item]}) is rated more than once "
            f"({np.unique(repeated).size} repeated pairs). Drop duplicates with deduplicate "
            "before splitting"
        )


def _held_out_counts(
    counts: np.ndarray, test_fraction: float, validation_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return the number of test and validation ratings of each user, given their counts."""
    # np.rint rounds half to even, as Python's round does.
    n_test = np.rint(test_fraction * counts).astype(np.int64)
    n_validation = np.rint(validation_fraction * counts).astype(np.int64)

    too_few = counts < MIN_RATINGS_TO_HOLD_OUT
    n_test[too_few] = 0
    n_validation[too_few] = 0

    # Keep at least one training rating: take any excess from validation first, then test.
    excess = np.maximum(n_test + n_validation - (counts - 1), 0)
    from_validation = np.minimum(excess, n_validation)
    n_validation -= from_validation
    n_test -= excess - from_validation
    return n_test, n_validation


def _assign_splits(
    user_index: np.ndarray,
    n_users: int,
    timestamps: np.ndarray | None,
    seed: int,
    test_fraction: float,
    validation_fraction: float,
) -> np.ndarray:
    """Return each rating's split code (train 0, validation 1, test 2), in input order."""
    n_ratings = user_index.shape[0]
    rng = np.random.default_rng(seed)
    shuffle_key = rng.permutation(n_ratings)

    # np.lexsort sorts by its last key first: by user, then (temporal) by timestamp, then by
    # the seeded shuffle. Each user's ratings end up contiguous, the held-out ones last.
    if timestamps is None:
        order = np.lexsort((shuffle_key, user_index))
    else:
        order = np.lexsort((shuffle_key, timestamps, user_index))

    counts = np.bincount(user_index, minlength=n_users)
    starts = np.cumsum(counts) - counts
    sorted_users = user_index[order]
    position = np.arange(n_ratings) - starts[sorted_users]
    from_end = counts[sorted_users] - 1 - position

    n_test, n_validation = _held_out_counts(counts, test_fraction, validation_fraction)
    user_n_test = n_test[sorted_users]
    user_n_validation = n_validation[sorted_users]
    sorted_codes = np.full(n_ratings, _TRAIN, dtype=np.int8)
    sorted_codes[from_end < user_n_test] = _TEST
    is_validation = (from_end >= user_n_test) & (from_end < user_n_test + user_n_validation)
    sorted_codes[is_validation] = _VALIDATION

    assignment = np.empty(n_ratings, dtype=np.int8)
    assignment[order] = sorted_codes
    return assignment
