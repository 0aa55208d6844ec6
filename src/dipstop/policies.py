"""Output policies: which image a run returns, chosen by name in one place.

The recording loop asks the policy, as each iteration is produced, for the image that
iteration offers (`view`), and tells it, as each iteration's criterion value arrives, whether
that iteration became the stopping rule's new best (`keep`). `result()` is what the run
returns. The paper's policy is "raw": the output y_{t*} at the criterion's minimum.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from dipstop.averaging import RunningAverage
from dipstop.errors import DipstopError


class OutputPolicy:
    """Base class: picks the returned image from the stream of outputs and averages."""

    name: str

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


class RawAtStop(OutputPolicy):
    """The paper's: the raw output y_{t*} at the stopping criterion's minimum.

    >>> p = RawAtStop()
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


POLICIES: dict[str, type[OutputPolicy]] = {"raw": RawAtStop}


def make_policy(name: str) -> OutputPolicy:
    """The output policy called `name`."""
    try:
        return POLICIES[name]()
    except KeyError:
        raise DipstopError(
            f"unknown output policy {name!r}; choose from {', '.join(POLICIES)}"
        ) from None
