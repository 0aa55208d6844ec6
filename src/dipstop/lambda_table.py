"""The lam(sigma) table shipped with dipstop, and lookup by (estimated) noise level.

lam is size-invariant: E_t = lam * MSE_t + (JPEG bytes per pixel)^2 with MSE on the [0, 1]
scale; the paper's lambda for an H x W image is lam * H * W. Between calibrated sigmas,
log(lam) is interpolated linearly; outside, the nearest end is used.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

from dipstop.errors import DipstopError

TABLE_NAME = "lambda_table.json"


def load_table(path: str | Path | None = None) -> dict:
    """The shipped table (or one written by `dipstop calibrate --table PATH`)."""
    try:
        if path is None:
            text = resources.files("dipstop.data").joinpath(TABLE_NAME).read_text()
        else:
            text = Path(path).read_text()
        table = json.loads(text)
        table["entries"] = sorted(table["entries"], key=lambda e: e["sigma"])
    except (OSError, ValueError, KeyError) as exc:
        where = path or f"the package's {TABLE_NAME}"
        raise DipstopError(
            f"cannot read lambda table {where} ({exc}); rerun dipstop calibrate"
        ) from exc
    if not table["entries"]:
        raise DipstopError("the lambda table is empty; rerun dipstop calibrate")
    return table


def lam_for_sigma(sigma: float, table: dict | None = None) -> float:
    """Interpolated lam for a noise level (0-255 scale).

    >>> t = {"entries": [{"sigma": 10, "lam": 10.0}, {"sigma": 30, "lam": 1000.0}]}
    >>> round(lam_for_sigma(20, t), 6)
    100.0
    >>> round(lam_for_sigma(99, t), 6)
    1000.0
    """
    table = table or load_table()
    sigmas = np.array([e["sigma"] for e in table["entries"]], dtype=float)
    logs = np.log([e["lam"] for e in table["entries"]])
    return float(np.exp(np.interp(sigma, sigmas, logs)))


def write_table(path: str | Path, entries: list[dict], protocol: dict, provenance: dict) -> None:
    """Write a table: entries [{sigma, lam, mean_psnr, mean_peak_psnr, n_runs}] + provenance."""
    doc = {
        "units": "lam weighs MSE (pixels in [0,1]) against (JPEG q95 bytes per pixel)^2; "
        "the paper's lambda = lam * H * W",
        "protocol": protocol,
        "provenance": provenance,
        "entries": entries,
    }
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")
