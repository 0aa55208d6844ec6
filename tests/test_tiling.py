"""Tiled denoising: the plan covers the image, the blend is lossless and seamless, big images
are bounded by one tile's memory, and the result keeps the input's form."""

import json
import math
import threading
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dipstop import memory, tiled_run
from dipstop.api import DenoiseResult, denoise, denoise_tiled
from dipstop.cli import main
from dipstop.errors import DipstopError
from dipstop.imageio import split_array
from dipstop.lambda_table import (
    WHOLE_AT_MOST,
    auto_tile_above,
    load_table,
    table_sizes,
    write_table,
)
from dipstop.noise import estimate_sigma
from dipstop.results import TiledResult
from dipstop.tiling import plan_tiles

# (height, width, tile, overlap): awkward sizes, an image smaller than a tile, one tile
# plus a pixel, no overlap, many tiles
PLANS = [
    (130, 97, 64, 16),
    (97, 130, 64, 16),
    (50, 40, 64, 16),
    (64, 200, 64, 32),
    (65, 129, 64, 0),
    (333, 1000, 128, 32),
]


pytestmark = pytest.mark.usefixtures("one_thread")


def _fake_result(**kw) -> DenoiseResult:
    return DenoiseResult(
        stop_iteration=3,
        iterations_run=5,
        stopped_early=True,
        sigma=kw["sigma"],
        sigma_estimated=False,
        lam=kw["lam"],
        paper_lambda=0.0,
        settings={"width": 8},
        series={},
        seconds=0.01,
    )


class Stub:
    """Stands in for `fit_one` on each tile: returns the tile plus `add(k)` for tile k (and
    no network, so a warm run fits its other tiles cold, as it does when the first tile's
    networks are missing)."""

    def __init__(self, add=lambda k: 0.0, interrupt_at=None):
        self.add, self.interrupt_at, self.calls = add, interrupt_at, []

    def __call__(self, image, clean, options, keep_network=False):
        k = len(self.calls)
        kw = {**vars(options), "clean": clean}
        self.calls.append({"shape": image.shape, **kw})
        if k == self.interrupt_at:
            raise KeyboardInterrupt
        assert image.dtype == np.float32 and image.ndim == 3
        return image + np.float32(self.add(k)), _fake_result(**kw)


@pytest.mark.parametrize("height,width,tile,overlap", PLANS)
def test_plan_covers_every_pixel_with_tiles_inside_the_image(height, width, tile, overlap):
    plan = plan_tiles(height, width, tile, overlap)
    covered = np.zeros((height, width), int)
    for top, left, h, w in plan.boxes():
        assert (h, w) == (min(tile, height), min(tile, width))
        assert top >= 0 and top + h <= height and left >= 0 and left + w <= width
        covered[top : top + h, left : left + w] += 1
    assert covered.min() >= 1
    for starts, side, n in ((plan.rows, plan.tile_h, height), (plan.cols, plan.tile_w, width)):
        assert starts[0] == 0 and starts[-1] + side == n  # the last tile meets the border
        shared = [a + side - b for a, b in zip(starts, starts[1:], strict=False)]
        assert all(s >= overlap for s in shared)  # neighbours share at least the overlap
    if height <= tile and width <= tile:
        assert plan.boxes() == [(0, 0, height, width)]


