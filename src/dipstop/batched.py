"""Batched tile fits: K same-sized tiles fitted as one stacked network, one launch per layer.

A photo is denoised in tiles, each an independent Deep Image Prior fit (Ulyanov et al.,
"Deep Image Prior", CVPR 2018) of the same architecture. On a GPU one tile's step is
launch-bound (about a thousand small kernels), so fitting the tiles one after another
leaves the device mostly idle. Here the K networks' weights are stacked and the step runs
as one `torch.func.vmap`ped forward and backward (each convolution becomes one grouped
convolution over the K tiles) and one Adam update over all K tiles' parameters.

Each tile stays the fit `dipstop.fitting.Fitter` would run on it alone:

- its network and z are initialised by a `Fitter` made for it (same seed, same padding),
  and its perturbation of z is drawn from its own generator seeded with seed + 1;
- its loss is its own MSE, so its gradient is its own; Adam is elementwise, and runs as
  `torch.optim.adam.adam` (fused where `make_adam` would be) on one row of a K x N
  parameter matrix per tile, with a step count per tile;
- the divergence guard is per tile: a tile whose loss jumps restores its own row of the
  snapshot (parameters, Adam moments and step count), as `Fitter` restores its network;
- its CIFS values (`CifsCriterion`: the JPEG of its own 8-bit output), its Eq. 4 stop
  (`recording.OnlineStop` and its `OnlineStopper`) and its output policy
  (`dipstop.policies`) are its own objects, fed its own rows in order.

A tile whose stop fires (or that reaches T) leaves the batch: its row is dropped from every
stacked tensor, so later steps neither compute nor change it, and the batch shrinks to the
tiles still fitting (freezing it in place would keep paying for its forward and backward).
Its result is final when it leaves. Host work (JPEG encodes) overlaps the next step as in
`dipstop.recording.record` (`dipstop.overlap`), so a tile may be computed for up to `depth`
steps past its stop; those steps are discarded, as `record` discards its look-ahead.

BatchNorm uses batch statistics (DIP trains in train mode throughout), so the running
statistics that `Fitter`'s network keeps, and never reads, are not kept here. The layout
switch `channels_last` is not applied (it changes speed, not results) and CUDA graphs are
not used: the batch already amortises the launches over K tiles.

The results are the separate fits' to rounding: vmap's grouped convolutions add in another
order than K separate convolutions (tests/test_batched.py measures the difference).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap
from torch.optim.adam import adam as adam_step

from dipstop.codecs import tensor_to_uint8
from dipstop.criteria import CifsCriterion, Context, Sample
from dipstop.errors import DipstopError
from dipstop.fitting import FitSettings, Fitter, make_adam, resolve_device
from dipstop.memory import available_bytes, estimate_bytes
from dipstop.overlap import DEFAULT_DEPTH, overlapped
from dipstop.policies import DEFAULT_OUTPUT, make_policy
from dipstop.recording import OnlineStop, series_names


@dataclass
class BatchStep:
    """One batched step: the tiles that took a step, and their outputs on the host.

    Attributes
    ----------
    tiles : list of int
        Indices (into the tiles given) of the tiles that advanced; a tile the divergence
        guard restored in this step is not among them (it retries, as `Fitter` does).
    t : list of int
        Each of those tiles' iteration, 1-based.
    loss : list of float
        Each one's MSE to its noisy tile, [0, 1] scale (the `Fitter`'s loss).
    outputs : Tensor
        len(tiles) x 1 x C x H x W float32 on the CPU: the outputs y_t the steps were
        computed from, cropped to the tiles' own pixels.
    """

    tiles: list[int]
    t: list[int]
    loss: list[float]
    outputs: torch.Tensor


class BatchedFitter:
    """K independent DIP fits of one architecture on K same-sized tiles, stepped together.

    Parameters
    ----------
    tiles : sequence of Tensor
        K noisy tiles, each C x H x W in [0, 1], all of one size.
    settings : FitSettings or sequence of FitSettings
        One for all tiles, or one per tile differing only in `seed`.
    device : str or torch.device, optional
        As `Fitter` takes it (None: CUDA when available).

    Attributes
    ----------
    active : list of int
        The tiles still in the batch, in row order.
    t, restores : list of int
        Per tile (indexed as the tiles given): iterations taken, guard restores.
    step_seconds : float
        Time in the batched steps (perturbation, forward, backward, Adam, host copy).

    Raises
    ------
    DipstopError
        When the tiles differ in size, settings differ other than in seed, or the batch
        would not fit in the device's memory.

    Examples
    --------
    >>> tiles = [torch.rand(3, 32, 32), torch.rand(3, 32, 32)]
    >>> fitter = BatchedFitter(tiles, FitSettings(width=4))
    >>> [(s.tiles, s.t, tuple(s.outputs.shape)) for s in fitter.run(2)]  # doctest: +SKIP
    [([0, 1], [1, 1], (2, 1, 3, 32, 32)), ([0, 1], [2, 2], (2, 1, 3, 32, 32))]
    """

    def __init__(
        self,
        tiles: Sequence[torch.Tensor],
        settings: FitSettings | Sequence[FitSettings],
        device: str | torch.device | None = None,
    ) -> None:
        count = len(tiles)
        if count < 1:
            raise DipstopError("a batch needs at least one tile")
        shapes = {tuple(x.shape) for x in tiles}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3:
            raise DipstopError(f"batched tiles must be C x H x W of one size, got {shapes}")
        each = [settings] * count if isinstance(settings, FitSettings) else list(settings)
        if len(each) != count:
            raise DipstopError(f"{len(each)} settings for {count} tiles")
        if len({replace(s, seed=0) for s in each}) != 1:
            raise DipstopError("batched tiles must share their settings but for the seed")
        self.settings = each[0]
        self.seeds = [s.seed for s in each]
        self.device = resolve_device(device)
        # each tile's network, z and padding exactly as its own fit would have them
        fitters = [Fitter(x, s, self.device) for x, s in zip(tiles, each, strict=True)]
        first = fitters[0]
        self.pad, self.height, self.width = first.pad, first.height, first.width
        self.shape = first.shape  # 1 x input_depth x padded H x padded W
        self._check_memory(count)
        names = [n for n, _ in first.net.named_parameters()]
        self._layout: list[tuple[str, int, int, tuple[int, ...]]] = []
        offset = 0
        for name, p in first.net.named_parameters():
            self._layout.append((name, offset, offset + p.numel(), tuple(p.shape)))
            offset += p.numel()
        rows = []
        for f in fitters:
            params = dict(f.net.named_parameters())
            rows.append(torch.cat([params[n].detach().reshape(-1) for n in names]))
        self.flat = torch.stack(rows).contiguous()  # K x N: one row of weights per tile
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.z = torch.stack([f.z.contiguous() for f in fitters])  # K x 1 x D x H' x W'
        self.x0 = torch.stack([f.x0 for f in fitters])  # K x 1 x C x H x W
        # Adam as make_adam makes it (fused where this PyTorch has it for the device)
        group = make_adam([torch.nn.Parameter(self.flat[0, :1].clone())], self.settings.lr)
        self._adam = {k: group.defaults[k] for k in ("lr", "betas", "eps", "weight_decay")}
        self._fused = bool(group.defaults.get("fused"))
        step_device = self.device if self._fused else torch.device("cpu")
        self.steps = torch.zeros(count, dtype=torch.float32, device=step_device)
        # the guard's snapshot, one row per tile: before any step, Adam has no state
        self.snap_flat, self.snap_avg = self.flat.clone(), self.exp_avg.clone()
        self.snap_avg_sq, self.snap_steps = self.exp_avg_sq.clone(), self.steps.clone()
        self.snap_loss = [math.inf] * count
        self.previous_loss = [math.inf] * count
        self.t = [0] * count
        self.restores = [0] * count
        self.active = list(range(count))
        self.step_seconds = 0.0
        self._leaving: set[int] = set()
        self._final: dict[int, torch.Tensor] = {}  # the rows of the tiles that have left
        # one perturbation stream per distinct seed: tiles of one seed draw the same values
        self._noise = {
            s: torch.Generator(device=self.device).manual_seed(s + 1) for s in set(self.seeds)
        }
        template = copy.deepcopy(first.net)
        for m in template.modules():  # vmap cannot update shared running statistics
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.track_running_stats, m.running_mean, m.running_var = False, None, None
                m.num_batches_tracked = None
        self._template = template.to("meta")
        self._forward = vmap(self._one_forward)
        self._leaves: dict[str, torch.Tensor] = {}
        self._bind()
        del fitters

    @property
    def tiles(self) -> int:
        """How many tiles the batch was made with."""
        return len(self.t)

    def leave(self, tile: int) -> None:
        """Take `tile` out of the batch before the next step (its stop fired).

        Its parameters are no longer computed or changed; `parameters(tile)` keeps them.
        """
        if tile in self.active:
            self._leaving.add(tile)

    def parameters(self, tile: int) -> torch.Tensor:
        """The tile's flat parameter row now (its last state once it has left)."""
        if tile in self.active:
            return self.flat[self.active.index(tile)].detach().clone()
        return self._final[tile]

    def run(self, max_iters: int) -> Iterator[BatchStep]:
        """Step the batch until every tile has left or reached iteration `max_iters` (T).

        Parameters
        ----------
        max_iters : int
            T: a tile leaves the batch after its step T.

        Yields
        ------
        BatchStep
            Each step's advanced tiles, iterations, losses and host outputs. A step in which
            the guard restored every tile still in the batch yields nothing.

        Raises
        ------
        DipstopError
            When a tile's guard has restored more than `max_restores` times.
        """
        s = self.settings
        limit = 10 ** (s.guard_db / 10)
        while True:
            self._drop(self._leaving | {k for k in self.active if self.t[k] >= max_iters})
            self._leaving.clear()
            if not self.active:
                return
            start = time.perf_counter()
            z_t = torch.add(self.z, self._perturbation(), alpha=s.z_noise_std)
            leaves = list(self._leaves.values())
            bf16 = s.bf16
            with torch.autocast(
                self.device.type, torch.bfloat16, enabled=bf16, cache_enabled=False
            ):
                y = self._forward(self._leaves, z_t)
            top, left = self.pad[2], self.pad[0]
            y = y[..., top : top + self.height, left : left + self.width].float()
            losses = F.mse_loss(y, self.x0, reduction="none").mean(dim=(1, 2, 3, 4))
            values = losses.detach().tolist()
            good, bad = [], []
            for row, (k, value) in enumerate(zip(self.active, values, strict=True)):
                if not math.isfinite(value) or value > self.previous_loss[k] * limit:
                    bad.append(row)
                else:
                    good.append(row)
            for row in bad:
                k = self.active[row]
                self.restores[k] += 1
                if self.restores[k] > s.max_restores:
                    raise DipstopError(
                        f"the fit of tile {k} diverged {self.restores[k]} times (loss "
                        f"{values[row]:.3g} at iteration {self.t[k] + 1}); lower the learning "
                        "rate (--lr)"
                    )
            due = []
            for row in good:
                k = self.active[row]
                self.t[k] += 1
                if self.t[k] % s.snapshot_every == 0:  # taken before this step's update
                    due.append(row)
                    self.snap_loss[k] = values[row]
            if due:
                self._snapshot(due)
            if good:
                grads = torch.autograd.grad(losses.sum(), leaves)
                grad = torch.cat([g.reshape(len(self.active), -1) for g in grads], dim=1)
                self._adam_step(grad)
            if bad:  # back to the snapshot: parameters, moments and step count
                self._restore(bad)
            kept = y.detach() if len(good) == len(values) else y.detach()[good]
            outputs = kept.cpu() if good else None
            for row in good:
                self.previous_loss[self.active[row]] = values[row]
            for row in bad:
                k = self.active[row]
                self.previous_loss[k] = self.snap_loss[k]
            del y, losses
            self.step_seconds += time.perf_counter() - start
            if good:
                assert outputs is not None
                ids = [self.active[r] for r in good]
                yield BatchStep(ids, [self.t[k] for k in ids], [values[r] for r in good], outputs)

    def _one_forward(self, params: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """One tile's network on its z (vmapped over the tiles)."""
        return functional_call(self._template, params, (z,))

    def _perturbation(self) -> torch.Tensor:
        """Each active tile's fresh N(0, 1) draw from its own seed + 1 stream, stacked.

        Every distinct seed draws once per step, as each tile's `Fitter` would: tiles of one
        seed would draw the same values, so they share one draw.
        """
        seeds = sorted({self.seeds[k] for k in self.active})
        draws = {s: torch.randn(self.shape, generator=self._noise[s], device=self.device)
                 for s in seeds}  # fmt: skip
        if len(seeds) == 1:
            return draws[seeds[0]].unsqueeze(0).expand(len(self.active), *self.shape)
        return torch.stack([draws[self.seeds[k]] for k in self.active])

    def _adam_step(self, grad: torch.Tensor) -> None:
        """Adam on every row (tile), each with its own step count; rows the guard restores
        are overwritten afterwards. The same `torch.optim.adam` arithmetic as `make_adam`'s
        optimizer on each tile's own parameters."""
        lr, (beta1, beta2) = self._adam["lr"], self._adam["betas"]
        with torch.no_grad():
            adam_step(
                list(self.flat.unbind(0)),
                list(grad.unbind(0)),
                list(self.exp_avg.unbind(0)),
                list(self.exp_avg_sq.unbind(0)),
                [],
                list(self.steps.unbind(0)),
                fused=self._fused or None,
                amsgrad=False,
                beta1=beta1,
                beta2=beta2,
                lr=lr,
                weight_decay=self._adam["weight_decay"],
                eps=self._adam["eps"],
                maximize=False,
            )

    def _snapshot(self, rows: list[int]) -> None:
        """Copy these rows' state into the guard's snapshot."""
        idx = torch.tensor(rows, device=self.device)
        for live, snap in self._pairs():
            snap.index_copy_(0, idx.to(snap.device), live.index_select(0, idx.to(live.device)))

    def _restore(self, rows: list[int]) -> None:
        """Copy these rows' snapshot back into the live state (in place: leaves share it)."""
        idx = torch.tensor(rows, device=self.device)
        with torch.no_grad():
            for live, snap in self._pairs():
                live.index_copy_(0, idx.to(live.device), snap.index_select(0, idx.to(snap.device)))

    def _pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [
            (self.flat, self.snap_flat),
            (self.exp_avg, self.snap_avg),
            (self.exp_avg_sq, self.snap_avg_sq),
            (self.steps, self.snap_steps),
        ]

    def _drop(self, tiles: set[int]) -> None:
        """Remove these tiles' rows from every stacked tensor; keep their final weights."""
        tiles = tiles & set(self.active)
        if not tiles:
            return
        for k in tiles:
            self._final[k] = self.flat[self.active.index(k)].detach().clone()
        keep = [r for r, k in enumerate(self.active) if k not in tiles]
        self.active = [self.active[r] for r in keep]
        if not keep:
            return
        idx = torch.tensor(keep, device=self.device)
        for name in ("flat", "exp_avg", "exp_avg_sq", "snap_flat", "snap_avg", "snap_avg_sq",
                     "z", "x0", "steps", "snap_steps"):  # fmt: skip
            tensor = getattr(self, name)
            setattr(self, name, tensor.index_select(0, idx.to(tensor.device)).contiguous())
        self._bind()

    def _bind(self) -> None:
        """Per-parameter K x ... leaves that share storage with the flat rows."""
        k = len(self.active)
        self._leaves = {
            name: self.flat[:, a:b].view(k, *shape).detach().requires_grad_()
            for name, a, b, shape in self._layout
        }

    def _check_memory(self, count: int) -> None:
        """Refuse a batch that would not fit: K tiles need about K fits' activations."""
        _, _, h, w = self.shape
        need = estimate_bytes(count * h * w, self.settings.width)
        have = available_bytes(self.device)
        if have is not None and need > have:
            raise DipstopError(
                f"{count} tiles of {self.width}x{self.height} at width {self.settings.width} "
                f"need about {need / 2**30:.1f} GiB, {self.device.type} has "
                f"{have / 2**30:.1f} GiB free; batch fewer tiles"
            )


@dataclass
class TileFit:
    """One tile's result from `fit_tiles_batched`, as its own `record` run would give it.

    Attributes
    ----------
    output : Tensor
        The output policy's image, C x H x W float32 on the CPU.
    stop_iteration : int
        t*, 1-based (the Eq. 4 rule's best iteration, or the minimum's when T came first).
    iterations : int
        Rows recorded: t* + S when the rule fired, else T.
    stopped_early : bool
        Whether the rule fired before T.
    series : dict of str to ndarray
        "mse", "jpeg_bytes", each average's "mse_NAME" and "jpeg_bytes_NAME", "criterion"
        (the values the rule saw) and "seconds", one value per recorded iteration.
    restores : int
        Divergence-guard restores of this tile.
    """

    output: torch.Tensor
    stop_iteration: int
    iterations: int
    stopped_early: bool
    series: dict[str, np.ndarray]
    restores: int = 0


def fit_tiles_batched(
    tiles: Sequence[torch.Tensor],
    settings: FitSettings | Sequence[FitSettings],
    lam: float,
    patience: int,
    max_iters: int,
    device: str | torch.device | None = None,
    *,
    output: str = DEFAULT_OUTPUT,
    burn_in: int = 0,
    depth: int = DEFAULT_DEPTH,
    threads: int | None = None,
    on_row: Callable[[int, int, torch.Tensor, dict[str, float]], None] | None = None,
) -> list[TileFit]:
    """Denoise K same-sized tiles as one batched fit, each stopped by its own CIFS.

    Each tile gets what `dipstop.denoise` gives a tile of its own: a CIFS criterion on the
    JPEG of its own 8-bit output with weight `lam`, the Eq. 4 stop with patience S, and the
    output policy `output` ("since-best" by default: the mean of y_{t*} .. y_{t*+S}).

    Parameters
    ----------
    tiles : sequence of Tensor
        K noisy tiles, C x H x W float in [0, 1], one size.
    settings : FitSettings or sequence of FitSettings
        The fits' settings (one per tile may differ in seed only).
    lam : float
        CIFS weight (dipstop's size-invariant lam), above 0.
    patience : int
        S, at least 1.
    max_iters : int
        T, at least 1.
    device : str or torch.device, optional
        Where to fit (None: CUDA when available).
    output : str
        Output policy name (`dipstop.policies.make_policy`).
    burn_in : int
        B: each tile's t* comes after its first B iterations (`stopping.OnlineStopper`).
    depth : int
        Steps the host's JPEG encodes may run behind the batch (0: inline).
    threads : int, optional
        Threads encoding a step's K JPEGs (default: min(K, CPU count)).
    on_row : callable, optional
        `on_row(tile, t, output, row)` for every row recorded, in each tile's order
        (output: 1 x C x H x W on the CPU).

    Returns
    -------
    list of TileFit
        One per tile, in the order given.

    Examples
    --------
    >>> tiles = [torch.rand(3, 32, 32) for _ in range(2)]
    >>> fits = fit_tiles_batched(tiles, FitSettings(width=4), lam=50.0, patience=3,
    ...                          max_iters=6, device="cpu")
    >>> [(tuple(f.output.shape), f.iterations <= 6, len(f.series["mse"])) for f in fits]
    [((3, 32, 32), True, 6), ((3, 32, 32), True, 6)]
    """
    if not lam > 0:
        raise DipstopError(f"lam must be positive, got {lam}")
    if patience < 1 or max_iters < 1:
        raise DipstopError("patience and max_iters must be at least 1")
    fitter = BatchedFitter(tiles, settings, device)
    count = fitter.tiles
    cifs = CifsCriterion()
    pixels = fitter.height * fitter.width
    policies = [make_policy(output) for _ in range(count)]
    stops = [OnlineStop(cifs, Context(pixels, lam), patience, p.stream, burn_in)
             for p in policies]  # fmt: skip
    for p in policies:
        p.begin(max_iters, patience)
    averages = [p.averages() for p in policies]
    names = series_names([cifs], averages[0], False, (), True)
    rows: list[list[dict[str, float]]] = [[] for _ in range(count)]
    finished = [False] * count
    x0 = [x.detach().to("cpu", torch.float32).unsqueeze(0) for x in tiles]
    began = time.perf_counter()

    def produce() -> Iterator[tuple[BatchStep, list[dict], list[dict], list]]:
        """In step order on the main thread: averages, their 8-bit copies, policy views."""
        for step in fitter.run(max_iters):
            base, images, views = [], [], []
            for j, (k, loss) in enumerate(zip(step.tiles, step.loss, strict=True)):
                y = step.outputs[j]
                row: dict[str, float] = {"mse": loss}
                current, pics = {}, {}
                for name, avg in averages[k].items():
                    a = current[name] = avg.update(y)
                    row[f"mse_{name}"] = float(F.mse_loss(a, x0[k]))
                    pics[name] = tensor_to_uint8(a)
                base.append(row)
                images.append(pics)
                views.append(policies[k].view(y, current))
            yield step, base, images, views

    def score(item: tuple[BatchStep, list[dict], list[dict], list]) -> list[dict[str, float]]:
        """Host work, behind the batch: each tile's JPEG of its output and averages."""
        step, _, images, _ = item

        def one(j: int) -> dict[str, float]:
            row = dict(cifs.measure(_sample(step, j)))
            for name, pic in images[j].items():
                row[f"jpeg_bytes_{name}"] = cifs.measure(_sample(step, j, pic))["jpeg_bytes"]
            return row

        return list(pool.map(one, range(len(step.tiles))))

    workers = threads or min(count, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dipstop-jpeg") as pool:
        for (step, base, _, views), host in overlapped(produce(), score, depth):
            for j, k in enumerate(step.tiles):
                if finished[k]:  # a look-ahead step past this tile's stop: discarded
                    continue
                row = {**base[j], **host[j]}
                stop = stops[k]
                row["criterion"] = value = stop.value(row)
                done = stop.stopper.update(value)
                policies[k].keep(views[j], stop.stopper.improved)
                row["seconds"] = time.perf_counter() - began
                rows[k].append(row)
                if on_row is not None:
                    on_row(k, step.t[j], step.outputs[j], row)
                if done or step.t[j] >= max_iters:
                    finished[k] = True
                    fitter.leave(k)
            if all(finished):
                break
    fits = []
    for k in range(count):
        stopper = stops[k].stopper
        result = policies[k].result()
        assert result is not None
        fits.append(
            TileFit(
                output=result.reshape(result.shape[-3:]).float(),
                stop_iteration=stopper.best_index + 1,
                iterations=len(rows[k]),
                stopped_early=stopper.done,
                series={n: np.array([r.get(n, np.nan) for r in rows[k]], float) for n in names},
                restores=fitter.restores[k],
            )
        )
    return fits


def _sample(step: BatchStep, j: int, image: np.ndarray | None = None) -> Sample:
    """The CIFS sample of tile row j of a step: its 8-bit output (or the image given)."""
    if image is None:
        image = tensor_to_uint8(step.outputs[j])
    return Sample(step.t[j], step.loss[j], image=image)
