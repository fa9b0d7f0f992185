"""Load a ratings file into a checked DataFrame, and drop duplicate (user, item) pairs.

Supported files, chosen by suffix:

- ``.parquet``: columns named as in :data:`COLUMN_ALIASES`.
- ``.csv``: comma-separated text.
- ``.tsv``, ``.data``, ``.txt``: tab-separated text, as MovieLens' ``u.data``.

Text files may start with a header row. Without one, the columns are user, item, rating and an
optional timestamp, in that order. Blank lines are skipped.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tune_rec.errors import DataError, InvalidInputError

logger = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("user", "item", "rating", "timestamp")
ID_COLUMNS: tuple[str, ...] = ("user", "item")

# Header names accepted for each column, compared case-insensitively.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userId"),
    "item": ("item", "item_id", "itemId", "movieId"),
    "rating": ("rating",),
    "timestamp": ("timestamp",),
}

TEXT_DELIMITERS: dict[str, str] = {".csv": ",", ".tsv": "\t", ".data": "\t", ".txt": "\t"}
SUPPORTED_SUFFIXES: tuple[str, ...] = (".parquet", *TEXT_DELIMITERS)

_ALIAS_TO_COLUMN = {
    alias.lower(): column for column, aliases in COLUMN_ALIASES.items() for alias in aliases
}
_FIELD_NAMES = {"user": "user id", "item": "item id", "rating": "rating", "timestamp": "timestamp"}

_ROW_LAYOUT = "one rating per row: user, item, rating and an optional timestamp"

# Ids are read as int64. Floating-point numbers are exact integers only below 2**53, so larger
# ids must come from integers or text.
_MIN_INT64, _MAX_INT64 = -(2**63), 2**63 - 1
_MAX_EXACT_FLOAT = 2**53

# Turns a 0-based row position of the parsed frame into "line 7" or "row 7" for messages.
Locator = Callable[[int], str]


def load_ratings(path: Path | str, *, rating_scale: Sequence[float] | None = None) -> pd.DataFrame:
    """Read and check a ratings file.

    Args:
        path: A ``.parquet``, ``.csv``, ``.tsv``, ``.data`` or ``.txt`` file.
        rating_scale: Lowest and highest valid rating. None accepts any finite rating.

    Returns:
        One row per rating in file order, with columns ``user`` and ``item`` (int64),
        ``rating`` (float64) and, when the file has one, ``timestamp`` (int64 when every
        value is whole, else float64).

    Raises:
        InvalidInputError: ``rating_scale`` is not two finite numbers, lowest first.
        DataError: The file is missing, unreadable, empty, has other than 3 or 4 columns,
            an unknown header name, or a value that is missing, not a number, NaN, not an
            integer id, an id outside the int64 range or stored as a float of 2**53 or more,
            or outside ``rating_scale``. The message names the file and the
            first offending line (text) or row (Parquet).
    """
    path = Path(path).expanduser()
    scale = _check_rating_scale(rating_scale)
    _check_path(path)

    if path.suffix.lower() == ".parquet":
        frame = _read_parquet(path)
        ratings = _parse_frame(frame, path, lambda position: f"row {position + 1}", scale)
    else:
        ratings = _read_text(path, TEXT_DELIMITERS[path.suffix.lower()], scale)

    logger.info(
        "Loaded %d ratings of %d users and %d items from %s",
        len(ratings),
        ratings["user"].nunique(),
        ratings["item"].nunique(),
        path,
    )
    return ratings


def deduplicate(ratings: pd.DataFrame) -> pd.DataFrame:
    """Keep the latest rating of each (user, item) pair.

    The latest is the one with the largest timestamp, and among equal timestamps, or without a
    timestamp column, the one furthest down the file. The kept rows stay in their original
    order, with a fresh 0-based index.

    Args:
        ratings: Columns ``user``, ``item``, ``rating`` and optionally ``timestamp``.

    Returns:
        The ratings without duplicate (user, item) pairs.
    """
    ratings = ratings.reset_index(drop=True)
    ordered = ratings
    if "timestamp" in ratings.columns:
        # A stable sort keeps file order among equal timestamps, so the later row wins ties.
        ordered = ratings.sort_values("timestamp", kind="stable")
    latest = ordered.drop_duplicates(subset=["user", "item"], keep="last").sort_index()

    n_dropped = len(ratings) - len(latest)
    logger.info("Dropped %d duplicate (user, item) ratings, keeping the latest of each", n_dropped)
    return latest.reset_index(drop=True)


def _check_rating_scale(rating_scale: Sequence[float] | None) -> tuple[float, float] | None:
    if rating_scale is None:
        return None
    try:
        low, high = (float(value) for value in rating_scale)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(
            f"rating_scale must be two numbers [lowest, highest]; got {rating_scale!r}"
        ) from error
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise InvalidInputError(
            f"rating_scale must be two finite numbers with lowest <= highest; got "
            f"[{low:g}, {high:g}]"
        )
    return low, high


def _check_path(path: Path) -> None:
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"cannot read ratings file {path}: unsupported suffix {path.suffix or '(none)'!r}. "
            f"Use one of {', '.join(SUPPORTED_SUFFIXES)} (.tsv, .data and .txt are read as "
            "tab-separated)"
        )
    if not path.exists():
        raise DataError(
            f"ratings file {path} not found. Check the path given with --data or data.path"
        )
    if not path.is_file():
        raise DataError(f"ratings file {path} is not a regular file. Pass a file, not a folder")
    if path.stat().st_size == 0:
        raise DataError(f"ratings file {path} is empty. It needs {_ROW_LAYOUT}")


def _unreadable(path: Path, error: Exception) -> DataError:
    if path.suffix.lower() == ".parquet":
        check = "Check that it is a complete Parquet file that you may read"
    else:
        check = "Check that it is UTF-8 text that you may read"
    return DataError(f"cannot read ratings file {path}: {str(error).rstrip('.')}. {check}")


def _no_ratings(path: Path) -> DataError:
    return DataError(f"ratings file {path} contains no ratings. It needs {_ROW_LAYOUT}")


def _wrong_column_count(path: Path, n_columns: int, where: str) -> DataError:
    return DataError(
        f"ratings file {path} has {n_columns} column{'s' if n_columns != 1 else ''} {where}, "
        "expected 3 or 4: user, item, rating and an optional timestamp. Check the delimiter: "
        ".csv files are read as comma-separated, .tsv/.data/.txt as tab-separated"
    )


def _columns_from_names(names: Sequence[object], path: Path, where: str) -> list[str]:
    """Map header names to the canonical column names, rejecting unknown or repeated ones."""
    if len(names) not in (3, 4):
        raise _wrong_column_count(path, len(names), where)
    columns: list[str] = []
    for name in names:
        column = _ALIAS_TO_COLUMN.get(str(name).strip().lower())
        if column is None:
            accepted = "; ".join(
                f"{column}: {', '.join(aliases)}" for column, aliases in COLUMN_ALIASES.items()
            )
            raise DataError(
                f"ratings file {path} has an unknown column {str(name)!r} {where}. Rename it "
                f"to one of the accepted names ({accepted})"
            )
        if column in columns:
            raise DataError(
                f"ratings file {path} names the {column} column twice {where}. Keep one"
            )
        columns.append(column)
    for required in ("user", "item", "rating"):
        if required not in columns:
            raise DataError(
                f"ratings file {path} has no {required} column {where}. Add one named "
                f"{' or '.join(COLUMN_ALIASES[required])}"
            )
    return columns


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        # pyarrow reports a corrupt file as ArrowInvalid, a ValueError.
        raise _unreadable(path, error) from error
    columns = _columns_from_names(list(frame.columns), path, "in its schema")
    frame.columns = columns
    if frame.empty:
        raise _no_ratings(path)
    return frame.reset_index(drop=True)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_header(path: Path, delimiter: str) -> tuple[list[str] | None, int]:
    """Return the header's column names (None without a header) and the first row's width."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            for fields in csv.reader(stream, delimiter=delimiter):
                fields = [field.strip() for field in fields]
                if not any(fields):
                    continue
                if any(_is_number(field) for field in fields):
                    return None, len(fields)
                return fields, len(fields)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise _unreadable(path, error) from error
    raise _no_ratings(path)


