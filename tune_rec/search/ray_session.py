"""Start or attach to Ray for one search, on loopback and without usage statistics."""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tune_rec.errors import InvalidInputError

logger = logging.getLogger(__name__)

DASHBOARD_HOST = "127.0.0.1"
ADDRESS_VARIABLE = "RAY_ADDRESS"

# HOST:PORT with a host name, an IPv4 address or a bracketed IPv6 address, the forms that Ray's
# own address parser takes.
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")
# Seconds to wait for a TCP connection to the cluster's address before giving up. Without this
# check, Ray 2.60 retries an address where nothing listens for about 5 minutes, then exits.
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RaySession:
    """The Ray that a search runs on.

    Attributes:
        address: The address that was attached to; None for a Ray started by this process
            (or one that was already initialised in it).
        dashboard_url: ``http://HOST:PORT`` of the Ray dashboard, or None when none runs.
        started: Whether this process started the Ray, and stops it at the end of the block.
    """

    address: str | None
    dashboard_url: str | None
    started: bool


def configure_environment() -> None:
    """Keep Ray on 127.0.0.1 and its usage statistics off, unless the user set otherwise.

    Ray reads these variables when it is imported and when it starts, so this runs before the
    first ``import ray``.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Keeping few checkpoints makes Tune snapshot its state often, and warn each time.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's console tables and its TensorBoard hint (which names a folder without the trials'
    # logs) would repeat what tune-rec logs; the legacy reporter at verbose=0 prints nothing.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def check_address(address: str) -> str:
    """Return ``address`` stripped, after checking that it is a form Ray can attach to.

    Raises:
        InvalidInputError: the address is not ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``.
    """
    text = address.strip()
    if text == "auto":
        return text
    bare = text.removeprefix("ray://")
    match = _HOST_PORT.match(bare)
    if match and 1 <= int(match.group(2)) <= 65535:
        return text
    raise InvalidInputError(
        f"--address must be auto, HOST:PORT (the cluster's GCS address, port 6379 for "
        f"`ray start --head`) or ray://HOST:PORT (Ray Client, port 10001 by default); got "
        f"{address!r}"
    )


def resolve_address(address: str | None) -> str | None:
    """Return the cluster address to attach to, or None to start a local Ray.

    ``address`` wins; else ``$RAY_ADDRESS``, which ``ray job submit`` sets for the commands it
    runs on a cluster. Unlike a bare ``ray.init()``, a cluster that ``ray start`` left on this
    machine is only attached to with ``auto``, so that a search never lands on a forgotten
    cluster by accident.

    Raises:
        InvalidInputError: the address, or the variable's value, has an invalid form.
    """
    if address:
        return check_address(address)
    from_environment = os.environ.get(ADDRESS_VARIABLE, "").strip()
    if not from_environment or from_environment == "local":
        return None
    try:
        return check_address(from_environment)
    except InvalidInputError as error:
        raise InvalidInputError(f"${ADDRESS_VARIABLE}: {error}") from None


@contextmanager
def ray_session(
    *,
    address: str | None = None,
    dashboard: bool = False,
    dashboard_host: str = DASHBOARD_HOST,
    num_cpus: int | None = None,
    log_to_driver: bool = False,
) -> Iterator[RaySession]:
    """Start a local Ray (or attach to ``address``) for the duration of the block.

    A Ray that is already initialised in this process is reused and left running. A Ray
    started here is shut down at the end. A cluster that was attached to keeps running, and
    only this process's connection to it is closed.

    Args:
        address: ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` of an existing cluster; None
            takes ``$RAY_ADDRESS`` when it is set, else starts a local Ray with the
            machine's CPUs and GPUs.
        dashboard: Start the Ray dashboard and log its URL (local Ray only: an attached
            cluster runs its own dashboard, or none).
        dashboard_host: Address the dashboard binds to; anything but loopback is logged as a
            warning, because the dashboard accepts job submissions from whoever reaches it.
        num_cpus: CPUs of a local Ray; None takes all of the machine's.
        log_to_driver: Forward the trials' own output (Ray's checkpoint notices, warnings) to
            this process's stderr. Trial errors reach the log either way.

    Raises:
        InvalidInputError: the address has an invalid form, nothing accepts connections there,
            or Ray cannot attach to the cluster.
    """
    address = resolve_address(address)
    configure_environment()
    import ray

    if ray.is_initialized():
        yield RaySession(address=None, dashboard_url=_dashboard_url(None), started=False)
        return

    kwargs: dict = {"logging_level": logging.WARNING, "log_to_driver": log_to_driver}
    if address:
        kwargs["address"] = address
    else:
        # "local" starts a new Ray even where $RAY_ADDRESS or a `ray start` cluster exists.
        kwargs.update(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=dashboard,
            dashboard_host=dashboard_host,
            # Ray prestarts idle workers for tasks without a runtime environment. Ray Tune gives
            # each trial's actor one, so those workers are never used and only take CPU.
            _system_config={
                "enable_worker_prestart": False,
                "prestart_worker_first_driver": False,
            },
        )
        if dashboard and not _is_loopback(dashboard_host):
            logger.warning(
                "the Ray dashboard binds to %s: anyone who can reach that address can submit "
                "jobs that run code on this machine; use --dashboard-host 127.0.0.1 unless "
                "the network is trusted",
                dashboard_host,
            )
    if address:
        check_reachable(address)
    if not log_to_driver:
        # Ray's notice that token authentication is on is printed at every start; -v shows it.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR
        )
    try:
        context = ray.init(**kwargs)
    except BaseException as error:
        # A failed Ray Client connection leaves Ray's client mode on in this process, and a
        # later ray.init() would then go through Ray Client too; shutdown turns it off.
        ray.shutdown()
        if isinstance(error, ConnectionError):
            raise InvalidInputError(
                f"--address {address}: could not attach to a Ray cluster: {error}. Start one "
                "with `ray start --head`, or pass its HOST:PORT"
            ) from None
        raise
    session = RaySession(
        address=address, dashboard_url=_dashboard_url(context), started=address is None
    )
    _log_session(session, dashboard)
    try:
        yield session
    finally:
        ray.shutdown()


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Check that something accepts TCP connections at the cluster's ``HOST:PORT``.

    ``auto`` is not checked here: Ray itself fails at once when it finds no cluster.

    Raises:
        InvalidInputError: the connection was refused or timed out.
    """
    match = _HOST_PORT.match(address.removeprefix("ray://"))
    if address == "auto" or match is None:
        return
    host, port = match.group(1).strip("[]"), int(match.group(2))
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as error:
        raise InvalidInputError(
            f"--address {address}: no Ray cluster reachable at {host}:{port} ({error}); check "
            "the address and that the cluster is running: `ray status --address HOST:PORT` "
            "on its head node"
        ) from None


def _log_session(session: RaySession, dashboard: bool) -> None:
    import ray

    if session.address:
        n_nodes = sum(node.get("Alive", False) for node in ray.nodes())
        logger.info(
            "attached to the Ray cluster at %s: %d nodes, %s",
            session.address,
            n_nodes,
            _describe_resources(ray.cluster_resources()),
        )
        if session.dashboard_url:
            logger.info("the cluster's Ray dashboard: %s", session.dashboard_url)
        elif dashboard:
            logger.warning("--dashboard: the Ray cluster at %s runs no dashboard", session.address)
        return
    if not dashboard:
        return
    if session.dashboard_url:
        logger.info("Ray dashboard: %s", session.dashboard_url)
        # Ray 2.60 turns token authentication on for a new local Ray unless RAY_AUTH_MODE is
        # set, and then sets the variable to "token" in this process.
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
            logger.info("the dashboard page requests Ray's token: `ray get-auth-token` prints it")
    else:
        logger.warning(
            "the Ray dashboard did not start; it needs the packages of ray[default]: "
            "pip install 'ray[default]'"
        )


def _dashboard_url(context: object | None) -> str | None:
    """Return the dashboard's URL with its scheme, from ray.init's context or Ray's state."""
    import ray

    url = getattr(context, "dashboard_url", None) if context is not None else None
    if not url:
        try:
            from ray._private.worker import get_dashboard_url

            url = get_dashboard_url()
        except (ImportError, AttributeError, ray.exceptions.RayError):
            # A Ray Client connection, or another Ray version, has no such state.
            url = None
    if not url:
        return None
    return url if "://" in url else f"http://{url}"


def _describe_resources(resources: dict[str, float]) -> str:
    n_cpus = resources.get("CPU", 0.0)
    n_gpus = resources.get("GPU", 0.0)
    return f"{n_cpus:g} CPUs, {n_gpus:g} GPUs"


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
