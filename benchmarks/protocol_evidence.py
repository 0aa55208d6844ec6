"""Evidence for the CPU protocol's T: where the PSNR peak falls and how over-fitted T is.

Reads the calibration store (no fitting; every run in it, grouped by the protocol's crop
and width and by sigma) and prints, per sigma, the mean peak iteration, the mean PSNR at the
peak and at T, and the mean seconds per iteration. Saves
benchmarks/results/protocol_evidence.json.

    python benchmarks/protocol_evidence.py [--store results/calibration.sqlite]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from dipstop.lab.store import ResultStore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="results/calibration.sqlite")
    args = ap.parse_args()
    groups: dict[tuple, list] = defaultdict(list)
    for run in ResultStore(args.store, readonly=True).runs():
        protocol = run.spec["protocol"]
        key = (protocol["crop"], protocol["width"], run.spec["sigma"])
        p = run.series["psnr"]
        groups[key].append(
            {
                "peak_t": int(np.argmax(p)) + 1,
                "peak": float(p.max()),
                "last": float(p[-1]),
                "sec_per_iter": float(run.series["seconds"][-1] / len(p)),
                "T": len(p),
            }
        )
    rows = []
    print("crop width sigma  n  peak_t(mean, max)  PSNR peak  PSNR at T  gap   s/iter")
    for (crop, width, sigma), runs in sorted(groups.items()):
        r = {k: [x[k] for x in runs] for k in runs[0]}
        row = {
            "crop": crop,
            "width": width,
            "sigma": sigma,
            "n": len(runs),
            "T": int(max(r["T"])),
            "peak_t_mean": float(np.mean(r["peak_t"])),
            "peak_t_max": int(max(r["peak_t"])),
            "psnr_peak": float(np.mean(r["peak"])),
            "psnr_last": float(np.mean(r["last"])),
            "sec_per_iter": float(np.median(r["sec_per_iter"])),
        }
        row["gap_db"] = row["psnr_peak"] - row["psnr_last"]
        rows.append(row)
        print(
            f"{crop:4} {width:5} {sigma:5g} {len(runs):2}  {row['peak_t_mean']:7.0f} "
            f"{row['peak_t_max']:6}    {row['psnr_peak']:8.2f}  {row['psnr_last']:8.2f} "
            f"{row['gap_db']:5.2f}  {row['sec_per_iter']:.3f}"
        )
    save("protocol_evidence", {"store": args.store, "rows": rows})


if __name__ == "__main__":
    main()
