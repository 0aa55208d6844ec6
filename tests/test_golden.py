"""What dipstop computes is unchanged: the golden commands give the recorded numbers.

`tests/golden/golden_<ISA>_<vendor>.npz` was recorded by `python tests/golden/golden.py`,
the AVX-512 Intel set before the library was restructured (issue 10). Series, stops, lams,
table rows and denoised pixels must match the set of this CPU's instruction set and
vendor; floats to 1e-9 relative (bit-identical where recorded), integers and stops exactly.
A CPU with no set skips (its kernels round differently: golden.py says how to record one).

BRISQUE is OpenCV's (its quality module), and OpenCV releases compute it slightly
differently: on the golden inputs 4.12, 4.13, 4.14 and 5.1 each differ from the 5.0 the
Intel set was recorded with by up to 0.0022 on its 0-100 scale (6.6e-4 relative; measured
2026-12-04). So BRISQUE values compare to 0.01 absolute and 1e-3 relative; a change of
dipstop's own (its gray conversion, its clamp) moves them by far more.
"""

from __future__ import annotations

import json

import numpy as np
import pytest


def _load_golden_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "golden" / "golden.py"
    spec = importlib.util.spec_from_file_location("dipstop_golden", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_golden = _load_golden_module()
GOLDEN, produce = _golden.GOLDEN, _golden.produce


RENAMED = {"loss": "mse"}  # the denoise series' "loss" is the one schema's "mse"
CLOCK = {"seconds", "estimate"}  # timings (and the run-time forecast made of them)
STRICT = {"rtol": 1e-9, "atol": 0.0}
OPENCV_BRISQUE = {"rtol": 1e-3, "atol": 0.01}  # OpenCV's releases differ (docstring)


def _tolerance(key: str, outer: dict[str, float] = STRICT) -> dict[str, float]:
    """How closely the floats under `key` (an array's name, or a document key inside a part
    compared within `outer`) must agree."""
    return OPENCV_BRISQUE if "brisque" in key else outer


def _same(a: object, b: object, tol: dict[str, float] = STRICT) -> bool:
    """Equal, with floats compared within `tol` (NaN equal to NaN; BRISQUE values, wherever
    they sit, within OPENCV_BRISQUE). A golden document's keys must all be there with equal
    values (renamed as RENAMED says); new keys may be added, since recording more is not
    computing differently."""
    if isinstance(a, dict) and isinstance(b, dict):
        a = {RENAMED.get(k, k): v for k, v in a.items() if k not in CLOCK}
        return all(k in b and _same(v, b[k], _tolerance(k, tol)) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str):
        try:
            return _same(float(a), float(b), tol)
        except ValueError:
            return a == b
    if isinstance(a, float) or isinstance(b, float):
        return bool(np.isclose(a, b, equal_nan=True, **tol))
    return a == b


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, shared, monkeypatch_module):
    if not GOLDEN.is_file():
        pytest.skip(f"no golden set {GOLDEN.name} for this CPU: tests/golden/golden.py records one")
    monkeypatch_module.setenv("DIPSTOP_MODELS", str(shared / "models"))
    return produce(tmp_path_factory.mktemp("golden"))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_golden_commands_compute_the_recorded_numbers(fresh):
    golden = np.load(GOLDEN)
    missing = sorted(set(golden.files) - set(fresh))
    assert not missing, f"no longer produced: {missing}"
    changed = []
    for name in golden.files:
        old, new = golden[name], fresh[name]
        if old.dtype.kind == "U":  # JSON documents
            if not _same(json.loads(str(old)), json.loads(str(new))):
                changed.append(name)
        elif old.dtype.kind == "f":
            if old.shape != new.shape or not np.allclose(
                old, new, equal_nan=True, **_tolerance(name)
            ):
                changed.append(name)
        elif not np.array_equal(old, new):
            changed.append(name)
    assert not changed, f"changed: {changed}"