def _read_text(path: Path, delimiter: str, scale: tuple[float, float] | None) -> pd.DataFrame:
    """Read a delimited text file, first fast with numeric parsing, then line by line on error.

    The fast read lets pandas parse numbers and skip blank lines, so its row positions are not
    line numbers. When it finds any problem, the file is read again as strings with one row
    per line, and that pass raises the error with the line number.
    """
    header, n_fields = _read_header(path, delimiter)
    if n_fields not in (3, 4):
        raise _wrong_column_count(path, n_fields, "on its first line")
    if header is None:
        columns = list(COLUMNS[:n_fields])
    else:
        columns = _columns_from_names(header, path, "in its header")

    try:
        frame = pd.read_csv(
            path,
            sep=delimiter,
            header=0 if header is not None else None,
            names=columns,
            index_col=False,
            encoding="utf-8-sig",
            skip_blank_lines=True,
        )
    except (pd.errors.ParserError, ValueError, OSError):
        logger.debug("Fast read of %s failed, so reading it line by line", path)
        return _read_text_by_line(path, delimiter, columns, header is not None, scale)

    if frame.empty:
        raise _no_ratings(path)
    try:
        return _parse_frame(frame, path, lambda position: f"row {position + 1}", scale)
    except DataError:
        return _read_text_by_line(path, delimiter, columns, header is not None, scale)


