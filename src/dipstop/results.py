"""What a run returns: `DenoiseResult` for one fit, `TiledResult` for a tiled image.

Plain records, made by the fit (`dipstop.single`) and the tiled runner (`dipstop.tiling`),
read by the CLI, the reports and the resume store; `state`/`from_state` carry a result
through `torch.save` without running code on load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from dipstop.estimate import RunEstimate

__all__ = ["DenoiseResult", "TileRun", "TiledResult"]


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
    fit_psnr : float or None
        With a clean image and the Wiener filter: PSNR of the fit's image before it.
    notes : list of str
        Caveats (a provisional or other-width lam table, an interruption, the time budget).
    interrupted : bool
        Ctrl-C ended the fit (with `interruptible`): the image is the best so far.
    stopped_by_budget : bool
        The time budget (`max_minutes`) ended the fit: the image is the best so far.
    estimate : RunEstimate or None
        The run's expected length and memory, made once its first iterations were timed
        (`dipstop.estimate`); None when the run ended before that.
    cpu_seconds : float
        CPU time of the fit (`single.cpu_clock`): its thread's for a single-thread fit (a
        tile's; the JPEG encodes on their helper thread, about 1% of it, left out), the
        process's for a fit on several threads.
    network : dict of str to Tensor, or None
        The network's weights at t* (CPU copies), kept only when the fit was asked to
        (`fit_one(keep_network=True)`: a warm-started tiled run's first tile, whose
        network the other tiles start from); not in `summary`.

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
    fit_psnr: float | None = None  # the fit's image's, before the Wiener filter
    peak_psnr: float | None = None
    peak_iteration: int | None = None
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C ended the fit (with `interruptible`): best so far
    stopped_by_budget: bool = False  # max_minutes ended the fit: best so far
    estimate: RunEstimate | None = None
    cpu_seconds: float = 0.0
    network: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def summary(self) -> dict:
        """The scalar fields, for JSON reports."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("series", "network")}
        out["estimate"] = asdict(self.estimate) if self.estimate is not None else None
        return out

    def state(self) -> dict:
        """Every field as tensors and plain containers, for `torch.save` and a
        `torch.load(weights_only=True)` that runs no code (`from_state` reads it back)."""
        series = {k: torch.tensor(np.asarray(v)) for k, v in self.series.items()}  # copies
        return {**self.summary(), "series": series, "network": self.network}

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
            "cpu_seconds": r.cpu_seconds if r else 0.0,
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
        Every tile, row by row, with its DenoiseResult (t*, iterations, seconds, series); with
        an ensemble (`members` > 1), each fit of a tile, its seeds in order.
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
        With a clean image: PSNR of the returned image (before conversion to the input's
        dtype).
    fit_psnr : float or None
        With a clean image and the Wiener filter: PSNR of the blended fits before it.
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
    members : int
        Fits averaged per tile (`DenoiseOptions.ensemble`).
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
    fit_psnr: float | None = None
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    stopped_by_budget: bool = False
    estimate: RunEstimate | None = None
    members: int = 1  # fits averaged per tile (an ensemble of seeds); `tiles` holds each fit

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
    def cpu_seconds(self) -> float:
        """CPU seconds of every fit, those a resumed run read back from its folder included:
        what the image cost, wherever the run was cut."""
        return sum(r.cpu_seconds for r in self.fitted)

    @property
    def stopped_early(self) -> bool:
        """Whether every tile was fitted and stopped by the Eq. 4 rule before T."""
        return len(self.fitted) == len(self.tiles) and all(r.stopped_early for r in self.fitted)

    def describe(self) -> str:
        """One line: tiles, their stops (range and median), iterations, wall and CPU
        seconds (every fit's, kept ones read back included), precision."""
        stops = self.stop_iterations
        how = "estimated" if self.sigma_estimated else "given"
        early = sum(r.stopped_early for r in self.fitted)
        fits = "tiles" if self.members == 1 else f"fits ({self.members} seeds a tile)"
        text = (
            f"sigma {self.sigma:.1f} ({how}), lam {self.lam:.4g}: {len(self.fitted)} of "
            f"{len(self.tiles)} {fits} of {self.tile} px (overlap {self.overlap}) fitted, "
            f"{early} stopped early"
        )
        if stops:
            text += f", t* {min(stops)}-{max(stops)} (median {int(np.median(stops))})"
        precision = self.settings.get("precision", "fp32")
        return text + (
            f", {self.iterations_run} iterations in {self.seconds:.0f} s "
            f"({self.cpu_seconds:.0f} CPU s) in {precision}"
        )

    def summary(self) -> dict:
        """The scalar fields and one summary per tile, for JSON reports."""
        out = {k: v for k, v in self.__dict__.items() if k != "tiles"}
        out["estimate"] = None if self.estimate is None else asdict(self.estimate)
        out["stop_iterations"] = self.stop_iterations
        out["iterations_run"] = self.iterations_run
        out["cpu_seconds"] = self.cpu_seconds
        out["stopped_early"] = self.stopped_early
        out["tiles"] = [t.summary() for t in self.tiles]
        return out
