"""Running averages of a fit's outputs: what an averaged output policy returns.

Successive DIP outputs share the image and differ in the noise the network is fitting at
that moment, so averaging them cancels part of that noise (the original DIP code keeps an
exponential moving average for this reason). Two kinds, each one tensor of state on the
outputs' device:

- `Ema(weight)`: a <- weight * a + (1 - weight) * y_t, starting from the first output
  (the original DIP's, weight 0.99);
- `BoxMean(window)`: the mean of the last `window` outputs (of all outputs while fewer);
  with window S + 1 read at the online stop t* + S it is the mean of y_{t*} .. y_{t*+S}.

`make_average({"kind": "ema", "weight": 0.99})` builds one from the settings a run records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dipstop.errors import DipstopError


class RunningAverage:
    """Base class: `update(y_t)` folds in one output and returns the current average."""

    kind: str

    def update(self, output: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        raise NotImplementedError


class Ema(RunningAverage):
    """Exponential moving average of the outputs, starting from the first one.

    >>> ema = Ema(0.5)
    >>> [float(ema.update(torch.tensor([v]))) for v in (0.0, 1.0, 1.0)]
    [0.0, 0.5, 0.75]
    """

    kind = "ema"

    def __init__(self, weight: float = 0.99) -> None:
        if not 0.0 < weight < 1.0:
            raise DipstopError(f"an EMA weight must lie strictly between 0 and 1, got {weight}")
        self.weight = weight
        self.value: torch.Tensor | None = None

    def update(self, output: torch.Tensor) -> torch.Tensor:
        if self.value is None:
            self.value = output.detach().clone()
        else:
            self.value.mul_(self.weight).add_(output, alpha=1 - self.weight)
        return self.value

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "weight": self.weight}

    def state_dict(self) -> dict:
        return {"value": None if self.value is None else self.value.to("cpu", copy=True)}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.value = None if state["value"] is None else state["value"].to(device)


class BoxMean(RunningAverage):
    """Mean of the last `window` outputs: a ring buffer and a float64 running sum.

    Each update adds the new output and subtracts the one leaving the window; float64 keeps
    the sum's rounding drift near 1e-16 per step, far below an 8-bit level.

    >>> box = BoxMean(2)
    >>> [float(box.update(torch.tensor([v]))) for v in (0.0, 1.0, 3.0)]
    [0.0, 0.5, 2.0]
    """

    kind = "box"

    def __init__(self, window: int) -> None:
        if not isinstance(window, int) or window < 1:
            raise DipstopError(f"a box average needs a window of at least 1, got {window!r}")
        self.window = window
        self.count = 0
        self._buf: torch.Tensor | None = None
        self._sum: torch.Tensor | None = None

    def update(self, output: torch.Tensor) -> torch.Tensor:
        y = output.detach()
        if self._buf is None:
            acc = torch.float32 if y.device.type == "mps" else torch.float64
            self._buf = torch.empty((self.window, *y.shape), dtype=y.dtype, device=y.device)
            self._sum = torch.zeros(y.shape, dtype=acc, device=y.device)
        assert self._sum is not None
        slot = self.count % self.window
        if self.count >= self.window:
            self._sum.sub_(self._buf[slot])
        self._sum.add_(y)
        self._buf[slot].copy_(y)
        self.count += 1
        return (self._sum / min(self.count, self.window)).to(y.dtype)

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "window": self.window}

    def state_dict(self) -> dict:
        def cpu(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.to("cpu", copy=True)

        return {"count": self.count, "buf": cpu(self._buf), "sum": cpu(self._sum)}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.count = int(state["count"])
        self._buf = None if state["buf"] is None else state["buf"].to(device)
        self._sum = None if state["sum"] is None else state["sum"].to(device)


def make_average(settings: Mapping[str, Any]) -> RunningAverage:
    """An average from its recorded settings: {"kind": "ema", "weight": w} or
    {"kind": "box", "window": n}.

    >>> make_average({"kind": "box", "window": 3}).settings()
    {'kind': 'box', 'window': 3}
    """
    args = dict(settings)
    kind = args.pop("kind", None)
    try:
        return {"ema": Ema, "box": BoxMean}[kind](**args)
    except KeyError:
        raise DipstopError(f"unknown average kind {kind!r}; use 'ema' or 'box'") from None
    except TypeError as exc:
        raise DipstopError(f"bad settings for a {kind} average: {exc}") from None
