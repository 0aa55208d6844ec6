"""Stopping rules x output policies on recorded runs: which returns the best image? (issue 11)

For every candidate rule (a criterion on a stream, Eq. 4 with patience S, an output policy),
per sigma: the lam that maximises the mean PSNR of the returned image over the store's runs
(CIFS rules; searched on the same runs: in-sample on a calibration store, which is how the
shipped rule is chosen), that mean PSNR, its gap to the raw-output Peak and to the best
average's own peak, how many runs never stopped before T, and the mean fraction of T a run
takes to return (t_end / T). With `--lams FILE` (a lam table) the lams are not searched but
read from it at each run's estimated sigma, as a user runs it: the way to validate a chosen
rule on other images (CBSD68); each run the default never stopped is then listed with the
best image any lam that does stop it would have given (could stopping have done better?).

    python -m benchmarks.output_rules --store results/calibration2.sqlite --cv
    python -m benchmarks.output_rules --store results/bench2.sqlite --lams TABLE.json

Prints a table per sigma and saves results/benchmarks/output_rules[_NAME].json.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from benchmarks.common import save
from dipstop.lab.calibration import LAM_GRID
from dipstop.lab.rules import Rule, evaluate, search_lam
from dipstop.lab.store import ResultStore
from dipstop.lambda_table import load_table
from dipstop.policies import DEFAULT_OUTPUT, make_policy

POLICIES = ("raw", "since-best", "ema@stop", "ema998@stop", "box100@stop", "ema@best",
            "ema998@best", "box100@best")  # fmt: skip


def candidates(patience: int, criteria: dict[str, dict]) -> list[Rule]:
    """CIFS with every policy; each other recorded criterion (ES-WMV, BRISQUE, NIQE: no lam)
    with the policies that read the raw outputs' stop (raw, at-stop, since-best), so every
    criterion gets the same averaged output."""
    cifs = [Rule("cifs", p, patience) for p in POLICIES]
    others = [
        Rule(name, p, patience, int(settings.get("every", 1)))
        for name, settings in criteria.items()
        if name != "cifs"
        for p in POLICIES
        if not p.endswith("@best")
    ]
    return cifs + others


def own_average_peak(rule: Rule, runs: list) -> float | None:
    """Mean over runs of the best PSNR the rule's own average reaches (None for "raw")."""
    policy = make_policy(rule.policy)
    policy.begin(len(runs[0].series["mse"]), rule.patience)
    key = f"psnr_{policy.average_name}"
    if not policy.average_name or any(key not in r.series for r in runs):
        return None
    return float(np.mean([np.nanmax(r.series[key]) for r in runs]))


def held_out_psnr(rule: Rule, data: list, lams: np.ndarray, smooth: float = 1.0) -> float:
    """Mean PSNR with each run scored at the lam searched on the other runs (leave one image
    out): what the in-sample mean would be without choosing lam on the run itself."""
    scores = []
    for i, (series, pixels) in enumerate(data):
        lam, _ = search_lam(rule, data[:i] + data[i + 1 :], lams, smooth)
        scores.append(evaluate(rule, series, pixels, lam).psnr)
    return float(np.mean(scores))


def never_stopped_detail(run, lam: float, outcome, by_lam: list[tuple[float, object]]) -> dict:
    """A run the rule never stopped: what it returned, and the best image any lam that does
    stop it would have returned (None if none does): whether stopping could have done better.
    `by_lam` holds the rule's (lam, Outcome) on this run for every searched lam."""
    stopping = [(x, o) for x, o in by_lam if o.fired]
    best = max(stopping, key=lambda p: p[1].psnr, default=None)
    n = run.series["mse"].size
    return {
        "image": run.spec["image"],
        "sigma_estimated": run.summary.get("sigma_estimated"),
        "lam": lam,
        "psnr": outcome.psnr,
        "best_stopping": None
        if best is None
        else {"lam": best[0], "psnr": best[1].psnr, "time_fraction": best[1].t_end / n},
    }


