"""Do bf16 fits score as well as fp32 ones? Refit stored fp32 calibration runs in bf16.

For each (image, sigma) named, the fp32 run is read from a calibration store (CBSD432, CPU
protocol) and the same run is fitted again with `precision="bf16"` (bfloat16 forward pass,
channels_last; `dipstop.fitting.FitSettings.with_precision`), one thread. Both are scored
the same way: the raw outputs' peak PSNR, and the image dipstop's default returns (CIFS ->
since-best, S = 500) at the shipped table's lam for the true sigma. The bf16 fit is not the
fp32 fit rounded: its perturbations of z are drawn in the channels_last layout, so it is
another draw of the same fit, and only the mean difference over runs says anything.

    python benchmarks/precision_quality.py --runs 100007.jpg:25,16068.jpg:50 [--name SUFFIX]

Rows are written to benchmarks/results/precision_quality[_SUFFIX].json as each run ends;
a rerun skips the rows already there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, SHARED, save  # noqa: E402

from dipstop.lab.calibration import specs  # noqa: E402
from dipstop.lab.rules import Rule, evaluate  # noqa: E402
from dipstop.lab.runs import run_one  # noqa: E402
from dipstop.lab.store import ResultStore  # noqa: E402
from dipstop.lambda_table import lam_for_sigma, load_table  # noqa: E402
from dipstop.protocols import PROTOCOLS  # noqa: E402


def score(series: dict, pixels: int, lam: float) -> dict:
    """Raw peak and the default output's PSNR (t*, fired) on one run's series."""
    out = evaluate(Rule("cifs", "since-best", PROTOCOLS["cpu"].patience), series, pixels, lam)
    psnr = series["psnr"]
    return {"peak": float(np.nanmax(psnr)), "t_peak": int(np.nanargmax(psnr)) + 1,
            "default": out.psnr, "t_star": out.t_star, "fired": out.fired}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True, help="IMAGE:SIGMA,... of the store's runs")
    ap.add_argument("--store", default=str(HERE.parent / "results" / "calibration2.sqlite"))
    ap.add_argument("--data", default=str(SHARED / "data" / "cbsd432_jpg"))
    ap.add_argument("--name", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    name = "precision_quality" + (f"_{args.name}" if args.name else "")
    record = HERE / "results" / f"{name}.json"
    rows = json.loads(record.read_text())["rows"] if record.exists() else []
    done = {(r["image"], r["sigma"]) for r in rows}
    table = load_table(output="since-best")
    store = ResultStore(args.store, readonly=True)
    stored = {(r.spec["image"], float(r.spec["sigma"])): r for r in store.runs()}
    for item in args.runs.split(","):
        image, sigma = item.split(":")[0], float(item.split(":")[1])
        if (image, sigma) in done:
            continue
        fp32 = stored[(image, sigma)]
        (spec,) = specs([Path(args.data) / image], [sigma], PROTOCOLS["cpu"], precision="bf16")
        start = time.perf_counter()
        _, series, summary = run_one(spec, device="cpu")
        seconds = time.perf_counter() - start
        lam = lam_for_sigma(sigma, table)
        row = {"image": image, "sigma": sigma, "lam": lam,
               "seconds": {"fp32": fp32.summary.get("seconds"), "bf16": seconds},
               "fp32": score(fp32.series, fp32.summary["pixels"], lam),
               "bf16": score(series, summary["pixels"], lam)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
        save(name, {"store": args.store, "rows": rows, "summary": summarise(rows)})
    print(json.dumps(summarise(rows), indent=1))


def summarise(rows: list[dict]) -> dict:
    """Mean bf16 - fp32 difference with its standard error, per sigma and over all rows."""
    out = {}
    for label, rs in [("all", rows)] + [(f"sigma {s:g}", [r for r in rows if r["sigma"] == s])
                                        for s in sorted({r["sigma"] for r in rows})]:  # fmt: skip
        entry = {"runs": len(rs)}
        for key in ("peak", "default"):
            d = np.array([r["bf16"][key] - r["fp32"][key] for r in rs])
            se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
            entry[key] = {"mean_difference": float(d.mean()), "standard_error": se}
        out[label] = entry
    return out


if __name__ == "__main__":
    main()
