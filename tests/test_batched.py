"""dipstop.batched: each tile of a batched fit is the fit it would have been on its own.

The reference is each tile's own `Fitter` driven by `record` with the same CIFS criterion,
Eq. 4 stop and output policy. In float32 the batch's grouped convolutions add in another
order than the separate ones: the first output (the forward pass alone) differs by about
1e-6, and DIP's first iterations amplify any rounding difference (as running the separate
fit on another number of threads does), so float32 is compared over the first iterations.
With the networks in float64 (outputs still cast to float32) that rounding is below the
outputs' float32 resolution, and whole runs are compared: series, t*, stops, images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch

from dipstop.batched import BatchedFitter, fit_tiles_batched
from dipstop.codecs import jpeg_bytes, tensor_to_uint8
from dipstop.criteria import CifsCriterion, Context
from dipstop.fitting import FitSettings, Fitter
from dipstop.policies import make_policy
from dipstop.recording import OnlineStop, record

SIDE = 32
# float32, iteration 1 (the forward pass alone): 0.8e-6 to 3e-6 measured (width 4-8, 32 px).
# Later float32 iterations are not compared: Adam's first step moves every weight by about
# lr whatever its gradient's size, and rounding in near-zero gradients (3e-3 relative at the
# 2 x 2 deepest scale of a 32 px tile) already gave 1e-3 to 6e-2 at iteration 2.
FIRST_TOL = 1e-5
F64_TOL = 1e-6  # float64 networks, every iteration: measured 0 to 6e-8 (one float32 ulp)


def _tiles(count: int, seed: int = 1) -> list[torch.Tensor]:
    """Noisy ramps of different colours and noise: tiles that stop at different times."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, SIDE).view(1, 1, SIDE).expand(3, SIDE, SIDE)
    out = []
    for k in range(count):
        clean = torch.rand(3, 1, 1, generator=g) * ramp
        noise = (0.05 + 0.1 * k) * torch.randn(3, SIDE, SIDE, generator=g)
        out.append((clean + noise).clamp(0, 1))
    return out


def _separate(tile, settings, lam, patience, max_iters, output="since-best"):
    """The tile's own fit: Fitter + record with the same criterion, stop and policy."""
    fitter = Fitter(tile, settings, "cpu")
    policy, cifs = make_policy(output), CifsCriterion()
    stop = OnlineStop(cifs, Context(SIDE * SIDE, lam), patience, policy.stream)
    outputs = []
    rec = record(fitter, max_iters, [cifs], stop=stop, policy=policy, depth=0,
                 on_row=lambda it, row: outputs.append(it.output.clone()))  # fmt: skip
    return {"outputs": outputs, "series": rec.series, "t_star": stop.stopper.best_index + 1,
            "iterations": rec.iterations, "stopped": stop.stopper.done,
            "output": rec.output[0], "restores": fitter.restores}  # fmt: skip


def _batched(tiles, settings, lam, patience, max_iters, **kw):
    """fit_tiles_batched, keeping every tile's output per iteration."""
    outputs: dict[int, list[torch.Tensor]] = {k: [] for k in range(len(tiles))}

    def keep(k, t, out, row):
        assert t == len(outputs[k]) + 1  # rows arrive in each tile's order
        outputs[k].append(out.clone())

    fits = fit_tiles_batched(tiles, settings, lam, patience, max_iters, "cpu", on_row=keep, **kw)
    return fits, outputs


