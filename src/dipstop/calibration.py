"""Lambda calibration (paper Sec. 3.2): record DIP runs on clean images, then search lambda.

Recording fits DIP to clean training images with synthetic Gaussian noise and stores, for
every iteration, the MSE to the noisy image, the JPEG size and the PSNR to the clean image.
The search then picks, per sigma, the lam maximising the mean PSNR at
t_hat = argmin_t (lam * MSE_t + bpp_t^2): cheap, since it only reads the stored series.
lam is dipstop's size-invariant weight (the paper's lambda divided by H W; MSE on [0, 1]).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dipstop.checkpoints import RunCheckpoint
from dipstop.codecs import jpeg_bytes
from dipstop.datasets import file_sha256, synthetic_pair
from dipstop.errors import DipstopError
from dipstop.experiments import run_grid
from dipstop.fitting import Fitter
from dipstop.metrics import psnr
from dipstop.overlap import score_outputs
from dipstop.protocols import Protocol
from dipstop.stopping import detect_offline
from dipstop.store import ResultStore

LAM_GRID = np.logspace(-1, 6, 561)  # 32 points per decade


@dataclass(frozen=True)
class RecordingSpec:
    """One calibration recording: an image, a noise level and a seed under a protocol."""

    path: str  # where the image was read; not part of the key
    image_sha256: str
    sigma: float
    seed: int
    protocol: Protocol
    iters: int

    def as_dict(self) -> dict:
        """What determines the recording (patience S does not: it is not used)."""
        return {
            "kind": "calibration",
            "image": Path(self.path).name,
            "image_sha256": self.image_sha256,
            "crop": self.protocol.crop,
            "sigma": self.sigma,
            "seed": self.seed,
            "width": self.protocol.width,
            "lr": self.protocol.lr,
            "z_noise_std": self.protocol.z_noise_std,
            "iters": self.iters,
        }


def record_run(
    clean: np.ndarray,
    noisy: np.ndarray,
    protocol: Protocol,
    iters: int,
    seed: int,
    device: str | None = None,
    checkpoint: RunCheckpoint | None = None,
) -> dict[str, np.ndarray]:
    """Fit DIP to `noisy`; return per-iteration mse, jpeg_bytes, psnr (to clean), seconds.

    With a `checkpoint`, resumes from it and saves to it about once a minute.
    """
    fitter = Fitter(torch.from_numpy(noisy).permute(2, 0, 1), protocol.fit_settings(seed), device)
    clean_t = torch.from_numpy(clean).permute(2, 0, 1).unsqueeze(0).to(fitter.device)
    out = {k: np.full(iters, np.nan) for k in ("mse", "jpeg_bytes", "psnr", "seconds")}
    saved = checkpoint.resume(fitter, series=out) if checkpoint else None
    if saved is not None:
        out = saved["series"]
    start = time.perf_counter() - (saved["seconds"] if saved else 0.0)
    fit = fitter.run(iters, checkpoint.state_every if checkpoint else 0)
    for it, nbytes in score_outputs(fit, lambda it, u8: jpeg_bytes(u8)):
        i = it.t - 1
        out["mse"][i] = it.loss
        out["jpeg_bytes"][i] = nbytes
        out["psnr"][i] = psnr(it.output, clean_t)
        out["seconds"][i] = time.perf_counter() - start
        if checkpoint and it.state is not None and checkpoint.due():
            checkpoint.save(it.state, out, out["seconds"][i])
    return out


def record_one(
    spec: RecordingSpec, device: str | None = None, checkpoints: str | None = None
) -> tuple[dict, dict, dict]:
    """Record one calibration run: (spec dict, series, summary), as the grid runner wants."""
    clean, noisy = synthetic_pair(spec.path, spec.protocol.crop, spec.sigma, spec.seed)
    ckpt = RunCheckpoint(checkpoints, spec.as_dict())
    series = record_run(clean, noisy, spec.protocol, spec.iters, spec.seed, device, ckpt)
    best = int(np.argmax(series["psnr"]))
    summary = {
        "peak_psnr": float(series["psnr"][best]),
        "peak_t": best + 1,
        "last_psnr": float(series["psnr"][-1]),
        "seconds": float(series["seconds"][-1]),
        "pixels": int(clean.shape[0] * clean.shape[1]),
    }
    return spec.as_dict(), series, summary


def record(
    images: Sequence[Path],
    sigmas: Iterable[float],
    protocol: Protocol,
    store: ResultStore,
    seeds: Iterable[int] = (0,),
    iters: int | None = None,
    device: str | None = None,
    log: Callable[[str], None] = print,
    use_ray: bool = False,
    ray_address: str | None = None,
) -> int:
    """Record every (image, sigma, seed) not yet in the store; returns how many were run.

    Image-major order, so an interrupted recording covers every sigma evenly. Runs go through
    the bench's executor: in-process, or as Ray tasks with `use_ray`.
    """
    iters = iters or protocol.max_iters
    sigmas, seeds = list(sigmas), list(seeds)
    shas = {p: file_sha256(p) for p in images}  # read each image once, not once per cell
    specs = [
        RecordingSpec(str(p), shas[p], float(s), int(k), protocol, int(iters))
        for p in images
        for s in sigmas
        for k in seeds
    ]
    return run_grid(specs, store, device, ray_address, use_ray, log, runner=record_one)


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


def selected_iterations(mse: np.ndarray, bpp: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """argmin_t (lam * mse_t + bpp_t^2) for every lam: one index per lam (first on ties)."""
    e = lams[:, None] * mse[None, :] + (bpp * bpp)[None, :]
    return np.argmin(e, axis=1)


def search_lambda(
    runs: Sequence[dict[str, np.ndarray]], lams: np.ndarray = LAM_GRID
) -> tuple[float, np.ndarray]:
    """The lam maximising mean PSNR at t_hat over recorded runs, and the mean-PSNR curve.

    Each run holds per-iteration "mse", "bpp" (JPEG bytes per pixel) and "psnr" arrays.
    Among equally good lams it takes the middle of the widest best plateau (in log lam),
    the choice least sensitive to a slightly wrong sigma.

    >>> t = np.arange(1, 101, dtype=float)
    >>> run = {"mse": 1 / t, "bpp": t / 64, "psnr": 40 - np.abs(t - 30.0)}
    >>> lam, curve = search_lambda([run])
    >>> float(curve.max())
    40.0
    """
    if not runs:
        raise DipstopError("no recorded runs to calibrate on; run `dipstop calibrate` first")
    total = np.zeros(lams.size)
    for run in runs:
        idx = selected_iterations(run["mse"], run["bpp"], lams)
        total += run["psnr"][idx]
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
    """One LambdaChoice per sigma from the store's calibration runs at this width and crop.

    `iters` truncates the series (a calibration for a smaller T than was recorded); runs
    recorded for fewer iterations are left out. With `patience`, each choice also reports
    the mean PSNR where the online Eq. 4 rule (what `denoise` runs) stops at that lam.
    """
    groups: dict[float, list[dict[str, np.ndarray]]] = {}
    names: dict[float, list[str]] = {}
    for run in store.runs("calibration"):
        if run.spec["width"] != width or run.spec["crop"] != crop:
            continue
        if iters and run.spec["iters"] < iters:
            continue  # recorded for a shorter T: cannot stand in for this one
        series = {k: v[:iters] if iters else v for k, v in run.series.items()}
        series["bpp"] = series["jpeg_bytes"] / run.summary["pixels"]
        groups.setdefault(run.spec["sigma"], []).append(series)
        names.setdefault(run.spec["sigma"], []).append(run.spec["image"])
    choices = []
    for sigma in sorted(groups):
        runs = groups[sigma]
        lam, curve = search_lambda(runs)
        peak = float(np.mean([r["psnr"].max() for r in runs]))
        choice = LambdaChoice(
            sigma, lam, float(curve.max()), peak, len(runs), curve, sorted(names[sigma])
        )
        if patience:
            at_stop = [
                r["psnr"][detect_offline(lam * r["mse"] + r["bpp"] ** 2, patience)] for r in runs
            ]
            choice.mean_psnr_eq4 = float(np.mean(at_stop))
        choices.append(choice)
    return choices
