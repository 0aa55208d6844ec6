"""A tiled run: a photo's tiles fitted and stopped one by one, blended as they finish.

`run_tiles` plans the tiles (`dipstop.tiling`), resolves what all tiles share (sigma,
estimated once on the whole image unless given; lam, read at the tile's size), runs a fit
function on each tile (`dipstop.single.fit_one` unless another is given: tests pass stubs)
in this process (`dipstop.workers.FitThreads`) or as Ray tasks (`fit_remotely`), keeps each
finished tile (`dipstop.tile_store.TileStore`) when asked, and blends the outputs.
It takes pixels and options, never the API's image forms: `dipstop.denoise` sits above it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dipstop.checkpoints import hold, run_key
from dipstop.errors import DipstopError
from dipstop.estimate import RunEstimate
from dipstop.fitting import padding_for, resolve_device, resolve_precision
from dipstop.lambda_table import lam_from_table, load_table
from dipstop.memory import check_fits, estimate_bytes
from dipstop.metrics import psnr
from dipstop.noise import estimate_sigma
from dipstop.options import DenoiseOptions
from dipstop.policies import make_policy
from dipstop.raytasks import ray_slots
from dipstop.results import DenoiseResult, TiledResult, TileRun
from dipstop.single import fit_one
from dipstop.tile_store import TileStore, fit_name, tiles_spec
from dipstop.tiling import plan_tiles
from dipstop.workers import (
    BudgetShares,
    Call,
    FitFn,
    WorkerThreads,
    fit_remotely,
    tile_workers,
)

__all__ = ["run_tiles"]


def run_tiles(
    pixels: np.ndarray,
    clean: np.ndarray | None,
    options: DenoiseOptions,
    fit: FitFn | None = None,
) -> tuple[np.ndarray, TiledResult]:
    """Denoise `pixels` (H x W x C float in [0, 1]) tile by tile with `fit` (default
    `fit_one`); the blended image (float32) and the `TiledResult`.

    Every check that can refuse the run (sizes, memory of one tile's fit, the clean image)
    comes before the first fit. A time budget is shared out when it can be: the first tile
    may use all of it, and tells what a tile costs; each next tile may use what is left over
    the rounds of tiles left (a tile that stops early leaves more to the others) while that
    share is at least half the first tile's time. Below that, shares would cut every fit to
    a few iterations, an image worse than the noisy one, so the tiles are fitted in full
    until the budget is spent, and the tiles left keep the noisy pixels. The first tile's
    estimate, scaled to all tiles, is the run's (`on_estimate`, `TiledResult.estimate`).

    On a CPU the tiles run in this process as one single-thread fit per thread of torch's
    pool (`tile_workers`), blended here as they finish; on a GPU one after another. With
    `options.ray` the tiles are Ray tasks (one single-thread fit per core); the budget is
    then a deadline. Ctrl-C (with `interruptible`) or `cancel` ends the running tiles with
    their best so far and fits no more. With `resume_dir` every fit that ends by its rule
    (or T) is kept there as it finishes, and the fits found there from an earlier run of
    the same image and settings (with as many fits a tile or another number: the seeds in
    common) are blended, not fitted again; `<resume_dir>.lock` is held
    meanwhile, so a second run keeping its tiles in the same folder is refused in one line.
    With `warm_start` the first tile's fits run first, keeping their networks at t*, and
    every other fit starts from the first tile's fit of its seed (kept with that fit, so a
    resumed run starts its tiles as the uninterrupted one would).
    """
    fit = fit_one if fit is None else fit  # looked up now: tests put stubs in its place
    if options.resume_dir is None:
        return _TiledRun(pixels, clean, options, fit).run()
    lock = Path(f"{options.resume_dir}.lock")
    busy = (
        f"another dipstop run is keeping its tiles in {options.resume_dir} (lock {lock}); "
        "wait for it, or give this one another folder"
    )
    with hold(lock, busy):
        return _TiledRun(pixels, clean, options, fit).run()


class _TiledRun:
    """One tiled run: resolved and checked on construction, fitted and blended by `run`."""

    def __init__(
        self, x: np.ndarray, clean: np.ndarray | None, options: DenoiseOptions, fit: FitFn
    ) -> None:
        self.start = time.perf_counter()
        self.x, self.options, self.fit = x, options, fit
        height, width = x.shape[:2]
        padding_for(height, width)  # a side under 32 px: the whole-image message
        self.plan = plan_tiles(height, width, options.tile, options.overlap)
        o = options
        proto = o.fit_protocol()
        output = make_policy(o.output).name  # fails here, not in a tile
        left, right, top, bottom = padding_for(self.plan.tile_h, self.plan.tile_w)
        self.padded = (self.plan.tile_h + top + bottom) * (self.plan.tile_w + left + right)
        self.width = proto.width
        if o.ray is None:  # Ray tasks run on the cluster's devices, not this machine's
            self.device = resolve_device(o.device)
            check_fits(self.plan.tile_h, self.plan.tile_w, self.padded, proto.width, self.device)
        if clean is not None and clean.shape != x.shape:
            raise DipstopError(f"clean image is {clean.shape}, noisy is {x.shape}; they must match")
        self.clean = clean
        self.sigma_estimated = o.sigma is None
        self.sigma = estimate_sigma(x, o.sigma_estimator or "pca") if o.sigma is None else o.sigma
        self.notes: list[str] = []
        self.lam, tile_lam, table = o.lam, o.lam, None  # tile_lam: what each tile is given
        if o.lam is None:
            tile_pixels = self.plan.tile_h * self.plan.tile_w  # each tile is stopped alone
            table = load_table(o.table, output=output, width=proto.width)
            self.lam, self.notes = lam_from_table(self.sigma, table, proto.width, output,
                                                  tile_pixels)  # fmt: skip
            # a tile given sigma looks the same lam up itself, and the table's expected stop
            # with it; a tile's own sigma estimate would differ from tile to tile
            tile_lam = None if self.sigma > 0 else self.lam
        self.tile_options = o.replace(
            sigma=self.sigma if self.sigma > 0 else None, lam=tile_lam, tile=None, ray=None,
            resume_dir=None, progress=False, interruptible=False, on_estimate=None,
            cancel=None, max_minutes=None,
        )  # fmt: skip
        self.store = None
        if o.resume_dir is not None:
            precision = o.precision
            if o.ray is None and precision == "auto":  # as each tile's fit resolves it
                precision = "fp32" if output == "raw" else resolve_precision(precision, self.device)
            resolved = {"sigma": float(self.sigma), "lam": float(self.lam),
                        "table": None if table is None else run_key(table),
                        "protocol": proto.as_dict(), "output": output,
                        "precision": precision}  # fmt: skip
            self.store = TileStore(o.resume_dir, run_key(tiles_spec(x, clean, o, resolved)))
        # an ensemble fits each box `members` times (seeds seed, seed + 1, ...): fit j is of
        # box j // members, blended at 1 / members of the box's weight
        self.members = o.ensemble or 1
        self.boxes = [box for box in self.plan.boxes() for _ in range(self.members)]
        self.warm = bool(o.warm_start) and len(self.boxes) > self.members  # fits 0..members-1:
        # the first tile's, whose networks the others start from
        self.names = [fit_name(i // self.members, self._seed(i)) for i in range(len(self.boxes))]
        self.acc = np.zeros(x.shape, np.float64)  # float64: the same image in any tile order
        self.done: dict[int, DenoiseResult | None] = {}  # index -> its fit (None: not fitted)
        self.estimates: list[RunEstimate] = []
        self.interrupted = False

    def run(self) -> tuple[np.ndarray, TiledResult]:
        """Blend the kept tiles, fit the others, blend the noisy pixels of any not fitted."""
        shapes = {
            self.names[i]: (h, w, self.x.shape[2]) for i, (_, _, h, w) in enumerate(self.boxes)
        }
        kept = {} if self.store is None else self.store.load(shapes)
        self.resumed = {i: kept[name] for i, name in enumerate(self.names) if name in kept}
        self.todo = [i for i in range(len(self.boxes)) if i not in self.resumed]
        if self.resumed:
            self.notes.append(
                f"resumed {len(self.resumed)} of {len(self.boxes)} tiles kept in "
                f"{self.store.folder}"
            )
        self.bar = tqdm(total=len(self.boxes), disable=not self.options.progress, unit="tile",
                        dynamic_ncols=True)  # fmt: skip
        with self.bar:
            for i, (out, result) in self.resumed.items():
                self._blend(i, out, result)
            for todo, fit in self._phases():
                if self.options.ray is not None:
                    self._fit_as_ray_tasks(todo, fit)
                else:
                    self._fit_in_threads(todo, fit)
            for i in set(range(len(self.boxes))) - set(self.done):  # not fitted: noisy pixels
                self._blend(i, None, None)
        return self._finish()

    def _phases(self) -> Iterator[tuple[list[int], FitFn]]:
        """The fits left, in the groups that run one after the other, with their fit
        function: all at once, or with `warm_start` the first tile's fits (keeping their
        networks), then the others from those networks. A first tile cut short (Ctrl-C,
        the budget: no network yet) leaves the rest to start from random networks."""
        if not self.warm:
            yield self.todo, self.fit
            return
        first = [i for i in self.todo if i < self.members]
        if first:
            yield first, functools.partial(self.fit, keep_network=True)
        rest = [i for i in self.todo if i >= self.members]
        if self.interrupted or not rest:
            return
        starts = {}
        for i in range(self.members):
            result = self.done.get(i)
            if result is not None and result.network is not None:
                starts[self._seed(i)] = result.network
        if len(starts) < self.members:
            self.notes.append("the first tile's networks are missing: the other tiles were "
                              "fitted from random networks")  # fmt: skip
            yield rest, self.fit
        else:
            yield rest, functools.partial(_warm_fit, self.fit, starts)

    def _seed(self, i: int) -> int:
        """Fit i's seed: the run's seed plus its place among its tile's fits."""
        return self.options.seed + i % self.members

    def _weight(self, i: int) -> np.ndarray:
        return self.plan.weight(i // self.members)[:, :, None] / self.members

    def _region(self, i: int) -> tuple[slice, slice]:
        r, c, h, w = self.boxes[i]
        return slice(r, r + h), slice(c, c + w)

    def _calls(self, todo: list[int], options: DenoiseOptions) -> list[Call]:
        """Each fit of `todo`: (index, pixels, clean pixels, `options` with its seed)."""
        box = self._region
        return [(i, self.x[box(i)], None if self.clean is None else self.clean[box(i)],
                 options.replace(seed=self._seed(i), ensemble=1))
                for i in todo]  # fmt: skip

    def _whole_run(self, first_tile: RunEstimate, parallel: int = 1) -> None:
        self.estimates.append(first_tile.for_tiles(len(self.todo), self.options.max_minutes,
                                                   parallel))  # fmt: skip
        if self.options.on_estimate is not None:
            self.options.on_estimate(self.estimates[0])

    def _blend(self, i: int, out: np.ndarray | None, result: DenoiseResult | None) -> None:
        """Add tile i's output (its noisy pixels when it was not fitted) to the image."""
        box = self._region(i)
        self.acc[box] += (self.x[box] if result is None else out) * self._weight(i)
        self.done[i] = result
        self.bar.update(1)
        if result is not None:
            self.bar.set_postfix(t_star=result.stop_iteration, refresh=False)
        finished = result is not None and not result.interrupted and not result.stopped_by_budget
        if self.store is not None and finished and i not in self.resumed:
            self.store.save(self.names[i], out, result)

    def _fit_as_ray_tasks(self, todo: list[int], fit: FitFn) -> None:
        """The fits `todo` as Ray tasks, blended as they finish; Ctrl-C or `cancel` cancels
        the tasks left."""
        parallel = ray_slots(self.options.ray)
        cancel, calls = self.options.cancel, self._calls(todo, self.tile_options)
        tasks = fit_remotely(calls, fit, ray=self.options.ray, threads=1,
                             max_minutes=self.options.max_minutes)  # fmt: skip
        try:
            for i, out, result in tasks:
                if result is not None and not self.estimates and result.estimate is not None:
                    self._whole_run(result.estimate, parallel)
                self._blend(i, out, result)
                if cancel is not None and cancel.is_set():
                    self.interrupted = True
                    break
        except KeyboardInterrupt:
            if not self.options.interruptible:
                raise
            self.interrupted = True

    def _fit_in_threads(self, todo: list[int], fit: FitFn) -> None:
        """The fits `todo` in this process: one single-thread fit per worker thread on a
        CPU, one at a time on a GPU; Ctrl-C or `cancel` ends the running tiles with their
        best."""
        need = estimate_bytes(self.padded, self.width)
        on_cpu = self.device.type == "cpu"
        workers = tile_workers(len(todo), need) if on_cpu else 1
        parallel = tile_workers(len(self.todo), need) if on_cpu else 1  # the run's, all phases
        shares = None
        first = self.todo[0] if self.todo else None  # its fit gives the run's estimate
        if self.options.max_minutes is not None:
            head = (lambda: self.done.get(first)) if todo else (lambda: None)
            shares = BudgetShares(self.start + float(self.options.max_minutes) * 60.0, head)

        def run(call: Call, share: float | None, stop: threading.Event) -> tuple:
            i, pixels, clean, options = call
            told = functools.partial(self._whole_run, parallel=parallel) if i == first else None
            out, result = fit(pixels, clean, options.replace(
                max_minutes=share, on_estimate=told, cancel=stop))  # fmt: skip
            return i, out, result

        pool = WorkerThreads(self._calls(todo, self.tile_options), workers, run, shares,
                             "dipstop-tile")  # fmt: skip
        cancel = self.options.cancel
        try:
            while pool.running:
                try:
                    item = pool.get(timeout=0.2)
                    if cancel is not None and cancel.is_set() and not pool.stop.is_set():
                        pool.stop.set()  # the running tiles end with their best so far
                        self.interrupted = True
                except KeyboardInterrupt:
                    if not self.options.interruptible:
                        raise
                    pool.stop.set()
                    self.interrupted = True
                    continue
                if item is not None:
                    self._blend(*item)
        finally:
            pool.close()

    def _finish(self) -> tuple[np.ndarray, TiledResult]:
        """The blended image and the run's result, with notes on what was not fitted."""
        runs = [TileRun(*self.boxes[i], self.done[i]) for i in range(len(self.boxes))]
        skipped = sum(run.result is None for run in runs)
        if skipped:
            why = "interrupted" if self.interrupted else "the time budget was spent"
            self.notes.append(
                f"{why}: {skipped} of {len(runs)} tiles were not fitted and keep the noisy pixels"
            )
        on_budget = sum(run.result is not None and run.result.stopped_by_budget for run in runs)
        if on_budget:
            self.notes.append(
                f"the time budget of {self.options.max_minutes:g} min ended {on_budget} tile(s) "
                "before their stopping rule fired (their best so far)"
            )
        first = next((run.result for run in runs if run.result is not None), None)
        settings = dict(first.settings) if first else {}
        o = self.options
        result = TiledResult(
            tiles=runs,
            sigma=float(self.sigma),
            sigma_estimated=self.sigma_estimated,
            lam=float(self.lam),
            tile=o.tile,
            overlap=o.overlap,
            settings={**settings, "tile": o.tile, "overlap": o.overlap},
            notes=self.notes,
            interrupted=self.interrupted,
            stopped_by_budget=bool(on_budget) or (skipped > 0 and not self.interrupted),
            estimate=self.estimates[0] if self.estimates else None,
            members=self.members,
        )
        blended = self.acc.astype(np.float32)
        if self.clean is not None:
            result.psnr = psnr(np.clip(blended, 0, 1), self.clean)
        result.seconds = time.perf_counter() - self.start
        return blended, result


def _warm_fit(
    fit: FitFn,
    starts: dict[int, dict],
    pixels: np.ndarray,
    clean: np.ndarray | None,
    options: DenoiseOptions,
) -> tuple[np.ndarray, DenoiseResult]:
    """`fit` started from the network of its seed in `starts` (a warm start); module-level
    so that a Ray task can carry it."""
    return fit(pixels, clean, options, start=starts[options.seed])
