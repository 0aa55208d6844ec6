"""Can a cheap feature of the noisy image predict how far an image's best lam is from the table's?

On 128 x 128 crops dipstop's default (CIFS, since-best output, lam from the shipped table at
the estimated sigma) is 0.22-0.24 dB below the per-image best lam (an oracle). This asks
whether lam_used = table_lam(sigma_est) * exp(a + b * z) closes part of that gap, with z a
feature of the noisy input alone, standardised on the fitting images. Five features, fixed
before looking at any result (no others were tried):

- ``bpp_noisy``: log JPEG bytes per pixel of the noisy input (OpenCV, quality 95, as CIFS);
- ``bpp_nlm``: log bytes per pixel of the noisy input denoised by OpenCV's
  fastNlMeansDenoisingColored at h = hColor = the estimated sigma (clean-image complexity);
- ``bpp_ratio``: log of their ratio (nlm / noisy);
- ``grad_nlm``: log mean squared finite-difference gradient of the denoised copy;
- ``sigma_est``: log of the estimated sigma itself (is the table biased along sigma?).

Protocol. Everything is chosen on the calibration store only: leave one image out (all its
sigmas), search the table on the other images exactly as the shipped one (per sigma,
`search_lam` with smooth 1.6, as `table_cv.py`), fit (a, b) on the same other images (grid
search maximising the mean since-best PSNR, each run's PSNR-vs-lam curve smoothed over
[lam / 1.6, lam * 1.6] like the table's search; ties go to the smallest a^2 + b^2), and score
the held-out image's runs at their estimated sigma. "const" (b = 0) is the control: it only
moves the whole table. The feature with the best held-out mean PSNR (sigma > 5, where the
bench is) is chosen, refitted on all calibration images against the shipped table, and
judged once on the bench store: per sigma, the mean PSNR of (a) the shipped table's lam,
(b) the adjusted lam, (c) the per-image best lam (the 113-point grid of `output_rules.py`),
with the standard error over images of the paired difference b - a. Offline on the stored
series; no fitting.

    DIPSTOP_MODELS=$(realpath ../shared/models) OMP_NUM_THREADS=1 \\
        python benchmarks/lam_feature.py --calibration results/calibration2.sqlite \\
        --bench results/bench2.sqlite

Prints the tables and saves benchmarks/results/lam_feature.json.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, save  # noqa: E402

from dipstop.codecs import jpeg_bytes, to_uint8  # noqa: E402
from dipstop.lab.calibration import LAM_GRID  # noqa: E402
from dipstop.lab.datasets import synthetic_pair  # noqa: E402
from dipstop.lab.paper_report import image_path  # noqa: E402
from dipstop.lab.rules import Rule, evaluate, search_lam  # noqa: E402
from dipstop.lab.store import ResultStore, StoredRun  # noqa: E402
from dipstop.lambda_table import load_table  # noqa: E402
from dipstop.policies import DEFAULT_OUTPUT  # noqa: E402

FEATURES = ("bpp_noisy", "bpp_nlm", "bpp_ratio", "grad_nlm", "sigma_est")
MODELS = ("const", *FEATURES)  # "const": b = 0, the table moved as a whole (the control)
SMOOTH = 1.6  # the shipped table's --lam-smooth
A_GRID = np.round(np.linspace(-1.5, 1.5, 61), 6)  # log-lam offset
B_GRID = np.round(np.linspace(-1.5, 1.5, 61), 6)  # log-lam per standard deviation of z
ORACLE_LAMS = np.logspace(np.log10(LAM_GRID[0]), np.log10(LAM_GRID[-1]), 113)  # output_rules'
STEP = np.log(LAM_GRID[1] / LAM_GRID[0])
NEAR = np.abs(np.log(LAM_GRID)[:, None] - np.log(LAM_GRID)[None, :]) <= np.log(SMOOTH) + 1e-12


def features(run: StoredRun, data: Path) -> dict[str, float]:
    """The candidate features of a run's noisy input (rebuilt from its spec)."""
    folder = data / run.spec["dataset"]
    proto = run.spec["protocol"]
    _, noisy = synthetic_pair(image_path(run, folder), proto["crop"], run.spec["sigma"],
                              run.spec["seed"])  # fmt: skip
    sigma = float(run.summary["sigma_estimated"])
    pixels = noisy.shape[0] * noisy.shape[1]
    y = to_uint8(noisy)
    bgr = cv2.cvtColor(y, cv2.COLOR_RGB2BGR)
    nlm = cv2.cvtColor(cv2.fastNlMeansDenoisingColored(bgr, None, sigma, sigma, 7, 21),
                       cv2.COLOR_BGR2RGB)  # fmt: skip
    bpp_noisy = jpeg_bytes(y) / pixels
    bpp_nlm = jpeg_bytes(nlm) / pixels
    z = nlm.astype(np.float64) / 255.0
    grad = np.mean(np.diff(z, axis=0) ** 2) + np.mean(np.diff(z, axis=1) ** 2)
    return {
        "bpp_noisy": float(np.log(bpp_noisy)),
        "bpp_nlm": float(np.log(bpp_nlm)),
        "bpp_ratio": float(np.log(bpp_nlm / bpp_noisy)),
        "grad_nlm": float(np.log(grad)),
        "sigma_est": float(np.log(sigma)),
    }


