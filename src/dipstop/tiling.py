"""Tiled denoising for big photos: overlapping tiles, each fitted and stopped on its own.

A 12-megapixel photo cannot be fitted whole: the fit would need about 120 GiB at width 64
(`dipstop.memory`) and days on a CPU. `denoise_tiled` cuts the image into overlapping square
tiles (`plan_tiles`), denoises each with `dipstop.api.denoise` (its own fit, its own CIFS
stop, the same sigma and lam for all: sigma is estimated once on the whole image unless
given, and lam is read at the tile's size), and blends the outputs with a raised-cosine crossfade in
the middle of each overlap (`TilePlan.weights`). The weights of the tiles covering a pixel
sum to 1 everywhere, so a tile that returned its input unchanged would give the input back
exactly and a smooth image shows no seam. Memory is a tile's fit per tile fitted at once (one
per core on a CPU, as memory allows) plus the float image and its output buffer, whatever
the photo's size; `dipstop.api.denoise` tiles by itself above
`tile_above` pixels (by default, beyond the sizes its lam table was calibrated at).

The default tile is 128 px: the lam table is calibrated on 128 x 128 crops.
"""

from __future__ import annotations

import functools
import math
import queue
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dipstop.checkpoints import hold, image_spec, run_key, why_unreadable, write_atomically
from dipstop.errors import DipstopError
from dipstop.memory import available_bytes, estimate_bytes
from dipstop.validate import check_denoise_options, check_tiling

if TYPE_CHECKING:
    from collections.abc import Callable

    from dipstop.api import DenoiseResult
    from dipstop.estimate import RunEstimate
    from dipstop.imageio import LoadedImage

TILE = 128  # the side of the crops the lam table is calibrated on
OVERLAP = 32  # pixels two neighbouring tiles share (at least; the plan spreads any slack)
TILE_ABOVE = 1_000_000  # the most pixels `denoise` fits whole by default (memory bound)

__all__ = [
    "OVERLAP",
    "TILE",
    "TILE_ABOVE",
    "TilePlan",
    "TileRun",
    "TiledResult",
    "axis_starts",
    "axis_weights",
    "denoise_tiled",
    "plan_tiles",
]


# -- the plan --------------------------------------------------------------------------------


