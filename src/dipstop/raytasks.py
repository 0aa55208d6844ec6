"""Running independent calls as Ray tasks: the one place dipstop talks to Ray.

`dipstop denoise --ray` (one task per file) and the lab's grids (`dipstop bench --ray`, one
task per run) both go through `ray_map`. On a local Ray each task takes one CPU, so a
machine runs one task per core; on a cluster with GPUs each task takes one GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from dipstop.errors import DipstopError


def ray_map(
    fn: Callable[..., Any], calls: Iterable[tuple], address: str | None = None
) -> Iterator[Any]:
    """Run `fn(*args)` for every `args` in `calls` as Ray tasks; yield results as they finish.

    Joins the Ray at `address` (a local Ray when empty or None) unless Ray is already
    initialised in this process. Tasks take one GPU each when the cluster has GPUs, else one
    CPU. Results come in the order the tasks finish, not the order of `calls`; a task that
    raises re-raises here (as Ray's wrapper of the exception). Closing the generator early
    (Ctrl-C, an error) cancels the tasks not finished yet.

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
    try:
        import ray
    except ImportError:
        raise DipstopError(
            "Ray is not installed; pip install 'dipstop[ray]' or drop --ray"
        ) from None
    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    task = ray.remote(num_gpus=1 if gpus else 0)(fn)
    futures = [task.remote(*args) for args in calls]
    try:
        while futures:
            ready, futures = ray.wait(futures, num_returns=1)
            yield ray.get(ready[0])
    finally:  # abandoned (Ctrl-C, an error): the tasks not finished are cancelled
        for future in futures:
            with contextlib.suppress(Exception):
                ray.cancel(future)
