"""Apply each method's stopping rule to a stored run's series (paper Sec. 4.2).

Every criterion goes through the same Eq. 4 rule with patience S (in iterations); BRISQUE
and NIQE, recorded every k iterations, use the rule on that sub-sampled series with
patience S / k. CIFS uses lam(sigma) from the table, at the true sigma (as the paper) and
at dipstop's blind estimate (as a user would run it). No ES is the last iteration; Peak the
best PSNR to the clean image (an oracle).
"""

from __future__ import annotations

import numpy as np

from dipstop.criteria import cifs_value
from dipstop.lambda_table import lam_for_sigma
from dipstop.stopping import detect_offline
from dipstop.store import StoredRun

METHODS = ("BRISQUE", "NIQE", "ES-WMV", "CIFS", "CIFS (est. sigma)", "No ES", "Peak")


def cifs_series(run: StoredRun, lam: float) -> np.ndarray:
    """E_t for every recorded iteration of a run, at weight lam."""
    return cifs_value(run.series["mse"], run.series["jpeg_bytes"], run.summary["pixels"], lam)


def _subsampled(values: np.ndarray, every: int, patience: int) -> int:
    """Eq. 4 on a series recorded at iterations k, 2k, ... (0-based index k-1, 2k-1, ...)."""
    sampled = values[every - 1 :: every]
    if sampled.size == 0:
        return len(values) - 1
    return int(detect_offline(sampled, max(1, patience // every)) * every + every - 1)


def select(run: StoredRun, patience: int, table: dict) -> dict[str, int]:
    """The detected iteration (1-based) of every method for one run."""
    s = run.series
    n = len(s["mse"])
    sigma = run.spec["sigma"]
    every = int(run.spec.get("every", 1))
    picks = {
        "BRISQUE": _subsampled(s["brisque"], every, patience),
        "NIQE": _subsampled(s["niqe"], every, patience),
        # WMV is NaN until its window fills; NaN counts as +inf, never a minimum
        "ES-WMV": detect_offline(s["wmv"], patience),
        "CIFS": detect_offline(cifs_series(run, lam_for_sigma(sigma, table)), patience),
        "CIFS (est. sigma)": detect_offline(
            cifs_series(run, lam_for_sigma(run.summary["sigma_estimated"], table)), patience
        ),
        "No ES": n - 1,
        "Peak": int(np.nanargmax(s["psnr"])),
    }
    return {k: v + 1 for k, v in picks.items()}


def scores(run: StoredRun, patience: int, table: dict) -> dict[str, dict[str, float]]:
    """Per method: detected iteration t, PSNR and SSIM of the output there."""
    out = {}
    for method, t in select(run, patience, table).items():
        out[method] = {
            "t": t,
            "psnr": float(run.series["psnr"][t - 1]),
            "ssim": float(run.series["ssim"][t - 1]),
        }
    return out
