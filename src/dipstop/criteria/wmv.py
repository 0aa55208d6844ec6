"""ES-WMV (Wang et al. 2023, "Early stopping for deep image prior"): windowed moving variance.

Keep the last W outputs x_{t-W+1}, ..., x_t. Once the window is full,

    v_t = (1/W) sum_w mean_pixels((x_w - xbar)^2),   xbar = the window's mean image,

and v_t belongs to iteration t (the window's last). Before the window is full there is no value:
`update` returns NaN, so a series stays aligned with the iterations and the stopping rule
(which reads NaN as +inf) never stops there.

Cost: O(pixels) per update, not O(W pixels). With the shifted sums over the window
D1 = sum_w (x_w - K) and D2 = sum_w (x_w - K)^2 for a fixed reference image K,

    v_t = mean_pixels(D2 / W - (D1 / W)^2)

(the variance does not depend on K). Each update adds the new output's terms and subtracts
those of the output leaving the window. Numerics: the subtraction above cancels when the
variance is small next to the squared distance from K, and the running sums drift by rounding.
So the sums are float64 (outputs are float32, so their values and squares enter exactly), and
every `resync_every` updates they are recomputed exactly from the stored window with K reset to
the newest output: then |x_w - K| is of the order of the window's own spread, cancellation is
mild, and drift cannot build up over a 20k-iteration run. The resync costs O(W pixels) once per
`resync_every` updates. Devices without float64 (Apple MPS) get float32 sums and the same resync.

All arithmetic stays on the outputs' device; the only host synchronisation is turning v_t into a
Python float. The window is a ring buffer of W outputs on that device (at W = 100 and 3 x 481 x
321 float32, about 185 MB).

References
----------
Wang, Li, Zhuang, Chen, Liang, Sun, "Early stopping for deep image prior", 2023.
"""

from __future__ import annotations

import math

import torch

from dipstop.criteria.base import Criterion, Sample, register


def _accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device supports it; MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


