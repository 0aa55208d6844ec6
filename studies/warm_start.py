"""Warm starts: does a tile fitted from its neighbour's network stop sooner, and as well?

A tiled photo fits each tile from a fresh random network. A tile's neighbour shares its
noise level and much of its content, so its fitted network may be a better start. For the
quality-time study's 6 CBSD432 photos (calibration only) and its centre tile B, this fits
a source tile A from cold with the default's settings (width 16, lr 0.01), keeps A's
network at its t* under the default's rule (lam x 1.4, S = 700), and fits B from that
network, with B's own z (the seed's), recording every candidate (lam scale, S) as
`quality_time.py` does; for seeds 0 and 1 (each B from the A of its seed), alone and
averaged (the default's two fits). Two sources: `left`, the tile one tiling step (96 px)
to the left, which overlaps B; `corner`, the photo's top-left tile, far from B (a run
could start every tile from its first tile's network and still fit the rest side by side).
The cold fit of B is the study's stored `w16-lr0.01` of the same seeds, so each row pairs
with it: same noise, lam, rules and seeds.

    python studies/warm_start.py            # a worker; rerun to resume
    python studies/warm_start.py --summary  # warm against cold, per sigma; figures

Rows go to `results/quality_time.sqlite`, table `warm` (one per photo, sigma, source, seeds,
lam scale and S). CPU seconds are the fitting thread's own (`time.thread_time`), B's alone: A's fit
is one a tiled run makes anyway.
"""

from __future__ import annotations

import argparse
import itertools
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
SEEDS = (0, 1)
KEEP = (1.4, 700)  # the default's rule: A's network at its t* is B's start
STEP = 96  # the tiling's step at overlap 32
SIGMAS = (25, 50)
SOURCES = ("corner", "left")  # the star (every tile from the first's network) first

SCHEMA = """
CREATE TABLE IF NOT EXISTS warm (
    photo TEXT, sigma REAL, source TEXT, seeds TEXT, lam_scale REAL, patience INTEGER,
    t_star INTEGER, stop INTEGER, cpu_s REAL, psnr_raw REAL, psnr_mean REAL,
    source_t_star INTEGER, source_cpu_s REAL, peak_psnr REAL, peak_t INTEGER, date TEXT,
    PRIMARY KEY (photo, sigma, source, seeds, lam_scale, patience));
"""


def tiles(
    path: Path, sigma: float, source: str
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], float]:
    """((clean B, noisy B), (clean A, noisy A), sigma estimated on the whole noisy photo)."""
    clean, noisy = synthetic_pair(path, None, sigma, 0)
    h, w = clean.shape[:2]
    top, left = (h - qt.TILE) // 2, (w - qt.TILE) // 2

    def crop(image: np.ndarray, y: int, x: int) -> np.ndarray:
        return image[y : y + qt.TILE, x : x + qt.TILE].copy()

    b = (crop(clean, top, left), crop(noisy, top, left))
    y, x = (top, left - STEP) if source == "left" else (0, 0)
    a = (crop(clean, y, x), crop(noisy, y, x))
    return b, a, estimate_sigma(noisy, "wavelet")  # what its stored rows used


def run_job(db, path: Path, sigma: float, source: str) -> None:
    """For each seed, fit A cold, then B from A's network at its t*; store B's candidates,
    each seed's and their average's (t*, stops and CPU summed over the group's fits)."""
    (clean_b, noisy_b), (clean_a, noisy_a), sigma_est = tiles(path, sigma, source)
    pixels = qt.TILE * qt.TILE
    lam = lam_for_sigma(sigma_est, load_table(None, output="since-best"), pixels)
    found, first, peaks = {}, {}, {}
    for seed in SEEDS:
        start = qt.fit(noisy_a, clean_a, SETTING, seed, lam, keep=KEEP)
        first[seed] = qt.outcomes(start, lam, pixels, (KEEP[0],))[KEEP]
        warm = qt.fit(noisy_b, clean_b, SETTING, seed, lam, init=start["best_net"])
        found[seed] = qt.outcomes(warm, lam, pixels, SETTING.lam_scales)
        peak = int(np.argmax(warm["psnr"]))
        peaks[seed] = (float(warm["psnr"][peak]), peak + 1)
        del start, warm
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = []
    for group in [*((s,) for s in SEEDS), SEEDS]:
        for cand in found[group[0]]:
            parts = [found[s][cand] for s in group]
            raw = np.mean([c["raw"] for c in parts], axis=0)
            mean = np.mean([c["mean"] for c in parts], axis=0)
            rows.append((
                path.name, sigma, source, "+".join(map(str, group)), *cand,
                sum(c["t_star"] for c in parts), sum(c["stop"] for c in parts),
                sum(c["cpu_s"] for c in parts), psnr(np.clip(raw, 0, 1), clean_b),
                psnr(np.clip(mean, 0, 1), clean_b), sum(first[s]["t_star"] for s in group),
                sum(first[s]["cpu_s"] for s in group), max(peaks[s][0] for s in group),
                peaks[group[0]][1], date,
            ))
    with db:
        db.executemany(f"INSERT OR REPLACE INTO warm VALUES ({','.join('?' * 16)})", rows)


