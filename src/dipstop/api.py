"""The Python API: `denoise` an image with DIP and CIFS early stopping.

A thin layer that wires the library together: fitting loop -> CIFS criterion -> online Eq. 4
stop -> output policy -> result (`dipstop.recording.record` does the loop). Accepts NumPy
arrays, PIL images and tensors, and returns the same kind.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dipstop.checkpoints import RunCheckpoint, image_spec
from dipstop.criteria import CifsCriterion, Context, paper_lambda
from dipstop.errors import DipstopError
from dipstop.estimate import TIMED, WARMUP, RunEstimate, estimate_run, expected_iterations
from dipstop.fitting import Fitter, Iteration, padding_for, resolve_device, resolve_precision
from dipstop.imageio import LoadedImage, join_array, split_array
from dipstop.lambda_table import (
    lam_for_sigma,
    load_table,
    mean_iterations_for_sigma,
    table_output,
    table_sizes,
)
from dipstop.memory import estimate_bytes
from dipstop.metrics import psnr
from dipstop.noise import estimate_sigma
from dipstop.policies import DEFAULT_OUTPUT, make_policy
from dipstop.protocols import get_protocol
from dipstop.recording import OnlineStop, record
from dipstop.runtime import Switches
from dipstop.tiling import (
    OVERLAP,
    TILE,
    TILE_ABOVE,
    TiledResult,
    denoise_tiled,
    fit_remotely,
    run_tiles,
)
from dipstop.validate import check_denoise_options, check_tiling

__all__ = ["DenoiseResult", "TiledResult", "denoise", "denoise_tiled", "lam_from_table"]


@dataclass
class DenoiseResult:
    """What a denoising run did: where it stopped, why, and with which settings.

    Attributes
    ----------
    stop_iteration : int
        t*, the iteration whose criterion value the stop rule settled on (1-based).
    iterations_run : int
        Iterations fitted and recorded (t* + S when it stopped early, else T).
    stopped_early : bool
        Whether the Eq. 4 rule fired before the budget T.
    sigma, sigma_estimated : float, bool
        The noise level used (0-255 scale) and whether it was estimated.
    lam, paper_lambda : float
        dipstop's lam, and the paper's lambda for this image size (lam * H * W).
    settings : dict
        Protocol, seed, device, output policy and criterion settings of the fit.
    series : dict of str to ndarray
        One value per iteration run (the recording loop's schema): "mse" (to the noisy
        image, [0, 1] scale), "jpeg_bytes", "criterion" (E_t), "seconds", the output
        policy's average series if any, and "psnr" when a clean image was given.
    seconds, time_split, restores : float, dict, int
        Wall time, where it went (below) and divergence-guard restores.
    psnr, peak_psnr, peak_iteration : float or None
        With a clean image: PSNR of the returned image, and the best raw output of the run.
    notes : list of str
        Caveats (a provisional or other-width lam table, an interruption, the time budget).
    interrupted : bool
        Ctrl-C ended the fit (with `interruptible`): the image is the best so far.
    stopped_by_budget : bool
        The time budget (`max_minutes`) ended the fit: the image is the best so far.
    estimate : RunEstimate or None
        The run's expected length and memory, made once its first iterations were timed
        (`dipstop.estimate`); None when the run ended before that.

    `time_split` says where the `seconds` went: "network" (perturbation, forward, backward,
    Adam), "engine" (divergence guard, snapshots) and "stopping" (quantising each output, any
    wait for its JPEG, which is encoded on a worker thread during the next step, the Eq. 4
    rule, series, progress bar). That overlap fits up to 2 iterations past the last one
    recorded; their time is in "network" and their divergence-guard restores in `restores`.
    """

    stop_iteration: int
    iterations_run: int
    stopped_early: bool
    sigma: float
    sigma_estimated: bool
    lam: float
    paper_lambda: float
    settings: dict
    series: dict[str, np.ndarray]
    seconds: float
    time_split: dict[str, float] = field(default_factory=dict)
    restores: int = 0
    psnr: float | None = None  # PSNR of the returned image to the clean one, if given
    peak_psnr: float | None = None
    peak_iteration: int | None = None
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C ended the fit (with `interruptible`): best so far
    stopped_by_budget: bool = False  # max_minutes ended the fit: best so far
    estimate: RunEstimate | None = None

    def summary(self) -> dict:
        """The scalar fields, for JSON reports."""
        out = {k: v for k, v in self.__dict__.items() if k != "series"}
        out["estimate"] = asdict(self.estimate) if self.estimate is not None else None
        return out

    def state(self) -> dict:
        """Every field as tensors and plain containers, for `torch.save` and a
        `torch.load(weights_only=True)` that runs no code (`from_state` reads it back)."""
        series = {k: torch.tensor(np.asarray(v)) for k, v in self.series.items()}  # copies
        return {**self.summary(), "series": series}

    @classmethod
    def from_state(cls, state: dict) -> DenoiseResult:
        """The result `state()` was taken of. TypeError or ValueError for anything else.

        >>> r = DenoiseResult(3, 5, True, 25.0, True, 40.0, 1.0, {}, {"mse": np.ones(5)}, 1.0)
        >>> back = DenoiseResult.from_state(r.state())
        >>> back.summary() == r.summary(), np.array_equal(back.series["mse"], r.series["mse"])
        (True, True)
        """
        state = dict(state)
        series = state.pop("series")
        if not isinstance(series, dict) or not all(torch.is_tensor(v) for v in series.values()):
            raise ValueError("the series are not tensors")
        estimate = state.pop("estimate", None)
        if estimate is not None:
            estimate = RunEstimate(**{**estimate, "timed": tuple(estimate["timed"])})
        series = {k: v.numpy() for k, v in series.items()}
        return cls(**state, series=series, estimate=estimate)


def denoise(
    image: Any,
    *,
    sigma: float | None = None,
    lam: float | None = None,
    protocol: str = "cpu",
    width: int | None = None,
    max_iters: int | None = None,
    patience: int | None = None,
    lr: float | None = None,
    z_noise_std: float | None = None,
    seed: int = 0,
    output: str = DEFAULT_OUTPUT,
    device: str | None = None,
    precision: str = "auto",
    clean: Any = None,
    table: str | None = None,
    progress: bool = False,
    interruptible: bool = False,
    switches: Switches | None = None,
    max_minutes: float | None = None,
    on_estimate: Callable[[RunEstimate], None] | None = None,
    cancel: threading.Event | None = None,
    tile: int | None = TILE,
    overlap: int = OVERLAP,
    tile_above: int | None = None,
    resume_dir: str | os.PathLike | None = None,
    ray: str | None = None,
) -> tuple[Any, DenoiseResult | TiledResult]:
    """Denoise `image` with a Deep Image Prior stopped by CIFS; no noise level needed.

    Parameters
    ----------
    image : ndarray, PIL.Image or Tensor
        H x W, H x W x 3 or x 4 (uint8, uint16 or float in [0, 1]), a PIL image, or a tensor
        (C x H x W or 1 x C x H x W, float in [0, 1]). The result comes back in the same form,
        size, channels and bit depth (alpha passed through untouched).
    sigma : float, optional
        Noise standard deviation on the 0-255 scale; estimated from the image when not given.
    lam : float, optional
        CIFS weight (dipstop's size-invariant lam = the paper's lambda / (H W), MSE on
        [0, 1]); from the lam(sigma) table when not given.
    protocol : str
        Named settings ("cpu" or "paper"); `width`, `max_iters` (T), `patience` (S), `lr` and
        `z_noise_std` override them.
    seed : int
        Seed of the network, its input and the input's perturbation.
    output : str
        Output policy (`dipstop.policies`). The default, "since-best", returns the mean of
        the last S + 1 outputs, y_{t*} .. y_{t*+S} when the rule fires (dipstop's, measured
        in docs/calibration.md); "raw" the output at the criterion's minimum, the paper's
        rule exactly; "ema@stop" the moving average when the fit stops; "ema@best" stops on
        CIFS of that average and returns it there. The shipped lam table of the policy is
        used ("raw"'s for a policy that has none).
    device : str, optional
        "cpu", "cuda" or "cuda:N"; CUDA when available by default.
    precision : str
        "fp32", "bf16" (bfloat16 forward pass, channels_last), or "auto": bf16 on a CPU with
        AMX, where it is 1.5-1.6x faster at the same PSNR, fp32 elsewhere
        (`dipstop.fitting.resolve_precision`) and with `output="raw"`, which stays the
        paper's rule exactly.
    clean : same form as `image`, optional
        A clean reference: adds PSNR to the series and the result.
    table : str, optional
        Path of a lam(sigma) table (default: the one shipped for `output`).
    progress : bool
        Show a progress bar on stderr.
    interruptible : bool
        Ctrl-C ends the fit and returns the output policy's image so far, with
        `result.interrupted` set (the CLI does this).
    switches : Switches, optional
        Engine switches (CUDA graphs, scoring overlap): how the fit runs, not what it
        computes; `dipstop.runtime.Switches()` by default.
    max_minutes : float, optional
        A wall-clock budget: the fit ends once it has run this long and returns the output
        policy's image so far, with `result.stopped_by_budget` set and a note. Finite, above 0.
        A tiled image shares it out: each tile gets what is left over the tiles left.
    on_estimate : callable, optional
        Called once with the run's `RunEstimate`, when its first iterations have been timed
        (after 5 iterations, or T if fewer); the estimate is also `result.estimate`. A tiled
        image is estimated on its first tile, for all its tiles.
    cancel : threading.Event, optional
        Set from another thread (a GUI's cancel button), it ends the fit as Ctrl-C would with
        `interruptible`: the output policy's image so far, `result.interrupted` set. A tiled
        run ends its running tiles so and fits no more; with `ray` it stops waiting for the
        tasks between tiles (an untiled Ray task runs to its end).
    tile : int or None
        Images of more than `tile_above` pixels are denoised in overlapping tiles of this
        side (`dipstop.tiling`; default 128, the lam table's calibration size), each fitted
        and stopped on its own; None fits the whole image, whatever its size.
    overlap : int
        Least overlap of neighbouring tiles, blended by a raised cosine (default 32).
    tile_above : int, optional
        Tile images with more pixels than this (0 tiles every image). Default: beyond 1.5x
        the largest size the lam table was calibrated at, at most 55,296 (`auto_tile_above`;
        the shipped table, calibrated up to whole 481 x 321 photos, gives 55,296: tiles beat
        whole fits there), so no fit runs at a size whose lam is extrapolated; 1,000,000 with
        an explicit lam or output "raw".
    resume_dir : path, optional
        A folder where the run keeps its progress, so that run again with the same image and
        settings after an interruption (Ctrl-C, a crash, the time budget) it goes on from
        there: a tiled run each tile as it finishes (`dipstop.tiling.TileStore`), a whole
        image a checkpoint of its fit about once a minute (`dipstop.checkpoints`; with `ray`
        written by the task, so on a cluster the folder must be on a disk it can write),
        deleted when the fit ends by its rule or T. The folder is not removed here; the CLI
        keeps OUTPUT.partial and removes it once the image is complete.
    ray : str, optional
        Fit as Ray tasks (`dipstop.raytasks`): "" a local Ray, else a cluster's address. A
        tiled image's tiles run as single-thread tasks, as many at once as the Ray has CPUs
        (or GPUs), blended here as they finish; an image that is not tiled is one task. The
        fits' progress, estimate and Ctrl-C stay in the tasks: a tiled run's estimate comes
        when its first tile is done, and with `interruptible` Ctrl-C keeps the tiles done so
        far; `max_minutes` is a deadline for each task (tiles not started by then keep the
        noisy pixels).

    Returns
    -------
    denoised : same form as `image`
    result : DenoiseResult or TiledResult
        Where the fit stopped, why, the series and the settings; for a tiled image, a
        `TiledResult` with every tile's DenoiseResult.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noisy = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    >>> out, res = denoise(noisy, width=8, max_iters=5, patience=2, lam=50.0)
    >>> out.shape, out.dtype, res.iterations_run <= 5
    ((64, 64), dtype('uint8'), True)
    """
    # the fit's settings, as the tiled run hands them to each tile's `denoise`
    fit = dict(
        protocol=protocol,
        width=width,
        max_iters=max_iters,
        patience=patience,
        lr=lr,
        z_noise_std=z_noise_std,
        seed=seed,
        output=output,
        device=device,
        precision=precision,
        table=table,
    )
    check_denoise_options(sigma=sigma, lam=lam, max_minutes=max_minutes,
                          **{k: v for k, v in fit.items() if k != "output"})  # fmt: skip
    check_tiling(tile, overlap, tile_above)
    loaded, kind = _to_loaded(image)
    if tile is not None and tile_above is None:  # not for a tile's own fit (tile=None)
        tile_above = auto_tile_above(table, output, lam)
    if tile is not None and loaded.pixels.shape[0] * loaded.pixels.shape[1] > tile_above:
        return run_tiles(loaded, kind, image, tile=tile, overlap=overlap, sigma=sigma, lam=lam,
                         clean=clean, progress=progress, interruptible=interruptible,
                         switches=switches, max_minutes=max_minutes, on_estimate=on_estimate,
                         cancel=cancel, ray=ray, resume_dir=resume_dir, **fit)  # fmt: skip
    if ray is not None:  # the one fit, as one Ray task
        clean_px = None if clean is None else _to_loaded(clean)[0].pixels
        ((_, out, result),) = fit_remotely(
            [(0, loaded.pixels, clean_px)], ray, threads=None, sigma=sigma, lam=lam,
            switches=switches, max_minutes=max_minutes, tile=None, resume_dir=resume_dir, **fit,
        )  # fmt: skip
        return _from_array(join_array(out, loaded), kind, image), result
    proto = get_protocol(protocol).with_(
        width=width, max_iters=max_iters, patience=patience, lr=lr, z_noise_std=z_noise_std
    )
    if proto.max_iters < 1 or proto.patience < 1 or proto.width < 1:
        raise DipstopError("max_iters, patience and width must be at least 1")
    policy = make_policy(output)
    x = loaded.pixels
    height, width_px = x.shape[:2]
    padding_for(height, width_px)  # too-small images and bad devices fail before any work
    dev = resolve_device(device)
    sigma_estimated = sigma is None
    if sigma is None:
        sigma = estimate_sigma(x)
    notes: list[str] = []
    expected, expected_from = proto.max_iters, "T"
    if lam is None:
        tab = load_table(table, output=policy.name)
        lam, notes = lam_from_table(sigma, tab, proto.width, policy.name, height * width_px)
        expected = expected_iterations(
            proto.max_iters,
            proto.patience,
            mean_iterations_for_sigma(sigma, tab, height * width_px),
            tab["protocol"].get("patience"),
        )
        expected_from = "lam table" + (
            ", calibrated at another image size" if off_size(tab, height * width_px) else ""
        )
    if lam <= 0:
        raise DipstopError(f"lam must be positive, got {lam}")
    clean_t = None
    if clean is not None:
        clean_px = _to_loaded(clean)[0].pixels
        if clean_px.shape != x.shape:
            raise DipstopError(
                f"clean image is {clean_px.shape}, noisy is {x.shape}; they must match"
            )
        clean_t = torch.from_numpy(clean_px).permute(2, 0, 1).unsqueeze(0)

    switches = switches or Switches()
    settings = replace(proto.fit_settings(seed), cuda_graph=switches.cuda_graphs)
    if precision == "auto" and policy.name == "raw":
        precision = "fp32"  # the paper's rule stays exact: the same t* and image as ever
    settings = settings.with_precision(resolve_precision(precision, dev))
    fitter = Fitter(torch.from_numpy(x).permute(2, 0, 1), settings, dev)
    if clean_t is not None:
        clean_t = clean_t.to(fitter.device)
    cifs = CifsCriterion()
    stop = OnlineStop(cifs, Context(height * width_px, lam), proto.patience, policy.stream)
    bar = tqdm(total=proto.max_iters, disable=not progress, unit="it", dynamic_ncols=True)
    budget = None if max_minutes is None else float(max_minutes) * 60.0
    height_padded, width_padded = fitter.shape[2], fitter.shape[3]
    planner = _Planner(
        proto.max_iters,
        expected,
        "T" if expected == proto.max_iters else expected_from,
        estimate_bytes(height_padded * width_padded, proto.width),
        budget,
        on_estimate,
    )
    show = _progress(bar, stop, proto.max_iters)

    def on_row(it: Iteration, row: dict) -> None:
        show(it, row)
        planner.row(it, row)

    checkpoint = None
    if resume_dir is not None:  # (a Ray task was given it above)
        kept = {"sigma": float(sigma), "lam": float(lam), "protocol": proto.as_dict(),
                "seed": seed, "output": policy.name, "precision": settings.precision}  # fmt: skip
        checkpoint = RunCheckpoint(
            resume_dir,
            image_spec(x, None if clean is None else clean_px, kept),
            switches.checkpoint_seconds,
        )
    with bar:
        rec = record(
            fitter,
            proto.max_iters,
            [cifs],
            clean=clean_t,
            stop=stop,
            policy=policy,
            depth=switches.overlap,
            interruptible=interruptible,
            on_row=on_row,
            max_seconds=budget,
            cancel=cancel,
            checkpoint=checkpoint,
        )
    if rec.output is None:  # interrupted before the first iteration was scored
        raise KeyboardInterrupt
    planner.finish()
    stopper = stop.stopper
    t_star = stopper.best_index + 1
    if checkpoint is not None:
        if rec.resumed_at:
            notes.append(f"resumed at iteration {rec.resumed_at} from {checkpoint.path}")
        if not (rec.interrupted or rec.stopped_by_budget):
            checkpoint.discard()  # the fit is over: nothing to resume
    if rec.interrupted:
        notes.append(
            f"interrupted after {rec.iterations} iterations, before the stopping rule fired: "
            f"the output is the best so far (t*={t_star})"
        )
    if rec.stopped_by_budget:
        notes.append(
            f"the time budget of {max_minutes:g} min ran out after {rec.iterations} iterations, "
            f"before the stopping rule fired: the output is the best so far (t*={t_star})"
        )
    series = rec.series
    pixels = join_array(_to_hwc(rec.output), loaded)
    result = DenoiseResult(
        stop_iteration=t_star,
        iterations_run=rec.iterations,
        stopped_early=stopper.done,
        sigma=float(sigma),
        sigma_estimated=sigma_estimated,
        lam=float(lam),
        paper_lambda=paper_lambda(lam, height, width_px),
        settings={
            **proto.as_dict(),
            "seed": seed,
            "device": str(fitter.device),
            "precision": settings.precision,
            "output": policy.name,
            "criteria": {cifs.name: cifs.settings()},
        },
        series=series,
        seconds=rec.seconds,
        time_split={
            "network": fitter.step_seconds,
            "engine": rec.fit_seconds - fitter.step_seconds,
            "stopping": rec.seconds - rec.fit_seconds,
        },
        restores=fitter.restores,
        notes=notes,
        interrupted=rec.interrupted,
        stopped_by_budget=rec.stopped_by_budget,
        estimate=planner.estimate,
    )
    if clean_t is not None:
        result.psnr = psnr(rec.output, clean_t)  # the returned image, whatever the policy
        result.peak_iteration = int(np.argmax(series["psnr"])) + 1
        result.peak_psnr = float(series["psnr"].max())
    return _from_array(pixels, kind, image), result


NEAR_SIZE = 1.5  # an image within this factor of a calibrated size counts as calibrated
# the most pixels fitted whole by default, whatever sizes the table holds (1.5 x 192 x 192): at
# 481 x 321 tiles gave the whole image's PSNR in 0.6-0.7 of its time (docs/benchmarks.md)
WHOLE_AT_MOST = 55_296
MIN_RUNS = 4  # a table entry from fewer runs (images) is provisional (the size grids have 4)


def calibrated_sizes(tab: dict) -> list[int]:
    """The image sizes (pixels) a table was calibrated at: its entries' sizes, else its
    protocol's crop squared; empty when it says neither."""
    sizes = table_sizes(tab)
    if not sizes and tab["protocol"].get("crop"):  # a one-size table: its protocol's crop
        sizes = [tab["protocol"]["crop"] ** 2]
    return sizes


def off_size(tab: dict, pixels: int) -> bool:
    """Whether an image of `pixels` is more than `NEAR_SIZE` times away from every size of
    the table: its lam and expected stop are then carried over, not measured."""
    sizes = calibrated_sizes(tab)
    return bool(sizes) and not sizes[0] / NEAR_SIZE <= pixels <= sizes[-1] * NEAR_SIZE


def auto_tile_above(table: str | dict | None, output: str, lam: float | None) -> int:
    """The default `tile_above`: the most pixels a fit of the whole image may have.

    Images beyond `NEAR_SIZE` times the largest size the lam table was calibrated at are
    tiled, so that every fit, whole image or tile, runs at a size whose lam was measured, not
    extrapolated; at most `WHOLE_AT_MOST`, where tiles were measured to be as good and faster,
    even for a table calibrated on whole photos. With an explicit lam, for the paper's rule
    (output "raw": the paper fits whole images), or with a table that names no size, it is
    `TILE_ABOVE`.

    >>> auto_tile_above(None, "since-best", None)  # the shipped table: WHOLE_AT_MOST
    55296
    >>> auto_tile_above(None, "raw", None), auto_tile_above(None, "since-best", 40.0)
    (1000000, 1000000)
    """
    if lam is not None or output == "raw":
        return TILE_ABOVE
    sizes = calibrated_sizes(table if isinstance(table, dict) else load_table(table, output))
    return min(WHOLE_AT_MOST, int(sizes[-1] * NEAR_SIZE)) if sizes else TILE_ABOVE


# the keywords of `denoise` (fixed here, whatever later replaces the name, e.g. a test's stub)
OPTIONS = frozenset(inspect.signature(denoise).parameters) - {"image"}


def lam_from_table(
    sigma: float,
    table: str | dict | None,
    width: int,
    output: str = "raw",
    pixels: int | None = None,
) -> tuple[float, list[str]]:
    """lam for a noise level (and an image of `pixels` pixels) from a lam(sigma) table (a
    path, None for the one shipped for the output policy, or a table `load_table` returned),
    with notes on how far to trust it."""
    tab = table if isinstance(table, dict) else load_table(table, output=output)
    lam = lam_for_sigma(sigma, tab, pixels)
    notes = []
    if pixels is not None and off_size(tab, pixels):
        notes.append(
            f"lam table calibrated at {_sizes_text(calibrated_sizes(tab))} pixels, the image "
            f"has {pixels}: lam taken from the nearest size, not measured at this one (pass "
            "lam to override)"
        )
    if table_output(tab) != output:
        notes.append(
            f"lam table calibrated for output {table_output(tab)!r}, run with {output!r}: "
            "its lams may stop early or late for this output"
        )
    thin = [e for e in tab["entries"] if e.get("n_runs", MIN_RUNS) < MIN_RUNS]
    if thin:
        notes.append(
            "lam table is provisional: "
            + ", ".join(f"sigma {e['sigma']:g} from {e['n_runs']} run(s)" for e in thin)
        )
    if tab["protocol"].get("width") != width:
        notes.append(
            f"lam table calibrated at width {tab['protocol'].get('width')}, run at "
            f"width {width}: pass lam to override"
        )
    return lam, notes


def _sizes_text(sizes: list[int]) -> str:
    """ "16384" or "16384 to 154401"."""
    return str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"


class _Planner:
    """A row callback that times the first iterations and makes the run's estimate once."""

    def __init__(
        self,
        max_iters: int,
        expected: int,
        expected_from: str,
        memory_bytes: int,
        budget: float | None,
        on_estimate: Callable[[RunEstimate], None] | None,
    ) -> None:
        self.args = (max_iters, expected, expected_from, memory_bytes, budget)
        self.when = min(max_iters, WARMUP + TIMED)
        self.on_estimate = on_estimate
        self.seconds: list[float] = []
        self.start = 0  # iterations done before this call's first row (a resumed fit)
        self.estimate: RunEstimate | None = None

    def row(self, it: Iteration, row: dict) -> None:
        if self.estimate is not None:
            return
        if not self.seconds:
            self.start = it.t - 1
        self.seconds.append(row["seconds"])
        if len(self.seconds) == self.when:
            self.finish()

    def finish(self) -> None:
        """Make the estimate now if the run ended before it was due (a tile's share of a time
        budget can be a few iterations), from the rows it has."""
        if self.estimate is None and self.seconds:
            self.estimate = estimate_run(self.seconds, *self.args, start=self.start)
            if self.on_estimate is not None:
                self.on_estimate(self.estimate)


def _progress(bar: tqdm, stop: OnlineStop, max_iters: int) -> Callable[[Iteration, dict], None]:
    """A row callback that advances the progress bar and shows the stop's state."""

    def update(it: Iteration, row: dict) -> None:
        stopper = stop.stopper
        if stopper.improved:  # at most this many iterations remain: the ETA is an upper bound
            bar.total = min(max_iters, it.t + stop.patience)
        bar.set_postfix(
            loss=f"{row['mse']:.2e}",
            jpeg=int(row["jpeg_bytes"]),
            E=f"{row['criterion']:.4g}",
            best_t=stopper.best_index + 1,
            refresh=False,
        )
        bar.update(1)

    return update


def _to_hwc(output: torch.Tensor) -> np.ndarray:
    return output[0].permute(1, 2, 0).float().cpu().numpy()


def _to_loaded(image: Any) -> tuple[LoadedImage, str]:
    """Any supported image form as a LoadedImage, plus a tag for converting back."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim == 3:
            t = t.permute(1, 2, 0)
        if t.ndim not in (2, 3) or not t.is_floating_point():
            raise DipstopError(
                "tensor images must be float in [0, 1], shaped C x H x W, 1 x C x H x W or H x W"
            )
        return split_array((t.float() if t.dtype == torch.bfloat16 else t).numpy()), "tensor"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(image, Image.Image):
        im = image
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        if im.mode not in ("L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "F"):
            raise DipstopError(f"unsupported PIL mode {im.mode}; convert to RGB, RGBA or L first")
        return split_array(np.asarray(im)), "pil"
    if isinstance(image, np.ndarray):
        return split_array(image), "numpy"
    raise DipstopError(
        f"cannot denoise a {type(image).__name__}; pass a NumPy array, a PIL image or a tensor "
        "(or a file path to the CLI)"
    )


def _from_array(array: np.ndarray, kind: str, original: Any) -> Any:
    if kind == "tensor":
        t = torch.from_numpy(np.ascontiguousarray(array))
        if t.ndim == 3:
            t = t.permute(2, 0, 1)
        if original.ndim == 4:
            t = t.unsqueeze(0)
        return t.to(device=original.device, dtype=original.dtype)
    if kind == "pil":
        from PIL import Image

        return Image.fromarray(array)
    return array
