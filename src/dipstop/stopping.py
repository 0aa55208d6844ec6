"""The paper's Eq. 4 stopping rule, offline on a recorded series and online on a stream.

t* is the smallest t whose value is the minimum of M over [t, t + S] (ties keep the earlier
t). Online this is "the running minimum has not strictly improved for S iterations": a run
may stop at t* + S. When no t qualifies (the budget T ran out first), t* is the minimum of the
whole series, the running minimum an online run holds at T: one semantics, online and
offline (the paper leaves this case open; its code returns the last iteration).
NaN means "no value" (ES-WMV before its window fills, a NR-IQA score not computed at this
iteration): it is never selected and counts as +inf in a window. A burn-in B (dipstop's,
not the paper's; 0 by default) reads the first B values as NaN: t* is at least B + 1. Both
forms agree exactly (tests/test_stopping.py checks it on random series).

References
----------
Takagi, Ishizaki, Maeda, "JPEG information regularized deep image prior for denoising"
(the paper dipstop reproduces; ../shared/seed/000_a6d9ecbf0bb99931.txt). Eq. 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def detect_offline(values: np.ndarray | list[float], patience: int, burn_in: int = 0) -> int:
    """Eq. 4 on a recorded series: the first index that is the minimum of its next S values.

    t* is the smallest t with M_t <= min(M_{t+1}, ..., M_{t+S}) (ties keep the earlier t).
    NaN is never selected and counts as +inf in a window. When no index qualifies, the index
    of the series' minimum (the first, on ties), as the online rule holds it at the end; the
    last index when every value is NaN. Gives the same t* as `OnlineStopper` on the stream.

    Parameters
    ----------
    values : array_like
        Non-empty 1-D series of criterion values (lower is better), one per iteration.
    patience : int
        S, at least 1: how many following values must not be lower.
    burn_in : int
        B: the first B values count as NaN (never t*), unless no value follows them (a
        series that ends within its burn-in): then t* is their minimum, as the online rule
        holds it at the end.

    Returns
    -------
    int
        The 0-based index of t*.

    Raises
    ------
    ValueError
        If `values` is not a non-empty 1-D series or `patience` is below 1.

    Examples
    --------
    >>> detect_offline([5, 3, 4, 4, 6, 2], patience=2)
    1
    >>> detect_offline([5, 4, 3, 2, 1], patience=2)
    4
    >>> detect_offline([5, 1, 3, 2, 2], patience=4)  # never fires: the minimum so far
    1
    >>> detect_offline([5, 1, 3, 2, 2], patience=2, burn_in=2)  # t* no earlier than B + 1
    3
    """
    m = np.array(values, dtype=np.float64)
    if m.ndim != 1 or m.size == 0:
        raise ValueError("detect_offline needs a non-empty 1-D series")
    if patience < 1:
        raise ValueError("patience must be at least 1")
    if burn_in > 0 and np.isnan(m[burn_in:]).all():  # ended within the burn-in: never fired
        return int(np.nanargmin(m)) if (~np.isnan(m)).any() else m.size - 1
    m[: max(0, burn_in)] = np.nan
    finite = ~np.isnan(m)
    m = np.where(finite, m, np.inf)
    n = m.size
    fallback = int(np.argmin(m)) if finite.any() else n - 1
    if n <= patience:
        return fallback
    # min over the S values after each t: a sliding-window minimum via a strided view
    windows = np.lib.stride_tricks.sliding_window_view(m[1:], patience)  # rows t=0..n-S-1
    following_min = windows.min(axis=1)
    qualifies = (m[: n - patience] <= following_min) & finite[: n - patience]
    hits = np.flatnonzero(qualifies)
    return int(hits[0]) if hits.size else fallback


def detect_every(values: np.ndarray | list[float], every: int, patience: int) -> int:
    """Eq. 4 on a series scored every k iterations (NaN between): the rule runs on the
    scored values (at 0-based indices k-1, 2k-1, ...) with patience S // k; returns the
    detected index in the full series.

    >>> detect_every([np.nan, 5, np.nan, 3, np.nan, 4, np.nan, 6], every=2, patience=4)
    3
    """
    m = np.asarray(values, dtype=np.float64)
    sampled = m[every - 1 :: every]
    if sampled.size == 0:
        return len(m) - 1
    return int(detect_offline(sampled, max(1, patience // every)) * every + every - 1)


@dataclass
class OnlineStopper:
    """Eq. 4 on a stream: feed values in order; `done` turns true at t* + S.

    The running minimum has not strictly improved for S values: the fit can stop there and
    return the output it kept at t*. NaN values are never the minimum, nor are the first
    `burn_in` values once a later one has come: until then the minimum among them is held
    (`improved` says so as usual), so a stream that ends within its burn-in (an interrupted
    run, T <= B) still has a t*.

    Parameters
    ----------
    patience : int
        S, at least 1.
    burn_in : int
        B, at least 0: t* is at least B + 1 once the stream has more than B values, and
        the rule fires no sooner than after B + S + 1 values.

    Attributes
    ----------
    best_value, best_index : float, int
        The running minimum and its 0-based index (t* once `done`; -1 before any value).
    count : int
        How many values were taken.
    improved : bool
        Whether the last value became the new running minimum, so the caller knows to keep
        that output.

    Examples
    --------
    >>> s = OnlineStopper(patience=2)
    >>> [s.update(v) for v in [5, 3, 4, 4]]
    [False, False, False, True]
    >>> s.best_index, s.best_value
    (1, 3.0)

    Online and offline agree:

    >>> series = [9, 7, 8, 6, 6, 7, 8, 5]
    >>> s = OnlineStopper(patience=3)
    >>> fired = next(i for i, v in enumerate(series) if s.update(v))
    >>> fired, s.best_index, detect_offline(series, patience=3)
    (6, 3, 3)
    """

    patience: int
    burn_in: int = 0
    best_value: float = math.inf
    best_index: int = -1
    count: int = 0
    improved: bool = False

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError("patience must be at least 1")
        if self.burn_in < 0:
            raise ValueError("burn_in must be at least 0")

    def update(self, value: float) -> bool:
        """Take the next value; return True when the rule has fired (t* is then fixed).

        Once fired, later values are ignored.

        Parameters
        ----------
        value : float
            The criterion's value at the next iteration; NaN for none.

        Returns
        -------
        bool
            `done`.

        Examples
        --------
        >>> s = OnlineStopper(patience=1)
        >>> s.update(float("nan")), s.update(2.0), s.improved, s.update(3.0), s.update(1.0)
        (False, False, True, True, True)
        >>> s.best_index
        1
        """
        if self.done:
            return True
        index = self.count
        self.count += 1
        v = float(value)
        # past the burn-in, the first value replaces the minimum held from within it
        held_over = index >= self.burn_in > self.best_index
        self.improved = not math.isnan(v) and (v < self.best_value or held_over)
        if self.improved:
            self.best_value, self.best_index = v, index
        return self.done

    @property
    def done(self) -> bool:
        """Whether S values have followed the running minimum without beating it.

        Examples
        --------
        >>> s = OnlineStopper(patience=2)
        >>> _ = [s.update(v) for v in (1, 2)]
        >>> s.done, s.update(3), s.done
        (False, True, True)
        """
        return self.best_index >= self.burn_in and self.count - 1 - self.best_index >= self.patience