@pytest.mark.parametrize("height,width,tile,overlap", PLANS)
def test_window_weights_sum_to_one_everywhere(height, width, tile, overlap):
    plan = plan_tiles(height, width, tile, overlap)
    total = np.zeros((height, width))
    for (top, left, h, w), weight in zip(plan.boxes(), plan.weights(), strict=True):
        assert weight.shape == (h, w) and weight.min() >= 0 and weight.max() <= 1
        total[top : top + h, left : left + w] += weight
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_identity_tiles_give_the_input_back_exactly(monkeypatch):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (97, 130, 3), dtype=np.uint8)
    stub = Stub()
    monkeypatch.setattr(tiled_run, "fit_one", stub)
    out, res = denoise_tiled(rgb, tile=64, overlap=16, width=8, max_iters=5, ensemble=1,
                             wiener=False)  # fmt: skip
    assert out.dtype == np.uint8 and np.array_equal(out, rgb)  # lossless and seamless
    assert len(stub.calls) == len(res.tiles) == 6
    # sigma estimated once on the whole image, one sigma and one lam for every tile
    assert res.sigma_estimated and res.sigma == pytest.approx(
        estimate_sigma(split_array(rgb).pixels)
    )
    assert {c["sigma"] for c in stub.calls} == {res.sigma}
    # each tile looks the same lam up in the table at its size (tests/test_lambda_sizes.py)
    assert {c["lam"] for c in stub.calls} == {None}
    assert all(c["tile"] is None and c["width"] == 8 for c in stub.calls)
    assert all(c["shape"] == (64, 64, 3) for c in stub.calls)

    # an ensemble of 2 fits each of the 4 tiles twice (seeds 0 and 1), each at half its weight
    gray = rng.random((70, 100), dtype=np.float32)
    out, res = denoise_tiled(gray, tile=64, overlap=16, sigma=20.0, lam=30.0, wiener=False,
                             ensemble=2)  # fmt: skip
    assert out.shape == gray.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, gray, atol=1e-6)
    assert not res.sigma_estimated and {(c["sigma"], c["lam"]) for c in stub.calls[6:]} == {
        (20.0, 30.0)
    }
    assert res.members == 2 and len(stub.calls) - 6 == len(res.tiles) == 8
    assert [(c["seed"], c["ensemble"]) for c in stub.calls[6:]] == [(0, 1), (1, 1)] * 4


def test_a_constant_per_tile_is_spread_smoothly_across_the_seams(monkeypatch):
    flat = np.full((97, 130), 0.3, np.float32)
    consts = [0.0, 0.4, 0.1, 0.3, 0.05, 0.5]  # one per tile, 2 rows x 3 columns
    monkeypatch.setattr(tiled_run, "fit_one", Stub(lambda k: consts[k]))
    out, res = denoise_tiled(flat, tile=64, overlap=16, sigma=25.0, lam=50.0, ensemble=1,
                             wiener=False)  # the blend itself  # fmt: skip
    spread = max(consts) - min(consts)
    # a raised cosine over 16 px moves at most sin(pi / 32) of the difference per pixel
    bound = spread * math.sin(math.pi / (2 * 16)) + 1e-6
    jumps = max(np.abs(np.diff(out, axis=0)).max(), np.abs(np.diff(out, axis=1)).max())
    assert 0 < jumps <= bound, (jumps, bound)
    for t, c in zip(res.tiles, consts, strict=True):  # a tile's centre is its own output
        assert out[t.top + 32, t.left + 32] == pytest.approx(0.3 + c, abs=1e-6)

    # without overlap the seams are hard: a neighbour's whole difference in one pixel
    monkeypatch.setattr(tiled_run, "fit_one", Stub(lambda k: consts[k]))
    hard, _ = denoise_tiled(flat, tile=64, overlap=0, sigma=25.0, lam=50.0, ensemble=1,
                            wiener=False)  # fmt: skip
    hard_jump = np.abs(np.diff(hard, axis=1)).max()
    assert hard_jump == pytest.approx(0.45) and hard_jump > 8 * jumps  # tiles 4 and 5


def test_interrupted_tiled_run_keeps_the_noisy_pixels_of_the_tiles_not_fitted(monkeypatch):
    flat = np.full((70, 100), 0.3, np.float32)
    monkeypatch.setattr(tiled_run, "fit_one", Stub(lambda k: 0.2, interrupt_at=2))
    one = dict(sigma=25.0, lam=50.0, ensemble=1, wiener=False)  # one fit a tile: call k is tile k
    out, res = denoise_tiled(flat, tile=64, overlap=16, interruptible=True, **one)
    assert res.interrupted and [t.result is not None for t in res.tiles] == [1, 1, 0, 0]
    assert out[5, 5] == pytest.approx(0.5) and out[-5, -5] == pytest.approx(0.3)
    assert "2 of 4 tiles were not fitted" in res.notes[-1]
    monkeypatch.setattr(tiled_run, "fit_one", Stub(interrupt_at=1))
    with pytest.raises(KeyboardInterrupt):  # without interruptible, Ctrl-C is Ctrl-C
        denoise_tiled(flat, tile=64, overlap=16, **one)


