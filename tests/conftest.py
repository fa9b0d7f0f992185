"""Shared fixtures: the offline MovieLens-100K copy, Ray started small on loopback, and headless
Chromium for the browser tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# Ray reads these at import time: keep every test cluster on 127.0.0.1 and send no usage data.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _offline_data_dir() -> Path | None:
    """Return a directory holding ml-100k/u.data, from TUNE_REC_DATA_DIR or a sibling shared/."""
    candidates = []
    if os.environ.get("TUNE_REC_DATA_DIR"):
        candidates.append(Path(os.environ["TUNE_REC_DATA_DIR"]))
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for candidate in candidates:
        if (candidate / "ml-100k" / "u.data").is_file():
            return candidate
    return None


OFFLINE_DATA_DIR = _offline_data_dir()
if OFFLINE_DATA_DIR is not None:
    os.environ["TUNE_REC_DATA_DIR"] = str(OFFLINE_DATA_DIR)


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """Return the data directory holding a verified ml-100k/u.data, or skip."""
    if OFFLINE_DATA_DIR is None:
        pytest.skip("no offline copy of ml-100k/u.data; set TUNE_REC_DATA_DIR to one")
    return OFFLINE_DATA_DIR


@dataclass(frozen=True)
class Chromium:
    """A Chromium executable, run headless with the flags that every browser test needs."""

    executable: str

    def run(
        self, profile: Path, *args: str, timeout_s: float = 180
    ) -> subprocess.CompletedProcess:
        """Run Chromium headless with a profile folder and ``args``, whatever its exit status.

        Chromium gets no sandbox (tests may run as root), no GPU and no background traffic.
        Pages fetch their data after load, and 15 s of virtual time lets those requests finish.
        """
        command = [
            self.executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            *args,
        ]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )


def find_chromium() -> str | None:
    """Return the path of $CHROMIUM, chromium, chromium-browser or google-chrome, or None."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    """Return headless Chromium, or skip when it is not installed."""
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "Chromium not found; install it (Debian: apt-get install -y chromium) or set "
            "CHROMIUM to its executable"
        )
    return Chromium(executable)
