"""Quality per CPU-second of a tile's fit: which settings buy the most PSNR per second.

A study (issue 32), not a benchmark: it records, on tile-sized crops of CBSD432 photos
(calibration images only), one fit per (photo, sigma, network setting, seed) and evaluates
offline every output the run could return: for each CIFS weight (the table's lam at the
photo's estimated sigma, times a scale) and each patience S, the stop, t*, the raw output at
t* and dipstop's default (the mean of the outputs from t* to the stop), with the CPU seconds
spent up to the stop. Seeds fitted for one setting are also averaged (an ensemble costs the
sum of its fits). One fit thus serves 3 lams x 7 patiences x {raw, mean}, and pairs of seeds.

The noise is drawn on the whole photo and sigma estimated there, as in a tiled run; the
crop is the photo's centre. Rows go to a SQLite store as each (photo, sigma, setting) job
finishes; a rerun skips finished jobs. Run two single-threaded workers on two cores:

    python studies/quality_time.py &   # each worker claims the next unfinished job
    python studies/quality_time.py &
    python studies/quality_time.py --summary          # the table and the fronts (plots)

CPU seconds are the fitting thread's own (`time.thread_time`, torch on one thread): the
network steps and the JPEG encodes, not the study's bookkeeping, and not the wait for a
core another process holds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import sqlite3
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from dipstop.codecs import jpeg_bytes, tensor_to_uint8
from dipstop.criteria.cifs import cifs_value
from dipstop.fitting import FitSettings, Fitter, resolve_precision
from dipstop.lab.datasets import centre_crop, evenly_spaced, list_images, synthetic_pair
from dipstop.lab.tables import width_table
from dipstop.lambda_table import lam_for_sigma, load_table
from dipstop.metrics import psnr
from dipstop.noise import estimate_sigma
from dipstop.runtime import cpu_name
from dipstop.stopping import OnlineStopper

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cbsd432_jpg"
STORE = ROOT / "results" / "quality_time.sqlite"
TILE = 128
MAX_ITERS = 3000
LAM_SCALES = (0.7, 1.0, 1.4)
PATIENCES = (50, 100, 200, 300, 500, 700, 1000)
SEEDS = (0, 1)
SIGMAS = (25, 50, 15)
N_PHOTOS = 6


@dataclass(frozen=True)
class Setting:
    """The network and optimiser settings one job fits with."""

    width: int = 64
    lr: float = 0.01
    z_noise_std: float = 1.0 / 30.0
    seeds: tuple[int, ...] = SEEDS
    lam_scales: tuple[float, ...] = LAM_SCALES
    flip: bool = False  # seed k fits the tile turned by FLIPS[k % 4], its output turned back
    input_depth: int = 32  # channels of z (8: a step costs 0.89x, benchmarks/network_depth.py)

    @property
    def name(self) -> str:
        z = "" if self.z_noise_std == FitSettings.z_noise_std else f"-z{self.z_noise_std:.3g}"
        s = "" if self.seeds == SEEDS else f"-s{len(self.seeds)}"
        f = "-flip" if self.flip else ""
        i = "" if self.input_depth == FitSettings.input_depth else f"-i{self.input_depth}"
        return f"w{self.width}-lr{self.lr:g}{z}{s}{f}{i}"


# Geometric diversity for an ensemble: seed 0 as is, seed 1 turned by 180 degrees (which also
# moves every stride-2 sampling grid by a pixel in both axes), seeds 2 and 3 mirrored. Each
# is its own inverse.
FLIPS = ((), (0, 1), (0,), (1,))


def turn(image: np.ndarray, seed: int) -> np.ndarray:
    """`image` (H x W x C) mirrored by FLIPS[seed % 4]."""
    axes = FLIPS[seed % len(FLIPS)]
    return np.ascontiguousarray(np.flip(image, axes)) if axes else image


SETTINGS = (
    Setting(64, 0.01),  # the former default's tiles
    Setting(16, 0.01),  # the default's
    Setting(8, 0.01),  # width 16 led the first photo's front: is narrower better still?
    # after the core, in this order: ensembles of up to four seeds, at the larger lams the
    # two-seed ensembles preferred (the best preset); width 16 at lr 0.02 (at sigma 15 its
    # fits at 0.01 reach T with t* near 2900: does a faster rate stop sooner?); the z
    # perturbation off and doubled (DIP's 1/30 is the default); then the widths and rates
    # sigma 25 already ruled out
    Setting(16, 0.01, seeds=(0, 1, 2, 3), lam_scales=(1.0, 1.4, 2.0)),
    Setting(16, 0.01, flip=True),  # the default's two fits, the second on the turned tile
    Setting(16, 0.02),
    Setting(16, 0.01, z_noise_std=0.0),
    Setting(16, 0.01, z_noise_std=1.0 / 15.0),
    Setting(32, 0.01),
    Setting(64, 0.02),
    Setting(32, 0.02),
    Setting(8, 0.02),
    Setting(16, 0.01, input_depth=8),  # a cheaper step: does the prior need 32 channels of z?
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS fits (
    photo TEXT, sigma REAL, setting TEXT, seed INTEGER,
    sigma_est REAL, lam REAL, iterations INTEGER, cpu_s REAL, peak_psnr REAL, peak_t INTEGER,
    series BLOB, cpu_model TEXT, precision TEXT, torch TEXT, date TEXT,
    PRIMARY KEY (photo, sigma, setting, seed));
CREATE TABLE IF NOT EXISTS outcomes (
    photo TEXT, sigma REAL, setting TEXT, seeds TEXT, lam_scale REAL, patience INTEGER,
    t_star TEXT, stop TEXT, cpu_s REAL, psnr_raw REAL, psnr_mean REAL,
    PRIMARY KEY (photo, sigma, setting, seeds, lam_scale, patience));
CREATE TABLE IF NOT EXISTS jobs (
    photo TEXT, sigma REAL, setting TEXT, settings_json TEXT, date TEXT,
    PRIMARY KEY (photo, sigma, setting));
CREATE TABLE IF NOT EXISTS claims (
    photo TEXT, sigma REAL, setting TEXT, host TEXT, pid INTEGER,
    PRIMARY KEY (photo, sigma, setting));
"""