class Item:
    """One run: its series, base lam, features and PSNR-vs-lam curves on LAM_GRID."""

    def __init__(self, run: StoredRun, rule: Rule, data: Path) -> None:
        self.run = run
        self.image = run.spec["image"]
        self.sigma = float(run.spec["sigma"])
        self.pixels = run.summary["pixels"]
        self.feat = features(run, data)
        self.curve = np.array([self.psnr(rule, float(x)) for x in LAM_GRID])
        self.smooth = np.array([np.nanmean(self.curve[row]) for row in NEAR])

    def psnr(self, rule: Rule, lam: float) -> float:
        return evaluate(rule, self.run.series, self.pixels, lam).psnr

    def on_grid(self, log_lam: np.ndarray) -> np.ndarray:
        """The smoothed curve at the grid lams nearest to `log_lam` (any shape)."""
        index = np.rint((log_lam - np.log(LAM_GRID[0])) / STEP).astype(int)
        return self.smooth[np.clip(index, 0, LAM_GRID.size - 1)]


def fit(items: list[Item], base: list[float], name: str) -> dict:
    """(a, b) maximising the training runs' mean smoothed PSNR at base * exp(a + b z)."""
    if name == "const":
        mean, std, b_grid = 0.0, 1.0, np.zeros(1)
    else:
        f = np.array([it.feat[name] for it in items])
        mean, std, b_grid = float(f.mean()), float(f.std()), B_GRID
    score = np.zeros((A_GRID.size, b_grid.size))
    for it, lam in zip(items, base, strict=True):
        z = 0.0 if name == "const" else (it.feat[name] - mean) / std
        score += it.on_grid(np.log(lam) + A_GRID[:, None] + b_grid[None, :] * z)
    score /= len(items)
    ties = np.argwhere(score >= score.max() - 1e-9)
    i, j = min(ties, key=lambda p: A_GRID[p[0]] ** 2 + b_grid[p[1]] ** 2)
    a, b = float(A_GRID[i]), float(b_grid[j])
    return {"feature": name, "a": a, "b": b, "mean": mean, "std": std, "b_raw": b / std,
            "a_raw": a - b * mean / std, "train_psnr": float(score[i, j])}  # fmt: skip


def factor(model: dict, item: Item) -> float:
    """exp(a + b z): the factor the model applies to the table's lam for this run."""
    if model["feature"] == "const":
        return float(np.exp(model["a"]))
    z = (item.feat[model["feature"]] - model["mean"]) / model["std"]
    return float(np.exp(model["a"] + model["b"] * z))