def summarise(db, figures: Path = qt.ROOT / "docs" / "figures") -> int:
    """Warm against cold B per sigma, source, seeds and rule: mean PSNR, iterations a fit
    to the stop, CPU seconds of the group's fits; each sigma's `corner` rows drawn as PSNR
    against iterations a fit (lam x 1.4, one point per S) in
    docs/figures/warm_start_sigma<S>.png."""
    import matplotlib  # noqa: PLC0415 - plotting only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    for sigma in SIGMAS:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        drawn = 0
        for source, seeds in itertools.product(SOURCES, ("0", "0+1")):
            rows = db.execute(
                "SELECT w.lam_scale, w.patience, w.psnr_mean, c.psnr_mean, w.stop, c.stop,"
                " w.cpu_s, c.cpu_s FROM warm w JOIN outcomes c ON c.photo = w.photo AND"
                " c.sigma = w.sigma AND c.lam_scale = w.lam_scale AND c.patience = w.patience"
                " AND c.setting = ? AND c.seeds = w.seeds WHERE w.sigma = ? AND w.source = ?"
                " AND w.seeds = ? ORDER BY w.lam_scale, w.patience",
                (SETTING.name, sigma, source, seeds),
            ).fetchall()
            if not rows:
                continue
            fits = len(seeds.split("+"))
            print(f"sigma {sigma}, from {source}, seeds {seeds}: lam x, S, photos, warm - cold"
                  " dB, warm, cold, iterations a fit warm/cold, CPU s warm/cold")  # fmt: skip
            curve = []
            for (scale, patience), group in itertools.groupby(rows, key=lambda r: r[:2]):
                g = list(group)
                warm_it = np.mean([r[4] for r in g]) / fits
                cold_it = np.mean([np.mean([int(v) for v in str(r[5]).split(",")]) for r in g])
                warm_db, cold_db = np.mean([r[2] for r in g]), np.mean([r[3] for r in g])
                print(f"  {scale:g} {patience:4d} {len(g)} {warm_db - cold_db:+.2f}"
                      f"  {warm_db:.2f} {cold_db:.2f}  {warm_it:.0f}/{cold_it:.0f}"
                      f"  {np.mean([r[6] for r in g]):.0f}/{np.mean([r[7] for r in g]):.0f}")
                if scale == KEEP[0]:
                    curve.append((warm_it, warm_db, cold_it, cold_db, len(g)))
            if source == "corner" and curve:
                w_it, w_db, c_it, c_db, n = zip(*curve, strict=True)
                label = "one fit" if fits == 1 else f"{fits} fits averaged"
                line = ax.plot(c_it, c_db, "o--", label=f"cold, {label}")[0]
                ax.plot(w_it, w_db, "s-", color=line.get_color(),
                        label=f"warm from the corner tile, {label}")  # fmt: skip
                drawn = max(n)
        if drawn:
            ax.set_xlabel("iterations a fit, to the stop (S = 50 ... 1000 along each line)")
            ax.set_ylabel("mean PSNR of the tile (dB)")
            ax.set_title(f"sigma {sigma}: warm and cold starts, lam x {KEEP[0]:g}, "
                         f"{drawn} CBSD432 tiles")  # fmt: skip
            ax.legend(fontsize=8)
            figures.mkdir(parents=True, exist_ok=True)
            fig.savefig(figures / f"warm_start_sigma{sigma}.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
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
    for source, sigma, path in itertools.product(SOURCES, SIGMAS, qt.photos()):
        done = db.execute(
            "SELECT 1 FROM warm WHERE photo=? AND sigma=? AND source=? AND seeds=?",
            (path.name, sigma, source, "+".join(map(str, SEEDS))),
        ).fetchone()
        if not done:
            run_job(db, path, sigma, source)
            print(f"{path.name} sigma {sigma} from {source}: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
