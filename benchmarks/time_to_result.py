"""Time to result: dipstop's default and the paper's rule, stopped online, against fixed T.

Reads a bench store (no fitting). For each run and rule, as a user runs it (lam from the
shipped table at the estimated sigma): the online rule ends the run at t* + S (or T when it
never fires) and returns its image; the fixed-T protocol runs all T iterations. The time to
result is the iterations run and the wall time at that iteration of the run's own recorded
clock, as fractions of T's. Rules: "paper" (CIFS, raw output y_{t*}, `lambda_table.json`)
and "dipstop" (CIFS, the default output policy and its own table), when the run recorded
that policy's series. Ends with the README's headline table (markdown): per sigma, both
rules' mean PSNR beside the raw outputs' Peak and the default average's own peak (oracles).
With --tiled (a `benchmarks/tiling.py` JSON of the same images, noise and size) the table
adds the default as `denoise` runs a photo, in tiles, and its gap to the whole run's Peak.
Saves results/benchmarks/time_to_result[_NAME].json.

    python -m benchmarks.time_to_result --store results/bench2.sqlite --name bench2
    python -m benchmarks.time_to_result --store results/fullsize_bench.sqlite --name fullsize \
        --tiled results/fullsize_tiled/fullsize_tiled.json
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks.common import mean_se, save, tiled_rows
from dipstop.lab.rules import Rule, evaluate
from dipstop.lab.store import ResultStore
from dipstop.lambda_table import load_table
from dipstop.policies import DEFAULT_OUTPUT, make_policy

RULES = ("paper", "dipstop")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="results/bench2.sqlite")
    ap.add_argument("-S", "--patience", type=int, default=500)
    ap.add_argument("--name", default="", help="suffix of the saved JSON")
    ap.add_argument("--tiled", default=None, help="tiling.py JSON: adds the tiled default")
    args = ap.parse_args()
    tiled = tiled_rows(args.tiled) if args.tiled else {}
    rules = {  # in RULES' order
        "paper": ("raw", load_table()),
        "dipstop": (DEFAULT_OUTPUT, load_table(output=DEFAULT_OUTPUT)),
    }
    default = make_policy(DEFAULT_OUTPUT)
    default.begin(2 * args.patience, args.patience)
    average = f"psnr_{default.average_name}"  # the series of the default's own average
    rows = []
    for run in ResultStore(args.store, readonly=True).runs():
        sec, T = run.series["seconds"], len(run.series["seconds"])
        tiled_run = tiled.get((run.spec["image"], run.spec["sigma"], run.summary["pixels"]))
        for name, (policy, table) in rules.items():
            rule = Rule("cifs", policy, args.patience)
            out = evaluate(rule, run.series, run.summary["pixels"], run.table_lam(table))
            if out.psnr is None:
                continue  # the run did not record this policy's series
            rows.append(
                {
                    "image": run.spec["image"],
                    "sigma": run.spec["sigma"],
                    "rule": name,
                    "t_star": out.t_star,
                    "fired": out.fired,
                    "iterations": out.t_end,
                    "fixed_iterations": T,
                    "seconds": float(sec[out.t_end - 1]),
                    "fixed_seconds": float(sec[-1]),
                    "psnr": out.psnr,
                    "psnr_fixed_T": float(run.series["psnr"][-1]),
                    "peak": float(run.series["psnr"].max()),
                    "average_peak": float(np.nanmax(run.series[average]))
                    if average in run.series
                    else None,
                    # the tiled default on the same photo and noise (same pixel count)
                    "tiled_psnr": tiled_run[0] if tiled_run else None,
                    "tiled_pixel_iterations": tiled_run[1] if tiled_run else None,
                    "pixel_iterations": out.t_end * run.summary["pixels"],
                }
            )
    if not rows:
        sys.exit(f"no bench runs in {args.store}; run dipstop bench first")
    print(" rule     sigma  runs  never fired  iterations/T  seconds/T (min-max)  PSNR  PSNR(T)")
    summary = {}
    for name in rules:
        for sigma in sorted({r["sigma"] for r in rows}):
            rs = [r for r in rows if r["rule"] == name and r["sigma"] == sigma]
            if not rs:
                continue
            it = np.mean([r["iterations"] / r["fixed_iterations"] for r in rs])
            f = np.array([r["seconds"] / r["fixed_seconds"] for r in rs])
            key = f"{name} {sigma:g}"
            summary[key] = {
                "runs": len(rs),
                "never_fired": sum(not r["fired"] for r in rs),
                "iteration_fraction": float(it),
                "time_fraction": float(f.mean()),
                "mean_psnr": float(np.mean([r["psnr"] for r in rs])),
            }
            print(
                f" {name:8s} {sigma:5g} {len(rs):5} {summary[key]['never_fired']:12}"
                f" {it:13.2f} {f.mean():10.2f} ({f.min():.2f}-{f.max():.2f})"
                f" {np.mean([r['psnr'] for r in rs]):6.2f}"
                f" {np.mean([r['psnr_fixed_T'] for r in rs]):7.2f}"
            )
    overall = {}
    for name in rules:
        rs = [r for r in rows if r["rule"] == name]
        if rs:
            f = float(np.mean([r["seconds"] / r["fixed_seconds"] for r in rs]))
            overall[name] = f
            print(f"{name}: mean time fraction {f:.3f} of fixed T over {len(rs)} runs")
    if all(r["average_peak"] is not None for r in rows):  # stores with the averaged series
        headline(rows)
    save(
        f"time_to_result{'_' + args.name if args.name else ''}",
        {"store": args.store, "patience": args.patience, "default_output": DEFAULT_OUTPUT,
         "mean_time_fraction": overall, "by_rule_and_sigma": summary, "rows": rows},
    )  # fmt: skip


def headline(rows: list[dict]) -> None:
    """Print the README's table: per sigma, the paper's rule and dipstop's default beside the
    oracles (Peak of the raw outputs, peak of the default's average), with runs that never
    stopped and the time to result."""

    def mean(rs: list[dict], key: str) -> float:
        return float(np.mean([r[key] for r in rs]))

    def time(rs: list[dict]) -> float:
        return float(np.mean([r["seconds"] / r["fixed_seconds"] for r in rs]))

    def tiles(rs: list[dict]) -> str:  # the tiled default, when every run has one
        have = [r["tiled_psnr"] for r in rs if r["tiled_psnr"] is not None]
        return f"**{np.mean(have):.2f}** | " if have and len(have) == len(rs) else "- | "

    with_tiles = any(r["tiled_psnr"] is not None for r in rows)
    print("\n| sigma | runs | paper's rule (output at t*) | "
          + ("dipstop, whole (`--tile 0`) | dipstop default (tiled) | " if with_tiles
             else "dipstop default | ")
          + "Peak (raw outputs, oracle) | peak of dipstop's average (oracle) | never stopped"
          " (paper / dipstop) | time to result, of fixed T (paper / dipstop) |")  # fmt: skip
    print("|---" * (9 if with_tiles else 8) + "|")
    for sigma in sorted({r["sigma"] for r in rows}):
        paper, mine = ([r for r in rows if r["rule"] == n and r["sigma"] == sigma] for n in RULES)
        print(f"| {sigma:g} | {len(mine)} | {mean(paper, 'psnr'):.2f} | "
              + (f"{mean(mine, 'psnr'):.2f} | {tiles(mine)}" if with_tiles
                 else f"**{mean(mine, 'psnr'):.2f}** | ")
              + f"{mean(mine, 'peak'):.2f} | "
              f"{mean(mine, 'average_peak'):.2f} | {sum(not r['fired'] for r in paper)} / "
              f"{sum(not r['fired'] for r in mine)} | {time(paper):.2f} / "
              f"{time(mine):.2f} |")  # fmt: skip
    print("\ndipstop default below the peak of its average, mean +- standard error over images:")
    for sigma in sorted({r["sigma"] for r in rows}):
        gaps = [r["average_peak"] - r["psnr"] for r in rows if r["rule"] == RULES[1]
                and r["sigma"] == sigma]  # fmt: skip
        gap, se = mean_se(gaps)
        print(f"  sigma {sigma:g}: {gap:.2f} +- {se:.2f} dB ({len(gaps)} runs)")
    if not with_tiles:
        return
    for key, what in (("peak", "the whole run's Peak"), ("psnr", "the whole run (`--tile 0`)")):
        print(f"\ntiled default minus {what}, mean +- standard error over images:")
        for sigma in sorted({r["sigma"] for r in rows}):
            rs = [r for r in rows if r["rule"] == RULES[1] and r["sigma"] == sigma
                  and r["tiled_psnr"] is not None]  # fmt: skip
            if rs:
                gap, se = mean_se([r["tiled_psnr"] - r[key] for r in rs])
                extra = ""
                if key == "psnr":  # what each fitted, in pixels x iterations
                    ratio = mean(rs, "pixel_iterations") / mean(rs, "tiled_pixel_iterations")
                    extra = f"; whole fits {ratio:.2f}x the tiles' pixel-iterations"
                print(f"  sigma {sigma:g}: {gap:+.2f} +- {se:.2f} dB ({len(rs)} runs{extra})")


if __name__ == "__main__":
    main()
