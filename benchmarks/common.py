"""Shared helpers for benchmark scripts: machine description, result saving, tiled records."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from dipstop.runtime import cpu_name

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# every benchmark's JSON record; results/MANIFEST.md describes them and the stores beside
RESULTS = ROOT / "results" / "benchmarks"
SHARED = Path(os.environ.get("DIPSTOP_SHARED", ROOT.parent / "shared"))


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def save(name: str, payload: dict) -> Path:
    """Write results/benchmarks/NAME.json with the machine description added."""
    out = RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), **payload}, indent=1))
    print(f"saved {out.relative_to(ROOT)}")
    return out


# model files for BRISQUE/NIQE are read from ../shared/models unless the caller set a path
os.environ.setdefault("DIPSTOP_MODELS", str(SHARED / "models"))


def tiled_rows(path: str) -> dict[tuple[str, float, int], tuple[float, int]]:
    """(image, sigma, pixels) -> (PSNR, pixel-iterations fitted) of the tiled default, from a
    tiling.py JSON (its tiles' iterations times the tile's pixels)."""
    record = json.loads(Path(path).read_text())
    tile = record["settings"]["tile"]
    return {(r["image"], r["sigma"], r["pixels"][0] * r["pixels"][1]):
            (r["tiled"]["psnr"], r["tiled"]["iterations_run"] * tile * tile)
            for r in record["rows"]}  # fmt: skip


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (nan where undefined: no value, or one).

    >>> mean_se([1.0, 2.0, 3.0]), mean_se([])
    ((2.0, 0.5773502691896258), (nan, nan))
    """
    if not len(values):
        return float("nan"), float("nan")
    se = np.std(values, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.nan
    return float(np.mean(values)), float(se)
