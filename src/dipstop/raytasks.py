"""Running independent calls as Ray tasks: the one place dipstop talks to Ray.

`dipstop denoise --ray` (one task per file, or per tile of a tiled photo) and the lab's
grids (`dipstop bench --ray`, one task per run) all go through `ray_map`. On a local Ray
each task takes one CPU, so a machine runs one task per core; on a cluster with GPUs each
task takes one GPU.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from dipstop.errors import DipstopError

CONNECT_SECONDS = 5.0  # how long a cluster's address may take to accept a connection


def ray_map(
    fn: Callable[..., Any], calls: Iterable[tuple], address: str | None = None
) -> Iterator[Any]:
    """Run `fn(*args)` for every `args` in `calls` as Ray tasks; yield results as they finish.

    Joins the Ray at `address` (a fresh local Ray when empty or None, whatever Ray's temp
    folder records; RAY_ADDRESS when set) unless Ray is already initialised in this process.
    Tasks take one GPU each when the cluster has GPUs, else one CPU. `calls` is read lazily
    and at most two tasks per slot (CPU or GPU) are in flight, so the arguments held at once
    are bounded by the cluster, not by the number of calls (the 1302 tiles of a 12 MP
    photo). Results come in the order the tasks finish, not the order
    of `calls`; a task that raises re-raises here (as Ray's wrapper of the exception; a
    DipstopError as itself, so its message stays one line).
    Closing the generator early (Ctrl-C, an error) cancels the tasks not finished yet.

    Parameters
    ----------
    fn : callable
        A picklable function (module-level); its arguments and result must pickle too.
    calls : iterable of tuple
        The positional arguments of each call.
    address : str, optional
        The cluster to join, as `ray.init(address=...)` takes it.

    Yields
    ------
    object
        Each call's result.

    Raises
    ------
    DipstopError
        When Ray is not installed, or the cluster at `address` cannot be reached within
        `CONNECT_SECONDS` (on the first `next`).
    """
    ray = _connect(address)
    gpus = ray.cluster_resources().get("GPU", 0)
    task = ray.remote(num_gpus=1 if gpus else 0)(fn)
    window = 2 * ray_slots(address)
    pending = iter(calls)
    futures = [task.remote(*args) for args in itertools.islice(pending, window)]
    try:
        while futures:
            ready, futures = ray.wait(futures, num_returns=1)
            futures += [task.remote(*args) for args in itertools.islice(pending, 1)]
            yield _get(ray, ready[0])
    finally:  # abandoned (Ctrl-C, an error): the tasks not finished are cancelled
        for future in futures:
            with contextlib.suppress(Exception):
                ray.cancel(future)


def _get(ray: Any, future: Any) -> Any:
    """A task's result; a DipstopError the task raised is raised here as itself, its
    one-line message, not as Ray's wrapper (whose message is the remote traceback)."""
    try:
        return ray.get(future)
    except DipstopError as exc:  # Ray's wrapper subclasses the exception it wraps
        cause = getattr(exc, "cause", None)
        if isinstance(cause, DipstopError):
            raise cause from None
        raise


def ray_slots(address: str | None = None) -> int:
    """How many tasks `ray_map` runs at once on the Ray at `address`: its GPUs, else its CPUs.

    Joins (or starts) the Ray as `ray_map` does; raises DipstopError when Ray is missing.
    """
    resources = _connect(address).cluster_resources()
    return max(1, int(resources.get("GPU", 0) or resources.get("CPU", 1)))


def _connect(address: str | None) -> Any:
    """The `ray` module, joined to the Ray at `address` unless Ray is already initialised
    (`check_ray_address` says which Ray that is)."""
    try:
        import ray
    except ImportError:
        raise DipstopError(
            "Ray is not installed; pip install 'dipstop[ray]' or drop --ray"
        ) from None
    if ray.is_initialized():
        return ray
    target = check_ray_address(address)
    try:
        ray.init(address=target, include_dashboard=False, log_to_driver=False)
    except (OSError, RuntimeError, ValueError) as exc:  # ConnectionError is an OSError
        named, unset = _named(address)
        why = " ".join(str(exc).split())[:160]
        raise DipstopError(
            f"cannot join the Ray at {named} ({why}); start it (ray start --head) or "
            f"{unset} for a local Ray"
        ) from None
    return ray


def check_ray_address(address: str | None) -> str:
    """The address `ray.init` gets for `address`, checked without starting anything.

    An empty or None address means a fresh local Ray ("local"), never the cluster recorded
    in Ray's temp folder (/tmp/ray/ray_current_cluster), which a dead head leaves behind and
    Ray's own default would wait on forever; RAY_ADDRESS, when set, is taken as if given. A
    cluster's address must accept a connection within `CONNECT_SECONDS`
    (`_check_reachable`): Ray itself keeps retrying a dead one.

    >>> check_ray_address("") if not os.environ.get("RAY_ADDRESS") else "local"
    'local'
    >>> check_ray_address("127.0.0.1")
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: --ray 127.0.0.1 is not a Ray address; give host:port \
(e.g. 127.0.0.1:6379), ray://host:10001, or drop the address for a local Ray
    """
    target = (address or os.environ.get("RAY_ADDRESS", "")).strip() or "local"
    if target != "local":
        _check_reachable(target, *_named(address))
    return target


def _named(address: str | None) -> tuple[str, str]:
    """How messages name the Ray asked for, and how to ask for a local one instead."""
    if not address and os.environ.get("RAY_ADDRESS", "").strip():
        return f"RAY_ADDRESS={os.environ['RAY_ADDRESS'].strip()}", "unset RAY_ADDRESS"
    return f"--ray {address}", "drop the address"


def _check_reachable(address: str, named: str, unset: str) -> None:
    """Refuse a Ray address that does not take a TCP connection within `CONNECT_SECONDS`.

    `address` is "host:port" (a head's GCS), "ray://host:port" (Ray Client) or "auto" (the
    running cluster Ray finds, refused when it finds none). A head that died leaves its
    port closed: refused at once, instead of Ray's endless retries.
    """
    fix = f"start it (ray start --head) or {unset} for a local Ray"
    if address == "auto":
        try:
            from ray._private.services import get_ray_address_from_environment

            address = get_ray_address_from_environment("auto", None)
        except ImportError:
            raise DipstopError(
                "Ray is not installed; pip install 'dipstop[ray]' or drop --ray"
            ) from None
        except ConnectionError:
            raise DipstopError(f"no running Ray found for {named}; {fix}") from None
        named += f" (found {address})"
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DipstopError(
            f"{named} is not a Ray address; give host:port (e.g. 127.0.0.1:6379), "
            f"ray://host:10001, or {unset} for a local Ray"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_SECONDS).close()
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise DipstopError(f"cannot reach the Ray at {named} ({why}); {fix}") from None