def se(x: list[float] | np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    return float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")


def per_image(rows: list[dict], key: str) -> dict[str, float]:
    """Mean of `key` over each image's runs."""
    by: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by[r["image"]].append(r[key])
    return {k: float(np.mean(v)) for k, v in by.items()}


def leave_one_image_out(items: list[Item], rule: Rule, min_sigma: float) -> dict:
    """Held-out PSNR of each model: table and (a, b) from the other images."""
    images = sorted({it.image for it in items})
    rows: list[dict] = []
    fits: dict[str, list[dict]] = defaultdict(list)
    for image in images:
        train = [it for it in items if it.image != image]
        sigmas = sorted({it.sigma for it in train})
        table = {"entries": [
            {"sigma": s, "lam": search_lam(rule, [(it.run.series, it.pixels) for it in train
                                                  if it.sigma == s], LAM_GRID, SMOOTH)[0]}
            for s in sigmas]}  # fmt: skip
        fitting = [it for it in train if it.sigma > min_sigma]
        base = [it.run.table_lam(table) for it in fitting]
        models = {name: fit(fitting, base, name) for name in MODELS}
        for name, m in models.items():
            fits[name].append({"held_out": image, **m})
        for it in (it for it in items if it.image == image and it.sigma > min_sigma):
            lam = it.run.table_lam(table)
            row = {"image": image, "sigma": it.sigma, "table": it.psnr(rule, lam),
                   "best": float(np.nanmax(it.curve))}  # fmt: skip
            for name, m in models.items():
                row[name] = it.psnr(rule, lam * factor(m, it))
            rows.append(row)
        print(f"left out {image}", flush=True)
    summary = {}
    print(f"\nleave one image out on calibration (sigma > {min_sigma:g}, {len(rows)} runs): "
          "mean PSNR, gain over the held-out table, SE over images")  # fmt: skip
    print(f"  {'table':10s} {np.mean([r['table'] for r in rows]):6.3f} dB")
    table_img = per_image(rows, "table")
    for name in MODELS:
        mine = per_image(rows, name)
        diff = [mine[k] - table_img[k] for k in mine]
        summary[name] = {
            "mean_psnr": float(np.mean([r[name] for r in rows])),
            "gain": float(np.mean([r[name] - r["table"] for r in rows])),
            "gain_se_images": se(diff),
            "gain_by_sigma": {
                f"{s:g}": float(np.mean([r[name] - r["table"] for r in rows if r["sigma"] == s]))
                for s in sorted({r["sigma"] for r in rows})
            },
        }
        v = summary[name]
        by = "  ".join(f"{k}: {g:+.3f}" for k, g in v["gain_by_sigma"].items())
        print(f"  {name:10s} {v['mean_psnr']:6.3f} dB  gain {v['gain']:+.3f} +- "
              f"{v['gain_se_images']:.3f}  (by sigma {by})")  # fmt: skip
    print(f"  {'per-image best':10s} {np.mean([r['best'] for r in rows]):6.3f} dB (oracle)")
    return {"rows": rows, "fits": fits, "summary": summary}


def correlations(items: list[Item], min_sigma: float) -> dict[str, float]:
    """Spearman correlation (all calibration runs, sigma > min_sigma) of each feature with
    log(per-image best lam / shipped table lam), the best lam the middle of the widest run of
    best grid points of the smoothed curve: a diagnostic, not used to choose."""
    own = load_table(output=DEFAULT_OUTPUT)
    use = [it for it in items if it.sigma > min_sigma]
    target = []
    for it in use:
        best = np.flatnonzero(it.smooth >= np.nanmax(it.smooth) - 1e-9)
        widest = max(np.split(best, np.flatnonzero(np.diff(best) > 1) + 1), key=len)
        target.append(np.log(LAM_GRID[widest[len(widest) // 2]] / it.run.table_lam(own)))

    def ranks(x: list[float]) -> np.ndarray:
        return np.argsort(np.argsort(np.asarray(x))).astype(float)

    out = {}
    for name in FEATURES:
        out[name] = float(np.corrcoef(ranks([it.feat[name] for it in use]), ranks(target))[0, 1])
    print("\nSpearman correlation with log(best lam / table lam), calibration: "
          + ", ".join(f"{k} {v:+.2f}" for k, v in out.items()))  # fmt: skip
    return out


def judge(items: list[Item], model: dict, rule: Rule) -> dict:
    """The bench once: (a) shipped table, (b) adjusted, (c) per-image best lam, per sigma."""
    own = load_table(output=DEFAULT_OUTPUT)
    rows = []
    for it in items:
        lam = it.run.table_lam(own)
        adjusted = lam * factor(model, it)
        rows.append({
            "image": it.image, "sigma": it.sigma, "lam_table": lam, "lam_adjusted": adjusted,
            "table": it.psnr(rule, lam), "adjusted": it.psnr(rule, adjusted),
            "best": max(it.psnr(rule, float(x)) for x in ORACLE_LAMS),
            "best_fine": float(np.nanmax(it.curve)), "features": it.feat,
        })  # fmt: skip
    out = []
    print(f"\nbench, judged once with {model['feature']!r}: mean PSNR (dB) per sigma")
    print("  sigma  runs  (a) table  (b) adjusted  b - a (SE)        (c) best lam  c - a")
    for s in [*sorted({r["sigma"] for r in rows}), None]:
        got = [r for r in rows if s is None or r["sigma"] == s]
        if s is None:  # all sigmas: differences averaged per image first, SE over images
            a_img, b_img = per_image(got, "table"), per_image(got, "adjusted")
            diff = [b_img[k] - a_img[k] for k in a_img]
        else:
            diff = [r["adjusted"] - r["table"] for r in got]
        row = {"sigma": s, "n": len(got),
               **{k: float(np.mean([r[k] for r in got]))
                  for k in ("table", "adjusted", "best", "best_fine")},
               "diff": float(np.mean(diff)), "diff_se_images": se(diff)}  # fmt: skip
        out.append(row)
        label = "all" if s is None else f"{s:g}"
        print(f"  {label:>5s}  {len(got):4d}  {row['table']:9.2f}  {row['adjusted']:12.2f}  "
              f"{row['diff']:+.3f} ({row['diff_se_images']:.3f})  {row['best']:12.2f}  "
              f"{row['best'] - row['table']:+.2f}")  # fmt: skip
    return {"rows": rows, "by_sigma": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibration", default="results/calibration2.sqlite")
    ap.add_argument("--bench", default="results/bench2.sqlite")
    ap.add_argument("--data", default=str(SHARED / "data"), help="folder of the datasets")
    ap.add_argument("-S", "--patience", type=int, default=500)
    ap.add_argument("--min-sigma", type=float, default=5.0, help="fit and choose above it")
    ap.add_argument("--calibration-only", action="store_true", help="do not judge the bench")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rule = Rule("cifs", DEFAULT_OUTPUT, args.patience)
    data = Path(args.data)
    calib = [Item(r, rule, data) for r in ResultStore(args.calibration, readonly=True).runs()]
    print(f"calibration: {len(calib)} runs, {len({it.image for it in calib})} images")
    loo = leave_one_image_out(calib, rule, args.min_sigma)
    corr = correlations(calib, args.min_sigma)
    chosen = max(FEATURES, key=lambda k: loo["summary"][k]["mean_psnr"])
    own = load_table(output=DEFAULT_OUTPUT)
    fitting = [it for it in calib if it.sigma > args.min_sigma]
    model = fit(fitting, [it.run.table_lam(own) for it in fitting], chosen)
    const = fit(fitting, [it.run.table_lam(own) for it in fitting], "const")
    print(f"\nchosen: {chosen}; on all calibration images against the shipped table: "
          f"lam = table * exp({model['a_raw']:+.4f} {model['b_raw']:+.4f} * {chosen}) "
          f"(standardised a {model['a']:+.2f}, b {model['b']:+.2f}); const would be "
          f"a {const['a']:+.2f}")  # fmt: skip
    payload = {"calibration": args.calibration, "rule": rule.label, "smooth": SMOOTH,
               "features": list(FEATURES), "min_sigma": args.min_sigma,
               "leave_one_image_out": loo, "spearman": corr, "chosen": chosen,
               "model": model, "const_model": const}  # fmt: skip
    if not args.calibration_only:
        bench = [Item(r, rule, data) for r in ResultStore(args.bench, readonly=True).runs()]
        payload.update(bench=args.bench, judgement=judge(bench, model, rule))
    save("lam_feature" + ("_calibration" if args.calibration_only else ""), payload)


if __name__ == "__main__":
    main()
