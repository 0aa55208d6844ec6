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

The depth is an engine switch (`dipstop.runtime.Switches.overlap`; 0: synchronous).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


DEFAULT_DEPTH = 2  # lets a BRISQUE/NIQE call outlast a step (benchmarks/overlap.py)


def overlapped(
    items: Iterable[T], work: Callable[[T], R], depth: int = DEFAULT_DEPTH
) -> Iterator[tuple[T, R]]:
    """Yield `(item, work(item))` in order, running `work` on a worker thread meanwhile.

    While `work(item_t)` runs, the main thread produces the next items (up to `depth` ahead).
    `depth=0` runs `work` inline: the same pairs, in the same order, nothing concurrent.
    An exception in `work` is raised here, at its item's turn.

    >>> list(overlapped(iter([1, 2, 3]), lambda x: x * x))
    [(1, 1), (2, 4), (3, 9)]
    """
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
