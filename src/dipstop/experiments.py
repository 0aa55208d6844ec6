"""Experiment grids (data set x sigma x seed) recorded into the results store.

Every run fits DIP for the protocol's full T iterations on a centre crop of a clean image
with synthetic noise, and records per iteration: the MSE to the noisy image, JPEG bytes,
the ES-WMV variance, BRISQUE and NIQE (every `every` iterations, NaN between), and PSNR
and SSIM to the clean image for the raw output and its exponential moving average. The
stopping rules are applied later, by the report, so S can change without rerunning.
Runs execute in-process by default, or as Ray tasks; either way one writer fills the store.
"""

from __future__ import annotations

import math
import time
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dipstop.checkpoints import RunCheckpoint, folder_for, tensor
from dipstop.codecs import jpeg_bytes, to_uint8
from dipstop.criteria import (
    BrisqueCriterion,
    NiqeCriterion,
    WmvCriterion,
)
from dipstop.datasets import file_sha256, list_images, synthetic_pair
from dipstop.fitting import Fitter, Iteration
from dipstop.metrics import psnr, ssim
from dipstop.noise import estimate_sigma
from dipstop.overlap import score_outputs
from dipstop.protocols import Protocol
from dipstop.store import ResultStore, run_key

EMA_WEIGHT = 0.99  # the original DIP's exponential moving average of outputs
WMV_WINDOW = 100


@dataclass(frozen=True)
class RunSpec:
    """One cell of a grid; `as_dict()` is what the store's key is hashed from."""

    dataset: str
    image: str
    image_sha256: str
    path: str  # where the image was read; not part of the key
    sigma: float
    seed: int
    protocol: Protocol
    every: int

    def as_dict(self) -> dict:
        return {
            "kind": "bench",
            "dataset": self.dataset,
            "image": self.image,
            "image_sha256": self.image_sha256,
            "sigma": self.sigma,
            "seed": self.seed,
            "protocol": {k: v for k, v in self.protocol.as_dict().items() if k != "patience"},
            "every": self.every,
            "wmv_window": WMV_WINDOW,
            "ema_weight": EMA_WEIGHT,
        }


def grid(
    folder: str | Path,
    sigmas: Iterable[float],
    protocol: Protocol,
    seeds: Iterable[int] = (0,),
    images: Sequence[str] | None = None,
    every: int = 10,
) -> list[RunSpec]:
    """Every (image, sigma, seed) of a data-set folder; `images` picks files by name."""
    files = list_images(folder)
    if images:
        by_name = {f.name: f for f in files}
        missing = [n for n in images if n not in by_name]
        if missing:
            from dipstop.errors import DipstopError

            raise DipstopError(f"images not in {folder}: {', '.join(missing)}")
        files = [by_name[n] for n in images]
    specs = []
    for f in files:
        sha = file_sha256(f)
        for sigma in sigmas:
            for seed in seeds:
                specs.append(
                    RunSpec(
                        Path(folder).name,
                        f.name,
                        sha,
                        str(f),
                        float(sigma),
                        int(seed),
                        protocol,
                        every,
                    )
                )
    return specs


