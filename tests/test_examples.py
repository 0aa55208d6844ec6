"""The docstrings' examples that run fits, run here; their docstrings show them, skipped.

Each test is the example as its docstring gives it, with the same expected values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import dipstop
from dipstop.api import denoise, denoise_tiled
from dipstop.batched import BatchedFitter
from dipstop.criteria import CifsCriterion
from dipstop.fitting import FitSettings, Fitter
from dipstop.imageio import write_image
from dipstop.lab import calibration
from dipstop.lab.runs import grid, run_one
from dipstop.lab.store import ResultStore
from dipstop.protocols import Protocol
from dipstop.recording import record


def test_package_docstring_example():
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32)
    assert 20 < dipstop.estimate_sigma(noisy) < 30
    out, result = dipstop.denoise(noisy, sigma=25, max_iters=4)
    assert (out.shape, out.dtype, 1 <= result.stop_iteration <= 4) == ((64, 64), np.float32, True)


def test_denoise_and_denoise_tiled_examples():
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    out, res = denoise(noisy, max_iters=5, patience=2, lam=50.0)
    assert (out.shape, out.dtype, res.stop_iteration <= 5) == ((64, 64), np.uint8, True)
    noisy = rng.integers(0, 256, (70, 100), dtype=np.uint8)
    out, res = denoise_tiled(noisy, tile=64, overlap=16, width=8, max_iters=2)
    assert (out.shape, out.dtype, len(res.tiles), res.members) == ((70, 100), np.uint8, 4, 1)


def _tiny_folder(tmp_path: Path) -> tuple[Path, Protocol]:
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    write_image(tmp_path / "a.png", pixels)
    return tmp_path, Protocol("tiny", width=8, max_iters=3, patience=2, crop=None)


def test_calibration_record_example(tmp_path):
    folder, tiny = _tiny_folder(tmp_path)
    store = ResultStore(folder / "calibration.sqlite")
    args = ([folder / "a.png"], [25], tiny, store)
    assert calibration.record(*args, device="cpu", log=lambda line: None) == 1
    run = next(store.runs())
    assert (run.spec["sigma"], len(run.series["jpeg_bytes"]), len(run.series["psnr"])) == (
        25.0, 3, 3,
    )  # fmt: skip
    assert calibration.record(*args, device="cpu", log=lambda line: None) == 0
    store.close()


def test_run_one_example(tmp_path):
    folder, tiny = _tiny_folder(tmp_path)
    spec = grid(folder, [25], tiny, criteria={"cifs": {"every": 1}})[0]
    spec_dict, series, summary = run_one(spec, device="cpu")
    assert (spec_dict == spec.as_dict(), len(series["psnr"]), len(series["jpeg_bytes"])) == (
        True, 3, 3,
    )  # fmt: skip
    assert summary["peak_psnr"] == float(series["psnr"].max()) and summary["pixels"] == 4096


def test_record_example():
    rec = record(Fitter(torch.rand(3, 64, 64), FitSettings(width=8)), 3, [CifsCriterion()])
    assert (rec.iterations, sorted(rec.series)) == (3, ["jpeg_bytes", "mse", "seconds"])


def test_fitter_examples():
    fitter = Fitter(torch.rand(1, 64, 64), FitSettings(width=8))
    its = list(fitter.run(3))
    assert [it.t for it in its] == [1, 2, 3]
    assert tuple(its[-1].output.shape) == (1, 1, 64, 64) and its[-1].loss > 0
    fitter = Fitter(torch.rand(3, 64, 64), FitSettings(width=8))
    assert [(it.t, it.state is not None) for it in fitter.run(2, state_every=2)] == [
        (1, False), (2, True),
    ]  # fmt: skip
    assert [it.t for it in fitter.run(3)] == [3]
    x, settings = torch.rand(1, 64, 64), FitSettings(width=8)
    whole = [it.output for it in Fitter(x, settings).run(3)]
    state = [it.state for it in Fitter(x, settings).run(1, state_every=1)][-1]
    resumed = Fitter(x, settings)
    resumed.load_state_dict(state)
    assert [(it.t, torch.equal(it.output, whole[it.t - 1])) for it in resumed.run(3)] == [
        (2, True), (3, True),
    ]  # fmt: skip


def test_batched_fitter_example():
    tiles = [torch.rand(3, 32, 32), torch.rand(3, 32, 32)]
    fitter = BatchedFitter(tiles, FitSettings(width=4))
    assert [(s.tiles, s.t, tuple(s.outputs.shape)) for s in fitter.run(2)] == [
        ([0, 1], [1, 1], (2, 1, 3, 32, 32)), ([0, 1], [2, 2], (2, 1, 3, 32, 32)),
    ]  # fmt: skip
