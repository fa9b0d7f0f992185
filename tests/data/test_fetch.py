"""Tests of fetching MovieLens-100K: local copy, both downloads (faked), checksums, errors.

No test reaches the network: an autouse fixture makes every URL request and subprocess fail,
and the tests that exercise a download replace them with fakes that serve small archives.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tune_rec.data import fetch
from tune_rec.data.fetch import (
    GROUPLENS_MEMBER,
    GROUPLENS_URL,
    ML100K_SHA256,
    RECBOLE_MEMBER,
    RECBOLE_REQUIREMENT,
    default_data_dir,
    fetch_ml100k,
    read_grouplens_zip,
    read_recbole_wheel,
    sha256_file,
    verify_sha256,
)
from tune_rec.errors import DataError, InvalidInputError

FAKE_RATINGS = b"1\t10\t4\t881250949\n2\t20\t5\t881250950\n"
FAKE_SHA256 = hashlib.sha256(FAKE_RATINGS).hexdigest()
RECBOLE_HEADER = b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, content in members.items():
            bundle.writestr(name, content)
    return buffer.getvalue()


def _write_wheel(directory: Path, inter: bytes) -> Path:
    wheel = directory / "recbole-1.2.1-py3-none-any.whl"
    wheel.write_bytes(_zip_bytes({RECBOLE_MEMBER: inter, "recbole/__init__.py": b""}))
    return wheel


class _Calls:
    """Arguments of each call to a faked network function."""

    def __init__(self) -> None:
        self.urls: list[tuple[str, float | None]] = []
        self.commands: list[list[str]] = []


@pytest.fixture(autouse=True)
def calls(monkeypatch: pytest.MonkeyPatch) -> _Calls:
    """Make URL requests and subprocesses fail, recording their arguments."""
    recorded = _Calls()

    def refuse_url(url: str, timeout: float | None = None) -> None:
        recorded.urls.append((url, timeout))
        raise urllib.error.URLError("network disabled in tests")

    def refuse_command(command: list[str], **kwargs: object) -> None:
        recorded.commands.append(list(command))
        raise OSError("subprocesses disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse_url)
    monkeypatch.setattr(subprocess, "run", refuse_command)
    return recorded


def _serve_grouplens(
    monkeypatch: pytest.MonkeyPatch, calls: _Calls, ratings: bytes = FAKE_RATINGS
) -> None:
    archive = _zip_bytes({GROUPLENS_MEMBER: ratings, "ml-100k/README": b"readme"})

    def serve(url: str, timeout: float | None = None) -> io.BytesIO:
        calls.urls.append((url, timeout))
        return io.BytesIO(archive)

    monkeypatch.setattr(urllib.request, "urlopen", serve)


def _serve_pypi(
    monkeypatch: pytest.MonkeyPatch, calls: _Calls, inter: bytes = RECBOLE_HEADER + FAKE_RATINGS
) -> None:
    def download(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.commands.append(list(command))
        _write_wheel(Path(command[command.index("-d") + 1]), inter)
        return subprocess.CompletedProcess(command, 0, stdout="Saved wheel", stderr="")

    monkeypatch.setattr(subprocess, "run", download)


def test_default_data_dir_from_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TUNE_REC_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path


def test_default_data_dir_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNE_REC_DATA_DIR", raising=False)
    assert default_data_dir() == Path.home() / ".cache" / "tune-rec"


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "u.data"
    path.write_bytes(FAKE_RATINGS)
    assert sha256_file(path) == FAKE_SHA256


def test_sha256_file_offline_copy(ml100k_dir: Path) -> None:
    assert sha256_file(ml100k_dir / "ml-100k" / "u.data") == ML100K_SHA256


def test_verify_sha256_mismatch_names_both() -> None:
    actual = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(DataError, match=f"SHA-256 is {actual}, expected {FAKE_SHA256}"):
        verify_sha256(b"other", origin="grouplens", expected=FAKE_SHA256)


def test_verify_sha256_match_passes() -> None:
    verify_sha256(FAKE_RATINGS, origin="grouplens", expected=FAKE_SHA256)


def test_fetch_uses_verified_local_copy(ml100k_dir: Path, calls: _Calls) -> None:
    path = fetch_ml100k(ml100k_dir)

    assert path == ml100k_dir / "ml-100k" / "u.data"
    assert calls.urls == []
    assert calls.commands == []


def test_fetch_default_dir_uses_environment(ml100k_dir: Path) -> None:
    # tests/conftest.py points TUNE_REC_DATA_DIR at the offline copy.
    assert fetch_ml100k() == ml100k_dir / "ml-100k" / "u.data"


def test_fetch_corrupt_local_copy_raises(tmp_path: Path, calls: _Calls) -> None:
    target = tmp_path / "ml-100k" / "u.data"
    target.parent.mkdir()
    target.write_bytes(b"1\t2\t3\t4\n")
    actual = hashlib.sha256(b"1\t2\t3\t4\n").hexdigest()

    with pytest.raises(DataError) as raised:
        fetch_ml100k(tmp_path)

    message = str(raised.value)
    assert str(target) in message
    assert actual in message
    assert ML100K_SHA256 in message
    assert "tune-rec data fetch --force" in message
    assert target.read_bytes() == b"1\t2\t3\t4\n"
    assert calls.urls == []


def test_fetch_grouplens_writes_verified_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: _Calls
) -> None:
    _serve_grouplens(monkeypatch, calls)

    path = fetch_ml100k(tmp_path, expected_sha256=FAKE_SHA256)

    assert path == tmp_path / "ml-100k" / "u.data"
    assert path.read_bytes() == FAKE_RATINGS
    assert calls.urls == [(GROUPLENS_URL, fetch.DOWNLOAD_TIMEOUT_S)]
    assert sorted(p.name for p in path.parent.iterdir()) == ["u.data"]


def test_fetch_force_replaces_corrupt_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: _Calls
) -> None:
    target = tmp_path / "ml-100k" / "u.data"
    target.parent.mkdir()
    target.write_bytes(b"corrupt\n")
    _serve_grouplens(monkeypatch, calls)

    path = fetch_ml100k(tmp_path, force=True, expected_sha256=FAKE_SHA256)

    assert path == target
    assert target.read_bytes() == FAKE_RATINGS


def test_fetch_grouplens_mismatch_falls_back_to_pypi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: _Calls
) -> None:
    _serve_grouplens(monkeypatch, calls, ratings=b"tampered\n")
    _serve_pypi(monkeypatch, calls)

    path = fetch_ml100k(tmp_path, expected_sha256=FAKE_SHA256)

    assert path.read_bytes() == FAKE_RATINGS
    assert len(calls.urls) == 1
    assert len(calls.commands) == 1


def test_fetch_pypi_runs_pip_download_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: _Calls
) -> None:
    _serve_pypi(monkeypatch, calls)

    fetch_ml100k(tmp_path, sources=("pypi",), expected_sha256=FAKE_SHA256)

    (command,) = calls.commands
    assert command[1:4] == ["-m", "pip", "download"]
    assert RECBOLE_REQUIREMENT in command
    assert "--no-deps" in command
    assert "--only-binary=:all:" in command
    assert "install" not in command


def test_fetch_pypi_failed_exit_reports_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(
            command, 1, stdout="", stderr="Looking in indexes\nERROR: No matching distribution"
        )

    monkeypatch.setattr(subprocess, "run", fail)

    with pytest.raises(DataError, match="exited with code 1: ERROR: No matching distribution"):
        fetch_ml100k(tmp_path, sources=("pypi",))


def test_read_recbole_wheel_drops_header(tmp_path: Path) -> None:
    wheel = _write_wheel(tmp_path, RECBOLE_HEADER + FAKE_RATINGS)
    assert read_recbole_wheel(wheel) == FAKE_RATINGS


def test_read_recbole_wheel_missing_member(tmp_path: Path) -> None:
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    wheel.write_bytes(_zip_bytes({"recbole/__init__.py": b""}))
    with pytest.raises(DataError, match=f"has no member {RECBOLE_MEMBER}"):
        read_recbole_wheel(wheel)


def test_read_recbole_wheel_header_only(tmp_path: Path) -> None:
    wheel = _write_wheel(tmp_path, b"user_id:token")
    with pytest.raises(DataError, match="has a header but no ratings"):
        read_recbole_wheel(wheel)


def test_read_recbole_wheel_not_zip(tmp_path: Path) -> None:
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    wheel.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="is not a zip archive"):
        read_recbole_wheel(wheel)


def test_read_grouplens_zip_extracts_member() -> None:
    archive = _zip_bytes({GROUPLENS_MEMBER: FAKE_RATINGS})
    assert read_grouplens_zip(archive) == FAKE_RATINGS


def test_read_grouplens_zip_not_zip() -> None:
    with pytest.raises(DataError, match="not a zip archive"):
        read_grouplens_zip(b"<html>moved</html>")


def test_fetch_all_sources_fail_lists_each(tmp_path: Path, calls: _Calls) -> None:
    with pytest.raises(DataError) as raised:
        fetch_ml100k(tmp_path)

    message = str(raised.value)
    assert f"local: {tmp_path / 'ml-100k' / 'u.data'} not found" in message
    assert f"grouplens: download of {GROUPLENS_URL} failed" in message
    assert "network disabled in tests" in message
    assert f"pypi: pip download {RECBOLE_REQUIREMENT} failed" in message
    assert "subprocesses disabled in tests" in message
    assert "--data PATH" in message
    assert "--data-dir" in message
    assert "TUNE_REC_DATA_DIR" in message
    assert not (tmp_path / "ml-100k" / "u.data").exists()


def test_fetch_force_without_downloads_fails(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="local: skipped because force is set"):
        fetch_ml100k(tmp_path, force=True, sources=("local",))


@pytest.mark.parametrize(
    ("sources", "match"),
    [
        ((), "at least one of local, grouplens, pypi"),
        (("local", "mirror"), "unknown data source 'mirror'"),
        ("local", "not the string 'local'"),
    ],
)
def test_fetch_invalid_sources_rejected(tmp_path: Path, sources: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        fetch_ml100k(tmp_path, sources=sources)  # type: ignore[arg-type]
