"""The fitting loop: fits the DIP network to one noisy image and yields every iteration.

Owns what makes a run reproducible and robust: device, seeding, the fixed input z and its
per-iteration perturbation, reflection padding to the network's size multiple, and the
divergence guard. Everything else (criteria, stopping, reports) observes the stream.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from dipstop.errors import DipstopError
from dipstop.memory import check_fits
from dipstop.network import skip_network

MIN_SIDE = 32  # smaller sides cannot be reflection-padded to MIN_PADDED
MIN_PADDED = 64  # sides below this are padded up to it (the network needs 33; 64 keeps a margin)
GRAPH_WARMUP = 3  # eager steps before capture: cuDNN autotuning, Adam state, lazy handles
_SEEDING = threading.Lock()  # a network is initialised from the global RNG: one at a time


@dataclass(frozen=True)
class FitSettings:
    """Everything that determines a fit besides the image. Defaults are the paper's.

    Frozen: derive variants with `dataclasses.replace`. A protocol sets width, lr and
    z_noise_std (`dipstop.protocols.Protocol.fit_settings`); the rest rarely changes.

    Parameters
    ----------
    width : int
        Channels of the skip network's layers (128 in the paper, 64 for the CPU protocol).
    lr : float
        Adam's learning rate.
    input_depth : int
        Channels of the fixed network input z.
    z_scale : float
        z ~ U(0, z_scale).
    z_noise_std : float
        Std of the fresh N(0, s^2) perturbation added to z each iteration.
    seed : int
        Seed of the network's weights and of z; the perturbations use `seed + 1`.
    guard_db : float
        Divergence guard: restore a snapshot when the loss rises by more than this many dB
        in one step (the PSNR to the noisy image drops by more than `guard_db`).
    snapshot_every : int
        Iterations between the guard's snapshots.
    max_restores : int
        Restores allowed before the fit gives up with a DipstopError.
    channels_last : bool
        NHWC activations (cuDNN's native layout on tensor cores).
    bf16 : bool
        bfloat16 autocast of the forward pass; loss and Adam stay float32.
    cuda_graph : bool
        On CUDA, replay each step as one captured graph (see `Fitter`).

    Examples
    --------
    >>> from dataclasses import replace
    >>> small = replace(FitSettings(), width=8, seed=3)
    >>> small.width, small.lr, small.seed
    (8, 0.01, 3)
    """

    width: int = 128
    lr: float = 0.01
    input_depth: int = 32
    z_scale: float = 0.1  # z ~ U(0, z_scale)
    z_noise_std: float = 1.0 / 30.0  # std of the fresh N(0, s^2) added to z each iteration
    seed: int = 0
    guard_db: float = 5.0  # restore when PSNR to the noisy image drops by more than this
    snapshot_every: int = 50
    max_restores: int = 20
    channels_last: bool = False  # NHWC activations (cuDNN's native layout on tensor cores)
    bf16: bool = False  # bfloat16 autocast of the forward pass; loss and Adam stay float32
    cuda_graph: bool = True  # on CUDA, replay each step as one captured graph (see Fitter)

    def result_settings(self) -> dict:
        """The settings that change what a fit computes, but for those a protocol names
        (width, lr, z_noise_std) and the seed: recorded in every run's spec.

        `cuda_graph` is left out too: it changes how a fit runs, not what it computes.

        Returns
        -------
        dict
            Setting name to value.

        Examples
        --------
        >>> sorted(FitSettings().result_settings())[:3]
        ['bf16', 'channels_last', 'guard_db']
        """
        named = {"width", "lr", "z_noise_std", "seed", "cuda_graph"}
        return {k: v for k, v in asdict(self).items() if k not in named}

    def with_precision(self, precision: str) -> FitSettings:
        """These settings in "fp32" or "bf16" arithmetic (`resolve_precision`).

        "bf16" is bfloat16 autocast of the forward pass with channels_last activations,
        the pair that pays on a CPU with AMX; "fp32" turns both off.

        Examples
        --------
        >>> s = FitSettings().with_precision("bf16")
        >>> s.bf16, s.channels_last
        (True, True)
        """
        on = precision == "bf16"
        return replace(self, bf16=on, channels_last=on)

    @property
    def precision(self) -> str:
        """ "bf16" when the forward pass runs in bfloat16, else "fp32"."""
        return "bf16" if self.bf16 else "fp32"


@dataclass
class Iteration:
    """One Adam step: `output` is y_t = f(z_t) before the step, cropped to the input size."""

    t: int  # 1-based iteration number
    loss: float  # MSE(y_t, x0) on the [0, 1] scale, over the input's own pixels
    output: torch.Tensor  # 1 x C x H x W, detached, on the fitting device
    state: dict | None = None  # the fit's state after step t, when `run` was asked for it


def resolve_device(device: str | torch.device | None, here: bool = True) -> torch.device:
    """The torch device to fit on: CUDA when available and nothing was asked for, else CPU.

    A device asked for must be one this machine has (`available_devices`): torch knows more
    names ("meta", "hpu", "mps" on a build without it, ...) than it can fit on here, and
    would fail later with a traceback.

    Parameters
    ----------
    device : str, torch.device or None
        "cpu", "cuda", "cuda:N", "mps", "xpu", "xpu:N", a torch.device, or None / "auto"
        for the default.
    here : bool
        False checks only that dipstop can fit on such a device somewhere, not that this
        machine has it (a Ray cluster's machines may have devices this one lacks).

    Returns
    -------
    torch.device

    Raises
    ------
    DipstopError
        For a device name torch does not know, or a device this machine does not have,
        naming the ones it has.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("tpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: unknown device 'tpu'; use ...
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    have = available_devices()
    use = f"use {have[0]}" if len(have) == 1 else f"use one of {', '.join(have)}"
    try:
        with warnings.catch_warnings():  # "mkldnn": a deprecation warning, then refused
            warnings.simplefilter("ignore")
            dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DipstopError(f"unknown device {str(device)!r}; {use}") from None
    count = _device_count(dev.type)
    if count is None:
        raise DipstopError(f"dipstop cannot fit on device {str(device)!r}; {use}")
    if not here:
        return dev
    if count == 0:
        name = {"cuda": "CUDA GPU", "mps": "Apple MPS device", "xpu": "Intel XPU"}[dev.type]
        raise DipstopError(f"device {str(device)!r} asked for but no {name} is available; {use}")
    if dev.index is not None and dev.index >= count:
        raise DipstopError(
            f"device {str(device)!r} asked for but this machine has {count} {dev.type} "
            f"device{'s' if count > 1 else ''}; {use}"
        )
    return dev


def available_devices() -> list[str]:
    """The devices dipstop can fit on here, as `resolve_device` takes them.

    >>> available_devices()[0]
    'cpu'
    """
    have = ["cpu"]
    for kind in ("cuda", "xpu"):
        have += [f"{kind}:{i}" for i in range(_device_count(kind) or 0)]
    if _device_count("mps"):
        have.append("mps")
    return have


def _device_count(kind: str) -> int | None:
    """How many devices of a type torch can use here (0 when this build or machine has
    none); None for a type dipstop does not fit on."""
    if kind == "cpu":
        return 1
    if kind == "cuda":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return int(bool(mps is not None and mps.is_available()))
    if kind == "xpu":
        xpu = getattr(torch, "xpu", None)
        return xpu.device_count() if xpu is not None and xpu.is_available() else 0
    return None


PRECISIONS = ("auto", "fp32", "bf16")


def amx_cpu() -> bool:
    """Whether this CPU has AMX tiles (Intel Xeon 4th generation and later)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def resolve_precision(precision: str, device: torch.device) -> str:
    """The arithmetic a fit runs in on `device`: "fp32" or "bf16" (see `with_precision`).

    "auto" is bf16 on a CPU with AMX, where an iteration at width 64 ran 1.5x (128 x 128)
    to 1.6x (481 x 321) faster than in fp32 and the image dipstop returns was as good
    (docs/calibration.md, "bf16 fits"), and fp32 elsewhere: without AMX bf16 is emulated and
    slow, and on an H100 it did not pay. `denoise` keeps fp32 for the paper's raw output.

    Examples
    --------
    >>> cpu = torch.device("cpu")
    >>> resolve_precision("fp32", cpu), resolve_precision("bf16", cpu)
    ('fp32', 'bf16')
    >>> resolve_precision("auto", cpu) == ("bf16" if amx_cpu() else "fp32")
    True
    >>> resolve_precision("fp16", cpu)
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: unknown precision 'fp16'; use auto, fp32 or bf16
    """
    if precision not in PRECISIONS:
        raise DipstopError(f"unknown precision {precision!r}; use auto, fp32 or bf16")
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and amx_cpu() else "fp32"


def padding_for(height: int, width: int) -> tuple[int, int, int, int]:
    """Reflection padding that brings an image to the network's size: (left, right, top, bottom).

    The network runs on any side of 64 or more as it is (`dipstop.network`); a shorter side
    is padded up to 64, split evenly, the odd pixel at the right or bottom. Until
    2026-11-27 every side was padded to a multiple of 32 (481 x 321 to 512 x 352: 17% more
    pixels per iteration).

    Parameters
    ----------
    height, width : int
        The image's size; both at least 32.

    Returns
    -------
    tuple of int
        (left, right, top, bottom) padding in pixels.

    Raises
    ------
    DipstopError
        If a side is below 32 pixels (it cannot be reflection-padded to 64).

    Examples
    --------
    >>> padding_for(100, 50)
    (7, 7, 0, 0)
    >>> padding_for(481, 321)
    (0, 0, 0, 0)
    """
    if min(height, width) < MIN_SIDE:
        raise DipstopError(
            f"image is {width}x{height}; dipstop needs both sides of at least {MIN_SIDE} pixels "
            "(upscale or use a larger image)"
        )

    def split(n: int) -> tuple[int, int]:
        extra = max(MIN_PADDED - n, 0)
        return extra // 2, extra - extra // 2

    top, bottom = split(height)
    left, right = split(width)
    return left, right, top, bottom


class Fitter:
    """Fits the Deep Image Prior network to one noisy image; `run(T)` yields each iteration.

    The loss is the MSE over the input's own pixels; the network sees the image itself
    (sides under 64 reflection-padded to 64, `padding_for`). A NaN loss, or a loss more than
    `guard_db` above the previous one (the original DIP's guard), restores the last good snapshot of
    network and optimiser and retries the iteration; repeated failures raise DipstopError.
    The generator can be abandoned at any time (online stopping does so). `state_dict()`
    and `load_state_dict()` save and restore a fit between iterations: a fitter loaded with
    the state after step t continues with step t + 1, as the uninterrupted fit would.

    Parameters
    ----------
    noisy : Tensor
        C x H x W float image in [0, 1]; both sides at least 32 pixels.
    settings : FitSettings
        Network, optimiser, seed and guard settings (the paper's by default).
    device : str, torch.device or None
        Where to fit (`resolve_device`): CUDA when available by default.

    Attributes
    ----------
    device : torch.device
        The fitting device.
    t : int
        Iterations taken so far.
    restores : int
        How often the divergence guard restored a snapshot.
    step_seconds : float
        Time spent in the math of the steps (perturbation, forward, backward, Adam).

    Raises
    ------
    ValueError
        If `noisy` is not C x H x W.
    DipstopError
        If the image is too small, or too large for the device's memory.

    Examples
    --------
    >>> fitter = Fitter(torch.rand(1, 64, 64), FitSettings(width=8))
    >>> its = list(fitter.run(3))  # doctest: +SKIP
    >>> [it.t for it in its], tuple(its[-1].output.shape), its[-1].loss > 0  # doctest: +SKIP
    ([1, 2, 3], (1, 1, 64, 64), True)
    """

    def __init__(
        self,
        noisy: torch.Tensor,
        settings: FitSettings = FitSettings(),
        device: str | torch.device | None = None,
    ) -> None:
        if noisy.ndim != 3:
            raise ValueError("noisy must be C x H x W")
        self.settings = settings
        self.device = resolve_device(device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # one input shape for the whole fit
        channels, self.height, self.width = noisy.shape
        self.pad = padding_for(self.height, self.width)
        left, right, top, bottom = self.pad
        padded = (self.height + top + bottom) * (self.width + left + right)
        check_fits(self.height, self.width, padded, settings.width, self.device)
        self.x0 = noisy.to(self.device, torch.float32).unsqueeze(0)

        gen = torch.Generator().manual_seed(settings.seed)
        with _SEEDING, torch.random.fork_rng(devices=[]):  # the global RNG: one fit at a time
            torch.manual_seed(settings.seed)
            net = skip_network(channels, settings.width, settings.input_depth)
        self.net = net.to(self.device).train()
        layout = torch.channels_last if settings.channels_last else torch.contiguous_format
        self.net = self.net.to(memory_format=layout)
        self.shape = (
            1,
            settings.input_depth,
            self.height + top + bottom,
            self.width + left + right,
        )
        self.z = (torch.rand(self.shape, generator=gen) * settings.z_scale).to(self.device)
        self.z = self.z.contiguous(memory_format=layout)
        self.noise_gen = torch.Generator(device=self.device).manual_seed(settings.seed + 1)
        # CUDA graphs replay whole steps (an engine switch: `Switches.cuda_graphs`)
        self.use_graph = self.device.type == "cuda" and settings.cuda_graph
        self.opt = make_adam(self.net.parameters(), settings.lr, capturable=self.use_graph)
        self.stream = torch.cuda.Stream(self.device) if self.use_graph else None
        self.restores = 0
        self.step_seconds = 0.0  # time in perturbation, forward, backward and Adam: the math
        self.t = 0  # steps taken
        self.previous_loss = math.inf  # the divergence guard's reference
        self.snapshot: list[torch.Tensor] | None = None  # the guard's last good state
        self.snapshot_loss = math.inf
        self._ran = False

    def run(self, max_iters: int, state_every: int = 0) -> Iterator[Iteration]:
        """Step until iteration `max_iters`, yielding the output each step was computed from.

        `max_iters` counts from the start of the fit, not of this call: a fit that ran (or
        was loaded) to step t continues with step t + 1. The generator may be abandoned at
        any time.

        Parameters
        ----------
        max_iters : int
            The iteration to stop after (T).
        state_every : int
            Every `state_every` iterations (0: never) the yielded Iteration carries the
            fit's `state_dict()` taken after that step, for a checkpoint.

        Yields
        ------
        Iteration
            t (1-based), the loss MSE(y_t, x0) and the output y_t (1 x C x H x W, detached,
            on the fitting device), plus `state` on checkpoint iterations.

        Raises
        ------
        DipstopError
            When the divergence guard has restored more than `max_restores` times.

        Examples
        --------
        >>> fitter = Fitter(torch.rand(3, 64, 64), FitSettings(width=8))
        >>> [(it.t, it.state is not None) for it in fitter.run(2, state_every=2)]  # doctest: +SKIP
        [(1, False), (2, True)]
        >>> [it.t for it in fitter.run(3)]  # doctest: +SKIP
        [3]
        """
        s = self.settings
        self._ran = True
        if self.snapshot is None:
            self.snapshot, self.snapshot_loss = self._take_snapshot(), math.inf
        steps = 0  # in this call: a resumed fit warms up before capturing, as a new one does
        noise, z_t = torch.empty_like(self.z), torch.empty_like(self.z)  # reused every step
        graph = None
        if self.stream is not None:  # z, x0 and the network were copied on the default stream
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
        while self.t < max_iters:
            t = self.t
            start = time.perf_counter()
            with self._on_stream():
                torch.randn(self.shape, generator=self.noise_gen, out=noise)
                torch.add(self.z, noise, alpha=s.z_noise_std, out=z_t)
                if graph is None and self.use_graph and steps >= GRAPH_WARMUP:
                    y = loss = None  # the last eager step's autograd graph must be gone
                    if len(self.snapshot) < len(self._state()):  # taken before Adam's state
                        # existed: restoring it would clear the state the graph reads
                        self.snapshot, self.snapshot_loss = self._take_snapshot(), math.inf
                    graph = self._capture(z_t)
                if graph is not None:
                    before = self._take_snapshot() if (t + 1) % s.snapshot_every == 0 else None
                    graph[0].replay()  # forward, loss, backward and Adam step in one launch
                    y, loss = graph[1], graph[2]
                else:
                    y = self._forward(z_t)
                    loss = F.mse_loss(y, self.x0)
                value = loss.item()
            self.step_seconds += time.perf_counter() - start
            if not math.isfinite(value) or value > self.previous_loss * 10 ** (s.guard_db / 10):
                self.restores += 1
                if self.restores > s.max_restores:
                    raise DipstopError(
                        f"the fit diverged {self.restores} times (loss {value:.3g} at iteration "
                        f"{t + 1}); lower the learning rate (--lr)"
                    )
                self._restore(self.snapshot)
                self.previous_loss = self.snapshot_loss
                continue
            t = self.t = t + 1
            steps += 1
            if t % s.snapshot_every == 0:
                self.snapshot = before if graph else self._take_snapshot()
                self.snapshot_loss = value
            start = time.perf_counter()
            with self._on_stream():
                if graph is None:
                    self.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    self.opt.step()
                # a graph overwrites its output on the next replay: hand out a copy
                output = y.detach().clone() if graph else y.detach()
            if self.stream is not None:  # made on our stream, read on the caller's: keep
                output.record_stream(torch.cuda.current_stream(self.device))  # it until then
            if self.device.type == "cuda":  # the criteria's copy of y_t waits on it anyway:
                torch.cuda.synchronize(self.device)  # this makes step_seconds honest
            self.step_seconds += time.perf_counter() - start
            self.previous_loss = value
            state = self.state_dict() if state_every and t % state_every == 0 else None
            yield Iteration(t, value, output, state)

    def state_dict(self) -> dict:
        """Everything that decides the rest of this fit, as CPU copies (for `torch.save`).

        Network, Adam, the perturbation generator, the divergence guard's snapshot and
        reference loss, and the iteration count. The fixed input z and the noisy image are
        rebuilt from the settings' seed and the image.

        Returns
        -------
        dict
            The state; also what identifies the fit (device type, canvas shape, settings),
            which `load_state_dict` checks.

        Examples
        --------
        >>> fitter = Fitter(torch.rand(1, 64, 64), FitSettings(width=8))
        >>> state = fitter.state_dict()
        >>> state["t"], state["device_type"], state["shape"]
        (0, 'cpu', [1, 32, 64, 64])
        """
        return {
            **self._identity(),
            "t": self.t,
            "previous_loss": self.previous_loss,
            "snapshot_loss": self.snapshot_loss,
            "restores": self.restores,
            "net": _cpu_copy(self.net.state_dict()),
            "opt": _cpu_copy(self.opt.state_dict()),
            "noise_gen": self.noise_gen.get_state(),
            "snapshot": None if self.snapshot is None else _cpu_copy(self.snapshot),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()` of a fitter made with the same image and settings.

        On CUDA the resumed fit warms up and captures its graph again, so it matches the
        uninterrupted one to rounding, not bit for bit; on the CPU it matches exactly.

        Parameters
        ----------
        state : dict
            What `state_dict()` returned (possibly through `torch.save` / `torch.load`).

        Raises
        ------
        ValueError
            Changing nothing, when the state was written for another device type, image
            size or network.
        RuntimeError
            If this fitter has already run.

        Examples
        --------
        >>> x, settings = torch.rand(1, 64, 64), FitSettings(width=8)
        >>> whole = [it.output for it in Fitter(x, settings).run(3)]  # doctest: +SKIP
        >>> state = list(Fitter(x, settings).run(1, state_every=1))[-1].state  # doctest: +SKIP
        >>> resumed = Fitter(x, settings)  # doctest: +SKIP
        >>> resumed.load_state_dict(state)  # doctest: +SKIP
        >>> [(i.t, torch.equal(i.output, whole[i.t - 1])) for i in resumed.run(3)]  # doctest: +SKIP
        [(2, True), (3, True)]
        """
        if self._ran:
            raise RuntimeError("load_state_dict needs a fitter that has not run yet")
        mine = self._identity()
        theirs = {k: state.get(k) for k in mine}
        if theirs != mine:
            raise ValueError(f"the state is of another fit ({theirs}; this fit is {mine})")
        self.net.load_state_dict(state["net"])
        flags = [
            {k: g[k] for k in ("fused", "capturable") if k in g} for g in self.opt.param_groups
        ]
        self.opt.load_state_dict(state["opt"])
        for group, own in zip(self.opt.param_groups, flags, strict=True):
            group.update(own)  # a state saved without CUDA graphs must not turn them off here
        self.noise_gen.set_state(state["noise_gen"])
        if state["snapshot"] is not None:
            self.snapshot = [x.to(self.device) for x in state["snapshot"]]
        self.t, self.restores = state["t"], state["restores"]
        self.previous_loss, self.snapshot_loss = state["previous_loss"], state["snapshot_loss"]

    def _identity(self) -> dict:
        """What a saved state must share with the fitter that loads it."""
        return {
            "device_type": self.device.type,
            "shape": list(self.shape),
            "settings": {k: getattr(self.settings, k) for k in _STATE_SETTINGS},
        }

    def _forward(self, z_t: torch.Tensor) -> torch.Tensor:
        """y = f(z_t), cropped to the input's own pixels, as float32."""
        left, _, top, _ = self.pad
        # no cast cache: a captured graph must recompute the casts of the updated weights
        bf16 = self.settings.bf16
        with torch.autocast(self.device.type, torch.bfloat16, enabled=bf16, cache_enabled=False):
            y = self.net(z_t)
        return y[:, :, top : top + self.height, left : left + self.width].float()

    def _capture(self, z_t: torch.Tensor) -> tuple | None:
        """Record one whole step (forward, MSE, backward, Adam) as a CUDA graph on `z_t`.

        The step's ~1000 small kernels then cost one launch: DIP's network is launch-bound on
        a GPU. Replays read `z_t` and write the returned output and loss tensors in place.
        """
        self.opt.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                y = self._forward(z_t)
                loss = F.mse_loss(y, self.x0)
                loss.backward()
                self.opt.step()
        except RuntimeError as exc:  # a PyTorch or driver that cannot capture: stay eager
            warnings.warn(f"CUDA graph capture failed, fitting without ({exc})", stacklevel=3)
            self.use_graph = False
            return None
        return graph, y, loss

    def _on_stream(self) -> contextlib.AbstractContextManager:
        """Run on the fitter's own CUDA stream when graphs are used (warm-up and capture must
        share a non-default stream); a no-op otherwise."""
        return torch.cuda.stream(self.stream) if self.stream else contextlib.nullcontext()

    def _state(self) -> list[torch.Tensor]:
        """Every tensor a step changes: parameters, BatchNorm buffers, Adam's moments."""
        tensors = [p.data for p in self.net.parameters()] + list(self.net.buffers())
        for p in self.net.parameters():
            tensors += [v for v in self.opt.state[p].values() if torch.is_tensor(v)]
        return tensors

    def _take_snapshot(self) -> list[torch.Tensor]:
        """Copies of every tensor a step changes, taken before a step whose input was verified.

        Restored in place, since a CUDA graph holds the live tensors' addresses. Before the
        first step Adam has no state yet: restoring such a snapshot clears Adam's state.
        """
        return [x.clone() for x in self._state()]

    def _restore(self, snapshot: list[torch.Tensor]) -> None:
        live = self._state()
        if len(snapshot) < len(live):  # taken before Adam's first step (never under a graph)
            self.opt.state.clear()
            live = live[: len(snapshot)]
        for tensor, saved in zip(live, snapshot, strict=True):
            tensor.copy_(saved)


# the settings a saved state must share with the fitter that loads it
_STATE_SETTINGS = ("width", "input_depth", "lr", "z_scale", "z_noise_std", "seed")


def _cpu_copy(obj: object) -> object:
    """`obj` with every tensor in it (in dicts, lists, tuples) copied to the CPU."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


def make_adam(
    params: Iterable[torch.nn.Parameter], lr: float, capturable: bool = False
) -> torch.optim.Adam:
    """Adam with the fused kernel where this PyTorch has one for the device (the default
    per-parameter loop took ~8 ms a step against ~1.3 ms fused for the width-64 network).
    `capturable` keeps its step count on the device, as a CUDA graph needs.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True, capturable=capturable)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)