def _read_text_by_line(
    path: Path,
    delimiter: str,
    columns: list[str],
    has_header: bool,
    scale: tuple[float, float] | None,
) -> pd.DataFrame:
    """Read a text file as strings with one row per line, so errors can name the line."""
    try:
        frame = pd.read_csv(
            path,
            sep=delimiter,
            header=None,
            names=columns,
            index_col=False,
            dtype=str,
            na_filter=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except pd.errors.ParserError as error:
        raise _field_count_error(path, delimiter, len(columns)) from error
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise _unreadable(path, error) from error

    stripped = frame.apply(lambda values: values.str.strip())
    is_blank = stripped.eq("").all(axis=1)
    if has_header:
        # The header is the first line that is not blank.
        is_blank.iloc[int(np.argmin(is_blank.to_numpy()))] = True
    lines = stripped[~is_blank]
    if lines.empty:
        raise _no_ratings(path)

    line_numbers = lines.index.to_numpy() + 1
    ratings = _parse_frame(
        lines.reset_index(drop=True),
        path,
        lambda position: f"line {line_numbers[position]}",
        scale,
    )
    return ratings


def _field_count_error(path: Path, delimiter: str, n_expected: int) -> DataError:
    """Return the error for the first line whose number of fields differs from the first's."""
    with open(path, encoding="utf-8-sig", newline="") as stream:
        for line_number, fields in enumerate(csv.reader(stream, delimiter=delimiter), start=1):
            if any(field.strip() for field in fields) and len(fields) > n_expected:
                return DataError(
                    f"ratings file {path} has {len(fields)} fields on line {line_number}, "
                    f"expected {n_expected} like its first line. Every line needs user, item, "
                    "rating and, on all lines or none, a timestamp"
                )
    return DataError(
        f"cannot parse ratings file {path}: lines have different numbers of fields. Every "
        "line needs user, item, rating and, on all lines or none, a timestamp"
    )


def _parse_frame(
    frame: pd.DataFrame, path: Path, locate: Locator, scale: tuple[float, float] | None
) -> pd.DataFrame:
    """Convert and check each column of a freshly read frame with positional rows."""
    parsed = {}
    for column in frame.columns:
        values = _to_numbers(frame[column], column, path, locate)
        if column in ID_COLUMNS:
            values = _to_ids(frame[column], values, column, path, locate)
        elif column == "timestamp" and (values % 1 == 0).all():
            values = values.astype(np.int64)
        parsed[column] = values

    ratings = pd.DataFrame(parsed, columns=[c for c in COLUMNS if c in parsed])
    if scale is not None:
        _check_scale(ratings["rating"], scale, path, locate)
    return ratings


def _format_value(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def _first_problem(
    mask: pd.Series | np.ndarray,
    values: pd.Series,
    column: str,
    path: Path,
    locate: Locator,
    problem: str,
    fix: str,
) -> DataError:
    """Return an error naming the first flagged row, its value and how many rows are flagged."""
    mask = np.asarray(mask)
    position = int(np.argmax(mask))
    count = int(mask.sum())
    others = f" ({count} such rows in total)" if count > 1 else ""
    return DataError(
        f"ratings file {path}: {_FIELD_NAMES[column]} {_format_value(values.iloc[position])} on "
        f"{locate(position)} {problem}{others}. {fix}"
    )


def _to_numbers(values: pd.Series, column: str, path: Path, locate: Locator) -> pd.Series:
    """Return ``values`` as float64, raising DataError on a missing, non-numeric or NaN value."""
    field = _FIELD_NAMES[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        # Parquet may store timestamps as datetimes. They become seconds since 1970-01-01 UTC,
        # with NaN for a missing datetime.
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            values = values.dt.tz_convert(None)
        values = (values - pd.Timestamp(0)).dt.total_seconds()

    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype(np.float64)
        if numbers.isna().any():
            raise _first_problem(
                numbers.isna(),
                values,
                column,
                path,
                locate,
                "is NaN or missing",
                f"Every row needs a numeric {field}. Fix or remove the row",
            )
        if np.isinf(numbers.to_numpy()).any():
            raise _first_problem(
                np.isinf(numbers.to_numpy()),
                values,
                column,
                path,
                locate,
                "is not finite",
                f"Every row needs a finite {field}. Fix or remove the row",
            )
        return numbers

    text = values.astype(str).str.strip()
    missing = values.isna().to_numpy() | text.eq("").to_numpy()
    if missing.any():
        raise _first_problem(
            missing,
            values,
            column,
            path,
            locate,
            "is missing",
            f"Every row needs a {field}. Fill in or remove the row",
        )
    numbers = pd.to_numeric(text, errors="coerce")
    is_nan_text = text.str.lower().eq("nan").to_numpy()
    not_numeric = numbers.isna().to_numpy() & ~is_nan_text
    if not_numeric.any():
        raise _first_problem(
            not_numeric,
            values,
            column,
            path,
            locate,
            "is not a number",
            f"Every {field} must be numeric. Fix or remove the row",
        )
    if is_nan_text.any():
        raise _first_problem(
            is_nan_text,
            values,
            column,
            path,
            locate,
            "is NaN",
            f"Every row needs a numeric {field}. Fix or remove the row",
        )
    if np.isinf(numbers.to_numpy(dtype=np.float64)).any():
        raise _first_problem(
            np.isinf(numbers.to_numpy(dtype=np.float64)),
            values,
            column,
            path,
            locate,
            "is not finite",
            f"Every row needs a finite {field}. Fix or remove the row",
        )
    return numbers.astype(np.float64)


def _to_ids(
    raw: pd.Series, numbers: pd.Series, column: str, path: Path, locate: Locator
) -> pd.Series:
    """Return the ids of a column as int64, parsed exactly from the file's own values.

    ``numbers`` (float64) checks that every id is a whole number, but it cannot tell ids of
    2**53 or more apart, so the ids themselves come from the integers or text of ``raw``.
    """
    field = _FIELD_NAMES[column]
    not_integer = (numbers % 1 != 0).to_numpy()
    if not_integer.any():
        raise _first_problem(
            not_integer,
            numbers,
            column,
            path,
            locate,
            "is not an integer",
            f"Every {field} must be a whole number. Fix or remove the row",
        )

    if pd.api.types.is_integer_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        too_large = (raw > _MAX_INT64).to_numpy() if raw.dtype == np.uint64 else None
        if too_large is not None and too_large.any():
            raise _id_out_of_range(too_large, raw, column, path, locate)
        return raw.astype(np.int64)

    if pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_datetime64_any_dtype(raw):
        inexact = (numbers.abs() >= _MAX_EXACT_FLOAT).to_numpy()
        if inexact.any():
            raise _first_problem(
                inexact,
                numbers,
                column,
                path,
                locate,
                "is a floating-point number of 2**53 or more, which may stand for several "
                "neighbouring ids",
                f"Store every {field} as an integer or as text",
            )
        return numbers.astype(np.int64)

    return _text_to_ids(raw.astype(str).str.strip(), numbers, column, path, locate)


def _text_to_ids(
    text: pd.Series, numbers: pd.Series, column: str, path: Path, locate: Locator
) -> pd.Series:
    """Parse ids written as text: digits exactly, other forms (``4.0``, ``1e3``) as floats."""
    is_digits = text.str.fullmatch(r"[+-]?\d+").to_numpy()
    exact = [int(value) for value in text[is_digits]]
    out_of_range = np.zeros(len(text), dtype=bool)
    out_of_range[np.flatnonzero(is_digits)] = [
        not _MIN_INT64 <= value <= _MAX_INT64 for value in exact
    ]
    if out_of_range.any():
        raise _id_out_of_range(out_of_range, text, column, path, locate)
    inexact = ~is_digits & (numbers.abs() >= _MAX_EXACT_FLOAT).to_numpy()
    if inexact.any():
        raise _first_problem(
            inexact,
            text,
            column,
            path,
            locate,
            "is written as a floating-point number of 2**53 or more, which may stand for "
            "several neighbouring ids",
            f"Write every {_FIELD_NAMES[column]} as a plain integer",
        )
    ids = np.empty(len(text), dtype=np.int64)
    ids[~is_digits] = numbers.to_numpy(dtype=np.float64)[~is_digits].astype(np.int64)
    ids[is_digits] = np.array(exact, dtype=np.int64)
    return pd.Series(ids, index=text.index, dtype=np.int64)


def _id_out_of_range(
    mask: np.ndarray, values: pd.Series, column: str, path: Path, locate: Locator
) -> DataError:
    return _first_problem(
        mask,
        values,
        column,
        path,
        locate,
        f"is outside the 64-bit integer range [{_MIN_INT64}, {_MAX_INT64}]",
        f"Map every {_FIELD_NAMES[column]} to a smaller integer",
    )


def _check_scale(
    ratings: pd.Series, scale: tuple[float, float], path: Path, locate: Locator
) -> None:
    low, high = scale
    outside = ((ratings < low) | (ratings > high)).to_numpy()
    if outside.any():
        raise _first_problem(
            outside,
            ratings,
            "rating",
            path,
            locate,
            f"is outside the rating scale [{low:g}, {high:g}]",
            "Fix the ratings, or set data.rating_scale to the scale the file uses (null "
            "accepts any rating)",
        )
