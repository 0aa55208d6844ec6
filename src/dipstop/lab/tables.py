"""The data files dipstop ships, made by the package: the sigma correction and the lam tables.

- `sigma_correction`: a blind sigma estimator's correction curve, fitted on training
  images (`dipstop tables sigma-correction [--estimator wavelet]`,
  data/sigma_correction_pca.json and data/sigma_correction.json);
- `size_choices`: lam searched at every image size the calibration stores hold, for one
  output policy (`dipstop tables lam-sizes`, data/lambda_table_since-best.json);
- `width_table`: a table for another network width, from a base table and the lam scales
  and stop ratios a study measured on calibration images (the quality presets' width-16
  table, written by `studies/quality_time.py --table`).

Each writes its provenance (the command, the date, the images) into the file.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from dipstop.imageio import read_image
from dipstop.lab.calibration import LambdaChoice, calibrate_from_store
from dipstop.lab.datasets import list_images
from dipstop.lab.store import ResultStore
from dipstop.noise import fit_sigma_correction

SIGMA_GRID = [0, 2.5, *range(5, 105, 5)]  # the nominal sigmas the correction is fitted at


ESTIMATOR_NAMES = {
    "wavelet": "skimage.restoration.estimate_sigma (wavelet MAD), channel-averaged",
    "pca": "patch-covariance eigenvalues (Chen, Zhu, Heng 2015), 7 x 7 x C patches, "
    "then again without patches within 2 sigma of 0 or 255",
}


def sigma_correction(images: str | Path, every: int, command: str, method: str = "pca") -> dict:
    """The correction curve of `estimate_sigma(method=method)` fitted on every `every`-th
    image of the folder `images` (training images, never the test sets), with its provenance.

    Returns {"sigma": [...], "mean_raw": [...], "provenance": {...}}, the layout of
    the files in `dipstop.noise.CORRECTION_FILES`.
    """
    files = list_images(images)[::every]
    fit = fit_sigma_correction([read_image(f).pixels for f in files], SIGMA_GRID,
                               method=method)  # fmt: skip
    fit["provenance"] = {
        "images": f"{Path(images).name}, every {every}th: {len(files)} images",
        "noise": "Gaussian, clipped to [0,255], quantised to 8 bits",
        "estimator": ESTIMATOR_NAMES[method],
        "command": command,
        "date": datetime.date.today().isoformat(),
    }
    return fit


def size_choices(
    stores: Sequence[str | Path],
    width: int,
    max_iters: int,
    patience: int,
    policy: str,
    smooth: float,
    images: Collection[str] | None = None,
    crops: Collection[int] | None = None,
) -> tuple[list[LambdaChoice], set[str]]:
    """lam per sigma at every size the stores hold (each crop, or 0 for the whole image, is
    one size; `crops` keeps only those), searched for output `policy` as `dipstop calibrate`
    does; and the image folders behind them. A size and sigma found in two stores is an
    error (ValueError).
    """
    choices: list[LambdaChoice] = []
    folders: set[str] = set()
    for path in stores:
        store = ResultStore(path, readonly=True)
        specs = [r.spec for r in store.runs()]
        folders |= {spec.get("dataset") for spec in specs}
        for crop in sorted({spec["protocol"]["crop"] or 0 for spec in specs}):
            if crops is not None and crop not in crops:
                continue
            found = calibrate_from_store(store, width, crop or None, max_iters, patience,
                                         policy, smooth, images)  # fmt: skip
            clash = {(c.pixels, c.sigma) for c in found} & {(c.pixels, c.sigma) for c in choices}
            if clash:
                raise ValueError(f"{path} repeats a size and sigma of an earlier store "
                                 f"{sorted(clash)[0]}")  # fmt: skip
            choices += found
    return choices, folders


def width_table(
    base: dict,
    scales: Mapping[float, float],
    ratios: Mapping[float, float],
    width: int,
    patience: int,
    provenance: dict,
) -> dict:
    """A lam table for a fit of `width` with patience `patience`, derived from `base`: each
    entry's lam times the scale measured at the nearest sigma of `scales` (in log sigma),
    its mean stop times the ratio measured there (at most the protocol's T).

    >>> base = {"units": "u", "protocol": {"width": 64, "max_iters": 3000, "patience": 500},
    ...         "entries": [{"sigma": 15.0, "lam": 80.0, "mean_iterations": 1500.0},
    ...                     {"sigma": 50.0, "lam": 25.0, "mean_iterations": 600.0}]}
    >>> t = width_table(base, {25: 1.4}, {25: 2.5}, 16, 700, {"command": "c"})
    >>> [(e["lam"], e["mean_iterations"]) for e in t["entries"]], t["protocol"]["width"]
    ([(112.0, 3000), (35.0, 1500.0)], 16)
    >>> width_table({**base, "provenance": {"output": "since-best"}}, {25: 1.4}, {25: 2.5}, 16,
    ...             700, {"command": "c"})["provenance"]
    {'output': 'since-best', 'command': 'c'}
    """
    most = base["protocol"].get("max_iters")
    entries = []
    for e in base["entries"]:
        near = min(scales, key=lambda g: abs(np.log(g / e["sigma"])))
        scaled = {**e, "lam": round(e["lam"] * scales[near], 10)}
        if e.get("mean_iterations") is not None:
            stop = e["mean_iterations"] * ratios[near]
            scaled["mean_iterations"] = round(min(stop, most) if most else stop, 1)
        entries.append(scaled)
    protocol = {**base["protocol"], "width": width, "patience": patience}
    kept = {k: base.get("provenance", {})[k] for k in ("output", "sizes", "image_folder")
            if k in base.get("provenance", {})}  # fmt: skip
    return {"units": base["units"], "protocol": protocol, "provenance": {**kept, **provenance},
            "entries": entries}  # fmt: skip
