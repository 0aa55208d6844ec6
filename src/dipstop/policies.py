"""Output policies: which image a run returns, chosen by name in one place.

The recording loop asks the policy, as each iteration is produced, for the image that
iteration offers (`view`), and tells it, as each iteration's criterion value arrives, whether
that iteration became the stopping rule's new best (`keep`). `result()` is what the run
returns. Each policy also says where its image's PSNR sits in a recorded run's series
(`recorded_psnr`), so policies are compared offline on stored runs, with no refit.

- "raw": the paper's: the output y_{t*} at the criterion's minimum;
- "NAME@stop": the running average NAME of the outputs when the run ends (t* + S, or T);
- "NAME@best": the running average NAME at its own criterion minimum: the stopping criterion
  scores the average itself (CIFS on the averaged output), and the run returns it at t*;
- "since-best": the mean of the last S + 1 outputs when the run ends: y_{t*} .. y_{t*+S} when
  the rule fires (a sum restarted at each new minimum), y_{T-S} .. y_T when the budget T runs
  out first (a second sum started at T - S), so a recorded run tells it exactly.

NAME is one of `AVERAGES` (e.g. "ema", the original DIP's 0.99 EMA).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dipstop.averaging import RunningAverage, make_average
from dipstop.errors import DipstopError

# what `dipstop denoise` and `dipstop.denoise` return unless told otherwise: chosen on the
# calibration images (docs/calibration.md, "Output policy"); "raw" is the paper's rule
DEFAULT_OUTPUT = "since-best"

AVERAGES: dict[str, dict[str, Any]] = {
    "ema": {"kind": "ema", "weight": 0.99},
    "ema998": {"kind": "ema", "weight": 0.998},
    "box100": {"kind": "box", "window": 100},
}


class OutputPolicy:
    """Base class: picks the returned image from the stream of outputs and averages.

    `stream` is what the stopping criterion scores: "" the raw outputs, or an average's name.
    """

    name: str
    stream: str = ""
    _kept: torch.Tensor | None = None  # what `keep` kept, for the policies that keep one image

    def begin(self, max_iters: int, patience: int) -> None:
        """Told the run's budget T and the stop's patience S before the first iteration."""

    @property
    def average_name(self) -> str:
        """The running average whose recorded series ("psnr_NAME", ...) hold this policy's
        image over a run; "" for the raw outputs."""
        return ""

    def view(self, output: torch.Tensor, averages: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """What iteration t offers, taken when it is produced (averages then move on)."""
        raise NotImplementedError

    def keep(self, view: torch.Tensor, improved: bool) -> None:
        """Called in iteration order; `improved`: t is the rule's new running minimum."""
        raise NotImplementedError

    def result(self) -> torch.Tensor | None:
        """The image to return (None before any iteration was kept)."""
        raise NotImplementedError

    def averages(self) -> dict[str, RunningAverage]:
        """The running averages this policy needs the loop to keep."""
        return {}

    def state_dict(self) -> dict:
        """What `keep` has kept so far (tensors on the CPU), for a checkpoint; its running
        averages are the loop's to save."""
        return {"kept": _cpu(self._kept)}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        """Continue from `state_dict()`, tensors on `device`."""
        self._kept = _on(state["kept"], device)

    def recorded_psnr(
        self, series: Mapping[str, np.ndarray], t_star: int, t_end: int
    ) -> float | None:
        """PSNR of this policy's image in a recorded run stopped at t* (1-based), which ended
        at t_end; None when the series cannot tell."""
        raise NotImplementedError


