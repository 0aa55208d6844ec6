"""lam across image sizes: search each recorded size's lams and write one table of them all.

Reads calibration stores (read-only), groups their runs by crop (each crop, or the whole
image, is one size), searches lam per sigma at each size for an output policy
(`dipstop.lab.calibration.calibrate_from_store`), prints lam against pixel count per sigma
with the slope of log lam over log pixels between neighbouring sizes, and with `-o` writes
a table whose entries carry "pixels", which `dipstop.lambda_table.lam_for_sigma`
interpolates in log(pixels) (issue 12).

    python -m benchmarks.fit_lam_sizes --stores results/calibration2.sqlite \
        results/size_calibration.sqlite --sigmas 15,25,50 [-o TABLE.json]
        [--images 100007.jpg,16068.jpg,24063.jpg,384022.jpg] [--lam-smooth 1.6]

To write the table to ship, leave out `--sigmas`: the 128 x 128 entries then cover sigma
5-75, the base whose sigma curve the other sizes' ratios scale (`lam_for_sigma`). The search
is the shipped table's (`--lam-smooth 1.6`). `--images` keeps only those images'
runs at every size, so the slopes compare lams found on the same images (the 128 x 128
runs hold 8 images, the other sizes the 4 of `studies/size_grids.sh`).

Saves results/benchmarks/fit_lam_sizes.json.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks.common import save
from dipstop.lab.calibration import calibrate_from_store, write_lambda_table
from dipstop.lab.store import ResultStore
from dipstop.policies import DEFAULT_OUTPUT
from dipstop.protocols import get_protocol


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", nargs="+", required=True, help="calibration stores")
    ap.add_argument("--sigmas", default=None, help="keep these sigmas (default: all)")
    ap.add_argument("--output-policy", default=DEFAULT_OUTPUT)
    ap.add_argument("-S", "--patience", type=int, default=500)
    ap.add_argument("-T", "--max-iters", type=int, default=3000)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("-o", "--output", default=None, help="write the table here")
    ap.add_argument("--lam-smooth", type=float, default=1.6, help="as the shipped table's")
    ap.add_argument("--images", default=None, help="only these images' runs (comma-separated)")
    ap.add_argument("--name", default="", help="suffix of the saved record's name")
    args = ap.parse_args()
    images = set(args.images.split(",")) if args.images else None
    keep = {float(s) for s in args.sigmas.split(",")} if args.sigmas else None
    choices, folders = [], set()
    for path in args.stores:
        store = ResultStore(path, readonly=True)
        specs = [r.spec for r in store.runs()]
        folders |= {spec.get("dataset") for spec in specs}
        crops = sorted({spec["protocol"]["crop"] or 0 for spec in specs})
        for crop in crops:
            found = calibrate_from_store(
                store, args.width, crop or None, args.max_iters, args.patience,
                args.output_policy, args.lam_smooth, images,
            )  # fmt: skip
            found = [c for c in found if keep is None or c.sigma in keep]
            clash = {(c.pixels, c.sigma) for c in found} & {(c.pixels, c.sigma) for c in choices}
            if clash:
                sys.exit(f"{path} repeats a size and sigma of an earlier store {sorted(clash)[0]}")
            choices += found
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
    if args.output:
        protocol = get_protocol("cpu").with_(
            width=args.width, max_iters=args.max_iters, patience=args.patience
        )
        command = "python -m benchmarks.fit_lam_sizes " + " ".join(sys.argv[1:])
        write_lambda_table(
            args.output, choices, protocol, command, policy=args.output_policy,
            folder=folders.pop() if len(folders) == 1 else None, smooth=args.lam_smooth,
        )  # fmt: skip
        print(f"wrote {args.output}")
    save(
        "fit_lam_sizes" + (f"_{args.name}" if args.name else ""),
        {"stores": args.stores, "policy": args.output_policy, "lam_smooth": args.lam_smooth,
         "images": sorted(images) if images else None, "rows": rows},
    )  # fmt: skip


if __name__ == "__main__":
    main()
