"""dipstop beside what a user would use instead, on identical noisy whole photos, one run.

For each CBSD68 photo and sigma the noisy input is `synthetic_pair(path, None, sigma, 0)`,
and every method denoises those same pixels, timed in this process, one after the other:

- `bm3d-known`: BM3D at the true sigma; `bm3d-est`: BM3D at dipstop's blind estimate;
- `nlmeans`: scikit-image's non-local means with its own estimate;
- `zsn2n`: zero-shot Noise2Noise (Mansour & Heckel 2023, `dipstop.lab.peers`);
- `dipstop`: `dipstop.denoise` with its defaults (`--dipstop-options` adds keywords); its
  finished fits are kept in `results/peers/<photo>_<sigma>_<options hash>.partial/` (the
  hash leaves out the number of fits a tile), so a run cut short resumes the photo where it
  stopped, and a run with more fits a tile (`best` after the default) fits only the seeds
  the folder lacks. The folders stay (about 6 MB a photo and sigma for two fits a tile).
  A dipstop row's `fits_cpu_s` is the CPU time of every fit of its image, the ones read
  back included (`TiledResult.cpu_seconds`), and is what its CPU ratios use; `wall_s` and
  `cpu_s` time this process, so a row marked `resumed` has them partial and `--summary`
  leaves its wall time out of the ratios.

Rows (PSNR, SSIM, wall and CPU seconds, the CPU and threads) go to a SQLite store as each
finishes; a rerun skips them. `--summary` prints the per-sigma means with standard errors
and each method's time as a ratio to dipstop's on the same photos. BM3D needs the optional
extra: `pip install -e '.[peers]'`. The photos: the 6 fixed ones of the whole-photo
validation (every 10th of the sorted CBSD68 folder) and, with `--photos 12`, the 6 halfway
between them (every 10th from the 6th), chosen before any result was seen.

    python -m benchmarks.peers --sigmas 15,25,50 --photos 12
    python -m benchmarks.peers --photos 12 --shard 1/2 &    # a second worker: photos 2, 4, ...
    python -m benchmarks.peers --summary
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import mean_se
from dipstop import denoise
from dipstop.lab.datasets import list_images, synthetic_pair
from dipstop.lab.peers import bm3d_denoise, nlmeans_denoise, zsn2n_denoise
from dipstop.metrics import psnr, ssim
from dipstop.noise import estimate_sigma
from dipstop.options import METHOD, DenoiseOptions
from dipstop.runtime import cpu_name
from dipstop.tile_store import AFTER_FITS, RESOLVED, WHEN_SET, when_set

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DIPSTOP_SHARED", ROOT.parent / "shared"))
METHODS = ("bm3d-known", "bm3d-est", "nlmeans", "zsn2n", "dipstop")
SCHEMA = """CREATE TABLE IF NOT EXISTS peers (
    photo TEXT, sigma REAL, method TEXT, psnr REAL, ssim REAL, wall_s REAL, cpu_s REAL,
    threads INTEGER, cpu TEXT, torch TEXT, options TEXT, date TEXT, resumed INTEGER DEFAULT 0,
    fits_cpu_s REAL, PRIMARY KEY (photo, sigma, method, options))"""
ADDED = {"resumed": "INTEGER DEFAULT 0", "fits_cpu_s": "REAL"}  # columns an older store lacks


def validation_photos(folder: Path, n: int) -> list[Path]:
    """The fixed 6 photos (every 10th), then up to 6 more (every 10th from the 6th)."""
    files = list_images(folder)
    return (files[0::10][:6] + files[5::10][:6])[:n]


Method = Callable[[np.ndarray], tuple[np.ndarray, float | None]]


def methods(sigma: float, options: dict, partial: Path) -> dict[str, Method]:
    """Each method as a function of the noisy image giving the denoised one and, for
    dipstop, the CPU seconds of all its fits; dipstop keeps its fits in `partial`."""

    def dipstop(x: np.ndarray) -> tuple[np.ndarray, float]:
        out, result = denoise(x, **options, resume_dir=partial)
        return out, result.cpu_seconds

    return {
        "bm3d-known": lambda x: (bm3d_denoise(x, sigma), None),
        "bm3d-est": lambda x: (bm3d_denoise(x, estimate_sigma(x)), None),
        "nlmeans": lambda x: (nlmeans_denoise(x), None),
        "zsn2n": lambda x: (zsn2n_denoise(x), None),
        "dipstop": dipstop,
    }


def fits_folder(root: Path, photo: Path, sigma: float, options: dict) -> Path:
    """Where dipstop keeps a photo's fits: one folder for options that differ only in the
    number of fits a tile or the Wiener filter (after the quality preset is applied), so they
    share fits; warm starts (a tiling option) get their own.

    >>> a = fits_folder(Path("r"), Path("p.png"), 25, {"quality": "best"})
    >>> cold = {"width": 16, "patience": 700, "warm_start": False, "burn_in": 0}
    >>> a == fits_folder(Path("r"), Path("p.png"), 25, cold | {"ensemble": 2}), a.name[:5]
    (True, 'p_25_')
    >>> a == fits_folder(Path("r"), Path("p.png"), 25, {"quality": "fast"})
    False
    >>> a == fits_folder(Path("r"), Path("p.png"), 25, {"quality": "best", "warm_start": True})
    False
    >>> a == fits_folder(Path("r"), Path("p.png"), 25, cold | {"wiener": False})
    True
    >>> a == fits_folder(Path("r"), Path("p.png"), 25, cold | {"burn_in": 100})
    False
    """
    resolved = DenoiseOptions(**options).preset_applied().replace(ensemble=None, quality="default")
    left_out = AFTER_FITS + WHEN_SET + RESOLVED  # the run's own key holds the resolved sigma
    method = {k: v for k, v in resolved.of(METHOD).items() if k not in left_out}
    method |= when_set(resolved)
    tag = json.dumps(method, sort_keys=True, default=str)
    return root / f"{photo.stem}_{sigma:g}_{hashlib.sha1(tag.encode()).hexdigest()[:8]}.partial"


def timed(fn: Method, x: np.ndarray) -> tuple[np.ndarray, float | None, float, float]:
    """The output, the method's fit CPU seconds (dipstop), wall seconds and this process's
    CPU seconds (all its threads)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out, fits_cpu = fn(x)
    return out, fits_cpu, time.perf_counter() - w0, time.process_time() - c0


