"""Checks at the edge: numbers, options, arrays and lam tables, before any fitting starts.

Every check raises `DipstopError("<problem>; <fix>")` for a problem the user can fix (the
argparse types below raise argparse's own error, which the CLI prints the same way). Nothing
here imports torch or the fitting code, so the CLI can check its arguments cheaply.
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from dipstop.errors import DipstopError

MAX_SIGMAS = 1000  # a sigma list or range longer than this is almost surely a typo
MAX_SEED = 2**63 - 2  # torch seeds are 64-bit; the fitter also uses seed + 1


# -- numbers ---------------------------------------------------------------------------------


def number(
    value: Any,
    name: str,
    *,
    above: float | None = None,
    at_least: float | None = None,
    fix: str = "",
) -> float:
    """`value` as a finite float, above `above` / at least `at_least`; else DipstopError.

    Accepts Python and NumPy real numbers (and 0-d arrays); refuses bools, strings, NaN and
    inf.

    Parameters
    ----------
    value
        What the user gave.
    name : str
        Its name in the message.
    above, at_least : float, optional
        Exclusive / inclusive lower bound (`above` wins when both are given).
    fix : str
        What to do, appended to the message; "give <name> as a plain number" by default.

    Returns
    -------
    float

    Raises
    ------
    DipstopError
        "<name> must be ..., got <value>; <fix>".

    Examples
    --------
    >>> number(2, "lr", above=0)
    2.0
    >>> number(float("nan"), "lam", above=0, fix="pass e.g. lam=50")
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: lam must be a finite number above 0, got nan; pass e.g. lam=50
    """
    want = "a finite number"
    if above is not None:
        want += f" above {above:g}"
    elif at_least is not None:
        want += f" of at least {at_least:g}"
    fix = fix or f"give {name} as a plain number"
    bad = DipstopError(f"{name} must be {want}, got {_show(value)}; {fix}")
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise bad
    try:
        x = float(value)
    except (OverflowError, ValueError, TypeError):
        raise bad from None
    if not math.isfinite(x):
        raise bad
    if (above is not None and not x > above) or (at_least is not None and not x >= at_least):
        raise bad
    return x


def whole(
    value: Any, name: str, *, at_least: int = 1, at_most: int | None = None, fix: str = ""
) -> int:
    """`value` as an int in [at_least, at_most]: a Python or NumPy integer, not 3.0 or True.

    Parameters
    ----------
    value
        What the user gave.
    name : str
        Its name in the message.
    at_least : int
        Smallest value allowed.
    at_most : int, optional
        Largest value allowed.
    fix : str
        What to do, appended to the message; "give <name> as a whole number" by default.

    Returns
    -------
    int

    Raises
    ------
    DipstopError
        For a non-integer or a value out of range.

    Examples
    --------
    >>> whole(3, "width")
    3
    >>> whole(3.0, "width")
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: width must be a whole number of at least 1, got 3.0; give \
width as a whole number
    """
    want = f"a whole number of at least {at_least}"
    if at_most is not None:
        want = f"a whole number from {at_least} to {at_most}"
    fix = fix or f"give {name} as a whole number"
    bad = DipstopError(f"{name} must be {want}, got {_show(value)}; {fix}")
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise bad
    n = int(value)
    if n < at_least or (at_most is not None and n > at_most):
        raise bad
    return n


def _scalar(value: Any) -> Any:
    """A 0-d NumPy array as its Python scalar; anything else unchanged."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    text = " ".join(text.split())  # one line, whatever the value
    return text if len(text) <= 40 else text[:37] + "..."


# -- command-line argument types (argparse wants ArgumentTypeError, not DipstopError) --------


