"""Fetch MovieLens-100K and verify every copy against the SHA-256 of GroupLens' ``u.data``.

Sources, tried in the order given to :func:`fetch_ml100k`:

- ``local``: ``<data_dir>/ml-100k/u.data`` from an earlier fetch or put there by hand.
- ``grouplens``: GroupLens' archive ``ml-100k.zip``, member ``ml-100k/u.data``.
- ``pypi``: the ``recbole==1.2.1`` wheel on the Python package index, downloaded by
  ``pip download`` (never installed). Its member ``ml-100k.inter`` is a one-line header
  followed by the exact bytes of ``u.data``.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from tune_rec.errors import DataError, InvalidInputError

logger = logging.getLogger(__name__)

ML100K_SHA256 = "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"
"""SHA-256 of ``ml-100k/u.data``: 100,000 tab-separated ratings without a header."""

DATA_DIR_ENV = "TUNE_REC_DATA_DIR"
ML100K_RELATIVE_PATH = Path("ml-100k") / "u.data"

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
GROUPLENS_MEMBER = "ml-100k/u.data"
DOWNLOAD_TIMEOUT_S = 20.0

RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
# pip resolves the index and then downloads a wheel of a few MB.
PIP_TIMEOUT_S = 300.0

SOURCES: tuple[str, ...] = ("local", "grouplens", "pypi")


def default_data_dir() -> Path:
    """Return the data directory: ``$TUNE_REC_DATA_DIR`` if set, else ``~/.cache/tune-rec``."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "tune-rec"


def sha256_file(path: Path | str) -> str:
    """Return the hex SHA-256 digest of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(content: bytes, *, origin: str, expected: str = ML100K_SHA256) -> None:
    """Raise DataError unless the SHA-256 of ``content`` is ``expected``.

    Args:
        content: The bytes to check.
        origin: Where the bytes came from, for the message.
        expected: Hex digest that ``content`` must have.

    Raises:
        DataError: The digest differs. The message names both digests.
    """
    actual = hashlib.sha256(content).hexdigest()
    if actual != expected:
        raise DataError(
            f"the ratings from {origin} failed the checksum: SHA-256 is {actual}, "
            f"expected {expected}"
        )


def read_grouplens_zip(archive: bytes) -> bytes:
    """Return the bytes of ``ml-100k/u.data`` from GroupLens' ``ml-100k.zip``.

    Raises:
        DataError: The bytes are not a zip archive, or it lacks the member.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as bundle:
            return bundle.read(GROUPLENS_MEMBER)
    except (zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"the downloaded file is not a zip archive ({error})") from error
    except KeyError as error:
        raise DataError(f"the archive has no member {GROUPLENS_MEMBER}") from error


def read_recbole_wheel(wheel: Path) -> bytes:
    """Return the bytes of ``u.data`` from a RecBole wheel: ``ml-100k.inter`` less its header.

    Raises:
        DataError: The file is not a zip archive, lacks the member, or the member has no
            line after its header.
    """
    try:
        with zipfile.ZipFile(wheel) as bundle:
            inter = bundle.read(RECBOLE_MEMBER)
    except (zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"{wheel.name} is not a zip archive ({error})") from error
    except KeyError as error:
        raise DataError(f"{wheel.name} has no member {RECBOLE_MEMBER}") from error

    header, newline, ratings = inter.partition(b"\n")
    if not newline:
        raise DataError(f"{RECBOLE_MEMBER} in {wheel.name} has a header but no ratings")
    logger.debug("Dropped the header %r of %s", header, RECBOLE_MEMBER)
    return ratings


