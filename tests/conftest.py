"""Shared fixtures: the offline MovieLens-100K copy, and Ray started small on loopback."""

from __future__ import annotations

import os
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
