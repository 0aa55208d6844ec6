"""Apply each method's stopping rule to a stored run's series (paper Sec. 4.2).

Every criterion the run recorded (looked up in the criterion registry) goes through the same
Eq. 4 rule with patience S (in iterations); a criterion recorded every k iterations uses the
rule on that sub-sampled series with patience S / k. CIFS uses lam(sigma) from the table, at
the true sigma (as the paper) and, as "CIFS (est. sigma)", at dipstop's blind estimate (as a
user would run it). No ES is the last iteration; Peak the best PSNR to the clean image (an
oracle).
"""

from __future__ import annotations

import numpy as np

from dipstop.criteria import REGISTRY, Context
from dipstop.lab.store import StoredRun
from dipstop.lambda_table import lam_for_sigma
from dipstop.stopping import detect_every, detect_offline

PAPER_ORDER = ("BRISQUE", "NIQE", "ES-WMV", "CIFS")  # the paper's Table 1 columns
EST_SIGMA = "CIFS (est. sigma)"
BASELINES = ("No ES", "Peak")


def order_methods(labels: set[str] | list[str]) -> list[str]:
    """Methods in table order: the paper's criteria, any others, CIFS (est. sigma), No ES, Peak.

    >>> order_methods({"Peak", "CIFS", "Mine", "BRISQUE", "No ES"})
    ['BRISQUE', 'CIFS', 'Mine', 'No ES', 'Peak']
    """
    tail = (EST_SIGMA, *BASELINES)
    head = [m for m in PAPER_ORDER if m in labels]
    others = sorted(m for m in labels if m not in PAPER_ORDER and m not in tail)
    return head + others + [m for m in tail if m in labels]


def select(run: StoredRun, patience: int, table: dict) -> dict[str, int]:
    """The detected iteration (1-based) of every method for one run."""
    s = run.series
    n = len(s["mse"])
    pixels, sigma = run.summary["pixels"], run.spec["sigma"]
    picks = {}
    for name, settings in run.spec["criteria"].items():
        cls = REGISTRY[name]
        lam = lam_for_sigma(sigma, table) if name == "cifs" else None
        values = np.asarray(cls.values(s, Context(pixels, lam)), dtype=float)
        picks[cls.label] = detect_every(values, int(settings.get("every", 1)), patience)
        if name == "cifs" and "sigma_estimated" in run.summary:
            lam_est = lam_for_sigma(run.summary["sigma_estimated"], table)
            picks[EST_SIGMA] = detect_offline(cls.values(s, Context(pixels, lam_est)), patience)
    picks["No ES"] = n - 1
    picks["Peak"] = int(np.nanargmax(s["psnr"]))
    return {k: picks[k] + 1 for k in order_methods(list(picks))}


def scores(run: StoredRun, patience: int, table: dict) -> dict[str, dict[str, float]]:
    """Per method: detected iteration t, PSNR and SSIM (NaN if not recorded) there."""
    ssim = run.series.get("ssim")
    return {
        method: {
            "t": t,
            "psnr": float(run.series["psnr"][t - 1]),
            "ssim": float(ssim[t - 1]) if ssim is not None else float("nan"),
        }
        for method, t in select(run, patience, table).items()
    }
