"""Warm starts (`warm_start`): a tiled run fits its first tile from random networks, then
every other fit from the first tile's network of the same seed; what it keeps lets a resumed
run start its tiles the same way."""

import argparse
import json

import numpy as np
import pytest
import torch

from dipstop import denoise
from dipstop.errors import DipstopError
from dipstop.fitting import Fitter
from dipstop.options import DenoiseOptions, add_arguments, from_args
from dipstop.results import DenoiseResult
from dipstop.single import fit_one

KW = dict(tile=64, overlap=16, tile_above=0, width=8, max_iters=6, patience=2, sigma=25.0,
          device="cpu")  # fmt: skip
TWO = {**KW, "ensemble": 2}  # each warm fit starts from the first tile's fit of its seed


pytestmark = pytest.mark.usefixtures("one_thread")


def _noisy(seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).random((100, 140, 3)).astype(np.float32)


def _tile_options(seed: int) -> DenoiseOptions:
    """A tile's fit as the tiled run makes it (sigma given, lam looked up at its size)."""
    return DenoiseOptions(width=8, max_iters=6, patience=2, sigma=25.0, seed=seed, tile=None,
                          ensemble=1, device="cpu")  # fmt: skip


def test_every_tile_after_the_first_starts_from_the_first_tiles_network_of_its_seed():
    noisy = _noisy()
    warm_img, warm = denoise(noisy, warm_start=True, **TWO)
    cold_img, cold = denoise(noisy, warm_start=False, **TWO)
    assert warm.members == 2 and len(warm.tiles) == 12
    seeds = [t.result.settings["seed"] for t in warm.tiles]
    assert seeds == [0, 1] * 6
    # the first tile's fits are cold fits, the same as a cold run's, and keep their networks
    box = warm.tiles[0]
    first = noisy[box.top : box.top + box.height, box.left : box.left + box.width]
    for j in (0, 1):
        np.testing.assert_array_equal(warm.tiles[j].result.series["mse"],
                                      cold.tiles[j].result.series["mse"])  # fmt: skip
        assert warm.tiles[j].result.network is not None
    starts = {j: fit_one(first, None, _tile_options(j), keep_network=True)[1].network
              for j in (0, 1)}  # fmt: skip
    # each other fit is that tile fitted from the network of its seed, and not a cold fit
    for k, run in enumerate(warm.tiles[2:], start=2):
        pixels = noisy[run.top : run.top + run.height, run.left : run.left + run.width]
        seed = seeds[k]
        _, alone = fit_one(pixels, None, _tile_options(seed), start=starts[seed])
        np.testing.assert_array_equal(run.result.series["mse"], alone.series["mse"])
        assert run.result.network is None
        assert not np.array_equal(run.result.series["mse"], cold.tiles[k].result.series["mse"])
    assert not np.array_equal(warm_img, cold_img)
    assert json.dumps(warm.summary(), default=str)  # the networks stay out of the report


def test_a_warm_run_resumes_from_its_kept_fits_and_never_from_a_cold_runs(tmp_path):
    noisy = _noisy(8)
    fresh, _ = denoise(noisy, warm_start=True, **TWO)
    folder = tmp_path / "photo.png.partial"
    first, _ = denoise(noisy, warm_start=True, resume_dir=folder, **TWO)
    kept = sorted(folder.glob("tile_*.pt"))
    assert len(kept) == 12 and np.array_equal(first, fresh)
    for path in kept[4:]:  # cut short after the first two tiles
        path.unlink()
    again, res = denoise(noisy, warm_start=True, resume_dir=folder, **TWO)
    assert np.array_equal(again, fresh) and "resumed 4 of 12 tiles" in " ".join(res.notes)
    for path in sorted(folder.glob("tile_*.pt"))[:2]:  # the first tile's fits lost: refitted,
        path.unlink()  # and the others blended as kept
    again, res = denoise(noisy, warm_start=True, resume_dir=folder, **TWO)
    assert np.array_equal(again, fresh) and "resumed 10 of 12 tiles" in " ".join(res.notes)
    cold, res = denoise(noisy, warm_start=False, resume_dir=folder, **TWO)  # none reused
    assert not any("resumed" in n for n in res.notes) and not np.array_equal(cold, fresh)


def test_a_result_keeps_its_network_through_state_but_not_in_its_summary():
    _, r = fit_one(_noisy()[:64, :64], None, _tile_options(0), keep_network=True)
    assert r.network and all(torch.is_tensor(v) for v in r.network.values())
    back = DenoiseResult.from_state(r.state())
    assert back.network.keys() == r.network.keys()
    assert all(torch.equal(back.network[k], v) for k, v in r.network.items())
    assert "network" not in r.summary()
    _, cold = fit_one(_noisy()[:64, :64], None, _tile_options(0))
    assert cold.network is None


def test_the_flag_and_a_bad_value():
    p = argparse.ArgumentParser()
    add_arguments(p, ["warm_start"])
    assert from_args(p.parse_args(["--warm-start"])).warm_start is True
    assert from_args(p.parse_args(["--no-warm-start"])).warm_start is False
    assert from_args(p.parse_args([])).warm_start is None  # the quality preset's
    with pytest.raises(DipstopError, match="warm_start must be True or False, got 'yes'"):
        DenoiseOptions(warm_start="yes").check()



def test_the_kept_network_is_the_one_at_t_star_not_at_the_stop():
    """The start the other tiles get is the network of the first tile's kept image (the
    weights after step t*, or a step or two later: rows are scored while the fit runs on),
    not the one at the stop, which has fitted S more iterations of noise."""
    x = _noisy()[:64, :64]
    opts = _tile_options(0).replace(max_iters=80, patience=5, precision="fp32")
    _, r = fit_one(x, None, opts, keep_network=True)
    assert r.stopped_early and r.iterations_run == r.stop_iteration + 5
    settings = opts.fit_protocol().fit_settings(0).with_precision("fp32")
    fitter = Fitter(torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1), settings, "cpu")
    same = [it.t for it in fitter.run(r.iterations_run + 2)
            if all(torch.equal(v, r.network[k]) for k, v in fitter.net.state_dict().items())]
    assert len(same) == 1 and r.stop_iteration <= same[0] <= r.stop_iteration + 2


def test_the_default_and_fast_start_their_tiles_warm_and_best_cold():
    """What users get: the default and `--quality fast` are warm unless told otherwise,
    `--quality best` cold."""
    noisy = _noisy(10)
    default, _ = denoise(noisy, **KW)
    warm, _ = denoise(noisy, warm_start=True, ensemble=1, **KW)
    cold, _ = denoise(noisy, warm_start=False, **KW)
    assert np.array_equal(default, warm) and not np.array_equal(default, cold)
    fast, _ = denoise(noisy, quality="fast", **KW)  # KW's S: the same fits as the default
    assert np.array_equal(fast, default)
    best, _ = denoise(noisy, quality="best", ensemble=1, **KW)
    assert np.array_equal(best, cold)
