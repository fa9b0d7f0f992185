"""Tests of reading ratings files in every format, their error messages, and deduplication."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tune_rec.data.ratings import deduplicate, load_ratings
from tune_rec.errors import DataError, InvalidInputError

EXPECTED = pd.DataFrame(
    {
        "user": [1, 1, 2],
        "item": [10, 20, 10],
        "rating": [4.0, 3.5, 5.0],
        "timestamp": [100, 200, 300],
    }
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_ratings_ml100k(ml100k_dir: Path) -> None:
    ratings = load_ratings(ml100k_dir / "ml-100k" / "u.data", rating_scale=(1, 5))

    assert list(ratings.columns) == ["user", "item", "rating", "timestamp"]
    assert len(ratings) == 100_000
    assert ratings["user"].nunique() == 943
    assert ratings["item"].nunique() == 1682
    assert ratings["user"].dtype == np.int64
    assert ratings["item"].dtype == np.int64
    assert ratings["rating"].dtype == np.float64
    assert ratings["timestamp"].dtype == np.int64
    assert ratings.iloc[0].tolist() == [196, 242, 3, 881250949]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("plain.csv", "1,10,4,100\n1,20,3.5,200\n2,10,5,300\n"),
        ("header.csv", "userId,movieId,rating,timestamp\n1,10,4,100\n1,20,3.5,200\n2,10,5,300\n"),
        ("upper.csv", "USER_ID,Item_Id,Rating,Timestamp\n1,10,4,100\n1,20,3.5,200\n2,10,5,300\n"),
        ("plain.tsv", "1\t10\t4\t100\n1\t20\t3.5\t200\n2\t10\t5\t300\n"),
        ("plain.data", "1\t10\t4\t100\n1\t20\t3.5\t200\n2\t10\t5\t300\n"),
        ("plain.txt", "1\t10\t4\t100\n1\t20\t3.5\t200\n2\t10\t5\t300\n"),
        ("blank.tsv", "\n1\t10\t4\t100\n\n1\t20\t3.5\t200\n2\t10\t5\t300\n\n"),
        ("reordered.csv", "item,user,timestamp,rating\n10,1,100,4\n20,1,200,3.5\n10,2,300,5\n"),
    ],
)
def test_load_ratings_text_formats(tmp_path: Path, name: str, text: str) -> None:
    ratings = load_ratings(_write(tmp_path / name, text))
    pd.testing.assert_frame_equal(ratings, EXPECTED)


def test_load_ratings_without_timestamp(tmp_path: Path) -> None:
    ratings = load_ratings(_write(tmp_path / "r.csv", "user,item,rating\n1,10,4\n2,10,5\n"))

    assert list(ratings.columns) == ["user", "item", "rating"]
    assert ratings["rating"].tolist() == [4.0, 5.0]


def test_load_ratings_parquet(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    EXPECTED.rename(columns={"user": "user_id", "item": "itemId"}).to_parquet(path)

    pd.testing.assert_frame_equal(load_ratings(path), EXPECTED)


def test_load_ratings_parquet_datetime_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    frame = EXPECTED.assign(timestamp=pd.to_datetime(EXPECTED["timestamp"], unit="s"))
    frame.to_parquet(path)

    assert load_ratings(path)["timestamp"].tolist() == [100, 200, 300]


def test_load_ratings_parquet_timezone_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    stamps = pd.to_datetime(EXPECTED["timestamp"], unit="s").dt.tz_localize("UTC")
    EXPECTED.assign(timestamp=stamps.dt.tz_convert("Europe/Paris")).to_parquet(path)

    assert load_ratings(path)["timestamp"].tolist() == [100, 200, 300]


def test_load_ratings_within_scale(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "1,10,1\n1,20,5\n")
    assert load_ratings(path, rating_scale=(1, 5))["rating"].tolist() == [1.0, 5.0]


# Each case: file name, its text (None: do not create it), rating scale, expected message.
LOADER_ERRORS = [
    ("absent.csv", None, None, r"absent\.csv not found"),
    ("ratings.json", "[]", None, r"unsupported suffix '\.json'"),
    ("empty.csv", "", None, r"empty\.csv is empty"),
    ("blank.csv", "\n\n  \n", None, r"blank\.csv contains no ratings"),
    ("header_only.csv", "user,item,rating\n", None, r"header_only\.csv contains no ratings"),
    ("two.csv", "1,10\n2,20\n", None, r"has 2 columns on its first line, expected 3 or 4"),
    ("five.csv", "1,10,4,100,9\n", None, r"has 5 columns on its first line, expected 3 or 4"),
    ("semicolon.csv", "1;10;4\n", None, r"has 1 column on its first line.*delimiter"),
    ("extra.csv", "1,10,4\n2,20,5\n3,30,4,7\n", None, r"4 fields on line 3, expected 3"),
    ("user.csv", "1,10,4\n\nabc,20,5\n", None, r"user id 'abc' on line 3 is not a number"),
    ("item.tsv", "1\t10\t4\n2\tx7\t5\n", None, r"item id 'x7' on line 2 is not a number"),
    ("rating.csv", "1,10,good\n2,10,bad\n", None, r"rating 'good' on line 1 is not a number"),
    ("count.csv", "1,10,good\n2,10,bad\n", None, r"\(2 such rows in total\)"),
    ("nan.csv", "user,item,rating\n1,10,4\n2,10,NaN\n", None, r"rating 'NaN' on line 3 is NaN"),
    ("gap.csv", "1,10,4\n2,10\n", None, r"rating '' on line 2 is missing"),
    ("inf.csv", "1,10,inf\n", None, r"rating 'inf' on line 1 is not finite"),
    ("fraction.csv", "1,10.5,4\n", None, r"item id 10\.5 on line 1 is not an integer"),
    ("stamp.csv", "1,10,4,100\n2,10,5,soon\n", None, r"timestamp 'soon' on line 2 is not a"),
    ("scale.csv", "1,10,4\n\n2,10,6\n", (1, 5), r"rating 6 on line 3 is outside the rating scale"),
    ("low.tsv", "1\t10\t0.5\n", (1.0, 5.0), r"rating 0\.5 on line 1 is outside .*\[1, 5\]"),
    ("unknown.csv", "user,movie,rating\n1,10,4\n", None, r"unknown column 'movie' in its header"),
    ("twice.csv", "user,userId,rating\n1,1,4\n", None, r"names the user column twice"),
    ("norating.csv", "user,item,timestamp\n1,10,4\n", None, r"has no rating column"),
    ("binary.csv", b"\xff\xfe\x00\x81,1,2\n", None, r"cannot read ratings file .*binary\.csv"),
    ("corrupt.parquet", "not parquet", None, r"cannot read ratings file .*corrupt\.parquet"),
    ("huge.csv", f"1,10,4\n{2**64 + 5},10,4\n", None, r"on line 2 is outside the 64-bit"),
    ("above.csv", f"1,10,4\n{2**63},10,4\n", None, r"user id '9223372036854775808' on line 2"),
    ("float.csv", f"{2**53}.0,10,4\n", None, r"floating-point number of 2\*\*53 or more"),
    # pandas reads the item column as floats, so the ids are parsed again line by line.
    ("mixed.csv", f"1,{2**53 + 1},4\n2,{2**53}.0,5\n", None, r"item id '9007\d+\.0' on line 2"),
]


@pytest.mark.parametrize(
    ("name", "content", "rating_scale", "match"),
    LOADER_ERRORS,
    ids=[case[0] for case in LOADER_ERRORS],
)
def test_load_ratings_error(
    tmp_path: Path,
    name: str,
    content: str | bytes | None,
    rating_scale: tuple[float, float] | None,
    match: str,
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        _write(path, content)

    with pytest.raises(DataError, match=match):
        load_ratings(path, rating_scale=rating_scale)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (EXPECTED.assign(rating=[4.0, np.nan, 5.0]), r"rating nan on row 2 is NaN or missing"),
        (EXPECTED.rename(columns={"item": "movie"}), r"unknown column 'movie' in its schema"),
        (EXPECTED.assign(extra=1), r"has 5 columns in its schema, expected 3 or 4"),
        (EXPECTED.iloc[:0], r"contains no ratings"),
        (EXPECTED.assign(user=["a", "1", "2"]), r"user id 'a' on row 1 is not a number"),
        (
            EXPECTED.assign(timestamp=pd.to_datetime([100, None, 300], unit="s")),
            r"timestamp nan on row 2 is NaN or missing",
        ),
        (
            EXPECTED.assign(user=[1.0, 2.0**53 + 2, 2.0]),
            r"user id 9\.0072e\+15 on row 2 is a floating-point number of 2\*\*53 or more",
        ),
    ],
    ids=["nan", "unknown", "five", "empty", "text-id", "no-datetime", "float-id"],
)
def test_load_ratings_parquet_error(tmp_path: Path, frame: pd.DataFrame, match: str) -> None:
    path = tmp_path / "r.parquet"
    frame.to_parquet(path)

    with pytest.raises(DataError, match=match):
        load_ratings(path)


BIG = 2**53


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("big.tsv", f"{BIG}\t{BIG + 1}\t4\n{BIG + 1}\t{BIG}\t5\n"),
        ("big.csv", f"user,item,rating\n{BIG},{BIG + 1},4\n{BIG + 1},{BIG},5\n"),
        ("int.parquet", pd.DataFrame({"user": [BIG, BIG + 1], "item": [BIG + 1, BIG]})),
        ("text.parquet", pd.DataFrame({"user": [str(BIG), str(BIG + 1)], "item": ["1", "2"]})),
    ],
)
def test_load_ratings_ids_above_2_53_distinct(tmp_path: Path, name: str, content) -> None:
    path = tmp_path / name
    if isinstance(content, pd.DataFrame):
        content.assign(rating=[4.0, 5.0]).to_parquet(path)
    else:
        _write(path, content)

    ratings = load_ratings(path)

    assert ratings["user"].dtype == np.int64
    assert ratings["user"].tolist() == [BIG, BIG + 1]
    assert ratings["user"].nunique() == 2
    assert ratings["item"].nunique() == 2


def test_load_ratings_directory_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "ratings.csv"
    folder.mkdir()
    with pytest.raises(DataError, match="is not a regular file"):
        load_ratings(folder)


@pytest.mark.parametrize("rating_scale", [(5, 1), (1, float("nan")), (1,), ("a", "b")])
def test_load_ratings_invalid_scale(tmp_path: Path, rating_scale: tuple) -> None:
    path = _write(tmp_path / "r.csv", "1,10,4\n")
    with pytest.raises(InvalidInputError, match="rating_scale must be two"):
        load_ratings(path, rating_scale=rating_scale)


def test_deduplicate_keeps_latest_timestamp(caplog: pytest.LogCaptureFixture) -> None:
    ratings = pd.DataFrame(
        {
            "user": [1, 1, 2, 1],
            "item": [10, 10, 10, 20],
            "rating": [5.0, 2.0, 3.0, 4.0],
            "timestamp": [300, 100, 50, 60],
        }
    )

    with caplog.at_level(logging.INFO, logger="tune_rec.data.ratings"):
        unique = deduplicate(ratings)

    assert unique.to_dict("list") == {
        "user": [1, 2, 1],
        "item": [10, 10, 20],
        "rating": [5.0, 3.0, 4.0],
        "timestamp": [300, 50, 60],
    }
    assert "Dropped 1 duplicate" in caplog.text


def test_deduplicate_equal_timestamps_keeps_last_row() -> None:
    ratings = pd.DataFrame(
        {"user": [1, 1], "item": [10, 10], "rating": [5.0, 2.0], "timestamp": [100, 100]}
    )
    assert deduplicate(ratings)["rating"].tolist() == [2.0]


def test_deduplicate_without_timestamps_keeps_last_row() -> None:
    ratings = pd.DataFrame(
        {"user": [1, 2, 1, 1], "item": [10, 10, 10, 20], "rating": [5.0, 3.0, 1.0, 4.0]}
    )

    unique = deduplicate(ratings)

    assert unique["user"].tolist() == [2, 1, 1]
    assert unique["item"].tolist() == [10, 10, 20]
    assert unique["rating"].tolist() == [3.0, 1.0, 4.0]
    assert unique.index.tolist() == [0, 1, 2]


def test_deduplicate_without_duplicates_unchanged() -> None:
    pd.testing.assert_frame_equal(deduplicate(EXPECTED), EXPECTED)
