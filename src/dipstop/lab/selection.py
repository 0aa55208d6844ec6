"""Apply each method's stopping rule to a stored run's series (paper Sec. 4.2).

Every criterion the run recorded (looked up in the criterion registry) goes through the same
Eq. 4 rule with patience S (in iterations); a criterion recorded every k iterations uses the
rule on that sub-sampled series with patience S / k. CIFS uses lam(sigma) from the table, at
the true sigma (as the paper) and, as "CIFS (est. sigma)", at dipstop's blind estimate (as a
user would run it). No ES is the last iteration; Peak the best PSNR to the clean image (an
oracle). With dipstop's own lam table, two more columns: "dipstop", the default output
policy's image where its rule stops (lam at the estimated sigma, as a user runs it), and
"Peak (average)", the best PSNR that policy's average reached anywhere in the run (its oracle).
"""

from __future__ import annotations

import numpy as np

from dipstop.criteria import REGISTRY, Context
from dipstop.lab.rules import Rule, evaluate
from dipstop.lab.store import StoredRun
from dipstop.lambda_table import table_output
from dipstop.policies import make_policy
from dipstop.stopping import detect_every, detect_offline

PAPER_ORDER = ("BRISQUE", "NIQE", "ES-WMV", "CIFS")  # the paper's Table 1 columns
EST_SIGMA = "CIFS (est. sigma)"
DIPSTOP = "dipstop"  # the default output policy, lam at the estimated sigma
BASELINES = ("No ES", "Peak")
AVERAGE_PEAK = "Peak (average)"  # the oracle of the default policy's average


def order_methods(labels: set[str] | list[str]) -> list[str]:
    """Methods in table order: the paper's criteria, any others, CIFS (est. sigma), dipstop,
    No ES, Peak, Peak (average).

    >>> order_methods({"Peak", "CIFS", "Mine", "BRISQUE", "No ES", "dipstop"})
    ['BRISQUE', 'CIFS', 'Mine', 'dipstop', 'No ES', 'Peak']
    """
    tail = (EST_SIGMA, DIPSTOP, *BASELINES, AVERAGE_PEAK)
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
        lam = run.table_lam(table, sigma) if name == "cifs" else None
        values = np.asarray(cls.values(s, Context(pixels, lam)), dtype=float)
        picks[cls.label] = detect_every(values, int(settings.get("every", 1)), patience)
        if name == "cifs" and "sigma_estimated" in run.summary:
            lam_est = run.table_lam(table)
            picks[EST_SIGMA] = detect_offline(cls.values(s, Context(pixels, lam_est)), patience)
    picks["No ES"] = n - 1
    picks["Peak"] = int(np.nanargmax(s["psnr"]))
    return {k: picks[k] + 1 for k in order_methods(list(picks))}


def scores(
    run: StoredRun, patience: int, table: dict, own: dict | None = None
) -> dict[str, dict[str, float]]:
    """Per method: detected iteration t, PSNR and SSIM (NaN if not recorded) there.

    Parameters
    ----------
    run, patience, table
        As for `select`.
    own : dict, optional
        dipstop's lam table for its output policy (`table_output` says which): adds the
        "dipstop" and "Peak (average)" columns when the run recorded that policy's series.

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
    out = {
        method: {
            "t": t,
            "psnr": float(run.series["psnr"][t - 1]),
            "ssim": float(ssim[t - 1]) if ssim is not None else float("nan"),
        }
        for method, t in select(run, patience, table).items()
    }
    if own is not None:
        out.update(policy_scores(run, patience, own))
    return {k: out[k] for k in order_methods(list(out))}


def policy_scores(run: StoredRun, patience: int, own: dict) -> dict[str, dict[str, float]]:
    """The "dipstop" and "Peak (average)" columns of one run, or {} when it did not record
    the series of the table's output policy.

    "dipstop" stops where CIFS with lam(estimated sigma) stops by Eq. 4 (t is t*) and scores
    the policy's image; "Peak (average)" is the best PSNR of the policy's average over the
    run (for "since-best", the mean of S + 1 outputs ending at t).

    Examples
    --------
    >>> t = np.arange(1, 101, dtype=float)
    >>> series = {"mse": 1 / t, "jpeg_bytes": 4096 * t / 100, "psnr": 30 - ((t - 40) / 10) ** 2,
    ...           "psnr_box11": 31 - ((t - 45) / 10) ** 2}
    >>> run = StoredRun("key", {"sigma": 25.0}, {"pixels": 4096, "sigma_estimated": 25.0},
    ...                 series)
    >>> own = {"entries": [{"sigma": 25.0, "lam": 12.8}], "provenance": {"output": "since-best"}}
    >>> sc = policy_scores(run, 10, own)  # E_t is least at t = 40: the mean of y_40 .. y_50
    >>> sc["dipstop"]["t"], sc["dipstop"]["psnr"], sc["Peak (average)"]
    (40, 30.75, {'t': 45, 'psnr': 31.0, 'ssim': nan})
    """
    policy = make_policy(table_output(own))
    policy.begin(len(run.series["mse"]), patience)
    rule = Rule("cifs", policy.name, patience)
    outcome = evaluate(rule, run.series, run.summary["pixels"], run.table_lam(own))
    average = f"psnr_{policy.average_name}" if policy.average_name else "psnr"
    if outcome.psnr is None or average not in run.series:
        return {}
    best = int(np.nanargmax(run.series[average]))
    ssim = run.series.get("ssim" + average[4:])  # "psnr_box501" -> "ssim_box501"
    end = outcome.t_end if policy.name == "since-best" else None  # where its image is read

    def ssim_at(t: int | None) -> float:
        return float("nan") if ssim is None or t is None else float(ssim[t - 1])

    return {
        DIPSTOP: {"t": outcome.t_star, "psnr": outcome.psnr, "ssim": ssim_at(end)},
        AVERAGE_PEAK: {
            "t": best + 1,
            "psnr": float(run.series[average][best]),
            "ssim": ssim_at(best + 1),
        },
    }
