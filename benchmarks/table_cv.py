"""The shipped lam search, held out through the whole user pipeline (issue 11).

Leave one calibration image out: search a lam table on the other images exactly as
`dipstop calibrate --search-only --output-policy P --lam-smooth F` does (per sigma,
`dipstop.lab.rules.search_lam` on `LAM_GRID`), then run the left-out image's recorded series
with the lam that table gives at its *estimated* sigma (log-lam interpolation between
sigmas, as `dipstop denoise` reads it). `--scale` multiplies every estimate, to ask what an
estimator that is off by that factor would cost (mean PSNR, runs that never stop, time).

    python -m benchmarks.table_cv --store results/calibration2.sqlite --scale 0.88,1,1.12

Prints one line per scale and sigma; saves results/benchmarks/table_cv[_NAME].json.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from benchmarks.common import save
from dipstop.lab.calibration import LAM_GRID
from dipstop.lab.rules import Rule, evaluate, search_lam
from dipstop.lab.store import ResultStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, help="recorded calibration runs (read-only)")
    ap.add_argument("--policy", default="since-best", help="output policy (default since-best)")
    ap.add_argument("-S", "--patience", type=int, default=500)
    ap.add_argument("--smooth", type=float, default=1.6, help="as calibrate's --lam-smooth")
    ap.add_argument("--scale", default="1", help="factors applied to the estimated sigma")
    ap.add_argument("--name", default="", help="suffix of the saved JSON")
    args = ap.parse_args()
    rule = Rule("cifs", args.policy, args.patience)
    scales = [float(x) for x in args.scale.split(",")]
    by_sigma: dict[float, list] = defaultdict(list)
    for run in ResultStore(args.store, readonly=True).runs():
        by_sigma[run.spec["sigma"]].append(run)
    images = sorted({r.spec["image"] for runs in by_sigma.values() for r in runs})
    outcomes: dict[tuple[float, float], list] = defaultdict(list)
    for image in images:
        entries = []
        for sigma in sorted(by_sigma):
            others = [(r.series, r.summary["pixels"]) for r in by_sigma[sigma]
                      if r.spec["image"] != image]  # fmt: skip
            entries.append({"sigma": sigma, "lam": search_lam(rule, others, LAM_GRID,
                                                              args.smooth)[0]})  # fmt: skip
        table = {"entries": entries}
        for sigma, runs in by_sigma.items():
            for run in (r for r in runs if r.spec["image"] == image):
                for k in scales:
                    lam = run.table_lam(table, k * run.summary["sigma_estimated"])
                    o = evaluate(rule, run.series, run.summary["pixels"], lam)
                    outcomes[(k, sigma)].append(
                        {
                            "image": image,
                            "lam": lam,
                            "psnr": o.psnr,
                            "fired": o.fired,
                            "time_fraction": o.t_end / run.series["mse"].size,
                        }  # fmt: skip
                    )
        print(f"left out {image}", flush=True)
    rows = []
    for k in scales:
        for sigma in sorted(by_sigma):
            got = outcomes[(k, sigma)]
            rows.append({
                "scale": k,
                "sigma": sigma,
                "n": len(got),
                "mean_psnr": float(np.mean([g["psnr"] for g in got])),
                "never_stopped": sum(not g["fired"] for g in got),
                "time_fraction": float(np.mean([g["time_fraction"] for g in got])),
                "runs": got,
            })  # fmt: skip
            r = rows[-1]
            print(f"estimate x{k:g}  sigma {sigma:4g}: {r['mean_psnr']:6.2f} dB held out, "
                  f"never stopped {r['never_stopped']}/{r['n']}, time {r['time_fraction']:.2f}"
                  " of T")  # fmt: skip
        over = [r["mean_psnr"] for r in rows if r["scale"] == k and r["sigma"] > 5]
        print(f"estimate x{k:g}  mean over sigma > 5: {np.mean(over):.2f} dB")
    payload = {"store": args.store, "rule": rule.label, "smooth": args.smooth, "rows": rows}
    save(f"table_cv{'_' + args.name if args.name else ''}", payload)


if __name__ == "__main__":
    main()
