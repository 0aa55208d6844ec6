"""The golden set: what dipstop computes, recorded by commands, to check a refactor changed none.

`produce(workdir)` runs five CLI commands on tiny inputs (one CPU thread, width 8): a bench
grid, a calibration with its lam search, a denoise run with the paper's output (estimated
sigma, shipped table), the report with its Fig. 4 refit, and a denoise run with every
default but T and S (estimated sigma, the width-16 since-best table, the since-best output,
128 x 128 tiles fitted once each, every tile after the first from the first one's network,
the Wiener filter): what users get. It returns every number they produced that does
not depend on the clock: series, stops, lams, table rows, the denoised pixels, the refit's
drift. `python tests/golden/golden.py` writes them to `tests/golden/golden_<ISA>_<vendor>.npz`;
the test compares a fresh `produce` with that file. Series are matched by run (image,
sigma), not by store key, so a new key schema does not hide a changed number.

One set per CPU instruction set that PyTorch dispatches to (`torch.backends.cpu.
get_cpu_capability()`) and CPU vendor (oneDNN picks kernels by both): kernels round
differently (randn's Box-Muller and the convolutions differ in the last bits between AVX2
and AVX-512), and a fit amplifies the last bits within tens of iterations.
golden_AVX512_Intel.npz was recorded on an Intel CPU with AMX before the restructuring
(issue 10) and re-recorded there as its commits say; golden_AVX2_AMD.npz on an AMD EPYC on
2026-11-28, from code whose AVX-512 output matched the Intel set (CI of c178657), changed
since only in what it records of the machine; golden_AVX512_AMD.npz on an AMD EPYC with
AVX-512 on 2026-12-06. The default path's keys (`default/*`) were re-recorded on both AMD
sets on 2026-12-06 when the default became two width-16 fits a tile, `default/pixels` on
2026-12-07 when the default began to finish with the gated Wiener filter and again when that
filter gained its collaborative stage, and all three on 2026-12-07 when the default became
one warm fit a tile and again when the filter's pilot took in BM3D's basic estimate
(`default/pixels` once more when that estimate took BM3D's wavelet); the
Intel set lacks them until they are recorded there (`--add-missing`).

A CPU with no set of its own is checked against its vendor's AVX2 set, produced with
PyTorch and oneDNN held to AVX2 (`FORCE_AVX2`, set before torch loads, so in a child
process): on the AMD EPYC with AVX-512 that reproduces golden_AVX2_AMD.npz exactly. With no
set to compare the test fails, naming the command that records one.

    python tests/golden/golden.py                # this CPU's own set
    python tests/golden/golden.py --add-missing  # only the keys its set lacks
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import torch

from dipstop.runtime import cpu_name

HERE = Path(__file__).resolve().parent
ISA = torch.backends.cpu.get_cpu_capability()
VENDOR = next((v for v in ("Intel", "AMD") if v in cpu_name()), "other")
GOLDEN = HERE / f"golden_{ISA}_{VENDOR}.npz"
FORCE_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
DEFAULT_PATH = ("default/pixels", "default/summary", "default/tiles")


def golden_for(
    isa: str = ISA, vendor: str = VENDOR, folder: Path = HERE
) -> tuple[Path, dict[str, str]] | None:
    """The recorded set this CPU is checked against and the environment to produce it in:
    its own set, else (above AVX2) its vendor's AVX2 set under `FORCE_AVX2`, else None."""
    own = folder / f"golden_{isa}_{vendor}.npz"
    if own.is_file():
        return own, {}
    avx2 = folder / f"golden_AVX2_{vendor}.npz"
    if isa.startswith("AVX512") and avx2.is_file():
        return avx2, FORCE_AVX2
    return None
TINY = ["--width", "8", "--threads", "1", "--quiet"]
CLOCK = {"seconds", "cpu_seconds", "path", "time_split", "finished", "date", "command", "device",
         "cpu"}


def make_inputs(folder: Path) -> tuple[Path, Path, Path]:
    """Two small clean images (112 x 104), a noisy 72 x 64 image and a noisy 240 x 240 one
    (above the size where the default tiles), from scikit-image."""
    import cv2
    from skimage import data

    from dipstop.noise import add_gaussian_noise

    clean = folder / "clean"
    clean.mkdir(parents=True, exist_ok=True)
    photo = cv2.resize(data.astronaut(), (112, 104), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(clean / "a.png"), photo)
    cv2.imwrite(str(clean / "b.png"), photo[::-1].copy())
    cat = cv2.resize(data.chelsea(), (72, 64), interpolation=cv2.INTER_AREA)
    noisy = np.rint(add_gaussian_noise(cat / 255.0, 30, seed=3) * 255).astype(np.uint8)
    noisy_path = folder / "noisy.png"
    cv2.imwrite(str(noisy_path), noisy[:, :, ::-1].copy())
    big = cv2.resize(data.chelsea(), (240, 240), interpolation=cv2.INTER_AREA)
    big = np.rint(add_gaussian_noise(big / 255.0, 25, seed=4) * 255).astype(np.uint8)
    big_path = folder / "noisy_big.png"
    cv2.imwrite(str(big_path), big[:, :, ::-1].copy())
    return clean, noisy_path, big_path


