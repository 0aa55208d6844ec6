"""A post-filter on dipstop's output: how much an empirical Wiener filter adds, per preset.

A study (issue 32), on tile-sized crops of CBSD432 photos (calibration images only). Each job
denoises one 128 x 128 crop with the fits of a quality preset (`FITS`), unfiltered, as a
tiled run sees it (the noise drawn on the whole photo and sigma estimated there, given to
`denoise`), and keeps the fits' image (`results/post_filter/<photo>_<sigma>_<preset>_c<k>.npz`);
the filters are then compared offline on the kept images, in seconds, so one fit serves
every filter setting.

A photo gives 5 crops: its centre and the centres of its four quadrants. Centre crops alone
mislead: they are often the smooth subject, where the DIP is at its best, while a whole
photo's error is mostly in its textures. A photo's gain is taken on its crops' summed squared
error, as the whole photo's PSNR would weigh them.

    python studies/post_filter.py --shard 0/2 &   # the fits, two single-thread workers
    python studies/post_filter.py --shard 1/2 &
    python studies/post_filter.py --summary        # every filter setting on the kept images

A worker skips the crops already kept, so the same command resumes after an interruption.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_time as qt  # noqa: E402

from dipstop import denoise  # noqa: E402
from dipstop.lab.datasets import synthetic_pair  # noqa: E402
from dipstop.metrics import psnr  # noqa: E402
from dipstop.noise import estimate_sigma  # noqa: E402
from dipstop.runtime import cpu_name  # noqa: E402
from dipstop.wiener import wiener_filter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEPT = ROOT / "results" / "post_filter"
# The fits each label stands for, spelt out (the quality presets of 2026-12-06: a later
# preset change must not change what a kept image is), and never filtered: the study filters.
FITS = {
    "default": {"width": 16, "patience": 700, "ensemble": 2, "wiener": False, "burn_in": 0},
    "fast": {"width": 16, "patience": 200, "ensemble": 1, "wiener": False, "burn_in": 0},
}
PRESETS = tuple(FITS)
SIGMAS = (25, 50, 15)
N_PHOTOS = 8
TILE = qt.TILE


CROPS = 5  # the centre, then the centres of the quadrants

Job = tuple[Path, int, str, int]


def jobs() -> list[Job]:
    """Every (photo, sigma, preset, crop): sigma 25 and 50 for each preset, then 15."""
    order = [(q, s) for s in SIGMAS[:2] for q in PRESETS] + [(q, SIGMAS[2]) for q in PRESETS]
    return [(p, s, q, k) for q, s in order for p in qt.photos(N_PHOTOS) for k in range(CROPS)]


def kept_path(photo: Path, sigma: float, preset: str, crop: int) -> Path:
    """Where a job's returned image is kept."""
    return KEPT / f"{photo.stem}_{sigma:g}_{preset}_c{crop}.npz"


