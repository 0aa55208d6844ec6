"""The filter's pilot on whole calibration photos: the default's fits and BM3D's basic estimate.

A study (issue 32): on whole photos BM3D is ahead of dipstop's default, on 128 x 128 crops
behind it (the non-local search has more to find in a whole photo), so a filter variant is
judged on whole photos. Each CBSD432 photo (481 x 321) is denoised by the default's fits
(one warm width-16 fit a tile, S = 200, B = 100, PCA sigma) without the filter, on the
identical noisy input `synthetic_pair(path, None, sigma, 0)`; the fits' image is kept in
`results/pilot/<photo>_<sigma>.npz` (the tiles in `<photo>_<sigma>.partial/`, so an
interrupted photo resumes). `score` then filters each kept image offline with the fits'
image, BM3D's basic estimate (`dipstop.collaborative.collaborative_threshold`) and blends
of the two as the filter's pilot, beside BM3D itself (the `bm3d` package, known sigma).

    python studies/whole_pilot.py fit --sigmas 50,25       # one worker, resumes
    python studies/whole_pilot.py fit --sigmas 50 --preset fast   # fast's fits (S = 50)
    python studies/whole_pilot.py fit --sigmas 25 --preset best   # four cold fits, S = 700
    python studies/whole_pilot.py score --sigmas 25,50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dipstop import denoise
from dipstop.collaborative import collaborative_threshold
from dipstop.lab.datasets import synthetic_pair
from dipstop.metrics import psnr
from dipstop.runtime import cpu_name
from dipstop.wiener import OPPONENT, wiener_filter

ROOT = Path(__file__).resolve().parents[1]
KEPT = ROOT / "results" / "pilot"
DATA = ROOT.parent / "shared" / "data" / "cbsd432_jpg"
# the fast_preset study's whole photos first (crops and textured photos), then every 54th
PHOTOS = ("187083.jpg", "24063.jpg", "86016.jpg", "130034.jpg", "100007.jpg", "296058.jpg")
FITS = {"width": 16, "patience": 200, "ensemble": 1, "warm_start": True, "wiener": False,
        "sigma_estimator": "pca", "burn_in": 100}  # the default's fits, spelt out
PRESET_FITS = {"default": FITS, "fast": {**FITS, "patience": 50, "burn_in": 0},
               "best": {**FITS, "patience": 700, "ensemble": 4, "warm_start": False,
                        "burn_in": 0}}  # fmt: skip


def kept_path(photo: str, sigma: float, preset: str = "default") -> Path:
    suffix = "" if preset == "default" else f"_{preset}"
    return KEPT / f"{Path(photo).stem}_{sigma:g}{suffix}.npz"


def fit(photo: str, sigma: float, preset: str = "default") -> None:
    """Fit the photo with `preset`'s fits (resuming its kept tiles) and keep the fits' image
    and its cost."""
    clean, noisy = synthetic_pair(DATA / photo, None, sigma, 0)
    c0 = time.process_time()
    partial = kept_path(photo, sigma, preset).with_suffix(".partial")
    out, res = denoise(noisy, clean=clean, device="cpu", resume_dir=partial,
                       **PRESET_FITS[preset])  # fmt: skip
    np.savez_compressed(kept_path(photo, sigma, preset), out=out.astype(np.float16),
                        sigma_est=res.sigma, cpu_s=res.cpu_seconds, cpu_model=cpu_name(),
                        torch=torch.__version__)  # fmt: skip
    print(f"{photo} sigma {sigma:g}: fits {psnr(out, clean):.2f} dB, sigma est "
          f"{res.sigma:.2f}, {res.cpu_seconds:.0f} CPU s ({time.process_time() - c0:.0f} here)",
          flush=True)  # fmt: skip


def threshold_image(noisy: np.ndarray, sigma: float, wavelet: str | None = "bior1.5") -> np.ndarray:
    """BM3D's first stage in dipstop's opponent colour space (`collaborative_threshold`, in
    `wavelet`'s 2-D transform or the DCT's for None), groups matched on the noisy grey level."""
    y = noisy.astype(np.float32) @ OPPONENT.astype(np.float32).T
    chw = torch.from_numpy(np.ascontiguousarray(y.transpose(2, 0, 1)))
    out = collaborative_threshold(chw, chw[0] / np.sqrt(3), sigma / 255.0, wavelet=wavelet)
    return np.clip(out.permute(1, 2, 0).numpy() @ OPPONENT.astype(np.float32), 0.0, 1.0)


def variants(noisy: np.ndarray, fits: np.ndarray, sigma: float) -> dict[str, np.ndarray]:
    """Every image the study compares, from the noisy photo and its fits' image."""
    ht = threshold_image(noisy, sigma)
    out = {"fits": fits, "former filter": wiener_filter(noisy, fits, sigma), "threshold": ht,
           "threshold + filter": wiener_filter(noisy, ht, sigma)}  # fmt: skip
    for w in MIXES:
        out[f"pilot {w:g} threshold"] = wiener_filter(noisy, (1 - w) * fits + w * ht, sigma)
    out["mean of the two filtered"] = 0.5 * (out["former filter"] + out["threshold + filter"])
    # the first stage in the DCT instead of BM3D's wavelet (shipped until late 2026-12-07)
    ht_dct = threshold_image(noisy, sigma, wavelet=None)
    out["DCT threshold"] = ht_dct
    out["pilot 0.7 DCT threshold"] = wiener_filter(noisy, 0.3 * fits + 0.7 * ht_dct, sigma)
    return out