def axis_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Starts of the fewest tiles of side `tile` covering [0, n) with at least `overlap` shared.

    The first tile starts at 0 and the last ends at n; the starts between are spread
    evenly, so every overlap is `overlap` or a little more. A side no longer than a tile is
    one tile (of side n).

    Parameters
    ----------
    n : int
        The image's side.
    tile, overlap : int
        Tile side, and the least overlap of neighbours (below `tile`).

    Returns
    -------
    list of int

    Examples
    --------
    >>> axis_starts(130, 64, 16), axis_starts(50, 64, 16), axis_starts(64, 64, 16)
    ([0, 33, 66], [0], [0])
    """
    if n <= tile:
        return [0]
    k = 1 + math.ceil((n - tile) / (tile - overlap))
    return [(i * (n - tile) + (k - 1) // 2) // (k - 1) for i in range(k)]


def axis_weights(n: int, starts: list[int], side: int, overlap: int) -> list[np.ndarray]:
    """Blending weights along one axis: one array of length `side` per tile, summing to 1.

    Where two neighbours overlap, the crossfade is a raised cosine over `overlap` pixels (or
    the whole overlap, if shorter) centred in the overlap: the earlier tile's weight falls
    from 1 to 0 as the later one's rises, and the two sum to 1. Elsewhere a pixel's one
    tile has weight 1. The weights are then divided by their sum over the tiles, which
    only matters where two crossfades would meet (they do not in a `axis_starts` plan).

    Parameters
    ----------
    n : int
        The image's side.
    starts : list of int
        The tiles' starts (`axis_starts`).
    side : int
        The tiles' side along this axis (min(tile, n)).
    overlap : int
        The crossfade's length.

    Returns
    -------
    list of ndarray
        float64, one per tile, in tile coordinates.

    Examples
    --------
    Two tiles of 64 on 100 px share [36, 64); the 8-px crossfade is its middle, [46, 54):

    >>> w = axis_weights(100, [0, 36], 64, 8)
    >>> [round(float(v), 3) for v in w[0][45:55]]
    [1.0, 0.99, 0.916, 0.778, 0.598, 0.402, 0.222, 0.084, 0.01, 0.0]
    >>> float(w[0][50] + w[1][50 - 36])
    1.0
    """
    weights = [np.ones(side) for _ in starts]
    for j in range(len(starts) - 1):
        shared = starts[j] + side - starts[j + 1]  # the overlap's length
        r = max(0, min(overlap, shared))
        a = starts[j + 1] + (shared - r) // 2  # where the crossfade starts, image coordinates
        # a raised cosine, symmetric: rise[i] + rise[r - 1 - i] = 1
        rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / max(r, 1))
        before_next = a - starts[j + 1]
        weights[j + 1] *= np.concatenate(
            [np.zeros(before_next), rise, np.ones(side - before_next - r)]
        )
        before_this = a - starts[j]
        weights[j] *= np.concatenate(
            [np.ones(before_this), 1 - rise, np.zeros(side - before_this - r)]
        )
    total = np.zeros(n)
    for s, w in zip(starts, weights, strict=True):
        total[s : s + side] += w
    return [w / total[s : s + side] for s, w in zip(starts, weights, strict=True)]


@dataclass(frozen=True)
class TilePlan:
    """Overlapping tiles covering an H x W image exactly, and their blending weights.

    Made by `plan_tiles`. Tiles form a grid: every row start with every column start. Every
    tile lies inside the image and is `tile_h` x `tile_w` (the tile side, or the image's
    side where the image is smaller).

    Attributes
    ----------
    height, width : int
        The image's size.
    tile, overlap : int
        Requested tile side and least overlap.
    rows, cols : tuple of int
        Tile starts along y and x.
    tile_h, tile_w : int
        Every tile's size.
    """

    height: int
    width: int
    tile: int
    overlap: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    tile_h: int
    tile_w: int

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) of every tile, row by row."""
        return [(r, c, self.tile_h, self.tile_w) for r in self.rows for c in self.cols]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def weights(self) -> Iterator[np.ndarray]:
        """Every tile's tile_h x tile_w float32 weights, in `boxes` order, made one at a time
        (the outer product of the per-axis weights); they sum to 1 at every pixel."""
        return (self.weight(i) for i in range(len(self)))

    def weight(self, index: int) -> np.ndarray:
        """The weights of tile `index` (in `boxes` order), as `weights` gives them."""
        wy, wx = self._axis_weights
        row, col = divmod(index, len(self.cols))
        return np.outer(wy[row], wx[col]).astype(np.float32)

    @functools.cached_property
    def _axis_weights(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return (
            axis_weights(self.height, list(self.rows), self.tile_h, self.overlap),
            axis_weights(self.width, list(self.cols), self.tile_w, self.overlap),
        )


def plan_tiles(height: int, width: int, tile: int = TILE, overlap: int = OVERLAP) -> TilePlan:
    """The tile plan of an H x W image (`axis_starts` along each axis).

    Parameters
    ----------
    height, width : int
        The image's size.
    tile : int
        Tile side, at least 64 (the network pads anything smaller to 64).
    overlap : int
        Least overlap of neighbouring tiles, from 0 to tile // 2.

    Returns
    -------
    TilePlan

    Raises
    ------
    DipstopError
        For a tile or overlap out of range.

    Examples
    --------
    >>> plan = plan_tiles(97, 130, tile=64, overlap=16)
    >>> plan.rows, plan.cols, len(plan), plan.boxes()[-1]
    ((0, 33), (0, 33, 66), 6, (33, 66, 64, 64))
    """
    check_tiling(tile, overlap)
    return TilePlan(
        height,
        width,
        tile,
        overlap,
        tuple(axis_starts(height, tile, overlap)),
        tuple(axis_starts(width, tile, overlap)),
        min(tile, height),
        min(tile, width),
    )


# -- the result ------------------------------------------------------------------------------


@dataclass
class TileRun:
    """One tile of a tiled run: where it is and what its fit did (None: not fitted, the
    run was interrupted first; the tile kept the noisy pixels)."""

    top: int
    left: int
    height: int
    width: int
    result: DenoiseResult | None

    def summary(self) -> dict:
        r = self.result
        return {
            "box": [self.top, self.left, self.height, self.width],
            "stop_iteration": r.stop_iteration if r else None,
            "iterations_run": r.iterations_run if r else 0,
            "stopped_early": r.stopped_early if r else False,
            "seconds": r.seconds if r else 0.0,
            "psnr": r.psnr if r else None,
            "interrupted": r.interrupted if r else False,
            "stopped_by_budget": r.stopped_by_budget if r else False,
        }


@dataclass
class TiledResult:
    """What a tiled run did: each tile's own stop, and the whole.

    Attributes
    ----------
    tiles : list of TileRun
        Every tile, row by row, with its DenoiseResult (t*, iterations, seconds, series).
    sigma, sigma_estimated : float, bool
        The one noise level of all tiles (estimated on the whole image unless given).
    lam : float
        The one lam of all tiles.
    tile, overlap : int
        The plan's tile side and least overlap.
    settings : dict
        The tiles' fit settings (protocol, width, seed, device, output policy).
    seconds : float
        Wall time of the whole run (sigma, fits, blending).
    psnr : float or None
        With a clean image: PSNR of the blended image (before conversion to the input's
        dtype).
    notes : list of str
        Caveats about the lam table, and what an interruption left undenoised.
    interrupted : bool
        Ctrl-C ended the run (with `interruptible`): the tile being fitted returned its best
        so far, tiles after it kept the noisy pixels.
    stopped_by_budget : bool
        The time budget (`max_minutes`, shared out over the tiles) ended a tile's fit before
        its stopping rule, or left tiles unfitted (they keep the noisy pixels).
    estimate : RunEstimate or None
        The whole run's estimate, made on the first tile (`RunEstimate.for_tiles`).
    """

    tiles: list[TileRun]
    sigma: float
    sigma_estimated: bool
    lam: float
    tile: int
    overlap: int
    settings: dict
    seconds: float = 0.0
    psnr: float | None = None
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    stopped_by_budget: bool = False
    estimate: RunEstimate | None = None

    @property
    def fitted(self) -> list[DenoiseResult]:
        """The DenoiseResults of the tiles that were fitted."""
        return [t.result for t in self.tiles if t.result is not None]

    @property
    def stop_iterations(self) -> list[int]:
        """t* of every fitted tile."""
        return [r.stop_iteration for r in self.fitted]

    @property
    def iterations_run(self) -> int:
        """Iterations fitted over all tiles."""
        return sum(r.iterations_run for r in self.fitted)

    @property
    def stopped_early(self) -> bool:
        """Whether every tile was fitted and stopped by the Eq. 4 rule before T."""
        return len(self.fitted) == len(self.tiles) and all(r.stopped_early for r in self.fitted)

    def describe(self) -> str:
        """One line: tiles, their stops (range and median), iterations and seconds."""
        stops = self.stop_iterations
        how = "estimated" if self.sigma_estimated else "given"
        early = sum(r.stopped_early for r in self.fitted)
        text = (
            f"sigma {self.sigma:.1f} ({how}), lam {self.lam:.4g}: {len(self.fitted)} of "
            f"{len(self.tiles)} tiles of {self.tile} px (overlap {self.overlap}) fitted, "
            f"{early} stopped early"
        )
        if stops:
            text += f", t* {min(stops)}-{max(stops)} (median {int(np.median(stops))})"
        return text + f", {self.iterations_run} iterations in {self.seconds:.0f} s"

    def summary(self) -> dict:
        """The scalar fields and one summary per tile, for JSON reports."""
        out = {k: v for k, v in self.__dict__.items() if k != "tiles"}
        out["estimate"] = None if self.estimate is None else asdict(self.estimate)
        out["stop_iterations"] = self.stop_iterations
        out["iterations_run"] = self.iterations_run
        out["stopped_early"] = self.stopped_early
        out["tiles"] = [t.summary() for t in self.tiles]
        return out


# -- running ---------------------------------------------------------------------------------


def denoise_tiled(
    image: Any, *, tile: int = TILE, overlap: int = OVERLAP, **options: Any
) -> tuple[Any, TiledResult]:
    """Denoise `image` tile by tile, whatever its size; `denoise`'s options apply to each tile.

    `dipstop.denoise` does this by itself for images above its `tile_above` pixels.

    Parameters
    ----------
    image : ndarray, PIL.Image or Tensor
        As for `dipstop.denoise`; it comes back in the same form, channels and dtype.
    tile : int
        Tile side (default 128, the lam table's calibration size).
    overlap : int
        Least overlap of neighbouring tiles (default 32), blended by a raised cosine.
    **options
        Any keyword of `dipstop.denoise` (sigma, lam, width, max_iters, clean, device, ...).

    Returns
    -------
    denoised : same form as `image`
    result : TiledResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noisy = rng.integers(0, 256, (70, 100), dtype=np.uint8)
    >>> out, res = denoise_tiled(noisy, tile=64, overlap=16, width=8, max_iters=2, lam=50.0)
    >>> out.shape, out.dtype, len(res.tiles), len(res.stop_iterations)
    ((70, 100), dtype('uint8'), 4, 4)
    """
    from dipstop import api

    for name in options:
        if name not in api.OPTIONS or name == "tile_above":
            raise TypeError(f"denoise_tiled() got an unexpected keyword argument {name!r}")
    checked = ("sigma", "lam", "protocol", "width", "max_iters", "patience", "lr")
    checked += ("z_noise_std", "seed", "table", "device", "max_minutes", "precision")
    check_denoise_options(**{k: options[k] for k in checked if k in options})
    check_tiling(tile, overlap)
    loaded, kind = api._to_loaded(image)
    return run_tiles(loaded, kind, image, tile=tile, overlap=overlap, **options)


def run_tiles(
    loaded: LoadedImage,
    kind: str,
    original: Any,
    *,
    resume_dir: str | Path | None = None,
    **options: Any,
) -> tuple[Any, TiledResult]:
    """`_run_tiles`, holding `<resume_dir>.lock` while it runs when it keeps tiles.

    Two runs keeping tiles in one folder would each empty it of the other's tiles (their
    keys differ) or write the same files: the second is refused in one line
    (`checkpoints.hold`).
    """
    if resume_dir is None:
        return _run_tiles(loaded, kind, original, **options)
    lock = Path(f"{resume_dir}.lock")
    busy = (
        f"another dipstop run is keeping its tiles in {resume_dir} (lock {lock}); wait for "
        "it, or give this one another folder"
    )
    with hold(lock, busy):
        return _run_tiles(loaded, kind, original, resume_dir=resume_dir, **options)


def _run_tiles(
    loaded: LoadedImage,
    kind: str,
    original: Any,
    *,
    tile: int,
    overlap: int,
    sigma: float | None = None,
    lam: float | None = None,
    clean: Any = None,
    progress: bool = False,
    interruptible: bool = False,
    max_minutes: float | None = None,
    on_estimate: Callable[[RunEstimate], None] | None = None,
    cancel: threading.Event | None = None,
    ray: str | None = None,
    resume_dir: str | Path | None = None,
    **fit: Any,
) -> tuple[Any, TiledResult]:
    """The tiled run of an image already split by `dipstop.api._to_loaded` (options checked).

    Every check that can refuse the run (sizes, memory of one tile's fit, the clean image)
    comes before the first fit. A time budget is shared out when it can be: the first tile
    may use all of it, and tells what a tile costs; each next tile may use what is left over
    the rounds of tiles left (a tile that stops early leaves more to the others) while that
    share is at least half the first tile's time. Below that, shares would cut every fit to
    a few iterations, an image worse than the noisy one, so the tiles are fitted in full
    until the budget is spent, and the tiles left keep the noisy pixels. The first tile's
    estimate, scaled to all tiles, is the run's (`on_estimate`, `TiledResult.estimate`).

    On a CPU the tiles run in this process as one single-thread fit per thread of torch's
    pool (`tile_workers`; two 1-thread fits of a 128 x 128 tile get more done than one
    2-thread fit), blended here as they finish; on a GPU one after another. With `ray` the
    tiles are Ray tasks (`fit_remotely`, one single-thread fit per core); the budget is then
    a deadline. Ctrl-C (with `interruptible`) or `cancel` ends the running tiles with their
    best so far and fits no more. With `resume_dir` every tile that ends by its rule (or T) is
    kept there as it finishes (`TileStore`), and the tiles found there from an earlier run
    of the same image and settings are blended, not fitted again.
    """
    from tqdm import tqdm

    from dipstop import api
    from dipstop.fitting import padding_for, resolve_device, resolve_precision
    from dipstop.imageio import join_array
    from dipstop.lambda_table import load_table
    from dipstop.memory import check_fits
    from dipstop.metrics import psnr
    from dipstop.noise import estimate_sigma
    from dipstop.policies import DEFAULT_OUTPUT, make_policy
    from dipstop.protocols import get_protocol

    start = time.perf_counter()
    x = loaded.pixels
    height, width_px = x.shape[:2]
    padding_for(height, width_px)  # a side under 32 px: the whole-image message
    plan = plan_tiles(height, width_px, tile, overlap)
    proto = get_protocol(fit.get("protocol", "cpu")).with_(
        **{k: fit.get(k) for k in ("width", "max_iters", "patience", "lr", "z_noise_std")}
    )
    output = make_policy(fit.get("output", DEFAULT_OUTPUT)).name  # fails here, not in a tile
    left, right, top, bottom = padding_for(plan.tile_h, plan.tile_w)
    padded = (plan.tile_h + top + bottom) * (plan.tile_w + left + right)
    if ray is None:  # Ray tasks run on the cluster's devices, not necessarily this machine's
        device = resolve_device(fit.get("device"))
        check_fits(plan.tile_h, plan.tile_w, padded, proto.width, device)
    clean_px = None
    if clean is not None:
        clean_px = api._to_loaded(clean)[0].pixels
        if clean_px.shape != x.shape:
            raise DipstopError(
                f"clean image is {clean_px.shape}, noisy is {x.shape}; they must match"
            )
    sigma_estimated = sigma is None
    if sigma is None:
        sigma = estimate_sigma(x)
    notes: list[str] = []
    tile_lam = lam  # what each tile's fit is given
    table = None  # the lam table read, when lam comes from one
    if lam is None:
        tile_pixels = plan.tile_h * plan.tile_w  # each tile is fitted, and stopped, alone
        table = load_table(fit.get("table"), output=output)
        lam, notes = api.lam_from_table(sigma, table, proto.width, output, tile_pixels)
        # a tile given sigma looks the same lam up itself, and the table's expected stop with
        # it (for the run's estimate); a tile's own sigma estimate would differ from tile to tile
        tile_lam = None if sigma > 0 else lam

    # the blended image, in float64: tiles come in any order (threads, Ray, resumed) and the
    # float32 image is then the same whatever the order of the sums
    acc = np.zeros(x.shape, np.float64)
    boxes = plan.boxes()
    deadline = None if max_minutes is None else start + float(max_minutes) * 60.0
    estimates: list[RunEstimate] = []
    tile_fit = dict(sigma=sigma if sigma > 0 else None, lam=tile_lam, tile=None, **fit)
    done: dict[int, DenoiseResult | None] = {}  # tile index -> its fit (None: not fitted)
    interrupted = False
    store = None
    if resume_dir is not None:
        precision = fit.get("precision", "auto")
        if ray is None and precision == "auto":  # as each tile's `denoise` resolves it
            precision = "fp32" if output == "raw" else resolve_precision(precision, device)
        kept = tiles_spec(x, clean_px, sigma, lam, table, proto.as_dict(), output, precision,
                          tile, overlap, fit)  # fmt: skip
        store = TileStore(resume_dir, run_key(kept))
    shapes = {i: (h, w, x.shape[2]) for i, (_, _, h, w) in enumerate(boxes)}
    resumed = {} if store is None else store.load(shapes)
    todo = [i for i in range(len(boxes)) if i not in resumed]
    if resumed:
        notes.append(f"resumed {len(resumed)} of {len(boxes)} tiles kept in {store.folder}")

    def whole_run(first_tile: RunEstimate, parallel: int = 1) -> None:
        estimates.append(first_tile.for_tiles(len(todo), max_minutes, parallel))
        if on_estimate is not None:
            on_estimate(estimates[0])

    def region(i: int) -> tuple[slice, slice]:
        r, c, h, w = boxes[i]
        return slice(r, r + h), slice(c, c + w)

    def clean_of(i: int) -> np.ndarray | None:
        return None if clean_px is None else clean_px[region(i)]

    def blend(i: int, out: np.ndarray | None, result: DenoiseResult | None) -> None:
        """Add tile i's output (its noisy pixels when it was not fitted) to the image."""
        box = region(i)
        acc[box] += (x[box] if result is None else out) * plan.weight(i)[:, :, None]
        done[i] = result
        bar.update(1)
        if result is not None:
            bar.set_postfix(t_star=result.stop_iteration, refresh=False)
        finished = result is not None and not result.interrupted and not result.stopped_by_budget
        if store is not None and finished and i not in resumed:
            store.save(i, out, result)

    bar = tqdm(total=len(boxes), disable=not progress, unit="tile", dynamic_ncols=True)
    with bar:
        for i, (out, result) in resumed.items():
            blend(i, out, result)
        if ray is not None:  # as Ray tasks, blended as they finish
            from dipstop.raytasks import ray_slots

            parallel = ray_slots(ray)
            calls = ((i, x[region(i)], clean_of(i)) for i in todo)
            try:
                for i, out, result in fit_remotely(
                    calls, ray, threads=1, max_minutes=max_minutes, **tile_fit
                ):
                    if result is not None and not estimates and result.estimate is not None:
                        whole_run(result.estimate, parallel)
                    blend(i, out, result)
                    if cancel is not None and cancel.is_set():  # the tasks left are cancelled
                        interrupted = True
                        break
            except KeyboardInterrupt:  # the tasks not done are cancelled
                if not interruptible:
                    raise
                interrupted = True
        else:  # in this process: one single-thread fit per worker thread on a CPU
            workers = 1 if device.type != "cpu" else tile_workers(
                len(todo), estimate_bytes(padded, proto.width)
            )  # fmt: skip
            calls = [(i, x[region(i)], clean_of(i)) for i in todo]
            head = (lambda: done.get(todo[0])) if todo else (lambda: None)
            pool = _TileThreads(calls, workers, deadline, head, whole_run, tile_fit)
            try:
                while pool.running:
                    try:
                        item = pool.get(timeout=0.2)
                        if cancel is not None and cancel.is_set() and not pool.stop.is_set():
                            pool.stop.set()  # the running tiles end with their best so far
                            interrupted = True
                    except KeyboardInterrupt:
                        if not interruptible:
                            raise
                        pool.stop.set()
                        interrupted = True
                        continue
                    if item is not None:
                        blend(*item)
            finally:
                pool.close()
        for i in set(range(len(boxes))) - set(done):  # not fitted: the noisy pixels
            blend(i, None, None)
    runs = [TileRun(*boxes[i], done[i]) for i in range(len(boxes))]
    skipped = sum(run.result is None for run in runs)
    if skipped:
        why = "interrupted" if interrupted else "the time budget was spent"
        notes.append(
            f"{why}: {skipped} of {len(runs)} tiles were not fitted and keep the noisy pixels"
        )
    on_budget = sum(run.result is not None and run.result.stopped_by_budget for run in runs)
    if on_budget:
        notes.append(
            f"the time budget of {max_minutes:g} min ended {on_budget} tile(s) before their "
            "stopping rule fired (their best so far)"
        )
    first = next((run.result for run in runs if run.result is not None), None)
    settings = dict(first.settings) if first else {}
    result = TiledResult(
        tiles=runs,
        sigma=float(sigma),
        sigma_estimated=sigma_estimated,
        lam=float(lam),
        tile=tile,
        overlap=overlap,
        settings={**settings, "tile": tile, "overlap": overlap},
        notes=notes,
        interrupted=interrupted,
        stopped_by_budget=bool(on_budget) or (skipped > 0 and not interrupted),
        estimate=estimates[0] if estimates else None,
    )
    blended = acc.astype(np.float32)
    if clean_px is not None:
        result.psnr = psnr(np.clip(blended, 0, 1), clean_px)
    pixels = join_array(blended, loaded)
    result.seconds = time.perf_counter() - start
    return api._from_array(pixels, kind, original), result


def tiles_spec(
    pixels: np.ndarray,
    clean: np.ndarray | None,
    sigma: float,
    lam: float,
    table: dict | None,
    protocol: dict[str, Any],
    output: str,
    precision: str,
    tile: int,
    overlap: int,
    fit: dict[str, Any],
) -> dict[str, Any]:
    """The spec of a tiled run (`checkpoints.image_spec`) that names its kept tiles: what its
    tiles' results are made of, as resolved (the lam, the lam table's content, not its path,
    whose lam the tiles look up again; the protocol with its overrides; the precision), and
    any other fit setting as given. What changes how, not what (device, engine switches,
    threads, progress, the time budget, where the files are) is not in it.

    >>> a = np.zeros((2, 2, 1), np.float32)
    >>> spec = tiles_spec(a, None, 25.0, 0.5, None, {"width": 8}, "raw", "fp32", 64, 16, {})
    >>> spec["lam"], spec["table"], spec["tile"]
    (0.5, None, 64)
    """
    settings = {k: v for k, v in fit.items() if k not in ("protocol", "output", "precision")}
    for name in ("table", "width", "max_iters", "patience", "lr", "z_noise_std"):
        settings.pop(name, None)  # in `protocol`, or read into `table`
    settings |= {
        "sigma": float(sigma),
        "lam": float(lam),
        "table": None if table is None else run_key(table),
        "protocol": protocol,
        "output": output,
        "precision": precision,
        "tile": tile,
        "overlap": overlap,
    }
    return image_spec(pixels, clean, settings)


class TileStore:
    """The finished tiles of one tiled run, kept in a folder as they finish, so that a run
    interrupted (Ctrl-C, a crash, the time budget) and started again with the same image and
    settings fits only the tiles not there.

    `key` names the run (`run_key` of its `tiles_spec`) and is kept in each tile's file, so
    no manifest can be damaged or disagree with the tiles. Each tile is one `torch.save` of
    the key, its output and `DenoiseResult.state()`, written atomically
    (`checkpoints.write_atomically`), so a tile is whole or absent. It is read back with
    `torch.load(weights_only=True)`, so a file planted in the folder runs no code. A tile of
    another run (another key, or none: an earlier version) is deleted as stale; one that is
    unreadable or not of this run's shape is deleted with a warning, and refitted.

    Examples
    --------
    >>> import tempfile
    >>> from dipstop.api import DenoiseResult
    >>> folder = Path(tempfile.mkdtemp()) / "photo.png.partial"
    >>> r = DenoiseResult(3, 5, True, 25.0, True, 40.0, 1.0, {}, {"mse": np.ones(5)}, 1.0)
    >>> TileStore(folder, "a").save(3, np.zeros((2, 2, 1), np.float32), r)
    >>> kept = TileStore(folder, "a").load({3: (2, 2, 1)})
    >>> sorted(kept), kept[3][1].stop_iteration, TileStore(folder, "b").load({3: (2, 2, 1)})
    ([3], 3, {})
    """

    def __init__(self, folder: str | Path, key: str) -> None:
        self.folder, self.key = Path(folder), key
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DipstopError(
                f"cannot keep the finished tiles in {self.folder} ({exc.strerror or exc}); "
                "pass a writable tile folder"
            ) from exc

    def load(
        self, shapes: dict[int, tuple[int, ...]]
    ) -> dict[int, tuple[np.ndarray, DenoiseResult]]:
        """The tiles already done, index -> (output, result), of those whose index and
        output shape are in `shapes` (the run's tiles); the folder's other tiles are
        deleted (they would never be used)."""
        from dipstop.api import DenoiseResult

        done = {}
        for path in sorted(self.folder.glob("tile_*.pt")):
            try:
                with warnings.catch_warnings():  # torch's own notes on the file are not for users
                    warnings.simplefilter("ignore")
                    state = torch.load(path, weights_only=True, map_location="cpu")
            except Exception as exc:  # a damaged or foreign file: that tile is fitted again
                _ignore_tile(path, f"unreadable: {why_unreadable(exc)}")
                continue
            if not isinstance(state, dict) or state.get("key") != self.key:
                path.unlink(missing_ok=True)  # another run's (other settings, or an old dipstop)
                continue
            try:
                index = int(path.stem.split("_")[1])
                out = state["out"].numpy()
                if tuple(out.shape) != shapes.get(index):
                    raise ValueError(
                        f"a tile of {tuple(out.shape)}, this run's is {shapes.get(index)}"
                    )
                done[index] = (out, DenoiseResult.from_state(state["result"]))
            except Exception as exc:
                _ignore_tile(path, f"not of this run: {type(exc).__name__}: {exc}")
        return done

    def save(self, index: int, out: np.ndarray, result: DenoiseResult) -> None:
        """Keep tile `index`'s output and result; a failed write (a full disk, the folder
        gone) warns and the run goes on without it."""
        path = self.folder / f"tile_{index:06d}.pt"
        # torch.tensor copies: a Ray task's output is read-only, which from_numpy warns of
        state = {"key": self.key, "out": torch.tensor(out), "result": result.state()}
        try:
            write_atomically(path, lambda tmp: torch.save(state, tmp))
        except OSError as exc:
            warnings.warn(
                f"could not keep tile {path} ({exc.strerror or exc}); a rerun fits it again",
                stacklevel=2,
            )


def _ignore_tile(path: Path, why: str) -> None:
    """Warn of a kept tile that cannot be used, and delete it (it is fitted again)."""
    warnings.warn(f"ignoring kept tile {path} ({why}); it is fitted again", stacklevel=3)
    path.unlink(missing_ok=True)


def tile_workers(tiles: int, need: int) -> int:
    """How many tiles a CPU fits at once in this process: one per thread of torch's pool
    (the cores, or `--threads`), at most the tiles, and at most what memory holds at `need`
    bytes a fit.

    >>> tile_workers(1, 10**6)
    1
    """
    have = available_bytes(torch.device("cpu"))
    held = tiles if have is None else have // max(need, 1)
    return max(1, min(torch.get_num_threads(), tiles, held))


class _TileThreads:
    """Tiles fitted by `workers` threads of this process, results queued as they finish.

    Each thread claims the next tile with its share of the time budget (what is left before
    `deadline` over the rounds of tiles left, or all of it for the first tiles and when
    shares would fall under half the first tile's time, as `run_tiles` says) and fits it
    with `dipstop.api.denoise`; with more than one worker torch's pool is set to one thread
    while they run (two 1-thread fits get more done than one 2-thread fit), restored by
    `close`. `stop` ends the running fits with their best so far, and no more are claimed.
    """

    def __init__(
        self,
        calls: list[tuple[int, np.ndarray, np.ndarray | None]],
        workers: int,
        deadline: float | None,
        head: Callable[[], DenoiseResult | None],
        on_first: Callable[[RunEstimate, int], None],
        fit: dict[str, Any],
    ) -> None:
        self.calls, self.left, self.workers = iter(calls), len(calls), workers
        self.first = calls[0][0] if calls else None  # its fit gives the run's estimate
        self.deadline, self.head, self.on_first, self.fit = deadline, head, on_first, fit
        self.stop, self.lock, self.queue = threading.Event(), threading.Lock(), queue.Queue()
        self.threads_before = torch.get_num_threads()
        if workers > 1:
            torch.set_num_threads(1)
        self.running = workers
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        for thread in self.threads:
            thread.start()

    def _claim(self) -> tuple[tuple[int, np.ndarray, np.ndarray | None], float | None] | None:
        """The next tile and its budget share in minutes; None when there is nothing to fit."""
        with self.lock:
            call = None if self.stop.is_set() else next(self.calls, None)
            if call is None:
                return None
            rounds = math.ceil(self.left / self.workers)  # of the tiles not claimed yet
            self.left -= 1
            if self.deadline is None:
                return call, None
            left = self.deadline - time.perf_counter()
            if left <= 0:
                return None
            share = left / rounds
            head = self.head()
            if head is None or share < head.seconds / 2:
                share = left  # the first tiles, or shares too small: a full fit
            return call, share / 60.0

    def _work(self) -> None:
        from dipstop import api

        try:
            while (job := self._claim()) is not None:
                (i, pixels, clean), share = job
                first = (
                    functools.partial(self.on_first, parallel=self.workers)
                    if i == self.first
                    else None
                )
                out, result = api.denoise(
                    pixels, clean=clean, max_minutes=share, on_estimate=first, cancel=self.stop,
                    **self.fit,
                )  # fmt: skip
                self.queue.put((i, out, result))
        except BaseException as exc:  # raised in the caller's thread by `get`
            self.stop.set()
            self.queue.put(exc)
        finally:
            self.queue.put(None)

    def get(self, timeout: float) -> tuple[int, np.ndarray, DenoiseResult] | None:
        """A finished tile (index, output, result), or None after `timeout` s without one."""
        try:
            item = self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is None:
            self.running -= 1
        elif isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """End the fits still running (best so far), wait for the threads, restore torch."""
        self.stop.set()
        for thread in self.threads:
            thread.join()
        torch.set_num_threads(self.threads_before)


def fit_remotely(
    calls: Iterable[tuple[int, np.ndarray, np.ndarray | None]],
    ray: str,
    *,
    threads: int | None,
    max_minutes: float | None = None,
    **fit: Any,
) -> Iterator[tuple[int, np.ndarray | None, DenoiseResult | None]]:
    """Fit images as Ray tasks (`dipstop.raytasks.ray_map`); yield (index, output, result)
    as each finishes.

    Each call is (index, pixels, clean pixels or None), pixels as `dipstop.api.denoise`
    takes them; `fit` are its options (without progress, Ctrl-C handling or estimate
    callback: they run elsewhere). `threads` sets each task's CPU threads (1 for tiles, one
    task per core). `max_minutes` becomes a deadline shared by all calls: a task started
    after it yields (index, None, None).
    """
    from dipstop.raytasks import ray_map

    due = None if max_minutes is None else time.time() + float(max_minutes) * 60.0
    options = {**fit, "progress": False, "interruptible": False, "on_estimate": None}
    return ray_map(_remote_fit, ((*call, due, threads, options) for call in calls), ray)


def _remote_fit(
    index: int,
    pixels: np.ndarray,
    clean: np.ndarray | None,
    due: float | None,
    threads: int | None,
    fit: dict[str, Any],
) -> tuple[int, np.ndarray | None, DenoiseResult | None]:
    """One call of `fit_remotely`, in a Ray worker: the fit, with what is left before `due`
    (epoch seconds) as its budget."""
    from dipstop import api
    from dipstop.runtime import set_threads

    set_threads(threads)
    left = None if due is None else (due - time.time()) / 60.0
    if left is not None and left <= 0:
        return index, None, None
    out, result = api.denoise(pixels, clean=clean, max_minutes=left, **fit)
    return index, out, result
