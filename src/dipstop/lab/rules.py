"""Stopping rules evaluated offline: which image a rule would return from a recorded run.

A rule is a criterion scored on a stream of outputs (CIFS on the raw outputs, CIFS on a
running average, ES-WMV on the raw outputs), stopped by Eq. 4 with patience S, and an output
policy (`dipstop.policies`) that says which image the run returns. Every run records the
series each rule needs (`dipstop.lab.runs`), so rules, lams and policies are compared on
stored runs without refitting: this is how the shipped rule is chosen on the calibration
images, and validated on others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dipstop.criteria import REGISTRY, Context
from dipstop.policies import OutputPolicy, make_policy
from dipstop.stopping import OnlineStopper, detect_every


@dataclass(frozen=True)
class Rule:
    """Criterion `criterion` on the policy's stream, Eq. 4 with `patience`, then `policy`.

    >>> Rule("cifs", "ema@stop", 500).label
    'cifs -> ema@stop'
    """

    criterion: str
    policy: str
    patience: int
    every: int = 1  # the criterion was scored every k iterations (patience S / k on those)

    @property
    def label(self) -> str:
        return f"{self.criterion} -> {self.policy}"


@dataclass(frozen=True)
class Outcome:
    """What a rule does on one run: t* and the end of the run (1-based), and the PSNR of the
    image it returns (None when the run did not record what the policy needs)."""

    t_star: int
    t_end: int
    fired: bool
    psnr: float | None


def stream_series(series: Mapping[str, np.ndarray], stream: str) -> Mapping[str, np.ndarray]:
    """The series of one stream under their plain names ("mse_ema" as "mse" for "ema")."""
    if not stream:
        return series
    suffix = "_" + stream
    return {k[: -len(suffix)]: v for k, v in series.items() if k.endswith(suffix)}


def rule_values(
    rule: Rule, policy: OutputPolicy, series: Mapping[str, np.ndarray], pixels: int, lam
) -> np.ndarray:
    """The rule's criterion on the policy's stream, one value per recorded iteration."""
    values = REGISTRY[rule.criterion].values(
        stream_series(series, policy.stream), Context(pixels, lam)
    )
    return np.asarray(values, dtype=float)


class Replay:
    """The image a rule's policy returns, rebuilt from a refit's outputs in iteration order:
    the stored run's criterion values say when the policy's minimum improved, the policy
    does the rest, exactly as online (`dipstop.lab.paper_report.figure4` shows it).

    >>> t = np.arange(1.0, 41.0)
    >>> s = {"mse": 1 / t, "jpeg_bytes": t, "psnr": 30 - abs(t - 10)}
    >>> replay = Replay(Rule("cifs", "since-best", 5), s, pixels=100, lam=0.2)
    >>> for step in range(1, replay.outcome.t_end + 1):
    ...     replay.feed(torch.tensor(float(step)))
    >>> replay.outcome.t_star, replay.outcome.t_end, float(replay.result())  # mean of 10..15
    (10, 15, 12.5)
    """

    def __init__(
        self, rule: Rule, series: Mapping[str, np.ndarray], pixels: int, lam: float | None
    ) -> None:
        self.outcome = evaluate(rule, series, pixels, lam)
        self.policy = make_policy(rule.policy)
        self.policy.begin(len(series["mse"]), rule.patience)
        self._values = rule_values(rule, self.policy, series, pixels, lam)
        self._stopper = OnlineStopper(rule.patience)
        self._averages = self.policy.averages()
        self._t = 0

    def feed(self, output: torch.Tensor) -> None:
        """The next iteration's output (ignored after the run's end, t_end)."""
        if self._t >= self.outcome.t_end:
            return
        current = {name: avg.update(output) for name, avg in self._averages.items()}
        self._stopper.update(float(self._values[self._t]))
        self.policy.keep(self.policy.view(output, current), self._stopper.improved)
        self._t += 1

    def result(self) -> torch.Tensor | None:
        """The policy's image once t_end outputs were fed."""
        return self.policy.result()


