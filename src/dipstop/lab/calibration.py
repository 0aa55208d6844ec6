"""Lambda calibration (paper Sec. 3.2): record DIP runs on clean images, then search lambda.

Recording fits DIP to clean training images with synthetic Gaussian noise (the same kind of
run as the bench records, `dipstop.lab.runs`), storing per iteration the MSE to the noisy
image, the JPEG size, PSNR to the clean image and the other criteria and averages. The search
then picks, per sigma, the lam maximising the mean PSNR at t_hat = argmin_t E_t(lam), with
E_t the CIFS criterion's values: cheap, since it only reads the stored series. lam is
dipstop's size-invariant weight (the paper's lambda divided by H W; MSE on [0, 1]).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dipstop.criteria import CifsCriterion, Context
from dipstop.errors import DipstopError
from dipstop.lab.executor import run_grid
from dipstop.lab.rules import Rule, best_lam, evaluate, search_lam
from dipstop.lab.runs import RunSpec, calibration_criteria, grid
from dipstop.lab.store import ResultStore
from dipstop.lambda_table import write_table
from dipstop.protocols import Protocol
from dipstop.runtime import Switches
from dipstop.stopping import detect_offline

LAM_GRID = np.logspace(-1, 6, 561)  # 80 points per decade


def specs(
    images: Sequence[Path],
    sigmas: Iterable[float],
    protocol: Protocol,
    seeds: Iterable[int] = (0,),
    precision: str = "fp32",
) -> list[RunSpec]:
    """The calibration runs of these images: CIFS and ES-WMV, the running averages, no SSIM.

    Parameters
    ----------
    images : sequence of Path
        Clean training images, all in one folder.
    sigmas : iterable of float
        Noise levels, 0-255 scale.
    protocol : Protocol
    seeds : iterable of int
    precision : str
        "fp32" or "bf16" (`dipstop.lab.runs.RunSpec.precision`).

    Returns
    -------
    list of RunSpec
        Image-major, as `dipstop.lab.runs.grid` orders them.

    Raises
    ------
    DipstopError
        If no image is given or the images are in several folders.

    Examples
    --------
    >>> import tempfile
    >>> from dipstop.imageio import write_image
    >>> from dipstop.protocols import PROTOCOLS
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_image(folder / "a.png", np.zeros((64, 64, 3), np.uint8))
    >>> runs = specs([folder / "a.png"], [15, 25], PROTOCOLS["cpu"])
    >>> [r.sigma for r in runs], sorted(runs[0].criteria_settings), runs[0].ssim_of
    ([15.0, 25.0], ['cifs', 'wmv'], ())
    """
    if not images:
        raise DipstopError("no calibration images given; pass a folder with --data")
    folders = {p.parent for p in images}
    if len(folders) != 1:
        raise DipstopError("calibration images must come from one folder; pass it with --data")
    return grid(
        folders.pop(),
        sigmas,
        protocol,
        seeds,
        [p.name for p in images],
        criteria=calibration_criteria(),
        ssim_of=(),
        precision=precision,
    )


def record(
    images: Sequence[Path],
    sigmas: Iterable[float],
    protocol: Protocol,
    store: ResultStore,
    seeds: Iterable[int] = (0,),
    device: str | None = None,
    log: Callable[[str], None] = print,
    use_ray: bool = False,
    ray_address: str | None = None,
    switches: Switches | None = None,
) -> int:
    """Record every (image, sigma, seed) not yet in the store; returns how many were run.

    Image-major order, so an interrupted recording covers every sigma evenly. Runs go through
    the lab's executor: in-process, or as Ray tasks with `use_ray`.

    Parameters
    ----------
    images, sigmas, protocol, seeds
        The runs, as for `specs`.
    store : ResultStore
        Where the runs go; runs already there are skipped.
    device : str, optional
        Where to fit.
    log : callable
        Gets one line per event.
    use_ray, ray_address
        Run as Ray tasks (`dipstop.lab.executor.run_grid`).
    switches : Switches, optional
        Engine switches.

    Returns
    -------
    int
        How many runs were recorded now.

    Examples
    --------
    >>> import tempfile
    >>> from dipstop.imageio import write_image
    >>> from dipstop.protocols import Protocol
    >>> folder = Path(tempfile.mkdtemp())
    >>> pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> write_image(folder / "a.png", pixels)
    >>> tiny = Protocol("tiny", width=8, max_iters=3, patience=2, crop=None)
    >>> store = ResultStore(folder / "calibration.sqlite")
    >>> record([folder / "a.png"], [25], tiny, store, log=lambda s: None)  # doctest: +SKIP
    1
    >>> run = next(store.runs())  # doctest: +SKIP
    >>> run.spec["sigma"], len(run.series["jpeg_bytes"]), len(run.series["psnr"])  # doctest: +SKIP
    (25.0, 3, 3)
    >>> record([folder / "a.png"], [25], tiny, store, log=lambda s: None)  # doctest: +SKIP
    0
    >>> store.close()  # doctest: +SKIP
    """
    todo = specs(images, sigmas, protocol, seeds)
    return run_grid(todo, store, device, ray_address, use_ray, log, switches=switches)


@dataclass
class LambdaChoice:
    """The lam chosen for one sigma, with what it achieves on the recorded runs.

    One entry of a lam(sigma) table (`write_lambda_table`), plus the mean-PSNR curve over
    `LAM_GRID` that the choice was read from.
    """

    sigma: float
    lam: float
    mean_psnr: float  # mean PSNR at argmin_t E_t(lam)
    mean_peak_psnr: float  # the oracle's mean, for comparison
    n_runs: int
    curve: np.ndarray  # mean PSNR for every lam in the grid
    images: list[str]  # the recorded images behind this choice
    mean_psnr_eq4: float | None = None  # mean PSNR where the Eq. 4 rule stops at this lam
    mean_iterations: float | None = None  # mean iterations the Eq. 4 rule runs at this lam
    pixels: int | None = None  # the runs' image size (the median, if they differ)


def selected_iterations(run: CalibrationRun, lams: np.ndarray) -> np.ndarray:
    """argmin_t E_t(lam) of the CIFS criterion for every lam: one index per lam (first on ties)."""
    e = CifsCriterion().values(run.series, Context(run.pixels, lam=lams[:, None]))
    return np.argmin(e, axis=1)


@dataclass
class CalibrationRun:
    """A recorded run's series ("mse", "jpeg_bytes", "psnr") and its pixel count.

    What `search_lambda` reads; `calibrate_from_store` makes them from stored runs.
    """

    series: dict[str, np.ndarray]
    pixels: int
    image: str = ""


def search_lambda(
    runs: Sequence[CalibrationRun], lams: np.ndarray = LAM_GRID
) -> tuple[float, np.ndarray]:
    """The lam maximising mean PSNR at t_hat over recorded runs, and the mean-PSNR curve.

    Among equally good lams it takes the middle of the widest best plateau (in log lam),
    the choice least sensitive to a slightly wrong sigma. t_hat = argmin_t E_t(lam) over
    all recorded iterations (paper Sec. 3.2), E_t the CIFS values.

    Parameters
    ----------
    runs : sequence of CalibrationRun
        Recorded runs at one sigma.
    lams : ndarray
        Candidate lams; `LAM_GRID` (1e-1 to 1e6, 80 points per decade) by default.

    Returns
    -------
    lam : float
        The chosen lam.
    curve : ndarray
        Mean PSNR at t_hat for every candidate lam.

    Raises
    ------
    DipstopError
        If `runs` is empty.

    Examples
    --------
    E_t = lam / t + (t / 10)^2 is least at t = (50 lam)^(1/3), so lam = 20 picks t = 10,
    this run's PSNR peak:

    >>> t = np.arange(1, 101, dtype=float)
    >>> series = {"mse": 1 / t, "jpeg_bytes": t, "psnr": 40 - np.abs(t - 30.0)}
    >>> lam, curve = search_lambda([CalibrationRun(series, pixels=64)])
    >>> float(curve.max())
    40.0
    >>> series = {"mse": 1 / t, "jpeg_bytes": t * 6.4, "psnr": 40 - np.abs(t - 10.0)}
    >>> lam, curve = search_lambda([CalibrationRun(series, pixels=64)])
    >>> 15 < lam < 25
    True
    """
    if not runs:
        raise DipstopError("no recorded runs to calibrate on; run `dipstop calibrate` first")
    total = np.zeros(lams.size)
    for run in runs:
        idx = selected_iterations(run, lams)
        total += run.series["psnr"][idx]
    curve = total / len(runs)
    return best_lam(curve, lams, ties="middle"), curve


def calibrate_from_store(
    store: ResultStore,
    width: int,
    crop: int | None,
    iters: int | None = None,
    patience: int | None = None,
    policy: str = "raw",
    smooth: float = 1.0,
    images: Collection[str] | None = None,
) -> list[LambdaChoice]:
    """One LambdaChoice per sigma from the store's runs at this width and crop.

    For the paper's "raw" output, lam maximises the mean PSNR at argmin_t E_t over all
    recorded iterations (Sec. 3.2). For another output policy (`dipstop.policies`), the image
    depends on where the online rule stops, so lam maximises the mean PSNR of the image the
    run returns when Eq. 4 with patience S stops it (`dipstop.lab.rules.search_lam`); the
    runs must hold the policy's series.

    `iters` truncates the series (a calibration for a smaller T than was recorded); runs
    recorded for fewer iterations are left out. A run recorded twice (the same image, sigma
    and seed, e.g. once with fewer series) counts once, the newest. With `patience`, each
    choice also reports the mean PSNR where the online Eq. 4 rule stops at that lam, and how
    many iterations it runs on average (t* + S, or T when it never fires).

    Parameters
    ----------
    store : ResultStore
        Recorded runs (`record`); their series need "mse", "jpeg_bytes" and "psnr".
    width : int
        Network width the runs must have been recorded with.
    crop : int or None
        Crop side the runs must have been recorded with.
    iters : int, optional
        Calibrate for this T (the series' first `iters` iterations).
    patience : int, optional
        S, to report `mean_psnr_eq4` (required for a policy other than "raw").
    policy : str
        The output policy the lams are for.
    smooth : float
        For a policy other than "raw": pick the lam best on average over [lam / smooth,
        lam * smooth] (`dipstop.lab.rules.search_lam`); 1 for the plain best.
    images : collection of str, optional
        Use only the runs of these image file names (to compare sizes on the same images).

    Returns
    -------
    list of LambdaChoice
        One per recorded sigma, in increasing sigma; empty when no run matches.

    Examples
    --------
    Two runs at sigma 25 with PSNR peaks at t = 120 and 100; E_t = lam / t + (t / 100)^2:

    >>> import tempfile
    >>> store = ResultStore(Path(tempfile.mkdtemp()) / "calibration.sqlite")
    >>> t = np.arange(1, 301, dtype=float)
    >>> for name, peak in (("a.png", 120), ("b.png", 100)):
    ...     series = {"mse": 1 / t, "jpeg_bytes": 4096 * t / 100,
    ...               "psnr": 30 - ((t - peak) / 40) ** 2}
    ...     spec = {"image": name, "image_sha256": name, "sigma": 25.0, "seed": 0,
    ...             "protocol": {"width": 8, "crop": None, "max_iters": 300}}
    ...     _ = store.put(spec, series, {"pixels": 4096})
    >>> (choice,) = calibrate_from_store(store, width=8, crop=None, patience=20)
    >>> choice.sigma, choice.n_runs, choice.images, choice.mean_peak_psnr
    (25.0, 2, ['a.png', 'b.png'], 30.0)
    >>> round(choice.lam), round(choice.mean_psnr, 4), round(choice.mean_psnr_eq4, 4)
    (266, 29.9375, 29.9375)
    >>> choice.mean_iterations  # both stop at t* = 110 and run to t* + S
    130.0
    >>> calibrate_from_store(store, width=8, crop=None, patience=20, images={"b.png"})[0].images
    ['b.png']
    >>> calibrate_from_store(store, width=64, crop=None)
    []
    >>> store.close()
    """
    latest: dict[tuple, CalibrationRun] = {}
    for run in store.runs():
        proto = run.spec["protocol"]
        if proto["width"] != width or proto["crop"] != crop:
            continue
        if images is not None and run.spec["image"] not in images:
            continue
        if iters and proto["max_iters"] < iters:
            continue  # recorded for a shorter T: cannot stand in for this one
        series = {k: v[:iters] if iters else v for k, v in run.series.items()}
        key = (run.spec["image_sha256"], run.spec["sigma"], run.spec["seed"])
        latest[key] = CalibrationRun(series, run.summary["pixels"], run.spec["image"])
    groups: dict[float, list[CalibrationRun]] = {}
    for (_, sigma, _), run in latest.items():
        groups.setdefault(sigma, []).append(run)
    if policy != "raw":
        choices = [
            _policy_choice(sigma, groups[sigma], policy, patience, smooth)
            for sigma in sorted(groups)
        ]
        return [_sized(c, groups[c.sigma]) for c in choices]
    choices = []
    cifs = CifsCriterion()
    for sigma in sorted(groups):
        runs = groups[sigma]
        lam, curve = search_lambda(runs)
        peak = float(np.mean([r.series["psnr"].max() for r in runs]))
        names = sorted(r.image for r in runs)
        choice = LambdaChoice(sigma, lam, float(curve.max()), peak, len(runs), curve, names)
        if patience:
            stops = [
                detect_offline(cifs.values(r.series, Context(r.pixels, lam)), patience)
                for r in runs
            ]
            pairs = list(zip(runs, stops, strict=True))
            choice.mean_psnr_eq4 = float(np.mean([r.series["psnr"][i] for r, i in pairs]))
            # online, the rule ends the run at t* + S, or at T when it never fires
            ran = [min(i + 1 + patience, r.series["psnr"].size) for r, i in pairs]
            choice.mean_iterations = float(np.mean(ran))
        choices.append(_sized(choice, runs))
    return choices


def _sized(choice: LambdaChoice, runs: list[CalibrationRun]) -> LambdaChoice:
    """The choice with the size of the images behind it (for tables at several sizes)."""
    choice.pixels = int(np.median([r.pixels for r in runs]))
    return choice


def _policy_choice(
    sigma: float, runs: list[CalibrationRun], policy: str, patience: int | None, smooth: float
) -> LambdaChoice:
    """The lam for one sigma under an output policy: the best mean PSNR of the returned image
    when Eq. 4 stops the run online (every entry "at the Eq. 4 stop")."""
    if not patience:
        raise DipstopError(f"calibrating for output policy {policy!r} needs the patience S")
    iters = min(r.series["mse"].size for r in runs)
    if policy == "since-best" and iters <= patience:
        raise DipstopError(
            f"since-best averages the last S + 1 outputs: T ({iters}) must be above S "
            f"({patience}); lower -S or raise -T"
        )
    rule = Rule("cifs", policy, patience)
    data = [(r.series, r.pixels) for r in runs]
    lam, curve = search_lam(rule, data, LAM_GRID, smooth)
    at = int(np.argmin(np.abs(LAM_GRID - lam)))
    if not np.isfinite(curve).any():
        raise DipstopError(
            f"the runs at sigma {sigma:g} lack the series output policy {policy!r} needs; "
            "record them again with this dipstop"
        )
    outcomes = [evaluate(rule, s, px, lam) for s, px in data]
    best = float(curve[at])  # the mean PSNR at the chosen lam
    return LambdaChoice(
        sigma,
        lam,
        best,
        float(np.mean([r.series["psnr"].max() for r in runs])),
        len(runs),
        curve,
        sorted(r.image for r in runs),
        mean_psnr_eq4=best,
        mean_iterations=float(np.mean([o.t_end for o in outcomes])),
    )


def write_lambda_table(
    path: str | Path,
    choices: Sequence[LambdaChoice],
    protocol: Protocol,
    command: str,
    planned: Sequence[str] = (),
    folder: str | None = None,
    policy: str = "raw",
    smooth: float = 1.0,
) -> None:
    """Write the lam(sigma) table of these choices, with its provenance: the command that
    made it, the date, the images behind every entry and the selection rule.

    Parameters
    ----------
    path : str or Path
        The table's JSON file (replaced if it exists).
    choices : sequence of LambdaChoice
        One per sigma (`calibrate_from_store`).
    protocol : Protocol
        The protocol the runs were recorded under.
    command : str
        The command line that made the table.
    planned : sequence of str
        The images the calibration meant to use (to tell a partial one).
    folder : str, optional
        The image folder's name.
    policy : str
        The output policy the lams were chosen for (`calibrate_from_store`).
    smooth : float
        The smoothing factor of that search (recorded when above 1).

    Examples
    --------
    >>> import tempfile
    >>> from dipstop.lambda_table import lam_for_sigma, load_table
    >>> from dipstop.protocols import PROTOCOLS
    >>> choices = [
    ...     LambdaChoice(15.0, 100.0, 31.0, 31.5, 8, np.zeros(0), ["a.png"]),
    ...     LambdaChoice(35.0, 40.0, 27.0, 27.4, 8, np.zeros(0), ["a.png"]),
    ... ]
    >>> path = Path(tempfile.mkdtemp()) / "table.json"
    >>> write_lambda_table(path, choices, PROTOCOLS["cpu"], "dipstop calibrate ...")
    >>> table = load_table(path)
    >>> table["provenance"]["command"], table["protocol"]["name"]
    ('dipstop calibrate ...', 'cpu')
    >>> round(lam_for_sigma(25, table), 2)
    63.25
    """
    import datetime

    entries = [
        {
            "sigma": c.sigma,
            "lam": c.lam,
            "mean_psnr": round(c.mean_psnr, 4),
            "mean_psnr_eq4": None if c.mean_psnr_eq4 is None else round(c.mean_psnr_eq4, 4),
            "mean_peak_psnr": round(c.mean_peak_psnr, 4),
            "n_runs": c.n_runs,
            "images": c.images,
            **({} if c.mean_iterations is None else {"mean_iterations": c.mean_iterations}),
            **({} if c.pixels is None else {"pixels": c.pixels}),
        }
        for c in choices
    ]
    sizes = sorted({c.pixels for c in choices if c.pixels})
    provenance = {
        "command": command,
        "date": datetime.date.today().isoformat(),
        "images": sorted({name for c in choices for name in c.images}),
        "planned_images": list(planned),
        "image_folder": folder,
        "sigmas": sorted({c.sigma for c in choices}),
        **({"sizes": sizes} if len(sizes) > 1 else {}),
        "iters": protocol.max_iters,
        "output": policy,
        "selection": "argmin_t E_t over all recorded iterations (paper Sec. 3.2)"
        if policy == "raw"
        else f"the image output policy {policy!r} returns where Eq. 4 with S = "
        f"{protocol.patience} stops the run online"
        + (f", best on average over [lam / {smooth:g}, lam * {smooth:g}]" if smooth > 1 else ""),
    }
    write_table(path, entries, protocol.as_dict(), provenance)
