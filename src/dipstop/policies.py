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
- "since-best": the mean of the outputs from t* to the end (restarted at each new minimum).

NAME is one of `AVERAGES` (e.g. "ema", the original DIP's 0.99 EMA).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dipstop.averaging import RunningAverage, make_average
from dipstop.errors import DipstopError

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
    """The mean of the outputs from the criterion's last new minimum t* to the end of the run
    (restarted at every new minimum): at the online stop, the mean of y_{t*} .. y_{t*+S}.

    >>> p = MeanSinceBest()
    >>> for v, best in ((4.0, True), (0.0, True), (1.0, False), (2.0, False)):
    ...     p.keep(p.view(torch.tensor(v), {}), best)
    >>> float(p.result())
    1.0
    """

    name = "since-best"

    def __init__(self) -> None:
        self._sum: torch.Tensor | None = None
        self._n = 0

    def view(self, output: torch.Tensor, averages: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return output

    def keep(self, view: torch.Tensor, improved: bool) -> None:
        acc = torch.float32 if view.device.type == "mps" else torch.float64
        if improved or self._sum is None:
            self._sum, self._n = view.to(acc).clone(), 1
        else:
            self._sum.add_(view)
            self._n += 1

    def result(self) -> torch.Tensor | None:
        return None if self._sum is None else (self._sum / self._n).float()

    def recorded_psnr(self, series, t_star, t_end):
        window = t_end - t_star + 1  # recorded as a box mean of exactly that many outputs
        values = series.get(f"psnr_box{window}")
        return None if values is None else float(values[t_end - 1])


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