@functools.lru_cache(maxsize=2)
def whole_pair(photo: Path, sigma: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(clean photo, noisy photo, sigma estimated on it): read and estimated once for the
    photo's 5 crops (jobs come photo by photo)."""
    clean, noisy = synthetic_pair(photo, None, sigma, 0)
    return clean, noisy, estimate_sigma(noisy, "wavelet")  # what its stored rows used


def crop_pair(photo: Path, sigma: float, crop: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(clean crop, noisy crop, sigma estimated on the whole noisy photo): crop 0 the
    centre, 1-4 the centres of the quadrants (row by row)."""
    clean, noisy, sigma_est = whole_pair(photo, sigma)
    h, w = clean.shape[:2]
    cy, cx = ((h // 2, w // 2), (h // 4, w // 4), (h // 4, 3 * w // 4),
              (3 * h // 4, w // 4), (3 * h // 4, 3 * w // 4))[crop]  # fmt: skip
    top = min(max(cy - TILE // 2, 0), h - TILE)
    left = min(max(cx - TILE // 2, 0), w - TILE)
    box = (slice(top, top + TILE), slice(left, left + TILE))
    return clean[box].copy(), noisy[box].copy(), sigma_est


def fit_job(photo: Path, sigma: float, preset: str, crop: int) -> None:
    """Denoise the crop with the fits `preset` labels and keep their image with its cost."""
    clean, noisy, sigma_est = crop_pair(photo, sigma, crop)
    c0 = time.process_time()
    out, _ = denoise(noisy, sigma=sigma_est, **FITS[preset])
    cpu = time.process_time() - c0
    KEPT.mkdir(parents=True, exist_ok=True)
    path = kept_path(photo, sigma, preset, crop)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, out=out.astype(np.float16), sigma_est=sigma_est, cpu_s=cpu,
                        cpu_model=cpu_name(), torch=torch.__version__)  # fmt: skip
    tmp.replace(path)
    print(f"{photo.stem} sigma {sigma} {preset} crop {crop}: {psnr(out, clean):.2f} dB, "
          f"{cpu:.0f} cpu s", flush=True)  # fmt: skip


def load(photo: Path, sigma: float, preset: str, crop: int) -> dict:
    """A kept job: clean and noisy crop, the returned image, sigma estimate, cost."""
    clean, noisy, _ = crop_pair(photo, sigma, crop)
    with np.load(kept_path(photo, sigma, preset, crop)) as f:
        kept = {k: f[k] for k in f.files}
    return {"clean": clean, "noisy": noisy, "out": kept["out"].astype(np.float32),
            "sigma_est": float(kept["sigma_est"]), "cpu_s": float(kept["cpu_s"])}  # fmt: skip


# the filter settings compared: name -> wiener_filter's keywords and a sigma scale; "pilot" =
# no filter, "wiener" = the classical (ungated) empirical Wiener filter, one pass; "gated" =
# the gated passes alone; "gated+collab" = dipstop's filter (the passes' image moved 0.7 of
# the way to the collaborative stage's)
SOLO = {"collaborative": 0}
VARIANTS: dict[str, dict | None] = {
    "pilot": None,
    "wiener": {"gated": False, "passes": 1} | SOLO,
    "wiener s1": {"gated": False, "passes": 1, "stride": 1} | SOLO,
    "wiener p12 s3": {"gated": False, "passes": 1, "patch": 12, "stride": 3} | SOLO,
    "wiener x0.8": {"gated": False, "passes": 1, "scale": 0.8} | SOLO,
    "gated": SOLO,  # two passes
    "gated once": {"passes": 1} | SOLO,
    "gated x3": {"passes": 3} | SOLO,
    "gated w1": {"window": 1} | SOLO,
    "gated w5": {"window": 5} | SOLO,
    "gated s1": {"stride": 1} | SOLO,
    "gated s4": {"stride": 4} | SOLO,
    "gated p12 s3": {"patch": 12, "stride": 3} | SOLO,
    "gated x0.9": {"scale": 0.9} | SOLO,
    "gated x1.1": {"scale": 1.1} | SOLO,
    "gated+collab": {},  # dipstop's
    "gated+collab 0.5": {"collaborative": 0.5},
    "gated+collab 0.9": {"collaborative": 0.9},
    "collab only": {"collaborative": 1.0},
}
KNOWN = ("pilot", "wiener", "gated", "gated+collab")  # also scored with the known sigma


def filtered(job: dict, variant: dict | None, sigma: float) -> np.ndarray:
    """The job's returned image after the filter `variant` at noise std `sigma`."""
    if variant is None:
        return job["out"]
    kw = dict(variant)
    scale = kw.pop("scale", 1.0)
    return wiener_filter(job["noisy"], job["out"], sigma * scale, **kw)


def summary() -> dict:
    """Each variant's PSNR gain over the returned image, per preset and sigma: per photo on
    its 5 crops' summed squared error, then the mean and standard error over the photos
    whose crops are all kept; sigma estimated (as dipstop runs) and, for one variant, known.
    """
    sse: dict = {}  # (preset, sigma, variant, how) -> photo -> [sse]
    for photo, sigma, preset, crop in jobs():
        if not kept_path(photo, sigma, preset, crop).exists():
            continue
        job = load(photo, sigma, preset, crop)
        for how, s in (("estimated", job["sigma_est"]), ("known", float(sigma))):
            for name, variant in VARIANTS.items():
                if how == "known" and name not in KNOWN:
                    continue
                err = float(np.square(filtered(job, variant, s) - job["clean"]).sum())
                per_photo = sse.setdefault((preset, sigma, name, how), {})
                per_photo.setdefault(photo.stem, []).append(err)
    out = {}
    for (preset, sigma, name, how), photos in sse.items():
        base = sse[(preset, sigma, "pilot", how)]
        done = [p for p, e in photos.items() if len(e) == CROPS]
        if not done:
            continue
        gains = np.array([10 * np.log10(sum(base[p]) / sum(photos[p])) for p in done])
        pixels = CROPS * TILE * TILE * 3
        level = np.array([10 * np.log10(pixels / sum(base[p])) for p in done])
        se = gains.std(ddof=1) / np.sqrt(len(gains)) if len(gains) > 1 else float("nan")
        key = f"{preset} sigma {sigma:g} {name} ({how})"
        out[key] = {"photos": done, "gain_db": [round(g, 3) for g in gains],
                    "mean": round(float(gains.mean()), 3), "se": round(float(se), 3),
                    "pilot_psnr": round(float(level.mean()), 2)}  # fmt: skip
        print(
            f"{key:48s} n={len(done)} {gains.mean():+.3f} +- {se:.3f} "
            f"({gains.min():+.2f} .. {gains.max():+.2f}; pilot {level.mean():.2f} dB)"
        )
    return out


SERIES = (  # what the plot shows: x offset, variant, colour, label
    (-0.22, "wiener", "tab:grey", "classical Wiener"),
    (0.0, "gated", "tab:cyan", "gated passes"),
    (0.22, "gated+collab", "tab:blue", "gated + collaborative (dipstop)"),
)


def plot(gains: dict, path: Path) -> None:
    """Each photo's gain: the classical filter, the gated passes alone and dipstop's filter,
    per preset and sigma (sigma estimated, as dipstop runs)."""
    import matplotlib  # noqa: PLC0415 - plotting only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    cases = [(q, s) for q in PRESETS for s in SIGMAS if f"{q} sigma {s} gated (estimated)" in gains]
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(cases), 3.8))
    for i, (preset, sigma) in enumerate(cases):
        for dx, name, colour, label in SERIES:
            row = gains.get(f"{preset} sigma {sigma} {name} (estimated)")
            if row is None:
                continue
            ax.scatter([i + dx] * len(row["gain_db"]), row["gain_db"], s=14, color=colour,
                       label=label if i == 0 else None)  # fmt: skip
            ax.plot([i + dx - 0.08, i + dx + 0.08], [row["mean"]] * 2, color=colour, lw=2)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(range(len(cases)), [f"{q}\nsigma {s}" for q, s in cases])
    ax.set_ylabel("PSNR gain over the fits' image (dB)")
    ax.set_title("Wiener filter on CBSD432 crops: each photo, and the mean", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shard", default="0/1", help="K/N: this worker's share of the jobs")
    p.add_argument("--summary", action="store_true", help="compare the filters offline")
    args = p.parse_args(argv)
    if args.summary:
        record = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(),
                  "command": "python studies/post_filter.py --summary",
                  "gains_db": summary()}  # fmt: skip
        (KEPT / "summary.json").write_text(json.dumps(record, indent=1) + "\n")
        plot(record["gains_db"], ROOT / "docs" / "figures" / "post_filter.png")
        return 0
    torch.set_num_threads(1)
    k, n = (int(v) for v in args.shard.split("/"))
    for job in jobs()[k::n]:
        if not kept_path(*job).exists():
            fit_job(*job)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
