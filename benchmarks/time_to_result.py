"""Time to result: online CIFS stopping (stop at t* + S) against the paper's fixed T.

Reads a bench store (no fitting): for each run, the online rule stops at t* + S and returns
y_{t*}; the fixed-T protocol runs all T iterations and then selects the same t* offline, so
both return the same image (equal PSNR) and only the time differs. Wall times come from the
per-iteration clock recorded with each run. Saves benchmarks/results/time_to_result.json.

    python benchmarks/time_to_result.py [--store results/bench.sqlite] [-S 500]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from dipstop.lab.selection import select  # noqa: E402
from dipstop.lab.store import ResultStore  # noqa: E402
from dipstop.lambda_table import load_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="results/bench.sqlite")
    ap.add_argument("-S", "--patience", type=int, default=500)
    args = ap.parse_args()
    table = load_table()
    rows = []
    for run in ResultStore(args.store, readonly=True).runs():
        t_star = select(run, args.patience, table)["CIFS"]
        sec = run.series["seconds"]
        T = len(sec)
        stop = min(T, t_star + args.patience)
        rows.append(
            {
                "image": run.spec["image"],
                "sigma": run.spec["sigma"],
                "t_star": t_star,
                "online_iters": stop,
                "fixed_iters": T,
                "online_s": float(sec[stop - 1]),
                "fixed_s": float(sec[-1]),
                "psnr_online": float(run.series["psnr"][t_star - 1]),
                "psnr_last": float(run.series["psnr"][-1]),
            }
        )
    if not rows:
        sys.exit(f"no bench runs in {args.store}; run dipstop bench first")
    print(" sigma  image        t*  online it  fixed T  time fraction  PSNR(t*)  PSNR(T)")
    for r in sorted(rows, key=lambda r: (r["sigma"], r["image"])):
        print(
            f"{r['sigma']:6g}  {r['image']:10} {r['t_star']:5} {r['online_iters']:9} "
            f"{r['fixed_iters']:8} {r['online_s'] / r['fixed_s']:14.2f} "
            f"{r['psnr_online']:9.2f} {r['psnr_last']:8.2f}"
        )
    print(" sigma  runs  mean t*  mean online it  time fraction (min-max)  PSNR(t*)  PSNR(T)")
    by_sigma = {}
    for sigma in sorted({r["sigma"] for r in rows}):
        rs = [r for r in rows if r["sigma"] == sigma]
        f = np.array([r["online_s"] / r["fixed_s"] for r in rs])
        by_sigma[str(sigma)] = {"runs": len(rs), "mean_fraction": float(f.mean())}
        print(
            f"{sigma:6g} {len(rs):5} {np.mean([r['t_star'] for r in rs]):8.0f} "
            f"{np.mean([r['online_iters'] for r in rs]):15.0f} {f.mean():9.2f} "
            f"({f.min():.2f}-{f.max():.2f}) {np.mean([r['psnr_online'] for r in rs]):13.2f} "
            f"{np.mean([r['psnr_last'] for r in rs]):8.2f}"
        )
    frac = np.array([r["online_s"] / r["fixed_s"] for r in rows])
    print(
        f"mean time fraction {frac.mean():.3f} (online / fixed T) over {len(rows)} runs, "
        f"same output PSNR by construction"
    )
    save(
        "time_to_result",
        {
            "store": args.store,
            "patience": args.patience,
            "mean_fraction": float(frac.mean()),
            "by_sigma": by_sigma,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