@pytest.fixture
def float64() -> Iterator[None]:
    """Networks and z in float64 (Fitter keeps the image, outputs and loss in float32)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _max_diffs(a: list[torch.Tensor], b: list[torch.Tensor]) -> list[float]:
    return [(x - y).abs().max().item() for x, y in zip(a, b, strict=False)]


def test_first_iterations_match_separate_fits_float32():
    """Per-tile seeds: each tile's weights, z and first perturbation are its own fit's."""
    tiles = _tiles(3)
    settings = [FitSettings(width=8, seed=s) for s in (0, 5, 9)]
    fits, outputs = _batched(tiles, settings, lam=50.0, patience=50, max_iters=1)
    for k, tile in enumerate(tiles):
        ref = _separate(tile, settings[k], 50.0, 50, 1)
        diffs = _max_diffs(ref["outputs"], outputs[k])
        assert len(diffs) == 1 and diffs[0] < FIRST_TOL, (k, diffs)
        assert fits[k].series["mse"][0] == pytest.approx(ref["series"]["mse"][0], rel=1e-5)


def test_whole_runs_match_separate_fits(float64):
    """Series, t*, stops and the since-best image of every tile; tiles stop at different
    iterations, so tiles leave the batch while others go on."""
    tiles = _tiles(3)
    settings = FitSettings(width=8)
    lam, patience, max_iters = 2.0, 3, 25  # the separate fits stop at 13, 23 and T
    fits, outputs = _batched(tiles, settings, lam, patience, max_iters)
    stops = set()
    for k, tile in enumerate(tiles):
        ref = _separate(tile, settings, lam, patience, max_iters)
        fit = fits[k]
        assert max(_max_diffs(ref["outputs"], outputs[k])) < F64_TOL
        assert (fit.stop_iteration, fit.iterations, fit.stopped_early) == (
            ref["t_star"], ref["iterations"], ref["stopped"])  # fmt: skip
        for name in ("jpeg_bytes", "criterion"):
            np.testing.assert_array_equal(fit.series[name], ref["series"][name])
        np.testing.assert_allclose(fit.series["mse"], ref["series"]["mse"], rtol=1e-6)
        assert (fit.output - ref["output"]).abs().max().item() < F64_TOL
        stops.add(fit.iterations)
    assert len(stops) > 1, "the tiles should stop at different iterations"


def test_series_are_each_tiles_own():
    """Each tile's JPEG sizes are of its own 8-bit output, its MSE is to its own tile."""
    tiles = _tiles(2)
    fits, outputs = _batched(tiles, FitSettings(width=4), 50.0, 50, 4)
    for k, tile in enumerate(tiles):
        for t, out in enumerate(outputs[k]):
            assert fits[k].series["jpeg_bytes"][t] == jpeg_bytes(tensor_to_uint8(out))
            mse = float(((out[0] - tile) ** 2).mean())
            assert fits[k].series["mse"][t] == pytest.approx(mse, rel=1e-5)


def test_divergence_guard_restores_each_tile(float64):
    """A guard that fires on any rise of the loss: each tile restores its own snapshot
    (weights, Adam moments and step count) when its own fit would."""
    tiles = _tiles(2)
    settings = FitSettings(width=8, guard_db=0.3, snapshot_every=2, max_restores=200)
    fits, outputs = _batched(tiles, settings, 50.0, 50, 12)
    restores = []
    for k, tile in enumerate(tiles):
        ref = _separate(tile, settings, 50.0, 50, 12)
        assert fits[k].restores == ref["restores"]
        assert max(_max_diffs(ref["outputs"], outputs[k])) < F64_TOL
        restores.append(ref["restores"])
    assert min(restores) > 0 and len(set(restores)) > 1  # measured: 13 and 3 restores


def test_a_tile_that_left_is_not_changed(float64):
    """After `leave`, a tile is neither stepped nor changed, and the others go on as their
    own fits."""
    tiles = _tiles(2)
    settings = FitSettings(width=8)
    fitter = BatchedFitter(tiles, settings, "cpu")
    seen: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    kept = None
    for step in fitter.run(6):
        for j, k in enumerate(step.tiles):
            seen[k].append(step.outputs[j])
        if step.t[0] == 3:
            fitter.leave(0)
            kept = fitter.parameters(0)
    assert len(seen[0]) == 3 and len(seen[1]) == 6 and fitter.active == []
    assert torch.equal(fitter.parameters(0), kept)
    ref = [it.output for it in Fitter(tiles[1], settings, "cpu").run(6)]
    assert max(_max_diffs(ref, seen[1])) < F64_TOL


def test_overlap_depth_changes_nothing():
    tiles = _tiles(2)
    settings = FitSettings(width=4)
    a = fit_tiles_batched(tiles, settings, 20.0, 2, 8, "cpu", depth=0)
    b = fit_tiles_batched(tiles, settings, 20.0, 2, 8, "cpu", depth=3)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.output, y.output)
        assert (x.stop_iteration, x.iterations) == (y.stop_iteration, y.iterations)


def test_refuses_mixed_sizes_and_settings():
    from dipstop.errors import DipstopError

    with pytest.raises(DipstopError, match="one size"):
        BatchedFitter([torch.rand(3, 32, 32), torch.rand(3, 32, 40)], FitSettings(width=4))
    s = FitSettings(width=4)
    with pytest.raises(DipstopError, match="but for the seed"):
        BatchedFitter([torch.rand(3, 32, 32)] * 2, [s, replace(s, lr=0.1)])