def run(args: argparse.Namespace, db: sqlite3.Connection) -> None:
    """Every missing (photo, sigma, method) row, stored as it finishes."""
    options = json.loads(args.dipstop_options)
    tag = json.dumps(options, sort_keys=True)
    part, parts = args.shard
    for path in validation_photos(Path(args.data), args.photos)[part::parts]:
        if args.only is not None and path.stem not in args.only:
            continue
        for sigma in args.sigmas:
            clean, noisy = synthetic_pair(path, None, sigma, 0)
            partial = fits_folder(Path(args.store).parent / "peers", path, sigma, options)
            for name, fn in methods(sigma, options, partial).items():
                if name not in args.methods:
                    continue
                opts = tag if name == "dipstop" else ""
                key = (path.name, sigma, name, opts)
                if db.execute(
                    "SELECT 1 FROM peers WHERE photo=? AND sigma=? AND method=? AND options=?", key
                ).fetchone():
                    continue
                resumed = int(name == "dipstop" and partial.is_dir() and any(partial.iterdir()))
                out, fits_cpu, wall, cpu = timed(fn, noisy)
                row = (*key[:3], psnr(out, clean), ssim(out, clean), wall, cpu,
                       torch.get_num_threads(), cpu_name(), torch.__version__, opts,
                       time.strftime("%Y-%m-%dT%H:%M:%S"), resumed, fits_cpu)  # fmt: skip
                with db:  # a row another run stored meanwhile (two runs, one store) stays
                    db.execute(
                        "INSERT OR IGNORE INTO peers (photo, sigma, method, psnr, ssim, wall_s, "
                        "cpu_s, threads, cpu, torch, options, date, resumed, fits_cpu_s) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        row,
                    )
                fits = "" if fits_cpu is None else f" ({fits_cpu:.0f} s in its fits)"
                print(f"{path.name} sigma {sigma:g} {name}: {row[3]:.2f} dB, {wall:.0f} s wall, "
                      f"{cpu:.0f} s cpu{fits}", flush=True)  # fmt: skip


