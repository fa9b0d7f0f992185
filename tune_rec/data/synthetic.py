"""Synthetic rating sets with MovieLens-like skew, for scale tests and benchmarks.

Item popularity follows a Zipf-Mandelbrot law, ``p(rank) ~ (rank + offset) ** -exponent``, and
user activity a lognormal law above a floor of ratings per user. With the defaults, 10**5
ratings look like MovieLens-100K. There are 943 users with at least 20 ratings each, a median
of about 68 and a maximum of about 840 (MovieLens-100K: 65 and 737). The top 10 % of the 1682
items take about 41 % of the ratings (43 % in MovieLens-100K). Ratings 1 to 5 come from a
rank-4 model with user and item biases plus noise, so that rating >= 4 (relevant) is neither
rare nor universal and depends on the user and item.

Larger sets keep the shape: the number of users grows with the number of ratings (the same
mean activity), the number of items with its square root. Everything is vectorised NumPy and
seeded: the same arguments give the same ratings.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from tune_rec.data.dataset import Dataset
from tune_rec.data.split import split_ratings
from tune_rec.errors import InvalidInputError

# MovieLens-100K's shape: the reference point of the default sizes.
_REFERENCE_RATINGS = 100_000
_REFERENCE_USERS = 943
_REFERENCE_ITEMS = 1682

# A user rates at most this share of the items, so that drawing without repetition converges.
_MAX_USER_SHARE = 0.5
# Rounds of redrawing repeated (user, item) pairs before the generator gives up.
_MAX_DRAW_ROUNDS = 200
# Ratings scored per chunk, to bound the memory of the rating model (about 100 MiB).
_CHUNK = 2**20
# Latent factors of the rating model, and the spread of its parts on the 1-5 scale.
_RANK = 4
_MEAN_RATING = 3.5
_USER_BIAS_STD = 0.45
_ITEM_BIAS_STD = 0.45
_FACTOR_STD = 0.6
_NOISE_STD = 0.8


def default_sizes(n_ratings: int) -> tuple[int, int]:
    """Return the default ``(n_users, n_items)`` for ``n_ratings``, scaled from MovieLens-100K.

    Users grow in proportion to the ratings and items with their square root, so 10**7
    ratings get 94,300 users and 16,820 items.
    """
    scale = n_ratings / _REFERENCE_RATINGS
    n_users = max(1, round(_REFERENCE_USERS * scale))
    n_items = max(1, round(_REFERENCE_ITEMS * math.sqrt(scale)))
    return n_users, n_items


def generate_ratings(
    n_ratings: int,
    *,
    n_users: int | None = None,
    n_items: int | None = None,
    seed: int = 0,
    popularity_exponent: float = 1.2,
    popularity_offset: float = 0.03,
    activity_sigma: float = 1.1,
    min_ratings_per_user: int = 20,
) -> pd.DataFrame:
    """Generate ``n_ratings`` distinct (user, item) ratings with popularity and activity skew.

    Args:
        n_ratings: Number of ratings.
        n_users: Number of users; None scales it from MovieLens-100K (see `default_sizes`).
        n_items: Number of items; None scales it likewise.
        seed: Seed of every random draw.
        popularity_exponent: Exponent of the Zipf-Mandelbrot law of item popularity; 0 makes
            every item equally popular.
        popularity_offset: Offset of that law, as a share of ``n_items``; larger values
            flatten the head of the most popular items.
        activity_sigma: Standard deviation of the log of each user's ratings above the floor.
        min_ratings_per_user: Ratings every user has at least, as in MovieLens (20).

    Returns:
        Columns ``user`` and ``item`` (int64 ids from 0, in random order of popularity) and
        ``rating`` (float32, 1 to 5), one row per (user, item) pair, sorted by user. A user
        rates at most half of the items. An item may end up with no rating, so the split
        dataset can have fewer items than ``n_items``.

    Raises:
        InvalidInputError: A count is below 1, the floor or the cap of ratings per user cannot
            hold ``n_ratings``, or a law parameter is negative or not finite.
    """
    default_users, default_items = default_sizes(n_ratings) if n_ratings >= 1 else (1, 1)
    n_users = default_users if n_users is None else n_users
    n_items = default_items if n_items is None else n_items
    _check_arguments(
        n_ratings,
        n_users,
        n_items,
        popularity_exponent,
        popularity_offset,
        activity_sigma,
        min_ratings_per_user,
    )
    rng = np.random.default_rng(seed)

    popularity = _item_popularity(n_items, popularity_exponent, popularity_offset, rng)
    max_per_user = max(1, int(_MAX_USER_SHARE * n_items))
    counts = _user_counts(
        n_ratings, n_users, min_ratings_per_user, max_per_user, activity_sigma, rng
    )
    users, items = _draw_distinct_items(counts, popularity, rng)
    ratings = _rate(users, items, n_users, n_items, popularity, rng)
    return pd.DataFrame({"user": users, "item": items, "rating": ratings})


def synthetic_dataset(
    n_ratings: int,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    **generator_options: float | int | None,
) -> Dataset:
    """Generate ratings with `generate_ratings` and split them per user like a ratings file.

    Args:
        n_ratings: Number of ratings.
        seed: Seed of the generator and of the split.
        test_fraction: Share of each user's ratings held out for test.
        validation_fraction: Share of each user's ratings held out for validation.
        **generator_options: Other keyword arguments of `generate_ratings`.

    Returns:
        A dataset named ``synthetic-<n_ratings>``. Its checksum is the SHA-256 of the
        generator's arguments, which identify the ratings as a file's checksum would.
    """
    ratings = generate_ratings(n_ratings, seed=seed, **generator_options)
    arguments = {"n_ratings": n_ratings, "seed": seed, **generator_options}
    described = ",".join(f"{key}={arguments[key]!r}" for key in sorted(arguments))
    checksum = hashlib.sha256(f"tune_rec.data.synthetic:{described}".encode()).hexdigest()
    return split_ratings(
        ratings,
        seed=seed,
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
        name=f"synthetic-{n_ratings}",
        checksum=checksum,
    )


def _check_arguments(
    n_ratings: int,
    n_users: int,
    n_items: int,
    popularity_exponent: float,
    popularity_offset: float,
    activity_sigma: float,
    min_ratings_per_user: int,
) -> None:
    for key, value in (
        ("n_ratings", n_ratings),
        ("n_users", n_users),
        ("n_items", n_items),
        ("min_ratings_per_user", min_ratings_per_user),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InvalidInputError(f"{key} must be an integer of at least 1; got {value!r}")
    for key, value in (
        ("popularity_exponent", popularity_exponent),
        ("popularity_offset", popularity_offset),
        ("activity_sigma", activity_sigma),
    ):
        if not math.isfinite(value) or value < 0:
            raise InvalidInputError(f"{key} must be finite and at least 0; got {value!r}")

    max_per_user = max(1, int(_MAX_USER_SHARE * n_items))
    if min_ratings_per_user > max_per_user:
        raise InvalidInputError(
            f"min_ratings_per_user = {min_ratings_per_user} exceeds the {max_per_user} "
            f"ratings a user may have (half of n_items = {n_items}); lower it or raise n_items"
        )
    if n_users * min_ratings_per_user > n_ratings:
        raise InvalidInputError(
            f"n_users x min_ratings_per_user = {n_users} x {min_ratings_per_user} exceeds "
            f"n_ratings = {n_ratings}; lower n_users or min_ratings_per_user"
        )
    if n_users * max_per_user < n_ratings:
        raise InvalidInputError(
            f"n_ratings = {n_ratings} does not fit in {n_users} users who rate at most "
            f"{max_per_user} items each (half of n_items = {n_items}); raise n_users or n_items"
        )


def _item_popularity(
    n_items: int, exponent: float, offset: float, rng: np.random.Generator
) -> np.ndarray:
    """Return each item's probability of being drawn; ids are shuffled against popularity."""
    ranks = rng.permutation(n_items) + 1.0
    weights = (ranks + offset * n_items) ** -exponent
    return weights / weights.sum()


