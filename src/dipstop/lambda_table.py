"""The lam(sigma) table shipped with dipstop, and lookup by (estimated) noise level.

E_t = lam * MSE_t + (JPEG bytes per pixel)^2 with MSE on the [0, 1] scale; the paper's
lambda for an H x W image is lam * H * W. Per-pixel units make lam nearly independent of the
image size, not exactly (docs/calibration.md), so a table may be calibrated at several sizes:
its entries then carry "pixels". Between calibrated sigmas, log(lam) is interpolated
linearly; between calibrated sizes, its ratio to the size calibrated at the most sigmas,
linearly in log(pixels); outside, the nearest end is used.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

import numpy as np

from dipstop.errors import DipstopError
from dipstop.validate import check_table, number

TABLE_NAME = "lambda_table.json"  # the paper's rule: the raw output at t*
# the tables shipped per output policy (`dipstop.policies`); others use the raw one's lams
SHIPPED = {"raw": TABLE_NAME, "since-best": "lambda_table_since-best.json"}
# the tables shipped for a network width other than the protocol's (the quality presets')
SHIPPED_FOR_WIDTH = {("since-best", 16): "lambda_table_since-best_w16.json"}
MAX_TABLE_BYTES = 16 * 2**20  # tables are a few KB
TILE_ABOVE = 1_000_000  # the most pixels fitted whole with an explicit lam (memory bound)


def load_table(
    path: str | Path | None = None, output: str = "raw", width: int | None = None
) -> dict:
    """Load a lam(sigma) table: a shipped one, or one written by `dipstop calibrate -o`.

    A table that is not valid JSON, repeats a key in an object, is not an object with
    non-empty "entries", or whose entries lack a finite positive sigma and lam, or repeat a
    sigma, or any of whose fields (entries, protocol, provenance) has the wrong type, is
    refused here, before any fitting (`dipstop.validate.check_table`).

    Parameters
    ----------
    path : str or Path, optional
        The table's JSON file; None for the table shipped with dipstop for `output`.
    output : str
        The output policy whose shipped table `path=None` loads (`SHIPPED`; a policy without
        its own table gets the paper rule's, "raw").
    width : int, optional
        The network width of the fit: a shipped table for this output and width
        (`SHIPPED_FOR_WIDTH`) is taken when there is one.

    Returns
    -------
    dict
        The table, entries sorted by sigma, with its "protocol" (the settings it was
        calibrated under) and provenance.

    Raises
    ------
    DipstopError
        If the file cannot be read or is not a valid table.

    Examples
    --------
    >>> table = load_table()
    >>> sigmas = [e["sigma"] for e in table["entries"]]
    >>> sigmas == sorted(sigmas), table["protocol"]["name"], table_output(table)
    (True, 'cpu', 'raw')
    >>> table_output(load_table(output="since-best"))
    'since-best'
    >>> load_table("no_such_table.json")
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: lambda table no_such_table.json is not a file; give the \
table's JSON file
    """
    name = SHIPPED_FOR_WIDTH.get((output, width)) or SHIPPED.get(output, TABLE_NAME)
    where = str(path) if path is not None else f"the package's {name}"
    try:
        if path is None:
            text = resources.files("dipstop.data").joinpath(name).read_text()
        else:
            if not Path(path).is_file():
                what = "a folder" if Path(path).is_dir() else "not a file"
                raise DipstopError(f"lambda table {where} is {what}; give the table's JSON file")
            if Path(path).stat().st_size > MAX_TABLE_BYTES:
                raise DipstopError(
                    f"lambda table {where} is over {MAX_TABLE_BYTES >> 20} MiB, not a table; "
                    "check the path"
                )
            text = Path(path).read_text()
        doc = json.loads(text, object_pairs_hook=functools.partial(_no_repeats, where))
    except (OSError, ValueError, RecursionError) as exc:
        why = " ".join(str(getattr(exc, "strerror", None) or exc).split())[:120]
        raise DipstopError(
            f"cannot read lambda table {where} ({why}); check the path, or rerun dipstop "
            "calibrate --table"
        ) from exc
    return check_table(doc, where)


def _no_repeats(where: str, pairs: list[tuple[str, object]]) -> dict:
    """A JSON object of a table as a dict; a key given twice (JSON keeps the last one
    silently) is refused."""
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise DipstopError(
            f"lambda table {where} gives {twice!r} twice in one object; keep one, or rerun "
            "dipstop calibrate --table"
        )
    return dict(pairs)


def table_output(table: dict) -> str:
    """The output policy a table's lams were chosen for ("raw" for tables that do not say).

    >>> table_output({"entries": [], "provenance": {"output": "since-best"}})
    'since-best'
    """
    return str((table.get("provenance") or {}).get("output", "raw"))


def table_sizes(table: dict) -> list[int]:
    """The image sizes (pixel counts) a table was calibrated at, smallest first; [] for a
    table whose entries do not say (one size: its protocol's crop).

    >>> table_sizes({"entries": [{"sigma": 5, "lam": 1, "pixels": 900},
    ...                          {"sigma": 5, "lam": 2, "pixels": 400}]})
    [400, 900]
    """
    return sorted({int(e["pixels"]) for e in table["entries"] if "pixels" in e})


def lam_for_sigma(sigma: float, table: dict | None = None, pixels: int | None = None) -> float:
    """The CIFS weight lam for a noise level (and image size), interpolated in the table.

    log(lam) is interpolated linearly between calibrated sigmas; outside them, the nearest
    end's lam is used. A table calibrated at several sizes takes lam(sigma) from the size
    calibrated at the most sigmas (the base), times each size's ratio to it, interpolated
    in sigma between that size's sigmas and held beyond them (so a size calibrated at fewer
    sigmas follows the base's sigma dependence); the ratios are then interpolated linearly in
    log(pixels) between sizes (the nearest size outside them; the smallest when `pixels` is
    None).

    Parameters
    ----------
    sigma : float
        Noise std on the 0-255 scale (true or estimated), at least 0.
    table : dict, optional
        A table as `load_table` returns it (checked again here); the shipped one by default.
    pixels : int, optional
        The fitted image's pixel count (H W), for a table calibrated at several sizes.

    Returns
    -------
    float
        lam, dipstop's size-invariant weight (the paper's lambda / (H W)).

    Raises
    ------
    DipstopError
        For a sigma that is not a finite number >= 0, or an invalid table.

    Examples
    --------
    >>> t = {"entries": [{"sigma": 10, "lam": 10.0}, {"sigma": 30, "lam": 1000.0}]}
    >>> round(lam_for_sigma(20, t), 6)
    100.0
    >>> round(lam_for_sigma(99, t), 6)
    1000.0

    At two sizes, 100 x 100 and 400 x 400, the 200 x 200 image is half way in log(pixels):

    >>> t = {"entries": [{"sigma": 10, "lam": 10.0, "pixels": 10_000},
    ...                  {"sigma": 10, "lam": 40.0, "pixels": 160_000}]}
    >>> round(lam_for_sigma(10, t, pixels=40_000), 6), round(lam_for_sigma(10, t), 6)
    (20.0, 10.0)

    A size calibrated at sigma 10 only (4x the base there) keeps that ratio at sigma 30:

    >>> t["entries"] += [{"sigma": 30, "lam": 30.0, "pixels": 10_000}]
    >>> round(lam_for_sigma(30, t, pixels=160_000), 6)
    120.0
    """
    number(sigma, "sigma", at_least=0, fix="give the noise std on the 0-255 scale, e.g. 25")
    table = load_table() if table is None else check_table(table, "given")
    sizes = table_sizes(table)
    if len(sizes) < 2:
        return float(np.exp(_log_lam_at(sigma, table["entries"])))
    by_size = {n: [e for e in table["entries"] if e["pixels"] == n] for n in sizes}
    base = by_size[max(sizes, key=lambda n: (len(by_size[n]), -n))]  # the most sigmas

    def log_ratio(entries: list[dict]) -> float:
        """log(lam / the base size's lam) at sigma: held beyond this size's sigmas."""
        ratios = [np.log(e["lam"]) - _log_lam_at(e["sigma"], base) for e in entries]
        return float(np.interp(sigma, [e["sigma"] for e in entries], ratios))

    logs = [log_ratio(by_size[n]) for n in sizes]
    where = np.log(pixels if pixels is not None else sizes[0])
    return float(np.exp(_log_lam_at(sigma, base) + np.interp(where, np.log(sizes), logs)))


def _log_lam_at(sigma: float, entries: list[dict]) -> float:
    """log(lam) at sigma over entries of one size, sorted by sigma."""
    sigmas = np.array([e["sigma"] for e in entries], dtype=float)
    return float(np.interp(sigma, sigmas, np.log([e["lam"] for e in entries])))


def mean_iterations_for_sigma(sigma: float, table: dict, pixels: int | None = None) -> float | None:
    """How many iterations the Eq. 4 rule ran on average at this noise level, or None.

    Linear interpolation in sigma between the entries that record `mean_iterations`
    (`dipstop calibrate` writes it when it knows S); the nearest end outside them. None when
    no entry records it (older tables). A table calibrated at several sizes answers from the
    size nearest `pixels` in log scale (the smallest when None).

    Parameters
    ----------
    sigma : float
        Noise std on the 0-255 scale.
    table : dict
        A table as `load_table` returns it.

    Returns
    -------
    float or None
        Mean iterations run, under the table's protocol (its T and S).

    Examples
    --------
    >>> t = {"entries": [{"sigma": 10, "lam": 1.0, "mean_iterations": 900},
    ...                  {"sigma": 30, "lam": 1.0, "mean_iterations": 700},
    ...                  {"sigma": 50, "lam": 1.0}]}
    >>> mean_iterations_for_sigma(20, t), mean_iterations_for_sigma(60, t)
    (800.0, 700.0)
    >>> mean_iterations_for_sigma(20, {"entries": [{"sigma": 10, "lam": 1.0}]}) is None
    True
    """
    sizes = table_sizes(table)
    entries = table["entries"]
    if len(sizes) > 1:
        target = np.log(pixels if pixels is not None else sizes[0])
        nearest = min(sizes, key=lambda n: abs(np.log(n) - target))
        entries = [e for e in entries if e["pixels"] == nearest]
    known = [e for e in entries if e.get("mean_iterations") is not None]
    if not known:
        return None
    known.sort(key=lambda e: float(e["sigma"]))
    sigmas = [float(e["sigma"]) for e in known]
    means = [float(e["mean_iterations"]) for e in known]
    return float(np.interp(sigma, sigmas, means))


def write_table(path: str | Path, entries: list[dict], protocol: dict, provenance: dict) -> None:
    """Write a lam(sigma) table as JSON, with its units, protocol and provenance.

    `dipstop.lab.calibration.write_lambda_table` fills it from a calibration.

    Parameters
    ----------
    path : str or Path
        Where to write (replaced if it exists).
    entries : list of dict
        One per sigma: {sigma, lam, mean_psnr, mean_peak_psnr, n_runs, ...}.
    protocol : dict
        The protocol the lams were calibrated under (`Protocol.as_dict()`).
    provenance : dict
        How the table was made (command, date, images, ...).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "table.json")
    >>> entries = [{"sigma": 30, "lam": 40.0}, {"sigma": 10, "lam": 200.0}]
    >>> write_table(path, entries, {"name": "cpu"}, {"command": "by hand"})
    >>> table = load_table(path)
    >>> [e["sigma"] for e in table["entries"]], round(lam_for_sigma(20, table), 2)
    ([10.0, 30.0], 89.44)
    """
    doc = {
        "units": "lam weighs MSE (pixels in [0,1]) against (JPEG q95 bytes per pixel)^2; "
        "the paper's lambda = lam * H * W",
        "protocol": protocol,
        "provenance": provenance,
        "entries": entries,
    }
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")


# -- the policy: which sizes a table covers, the lam of a run and how far to trust it -------

NEAR_SIZE = 1.5  # an image within this factor of a calibrated size counts as calibrated
# the most pixels fitted whole by default, whatever sizes the table holds (1.5 x 192 x 192): at
# 481 x 321 tiles gave the whole image's PSNR in 0.6-0.7 of its time (docs/benchmarks.md)
WHOLE_AT_MOST = 55_296
MIN_RUNS = 4  # a table entry from fewer runs (images) is provisional (the size grids have 4)


def calibrated_sizes(tab: dict) -> list[int]:
    """The image sizes (pixels) a table was calibrated at: its entries' sizes, else its
    protocol's crop squared; empty when it says neither."""
    sizes = table_sizes(tab)
    if not sizes and tab["protocol"].get("crop"):  # a one-size table: its protocol's crop
        sizes = [tab["protocol"]["crop"] ** 2]
    return sizes


def off_size(tab: dict, pixels: int) -> bool:
    """Whether an image of `pixels` is more than `NEAR_SIZE` times away from every size of
    the table: its lam and expected stop are then carried over, not measured."""
    sizes = calibrated_sizes(tab)
    return bool(sizes) and not sizes[0] / NEAR_SIZE <= pixels <= sizes[-1] * NEAR_SIZE


def auto_tile_above(table: str | dict | None, output: str, lam: float | None) -> int:
    """The default `tile_above`: the most pixels a fit of the whole image may have.

    Images beyond `NEAR_SIZE` times the largest size the lam table was calibrated at are
    tiled, so that every fit, whole image or tile, runs at a size whose lam was measured, not
    extrapolated; at most `WHOLE_AT_MOST`, where tiles were measured to be as good and faster,
    even for a table calibrated on whole photos. With an explicit lam, for the paper's rule
    (output "raw": the paper fits whole images), or with a table that names no size, it is
    `TILE_ABOVE`.

    >>> auto_tile_above(None, "since-best", None)  # the shipped table: WHOLE_AT_MOST
    55296
    >>> auto_tile_above(None, "raw", None), auto_tile_above(None, "since-best", 40.0)
    (1000000, 1000000)
    """
    if lam is not None or output == "raw":
        return TILE_ABOVE
    sizes = calibrated_sizes(table if isinstance(table, dict) else load_table(table, output))
    return min(WHOLE_AT_MOST, int(sizes[-1] * NEAR_SIZE)) if sizes else TILE_ABOVE


def lam_from_table(
    sigma: float,
    table: str | dict | None,
    width: int,
    output: str = "raw",
    pixels: int | None = None,
) -> tuple[float, list[str]]:
    """lam for a noise level (and an image of `pixels` pixels) from a lam(sigma) table (a
    path, None for the one shipped for the output policy, or a table `load_table` returned),
    with notes on how far to trust it."""
    tab = table if isinstance(table, dict) else load_table(table, output=output)
    lam = lam_for_sigma(sigma, tab, pixels)
    notes = []
    if pixels is not None and off_size(tab, pixels):
        notes.append(
            f"lam table calibrated at {_sizes_text(calibrated_sizes(tab))} pixels, the image "
            f"has {pixels}: lam taken from the nearest size, not measured at this one (pass "
            "lam to override)"
        )
    if table_output(tab) != output:
        notes.append(
            f"lam table calibrated for output {table_output(tab)!r}, run with {output!r}: "
            "its lams may stop early or late for this output"
        )
    thin = [e for e in tab["entries"] if e.get("n_runs", MIN_RUNS) < MIN_RUNS]
    if thin:
        notes.append(
            "lam table is provisional: "
            + ", ".join(f"sigma {e['sigma']:g} from {e['n_runs']} run(s)" for e in thin)
        )
    if tab["protocol"].get("width") != width:
        notes.append(
            f"lam table calibrated at width {tab['protocol'].get('width')}, run at "
            f"width {width}: pass lam to override"
        )
    return lam, notes


def _sizes_text(sizes: list[int]) -> str:
    """ "16384" or "16384 to 154401"."""
    return str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
