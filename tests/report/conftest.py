"""Fixtures of the report tests: synthetic experiment folders."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def _load_fake_experiment_module():
    # The tests run with --import-mode=importlib, so sibling modules are not importable by name.
    path = Path(__file__).with_name("fake_experiment.py")
    spec = importlib.util.spec_from_file_location("report_fake_experiment", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fake_experiment = _load_fake_experiment_module()


@pytest.fixture(scope="session")
def write_experiment() -> Callable[..., Path]:
    """Return ``write_fake_experiment``, for fixtures wider than one test."""
    return fake_experiment.write_fake_experiment


@pytest.fixture
def make_experiment(tmp_path: Path) -> Callable[..., Path]:
    """Return a function that writes a synthetic experiment folder under tmp_path.

    It takes the keyword arguments of ``write_fake_experiment`` and an optional folder name.
    """

    def make(name: str = "experiment", **kwargs) -> Path:
        return fake_experiment.write_fake_experiment(tmp_path / name, **kwargs)

    return make
