"""Running many fits: one single-thread fit per core in this process, or as Ray tasks.

Two 1-thread fits of a 128 x 128 tile get more done than one 2-thread fit
(docs/benchmarks.md), so a CPU runs the tiles of a photo one per thread of torch's pool
(`WorkerThreads`, `tile_workers` of them), and a cluster one per core (`fit_remotely`, through
`dipstop.raytasks.ray_map`, the one place that talks to Ray). Both take the fit as a
function (`FitFn`, e.g. `dipstop.single.fit_one`), so they know nothing of the API above.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch

from dipstop.memory import available_bytes
from dipstop.options import DenoiseOptions
from dipstop.raytasks import ray_map
from dipstop.results import DenoiseResult
from dipstop.runtime import set_threads

__all__ = ["BudgetShares", "Call", "FitFn", "WorkerThreads", "fit_remotely", "tile_workers"]

C = TypeVar("C")  # a call
R = TypeVar("R")  # its result

# a fit of one image: (pixels H x W x C float, clean or None, options) -> (output, result)
FitFn = Callable[[np.ndarray, "np.ndarray | None", DenoiseOptions],
                 tuple[np.ndarray, DenoiseResult]]  # fmt: skip
# one call of a fit: (index, pixels, clean pixels or None, the call's options)
Call = tuple[int, np.ndarray, "np.ndarray | None", DenoiseOptions]


def tile_workers(tiles: int, need: int) -> int:
    """How many tiles a CPU fits at once in this process: one per thread of torch's pool
    (the cores, or `--threads`), at most the tiles, and at most what memory holds at `need`
    bytes a fit.

    >>> tile_workers(1, 10**6)
    1
    """
    have = available_bytes(torch.device("cpu"))
    held = tiles if have is None else have // max(need, 1)
    return max(1, min(torch.get_num_threads(), tiles, held))


class WorkerThreads(Generic[C, R]):
    """`run(call, share, stop)` for each call, on `workers` threads of this process; the
    results queued as they finish (`get`). Tiles and files both run on it.

    With more than one worker torch's pool is set to one thread while they run (two
    1-thread fits get more done than one 2-thread fit), restored by `close`. `shares`, if
    given, is asked for each call's share of a time budget (minutes) from the rounds of
    calls left, None when the budget is spent (no more calls are then claimed); without it
    every share is None. The threads are called `name`-0, `name`-1, ... `stop` is set by
    `close` or a failing call: `run` hands it to its fit (as `cancel`), which ends with its
    best so far; no more calls are claimed.
    """

    def __init__(
        self,
        calls: Iterable[C],
        workers: int,
        run: Callable[[C, float | None, threading.Event], R],
        shares: Callable[[int], float | None] | None = None,
        name: str = "dipstop-fit",
    ) -> None:
        calls = list(calls)
        self.calls, self.left, self.workers = iter(calls), len(calls), workers
        self.run, self.shares = run, shares
        self.stop, self.lock, self.queue = threading.Event(), threading.Lock(), queue.Queue()
        self.threads_before = torch.get_num_threads()
        if workers > 1:
            torch.set_num_threads(1)
        self.running = workers
        self.threads = [threading.Thread(target=self._work, daemon=True, name=f"{name}-{k}")
                        for k in range(workers)]  # fmt: skip
        for thread in self.threads:
            thread.start()

    def _claim(self) -> tuple[C, float | None] | None:
        """The next call and its budget share; None when there is nothing (left) to run."""
        with self.lock:
            call = None if self.stop.is_set() else next(self.calls, None)
            if call is None:
                return None
            rounds = math.ceil(self.left / self.workers)  # of the calls not claimed yet
            self.left -= 1
            if self.shares is None:
                return call, None
            share = self.shares(rounds)
            return None if share is None else (call, share)

    def _work(self) -> None:
        try:
            while (job := self._claim()) is not None:
                self.queue.put(self.run(*job, self.stop))
        except BaseException as exc:  # raised in the caller's thread by `get`
            self.stop.set()
            self.queue.put(exc)
        finally:
            self.queue.put(_DONE)

    def get(self, timeout: float) -> R | None:
        """A finished call's result, or None after `timeout` s without one."""
        try:
            item = self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _DONE:
            self.running -= 1
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """End the calls still running (best so far), wait for the threads, restore torch."""
        self.stop.set()
        for thread in self.threads:
            thread.join()
        torch.set_num_threads(self.threads_before)


@dataclass
class BudgetShares:
    """Each call's share of a time budget that ends at `deadline` (perf_counter seconds).

    A call may use what is left over the rounds of calls left (one that stops early leaves
    more to the others) while that share is at least half the first call's time (`head`:
    its result once done); below that, or for the first calls, a full fit (all that is
    left): shares would cut every fit to a few iterations. None once the budget is spent.
    """

    deadline: float
    head: Callable[[], DenoiseResult | None]

    def __call__(self, rounds: int) -> float | None:
        left = self.deadline - time.perf_counter()
        if left <= 0:
            return None
        share = left / rounds
        head = self.head()
        if head is None or share < head.seconds / 2:
            share = left  # the first calls, or shares too small: a full fit
        return share / 60.0


_DONE = object()  # a worker thread's last item


def fit_remotely(
    calls: Iterable[Call],
    fit: FitFn,
    *,
    ray: str,
    threads: int | None,
    max_minutes: float | None = None,
) -> Iterator[tuple[int, np.ndarray | None, DenoiseResult | None]]:
    """Run `fit` on images as Ray tasks (`dipstop.raytasks.ray_map`, on the Ray at `ray`);
    yield (index, output, result) as each finishes.

    Each call is (index, pixels, clean pixels or None, options), pixels as `fit` takes them
    (H x W x C float); the options go without progress, Ctrl-C handling, estimate callback
    or cancel event (they run elsewhere). `threads` sets each task's CPU threads (1 for
    tiles, one task per core). `max_minutes` becomes a deadline shared by all calls: a task
    started after it yields (index, None, None).
    """
    due = None if max_minutes is None else time.time() + float(max_minutes) * 60.0
    quiet = {"progress": False, "interruptible": False, "on_estimate": None, "cancel": None}
    tasks = ((i, px, cl, due, threads, o.replace(**quiet), fit) for i, px, cl, o in calls)
    return ray_map(_remote_fit, tasks, ray)


def _remote_fit(
    index: int,
    pixels: np.ndarray,
    clean: np.ndarray | None,
    due: float | None,
    threads: int | None,
    options: DenoiseOptions,
    fit: FitFn,
) -> tuple[int, np.ndarray | None, DenoiseResult | None]:
    """One call of `fit_remotely`, in a Ray worker: the fit, with what is left before `due`
    (epoch seconds) as its budget."""
    set_threads(threads)
    left = None if due is None else (due - time.time()) / 60.0
    if left is not None and left <= 0:
        return index, None, None
    out, result = fit(pixels, clean, options.replace(max_minutes=left))
    return index, out, result
