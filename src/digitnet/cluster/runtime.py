"""Starting Ray: the embedded local instance by default, a running cluster when given its address."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import DigitnetError
from ..experiment import cpu_count

#: Seconds to wait for a cluster's address to answer before saying it cannot be reached.
CONNECT_TIMEOUT_S = 5.0


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse, within ``timeout`` seconds, an address where nothing listens (``ray.init`` would retry for a minute).

    ``auto`` and ``local`` are left to Ray; ``host:port`` and ``ray://host:port`` are tried with one TCP
    connection.
    """
    if address in ("auto", "local"):
        return
    host_port = address.removeprefix("ray://")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise DigitnetError(f"--address {address!r} is not HOST:PORT (for example 192.168.1.10:6379).")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as error:
        reason = "timed out" if isinstance(error, socket.timeout) else (error.strerror or str(error))
        raise DigitnetError(
            f"No Ray cluster answers at {address} ({reason}); start one there with `ray start --head` "
            "or check the address."
        ) from None


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[dict[str, float]]:
    """Connect to Ray for the duration of the block and yield the cluster's resources.

    Parameters
    ----------
    address : str, optional
        A running cluster (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``); ``RAY_ADDRESS`` when
        not given; otherwise a local instance on this machine's cores is started and stopped.
    num_cpus : int, optional
        Cores the local instance may use [default: every core this process may run on].
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():  # a caller (a test's cluster, a notebook) already connected
        yield ray.cluster_resources()
        return
    if address is not None:
        check_reachable(address)
    # Settings for a local instance only: Ray refuses them when joining a running cluster.
    local = {"num_cpus": num_cpus or cpu_count(), "include_dashboard": False} if address is None else {}
    try:
        ray.init(address=address, logging_level=logging.WARNING, **local)
    except ConnectionError as error:
        raise DigitnetError(f"Cannot join the Ray cluster at {address}: {error}") from None
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()