def test_an_error_in_a_tile_thread_is_raised_here_and_torch_threads_come_back(monkeypatch):
    flat = np.full((70, 100), 0.3, np.float32)

    def broken(image, clean, options, **_):
        raise ValueError("tile fit failed")

    monkeypatch.setattr(tiled_run, "fit_one", broken)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(ValueError, match="tile fit failed"):
            denoise_tiled(flat, tile=64, overlap=16, sigma=25.0, lam=50.0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_ray_tiles_are_blended_in_any_order_and_ctrl_c_keeps_those_done(monkeypatch):
    """The Ray branch without Ray: tiles come back out of order, then Ctrl-C; the tiles
    done are blended where they belong, the others keep the noisy pixels."""
    flat = np.full((70, 100), 0.3, np.float32)
    calls = []

    def finished_out_of_order(tiles, fit, *, ray, threads, max_minutes=None):
        tiles = list(tiles)
        calls.append((ray, threads, max_minutes, tiles[0][3].lam))
        for k in (3, 0):  # tile 3 finishes first
            _, pixels, _, options = tiles[k]
            yield k, pixels + np.float32(0.1 * (k + 1)), _fake_result(**vars(options))
        raise KeyboardInterrupt

    monkeypatch.setattr(tiled_run, "fit_remotely", finished_out_of_order)
    monkeypatch.setattr(tiled_run, "ray_slots", lambda address=None: 2)
    out, res = denoise_tiled(
        flat, tile=64, overlap=16, sigma=25.0, lam=50.0, interruptible=True, ray="addr",
        max_minutes=5, ensemble=1, wiener=False, warm_start=False,
    )  # fmt: skip
    assert calls == [("addr", 1, 5, 50.0)]
    assert res.interrupted and [t.result is not None for t in res.tiles] == [1, 0, 0, 1]
    assert out[5, 5] == pytest.approx(0.4) and out[-5, -5] == pytest.approx(0.7)
    assert out[-5, 5] == pytest.approx(0.3) and out[5, -5] == pytest.approx(0.3)
    assert any("interrupted: 2 of 4 tiles were not fitted" in n for n in res.notes)
    monkeypatch.setattr(tiled_run, "fit_remotely", finished_out_of_order)
    with pytest.raises(KeyboardInterrupt):  # without interruptible, Ctrl-C is Ctrl-C
        denoise_tiled(flat, tile=64, overlap=16, sigma=25.0, lam=50.0, ray="", ensemble=1,
                      warm_start=False)  # fmt: skip


def test_real_tiny_tiled_run_stops_every_tile():
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 1, 140, dtype=np.float32)[None, :, None] * np.ones((100, 1, 3))
    noisy = np.clip(ramp + rng.normal(0, 0.1, ramp.shape), 0, 1)
    noisy8 = np.rint(noisy * 255).astype(np.uint8)
    out, res = denoise(
        noisy8, clean=np.rint(ramp * 255).astype(np.uint8), tile=64, overlap=16,
        tile_above=0, width=8, max_iters=5, patience=2, device="cpu", ensemble=1,
    )  # fmt: skip
    assert isinstance(res, TiledResult) and out.shape == noisy8.shape and out.dtype == np.uint8
    assert len(res.tiles) == 6 and len(res.stop_iterations) == 6
    assert all(1 <= t <= 5 for t in res.stop_iterations)
    assert res.iterations_run == sum(t.result.iterations_run for t in res.tiles) <= 30
    assert res.seconds >= max(t.result.seconds for t in res.tiles) > 0  # fitted in parallel
    assert res.psnr is not None and all(t.result.psnr is not None for t in res.tiles)
    assert res.settings["tile"] == 64 and res.settings["width"] == 8
    assert len(json.loads(json.dumps(res.summary(), default=str))["tiles"]) == 6
    # below tile_above (by default 1.5x the table's largest size) the same image is one fit
    _, whole = denoise(noisy8, width=8, max_iters=2, patience=2, lam=50.0, device="cpu",
                       ensemble=1)  # fmt: skip
    assert isinstance(whole, DenoiseResult)