def evaluate(
    rule: Rule, series: Mapping[str, np.ndarray], pixels: int, lam: float | None = None
) -> Outcome:
    """Where `rule` stops a recorded run and what its image scores.

    >>> t = np.arange(1.0, 41.0)
    >>> s = {"mse": 1 / t, "jpeg_bytes": t, "psnr": 30 - abs(t - 10)}
    >>> o = evaluate(Rule("cifs", "raw", 5), s, pixels=100, lam=0.2)
    >>> o.t_star, o.t_end, o.fired, o.psnr  # E = 0.2 / t + (t / 100)^2 is least at t = 10
    (10, 15, True, 30.0)
    """
    policy = make_policy(rule.policy)
    policy.begin(len(series["mse"]), rule.patience)
    values = rule_values(rule, policy, series, pixels, lam)
    n = values.size
    index = detect_every(values, rule.every, rule.patience)
    fired = index <= n - 1 - rule.patience  # else the budget ran out first (see stopping)
    t_star = index + 1
    t_end = t_star + rule.patience if fired else n
    return Outcome(t_star, t_end, fired, policy.recorded_psnr(series, t_star, t_end))


def search_lam(
    rule: Rule,
    runs: Sequence[tuple[Mapping[str, np.ndarray], int]],
    lams: np.ndarray,
    smooth: float = 1.0,
) -> tuple[float, np.ndarray]:
    """The lam maximising the mean PSNR of `rule`'s image over (series, pixels) runs, and the
    mean-PSNR curve over `lams` (NaN where a run lacks the policy's series). Among equally
    good lams, the smallest: it stops soonest, and where no lam in the range stops the runs
    (sigma 5, T = 3000) it is the plateau's one meaningful point, the lower edge, which keeps
    the log-lam interpolation to the next sigma from inheriting an arbitrary huge lam.

    `smooth` > 1 maximises instead the curve's mean over [lam / smooth, lam * smooth]: the
    lam best on average when the right one is off by up to that factor (another image, an
    estimated sigma), which keeps away from a cliff where a slightly larger lam never stops.

    >>> t = np.arange(1.0, 41.0)
    >>> s = {"mse": 1 / t, "jpeg_bytes": t, "psnr": 30 - abs(t - 10)}
    >>> lam, curve = search_lam(Rule("cifs", "raw", 5), [(s, 100)], np.array([0.1, 0.2, 0.4]))
    >>> lam, curve.tolist()  # E = lam / t + (t / 100)^2 is least at t = (5000 lam)^(1/3)
    (0.2, [28.0, 30.0, 27.0])
    >>> search_lam(Rule("cifs", "raw", 5), [(s, 100)], np.array([0.1, 0.2, 0.4]), smooth=2)[0]
    0.1
    """
    curve = np.array(
        [
            np.mean([_psnr(evaluate(rule, s, pixels, float(lam))) for s, pixels in runs])
            for lam in lams
        ]
    )
    return best_lam(curve, lams, smooth, ties="smallest"), curve


def best_lam(
    curve: np.ndarray, lams: np.ndarray, smooth: float = 1.0, ties: str = "smallest"
) -> float:
    """The lam of the best mean PSNR on `curve` (one value per lam; NaN counts as worst): the
    one choice of lam behind every search (`search_lam`, `calibration.search_lambda`).

    `smooth` > 1 scores each lam by the curve's mean over [lam / smooth, lam * smooth].
    Among equally good lams, `ties` picks the "smallest" (it stops soonest; the averaged
    outputs' search) or the "middle" of the widest run of best lams in log lam (least
    sensitive to a slightly wrong sigma; the paper's raw output, whose curve has plateaus).

    >>> lams = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    >>> curve = np.array([1.0, 3.0, 3.0, 3.0, np.nan])
    >>> best_lam(curve, lams), best_lam(curve, lams, ties="middle")
    (2.0, 4.0)
    """
    scored = curve
    if smooth > 1:
        near = np.abs(np.log(lams)[:, None] - np.log(lams)[None, :]) <= np.log(smooth) + 1e-12
        scored = np.array([np.mean(curve[row]) for row in near])
    finite = np.where(np.isfinite(scored), scored, -np.inf)
    best = np.flatnonzero(finite >= finite.max() - 1e-9)
    if ties == "smallest":
        return float(lams[best[0]])
    runs = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)
    widest = max(runs, key=len)
    return float(lams[widest[len(widest) // 2]])


def _psnr(outcome: Outcome) -> float:
    return np.nan if outcome.psnr is None else outcome.psnr