def _download_grouplens() -> bytes:
    logger.info("Downloading %s (timeout %.0f s)", GROUPLENS_URL, DOWNLOAD_TIMEOUT_S)
    try:
        with urllib.request.urlopen(GROUPLENS_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
            archive = response.read()
    except (OSError, http.client.HTTPException) as error:
        # OSError covers urllib.error.URLError, HTTPError and timeouts.
        raise DataError(f"download of {GROUPLENS_URL} failed: {error}") from error
    return read_grouplens_zip(archive)


def _download_recbole() -> bytes:
    with tempfile.TemporaryDirectory(prefix="tune-rec-pip-") as download_dir:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            RECBOLE_REQUIREMENT,
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
            download_dir,
        ]
        logger.info("Running %s", " ".join(command))
        try:
            completed = subprocess.run(
                command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise DataError(f"pip download {RECBOLE_REQUIREMENT} failed: {error}") from error
        if completed.returncode != 0:
            output = (completed.stderr or completed.stdout or "").strip().splitlines()
            last_line = output[-1] if output else "no output"
            raise DataError(
                f"pip download {RECBOLE_REQUIREMENT} exited with code "
                f"{completed.returncode}: {last_line}"
            )

        wheels = sorted(Path(download_dir).glob("*.whl"))
        if not wheels:
            raise DataError(f"pip download {RECBOLE_REQUIREMENT} succeeded but wrote no wheel")
        return read_recbole_wheel(wheels[0])


# Each remote source returns the bytes of u.data before verification.
_REMOTE_SOURCES: dict[str, Callable[[], bytes]] = {
    "grouplens": _download_grouplens,
    "pypi": _download_recbole,
}


def _check_sources(sources: Sequence[str]) -> None:
    if isinstance(sources, str):
        raise InvalidInputError(
            f"sources must be a sequence of source names, not the string {sources!r}. "
            f"Pass, for example, ({sources!r},)"
        )
    if not sources:
        raise InvalidInputError(f"sources must name at least one of {', '.join(SOURCES)}")
    unknown = [source for source in sources if source not in SOURCES]
    if unknown:
        raise InvalidInputError(
            f"unknown data source {unknown[0]!r}. Valid sources are {', '.join(SOURCES)}"
        )


def _verify_local_copy(target: Path, expected: str) -> None:
    try:
        actual = sha256_file(target)
    except OSError as error:
        raise DataError(
            f"cannot read the MovieLens-100K copy at {target}: {error}. Fix its permissions, "
            "delete it, or run `tune-rec data fetch --force` to download a fresh copy"
        ) from error
    if actual != expected:
        raise DataError(
            f"the MovieLens-100K copy at {target} failed the checksum: SHA-256 is {actual}, "
            f"expected {expected}. Delete it or run `tune-rec data fetch --force` to "
            "download a fresh copy"
        )


def _write_atomically(target: Path, content: bytes) -> None:
    """Write ``content`` to ``target`` through a temporary file in the same directory.

    A reader sees either no file or the complete one, even if the process stops midway.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"cannot create the data directory {target.parent}: {error}. Choose a writable "
            f"directory with --data-dir or {DATA_DIR_ENV}"
        ) from error

    temporary_path: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(
            "wb", dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
        ) as stream:
            temporary_path = Path(stream.name)
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary_path, target)
    except OSError as error:
        if temporary_path is not None:
            temporary_path.unlink(missing_ok=True)
        raise DataError(
            f"cannot write {target}: {error}. Choose a writable directory with --data-dir or "
            f"{DATA_DIR_ENV}"
        ) from error


def _all_sources_failed(failures: list[str]) -> DataError:
    reasons = "\n".join(f"  - {failure}" for failure in failures)
    return DataError(
        "could not obtain MovieLens-100K from any source:\n"
        f"{reasons}\n"
        "Pass a ratings file of your own with --data PATH, or point --data-dir (or "
        f"{DATA_DIR_ENV}) at a directory that contains {ML100K_RELATIVE_PATH.as_posix()}"
    )


def fetch_ml100k(
    data_dir: Path | None = None,
    *,
    force: bool = False,
    sources: Sequence[str] = SOURCES,
    expected_sha256: str = ML100K_SHA256,
) -> Path:
    """Return the path of a verified ``ml-100k/u.data``, downloading it if needed.

    Each source in ``sources`` is tried in order. A local copy that exists but fails the
    checksum stops the fetch with an error instead of being replaced silently. A downloaded
    copy is verified before it is written atomically to ``<data_dir>/ml-100k/u.data``.

    Args:
        data_dir: Directory that contains ``ml-100k/u.data``, or None for
            :func:`default_data_dir`.
        force: Skip the local copy and replace it with a freshly downloaded one.
        sources: Names from :data:`SOURCES`, in the order to try them.
        expected_sha256: Hex digest that the ratings must have.

    Returns:
        The path of the verified ratings file.

    Raises:
        InvalidInputError: ``sources`` is empty or names an unknown source.
        DataError: The local copy fails the checksum, no source delivered a verified copy
            (the message lists why each one failed), or the data directory is not writable.
    """
    _check_sources(sources)
    data_dir = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    target = data_dir / ML100K_RELATIVE_PATH
    failures: list[str] = []

    for source in sources:
        if source == "local":
            if force:
                logger.info("Skipping the local copy at %s because force is set", target)
                failures.append(f"local: skipped because force is set ({target})")
                continue
            logger.info("Looking for a verified MovieLens-100K copy at %s", target)
            if not target.is_file():
                failures.append(f"local: {target} not found")
                continue
            _verify_local_copy(target, expected_sha256)
            logger.info("Using the verified copy at %s", target)
            return target

        try:
            content = _REMOTE_SOURCES[source]()
            verify_sha256(content, origin=source, expected=expected_sha256)
        except DataError as error:
            logger.warning("Source %s failed: %s", source, error)
            failures.append(f"{source}: {error}")
            continue
        _write_atomically(target, content)
        logger.info("Wrote the verified MovieLens-100K copy from %s to %s", source, target)
        return target

    raise _all_sources_failed(failures)