def _argtype(check: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return check(text)
        except DipstopError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = check.__name__
    parse.__doc__ = check.__doc__
    return parse


def _parse_number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DipstopError(f"{text!r} is not a number; give {what}") from None


def _positive_float(text: str) -> float:
    """A finite number above 0 ('inf' and 'nan' are refused)."""
    value = _parse_number(text, "a finite number above 0")
    if not (math.isfinite(value) and value > 0):
        raise DipstopError(f"{text!r} is not a finite number above 0; give e.g. 25")
    return value


def _non_negative_float(text: str) -> float:
    """A finite number of at least 0 ('inf' and 'nan' are refused)."""
    value = _parse_number(text, "a finite number of at least 0")
    if not (math.isfinite(value) and value >= 0):
        raise DipstopError(f"{text!r} is not a finite number of at least 0; give e.g. 0.033")
    return value


def _int_at_least(text: str, low: int) -> int:
    """A whole number of at least `low`."""
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise DipstopError(f"{text!r} is not a whole number of at least {low}")
    return value


def _positive_int(text: str) -> int:
    """A whole number of at least 1."""
    return _int_at_least(text, 1)


def _non_negative_int(text: str) -> int:
    """A whole number of at least 0."""
    return _int_at_least(text, 0)


def _pixels_or_auto(text: str) -> int | None:
    """A whole number of pixels of at least 0, or "auto" (None)."""
    if text == "auto":
        return None
    try:
        return _non_negative_int(text)
    except DipstopError:
        raise DipstopError(f"{text!r} is not a whole number of at least 0 or 'auto'") from None


def _threads(text: str) -> int:
    """A whole number of threads from 1 to 4 x the cores (more only oversubscribes)."""
    value = _positive_int(text)
    most = 4 * (os.cpu_count() or 1)
    if value > most:
        raise DipstopError(
            f"{text} threads is more than 4x the {most // 4} cores; use at most {most}"
        )
    return value


def _seed(text: str) -> int:
    """A whole number from 0 to 2**63 - 2."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise DipstopError(f"{text!r} is not a whole number from 0 to 2**63 - 2")
    return value


def sigma_list(text: str) -> list[float]:
    """'5,15,25' or '5:75:10' (start:stop:step, inclusive) as distinct finite sigmas above 0.

    The CLI's --sigmas; at most 1000 sigmas.

    Parameters
    ----------
    text : str
        A comma-separated list, or an inclusive start:stop:step range.

    Returns
    -------
    list of float

    Raises
    ------
    DipstopError
        For a malformed list, a value that is not a finite number above 0, a repeated sigma
        or too many.

    Examples
    --------
    >>> sigma_list("5:25:10")
    [5.0, 15.0, 25.0]
    >>> sigma_list("5,nan")
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: bad sigma list '5,nan' (nan is not a finite number above 0); \
write e.g. 5,15,25 or 5:75:5
    """
    fix = "write e.g. 5,15,25 or 5:75:5"

    def bad(why: str) -> DipstopError:
        return DipstopError(f"bad sigma list {_show(text)} ({why}); {fix}")

    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise bad("a range is start:stop:step")
        try:
            start, stop, step = (float(x) for x in parts)
        except ValueError:
            raise bad("not numbers") from None
        for name, v in (("start", start), ("stop", stop), ("step", step)):
            if not (math.isfinite(v) and v > 0):
                raise bad(f"{name} {v:g} is not a finite number above 0")
        if stop < start:
            raise bad(f"stop {stop:g} is below start {start:g}")
        if (stop - start) / step + 1 > MAX_SIGMAS:
            raise bad(f"more than {MAX_SIGMAS} sigmas")
        values, v = [], start
        while v <= stop + 1e-9:
            values.append(round(v, 6))
            v += step
    else:
        values = []
        for item in text.split(","):
            if not item.strip():
                continue
            try:
                v = float(item)
            except ValueError:
                raise bad(f"{item.strip()!r} is not a number") from None
            if not (math.isfinite(v) and v > 0):
                raise bad(f"{item.strip()} is not a finite number above 0")
            values.append(v)
        if len(values) > MAX_SIGMAS:
            raise bad(f"more than {MAX_SIGMAS} sigmas")
    if not values:
        raise bad("no sigmas")
    if len(set(values)) != len(values):
        raise bad("a sigma appears twice")
    return [float(v) for v in values]


arg_positive_float = _argtype(_positive_float)
arg_non_negative_float = _argtype(_non_negative_float)
arg_positive_int = _argtype(_positive_int)
arg_non_negative_int = _argtype(_non_negative_int)
arg_pixels_or_auto = _argtype(_pixels_or_auto)
arg_threads = _argtype(_threads)
arg_seed = _argtype(_seed)
arg_sigma_list = _argtype(sigma_list)


# -- image arrays ----------------------------------------------------------------------------


def image_array(array: Any) -> np.ndarray:
    """Check an image array: H x W or H x W x 1/2/3/4, uint8, uint16 or float in [0, 1].

    Returns it in native byte order (a big-endian uint16 from PIL becomes native uint16).

    Parameters
    ----------
    array
        The candidate image.

    Returns
    -------
    ndarray
        The same pixels, native byte order.

    Raises
    ------
    DipstopError
        For a non-array, an unsupported shape or dtype, an empty array, NaN or inf, or
        float values outside [0, 1].

    Examples
    --------
    >>> image_array(np.zeros((2, 2), ">u2")).dtype.byteorder
    '='
    >>> image_array(np.full((2, 2), 1.5))
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: float image values must lie in [0, 1], got 1.5 to 1.5; \
rescale it first
    """
    if not isinstance(array, np.ndarray):
        raise DipstopError(
            f"cannot use a {type(array).__name__} as an image; pass a NumPy array, a PIL image "
            "or a tensor"
        )
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise DipstopError(
            f"unsupported image shape {array.shape}; give H x W (gray), H x W x 1, "
            "H x W x 2 (gray+alpha), H x W x 3 (RGB) or H x W x 4 (RGBA)"
        )
    if array.size == 0:
        raise DipstopError(f"the image is empty (shape {array.shape}); give a non-empty image")
    if array.dtype.kind in "uif" and array.dtype.byteorder not in "=|":
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype in (np.uint8, np.uint16):
        return array
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise DipstopError("float image values must be finite (no NaN or inf); fix them first")
        if array.min() < 0 or array.max() > 1:
            raise DipstopError(
                f"float image values must lie in [0, 1], got {float(array.min()):g} to "
                f"{float(array.max()):g}; rescale it first"
            )
        return array
    raise DipstopError(
        f"unsupported pixel type {array.dtype}; use uint8, uint16 or float in [0, 1]"
    )


def max_pixels() -> int:
    """The largest image (pixels) dipstop decodes: DIPSTOP_MAX_PIXELS, default 200 million."""
    text = os.environ.get("DIPSTOP_MAX_PIXELS", "").strip()
    if not text:
        return 200_000_000
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DipstopError(
            f"DIPSTOP_MAX_PIXELS={text!r} is not a whole number of at least 1; fix or unset it"
        )
    return value


def check_pixel_count(width: int, height: int, where: str) -> None:
    """Refuse a declared size above the pixel limit, before anything is decoded."""
    limit = max_pixels()
    if width < 1 or height < 1:
        raise DipstopError(f"{where} declares a {width} x {height} image; re-export it")
    if width * height > limit:
        raise DipstopError(
            f"{where} declares {width} x {height} = {_megapixels(width * height)} MP, above "
            f"dipstop's limit of {_megapixels(limit)} MP; shrink or crop it, or raise "
            "DIPSTOP_MAX_PIXELS if the file is trusted"
        )


def _megapixels(pixels: int) -> str:
    mp = pixels / 1e6
    return f"{mp:,.0f}" if mp >= 10 else f"{mp:.2g}"


# -- lam tables ------------------------------------------------------------------------------


MAX_TABLE_PIXELS = 10**12  # a calibrated image size beyond this is a typo, not a photo

_Field = tuple[Callable[[Any], bool], str]  # (test of a value, what it must be)


def _a_number(above: float | None = None, at_least: float | None = None) -> _Field:
    """A finite real number (not a bool) above / at least a bound."""
    want = "a finite number"
    if above is not None:
        want += f" above {above:g}"
    elif at_least is not None:
        want += f" >= {at_least:g}"
    return _passes(lambda v: number(v, "", above=above, at_least=at_least)), want


def _a_whole(at_least: int, at_most: int | None = None) -> _Field:
    """A whole number (not 3.0, not a bool) in [at_least, at_most]."""
    want = f"a whole number >= {at_least}" + (f" (at most {at_most:,})" if at_most else "")
    return _passes(lambda v: whole(v, "", at_least=at_least, at_most=at_most)), want


def _passes(check: Callable[[Any], Any]) -> Callable[[Any], bool]:
    """`check` (which raises DipstopError) as a test that returns True or False."""

    def ok(value: Any) -> bool:
        try:
            check(value)
        except DipstopError:
            return False
        return True

    return ok


def _a_list_of(field: _Field) -> _Field:
    """A JSON list whose items all pass `field`."""
    ok, want = field
    return (lambda v: isinstance(v, list) and all(ok(x) for x in v)), f"a list of: {want}"


def _an_output(value: Any) -> bool:
    """Whether `value` names an output policy (`dipstop.policies.policy_names`)."""
    from dipstop.policies import policy_names  # imports torch: only for a table that says

    return isinstance(value, str) and value in policy_names()


STRING: _Field = (lambda v: isinstance(v, str), "a string")
STRINGS = _a_list_of(STRING)

# Every field of a lam table that dipstop reads or `dipstop calibrate` writes, per part:
# key -> (field, required, null allowed). Other keys are kept unchecked.
TABLE_FIELDS: dict[str, dict[str, tuple[_Field, bool, bool]]] = {
    "entry": {
        "sigma": (_a_number(above=0), True, False),
        "lam": (_a_number(above=0), True, False),
        "n_runs": (_a_whole(0), False, False),
        "mean_iterations": (_a_number(at_least=1), False, True),  # null: not recorded
        "pixels": (_a_whole(1, MAX_TABLE_PIXELS), False, False),
        "mean_psnr": (_a_number(), False, True),
        "mean_psnr_eq4": (_a_number(), False, True),
        "mean_peak_psnr": (_a_number(), False, True),
        "images": (STRINGS, False, False),
    },
    "protocol": {
        "name": (STRING, False, False),
        "width": (_a_whole(1), False, False),
        "max_iters": (_a_whole(1), False, False),
        "patience": (_a_whole(1), False, True),  # null: S not recorded (expect T)
        "crop": (_a_whole(1), False, True),  # null: whole images
        "lr": (_a_number(above=0), False, False),
        "z_noise_std": (_a_number(at_least=0), False, False),
    },
    "provenance": {
        "command": (STRING, False, False),
        "date": (STRING, False, False),
        "images": (STRINGS, False, False),
        "planned_images": (STRINGS, False, False),
        "image_folder": (STRING, False, True),
        "sigmas": (_a_list_of(_a_number(above=0)), False, False),
        "sizes": (_a_list_of(_a_whole(1, MAX_TABLE_PIXELS)), False, False),
        "iters": (_a_whole(1), False, False),
        "output": ((_an_output, "an output policy such as 'raw' or 'since-best'"), False, False),
        "selection": (STRING, False, False),
    },
}


def _check_fields(part: dict, kind: str, label: str, bad: Callable[[str], DipstopError]) -> None:
    """Check the fields of one object of a table (an entry, the protocol, the provenance)
    against `TABLE_FIELDS[kind]`; `label` names it in the message ("entry 3", "protocol")."""
    for key, ((ok, want), required, nullable) in TABLE_FIELDS[kind].items():
        if key not in part:
            if required:
                raise bad(f"{label} has no {key!r}")
            continue
        value = part[key]
        if nullable and value is None:
            continue
        if not ok(value):
            field = f"{label} has {key}" if kind == "entry" else f"has {label}.{key}"
            null = " or null" if nullable else ""
            raise bad(f"{field} {_show(value)}, not {want}{null}")


def check_table(doc: Any, where: str) -> dict:
    """A lam(sigma) table checked and normalised: entries sorted by sigma, `protocol` and
    `provenance` dicts.

    Entries need finite `sigma` and `lam` above 0 and, where present, an `n_runs` that is a
    whole number >= 0, a `mean_iterations` (the iterations the Eq. 4 rule ran on average at
    that lam; null means not recorded) that is a finite number >= 1, and a `pixels` (the
    image size calibrated) that is a whole number >= 1: on every entry or on none, each
    (pixels, sigma) once. The other fields `dipstop calibrate` writes, in the entries, the
    `protocol` and the `provenance`, must have its types where present (`TABLE_FIELDS`);
    the provenance's `output` must name an output policy. Returns a new dict; `doc` is not
    changed.

    `doc` is the parsed JSON, `where` its name in messages (a path, or "given"). Returns
    `doc` with float sigmas and lams, entries sorted by pixels then sigma, and "protocol"
    and "provenance" dicts ({} when absent); raises DipstopError naming the field, its value
    and what it must be.

    Examples
    --------
    >>> check_table({"entries": [{"sigma": 30, "lam": 1}, {"sigma": 10, "lam": 2}]}, "given")
    {'entries': [{'sigma': 10.0, 'lam': 2.0}, {'sigma': 30.0, 'lam': 1.0}], 'protocol': {}, \
'provenance': {}}
    >>> check_table({"entries": [{"sigma": 10, "lam": 0}]}, "t.json")
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: lambda table t.json entry 0 has lam 0, not a finite number \
above 0; rerun dipstop calibrate --table, or fix the file
    >>> check_table({"entries": [{"sigma": 10, "lam": 1}], "protocol": {"crop": "x"}}, "t.json")
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: lambda table t.json has protocol.crop 'x', not a whole number \
>= 1 or null; rerun dipstop calibrate --table, or fix the file
    """
    fix = "rerun dipstop calibrate --table, or fix the file"

    def bad(problem: str) -> DipstopError:
        return DipstopError(f"lambda table {where} {problem}; {fix}")

    if not isinstance(doc, dict):
        raise bad(f'is a JSON {_json_kind(doc)}, not an object with "entries"')
    entries = doc.get("entries")
    if not isinstance(entries, list):
        raise bad(f'has no "entries" list (found {_json_kind(entries)})')
    if not entries:
        raise bad("has no entries")
    clean = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise bad(f"entry {i} is a JSON {_json_kind(e)}, not an object with sigma and lam")
        _check_fields(e, "entry", f"entry {i}", bad)
        clean.append({**e, "sigma": float(e["sigma"]), "lam": float(e["lam"])})
    sized = ["pixels" in e for e in clean]
    if any(sized) and not all(sized):
        raise bad(f'gives "pixels" on {sum(sized)} of its {len(clean)} entries, not on all')
    keys = [(e.get("pixels", 0), e["sigma"]) for e in clean]
    if len(set(keys)) != len(keys):
        pixels, sigma = sorted({k for k in keys if keys.count(k) > 1})[0]
        at = f" at {pixels} pixels" if pixels else ""
        raise bad(f"lists sigma {sigma:g}{at} more than once")
    parts = {}
    for part in ("protocol", "provenance"):
        value = doc.get(part, {})
        if not isinstance(value, dict):
            raise bad(f'has a "{part}" that is a JSON {_json_kind(value)}, not an object')
        _check_fields(value, part, part, bad)
        parts[part] = value
    if "units" in doc and not isinstance(doc["units"], str):
        raise bad(f'has "units" {_show(doc["units"])}, not a string')
    entries = sorted(clean, key=lambda e: (e.get("pixels", 0), e["sigma"]))
    return {**doc, **parts, "entries": entries}


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)