def run_one(
    spec: RunSpec, device: str | None = None, checkpoints: str | None = None
) -> tuple[dict, dict, dict]:
    """Fit one grid cell for T iterations; returns (spec dict, series, summary).

    With a `checkpoints` folder the run saves its state there about once a minute and, when
    a checkpoint of the same spec is there at the start, continues from it. The "seconds"
    series is the run's clock when iteration t's record was complete, which with the
    scoring overlap is up to 2 steps after y_t was computed: the cost of stopping online.
    """
    clean, noisy = synthetic_pair(spec.path, spec.protocol.crop, spec.sigma, spec.seed)
    fitter = Fitter(
        torch.from_numpy(noisy).permute(2, 0, 1), spec.protocol.fit_settings(spec.seed), device
    )
    clean_t = torch.from_numpy(clean).permute(2, 0, 1).unsqueeze(0).to(fitter.device)
    wmv, brisque, niqe = WmvCriterion(WMV_WINDOW), BrisqueCriterion(), NiqeCriterion()
    noisy_u8 = to_uint8(noisy)
    noisy_scores = {"noisy_niqe": niqe(noisy_u8), "noisy_brisque": brisque(noisy_u8)}
    n = spec.protocol.max_iters
    names = (
        "mse",
        "jpeg_bytes",
        "wmv",
        "brisque",
        "niqe",
        "psnr",
        "ssim",
        "psnr_ema",
        "ssim_ema",
        "seconds",
    )
    s = {k: np.full(n, np.nan) for k in names}
    ema: torch.Tensor | None = None
    ckpt = RunCheckpoint(checkpoints, spec.as_dict())
    resumed: dict = {}

    def restore(state: dict) -> None:  # raises, changing nothing here, when they do not fit
        resumed["wmv"], resumed["ema"] = _saved_window(state, fitter)

    saved = ckpt.resume(fitter, restore, series=s)
    if saved is not None:
        wmv, ema, s = resumed["wmv"], resumed["ema"], saved["series"]
    start = time.perf_counter() - (saved["seconds"] if saved else 0.0)

    def host_scores(it: Iteration, u8: np.ndarray) -> tuple[int, float, float]:
        """JPEG bytes, BRISQUE and NIQE: NumPy and OpenCV work, run during the next step."""
        if it.t % spec.every:
            return jpeg_bytes(u8), math.nan, math.nan
        return jpeg_bytes(u8), brisque(u8), niqe(u8)

    fit = fitter.run(n, ckpt.state_every)
    for it, (nbytes, brisque_t, niqe_t) in score_outputs(fit, host_scores):
        i = it.t - 1
        ema = (
            it.output.clone()
            if ema is None
            else ema.mul_(EMA_WEIGHT).add_(it.output, alpha=1 - EMA_WEIGHT)
        )
        s["mse"][i] = it.loss
        s["jpeg_bytes"][i], s["brisque"][i], s["niqe"][i] = nbytes, brisque_t, niqe_t
        s["wmv"][i] = wmv.update(it.output)
        for suffix, out in (("", it.output), ("_ema", ema)):
            s["psnr" + suffix][i] = psnr(out, clean_t)
            s["ssim" + suffix][i] = ssim(out, clean_t)
        s["seconds"][i] = time.perf_counter() - start
        if it.state is not None and ckpt.due():  # every series is complete up to it.t here
            ckpt.save(it.state, s, s["seconds"][i], wmv=wmv.state_dict(), ema=ema.cpu())
    peak = int(np.argmax(s["psnr"]))
    summary = {
        "sigma_estimated": estimate_sigma(np.rint(noisy * 255) / 255),
        "noisy_psnr": psnr(torch.from_numpy(noisy), torch.from_numpy(clean)),
        **noisy_scores,
        "peak_psnr": float(s["psnr"][peak]),
        "peak_t": peak + 1,
        "last_psnr": float(s["psnr"][-1]),
        "pixels": int(clean.shape[0] * clean.shape[1]),
        "seconds": time.perf_counter() - start,
        "restores": fitter.restores,
        "resumed_at": saved["fitter"]["t"] if saved else None,
        "device": str(fitter.device),
        "threads": torch.get_num_threads(),  # CPU float sums, hence the trajectory, depend on it
        "path": spec.path,
    }
    return spec.as_dict(), s, summary


def _saved_window(state: dict, fitter: Fitter) -> tuple[WmvCriterion, torch.Tensor]:
    """A checkpoint's WMV window and EMA, checked against this fit at its iteration t:
    ValueError when they are not of it."""
    out, t = tuple(fitter.x0.shape), state["fitter"]["t"]
    saved = state.get("wmv")
    if not isinstance(saved, dict) or saved.get("window") != WMV_WINDOW:
        raise ValueError(f"its WMV state is not of a {WMV_WINDOW}-output window")
    if saved.get("count") != t:
        raise ValueError(f"its WMV window saw {saved.get('count')!r} outputs, not {t}")
    wmv = WmvCriterion(WMV_WINDOW)
    since = saved.get("since_resync")
    if not isinstance(since, int) or isinstance(since, bool) or not 0 <= since < wmv.resync_every:
        raise ValueError(f"its WMV resync count is {since!r}")
    tensor(saved.get("buf"), (WMV_WINDOW, *out), "its WMV window", torch.float32)
    for key in ("ref", "d1", "d2"):
        tensor(saved.get(key), out, f"its WMV {key}")
    wmv.load_state_dict(saved, fitter.device)
    return wmv, tensor(state.get("ema"), out, "its EMA", torch.float32).to(fitter.device)


