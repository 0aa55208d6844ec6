"""Error of dipstop's blind noise-level estimate on CBSD68, sigma 5..75.

Each clean image gets Gaussian noise, is clipped and quantised to 8 bits (as a user's noisy
file would be), and sigma is estimated from it. Prints bias, mean absolute error and the
95th percentile of the absolute error per sigma; saves results/benchmarks/sigma_estimation.json.

    python -m benchmarks.sigma_estimation [--images DIR]
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import SHARED, save
from dipstop.imageio import read_image
from dipstop.lab.datasets import list_images
from dipstop.noise import add_gaussian_noise, estimate_sigma


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default=str(SHARED / "data" / "cbsd68"))
    args = ap.parse_args()
    files = list_images(args.images)
    sigmas = list(range(5, 80, 5))
    rows = []
    print(f"{len(files)} images from {args.images}")
    print(" sigma   bias    MAE   p95|err|")
    for sigma in sigmas:
        errs = []
        for i, f in enumerate(files):
            clean = read_image(f).pixels
            noisy = np.rint(add_gaussian_noise(clean, sigma, seed=1000 * sigma + i) * 255) / 255
            errs.append(estimate_sigma(noisy.astype(np.float32)) - sigma)
        e = np.array(errs)
        row = {
            "sigma": sigma,
            "bias": float(e.mean()),
            "mae": float(np.abs(e).mean()),
            "p95_abs": float(np.percentile(np.abs(e), 95)),
            "n": len(e),
        }
        rows.append(row)
        print(f"{sigma:6d} {row['bias']:6.2f} {row['mae']:6.2f} {row['p95_abs']:8.2f}")
    save(
        "sigma_estimation",
        {"images": args.images, "estimator": "wavelet MAD (skimage)", "rows": rows},
    )


if __name__ == "__main__":
    main()
