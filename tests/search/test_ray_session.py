"""The local Ray that tune-rec starts for a search."""

from __future__ import annotations

import time

import psutil
import pytest

from tune_rec.search.ray_session import ray_session


def _idle_workers() -> list[psutil.Process]:
    """Return this process's descendants that are idle Ray workers."""
    idle = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.cmdline()[:1] and process.cmdline()[0].startswith("ray::IDLE"):
                idle.append(process)
        except psutil.Error:
            continue
    return idle


@pytest.mark.ray
def test_local_ray_starts_no_idle_workers():
    import ray

    assert not ray.is_initialized()
    with ray_session(num_cpus=2) as session:
        assert session.started
        # A Ray with prestart on shows its idle workers within about a second of ray.init.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert _idle_workers() == []
            time.sleep(0.2)
    assert not ray.is_initialized()