@register
class WmvCriterion(Criterion):
    """Windowed moving variance of a DIP run's outputs, one value per `update`.

    As a criterion it scores every iteration on the device (the window holds outputs).
    v_t is the mean over the last W outputs of their squared distance to the window's mean
    image; NaN until W outputs have been seen.

    Parameters
    ----------
    window : int
        W, at least 2 (the paper's 100).
    every : int
        Must be 1: the window needs every output.
    resync_every : int
        Recompute the running sums exactly from the window every this many updates.

    Raises
    ------
    ValueError
        For `every` other than 1, a window below 2 or `resync_every` below 1.

    Examples
    --------
    >>> wmv = WmvCriterion(window=2)
    >>> [wmv.update(torch.full((1, 1, 2, 2), v)) for v in (0.0, 1.0, 1.0)]
    [nan, 0.25, 0.0]
    """

    name, label, recorded, on_host = "wmv", "ES-WMV", ("wmv",), False

    def __init__(self, window: int = 100, *, every: int = 1, resync_every: int = 1000) -> None:
        super().__init__(every)
        if every != 1:
            raise ValueError("ES-WMV needs every output: every must be 1")
        if window < 2:
            raise ValueError("the WMV window needs at least 2 outputs")
        if resync_every < 1:
            raise ValueError("resync_every must be at least 1")
        self.window = window
        self.resync_every = resync_every
        self.count = 0  # outputs seen so far
        self._buf: torch.Tensor | None = None  # W x (output shape), a ring buffer
        self._ref: torch.Tensor | None = None  # K, in the accumulator dtype
        self._d1: torch.Tensor | None = None  # sum over the window of (x - K)
        self._d2: torch.Tensor | None = None  # sum over the window of (x - K)^2
        self._since_resync = 0

    def settings(self) -> dict:
        """{"every", "window"}: what changes the recorded series (`resync_every` does not)."""
        return {"every": self.every, "window": self.window}

    def measure(self, sample: Sample) -> dict[str, float]:
        """{"wmv": v_t} for the sample's output tensor (`update`)."""
        assert sample.output is not None
        return {"wmv": self.update(sample.output)}

    def update(self, output: torch.Tensor) -> float:
        """Add iteration t's output (1 x C x H x W in [0, 1]); return v_t, NaN while filling.

        Parameters
        ----------
        output : Tensor
            The output, on any device; every output must have the first one's shape.

        Returns
        -------
        float
            v_t, at least 0; NaN for the first W - 1 outputs.

        Raises
        ------
        ValueError
            If the output's shape differs from the first output's.

        Examples
        --------
        >>> wmv = WmvCriterion(window=3)
        >>> [round(wmv.update(torch.full((1, 3, 4, 4), v)), 6) for v in (0.0, 0.3, 0.6, 0.6)]
        [nan, nan, 0.06, 0.02]
        """
        x = output.detach()
        if self._buf is None:
            self._start(x)
        assert self._buf is not None and self._ref is not None
        assert self._d1 is not None and self._d2 is not None
        if x.shape != self._buf.shape[1:]:
            raise ValueError(f"output shape {tuple(x.shape)} differs from the first output's")
        slot = self.count % self.window
        new = x - self._ref  # type promotion makes these differences accumulator-typed
        if self.count >= self.window:  # the window is full: the oldest output leaves it
            old = self._buf[slot] - self._ref
            self._d1.add_(new).sub_(old)
            self._d2.addcmul_(new, new).addcmul_(old, old, value=-1.0)
        else:
            self._d1.add_(new)
            self._d2.addcmul_(new, new)
        self._buf[slot].copy_(x)
        self.count += 1
        if self.count < self.window:
            return math.nan
        self._since_resync += 1
        if self._since_resync >= self.resync_every:
            self._resync(x)
        # mean_pixels(D2 / W - (D1 / W)^2) as two reductions; the one host sync is float(v)
        d1 = self._d1.reshape(-1)
        v = (self._d2.sum() - torch.dot(d1, d1) / self.window) / (self.window * d1.numel())
        return max(float(v), 0.0)  # rounding can leave a tiny negative for a constant window

    def state_dict(self) -> dict:
        """The window and its running sums (CPU copies), to resume a run exactly.

        Returns
        -------
        dict
            Tensors "buf", "ref", "d1", "d2" (None before the first output), "count",
            "since_resync" and "window".

        Examples
        --------
        >>> WmvCriterion(window=5).state_dict()["count"]
        0
        """
        tensors = {"buf": self._buf, "ref": self._ref, "d1": self._d1, "d2": self._d2}
        state: dict = {k: None if v is None else v.to("cpu", copy=True) for k, v in tensors.items()}
        state.update(count=self.count, since_resync=self._since_resync, window=self.window)
        return state

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        """Continue from `state_dict()`, with the tensors on `device` (the outputs' device).

        Parameters
        ----------
        state : dict
            What `state_dict()` returned.
        device : torch.device or str
            The outputs' device.

        Raises
        ------
        ValueError
            If the state was saved with another window.

        Examples
        --------
        >>> outputs = [torch.full((1, 1, 2, 2), v) for v in (0.0, 1.0, 1.0, 3.0)]
        >>> whole = WmvCriterion(window=2)
        >>> expected = [whole.update(y) for y in outputs]
        >>> first = WmvCriterion(window=2)
        >>> _ = [first.update(y) for y in outputs[:2]]
        >>> resumed = WmvCriterion(window=2)
        >>> resumed.load_state_dict(first.state_dict())
        >>> [resumed.update(y) for y in outputs[2:]] == expected[2:]
        True
        """
        if state["window"] != self.window:
            raise ValueError(
                f"a window of {state['window']} cannot resume a window of {self.window}"
            )
        self._buf, self._ref, self._d1, self._d2 = (
            None if state[k] is None else state[k].to(device) for k in ("buf", "ref", "d1", "d2")
        )
        self.count, self._since_resync = state["count"], state["since_resync"]

    def _start(self, x: torch.Tensor) -> None:
        """Allocate the ring buffer and the sums on x's device; K starts as the first output."""
        acc = _accumulator_dtype(x.device)
        self._buf = torch.empty((self.window, *x.shape), dtype=x.dtype, device=x.device)
        self._ref = x.to(acc).clone()
        self._d1 = torch.zeros(x.shape, dtype=acc, device=x.device)
        self._d2 = torch.zeros(x.shape, dtype=acc, device=x.device)

    def _resync(self, newest: torch.Tensor) -> None:
        """Recompute the sums exactly from the full window, with K = the newest output."""
        assert self._buf is not None and self._d1 is not None and self._d2 is not None
        self._ref = newest.to(self._d1.dtype).clone()
        self._d1.zero_()
        self._d2.zero_()
        for w in range(self.window):  # one slot at a time: no W x pixels float64 temporary
            d = self._buf[w] - self._ref
            self._d1.add_(d)
            self._d2.addcmul_(d, d)
        self._since_resync = 0
