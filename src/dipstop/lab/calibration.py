"""Lambda calibration (paper Sec. 3.2): record DIP runs on clean images, then search lambda.

Recording fits DIP to clean training images with synthetic Gaussian noise (the same kind of
run as the bench records, `dipstop.lab.runs`), storing per iteration the MSE to the noisy
image, the JPEG size, PSNR to the clean image and the other criteria and averages. The search
then picks, per sigma, the lam maximising the mean PSNR at t_hat = argmin_t E_t(lam), with
E_t the CIFS criterion's values: cheap, since it only reads the stored series. lam is
dipstop's size-invariant weight (the paper's lambda divided by H W; MSE on [0, 1]).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dipstop.criteria import CifsCriterion, Context
from dipstop.errors import DipstopError
from dipstop.lab.executor import run_grid
from dipstop.lab.runs import RunSpec, calibration_criteria, grid
from dipstop.lab.store import ResultStore
from dipstop.lambda_table import write_table
from dipstop.protocols import Protocol
from dipstop.runtime import Switches
from dipstop.stopping import detect_offline

LAM_GRID = np.logspace(-1, 6, 561)  # 32 points per decade


def specs(
    images: Sequence[Path],
    sigmas: Iterable[float],
    protocol: Protocol,
    seeds: Iterable[int] = (0,),
) -> list[RunSpec]:
    """The calibration runs of these images: CIFS and ES-WMV, the running averages, no SSIM."""
    if not images:
        raise DipstopError("no calibration images given; pass a folder with --data")
    folders = {p.parent for p in images}
    if len(folders) != 1:
        raise DipstopError("calibration images must come from one folder; pass it with --data")
    return grid(
        folders.pop(),
        sigmas,
        protocol,
        seeds,
        [p.name for p in images],
        criteria=calibration_criteria(),
        ssim_of=(),
    )


def record(
    images: Sequence[Path],
    sigmas: Iterable[float],
    protocol: Protocol,
    store: ResultStore,
    seeds: Iterable[int] = (0,),
    device: str | None = None,
    log: Callable[[str], None] = print,
    use_ray: bool = False,
    ray_address: str | None = None,
    switches: Switches | None = None,
) -> int:
    """Record every (image, sigma, seed) not yet in the store; returns how many were run.

    Image-major order, so an interrupted recording covers every sigma evenly. Runs go through
    the lab's executor: in-process, or as Ray tasks with `use_ray`.
    """
    todo = specs(images, sigmas, protocol, seeds)
    return run_grid(todo, store, device, ray_address, use_ray, log, switches=switches)


@dataclass
class LambdaChoice:
    """The lam chosen for one sigma, with what it achieves on the recorded runs."""

    sigma: float
    lam: float
    mean_psnr: float  # mean PSNR at argmin_t E_t(lam)
    mean_peak_psnr: float  # the oracle's mean, for comparison
    n_runs: int
    curve: np.ndarray  # mean PSNR for every lam in the grid
    images: list[str]  # the recorded images behind this choice
    mean_psnr_eq4: float | None = None  # mean PSNR where the Eq. 4 rule stops at this lam


def selected_iterations(run: CalibrationRun, lams: np.ndarray) -> np.ndarray:
    """argmin_t E_t(lam) of the CIFS criterion for every lam: one index per lam (first on ties)."""
    e = CifsCriterion().values(run.series, Context(run.pixels, lam=lams[:, None]))
    return np.argmin(e, axis=1)


@dataclass
class CalibrationRun:
    """A recorded run's series ("mse", "jpeg_bytes", "psnr") and its pixel count."""

    series: dict[str, np.ndarray]
    pixels: int
    image: str = ""


