"""Fit the raw-to-nominal sigma correction on training images (disjoint from CBSD68).

Writes src/dipstop/data/sigma_correction.json with its provenance.

    python -m benchmarks.fit_sigma_correction [--images DIR] [--every 4]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from benchmarks.common import SHARED
from dipstop.imageio import read_image
from dipstop.lab.datasets import list_images
from dipstop.noise import CORRECTION_FILE, fit_sigma_correction

OUT = Path(__file__).resolve().parents[1] / "src" / "dipstop" / "data" / CORRECTION_FILE


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default=str(SHARED / "data" / "cbsd432_jpg"))
    ap.add_argument("--every", type=int, default=4, help="use every k-th image")
    args = ap.parse_args()
    files = list_images(args.images)[:: args.every]
    cleans = [read_image(f).pixels for f in files]
    sigmas = [0, 2.5] + list(range(5, 105, 5))
    fit = fit_sigma_correction(cleans, sigmas)
    fit["provenance"] = {
        "images": f"{Path(args.images).name}, every {args.every}th: {len(files)} images",
        "noise": "Gaussian, clipped to [0,255], quantised to 8 bits",
        "estimator": "skimage.restoration.estimate_sigma (wavelet MAD), channel-averaged",
        "command": "python -m benchmarks.fit_sigma_correction " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
    }
    OUT.write_text(json.dumps(fit, indent=1) + "\n")
    for s, r in zip(fit["sigma"], fit["mean_raw"], strict=True):
        print(f"sigma {s:5.1f}: mean raw estimate {r:6.2f}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