MIXES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.85)


def score(photos: list[str], sigmas: list[float]) -> None:
    """Each variant's PSNR per kept photo, BM3D (known sigma) beside it where installed, and
    each variant's mean gain over the former filter (the fits' image its pilot)."""
    try:
        import bm3d
    except ImportError:
        bm3d = None
    gains: dict = {}
    rows: list = []
    for sigma in sigmas:
        for photo in photos:
            if not kept_path(photo, sigma).exists():
                continue
            clean, noisy = synthetic_pair(DATA / photo, None, sigma, 0)
            with np.load(kept_path(photo, sigma)) as f:
                fits, est = f["out"].astype(np.float32), float(f["sigma_est"])
            row = {k: psnr(v, clean) for k, v in variants(noisy, fits, est).items()}
            for preset in ("fast", "best"):  # the other presets' fits, both filters
                if not kept_path(photo, sigma, preset).exists():
                    continue
                with np.load(kept_path(photo, sigma, preset)) as f:
                    other, other_est = f["out"].astype(np.float32), float(f["sigma_est"])
                row[f"{preset}, former filter"] = psnr(wiener_filter(noisy, other, other_est),
                                                       clean)  # fmt: skip
                for w in (0.5, 0.7):
                    row[f"{preset}, pilot {w:g} threshold"] = psnr(
                        wiener_filter(noisy, other, other_est, basic=w), clean)
            if bm3d is not None:
                row["BM3D known"] = psnr(np.clip(bm3d.bm3d_rgb(noisy, sigma / 255), 0, 1), clean)
            rows.append({"photo": photo, "sigma": sigma, "sigma_est": est, "psnr": row,
                         "date": time.strftime("%Y-%m-%dT%H:%M:%S")})  # fmt: skip
            _store(rows[-1])
            for k, v in row.items():
                gains.setdefault((sigma, k), []).append(v - row["former filter"])
            print(f"{photo} sigma {sigma:g}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()),
                  flush=True)  # fmt: skip
    for (sigma, k), g in gains.items():
        se = np.std(g, ddof=1) / np.sqrt(len(g)) if len(g) > 1 else float("nan")
        print(f"sigma {sigma:g} {k:24s} {np.mean(g):+.2f} +- {se:.2f} "
              f"(min {min(g):+.2f}, n {len(g)})")


def _store(row: dict) -> None:
    """Write a scored photo into results/pilot/summary.json as soon as it is scored (in
    place of its earlier row), so that an interrupted score keeps what it finished."""
    path = KEPT / "summary.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    rows = [r for r in rows if (r["photo"], r["sigma"]) != (row["photo"], row["sigma"])]
    path.write_text(json.dumps(
        {"machine": {"cpu": cpu_name(), "torch": torch.__version__, "threads": 1},
         "rows": sorted([*rows, row], key=lambda r: (r["sigma"], r["photo"]))},
        indent=1) + "\n")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("fit", "score"))
    p.add_argument("--sigmas", default="50,25")
    p.add_argument("--photos", default=",".join(PHOTOS))
    p.add_argument("--preset", default="default", choices=tuple(PRESET_FITS),
                   help="whose fits `fit` makes (fast: S = 50, no burn-in; best: four cold "
                        "fits a tile, S = 700)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    KEPT.mkdir(parents=True, exist_ok=True)
    for photo in args.photos.split(","):
        for sigma in (float(s) for s in args.sigmas.split(",")):
            if args.what == "fit" and not kept_path(photo, sigma, args.preset).exists():
                fit(photo, sigma, args.preset)
    if args.what == "score":
        score(args.photos.split(","), [float(s) for s in args.sigmas.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