def test_tiles_fitted_in_threads_give_the_pixels_of_one_tile_at_a_time():
    """On a CPU a tile per thread of torch's pool runs at once (1-thread fits): each fit
    seeds its own network, input and perturbation, so the image is the same as with one
    tile at a time, and torch's pool is given back as it was. (A warm run fits its first
    tile alone, on all of the pool's threads: its last bits follow the thread count.)"""
    noisy = np.random.default_rng(2).random((100, 140, 3)).astype(np.float32)
    kw = dict(tile=64, overlap=16, tile_above=0, width=8, max_iters=4, patience=2, sigma=25.0,
              warm_start=False)  # fmt: skip
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two, res2 = denoise(noisy, device="cpu", **kw)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        one, res1 = denoise(noisy, device="cpu", **kw)
    finally:
        torch.set_num_threads(before)
    assert res2.estimate.parallel == 2 and res1.estimate.parallel == 1
    assert "2 at a time" in res2.estimate.line()
    np.testing.assert_array_equal(two, one)


def test_cancel_ends_a_fit_or_a_tiled_run_with_the_best_so_far():
    """`cancel`, set from another thread (here before the start), ends a fit after its next
    row, and a tiled run's running tiles likewise; no more tiles are started."""
    cancel = threading.Event()
    cancel.set()
    noisy = np.random.default_rng(3).random((100, 140, 3)).astype(np.float32)
    endless = dict(width=8, max_iters=100_000, patience=100_000, lam=50.0, device="cpu",
                   ensemble=1, wiener=False)  # fmt: skip
    out, res = denoise(noisy[:64, :64], cancel=cancel, **endless)
    assert res.interrupted and res.iterations_run == 1 and out.shape == (64, 64, 3)
    out, res = denoise(noisy, cancel=cancel, tile=64, overlap=16, tile_above=0, **endless)
    fitted = [t.result for t in res.tiles if t.result is not None]
    assert res.interrupted and 1 <= len(fitted) <= torch.get_num_threads() < len(res.tiles)
    assert all(r.interrupted and r.iterations_run < 100_000 for r in fitted)
    assert any("interrupted" in n and "not fitted" in n for n in res.notes)
    assert np.array_equal(out[-5:, -5:], noisy[-5:, -5:])  # the last tile keeps its pixels


def test_a_tiled_run_resumes_from_the_tiles_kept_in_its_folder(tmp_path):
    """Each finished tile is kept in `resume_dir`; a run started again with the same image and
    settings fits only the missing tiles (and those it cannot read or that are not of this
    run) and gives the image of one uninterrupted run; a folder from other settings is
    emptied, not reused. With an ensemble of 2 each of the 6 tiles is 2 fits (seeds 0 and 1),
    each kept on its own (`tile_<tile>_seed<s>.pt`): 12 in all."""
    noisy = np.random.default_rng(4).random((100, 140, 3)).astype(np.float32)
    kw = dict(tile=64, overlap=16, tile_above=0, width=8, max_iters=4, patience=2, sigma=25.0,
              ensemble=2)  # fmt: skip
    fresh, res = denoise(noisy, device="cpu", **kw)
    assert res.members == 2 and [t.result.settings["seed"] for t in res.tiles] == [0, 1] * 6
    folder = tmp_path / "photo.png.partial"
    first, res = denoise(noisy, device="cpu", resume_dir=folder, **kw)
    kept = sorted(folder.glob("tile_*.pt"))
    assert len(kept) == len(res.tiles) == 12 and np.array_equal(first, fresh)
    for path in kept[1::2]:  # as if the run had been cut short: every seed-1 fit is missing
        path.unlink()
    again, res = denoise(noisy, device="cpu", resume_dir=folder, **kw)
    assert np.array_equal(again, fresh) and "resumed 6 of 12 tiles" in " ".join(res.notes)
    assert len(list(folder.glob("tile_*.pt"))) == 12
    kept = sorted(folder.glob("tile_*.pt"))
    kept[0].write_bytes(b"not a tile")  # damaged: refitted, with a warning
    key = torch.load(kept[2], weights_only=True)["key"]  # this run's, of another shape:
    torch.save({"key": key, "out": torch.zeros(3, 3, 3), "result": {}}, kept[1])
    with pytest.warns(UserWarning, match="ignoring kept tile") as caught:
        again, res = denoise(noisy, device="cpu", resume_dir=folder, **kw)
    assert len(caught) == 2 and np.array_equal(again, fresh)
    assert "resumed 10 of 12 tiles" in " ".join(res.notes)
    other, res = denoise(noisy, device="cpu", resume_dir=folder, **{**kw, "patience": 3})
    assert not any("resumed" in n for n in res.notes) and not np.array_equal(other, fresh)
    assert len(list(folder.glob("tile_*.pt"))) == 12  # the other settings' fits are gone
    tiled_folder = tmp_path / "tiled.partial"  # denoise_tiled keeps its tiles the same way
    opts = {k: v for k, v in kw.items() if k not in ("tile", "tile_above")}
    denoise_tiled(noisy, tile=64, device="cpu", resume_dir=tiled_folder, **opts)
    assert len(list(tiled_folder.glob("tile_*.pt"))) == 12


