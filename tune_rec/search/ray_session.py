"""Start or attach to Ray for one search, on loopback and without usage statistics."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

DASHBOARD_HOST = "127.0.0.1"


def configure_environment() -> None:
    """Keep Ray on 127.0.0.1 and its usage statistics off, unless the user set otherwise.

    Ray reads these variables when it is imported and when it starts, so this runs before the
    first ``import ray``.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Keeping few checkpoints makes Tune snapshot its state often, and warn each time.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


@contextmanager
def ray_session(
    *,
    address: str | None = None,
    dashboard: bool = False,
    dashboard_host: str = DASHBOARD_HOST,
    num_cpus: int | None = None,
    log_to_driver: bool = False,
) -> Iterator[None]:
    """Start a local Ray (or attach to ``address``) for the duration of the block.

    A Ray that is already initialised in this process is reused and left running.

    Args:
        address: ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` of an existing cluster; None
            starts a local Ray with the machine's CPUs and GPUs.
        dashboard: Start the Ray dashboard and log its URL (local Ray only).
        dashboard_host: Address the dashboard binds to; anything but loopback is logged as a
            warning, because the dashboard accepts job submissions from whoever reaches it.
        num_cpus: CPUs of a local Ray; None takes all of the machine's.
        log_to_driver: Forward the trials' own output (Ray's checkpoint notices, warnings) to
            this process's stderr. Trial errors reach the log either way.
    """
    configure_environment()
    import ray

    if ray.is_initialized():
        yield
        return

    kwargs: dict = {"logging_level": logging.WARNING, "log_to_driver": log_to_driver}
    if address:
        kwargs["address"] = address
    else:
        kwargs.update(
            num_cpus=num_cpus,
            include_dashboard=dashboard,
            dashboard_host=dashboard_host,
        )
        if dashboard and not _is_loopback(dashboard_host):
            logger.warning(
                "the Ray dashboard binds to %s: anyone who can reach that address can submit "
                "jobs that run code on this machine; use --dashboard-host 127.0.0.1 unless "
                "the network is trusted",
                dashboard_host,
            )
    context = ray.init(**kwargs)
    url = getattr(context, "dashboard_url", None)
    if dashboard and url:
        logger.info("Ray dashboard: http://%s", url)
    try:
        yield
    finally:
        ray.shutdown()


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
