"""lam across image sizes: each recorded size's lams, and how lam scales with the pixels.

Reads calibration stores (read-only), searches lam per sigma at every size they hold for an
output policy (`dipstop.lab.tables.size_choices`, what `dipstop tables lam-sizes` writes
the shipped table from), and prints lam against pixel count per sigma with the slope of
log lam over log pixels between neighbouring sizes.

    python -m benchmarks.fit_lam_sizes --stores results/calibration2.sqlite \
        results/size_calibration.sqlite --sigmas 15,25,50
        [--images 100007.jpg,16068.jpg,24063.jpg,384022.jpg] [--lam-smooth 1.6]

The search is the shipped table's (`--lam-smooth 1.6`). `--images` keeps only those images'
runs at every size, so the slopes compare lams found on the same images (the 128 x 128
runs hold 8 images, the other sizes the 4 of `studies/size_grids.sh`).

Saves results/benchmarks/fit_lam_sizes.json.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks.common import save
from dipstop.lab.tables import size_choices
from dipstop.policies import DEFAULT_OUTPUT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", nargs="+", required=True, help="calibration stores")
    ap.add_argument("--sigmas", default=None, help="keep these sigmas (default: all)")
    ap.add_argument("--output-policy", default=DEFAULT_OUTPUT)
    ap.add_argument("-S", "--patience", type=int, default=500)
    ap.add_argument("-T", "--max-iters", type=int, default=3000)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--lam-smooth", type=float, default=1.6, help="as the shipped table's")
    ap.add_argument("--images", default=None, help="only these images' runs (comma-separated)")
    ap.add_argument("--name", default="", help="suffix of the saved record's name")
    args = ap.parse_args()
    images = set(args.images.split(",")) if args.images else None
    keep = {float(s) for s in args.sigmas.split(",")} if args.sigmas else None
    try:
        choices, _ = size_choices(args.stores, args.width, args.max_iters, args.patience,
                                  args.output_policy, args.lam_smooth, images)  # fmt: skip
    except ValueError as exc:
        sys.exit(str(exc))
    choices = [c for c in choices if keep is None or c.sigma in keep]
    sizes = sorted({c.pixels for c in choices})
    print(f"lam for output {args.output_policy!r} (S = {args.patience}, T = {args.max_iters})")
    print("sigma  " + "  ".join(f"{n:>9d} px" for n in sizes) + "   slopes d log lam / d log px")
    rows = []
    for sigma in sorted({c.sigma for c in choices}):
        by_size = {c.pixels: c for c in choices if c.sigma == sigma}
        lams = [by_size[n].lam if n in by_size else np.nan for n in sizes]
        ok = [(n, lam) for n, lam in zip(sizes, lams, strict=True) if np.isfinite(lam)]
        slopes = [
            float(np.log(b[1] / a[1]) / np.log(b[0] / a[0]))
            for a, b in zip(ok, ok[1:], strict=False)
        ]
        print(f"{sigma:5g}  " + "  ".join(f"{lam:12.4g}" for lam in lams) + "   "
              + ", ".join(f"{s:+.2f}" for s in slopes))  # fmt: skip
        rows += [
            {"sigma": sigma, "pixels": n, "lam": c.lam, "mean_psnr": c.mean_psnr,
             "mean_peak_psnr": c.mean_peak_psnr, "n_runs": c.n_runs}
            for n, c in sorted(by_size.items())
        ]  # fmt: skip
    save(
        "fit_lam_sizes" + (f"_{args.name}" if args.name else ""),
        {"stores": args.stores, "policy": args.output_policy, "lam_smooth": args.lam_smooth,
         "images": sorted(images) if images else None, "rows": rows},
    )  # fmt: skip


if __name__ == "__main__":
    main()