def summary(db: sqlite3.Connection, reference: str = "{}") -> dict:
    """Per sigma and method (each dipstop options apart): mean PSNR +- standard error, and the
    time as a ratio to the `reference` dipstop options' on the photos both ran (wall and CPU;
    resumed rows' partial wall time left out; a dipstop row's CPU is its fits' where
    recorded, else this process's, left out when resumed)."""
    rows = db.execute(
        "SELECT photo, sigma, method, options, psnr, wall_s, cpu_s, resumed, fits_cpu_s FROM peers"
    ).fetchall()
    by: dict[tuple[float, str], dict[str, tuple]] = {}
    for photo, sigma, method, options, p, wall, cpu, resumed, fits_cpu in rows:
        label = method if options in ("", "{}") else f"{method} {options}"
        wall = None if resumed else wall
        cpu = fits_cpu if fits_cpu is not None else None if resumed else cpu
        by.setdefault((sigma, label), {})[photo] = (p, wall, cpu)
    ref_label = "dipstop" if reference in ("", "{}") else f"dipstop {reference}"
    out = {}
    print(f"differences and time ratios to {ref_label}, on the photos both ran")
    print("| sigma | method | photos | PSNR (dB) | PSNR - dipstop (photos) | wall / dipstop | "
          "CPU / dipstop |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    order = {m: i for i, m in enumerate(METHODS)}
    labels = sorted(by, key=lambda k: (k[0], order[k[1].split()[0]], k[1]))
    for sigma, label in labels:
        got, ref = by[(sigma, label)], by.get((sigma, ref_label), {})
        mean, se = mean_se([v[0] for v in got.values()])
        paired = [got[p][0] - ref[p][0] for p in sorted(set(got) & set(ref))]
        diff, diff_se = mean_se(paired)
        wall, cpu = (_ratio(got, ref, k) for k in (1, 2))
        out[f"{sigma:g}/{label}"] = {"n": len(got), "psnr": mean, "se": se, "diff": diff,
                                     "diff_se": diff_se, "diff_n": len(paired),
                                     "wall_ratio": wall, "cpu_ratio": cpu}  # fmt: skip
        fmt = lambda r: "-" if r is None else f"{r:.3f}"  # noqa: E731
        print(f"| {sigma:g} | {label} | {len(got)} | {mean:.2f} +- {se:.2f} | "
              f"{diff:+.2f} +- {diff_se:.2f} ({len(paired)}) | {fmt(wall)} | "
              f"{fmt(cpu)} |")  # fmt: skip
    for sigma in sorted({s for s, _ in by}):
        columns = [label for s, label in labels if s == sigma]
        photos = sorted({p for label in columns for p in by[(sigma, label)]})
        print(f"\nsigma {sigma:g}, PSNR (dB) per photo")
        print("| photo | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for photo in photos:
            cells = [by[(sigma, c)].get(photo) for c in columns]
            print(f"| {photo} | " + " | ".join("-" if v is None else f"{v[0]:.2f}" for v in cells)
                  + " |")  # fmt: skip
    return out


def _ratio(got: dict[str, tuple], ref: dict[str, tuple], k: int) -> float | None:
    """Sum of field k over the photos both have it for, got / ref (None: no such photo)."""
    both = [p for p in set(got) & set(ref) if got[p][k] is not None and ref[p][k] is not None]
    return sum(got[p][k] for p in both) / sum(ref[p][k] for p in both) if both else None


def _shard(text: str) -> tuple[int, int]:
    """ "K/N" -> (K, N), 0 <= K < N."""
    try:
        part, parts = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give K/N, e.g. 0/2, not {text!r}") from None
    if not 0 <= part < parts:
        raise argparse.ArgumentTypeError(f"K must be from 0 to N-1 in K/N, got {text!r}")
    return part, parts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SHARED / "data" / "cbsd68"))
    p.add_argument("--photos", type=int, default=6, help="6 fixed photos, up to 12")
    p.add_argument("--sigmas", type=lambda s: [float(v) for v in s.split(",")],
                   default=[15.0, 25.0, 50.0])  # fmt: skip
    p.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS))
    p.add_argument("--dipstop-options", default="{}", help="JSON keywords for denoise")
    p.add_argument("--store", default=str(ROOT / "results" / "peers.sqlite"))
    p.add_argument(
        "--shard",
        type=_shard,
        default=(0, 1),
        metavar="K/N",
        help="only the photos K, K+N, K+2N, ... (0-based): N workers side by side",
    )
    p.add_argument("--only", type=lambda s: set(s.split(",")), default=None, metavar="NAMES",
                   help="only these photos of the selection (stems, comma-separated)")  # fmt: skip
    p.add_argument("--summary", action="store_true")
    args = p.parse_args(argv)
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    db = sqlite3.connect(args.store, timeout=60)
    db.execute(SCHEMA)
    have = {c[1] for c in db.execute("PRAGMA table_info(peers)")}
    for column, kind in ADDED.items():
        if column not in have:
            db.execute(f"ALTER TABLE peers ADD COLUMN {column} {kind}")
    if not args.summary:
        run(args, db)
    summary(db, json.dumps(json.loads(args.dipstop_options), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
