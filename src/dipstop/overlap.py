"""Host-side criteria off the critical path: score iteration t while iteration t+1 is fitted.

No Adam step depends on a criterion's value, so the host work of an iteration (the JPEG
encode of CIFS, BRISQUE, NIQE: OpenCV and NumPy, which release the GIL) runs on one worker
thread while the main thread computes the next step. Device work (quantising the output and
copying it to the host) stays on the main thread: scoring functions get the 8-bit host copy
and are meant not to touch the iteration's device tensor. Results come back in order,
`depth` items late, so a consumer that stops early has had up to `depth` more iterations
computed than it used (their time and any divergence-guard restores count in the fitter's
totals). An error while computing a look-ahead iteration is raised only after the
iterations before it have been handed out, as it would have been without the overlap.

`DIPSTOP_OVERLAP=N` sets the depth (0: every caller synchronous, the benchmark's baseline).
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from dipstop.criteria.cifs import output_to_uint8
from dipstop.errors import DipstopError
from dipstop.fitting import Iteration

T = TypeVar("T")
R = TypeVar("R")


DEFAULT_DEPTH = 2  # lets a BRISQUE/NIQE call outlast a step (benchmarks/overlap.py)


def default_depth() -> int:
    """DIPSTOP_OVERLAP as a depth (0 or less: synchronous), else DEFAULT_DEPTH."""
    value = os.environ.get("DIPSTOP_OVERLAP", "").strip()
    if not value:
        return DEFAULT_DEPTH
    try:
        return max(int(value), 0)
    except ValueError:
        raise DipstopError(
            f"DIPSTOP_OVERLAP must be a whole number (0 turns the overlap off), got {value!r}"
        ) from None


def overlapped(
    items: Iterable[T], work: Callable[[T], R], depth: int | None = None
) -> Iterator[tuple[T, R]]:
    """Yield `(item, work(item))` in order, running `work` on a worker thread meanwhile.

    While `work(item_t)` runs, the main thread produces the next items (up to `depth` ahead).
    `depth=0` runs `work` inline: the same pairs, in the same order, nothing concurrent.
    An exception in `work` is raised here, at its item's turn.

    >>> list(overlapped(iter([1, 2, 3]), lambda x: x * x))
    [(1, 1), (2, 4), (3, 9)]
    """
    depth = default_depth() if depth is None else depth
    if depth < 1:
        for item in items:
            yield item, work(item)
        return
    pending: deque[tuple[T, Future[R]]] = deque()
    source = iter(items)
    error: Exception | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dipstop-host") as pool:
        try:
            while True:
                try:
                    item = next(source)
                except StopIteration:
                    break
                except Exception as exc:  # a look-ahead item failed: hand out the earlier first
                    error = exc
                    break
                pending.append((item, pool.submit(work, item)))
                if len(pending) > depth:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
            if error is not None:
                raise error
        finally:  # the consumer stopped early: drop the work nobody will read
            for _, future in pending:
                future.cancel()


def score_outputs(
    iterations: Iterable[Iteration],
    score: Callable[[Iteration, np.ndarray], R],
    depth: int | None = None,
) -> Iterator[tuple[Iteration, R]]:
    """Each iteration with `score(it, output as 8-bit H x W x C)`, scored on the worker thread.

    The fitting loop's consumers use this for their host-side criteria; the output is
    quantised and copied to the host on the calling thread first.
    """
    stream = ((it, output_to_uint8(it.output)) for it in iterations)
    with contextlib.closing(overlapped(stream, lambda pair: score(*pair), depth)) as pairs:
        for (it, _), result in pairs:
            yield it, result