class RawAtBest(OutputPolicy):
    """The paper's: the raw output y_{t*} at the stopping criterion's minimum.

    >>> p = RawAtBest()
    >>> for v, best in ((1.0, True), (2.0, False)):
    ...     p.keep(p.view(torch.tensor(v), {}), best)
    >>> float(p.result())
    1.0
    """

    name = "raw"

    def __init__(self) -> None:
        self._kept: torch.Tensor | None = None

    def view(self, output: torch.Tensor, averages: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return output  # a fresh tensor every step: no copy needed

    def keep(self, view: torch.Tensor, improved: bool) -> None:
        if improved:
            self._kept = view

    def result(self) -> torch.Tensor | None:
        return self._kept

    def recorded_psnr(self, series, t_star, t_end):
        return float(series["psnr"][t_star - 1])


class AverageAt(OutputPolicy):
    """A running average of the outputs, read at t* ("best") or when the run ends ("stop").

    >>> p = AverageAt("ema", "stop")
    >>> avg = p.averages()["ema"]
    >>> for v, best in ((0.0, True), (1.0, False)):
    ...     p.keep(p.view(torch.tensor(v), {"ema": avg.update(torch.tensor(v))}), best)
    >>> round(float(p.result()), 2)  # 0.99 * 0 + 0.01 * 1, read at the end
    0.01
    """

    def __init__(self, average: str, when: str) -> None:
        if average not in AVERAGES or when not in ("best", "stop"):
            raise DipstopError(f"unknown output policy {average}@{when}; see dipstop.policies")
        self.average, self.when = average, when
        self.name = f"{average}@{when}"
        self.stream = average if when == "best" else ""
        self._avg = make_average(AVERAGES[average])
        self._kept: torch.Tensor | None = None

    def averages(self) -> dict[str, RunningAverage]:
        return {self.average: self._avg}

    @property
    def average_name(self) -> str:
        return self.average

    def view(self, output: torch.Tensor, averages: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return averages[self.average].clone()  # the average moves on in place

    def keep(self, view: torch.Tensor, improved: bool) -> None:
        if improved or self.when == "stop":
            self._kept = view

    def result(self) -> torch.Tensor | None:
        return self._kept

    def recorded_psnr(self, series, t_star, t_end):
        values = series.get(f"psnr_{self.average}")
        if values is None:
            return None
        return float(values[(t_star if self.when == "best" else t_end) - 1])


class MeanSinceBest(OutputPolicy):
    """The mean of the last S + 1 outputs when the run ends, in constant memory.

    When the rule fires at t* + S that is the mean of y_{t*} .. y_{t*+S}: a sum restarted at
    every new minimum. When the budget T runs out first, the mean of y_{T-S} .. y_T: a second
    sum started at T - S (`begin` tells T and S). A run cut short before T - S (a time budget,
    Ctrl-C) returns the mean since t*. Recorded runs hold it as the box mean "psnr_box{S+1}"
    at the end of the run.

    >>> p = MeanSinceBest()
    >>> p.begin(max_iters=10, patience=2)
    >>> for v, best in ((4.0, True), (0.0, True), (1.0, False), (2.0, False)):
    ...     p.keep(p.view(torch.tensor(v), {}), best)
    >>> float(p.result())  # the rule fired at t = 4: mean of y_2 .. y_4
    1.0
    """

    name = "since-best"

    def __init__(self) -> None:
        self._best = _Sum()  # outputs since the last new minimum
        self._tail = _Sum()  # outputs since T - S
        self._window: int | None = None  # S + 1
        self._tail_from: int | None = None  # T - S (1-based)
        self._t = 0

    def begin(self, max_iters: int, patience: int) -> None:
        self._window, self._tail_from = patience + 1, max_iters - patience

    @property
    def average_name(self) -> str:
        return f"box{self._window}" if self._window else ""

    def view(self, output: torch.Tensor, averages: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return output

    def keep(self, view: torch.Tensor, improved: bool) -> None:
        self._t += 1
        self._best.add(view, restart=improved or self._best.n == 0)
        if self._tail_from is not None and self._t >= self._tail_from:
            self._tail.add(view)

    def result(self) -> torch.Tensor | None:
        full_tail = self._window is not None and self._tail.n == self._window
        if full_tail and self._best.n < self._window:  # T came before the rule fired
            return self._tail.mean()
        return self._best.mean()

    def state_dict(self) -> dict:
        # "count": the outputs kept, which the loop checks against its iteration; flat, so
        # that it checks the sums' shapes too
        return {"count": self._t, "best": _cpu(self._best.sum), "best_n": self._best.n,
                "tail": _cpu(self._tail.sum), "tail_n": self._tail.n}  # fmt: skip

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self._t = state["count"]
        self._best.sum, self._best.n = _on(state["best"], device), state["best_n"]
        self._tail.sum, self._tail.n = _on(state["tail"], device), state["tail_n"]

    def recorded_psnr(self, series, t_star, t_end):
        window = self._window or t_end - t_star + 1
        values = series.get(f"psnr_box{window}")  # average_name, once begun
        return None if values is None or t_end < window else float(values[t_end - 1])


class _Sum:
    """A running sum of images and its count (float64, float32 on MPS), for exact means."""

    def __init__(self) -> None:
        self.sum: torch.Tensor | None = None
        self.n = 0

    def add(self, image: torch.Tensor, restart: bool = False) -> None:
        if restart or self.sum is None:
            acc = torch.float32 if image.device.type == "mps" else torch.float64
            self.sum, self.n = image.to(acc).clone(), 1
        else:
            self.sum.add_(image)
            self.n += 1

    def mean(self) -> torch.Tensor | None:
        return None if self.sum is None else (self.sum / self.n).float()


def _cpu(value: torch.Tensor | None) -> torch.Tensor | None:
    return None if value is None else value.to("cpu", copy=True)


def _on(value: torch.Tensor | None, device: torch.device | str) -> torch.Tensor | None:
    return None if value is None else value.to(device)


def make_policy(name: str) -> OutputPolicy:
    """The output policy called `name` ("raw", "since-best", "ema@stop", "box100@best", ...).

    >>> make_policy("ema@stop").name
    'ema@stop'
    """
    if name == "raw":
        return RawAtBest()
    if name == "since-best":
        return MeanSinceBest()
    average, _, when = name.partition("@")
    if average in AVERAGES and when in ("best", "stop"):
        return AverageAt(average, when)
    raise DipstopError(f"unknown output policy {name!r}; choose from {', '.join(policy_names())}")


def policy_names() -> list[str]:
    """Every policy name `make_policy` accepts."""
    return ["raw", "since-best", *(f"{a}@{w}" for a in AVERAGES for w in ("stop", "best"))]