def test_more_fits_a_tile_start_from_the_fits_a_smaller_ensemble_kept(tmp_path, monkeypatch):
    """`best` after `default` on the same image and folder: the four-seed run fits only
    seeds 2 and 3 and gives the image of a fresh four-seed run; one fit with seed 1 then
    fits nothing."""
    noisy = np.random.default_rng(5).random((100, 140, 3)).astype(np.float32)
    kw = dict(tile=64, overlap=16, tile_above=0, width=8, max_iters=4, patience=2, sigma=25.0,
              device="cpu")  # fmt: skip
    fresh, _ = denoise(noisy, ensemble=4, **kw)
    folder = tmp_path / "photo.png.partial"
    denoise(noisy, ensemble=2, resume_dir=folder, **kw)
    seeds, fit = [], tiled_run.fit_one

    def counted(pixels, clean, options, **warm):
        seeds.append(options.seed)
        return fit(pixels, clean, options, **warm)

    monkeypatch.setattr(tiled_run, "fit_one", counted)
    best, res = denoise(noisy, ensemble=4, resume_dir=folder, **kw)
    assert sorted(seeds) == [2] * 6 + [3] * 6 and np.array_equal(best, fresh)
    assert "resumed 12 of 24 tiles" in " ".join(res.notes)
    # every fit's CPU time, the kept ones' read back with them: what the image cost in all
    cpu = [t.result.cpu_seconds for t in res.tiles]
    assert all(0 < c <= t.result.seconds + 0.05 for c, t in zip(cpu, res.tiles, strict=True))
    assert res.cpu_seconds == pytest.approx(sum(cpu))
    assert f"({res.cpu_seconds:.0f} CPU s) in fp32" in res.describe()
    seeds.clear()
    denoise(noisy, ensemble=1, seed=1, resume_dir=folder, **kw)
    assert seeds == [] and len(list(folder.glob("tile_*.pt"))) == 24


