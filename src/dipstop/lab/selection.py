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
    """The detected iteration (1-based) of every method for one run.

    Every recorded criterion stops by Eq. 4 (its own `values`, sub-sampled when scored
    every k iterations); CIFS at lam(true sigma) and, when the run has a blind estimate,
    as "CIFS (est. sigma)" at lam(estimated sigma). "No ES" is the last iteration, "Peak"
    the best PSNR (an oracle).

    Parameters
    ----------
    run : StoredRun
        A recorded run: series "mse", "psnr" and its criteria's; summary "pixels" (and
        "sigma_estimated").
    patience : int
        S, in iterations.
    table : dict
        The lam(sigma) table (`dipstop.lambda_table.load_table`).

    Returns
    -------
    dict
        Method label to detected iteration, in table order (`order_methods`).

    Examples
    --------
    A synthetic run: its PSNR peaks at t = 120; E_t = lam / t + (t / 100)^2 is least at
    t = (5000 lam)^(1/3); the table gives lam 250 at sigma 25 and 62.5 at sigma 40:

    >>> t = np.arange(1, 301, dtype=float)
    >>> series = {"mse": 1 / t, "jpeg_bytes": 4096 * t / 100,
    ...           "psnr": 30 - ((t - 120) / 40) ** 2, "wmv": np.abs(t - 150) + 1.0}
    >>> spec = {"sigma": 25.0, "criteria": {"cifs": {"every": 1}, "wmv": {"every": 1}}}
    >>> run = StoredRun("key", spec, {"pixels": 4096, "sigma_estimated": 40.0}, series)
    >>> table = {"entries": [{"sigma": 10.0, "lam": 1000.0}, {"sigma": 40.0, "lam": 62.5}]}
    >>> select(run, patience=20, table=table)
    {'ES-WMV': 150, 'CIFS': 108, 'CIFS (est. sigma)': 68, 'No ES': 300, 'Peak': 120}
    """
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
    """Per method: detected iteration t, PSNR and SSIM (NaN if not recorded) there.

    Parameters
    ----------
    run, patience, table
        As for `select`.

    Returns
    -------
    dict
        Method label to {"t", "psnr", "ssim"}, in table order.

    Examples
    --------
    >>> t = np.arange(1, 101, dtype=float)
    >>> series = {"mse": 1 / t, "jpeg_bytes": 4096 * t / 100,
    ...           "psnr": 30 - ((t - 40) / 10) ** 2, "ssim": 0.9 - ((t - 40) / 100) ** 2}
    >>> run = StoredRun("key", {"sigma": 25.0, "criteria": {"cifs": {"every": 1}}},
    ...                 {"pixels": 4096}, series)
    >>> table = {"entries": [{"sigma": 25.0, "lam": 12.8}]}
    >>> scores(run, patience=10, table=table)["CIFS"]
    {'t': 40, 'psnr': 30.0, 'ssim': 0.9}
    >>> scores(run, patience=10, table=table)["No ES"]["t"]
    100
    """
    ssim = run.series.get("ssim")
    return {
        method: {
            "t": t,
            "psnr": float(run.series["psnr"][t - 1]),
            "ssim": float(ssim[t - 1]) if ssim is not None else float("nan"),
        }
        for method, t in select(run, patience, table).items()
    }
