"""How well one lam serves two image sizes: calibrate at two crop sizes, cross-apply.

Reads calibration runs recorded at two crop sizes of the same images (e.g.
`dipstop calibrate ... --crop 192 -T 1500`), searches lam per sigma at each size, and
reports the lam ratio and the PSNR lost when size B uses size A's lam instead of its own
(and vice versa), beside what the paper's size-bound lambda (lambda * MSE + L^2 / (H W), one
lambda for both sizes, i.e. lam scaled by the area ratio) would lose. Only images and sigmas
recorded at both sizes count. Saves benchmarks/results/size_invariance.json.

    python benchmarks/size_invariance.py --crops 128,192 [--width 64] [--iters 1500]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from dipstop.lab.calibration import LAM_GRID, CalibrationRun, search_lambda  # noqa: E402
from dipstop.lab.store import ResultStore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="results/calibration.sqlite")
    ap.add_argument("--crops", default="128,192")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--iters", type=int, default=1500)
    args = ap.parse_args()
    a, b = (int(c) for c in args.crops.split(","))
    runs: dict[tuple, CalibrationRun] = {}
    for run in ResultStore(args.store, readonly=True).runs():
        spec, protocol = run.spec, run.spec["protocol"]
        if (
            protocol["width"] != args.width
            or protocol["crop"] not in (a, b)
            or protocol["max_iters"] < args.iters
        ):
            continue
        s = {k: v[: args.iters] for k, v in run.series.items()}
        key = (protocol["crop"], spec["sigma"], spec["image"], spec["seed"])
        runs[key] = CalibrationRun(s, run.summary["pixels"], spec["image"])
    by_sigma: dict[float, dict[int, list[CalibrationRun]]] = defaultdict(lambda: {a: [], b: []})
    for (crop, sigma, image, seed), s in runs.items():
        other = b if crop == a else a
        if (other, sigma, image, seed) in runs:
            by_sigma[sigma][crop].append(s)
    if not by_sigma:
        sys.exit(f"no image recorded at both crops {a} and {b} in {args.store}")
    rows = []
    print(
        f"sigma  n  lam@{a}  lam@{b}  ratio  dB lost at {b}: lam@{a}  paper's lambda@{a}"
        f"   dB lost at {a}: lam@{b}"
    )
    area = (a / b) ** 2  # a fixed paper lambda means lam = lambda / (H W): smaller at size b
    for sigma in sorted(by_sigma):
        ra, rb = by_sigma[sigma][a], by_sigma[sigma][b]
        lam_a, curve_a = search_lambda(ra)
        lam_b, curve_b = search_lambda(rb)
        ia, ib = int(np.argmin(np.abs(LAM_GRID - lam_a))), int(np.argmin(np.abs(LAM_GRID - lam_b)))
        ip = int(np.argmin(np.abs(np.log(LAM_GRID) - np.log(lam_a * area))))
        row = {
            "sigma": sigma,
            "n": len(ra),
            "lam_a": lam_a,
            "lam_b": lam_b,
            "ratio": lam_b / lam_a,
            "loss_b_with_lam_a": float(curve_b.max() - curve_b[ia]),
            "loss_a_with_lam_b": float(curve_a.max() - curve_a[ib]),
            "loss_b_with_paper_lambda_a": float(curve_b.max() - curve_b[ip]),
        }
        rows.append(row)
        print(
            f"{sigma:5g} {len(ra):2} {lam_a:7.1f} {lam_b:7.1f} {row['ratio']:6.2f} "
            f"{row['loss_b_with_lam_a']:17.2f} {row['loss_b_with_paper_lambda_a']:19.2f}"
            f"{row['loss_a_with_lam_b']:23.2f}"
        )
    save(
        "size_invariance", {"crops": [a, b], "width": args.width, "iters": args.iters, "rows": rows}
    )


if __name__ == "__main__":
    main()