def test_keeping_a_read_only_tile_warns_of_nothing(tmp_path):
    """A Ray task hands back read-only arrays (output and series): keeping them must not
    print torch's non-writable-array warning to the user, and they read back equal."""
    from dipstop.tile_store import TileStore

    out = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    mse = np.ones(5)
    for array in (out, mse):
        array.setflags(write=False)
    r = DenoiseResult(3, 5, True, 25.0, True, 40.0, 1.0, {}, {"mse": mse}, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TileStore(tmp_path, "a").save("000000_seed0", out, r)
        ((back, res),) = TileStore(tmp_path, "a").load({"000000_seed0": (2, 2, 3)}).values()
    assert np.array_equal(back, out) and np.array_equal(res.series["mse"], mse)


def test_rgba_16_bit_keeps_alpha_and_depth_when_tiled():
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 65536, (70, 100, 4), dtype=np.uint16)
    quick = dict(width=8, lam=50.0, ensemble=1)
    out, res = denoise_tiled(rgba, tile=64, overlap=16, max_iters=2, **quick)
    assert out.dtype == np.uint16 and out.shape == rgba.shape
    assert np.array_equal(out[:, :, 3], rgba[:, :, 3]) and len(res.tiles) == 4
    t = torch.from_numpy(rgba[:, :, :3].astype(np.float32) / 65535).permute(2, 0, 1)[None]
    out_t, _ = denoise_tiled(t, tile=64, overlap=16, max_iters=1, **quick)
    assert isinstance(out_t, torch.Tensor) and out_t.shape == t.shape


def test_memory_guard_sees_the_tile_not_the_photo(monkeypatch):
    image = np.random.default_rng(3).random((100, 100), dtype=np.float32)
    # room for a 64 x 64 tile's fit at width 8 (~5 MB above the fixed part), not the
    # 100 x 100 image's (padded to 128 x 128: ~21 MB)
    monkeypatch.setattr(memory, "available_bytes", lambda device: memory.FIXED_BYTES + 10 * 2**20)
    quick = dict(width=8, max_iters=1, patience=1, lam=50.0, device="cpu", ensemble=1)
    with pytest.raises(DipstopError, match="needs about"):
        denoise(image, tile=None, **quick)
    out, res = denoise(image, tile=64, overlap=16, tile_above=0, **quick)
    assert out.shape == image.shape and len(res.tiles) == 4
    # not even one tile fits: refused before any tile is fitted
    monkeypatch.setattr(memory, "available_bytes", lambda device: memory.FIXED_BYTES)
    stub = Stub()
    monkeypatch.setattr(tiled_run, "fit_one", stub)
    with pytest.raises(DipstopError, match="needs about"):
        denoise_tiled(image, tile=64, overlap=16, **quick)
    assert stub.calls == []


def test_bad_tiling_options_are_refused_before_any_work():
    image = np.zeros((70, 100), np.uint8)
    with pytest.raises(DipstopError, match="tile must be .* at least 64"):
        denoise_tiled(image, tile=32)
    with pytest.raises(DipstopError, match="overlap must be .* from 0 to 32"):
        denoise(image, tile=64, overlap=40, tile_above=0)
    with pytest.raises(DipstopError, match="tile_above"):
        denoise(image, tile_above=-1)
    with pytest.raises(TypeError, match="tile_above"):
        denoise_tiled(image, tile_above=0)


def test_by_default_only_images_near_a_calibrated_size_are_fitted_whole(tmp_path, capsys):
    """tile_above defaults to 1.5x the lam table's largest calibrated size (at most
    WHOLE_AT_MOST), so no fit runs with an extrapolated lam; an explicit lam and the paper's
    rule ("raw") keep whole images."""
    quick = dict(width=8, max_iters=2, patience=1, sigma=25.0, device="cpu", ensemble=1)
    most = auto_tile_above(None, "since-best", None)
    largest = table_sizes(load_table(output="since-best"))[-1]
    assert most == min(WHOLE_AT_MOST, int(1.5 * largest))
    assert largest > WHOLE_AT_MOST  # the shipped table holds whole photos: the bound holds
    side = math.isqrt(most) + 1  # the smallest square the shipped table tiles
    big = np.random.default_rng(5).integers(0, 256, (side, side, 3), np.uint8)
    assert isinstance(denoise(big, **quick)[1], TiledResult)
    assert isinstance(denoise(big, lam=40.0, **quick)[1], DenoiseResult)
    assert isinstance(denoise(big, output="raw", **quick)[1], DenoiseResult)
    assert isinstance(denoise(big[:-1, :-1], **quick)[1], DenoiseResult)
    path = tmp_path / "sized.json"  # a table calibrated up to 64 x 64: whole up to 6144 pixels
    entries = [{"sigma": 25, "lam": 40.0, "pixels": 64 * 48}, {"sigma": 25, "lam": 50.0,
                                                                 "pixels": 64 * 64}]  # fmt: skip
    write_table(path, entries, {"width": 8}, {"output": "since-best"})
    assert auto_tile_above(str(path), "since-best", None) == 6144
    whole = tmp_path / "whole.json"  # calibrated on whole photos: still tiled above 55296
    write_table(whole, [{"sigma": 25, "lam": 60.0, "pixels": 481 * 321}], {"width": 8},
                {"output": "since-best"})  # fmt: skip
    assert auto_tile_above(str(whole), "since-best", None) == WHOLE_AT_MOST < 481 * 321
    assert isinstance(denoise(big[:70, :80], table=str(path), **quick)[1], DenoiseResult)
    assert isinstance(denoise(big[:70, :90], table=str(path), **quick)[1], TiledResult)
    src = tmp_path / "in.png"
    Image.fromarray(big[:80, :80]).save(src)
    cli = ["denoise", str(src), "-o", str(tmp_path / "out.png"), "--width", "8", "-T", "2",
           "--ensemble", "1"]  # fmt: skip
    assert main([*cli, "--table", str(path), "--tile", "64", "--tile-above", "auto"]) == 0
    assert "tiles of 64 px" in capsys.readouterr().out  # 6400 pixels > 6144
    with pytest.raises(SystemExit, match="2"):
        main([*cli, "--tile-above", "lots"])