class Spec(typing.Protocol):
    """A grid cell: `as_dict()` is everything that determines its run (the store's key)."""

    def as_dict(self) -> dict: ...


# runner(spec, device, checkpoints folder) -> (spec dict, series, summary)
Runner = Callable[[typing.Any, "str | None", "str | None"], tuple[dict, dict, dict]]


def pending(specs: Sequence[Spec], store: ResultStore) -> list[Spec]:
    """The specs whose runs are not in the store yet."""
    return [s for s in specs if not store.has(run_key(s.as_dict()))]


def run_grid(
    specs: Sequence[Spec],
    store: ResultStore,
    device: str | None = None,
    ray_address: str | None = None,
    use_ray: bool = False,
    log: Callable[[str], None] = print,
    runner: Runner = run_one,
) -> int:
    """Run every pending spec and store it as it finishes; returns how many ran.

    `runner(spec, device, checkpoints)` fits one cell and returns (spec dict, series,
    summary): `run_one` for the bench, `dipstop.calibration.record_one` for calibration.
    Unfinished runs keep checkpoints in `<store>.partial/` and resume from them. In-process
    by default; with `use_ray` as Ray tasks (on a local Ray, one 1-CPU task per core), the
    driver alone writing the store. Each run is claimed in the store before it starts (all
    at once with Ray), so benches sharing a store split the grid and never compute a run
    twice: a run another live bench has claimed, or has stored meanwhile, is skipped.
    """
    todo = pending(specs, store)
    log(
        f"{len(specs)} runs in the grid, {len(specs) - len(todo)} already stored, "
        f"{len(todo)} to run"
    )
    folder = str(folder_for(store.path))
    for spec in set(specs) - set(todo):  # stored, but killed before its checkpoint went
        RunCheckpoint(folder, spec.as_dict()).discard()

    def claimed(spec: Spec) -> bool:
        d = spec.as_dict()
        if store.claim(run_key(d)):
            return True
        log(
            f"skipping {d.get('image')} sigma={d.get('sigma'):g} seed={d.get('seed')}: "
            "another bench is running it or has stored it"
        )
        return False

    done = 0
    with store.claiming():  # a heartbeat keeps the claims; they go when this block ends
        results = (
            _ray_results([s for s in todo if claimed(s)], runner, device, ray_address, folder)
            if use_ray
            else (runner(s, device, folder) for s in todo if claimed(s))
        )
        for spec_dict, series, summary in results:
            store.put(spec_dict, series, summary)
            RunCheckpoint(folder, spec_dict).discard()
            done += 1
            log(
                f"[{done}/{len(todo)}] {spec_dict['image']} sigma={spec_dict['sigma']:g} "
                f"seed={spec_dict['seed']}: peak {summary['peak_psnr']:.2f} dB at "
                f"t={summary['peak_t']}, {summary['seconds']:.0f} s"
            )
    return done


def _ray_results(
    specs: Sequence[Spec], runner: Runner, device: str | None, address: str | None, folder: str
) -> Iterator[tuple[dict, dict, dict]]:
    """Run specs as Ray tasks (one GPU each when the cluster has GPUs); yield as they finish."""
    try:
        import ray
    except ImportError:
        from dipstop.errors import DipstopError

        raise DipstopError(
            "Ray is not installed; pip install 'dipstop[ray]' or drop --ray"
        ) from None
    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    task = ray.remote(num_gpus=1 if gpus else 0)(runner)
    futures = [task.remote(s, device, folder) for s in specs]
    while futures:
        ready, futures = ray.wait(futures, num_returns=1)
        yield ray.get(ready[0])
