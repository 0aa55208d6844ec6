"""Would bigger tiles make a tiled photo cheaper? The work of 128 against 192 x 192 tiles.

A tiled photo's cost is about tiles x pixels a tile x iterations a tile. Bigger tiles overlap
less (at 481 x 321 with the least overlap of 32: 20 tiles of 128, 6 of 192, 0.67x the
pixels fitted), but a bigger image stops later. This reads the stop iterations of the
default rule, lam from the shipped table at each run's estimated sigma and size, off the
calibration runs of the images recorded at every size (centre crops of the same CBSD432
photos), and prints the work of each tile size relative to 128. Reads the stores only; no
fitting (issue 12).

    python benchmarks/tile_size_cost.py --stores results/calibration2.sqlite \
        results/size_calibration.sqlite [--size 481x321]

Saves benchmarks/results/tile_size_cost.json.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from dipstop.lab.rules import Rule, evaluate  # noqa: E402
from dipstop.lab.store import ResultStore  # noqa: E402
from dipstop.lambda_table import load_table  # noqa: E402
from dipstop.policies import DEFAULT_OUTPUT  # noqa: E402
from dipstop.tiling import OVERLAP, plan_tiles  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", nargs="+", required=True, help="calibration stores")
    ap.add_argument("--size", default="481x321", help="the photo, WIDTHxHEIGHT")
    ap.add_argument("--overlap", type=int, default=OVERLAP)
    ap.add_argument("--width", type=int, default=64, help="network width of the runs read")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    table = load_table(output=DEFAULT_OUTPUT)
    rule = Rule("cifs", DEFAULT_OUTPUT, 500)
    stops: dict[int, dict[tuple[str, float], int]] = defaultdict(dict)  # crop -> run -> t_end
    for path in args.stores:
        for run in ResultStore(path, readonly=True).runs():
            crop = run.spec["protocol"]["crop"]
            if run.spec["protocol"]["width"] != args.width or not crop:
                continue
            outcome = evaluate(rule, run.series, run.summary["pixels"], run.table_lam(table))
            stops[crop][(run.spec["image"], float(run.spec["sigma"]))] = outcome.t_end
    base = min(stops)
    base_plan = plan_tiles(height, width, base, args.overlap)
    base_fitted = len(base_plan) * base_plan.tile_h * base_plan.tile_w
    rows = []
    print(f"{args.size}, overlap {args.overlap}: work relative to {base} x {base} tiles")
    print(f" tile  tiles  pixels fitted  sigma  runs  iterations (mean; {base} on the same)  work")
    for crop in sorted(stops):
        plan = plan_tiles(height, width, crop, args.overlap)
        fitted = len(plan) * plan.tile_h * plan.tile_w
        for sigma in sorted({s for _, s in stops[crop]}):
            both = [k for k in stops[crop] if k[1] == sigma and k in stops[base]]
            if not both:
                continue
            its = float(np.mean([stops[crop][k] for k in both]))
            base_its = float(np.mean([stops[base][k] for k in both]))
            work = fitted * its / (base_fitted * base_its)
            rows.append({"tile": crop, "tiles": len(plan), "pixels": fitted, "sigma": sigma,
                         "runs": len(both), "iterations": its, "base_iterations": base_its,
                         "work": work})  # fmt: skip
            print(f" {crop:4d}  {len(plan):5d}  {fitted:13d}  {sigma:5g}  {len(both):4d}"
                  f"  {its:10.0f} {f'({base_its:.0f})':>25s}  {work:4.2f}")  # fmt: skip
    save("tile_size_cost", {"stores": args.stores, "size": args.size, "rows": rows})


if __name__ == "__main__":
    main()