def search_lambda(
    runs: Sequence[CalibrationRun], lams: np.ndarray = LAM_GRID
) -> tuple[float, np.ndarray]:
    """The lam maximising mean PSNR at t_hat over recorded runs, and the mean-PSNR curve.

    Among equally good lams it takes the middle of the widest best plateau (in log lam),
    the choice least sensitive to a slightly wrong sigma.

    >>> t = np.arange(1, 101, dtype=float)
    >>> series = {"mse": 1 / t, "jpeg_bytes": t, "psnr": 40 - np.abs(t - 30.0)}
    >>> lam, curve = search_lambda([CalibrationRun(series, pixels=64)])
    >>> float(curve.max())
    40.0
    """
    if not runs:
        raise DipstopError("no recorded runs to calibrate on; run `dipstop calibrate` first")
    total = np.zeros(lams.size)
    for run in runs:
        idx = selected_iterations(run, lams)
        total += run.series["psnr"][idx]
    curve = total / len(runs)
    best = np.flatnonzero(curve >= curve.max() - 1e-9)
    # widest run of consecutive best indices, then its middle
    splits = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)
    widest = max(splits, key=len)
    return float(lams[widest[len(widest) // 2]]), curve


def calibrate_from_store(
    store: ResultStore,
    width: int,
    crop: int | None,
    iters: int | None = None,
    patience: int | None = None,
) -> list[LambdaChoice]:
    """One LambdaChoice per sigma from the store's runs at this width and crop.

    `iters` truncates the series (a calibration for a smaller T than was recorded); runs
    recorded for fewer iterations are left out. A run recorded twice (the same image, sigma
    and seed, e.g. once with fewer series) counts once, the newest. With `patience`, each
    choice also reports the mean PSNR where the online Eq. 4 rule stops at that lam.
    """
    latest: dict[tuple, CalibrationRun] = {}
    for run in store.runs():
        proto = run.spec["protocol"]
        if proto["width"] != width or proto["crop"] != crop:
            continue
        if iters and proto["max_iters"] < iters:
            continue  # recorded for a shorter T: cannot stand in for this one
        series = {k: v[:iters] if iters else v for k, v in run.series.items()}
        key = (run.spec["image_sha256"], run.spec["sigma"], run.spec["seed"])
        latest[key] = CalibrationRun(series, run.summary["pixels"], run.spec["image"])
    groups: dict[float, list[CalibrationRun]] = {}
    for (_, sigma, _), run in latest.items():
        groups.setdefault(sigma, []).append(run)
    choices = []
    cifs = CifsCriterion()
    for sigma in sorted(groups):
        runs = groups[sigma]
        lam, curve = search_lambda(runs)
        peak = float(np.mean([r.series["psnr"].max() for r in runs]))
        names = sorted(r.image for r in runs)
        choice = LambdaChoice(sigma, lam, float(curve.max()), peak, len(runs), curve, names)
        if patience:
            at_stop = [
                r.series["psnr"][
                    detect_offline(cifs.values(r.series, Context(r.pixels, lam)), patience)
                ]
                for r in runs
            ]
            choice.mean_psnr_eq4 = float(np.mean(at_stop))
        choices.append(choice)
    return choices


def write_lambda_table(
    path: str | Path,
    choices: Sequence[LambdaChoice],
    protocol: Protocol,
    command: str,
    planned: Sequence[str] = (),
    folder: str | None = None,
) -> None:
    """Write the lam(sigma) table of these choices, with its provenance: the command that
    made it, the date, the images behind every entry and the selection rule."""
    import datetime

    entries = [
        {
            "sigma": c.sigma,
            "lam": c.lam,
            "mean_psnr": round(c.mean_psnr, 4),
            "mean_psnr_eq4": None if c.mean_psnr_eq4 is None else round(c.mean_psnr_eq4, 4),
            "mean_peak_psnr": round(c.mean_peak_psnr, 4),
            "n_runs": c.n_runs,
            "images": c.images,
        }
        for c in choices
    ]
    provenance = {
        "command": command,
        "date": datetime.date.today().isoformat(),
        "images": sorted({name for c in choices for name in c.images}),
        "planned_images": list(planned),
        "image_folder": folder,
        "sigmas": [c.sigma for c in choices],
        "iters": protocol.max_iters,
        "selection": "argmin_t E_t over all recorded iterations (paper Sec. 3.2)",
    }
    write_table(path, entries, protocol.as_dict(), provenance)
