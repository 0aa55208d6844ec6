"""Error of dipstop's blind noise-level estimators on CBSD68, sigma 5..75.

Each clean image gets Gaussian noise, is clipped and quantised to 8 bits (as a user's noisy
file would be), and sigma is estimated from it by each estimator (`dipstop.noise`: "pca",
the presets', and "wavelet", the paper's settings'), on the same noisy images. Prints bias,
mean absolute error and the 95th percentile of the absolute error per sigma; saves
results/benchmarks/sigma_estimation.json.

    python -m benchmarks.sigma_estimation [--images DIR]
    python -m benchmarks.sigma_estimation --images ../shared/data/cbsd432_jpg --every 12 \
        --sigmas 15,25,50 --name sigma_estimation_cbsd432   # the calibration photos
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import SHARED, save
from dipstop.imageio import read_image
from dipstop.lab.datasets import list_images
from dipstop.noise import ESTIMATORS, add_gaussian_noise, estimate_sigma


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default=str(SHARED / "data" / "cbsd68"))
    ap.add_argument("--every", type=int, default=1, help="every k-th image")
    ap.add_argument("--sigmas", default=",".join(map(str, range(5, 80, 5))))
    ap.add_argument("--name", default="sigma_estimation", help="record name")
    args = ap.parse_args()
    files = list_images(args.images)[:: args.every]
    cleans = [read_image(f).pixels for f in files]
    sigmas = [int(s) for s in args.sigmas.split(",")]
    rows = []
    print(f"{len(files)} images from {args.images}")
    print(" sigma  estimator   bias    MAE   p95|err|")
    for sigma in sigmas:
        errs = {m: [] for m in ESTIMATORS}
        for i, clean in enumerate(cleans):
            noisy = np.rint(add_gaussian_noise(clean, sigma, seed=1000 * sigma + i) * 255) / 255
            for m in ESTIMATORS:
                errs[m].append(estimate_sigma(noisy.astype(np.float32), m) - sigma)
        for m in ESTIMATORS:
            e = np.array(errs[m])
            row = {"sigma": sigma, "estimator": m, "bias": float(e.mean()),
                   "mae": float(np.abs(e).mean()),
                   "p95_abs": float(np.percentile(np.abs(e), 95)), "n": len(e)}  # fmt: skip
            rows.append(row)
            print(f"{sigma:6d}  {m:9s} {row['bias']:6.2f} {row['mae']:6.2f} {row['p95_abs']:8.2f}")
    save(args.name, {"images": args.images, "every": args.every, "rows": rows})


if __name__ == "__main__":
    main()