def test_cli_tiles_with_its_options_and_reports_every_tile(tmp_path, capsys):
    import cv2

    src, dst, rep = tmp_path / "in.png", tmp_path / "out.png", tmp_path / "rep"
    cv2.imwrite(str(src), np.random.default_rng(4).integers(0, 256, (70, 100, 3), np.uint8))
    quick = ["--width", "8", "-T", "2", "-S", "2", "--lam", "50", "--threads", "1"]
    quick += ["--ensemble", "1"]  # one fit a tile: a line of tiles.csv each
    tiling = ["--tile", "64", "--overlap", "16", "--tile-above", "0"]
    assert main(["denoise", str(src), "-o", str(dst), *quick, *tiling, "--report", str(rep)]) == 0
    assert cv2.imread(str(dst)).shape == (70, 100, 3)
    assert "4 of 4 tiles of 64 px (overlap 16) fitted" in capsys.readouterr().out
    assert len((rep / "tiles.csv").read_text().splitlines()) == 5
    assert len(json.loads((rep / "summary.json").read_text())["tiles"]) == 4
    assert (
        main(["denoise", str(src), "-o", str(dst), *quick, "--tile", "64", "--overlap", "40"]) == 2
    )
    assert "overlap must be" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["denoise", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(opt in text for opt in ("--tile N", "--overlap M", "--tile-above PIXELS"))


def test_a_flat_image_whose_estimated_sigma_is_zero_tiles_without_error():
    """A blind estimate of 0 (no noise seen) must not reach the tiles as a refused sigma."""
    flat = np.full((100, 140), 128, np.uint8)
    out, res = denoise(flat, tile=64, overlap=16, tile_above=0, width=8, max_iters=2, patience=1)
    assert out.shape == flat.shape and res.sigma_estimated and res.sigma == 0.0


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of two CPUs, shared by the tests that run tiles as Ray tasks."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _ramp_rgb(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 140, dtype=np.float32)[None, :, None] * np.ones((100, 1, 3))
    return np.rint(np.clip(ramp + rng.normal(0, 0.1, ramp.shape), 0, 1) * 255).astype(np.uint8)


def test_tiles_as_ray_tasks_match_the_in_process_run(local_ray):
    noisy = _ramp_rgb(3)
    opts = dict(tile=64, overlap=16, tile_above=0, width=8, max_iters=12, patience=3, lam=50.0,
                ensemble=1)  # fmt: skip
    local, res_local = denoise(noisy, device="cpu", **opts)
    seen = []
    remote, res_ray = denoise(noisy, device="cpu", ray="", on_estimate=seen.append, **opts)
    assert res_ray.stop_iterations == res_local.stop_iterations  # each tile stopped alike
    np.testing.assert_allclose(remote.astype(int), local.astype(int), atol=1)
    assert [t.result.iterations_run for t in res_ray.tiles] == [
        t.result.iterations_run for t in res_local.tiles
    ]
    # the estimate comes with the first tile done, for 6 tiles 2 at a time (3 rounds)
    (estimate,) = seen
    assert estimate is res_ray.estimate and estimate.tiles == 6 and estimate.parallel == 2
    # made on whichever tile finished first
    firsts = [t.result.estimate.seconds_high for t in res_ray.tiles]
    assert any(estimate.seconds_high == pytest.approx(3 * one) for one in firsts)



def test_warm_started_tiles_as_ray_tasks_match_the_in_process_run(local_ray):
    """With `warm_start` the first tile's task runs first and the others carry its network
    (tests/test_warm_start.py checks what they do with it)."""
    noisy = _ramp_rgb(4)
    opts = dict(tile=64, overlap=16, tile_above=0, width=8, max_iters=12, patience=3, lam=50.0,
                ensemble=1, warm_start=True)  # fmt: skip
    local, res_local = denoise(noisy, device="cpu", **opts)
    remote, res_ray = denoise(noisy, device="cpu", ray="", **opts)
    cold, _ = denoise(noisy, device="cpu", **{**opts, "warm_start": False})
    assert res_ray.stop_iterations == res_local.stop_iterations
    np.testing.assert_allclose(remote.astype(int), local.astype(int), atol=1)
    assert not np.array_equal(local, cold)

def test_ray_tiles_not_started_before_the_deadline_keep_the_noisy_pixels(local_ray):
    noisy = _ramp_rgb(4)
    out, res = denoise(
        noisy, tile=64, overlap=16, tile_above=0, width=8, max_iters=5, lam=50.0, ray="",
        max_minutes=1e-6, ensemble=1,
    )  # fmt: skip
    np.testing.assert_array_equal(out, noisy)  # the weights sum to 1: the input comes back
    assert all(t.result is None for t in res.tiles) and res.stopped_by_budget
    assert "6 of 6 tiles were not fitted" in res.notes[-1]


def test_one_untiled_fit_as_a_ray_task_gives_the_in_process_pixels(
    local_ray, tmp_path, monkeypatch
):
    """An untiled Ray task fits as this process does, and resumes from `resume_dir`."""
    noisy = _ramp_rgb(5)
    opts = dict(width=8, max_iters=12, patience=3, lam=50.0, device="cpu", ensemble=1)
    local, res_local = denoise(noisy, **opts)
    remote, res_ray = denoise(noisy, ray="", **opts)
    assert isinstance(res_ray, DenoiseResult) and res_ray.stop_iteration == res_local.stop_iteration
    np.testing.assert_allclose(remote.astype(int), local.astype(int), atol=1)
    from dipstop import checkpoints
    from dipstop.runtime import Switches

    monkeypatch.setattr(checkpoints, "STATE_EVERY", 4)  # in this process: the cut fit
    folder, cancel = tmp_path / "out.png.partial", threading.Event()
    every = Switches(checkpoint_seconds=0.0)
    denoise(noisy, resume_dir=folder, cancel=cancel, on_estimate=lambda e: cancel.set(),
            switches=every, **opts)  # fmt: skip
    resumed, res = denoise(noisy, ray="", resume_dir=folder, switches=every, **opts)
    assert f"resumed at iteration 4 from {folder}" in " ".join(res.notes)
    assert res.stop_iteration == res_local.stop_iteration and not list(folder.glob("*.pt"))
    np.testing.assert_allclose(resumed.astype(int), local.astype(int), atol=1)


def test_ray_map_reads_its_calls_lazily(local_ray):
    from dipstop.raytasks import ray_map

    pulled = []

    def calls():
        for k in range(20):
            pulled.append(k)
            yield (k,)

    results = ray_map(lambda k: k, calls())
    first = next(results)
    assert len(pulled) <= 2 * 2 + 1  # two tasks per CPU in flight, not all 20 submitted
    assert sorted([first, *results]) == list(range(20))