def _user_counts(
    n_ratings: int,
    n_users: int,
    floor: int,
    cap: int,
    sigma: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return each user's number of ratings: at least ``floor``, at most ``cap``, summing up."""
    counts = np.full(n_users, floor, dtype=np.int64)
    activity = rng.lognormal(0.0, sigma, size=n_users)
    # Hand out the ratings above the floor in proportion to activity; what the cap cuts off
    # goes, in the next round, to the users below it.
    remaining = n_ratings - counts.sum()
    while remaining > 0:
        open_users = counts < cap
        weights = np.where(open_users, activity, 0.0)
        counts += rng.multinomial(remaining, weights / weights.sum())
        np.minimum(counts, cap, out=counts)
        remaining = n_ratings - counts.sum()
    return counts


def _draw_distinct_items(
    counts: np.ndarray, popularity: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``counts[u]`` distinct items for each user u, each draw weighted by popularity.

    Items are drawn with repetition, and each round redraws only the pairs that repeat an
    earlier one. Returns users and items sorted by user, then item.
    """
    n_items = popularity.shape[0]
    cumulative = np.cumsum(popularity)
    users = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)
    keys = users * n_items + _draw_items(cumulative, users.shape[0], rng)
    accepted = np.unique(keys)
    # Pairs accepted after the first round stay apart from the large first array, so that a
    # round re-sorts only the small one.
    later = np.empty(0, dtype=np.int64)

    missing = counts - np.bincount(accepted // n_items, minlength=counts.shape[0])
    for _ in range(_MAX_DRAW_ROUNDS):
        if not missing.any():
            break
        # A user gets as many draws as it misses pairs, so the new distinct pairs never exceed
        # what it misses.
        users = np.repeat(np.arange(counts.shape[0], dtype=np.int64), missing)
        keys = np.unique(users * n_items + _draw_items(cumulative, users.shape[0], rng))
        keys = keys[~(_contains(accepted, keys) | _contains(later, keys))]
        later = np.sort(np.concatenate((later, keys)))
        missing -= np.bincount(keys // n_items, minlength=counts.shape[0])
    if missing.any():
        raise InvalidInputError(
            f"{int(missing.sum())} ratings still repeat a (user, item) pair after "
            f"{_MAX_DRAW_ROUNDS} rounds of redrawing; lower popularity_exponent or raise n_items"
        )

    keys = np.sort(np.concatenate((accepted, later)))
    return keys // n_items, keys % n_items


def _draw_items(cumulative: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``size`` items with repetition; ``cumulative`` is the cumulative popularity."""
    draws = np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")
    return np.minimum(draws, cumulative.shape[0] - 1).astype(np.int64)


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    position = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[position] == keys


def _rate(
    users: np.ndarray,
    items: np.ndarray,
    n_users: int,
    n_items: int,
    popularity: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return a rating from 1 to 5 for each pair, from a low-rank model with biases and noise."""
    user_bias = rng.normal(0.0, _USER_BIAS_STD, n_users).astype(np.float32)
    # Popular items are rated a little higher, as in MovieLens.
    log_popularity = np.log(popularity)
    standardised = (log_popularity - log_popularity.mean()) / max(log_popularity.std(), 1e-12)
    item_bias = (0.5 * _ITEM_BIAS_STD * standardised).astype(np.float32)
    item_bias += rng.normal(0.0, _ITEM_BIAS_STD, n_items).astype(np.float32)
    scale = _FACTOR_STD / math.sqrt(math.sqrt(_RANK))
    user_factors = rng.normal(0.0, scale, (n_users, _RANK)).astype(np.float32)
    item_factors = rng.normal(0.0, scale, (n_items, _RANK)).astype(np.float32)

    ratings = np.empty(users.shape[0], dtype=np.float32)
    for start in range(0, users.shape[0], _CHUNK):
        part = slice(start, start + _CHUNK)
        chunk_users, chunk_items = users[part], items[part]
        score = np.einsum("nk,nk->n", user_factors[chunk_users], item_factors[chunk_items])
        score += _MEAN_RATING + user_bias[chunk_users] + item_bias[chunk_items]
        score += rng.normal(0.0, _NOISE_STD, chunk_users.shape[0]).astype(np.float32)
        ratings[part] = np.clip(np.rint(score), 1.0, 5.0)
    return ratings
