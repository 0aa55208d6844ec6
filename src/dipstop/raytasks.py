"""Running independent calls as Ray tasks: the one place dipstop talks to Ray.

`dipstop denoise --ray` (one task per file, or per tile of a tiled photo) and the lab's
grids (`dipstop bench --ray`, one task per run) all go through `ray_map`. On a local Ray
each task takes one CPU, so a machine runs one task per core; on a cluster with GPUs each
task takes one GPU.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from dipstop.errors import DipstopError


def ray_map(
    fn: Callable[..., Any], calls: Iterable[tuple], address: str | None = None
) -> Iterator[Any]:
    """Run `fn(*args)` for every `args` in `calls` as Ray tasks; yield results as they finish.

    Joins the Ray at `address` (a local Ray when empty or None) unless Ray is already
    initialised in this process. Tasks take one GPU each when the cluster has GPUs, else one
    CPU. `calls` is read lazily and at most two tasks per slot (CPU or GPU) are in flight, so
    the arguments held at once are bounded by the cluster, not by the number of calls (the
    1302 tiles of a 12 MP photo). Results come in the order the tasks finish, not the order
    of `calls`; a task that raises re-raises here (as Ray's wrapper of the exception).
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
        When Ray is not installed (on the first `next`).
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
            yield ray.get(ready[0])
    finally:  # abandoned (Ctrl-C, an error): the tasks not finished are cancelled
        for future in futures:
            with contextlib.suppress(Exception):
                ray.cancel(future)


def ray_slots(address: str | None = None) -> int:
    """How many tasks `ray_map` runs at once on the Ray at `address`: its GPUs, else its CPUs.

    Joins (or starts) the Ray as `ray_map` does; raises DipstopError when Ray is missing.
    """
    resources = _connect(address).cluster_resources()
    return max(1, int(resources.get("GPU", 0) or resources.get("CPU", 1)))


def _connect(address: str | None) -> Any:
    """The `ray` module, joined to the Ray at `address` (a local one when empty or None)."""
    try:
        import ray
    except ImportError:
        raise DipstopError(
            "Ray is not installed; pip install 'dipstop[ray]' or drop --ray"
        ) from None
    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
    return ray
