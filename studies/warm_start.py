"""Warm starts: does a tile fitted from its neighbour's network stop sooner, and as well?

A tiled photo fits each tile from a fresh random network. A tile's neighbour shares its
noise level and much of its content, so its fitted network may be a better start. For the
quality-time study's 6 CBSD432 photos (calibration only) and its centre tile B, this fits
the tile A one tiling step (96 px) to the left from cold with the default's settings
(width 16, lr 0.01, seed 0), keeps A's network at its t* under the default's rule (lam x
1.4, S = 700), and fits B from that network, with B's own z (the seed's), recording every
candidate (lam scale, S) as `quality_time.py` does. The cold fit of B is the study's stored
`w16-lr0.01` seed 0, so each row pairs with it: same noise, lam, rules and seed.

    python studies/warm_start.py            # a worker; rerun to resume
    python studies/warm_start.py --summary  # warm against cold, per sigma

Rows go to `results/quality_time.sqlite`, table `warm` (one per photo, sigma, lam scale
and S). CPU seconds are the fitting thread's own (`time.thread_time`), B's alone: A's fit
is one a tiled run makes anyway.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_time as qt  # noqa: E402

from dipstop.lab.datasets import synthetic_pair  # noqa: E402
from dipstop.lambda_table import lam_for_sigma, load_table  # noqa: E402
from dipstop.metrics import psnr  # noqa: E402
from dipstop.noise import estimate_sigma  # noqa: E402

SETTING = qt.Setting(16, 0.01)
SEED = 0
KEEP = (1.4, 700)  # the default's rule: A's network at its t* is B's start
STEP = 96  # the tiling's step at overlap 32
SIGMAS = (25, 50)

SCHEMA = """
CREATE TABLE IF NOT EXISTS warm (
    photo TEXT, sigma REAL, lam_scale REAL, patience INTEGER,
    t_star INTEGER, stop INTEGER, cpu_s REAL, psnr_raw REAL, psnr_mean REAL,
    source_t_star INTEGER, source_cpu_s REAL, peak_psnr REAL, peak_t INTEGER, date TEXT,
    PRIMARY KEY (photo, sigma, lam_scale, patience));
"""


def tiles(path: Path, sigma: float) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], float]:
    """((clean B, noisy B), (clean A, noisy A), sigma estimated on the whole noisy photo)."""
    clean, noisy = synthetic_pair(path, None, sigma, 0)
    h, w = clean.shape[:2]
    top, left = (h - qt.TILE) // 2, (w - qt.TILE) // 2

    def crop(image: np.ndarray, x: int) -> np.ndarray:
        return image[top : top + qt.TILE, x : x + qt.TILE].copy()

    b = (crop(clean, left), crop(noisy, left))
    a = (crop(clean, left - STEP), crop(noisy, left - STEP))
    return b, a, estimate_sigma(noisy)


def run_job(db, path: Path, sigma: float) -> None:
    """Fit A cold, then B from A's network at its t*; store B's candidates."""
    (clean_b, noisy_b), (clean_a, noisy_a), sigma_est = tiles(path, sigma)
    pixels = qt.TILE * qt.TILE
    lam = lam_for_sigma(sigma_est, load_table(None, output="since-best"), pixels)
    source = qt.fit(noisy_a, clean_a, SETTING, SEED, lam, keep=KEEP)
    found_a = qt.outcomes(source, lam, pixels, (KEEP[0],))[KEEP]
    warm = qt.fit(noisy_b, clean_b, SETTING, SEED, lam, init=source["best_net"])
    peak = int(np.argmax(warm["psnr"]))
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = [
        (path.name, sigma, scale, patience, c["t_star"], c["stop"], c["cpu_s"],
         psnr(np.clip(c["raw"], 0, 1), clean_b), psnr(np.clip(c["mean"], 0, 1), clean_b),
         found_a["t_star"], found_a["cpu_s"], float(warm["psnr"][peak]), peak + 1, date)
        for (scale, patience), c in qt.outcomes(warm, lam, pixels, SETTING.lam_scales).items()
    ]  # fmt: skip
    with db:
        db.executemany(f"INSERT OR REPLACE INTO warm VALUES ({','.join('?' * 14)})", rows)


def summarise(db) -> int:
    """Warm against cold B per sigma and rule: mean PSNR, iterations to the stop, CPU."""
    for sigma in SIGMAS:
        rows = db.execute(
            "SELECT w.lam_scale, w.patience, count(*), avg(w.psnr_mean - c.psnr_mean),"
            " avg(w.psnr_mean), avg(c.psnr_mean), avg(w.stop), avg(c.stop), avg(w.cpu_s),"
            " avg(c.cpu_s) FROM warm w JOIN outcomes c ON c.photo = w.photo AND"
            " c.sigma = w.sigma AND c.lam_scale = w.lam_scale AND c.patience = w.patience"
            " AND c.setting = ? AND c.seeds = ? WHERE w.sigma = ?"
            " GROUP BY w.lam_scale, w.patience ORDER BY w.lam_scale, w.patience",
            (SETTING.name, str(SEED), sigma),
        ).fetchall()
        print(f"sigma {sigma}: lam x, S, photos, warm - cold dB, warm, cold, stops, CPU s")
        for r in rows:
            print(f"  {r[0]:g} {r[1]:4d} {r[2]} {r[3]:+.2f}  {r[4]:.2f} {r[5]:.2f}"
                  f"  {r[6]:.0f}/{r[7]:.0f}  {r[8]:.0f}/{r[9]:.0f}")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--summary", action="store_true", help="warm against cold, per sigma")
    args = p.parse_args(argv)
    db = qt.connect()
    db.executescript(SCHEMA)
    if args.summary:
        return summarise(db)
    torch.set_num_threads(1)
    for sigma in SIGMAS:
        for path in qt.photos():
            done = db.execute(
                "SELECT 1 FROM warm WHERE photo=? AND sigma=?", (path.name, sigma)
            ).fetchone()
            if not done:
                run_job(db, path, sigma)
                print(f"{path.name} sigma {sigma}: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
