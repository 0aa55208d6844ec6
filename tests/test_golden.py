"""What dipstop computes is unchanged: the golden commands give the recorded numbers.

`tests/golden/golden_<ISA>_<vendor>.npz` was recorded by `python tests/golden/golden.py`,
the AVX-512 Intel set before the library was restructured. Series, stops, lams, table rows
and denoised pixels must match the set of this CPU's instruction set and vendor (or its
vendor's AVX2 set, produced with the kernels held to AVX2: `golden.golden_for`); floats to
1e-9 relative (bit-identical where recorded), integers and stops exactly. A CPU with no set
to compare fails, never skips: golden.py says how to record one. The set must hold the
default path (tiles, since-best, the shipped table at the estimated sigma), not only the
paper's output.

BRISQUE is OpenCV's (its quality module), and OpenCV releases compute it slightly
differently: on the golden inputs 4.12, 4.13, 4.14 and 5.1 each differ from the 5.0 the
Intel set was recorded with by up to 0.0022 on its 0-100 scale (6.6e-4 relative; measured
2026-12-04). So BRISQUE values compare to 0.01 absolute and 1e-3 relative; a change of
dipstop's own (its gray conversion, its clamp) moves them by far more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
produce, golden_for = _golden.produce, _golden.golden_for


RENAMED = {"loss": "mse"}  # the denoise series' "loss" is the one schema's "mse"
CLOCK = {"seconds", "cpu_seconds", "estimate"}  # timings (and the run-time forecast made of them)
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
def golden_set():
    chosen = golden_for()
    if chosen is None:
        pytest.fail(
            f"no golden set for this CPU ({_golden.ISA}, {_golden.VENDOR}) nor its vendor's "
            "AVX2 set: record one with python tests/golden/golden.py"
        )
    return chosen


@pytest.fixture(scope="module")
def fresh(golden_set, tmp_path_factory, shared, monkeypatch_module):
    """What the golden commands compute now, in this process or, with the kernels held to
    a recorded instruction set, in a child process started with that environment."""
    monkeypatch_module.setenv("DIPSTOP_MODELS", str(shared / "models"))
    work = tmp_path_factory.mktemp("golden")
    _, env = golden_set
    if not env:
        return produce(work)
    out = work / "fresh.npz"
    script = _golden.__file__
    subprocess.run(
        [sys.executable, script, "--produce", str(out)], env={**os.environ, **env}, check=True
    )
    with np.load(out) as arrays:
        return {k: arrays[k] for k in arrays.files}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_golden_set_is_chosen_by_cpu_and_falls_back_to_forced_avx2(tmp_path):
    (tmp_path / "golden_AVX2_AMD.npz").write_bytes(b"")
    (tmp_path / "golden_AVX512_Intel.npz").write_bytes(b"")
    assert golden_for("AVX512", "Intel", tmp_path) == (tmp_path / "golden_AVX512_Intel.npz", {})
    path, env = golden_for("AVX512", "AMD", tmp_path)
    assert path.name == "golden_AVX2_AMD.npz" and env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert golden_for("AVX2", "Intel", tmp_path) is None  # nothing to force down to
    assert golden_for("AVX512", "other", tmp_path) is None


def test_the_golden_set_pins_the_default_path(golden_set):
    with np.load(golden_set[0]) as golden:
        missing = sorted(set(_golden.DEFAULT_PATH) - set(golden.files))
    assert not missing, (
        f"{golden_set[0].name} lacks {missing}: record them on this CPU with "
        "python tests/golden/golden.py --add-missing"
    )


def test_golden_commands_compute_the_recorded_numbers(golden_set, fresh):
    golden = np.load(golden_set[0])
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