def _cli(*args: str) -> None:
    from dipstop.cli import main

    code = main([str(a) for a in args])
    if code != 0:
        raise RuntimeError(f"dipstop {' '.join(map(str, args))} exited {code}")


def _store_runs(path: Path, prefix: str) -> dict[str, np.ndarray]:
    """Every run of a store as arrays named prefix/image/sigma/series (and .../summary)."""
    out: dict[str, np.ndarray] = {}
    db = sqlite3.connect(path)
    for spec, summary, blob in db.execute("SELECT spec, summary, series FROM runs"):
        spec, summary = json.loads(spec), json.loads(summary)
        name = f"{prefix}/{spec['image']}/{spec['sigma']:g}"
        with np.load(io.BytesIO(blob)) as npz:
            for k in npz.files:
                if k != "seconds":
                    out[f"{name}/series/{k}"] = npz[k]
        kept = {k: v for k, v in summary.items() if k not in CLOCK}
        out[f"{name}/summary"] = np.array(json.dumps(kept, sort_keys=True))
    db.close()
    return out


def _csv(path: Path, drop: set[str] = frozenset()) -> np.ndarray:
    rows = [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(path.open())]
    return np.array(json.dumps(rows))


def _json(path: Path, drop: set[str] = CLOCK) -> np.ndarray:
    doc = json.loads(path.read_text())
    if isinstance(doc, dict):
        doc = {k: v for k, v in doc.items() if k not in drop}
    return np.array(json.dumps(doc, sort_keys=True))


def produce(work: Path) -> dict[str, np.ndarray]:
    """Run the four golden commands in `work` and collect what they computed."""
    import cv2

    clean, noisy, big = make_inputs(work)
    bench, cal = work / "bench.sqlite", work / "cal.sqlite"
    table = work / "table.json"
    _cli("bench", "--data", clean, "--sigmas", "25,50", "--iters", "80", "--crop", "96",
         "--every", "10", "--store", bench, *TINY)  # fmt: skip
    _cli("calibrate", "--images", clean, "--n-images", "2", "--sigmas", "25,50", "--iters",
         "80", "--crop", "96", "--store", cal, "--table", table, "--output-policy", "raw",
         *TINY)  # fmt: skip
    _cli("denoise", noisy, "-o", work / "denoised.png", "-T", "60", "-S", "10",
         "--output-policy", "raw", "--report", work / "run", *TINY)  # fmt: skip
    _cli("report", bench, "--out", work / "report", "--table", table, "-S", "10", *TINY[2:])
    _cli("denoise", big, "-o", work / "default.png", "-T", "40", "-S", "10", "--report",
         work / "default", *TINY[2:])  # fmt: skip  # the default's width and fits
    out = {**_store_runs(bench, "bench"), **_store_runs(cal, "calibration")}
    doc = json.loads(table.read_text())
    out["table/entries"] = np.array(json.dumps(doc["entries"], sort_keys=True))
    out["denoise/pixels"] = cv2.imread(str(work / "denoised.png"), cv2.IMREAD_UNCHANGED)
    out["denoise/series"] = _csv(work / "run" / "series.csv")
    out["denoise/summary"] = _json(work / "run" / "summary.json")
    for name in ("table1.csv", "runs.csv"):
        out[f"report/{name}"] = _csv(work / "report" / name)
    out["report/fig4"] = _json(work / "report" / "fig4_example.json")
    out["default/pixels"] = cv2.imread(str(work / "default.png"), cv2.IMREAD_UNCHANGED)
    out["default/summary"] = _json(work / "default" / "summary.json", CLOCK | {"estimate"})
    out["default/tiles"] = _csv(work / "default" / "tiles.csv", CLOCK)
    return out


def _record(add_missing: bool) -> None:
    """Write this CPU's set (or only the keys it lacks) from a fresh `produce`."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        arrays = produce(Path(tmp))
    if add_missing and GOLDEN.is_file():
        with np.load(GOLDEN) as old:
            kept = {k: old[k] for k in old.files}
        arrays = {**arrays, **kept}
    np.savez_compressed(GOLDEN, **arrays)
    print(f"wrote {GOLDEN}: {len(arrays)} arrays", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--produce":  # the test's child process
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            np.savez_compressed(sys.argv[2], **produce(Path(tmp)))
    else:
        _record(add_missing="--add-missing" in sys.argv)
