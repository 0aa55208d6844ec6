"""Candidates for the one-warm-fit presets (default, fast) on tiled calibration crops, paired.

`default` and `fast` are one width-16 fit a tile, its tiles after the first started warm,
finished by the Wiener filter; what they trade is patience S (the stop, and the length of
the since-best average) and the burn-in B (t* after the first B iterations of a fit). Each
candidate runs on the same 256 x 256 centre crops of CBSD432 photos (9 tiles of 128 x 128,
every tile but the first warm, as in a whole photo), noise drawn on the whole photo
(`synthetic_pair(path, None, sigma, 0)`) and cropped, sigma estimated on the crop as a run
does; one thread. PSNR after the filter and of the fits alone, the fits' CPU seconds.

    python -m benchmarks.fast_preset --sigma 25 &    # a single-thread worker per sigma
    python -m benchmarks.fast_preset --sigma 50 &
    python -m benchmarks.fast_preset --summary

Records: results/benchmarks/fast_preset_s<sigma>.json, rewritten after each run (a rerun
skips the runs it holds).
"""

from __future__ import annotations

import argparse
import json
import sys
from statistics import mean, stdev

import torch

from benchmarks.common import RESULTS, SHARED, save
from dipstop import denoise
from dipstop.lab.datasets import centre_crop, synthetic_pair
from dipstop.lambda_table import load_table

PHOTOS = ("187083.jpg", "24063.jpg", "100007.jpg")
# the shipped width-16 table's lams are the width-64 table's x 1.4, the scale best for two
# cold fits at S = 700; for one fit at S = 200 the tile study's largest scale, 2.0, led at
# sigma 25 (results/quality_time.sqlite, w16-lr0.01-s4): this table has x 2.0
LAM2_TABLE = RESULTS / "lambda_table_w16_lam2.json"
ONE_WARM_FIT = {"width": 16, "ensemble": 1, "warm_start": True, "wiener": True,
                "sigma_estimator": "wavelet", "burn_in": 0}  # what the first rows were run with
CANDIDATES = {  # name: denoise options (spelt out: a later preset change keeps their meaning);
    # the first is the one the others are paired with
    "S200": {**ONE_WARM_FIT, "patience": 200},
    "S500": {**ONE_WARM_FIT, "patience": 500},
    "S100": {**ONE_WARM_FIT, "patience": 100},
    "S50": {**ONE_WARM_FIT, "patience": 50},
    "S200-B100": {**ONE_WARM_FIT, "patience": 200, "burn_in": 100},
    "S200-B200": {**ONE_WARM_FIT, "patience": 200, "burn_in": 200},
    # the same with the PCA sigma estimate (the presets' since 2026-12-07)
    "P200": {**ONE_WARM_FIT, "patience": 200, "sigma_estimator": "pca"},
    "P200-B100": {**ONE_WARM_FIT, "patience": 200, "sigma_estimator": "pca", "burn_in": 100},
    # a faster rate: width 16 at 0.01 fits slowly at low noise (t* near T = 3000 at sigma 15)
    "P200-lr0.02": {**ONE_WARM_FIT, "patience": 200, "sigma_estimator": "pca", "lr": 0.02},
    # tile size and stride: 192 x 192 tiles cover a 481 x 321 photo in 6 tiles (1.4x its
    # pixels) where 128 x 128 need 20 (2.1x); an overlap of 64 (stride 64) covers most pixels
    # by 4 tiles, an ensemble of independently stopped fits
    "P200-T192": {**ONE_WARM_FIT, "patience": 200, "sigma_estimator": "pca", "tile": 192},
    "P200-O64": {**ONE_WARM_FIT, "patience": 200, "sigma_estimator": "pca", "overlap": 64},
    # the default (B = 100) with its lams x 2.0 / 1.4; on crops (too small for the PCA
    # estimate) the default is S200-B100
    "D-lam2": {**ONE_WARM_FIT, "patience": 200, "sigma_estimator": "pca", "burn_in": 100,
               "table": str(LAM2_TABLE)},
}


