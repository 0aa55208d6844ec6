"""Held out: does a lam table calibrated at several sizes beat the 128 x 128 one at its sizes?

Leave one calibration image out: calibrate every size (the 128 x 128 base and each larger
size in the stores) from the other images, as the shipped table is searched, and score the
left-out image's runs at each larger size three ways, lam at each run's estimated sigma:
with the sized table (lam at the run's size), with the 128 x 128 table alone (what
`denoise` uses without a sized table), and with the per-image best lam (an oracle). Reads
the stores only (issue 12). With --tiled (a `benchmarks/tiling.py` JSON of the same images
and noise at a size in the stores) it also prints the tiled default minus the held-out
whole run, per sigma: whether a photo of that size is better fitted whole or in tiles,
judged on calibration images.

    python -m benchmarks.size_cv --stores results/calibration2.sqlite \
        results/size_calibration.sqlite [--name NAME] \
        [--tiled results/tiled_cbsd432/tiled_cbsd432.json]

Saves results/benchmarks/size_cv[_NAME].json.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from benchmarks.common import mean_se, save, tiled_rows
from dipstop.lab.calibration import LAM_GRID, calibrate_from_store
from dipstop.lab.rules import Rule, evaluate
from dipstop.lab.store import ResultStore
from dipstop.policies import DEFAULT_OUTPUT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", nargs="+", required=True, help="calibration stores")
    ap.add_argument("--base-crop", type=int, default=128, help="the size every image has")
    ap.add_argument("--output-policy", default=DEFAULT_OUTPUT)
    ap.add_argument("-S", "--patience", type=int, default=500)
    ap.add_argument("-T", "--max-iters", type=int, default=3000)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--lam-smooth", type=float, default=1.6, help="as the shipped table's")
    ap.add_argument("--name", default="", help="suffix of the saved record's name")
    ap.add_argument("--tiled", default=None, help="tiling.py JSON: tiled minus whole")
    args = ap.parse_args()
    by_crop: dict[int, tuple[ResultStore, list]] = {}  # crop (0: whole image) -> its runs
    for path in args.stores:
        store = ResultStore(path, readonly=True)
        for run in store.runs():
            if run.spec["protocol"]["width"] == args.width:
                crop = run.spec["protocol"]["crop"] or 0
                by_crop.setdefault(crop, (store, []))[1].append(run)
    larger = sorted(c for c in by_crop if c != args.base_crop)
    held_out = sorted({r.spec["image"] for c in larger for r in by_crop[c][1]})
    rule = Rule("cifs", args.output_policy, args.patience)
    tiled = tiled_rows(args.tiled) if args.tiled else {}
    scored: dict[tuple[int, float], list[dict]] = defaultdict(list)
    for image in held_out:
        tables: dict[int, list] = {}
        for crop, (store, runs) in by_crop.items():
            others = {r.spec["image"] for r in runs} - {image}
            tables[crop] = calibrate_from_store(
                store, args.width, crop or None, args.max_iters, args.patience,
                args.output_policy, args.lam_smooth, others,
            )  # fmt: skip
        base = {"entries": [{"sigma": c.sigma, "lam": c.lam} for c in tables[args.base_crop]]}
        sized = {"entries": [{"sigma": c.sigma, "lam": c.lam, "pixels": c.pixels}
                             for choices in tables.values() for c in choices]}  # fmt: skip
        for crop in larger:
            for run in (r for r in by_crop[crop][1] if r.spec["image"] == image):
                series, pixels = run.series, run.summary["pixels"]
                series = {k: v[: args.max_iters] for k, v in series.items()}
                lams = {"base": run.table_lam(base), "sized": run.table_lam(sized)}
                psnr = {k: evaluate(rule, series, pixels, x).psnr for k, x in lams.items()}
                if tiled:
                    tiled_run = tiled.get((image, run.spec["sigma"], pixels))
                    psnr["tiled"] = tiled_run[0] if tiled_run else None
                best = max(evaluate(rule, series, pixels, float(x)).psnr for x in LAM_GRID)
                scored[(crop, float(run.spec["sigma"]))].append(
                    {"image": image, "pixels": pixels, **psnr, "best": best,
                     "lam_base": lams["base"], "lam_sized": lams["sized"]}
                )  # fmt: skip
        print(f"left out {image}", flush=True)
    rows = []
    print(f"\nheld out, output {args.output_policy!r}: mean PSNR (dB), lam at estimated sigma")
    print(" size (px)  sigma  runs  128 table   sized table   gain   per-image best lam  loss")
    for (crop, sigma), got in sorted(scored.items()):
        mean = {k: float(np.mean([g[k] for g in got])) for k in ("base", "sized", "best")}
        rows.append({"crop": crop, "sigma": sigma, "n": len(got), **mean, "runs": got})
        print(f" {got[0]['pixels']:9d}  {sigma:5g}  {len(got):4d}  {mean['base']:9.2f}"
              f"  {mean['sized']:12.2f}  {mean['sized'] - mean['base']:+5.2f}"
              f"  {mean['best']:19.2f}  {mean['sized'] - mean['best']:+5.2f}")  # fmt: skip
    for row in rows:
        gaps = [g["tiled"] - g["sized"] for g in row["runs"] if g.get("tiled") is not None]
        if gaps:
            gap, se = mean_se(gaps)
            row["tiled_minus_sized"] = gap
            print(f"tiled minus whole at the sized table, {row['runs'][0]['pixels']} px, sigma "
                  f"{row['sigma']:g}: {gap:+.2f} +- {se:.2f} dB ({len(gaps)} runs)")  # fmt: skip
    save(
        "size_cv" + (f"_{args.name}" if args.name else ""),
        {"stores": args.stores, "policy": args.output_policy, "lam_smooth": args.lam_smooth,
         "held_out": held_out, "rows": rows},
    )  # fmt: skip


if __name__ == "__main__":
    main()