def rank(rows: list[dict]) -> list[dict]:
    """Rules scored at every sigma, best first by the mean over sigmas of the held-out PSNR
    (the in-sample one without --cv), with the mean time fraction; printed and returned."""
    sigmas = {r["sigma"] for r in rows}
    key = "cv_mean_psnr" if any("cv_mean_psnr" in r for r in rows) else "mean_psnr"
    out = []
    for label in dict.fromkeys(r["rule"] for r in rows):
        mine = [r for r in rows if r["rule"] == label]
        if {r["sigma"] for r in mine} != sigmas or any(key not in r for r in mine):
            continue
        out.append({
            "rule": label,
            key: float(np.mean([r[key] for r in mine])),
            "gap_to_raw_peak": float(np.mean([r["gap_to_raw_peak"] for r in mine])),
            "time_fraction": float(np.mean([r["time_fraction"] for r in mine])),
            "never_stopped": int(sum(r["never_stopped"] for r in mine)),
        })  # fmt: skip
    out.sort(key=lambda r: -r[key])
    print(f"\nrules scored at every sigma, by the mean over sigmas of {key}:")
    for r in out:
        print(f"  {r['rule']:22s} {r[key]:6.2f} dB  (in-sample {r['gap_to_raw_peak']:+.2f} vs"
              f" raw Peak)  time {r['time_fraction']:.2f} of T  never stopped "
              f"{r['never_stopped']}")  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, help="a store of recorded runs (read-only)")
    ap.add_argument("-S", "--patience", type=int, default=500)
    ap.add_argument("--lams", default=None, help="lam table to read lams from (no search)")
    ap.add_argument("--lam-points", type=int, default=113, help="lams searched (log grid)")
    ap.add_argument("--name", default="", help="suffix of the saved JSON")
    ap.add_argument(
        "--cv",
        action="store_true",
        help="also leave one image out: each run scored at the lam searched on the others",
    )
    ap.add_argument(
        "--smooth",
        default="",
        help="with --cv, also the held-out PSNR of lams searched with these smoothing factors "
        "(e.g. 1.25,1.6: the best mean over [lam / f, lam * f])",
    )
    args = ap.parse_args()
    table = load_table(args.lams) if args.lams else None
    lams = np.logspace(np.log10(LAM_GRID[0]), np.log10(LAM_GRID[-1]), args.lam_points)
    by_sigma: dict[float, list] = defaultdict(list)
    for run in ResultStore(args.store, readonly=True).runs():
        if "psnr_ema" in run.series:  # runs with the averaged series
            by_sigma[run.spec["sigma"]].append(run)
    rows = []
    for sigma in sorted(by_sigma):
        runs = by_sigma[sigma]
        data = [(r.series, r.summary["pixels"]) for r in runs]
        n_iters = len(runs[0].series["mse"])
        peak = float(np.mean([r.series["psnr"].max() for r in runs]))
        avg_peaks = {
            k[5:]: float(np.mean([r.series[k].max() for r in runs]))
            for k in runs[0].series
            if k.startswith("psnr_")
        }
        print(f"\nsigma {sigma:g}: {len(runs)} runs, raw Peak {peak:.2f} dB; average peaks "
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(avg_peaks.items())))  # fmt: skip
        for rule in candidates(args.patience, runs[0].spec["criteria"]):
            per_run: list[float | None]
            if rule.criterion != "cifs":
                lam, per_run = None, [None] * len(runs)
            elif table is not None:  # as a user runs it: lam at the run's estimated sigma
                per_run = [r.table_lam(table) for r in runs]
                lam = float(np.exp(np.mean(np.log(per_run))))  # their geometric mean, shown
            else:
                lam, _ = search_lam(rule, data, lams)
                per_run = [lam] * len(runs)
            outs = [evaluate(rule, s, px, x) for (s, px), x in zip(data, per_run, strict=True)]
            if any(o.psnr is None for o in outs):
                continue
            mean = float(np.mean([o.psnr for o in outs]))
            row = {
                "sigma": sigma,
                "rule": rule.label,
                "lam": lam,
                "n": len(outs),
                "mean_psnr": mean,
                "gap_to_raw_peak": mean - peak,
                "gap_to_best_average_peak": mean - max(avg_peaks.values()),
                "never_stopped": sum(not o.fired for o in outs),
                "time_fraction": float(np.mean([o.t_end / n_iters for o in outs])),
            }
            own = own_average_peak(rule, runs)
            if own is not None:
                row["gap_to_own_average_peak"] = mean - own
            if args.cv and rule.criterion == "cifs" and table is None and len(data) > 1:
                row["cv_mean_psnr"] = held_out_psnr(rule, data, lams)
                for f in [float(x) for x in args.smooth.split(",") if x.strip()]:
                    row[f"cv_mean_psnr_smooth{f:g}"] = held_out_psnr(rule, data, lams, f)
            if table is not None and rule.criterion == "cifs":  # the table's loss to an oracle
                every = [[(float(x), evaluate(rule, s, px, float(x))) for x in lams]
                         for s, px in data]  # fmt: skip
                best = [max(o.psnr for _, o in by_lam) for by_lam in every]
                row["per_image_best_lam_psnr"] = float(np.mean(best))
                row["never_stopped_runs"] = [
                    never_stopped_detail(r, x, o, by_lam)
                    for r, x, o, by_lam in zip(runs, per_run, outs, every, strict=True)
                    if not o.fired
                ]
            rows.append(row)
            lam_text = "-" if lam is None else f"{lam:.4g}"
            cv = "".join(
                f"  held out{', smooth ' + k.split('smooth')[1] if 'smooth' in k else ''} {v:.2f}"
                for k, v in row.items()
                if k.startswith("cv_")
            )
            if "per_image_best_lam_psnr" in row:
                cv += f"  per-image best lam {row['per_image_best_lam_psnr']:6.2f} dB"
            if "gap_to_own_average_peak" in row:
                cv += f"  ({row['gap_to_own_average_peak']:+.2f} vs its average's peak)"
            print(f"  {rule.label:22s} lam {lam_text:>9s}  {mean:6.2f} dB  "
                  f"({mean - peak:+.2f} vs raw Peak)  never stopped {row['never_stopped']}/"
                  f"{len(outs)}  time {row['time_fraction']:.2f} of T{cv}")  # fmt: skip
            if rule.policy == DEFAULT_OUTPUT:
                for d in row.get("never_stopped_runs", []):
                    best = d["best_stopping"]
                    print(f"      never stopped: {d['image']} (sigma est. "
                          f"{d['sigma_estimated']:.1f}, lam {d['lam']:.4g}) returned "
                          f"{d['psnr']:.2f} dB; the best lam that "
                          + ("stops none" if best is None else
                             f"stops: {best['psnr']:.2f} dB at lam {best['lam']:.4g}, "
                             f"time {best['time_fraction']:.2f} of T"))  # fmt: skip
    ranking = rank(rows)
    lams_from = args.lams or "searched in-sample"
    payload = {"store": args.store, "patience": args.patience, "lams": lams_from, "rows": rows,
               "ranking": ranking}  # fmt: skip
    save(f"output_rules{'_' + args.name if args.name else ''}", payload)


if __name__ == "__main__":
    main()
