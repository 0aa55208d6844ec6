"""Runs: one (image, sigma, seed) cell under a protocol, recorded for its whole T iterations.

A `RunSpec` says everything that determines a run: the image (by content hash), the noise,
the protocol, and every setting that changes what is recorded (each criterion's settings,
each running average's). `as_dict()` is what the store key is hashed from. The bench and the
calibration record the same kind of run and differ only in data set and criteria; stopping
rules are applied later, on the stored series, so S and lam can change without rerunning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dipstop.averaging import make_average
from dipstop.checkpoints import RunCheckpoint
from dipstop.codecs import quantise
from dipstop.criteria import make_criterion
from dipstop.errors import DipstopError
from dipstop.fitting import FitSettings, Fitter
from dipstop.lab.datasets import file_sha256, list_images, synthetic_pair
from dipstop.metrics import psnr
from dipstop.noise import estimate_sigma
from dipstop.protocols import Protocol
from dipstop.recording import record
from dipstop.runtime import Switches, cpu_name

WMV_WINDOW = 100  # the paper's (Wang et al.'s) window
BENCH_EVERY = 10  # BRISQUE and NIQE every 10 iterations: they cost more than a step


def bench_criteria(every: int = BENCH_EVERY) -> dict[str, dict]:
    """What a bench run records: the paper's CIFS and its three comparison criteria.

    CIFS and ES-WMV (window 100) every iteration; BRISQUE and NIQE every `every`-th.

    Examples
    --------
    >>> bench_criteria(every=5)["niqe"]
    {'every': 5}
    """
    return {
        "cifs": {"every": 1},
        "wmv": {"every": 1, "window": WMV_WINDOW},
        "brisque": {"every": every},
        "niqe": {"every": every},
    }


def calibration_criteria() -> dict[str, dict]:
    """What a calibration run records: the cheap criteria a stopping rule can be chosen from.

    Examples
    --------
    >>> calibration_criteria()
    {'cifs': {'every': 1}, 'wmv': {'every': 1, 'window': 100}}
    """
    return {"cifs": {"every": 1}, "wmv": {"every": 1, "window": WMV_WINDOW}}


def default_averages(patience: int) -> dict[str, dict]:
    """The running averages every run records (the candidates of the averaged output):

    the original DIP's EMA (0.99), a slow EMA (0.998, about S iterations), the mean of the
    last 100 outputs, and the mean of the last S + 1 (which, read at the online stop t* + S,
    is the mean of the outputs since t*).

    Examples
    --------
    >>> sorted(default_averages(patience=500))
    ['box100', 'box501', 'ema', 'ema998']
    """
    return {
        "ema": {"kind": "ema", "weight": 0.99},
        "ema998": {"kind": "ema", "weight": 0.998},
        "box100": {"kind": "box", "window": 100},
        f"box{patience + 1}": {"kind": "box", "window": patience + 1},
    }


def _frozen(d: Mapping[str, Mapping[str, Any]]) -> tuple:
    return tuple((k, tuple(sorted(v.items()))) for k, v in d.items())


@dataclass(frozen=True)
class RunSpec:
    """One cell of a grid; `as_dict()` is what the store's key is hashed from.

    Frozen and hashable; `grid` makes them. Criteria and averages are stored as nested
    tuples so the spec can be hashed; `criteria_settings` and `average_settings` give them
    back as dicts.

    Parameters
    ----------
    dataset : str or None
        Name of the data-set folder.
    image : str
        The image's file name.
    image_sha256 : str
        sha256 of the image file: the image's identity in the key.
    path : str
        Where the image was read; not part of the key.
    sigma : float
        Noise std, 0-255 scale.
    seed : int
        Seed of the fit and of the noise.
    protocol : Protocol
        Width, T, crop, lr, z_noise_std (its patience is not part of the key: stopping is
        applied later).
    criteria : tuple
        ((name, ((setting, value), ...)), ...): what the run records.
    averages : tuple
        The running averages, in the same form.
    ssim_of : tuple of str
        Streams whose SSIM is recorded ("" the raw output, or an average's name).
    precision : str
        "fp32" or "bf16" (`dipstop.fitting.FitSettings.with_precision`); in the key through
        the fit settings, so an fp32 run keeps the key it had before precision existed.

    Examples
    --------
    >>> from dipstop.protocols import PROTOCOLS
    >>> spec = RunSpec("set", "a.png", "ab12", "/data/set/a.png", 25.0, 0, PROTOCOLS["cpu"],
    ...                (("cifs", (("every", 1),)),))
    >>> d = spec.as_dict()
    >>> d["criteria"], d["protocol"]["crop"], "path" in d, d["ssim"]
    ({'cifs': {'every': 1}}, 128, False, [''])
    """

    dataset: str | None
    image: str
    image_sha256: str
    path: str  # where the image was read; not part of the key
    sigma: float
    seed: int
    protocol: Protocol
    criteria: tuple  # ((name, ((setting, value), ...)), ...): see `criteria_settings`
    averages: tuple = ()
    ssim_of: tuple[str, ...] = ("", "ema")  # streams whose SSIM is recorded ("" raw)
    precision: str = "fp32"

    @property
    def fit_settings(self) -> FitSettings:
        """The fit's settings: the protocol's, this seed, this precision."""
        return self.protocol.fit_settings(self.seed).with_precision(self.precision)

    @property
    def criteria_settings(self) -> dict[str, dict]:
        return {k: dict(v) for k, v in self.criteria}

    @property
    def average_settings(self) -> dict[str, dict]:
        return {k: dict(v) for k, v in self.averages}

    def as_dict(self) -> dict:
        """Everything that determines the run, as JSON-able dict: the store key's source.

        The SSIM streams keep only "" and the averages the spec has.
        """
        return {
            "kind": "run",
            "dataset": self.dataset,
            "image": self.image,
            "image_sha256": self.image_sha256,
            "sigma": self.sigma,
            "seed": self.seed,
            "protocol": {k: v for k, v in self.protocol.as_dict().items() if k != "patience"},
            "fit": self.fit_settings.result_settings(),
            "criteria": self.criteria_settings,
            "averages": self.average_settings,
            "ssim": [s for s in self.ssim_of if s == "" or s in self.average_settings],
        }


def grid(
    folder: str | Path,
    sigmas: Iterable[float],
    protocol: Protocol,
    seeds: Iterable[int] = (0,),
    images: Sequence[str] | None = None,
    criteria: Mapping[str, Mapping[str, Any]] | None = None,
    averages: Mapping[str, Mapping[str, Any]] | None = None,
    ssim_of: Sequence[str] | None = None,
    precision: str = "fp32",
) -> list[RunSpec]:
    """Every (image, sigma, seed) of a data-set folder, image-major (so an interrupted grid
    covers every sigma evenly); `images` picks files by name. Criteria default to the bench's,
    averages to `default_averages(protocol.patience)`.

    Parameters
    ----------
    folder : str or Path
        The data set: a folder of clean images (`list_images`).
    sigmas : iterable of float
        Noise levels, 0-255 scale.
    protocol : Protocol
    seeds : iterable of int
    images : sequence of str, optional
        File names to use, in this order; all images of the folder by default.
    criteria : mapping, optional
        Criterion name to settings; `bench_criteria()` by default (BRISQUE and NIQE need
        their model files).
    averages : mapping, optional
        Running-average name to settings; `default_averages(protocol.patience)` by default.
    ssim_of : sequence of str, optional
        Streams whose SSIM is recorded; by default the raw output, the EMA and the mean of the
        last S + 1 outputs (the default output policy's image, "since-best").
    precision : str
        "fp32" (default) or "bf16": the fit's arithmetic (`RunSpec.precision`).

    Returns
    -------
    list of RunSpec
        Image by image, then sigma, then seed.

    Raises
    ------
    DipstopError
        If the folder holds no image or a named image is not in it.

    Examples
    --------
    >>> import tempfile
    >>> from dipstop.imageio import write_image
    >>> from dipstop.protocols import Protocol
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("b.png", "a.png"):
    ...     write_image(folder / name, np.zeros((64, 64, 3), np.uint8))
    >>> tiny = Protocol("tiny", width=8, max_iters=3, patience=2, crop=None)
    >>> specs = grid(folder, [15, 25], tiny, criteria={"cifs": {"every": 1}})
    >>> [(s.image, s.sigma, s.seed) for s in specs]
    [('a.png', 15.0, 0), ('a.png', 25.0, 0), ('b.png', 15.0, 0), ('b.png', 25.0, 0)]
    """
    files = list_images(folder)
    if images:
        by_name = {f.name: f for f in files}
        missing = [n for n in images if n not in by_name]
        if missing:
            raise DipstopError(f"images not in {folder}: {', '.join(missing)}; check the names")
        files = [by_name[n] for n in images]
    crit = _frozen(criteria if criteria is not None else bench_criteria())
    avgs = _frozen(averages if averages is not None else default_averages(protocol.patience))
    if ssim_of is None:
        ssim_of = ("", "ema", f"box{protocol.patience + 1}")
    sigmas, seeds = list(sigmas), list(seeds)
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
                        crit,
                        avgs,
                        tuple(ssim_of),
                        precision,
                    )
                )
    return specs


def run_one(
    spec: RunSpec,
    device: str | None = None,
    checkpoints: str | None = None,
    switches: Switches | None = None,
) -> tuple[dict, dict, dict]:
    """Fit one grid cell for T iterations; returns (spec dict, series, summary).

    With a `checkpoints` folder the run saves its state there about once a minute and, when
    a checkpoint of the same spec is there at the start, continues from it. The "seconds"
    series is the run's clock when iteration t's record was complete, which with the
    scoring overlap is up to 2 steps after y_t was computed: the cost of stopping online.

    The noisy image is `synthetic_pair(spec.path, crop, sigma, seed)`; PSNR to the clean
    image is recorded every iteration. BRISQUE and NIQE, when recorded, are also scored on
    the noisy image itself (summary "noisy_brisque", "noisy_niqe").

    Parameters
    ----------
    spec : RunSpec
    device : str, optional
        Where to fit (`dipstop.fitting.resolve_device`).
    checkpoints : str, optional
        Folder for the run's checkpoint.
    switches : Switches, optional
        Engine switches (CUDA graphs, scoring overlap, checkpoint interval).

    Returns
    -------
    spec_dict : dict
        `spec.as_dict()`, the store's key source.
    series : dict of ndarray
        One value per iteration for each recorded series ("mse", "psnr", the criteria's,
        SSIM and the averages').
    summary : dict
        Per-run numbers: estimated sigma, noisy PSNR, peak PSNR and its iteration, last
        PSNR, pixels, seconds, restores, device, threads, path, ...

    Examples
    --------
    >>> import tempfile
    >>> from dipstop.imageio import write_image
    >>> from dipstop.protocols import Protocol
    >>> folder = Path(tempfile.mkdtemp())
    >>> pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> write_image(folder / "a.png", pixels)
    >>> tiny = Protocol("tiny", width=8, max_iters=3, patience=2, crop=None)
    >>> spec = grid(folder, [25], tiny, criteria={"cifs": {"every": 1}})[0]
    >>> spec_dict, series, summary = run_one(spec)  # doctest: +SKIP
    >>> spec_dict == spec.as_dict(), len(series["psnr"]), len(series["mse"])  # doctest: +SKIP
    (True, 3, 3)
    >>> summary["peak_psnr"] == float(series["psnr"].max()), summary["pixels"]  # doctest: +SKIP
    (True, 4096)
    """
    switches = switches or Switches()
    clean, noisy = synthetic_pair(spec.path, spec.protocol.crop, spec.sigma, spec.seed)
    settings = replace(spec.fit_settings, cuda_graph=switches.cuda_graphs)
    fitter = Fitter(torch.from_numpy(noisy).permute(2, 0, 1), settings, device)
    clean_t = torch.from_numpy(clean).permute(2, 0, 1).unsqueeze(0).to(fitter.device)
    criteria = [make_criterion(k, v) for k, v in spec.criteria_settings.items()]
    averages = {k: make_average(v) for k, v in spec.average_settings.items()}
    noisy_u8 = quantise(noisy)
    noisy_scores = {
        f"noisy_{c.name}": c(noisy_u8) for c in criteria if c.scores_one_image
    }
    ckpt = RunCheckpoint(checkpoints, spec.as_dict(), switches.checkpoint_seconds)
    rec = record(
        fitter,
        spec.protocol.max_iters,
        criteria,
        clean=clean_t,
        averages=averages,
        ssim_of=spec.as_dict()["ssim"],
        checkpoint=ckpt if checkpoints else None,
        depth=switches.overlap,
    )
    s = rec.series
    peak = int(np.argmax(s["psnr"]))
    summary = {
        "sigma_estimated": estimate_sigma(np.rint(noisy * 255) / 255, "wavelet"),
        "noisy_psnr": psnr(torch.from_numpy(noisy), torch.from_numpy(clean)),
        **noisy_scores,
        "peak_psnr": float(s["psnr"][peak]),
        "peak_t": peak + 1,
        "last_psnr": float(s["psnr"][-1]),
        "pixels": int(clean.shape[0] * clean.shape[1]),
        "patience": spec.protocol.patience,  # the report's default S; not part of the key
        "seconds": rec.seconds,
        "restores": fitter.restores,
        "resumed_at": rec.resumed_at,
        "device": str(fitter.device),
        "cpu": cpu_name(),  # seconds compare only on one CPU
        "threads": torch.get_num_threads(),  # CPU float sums, hence the trajectory, depend on it
        "path": spec.path,
    }
    return spec.as_dict(), s, summary
