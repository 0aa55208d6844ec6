"""How long a fit will take and how much memory it needs, told once its first steps are timed.

`denoise` times iterations 2-5 (the first is a warm-up: allocations, cuDNN's search, graph
capture), then reports a `RunEstimate`: seconds per iteration, the iterations to expect (the
lam table's mean Eq. 4 stop when it records one, else the budget T), the resulting time
range and the memory the fit needs (`dipstop.memory`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

WARMUP = 1  # iterations left out of the timing
TIMED = 4  # iterations timed after the warm-up


@dataclass(frozen=True)
class RunEstimate:
    """A fit's expected length and memory, from its first iterations' timing.

    Attributes
    ----------
    seconds_per_iteration : float
        Measured on iterations `timed[0]` to `timed[1]`.
    timed : tuple of int
        The first and last iteration timed (1-based).
    max_iterations : int
        The budget T: the run ends by then.
    expected_iterations : int
        Where the run is expected to stop, in [1, T]: the lam table's mean Eq. 4 stop
        (shifted by the difference in S) when lam came from a table that records one, else
        T.
    expected_from : str
        "lam table" ("lam table, calibrated at another image size" when the image is more
        than 1.5x away from the table's sizes: its stop is carried over, not measured) or
        "T".
    seconds_low, seconds_high : float
        The whole run's expected wall time, stopping at `expected_iterations` / at T, as if
        there were no time budget (a budget ends the run earlier: `budget_seconds`).
    memory_bytes : int
        Peak memory the fit needs (`dipstop.memory.estimate_bytes`).
    budget_seconds : float or None
        The wall-clock budget (`max_minutes`), if any.
    tiles : int
        How many tiles the run fits (`dipstop.tiling`); the iterations, rate and memory are
        one tile's, the seconds all tiles'.
    parallel : int
        How many tiles are fitted at once (threads of this process on a CPU, or Ray tasks):
        the seconds are wall time, the memory is per fit.
    of : str
        What the estimate is of (a file's name when several run at once), or "".
    """

    seconds_per_iteration: float
    timed: tuple[int, int]
    max_iterations: int
    expected_iterations: int
    expected_from: str
    seconds_low: float
    seconds_high: float
    memory_bytes: int
    budget_seconds: float | None = None
    tiles: int = 1
    parallel: int = 1
    of: str = ""

    def for_tiles(
        self, tiles: int, max_minutes: float | None = None, parallel: int = 1
    ) -> RunEstimate:
        """This estimate of one tile's fit, for a run of `tiles` such fits, `parallel` at a
        time, and its budget.

        >>> one = RunEstimate(0.05, (2, 5), 3000, 1800, "lam table", 90.0, 150.0, 2**30)
        >>> run = one.for_tiles(10, max_minutes=20)
        >>> run.seconds_low, run.seconds_high, run.budget_seconds, run.tiles
        (900.0, 1500.0, 1200.0, 10)
        >>> one.for_tiles(10, parallel=4).seconds_low  # 3 rounds of 4 tasks
        270.0
        """
        budget = None if max_minutes is None else float(max_minutes) * 60.0
        rounds = -(-tiles // max(1, parallel))
        low, high = self.seconds_low * rounds, self.seconds_high * rounds
        return replace(
            self, seconds_low=low, seconds_high=high, budget_seconds=budget, tiles=tiles,
            parallel=max(1, parallel),
        )  # fmt: skip

    def line(self) -> str:
        """The estimate in one line, as `dipstop denoise` prints it.

        >>> RunEstimate(0.05, (2, 5), 3000, 1800, "lam table", 90.0, 150.0, 2**30).line()
        'estimate: 0.05 s/iteration (timed on iterations 2-5); 1800 iterations expected \
(lam table), at most T=3000: 1.5 to 2.5 min in all; needs about 1.0 GiB'
        >>> RunEstimate(0.05, (2, 5), 3000, 3000, "T", 150.0, 150.0, 2**30, of="a.png").line()
        'estimate for a.png: 0.05 s/iteration (timed on iterations 2-5); up to T=3000 \
iterations: about 2.5 min in all; needs about 1.0 GiB'
        """
        first, last = self.timed
        timed = f"iteration {first}" if first == last else f"iterations {first}-{last}"
        if first == 1:  # the run ended within the warm-up: its cost is in the rate
            timed += ", warm-up included: high"
        if self.expected_from == "T":
            iters = f"up to T={self.max_iterations} iterations"
        else:
            iters = (
                f"{self.expected_iterations} iterations expected ({self.expected_from}), "
                f"at most T={self.max_iterations}"
            )
        if self.tiles > 1:
            iters += f" per tile, {self.tiles} tiles"
            if self.parallel > 1:
                iters += f", {self.parallel} at a time"
        per = " (one tile at a time)" if self.parallel == 1 else " per fit"
        text = (
            f"estimate{f' for {self.of}' if self.of else ''}: "
            f"{self.seconds_per_iteration:.3g} s/iteration (timed on {timed}); "
            f"{iters}: {span(self.seconds_low, self.seconds_high)} in all; needs about "
            f"{size(self.memory_bytes)}" + (per if self.tiles > 1 else "")
        )
        if self.budget_seconds is not None:
            budget = duration(self.budget_seconds)
            if self.budget_seconds < self.seconds_low:
                text += f"; the time budget of {budget} ends it first"
            elif self.budget_seconds < self.seconds_high:
                text += f"; the time budget of {budget} may end it first"
            else:
                text += f"; within the time budget of {budget}"
        return text


def expected_iterations(
    max_iters: int,
    patience: int,
    table_mean: float | None = None,
    table_patience: int | None = None,
    burn_in: int = 0,
) -> int:
    """The iterations a run is expected to take: the table's mean stop, or T.

    The table's mean was recorded under its own S; a run with another S stops later or
    earlier by the difference (t* itself barely depends on S). A run stops S after its t*,
    which comes at its burn-in B or later, so it runs at least B + S. Always in [1, T].

    >>> expected_iterations(3000, 500), expected_iterations(3000, 500, 1840.4, 500)
    (3000, 1840)
    >>> expected_iterations(3000, 100, 1840.0, 500), expected_iterations(1000, 500, 1840.0, 500)
    (1440, 1000)
    >>> expected_iterations(3000, 200, 400.0, 700), expected_iterations(3000, 200, 400.0, 700, 100)
    (200, 300)
    """
    if table_mean is None:
        return max_iters
    shift = patience - table_patience if table_patience else 0
    return int(min(max(round(table_mean + shift), burn_in + patience, 1), max_iters))


def estimate_run(
    seconds: Sequence[float],
    max_iters: int,
    expected: int,
    expected_from: str,
    memory_bytes: int,
    budget_seconds: float | None = None,
    start: int = 0,
) -> RunEstimate:
    """The estimate once `seconds` (the run's clock at rows 1..k) are known.

    Seconds per iteration are measured after the warm-up row (on row 1 alone when k = 1);
    the run's time is what it took so far plus that rate for the rest. `start`: the
    iterations a resumed run had done before these rows (its clock counts their time).

    >>> est = estimate_run([2.0, 2.5, 3.0, 3.5, 4.0], 100, 50, "lam table", 2**29)
    >>> est.seconds_per_iteration, est.timed, est.seconds_low, est.seconds_high
    (0.5, (2, 5), 26.5, 51.5)
    >>> estimate_run([2.0, 2.5, 3.0, 3.5, 4.0], 100, 50, "lam table", 2**29, start=20).seconds_low
    16.5
    """
    k = len(seconds)
    if k > WARMUP:
        rate = (seconds[-1] - seconds[WARMUP - 1]) / (k - WARMUP)
        timed = (WARMUP + 1, k)
    else:
        rate, timed = seconds[-1] / k, (1, k)
    rate = max(rate, 1e-9)
    elapsed = seconds[-1]
    low = elapsed + rate * max(expected - start - k, 0)
    high = elapsed + rate * max(max_iters - start - k, 0)
    return RunEstimate(
        seconds_per_iteration=rate,
        timed=timed,
        max_iterations=max_iters,
        expected_iterations=expected,
        expected_from=expected_from,
        seconds_low=low,
        seconds_high=high,
        memory_bytes=memory_bytes,
        budget_seconds=budget_seconds,
    )


def duration(seconds: float, like: float | None = None) -> str:
    """Seconds for people: '8.5 s', '42 s', '3.2 min', '2.5 h' (in the unit `like` takes).

    >>> duration(8.54), duration(42.2), duration(190), duration(9000), duration(90, like=150)
    ('8.5 s', '42 s', '3.2 min', '2.5 h', '1.5 min')
    """
    scale = seconds if like is None else like
    if scale < 10:
        return f"{seconds:.1f} s"
    if scale < 100:
        return f"{seconds:.0f} s"
    if scale < 100 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def span(low: float, high: float) -> str:
    """A range of seconds in one unit: '1.5 to 2.5 min', or 'about 2.5 min'.

    >>> span(90, 150), span(149, 150)
    ('1.5 to 2.5 min', 'about 2.5 min')
    """
    a, b = duration(low, like=high), duration(high)
    return f"about {b}" if a == b else f"{a.rsplit(' ', 1)[0]} to {b}"


def size(n_bytes: int) -> str:
    """Bytes for people: '640 MiB', '1.2 GiB'.

    >>> size(640 * 2**20), size(int(1.2 * 2**30))
    ('640 MiB', '1.2 GiB')
    """
    if n_bytes < 2**30:
        return f"{n_bytes / 2**20:.0f} MiB"
    return f"{n_bytes / 2**30:.1f} GiB"
