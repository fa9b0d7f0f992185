"""Ray for the search tests: 2 CPUs, no dashboard, loopback only, started once per module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def ray_local():
    from tune_rec.search.ray_session import configure_environment

    configure_environment()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()