def connect(path: Path = STORE) -> sqlite3.Connection:
    """The study's store, created if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=60)
    db.executescript(SCHEMA)
    return db


def photos(n: int = N_PHOTOS) -> list[Path]:
    """The study's calibration photos: n evenly spaced CBSD432 files."""
    return evenly_spaced(list_images(DATA), n)


def tile_pair(path: Path, sigma: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(clean tile, noisy tile, sigma estimated on the whole noisy photo)."""
    clean, noisy = synthetic_pair(path, None, sigma, 0)
    sigma_est = estimate_sigma(noisy, "wavelet")  # what its stored rows used
    return centre_crop(clean, TILE).copy(), centre_crop(noisy, TILE).copy(), sigma_est


def fit(
    noisy: np.ndarray, clean: np.ndarray, setting: Setting, seed: int, lam: float,
    init: dict | None = None, keep: tuple[float, int] | None = None,
) -> dict:
    """One fit, run until every (lam scale, S) rule has fired or T; every output kept.

    Returns the series (mse, jpeg bytes, psnr, cumulative CPU seconds) and the outputs as
    a float16 T x H x W x C array. `init`: network weights to start from (a warm start)
    instead of the seed's; `keep` a (lam scale, S) rule: the network at that rule's t* is
    returned as "best_net" (the weights one step after the kept output's).
    """
    x = torch.from_numpy(noisy).permute(2, 0, 1).contiguous()
    precision = resolve_precision("auto", torch.device("cpu"))
    settings = FitSettings(
        width=setting.width, lr=setting.lr, z_noise_std=setting.z_noise_std, seed=seed,
        input_depth=setting.input_depth,
    ).with_precision(precision)
    fitter = Fitter(x, settings, "cpu")
    if init is not None:
        fitter.net.load_state_dict(init)
    best_net = None
    pixels = noisy.shape[0] * noisy.shape[1]
    rules = {(a, s): OnlineStopper(s) for a in setting.lam_scales for s in PATIENCES}
    mse, nbytes, psnrs, cpu = [], [], [], []
    outputs = np.empty((MAX_ITERS, *noisy.shape), np.float16)
    clock = 0.0
    steps = fitter.run(MAX_ITERS)
    while True:
        t0 = time.thread_time()
        it = next(steps, None)
        if it is None:
            break
        q = tensor_to_uint8(it.output)
        b = jpeg_bytes(q)
        clock += time.thread_time() - t0
        y = it.output[0].permute(1, 2, 0).float().numpy()
        outputs[it.t - 1] = y
        mse.append(it.loss)
        nbytes.append(b)
        psnrs.append(psnr(np.clip(y, 0, 1), clean))
        cpu.append(clock)
        done = True
        for key, rule in rules.items():
            done &= rule.update(cifs_value(it.loss, b, pixels, lam * key[0]))
            if key == keep and rule.improved:
                best_net = {k: v.detach().clone() for k, v in fitter.net.state_dict().items()}
        if done:
            break
    steps.close()
    n = len(mse)
    return {
        "best_net": best_net,
        "mse": np.array(mse),
        "bytes": np.array(nbytes, float),
        "psnr": np.array(psnrs),
        "cpu": np.array(cpu),
        "outputs": outputs[:n],
        "precision": precision,
    }


def outcomes(
    run: dict, lam: float, pixels: int, scales: tuple[float, ...] = LAM_SCALES
) -> dict[tuple[float, int], dict]:
    """Every (lam scale, S) candidate of one fit: t*, stop, CPU seconds, raw and mean image."""
    found = {}
    n = len(run["mse"])
    for scale, patience in itertools.product(scales, PATIENCES):
        e = cifs_value(run["mse"], run["bytes"], pixels, lam * scale)
        rule = OnlineStopper(patience)
        for v in e:
            if rule.update(v):
                break
        stop = rule.count  # iterations taken (n when T came first)
        best = rule.best_index
        # T first: the mean of the last S + 1 outputs, as denoise does
        first = best if rule.done else max(0, n - patience - 1)
        window = run["outputs"][first:stop].astype(np.float32)
        found[(scale, patience)] = {
            "t_star": best + 1,
            "stop": stop,
            "cpu_s": float(run["cpu"][stop - 1]),
            "raw": run["outputs"][best].astype(np.float32),
            "mean": window.mean(axis=0),
        }
    return found


def _pack(run: dict) -> bytes:
    arrays = {k: run[k].astype(np.float32).tolist() for k in ("mse", "bytes", "psnr", "cpu")}
    return zlib.compress(json.dumps(arrays).encode())


def run_job(db: sqlite3.Connection, path: Path, sigma: float, setting: Setting) -> None:
    """Fit every seed of one (photo, sigma, setting), store fits, outcomes and ensembles."""
    clean, noisy, sigma_est = tile_pair(path, sigma)
    pixels = TILE * TILE
    lam = lam_for_sigma(sigma_est, load_table(None, output="since-best"), pixels)
    per_seed = {}
    fit_rows = []
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for seed in setting.seeds:
        k = seed if setting.flip else 0
        run = fit(turn(noisy, k), turn(clean, k), setting, seed, lam)
        per_seed[seed] = outcomes(run, lam, pixels, setting.lam_scales)
        for found in per_seed[seed].values():  # back to the photo's orientation
            found["raw"], found["mean"] = turn(found["raw"], k), turn(found["mean"], k)
        peak = int(np.argmax(run["psnr"]))
        fit_rows.append((
            path.name, sigma, setting.name, seed, sigma_est, lam, len(run["mse"]),
            float(run["cpu"][-1]), float(run["psnr"][peak]), peak + 1, _pack(run),
            cpu_name(), run["precision"], torch.__version__, date,
        ))
        del run
    rows = []
    for k in range(1, len(setting.seeds) + 1):
        for group in itertools.combinations(setting.seeds, k):
            for cand in per_seed[group[0]]:
                parts = [per_seed[s][cand] for s in group]
                raw = np.mean([p["raw"] for p in parts], axis=0)
                mean = np.mean([p["mean"] for p in parts], axis=0)
                rows.append((
                    path.name, sigma, setting.name, "+".join(map(str, group)), cand[0], cand[1],
                    ",".join(str(p["t_star"]) for p in parts),
                    ",".join(str(p["stop"]) for p in parts),
                    sum(p["cpu_s"] for p in parts),
                    psnr(np.clip(raw, 0, 1), clean), psnr(np.clip(mean, 0, 1), clean),
                ))
    with db:
        db.executemany(f"INSERT OR REPLACE INTO fits VALUES ({','.join('?' * 15)})", fit_rows)
        db.executemany(f"INSERT OR REPLACE INTO outcomes VALUES ({','.join('?' * 11)})", rows)
        db.execute(
            "INSERT OR REPLACE INTO jobs VALUES (?,?,?,?,?)",
            (path.name, sigma, setting.name, json.dumps(asdict(setting)), date),
        )


CORE = ("w64-lr0.01", "w16-lr0.01", "w8-lr0.01")  # today's tile and the narrow candidates


def jobs() -> list[tuple[Path, float, Setting]]:
    """Every job in the order they run: the core settings first (sigma 25, then 50, then 15,
    photo by photo, today's tile first), then the other settings in the same order.

    Sigma 25 showed the narrow networks leading the front; the other sigmas are asked
    first whether that holds, before the settings it already ruled out are fitted there.
    """
    core = [st for name in CORE for st in SETTINGS if st.name == name]
    rest = [st for st in SETTINGS if st.name not in CORE]
    return [
        (p, s, st) for group in (core, rest) for s in SIGMAS for p in photos() for st in group
    ]


def _alive(host: str, pid: int) -> bool:
    """Whether a claim's process still runs (a claim from another host counts as alive)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(db: sqlite3.Connection, only: str | None = None) -> tuple[Path, float, Setting] | None:
    """The first job in order that is neither done nor held by a live worker, claimed for
    this process (one transaction, so two workers never take the same job); None when none
    is left. Claims of dead processes are taken over: a rerun resumes where work stopped."""
    me = (socket.gethostname(), os.getpid())
    with db:
        db.execute("BEGIN IMMEDIATE")
        for path, sigma, setting in jobs():
            if only is not None and setting.name != only:
                continue
            key = (path.name, sigma, setting.name)
            done = db.execute(  # done with this list of patiences (a longer list refits)
                "SELECT 1 FROM outcomes WHERE photo=? AND sigma=? AND setting=? AND patience=?",
                (*key, max(PATIENCES)),
            ).fetchone()
            if done:
                continue
            held = db.execute(
                "SELECT host, pid FROM claims WHERE photo=? AND sigma=? AND setting=?", key
            ).fetchone()
            if held and tuple(held) != me and _alive(*held):
                continue
            db.execute("INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?)", (*key, *me))
            return path, sigma, setting
    return None


def work(only: str | None = None) -> None:
    """Claim and run unfinished jobs until none is left (start one such worker per core);
    `only` a setting's name: that setting's jobs alone."""
    torch.set_num_threads(1)
    db, claims = connect(), connect()
    claims.isolation_level = None  # claim opens its own transaction
    while (job := claim(claims, only)) is not None:
        path, sigma, setting = job
        t0 = time.time()
        run_job(db, path, sigma, setting)
        print(f"{path.name} sigma {sigma:g} {setting.name}: {time.time() - t0:.0f} s", flush=True)


Candidate = tuple[str, str, float, int, str]  # setting, seeds ("1" or "2"), lam scale, S, output
REFERENCE: Candidate = ("w64-lr0.01", "1", 1.0, 500, "mean")  # the former default
DEFAULT: Candidate = ("w16-lr0.01", "2", 1.4, 700, "mean")  # the default since 2026-12-06


def candidates(db: sqlite3.Connection, sigma: float) -> tuple[dict[Candidate, tuple], int]:
    """Mean PSNR and CPU seconds of every candidate over the photos whose fit of today's
    tile has finished, for the settings finished on all of them (a setting still running on
    one of those photos is left out until it finishes).

    A single fit's figure for a photo is the mean over its seeds (each seed a sample of the
    same candidate); "2" is the average of two seeds' images at the cost of both fits.
    """
    rows = db.execute(
        "SELECT photo, setting, seeds, lam_scale, patience, cpu_s, psnr_raw, psnr_mean "
        "FROM outcomes WHERE sigma=?",
        (sigma,),
    ).fetchall()
    per_photo: dict[str, set[str]] = {}
    for photo, setting, _, _, patience, *_ in rows:
        if patience == max(PATIENCES):  # fitted with the whole list of patiences
            per_photo.setdefault(photo, set()).add(setting)
    # the photos today's tile has finished; the settings finished on every one of them
    complete = {p for p, got in per_photo.items() if REFERENCE[0] in got}
    names = set.intersection(*(per_photo[p] for p in complete)) if complete else set()
    acc: dict[Candidate, dict[str, list]] = {}
    for photo, setting, seeds, scale, patience, cpu, raw, mean in rows:
        if photo not in complete or setting not in names:
            continue
        k = str(seeds.count("+") + 1)  # fits averaged
        for output, value in (("raw", raw), ("mean", mean)):
            cell = acc.setdefault((setting, k, scale, patience, output), {})
            cell.setdefault(photo, []).append((value, cpu))
    found = {}
    for cand, by_photo in acc.items():
        if set(by_photo) != complete:  # every candidate on the same photos
            continue
        psnrs = [np.mean([v for v, _ in vals]) for vals in by_photo.values()]
        cpus = [np.mean([c for _, c in vals]) for vals in by_photo.values()]
        se = np.std(psnrs, ddof=1) / np.sqrt(len(psnrs)) if len(psnrs) > 1 else float("nan")
        found[cand] = (float(np.mean(psnrs)), float(se), float(np.mean(cpus)))
    return found, len(complete)


def front(found: dict[Candidate, tuple]) -> list[Candidate]:
    """The Pareto front: candidates no cheaper candidate beats in mean PSNR."""
    best, kept = -np.inf, []
    for cand in sorted(found, key=lambda c: (found[c][2], -found[c][0])):
        if found[cand][0] > best:
            best = found[cand][0]
            kept.append(cand)
    return kept


def summarise(db: sqlite3.Connection, figures: Path = ROOT / "docs" / "figures") -> int:
    """Print each sigma's front beside the reference (the former default) and the default,
    draw it, save the summary JSON."""
    import matplotlib  # noqa: PLC0415 - plotting only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figures.mkdir(parents=True, exist_ok=True)
    summary = {"cpu": cpu_name(), "sigmas": {}}
    for sigma in SIGMAS:
        found, n = candidates(db, sigma)
        if not found:
            continue
        kept = front(found)
        print(f"\nsigma {sigma:g}: {n} photos with every setting; front (CPU s per tile):")
        print("| setting | seeds | lam x | S | output | PSNR (dB) | CPU s |")
        print("|---|---|---|---|---|---|---|")
        for cand in [*kept, *(c for c in (REFERENCE, DEFAULT) if c in found and c not in kept)]:
            p, se, c = found[cand]
            mark = {REFERENCE: " (former default)", DEFAULT: " (default)"}.get(cand, "")
            print(f"| {cand[0]}{mark} | {cand[1]} | {cand[2]:g} | {cand[3]} | {cand[4]} | "
                  f"{p:.2f} +- {se:.2f} | {c:.0f} |")  # fmt: skip
        fig, ax = plt.subplots(figsize=(7, 4.5))
        colours = dict(zip(sorted({c[0] for c in found}), plt.cm.tab10.colors, strict=False))
        for name, seeds in itertools.product(colours, (("1", "o"), ("2", "x"))):
            pts = [found[c] for c in found
                   if c[:3] == (name, seeds[0], 1.0) and c[4] == "mean"]  # fmt: skip
            label = f"{name}, {'one fit' if seeds[0] == '1' else 'two seeds averaged'}"
            ax.scatter([q[2] for q in pts], [q[0] for q in pts], s=14, marker=seeds[1],
                       color=colours[name], label=label)  # fmt: skip
        ax.plot([found[c][2] for c in kept], [found[c][0] for c in kept], "k-", lw=1,
                label="front (all candidates)")  # fmt: skip
        marks = ((REFERENCE, "former default", "k"), (DEFAULT, "default", "C3"))
        for cand, label, colour in marks:
            if cand in found:
                ax.scatter([found[cand][2]], [found[cand][0]], marker="*", s=150, c=colour,
                           label=label)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("CPU seconds per 128 x 128 tile (one thread)")
        ax.set_ylabel("mean PSNR (dB)")
        ax.set_title(f"sigma {sigma:g}: {n} CBSD432 tile{'s' * (n != 1)}, lam x 1 shown, "
                     "front over all")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(figures / f"quality_time_sigma{sigma:g}.png", dpi=110)
        plt.close(fig)
        summary["sigmas"][f"{sigma:g}"] = {
            "photos": n,
            "front": [[*c, *found[c]] for c in kept],
            "reference": [*REFERENCE, *found[REFERENCE]] if REFERENCE in found else None,
            "default": [*DEFAULT, *found[DEFAULT]] if DEFAULT in found else None,
        }
    out = ROOT / "results" / "quality_time_summary.json"
    out.write_text(json.dumps(summary, indent=1))
    print(f"saved {out.relative_to(ROOT)}")
    return 0


def derive_table(db: sqlite3.Connection, setting: str, patience: int, out: Path,
                 fits: int = 2) -> int:  # fmt: skip
    """Write the since-best lam table for `setting`'s width: at each sigma the study measured,
    the width-64 table's lam times the scale (of 0.7, 1, 1.4) that gave the best mean PSNR of
    `fits` averaged fits at patience `patience` over the photos (nearest measured sigma for
    the table's other sigmas), and the mean stop scaled by the ratio of `setting`'s stop at
    that scale to today's tile's at S = 500. Calibration images only (CBSD432 tiles)."""
    base = load_table(None, output="since-best")
    scales, ratios = {}, {}
    for sigma in SIGMAS:
        rows = db.execute(
            "SELECT lam_scale, AVG(psnr_mean), COUNT(*) FROM outcomes WHERE sigma=? AND "
            "setting=? AND patience=? AND LENGTH(seeds) - LENGTH(REPLACE(seeds, '+', '')) = ? "
            "GROUP BY lam_scale",
            (sigma, setting, patience, fits - 1),
        ).fetchall()
        if not rows:
            continue
        scales[sigma] = max(rows, key=lambda r: r[1])[0]
        stops = db.execute(
            "SELECT a.stop, b.stop FROM outcomes a JOIN outcomes b USING (photo, sigma) WHERE "
            "a.sigma=? AND a.setting=? AND a.patience=? AND a.lam_scale=? AND a.seeds='0' AND "
            "b.setting=? AND b.patience=500 AND b.lam_scale=1 AND b.seeds='0'",
            (sigma, setting, patience, scales[sigma], REFERENCE[0]),
        ).fetchall()
        ratios[sigma] = float(np.mean([int(x) for x, _ in stops]) /
                              np.mean([int(y) for _, y in stops]))  # fmt: skip
    if not scales:
        print(f"no finished {setting} jobs")
        return 1
    width = int(setting.split("-")[0][1:])
    measured = ", ".join(f"sigma {g:g}: lam x {scales[g]:g}, stops x {ratios[g]:.2f}"
                         for g in sorted(scales))  # fmt: skip
    provenance = {
        "command": f"python studies/quality_time.py --table {out} --setting {setting} "
        f"--patience {patience}",
        "date": datetime.now(timezone.utc).date().isoformat(),
        "derived_from": "lambda_table_since-best.json (width 64): its lams times the scale "
        f"best for {fits} averaged width-{width} fits at S = {patience} on CBSD432 tiles "
        f"(the quality-time study, results/quality_time.sqlite), its mean stops scaled by the "
        f"measured ratio to the width-64 fit's ({measured}); PSNR fields are the base table's",
    }
    doc = width_table(base, scales, ratios, width, patience, provenance)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}: {measured}")
    return 0

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--summary", action="store_true", help="print the table, draw the fronts")
    p.add_argument("--table", type=Path, help="write the lam table of --setting at --patience")
    p.add_argument("--setting", default="w16-lr0.01", help="the setting --table is for")
    p.add_argument("--patience", type=int, default=700, help="the S --table is for")
    p.add_argument("--only", default=None, help="a worker for this setting's jobs alone")
    args = p.parse_args(argv)
    if args.summary:
        return summarise(connect())
    if args.table:
        return derive_table(connect(), args.setting, args.patience, args.table)
    work(args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