def write_lam2_table() -> None:
    """LAM2_TABLE: the shipped width-16 table with every lam x 2.0 / 1.4."""
    doc = load_table(None, output="since-best", width=16)
    for entry in doc["entries"]:
        entry["lam"] *= 2.0 / 1.4
    doc["provenance"] = {**doc.get("provenance", {}), "scaled": "lam x 2.0 / 1.4 "
                         "(benchmarks/fast_preset.py, write_lam2_table)"}  # fmt: skip
    LAM2_TABLE.parent.mkdir(parents=True, exist_ok=True)
    LAM2_TABLE.write_text(json.dumps(doc, indent=1) + "\n")


def run(sigma: float, name: str, crop: int | None = 256, photos: tuple[str, ...] = PHOTOS,
        candidates: tuple[str, ...] = tuple(CANDIDATES)) -> None:
    """Every (photo, candidate) missing from the record NAME, saved as each finishes; `crop`
    None fits the whole photo."""
    torch.set_num_threads(1)
    if any("table" in CANDIDATES[c] for c in candidates):
        write_lam2_table()
    path = RESULTS / f"{name}.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    for photo in photos:
        clean, noisy = synthetic_pair(SHARED / "data" / "cbsd432_jpg" / photo, None, sigma, 0)
        clean, noisy = centre_crop(clean, crop), centre_crop(noisy, crop)
        for cand in candidates:
            options = CANDIDATES[cand]
            if any(r["photo"] == photo and r["candidate"] == cand for r in rows):
                continue
            _, res = denoise(noisy, clean=clean, device="cpu", tile_above=0, **options)
            rows.append({"photo": photo, "sigma": sigma, "crop": crop, "candidate": cand,
                         "options": options,
                         "psnr": res.psnr, "fit_psnr": res.fit_psnr, "cpu_s": res.cpu_seconds,
                         "iterations": res.iterations_run,
                         "t_stars": [t.result.stop_iteration for t in res.tiles]})  # fmt: skip
            save(name, {"rows": rows})
            print(f"{photo} sigma {sigma:g} {cand}: {res.psnr:.2f} dB ({res.fit_psnr:.2f} "
                  f"fits), {res.cpu_seconds:.0f} CPU s", flush=True)  # fmt: skip


def summary(ref_name: str = next(iter(CANDIDATES))) -> None:
    """Per sigma, crop and candidate: mean difference to the reference candidate (dB, after
    the filter and of the fits) +- its standard error, and the mean ratio of CPU seconds."""
    rows = [r for p in RESULTS.glob("fast_preset*.json") for r in json.loads(p.read_text())["rows"]]
    for sigma, crop in sorted({(r["sigma"], r.get("crop", 256) or 0) for r in rows}):
        these = [r for r in rows if r["sigma"] == sigma and (r.get("crop", 256) or 0) == crop]
        ref = {r["photo"]: r for r in these if r["candidate"] == ref_name}
        for cand in CANDIDATES:
            pairs = [(r, ref[r["photo"]]) for r in these
                     if r["candidate"] == cand and r["photo"] in ref]  # fmt: skip
            if not pairs:
                continue
            d = [a["psnr"] - b["psnr"] for a, b in pairs]
            f = [a["fit_psnr"] - b["fit_psnr"] for a, b in pairs]
            se = stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")
            level = mean(a["psnr"] for a, _ in pairs)
            where = f"crop {crop}" if crop else "whole photos"
            print(f"sigma {sigma:g}, {where}, {cand} ({len(d)} photos): {level:.2f} dB, "
                  f"{mean(d):+.2f} +- {se:.2f} dB after the filter ({min(d):+.2f} .. "
                  f"{max(d):+.2f}), fits {mean(f):+.2f}, CPU "
                  f"{mean(a['cpu_s'] / b['cpu_s'] for a, b in pairs):.2f}x")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sigma", type=float, default=25.0)
    p.add_argument("--name", default=None, help="record name (default fast_preset_s<sigma>)")
    p.add_argument("--crop", type=int, default=256, help="centre crop side; 0: the whole photo")
    p.add_argument("--photos", default=",".join(PHOTOS), help="comma-separated CBSD432 names")
    p.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated")
    p.add_argument("--summary", action="store_true")
    p.add_argument("--reference", default=next(iter(CANDIDATES)),
                   help="the candidate --summary pairs the others with")
    args = p.parse_args(argv)
    if args.summary:
        summary(args.reference)
    else:
        run(args.sigma, args.name or f"fast_preset_s{args.sigma:g}", args.crop or None,
            tuple(args.photos.split(",")), tuple(args.candidates.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
