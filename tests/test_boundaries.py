"""Boundaries and exact values that a plausible off-by-one or scale slip would move.

since-best at t* = T - S + 1 (the rule cannot fire, the tail decides), the running averages'
exact values, CIFS's formula and its 8-bit rounding, 16-to-8-bit and float-to-integer
conversions that round (never truncate), 1-based peak and stop iterations in summaries, and
synthetic noise of std sigma / 255. Each pins a value that tools/mutation.py mutates.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dipstop.averaging import BoxMean, Ema
from dipstop.codecs import quantise, tensor_to_uint8
from dipstop.criteria import CifsCriterion, Context
from dipstop.criteria.cifs import cifs_value, paper_lambda
from dipstop.imageio import decode_image, encode_image, join_array, split_array
from dipstop.noise import add_gaussian_noise, estimate_sigma
from dipstop.policies import AverageAt, MeanSinceBest, RawAtBest
from dipstop.stopping import detect_offline

T, S = 10, 3


def since_best(t_star: int, end: int = T) -> float:
    """since-best's image for outputs y_t = t, the rule's running minimum moving at t = 1 and
    at `t_star`, the run ending at `end`."""
    p = MeanSinceBest()
    p.begin(max_iters=T, patience=S)
    for t in range(1, end + 1):
        p.keep(p.view(torch.tensor(float(t)), {}), improved=t in (1, t_star))
    return float(p.result())


@pytest.mark.parametrize("t_star", [T - S - 1, T - S, T - S + 1, T - S + 2, T])
def test_since_best_near_the_end_is_the_mean_of_the_last_s_plus_1_outputs(t_star):
    """Fired at T (t* = T - S) or not at all (t* > T - S): y_{T-S} .. y_T either way."""
    if t_star == T - S - 1:  # fired at t* + S = T - 1, the run stops there
        assert since_best(t_star, end=t_star + S) == np.mean(range(t_star, t_star + S + 1))
    else:
        assert since_best(t_star) == np.mean(range(T - S, T + 1)) == 8.5


def test_since_best_at_t_star_t_minus_s_plus_1_is_not_the_s_outputs_since_t_star():
    assert since_best(T - S + 1) != np.mean(range(T - S + 1, T + 1))
    p = MeanSinceBest()
    p.begin(max_iters=T, patience=S)
    assert p.average_name == f"box{S + 1}"


def test_running_averages_have_their_exact_values():
    ema = Ema(0.9)
    got = [float(ema.update(torch.tensor([v], dtype=torch.float64))) for v in (0.0, 1.0, 1.0)]
    assert got == pytest.approx([0.0, 0.1, 0.19], abs=1e-12)
    box = BoxMean(3)
    got = [float(box.update(torch.tensor([v], dtype=torch.float64))) for v in (1, 2, 3, 4, 5)]
    assert got == pytest.approx([1.0, 1.5, 2.0, 3.0, 4.0], abs=1e-12)


def test_raw_and_average_policies_keep_the_image_of_their_moment():
    """raw: y_{t*}; ema@best: the average at t* (not the average that moved on after it);
    ema@stop: the average at the end."""
    outputs = [torch.tensor([v]) for v in (4.0, 2.0, 8.0, 6.0)]
    improved = [True, True, False, False]
    raw = RawAtBest()
    best, stop = AverageAt("ema", "best"), AverageAt("ema", "stop")
    at_best, at_stop = best.averages()["ema"], stop.averages()["ema"]
    for y, better in zip(outputs, improved, strict=True):
        raw.keep(raw.view(y, {}), better)
        best.keep(best.view(y, {"ema": at_best.update(y)}), better)
        stop.keep(stop.view(y, {"ema": at_stop.update(y)}), better)
    assert float(raw.result()) == 2.0
    ema2 = 0.99 * 4.0 + 0.01 * 2.0
    ema4 = 0.99 * (0.99 * ema2 + 0.01 * 8.0) + 0.01 * 6.0
    assert float(best.result()) == pytest.approx(ema2, abs=1e-6)
    assert float(stop.result()) == pytest.approx(ema4, abs=1e-6)


def test_cifs_is_lam_times_mse_plus_bytes_per_pixel_squared():
    assert cifs_value(0.01, 8192, 4096, lam=100.0) == pytest.approx(1.0 + 4.0)
    series = {"mse": np.array([0.01, 0.02]), "jpeg_bytes": np.array([8192, 4096])}
    values = CifsCriterion.values(series, Context(4096, lam=50.0))
    np.testing.assert_allclose(values, [0.5 + 4.0, 1.0 + 1.0])
    assert paper_lambda(2.0, 3, 5) == 30.0


def test_cifs_quantises_outputs_by_rounding():
    y = torch.tensor([100.6, 100.4, 0.0, 255.0]).reshape(1, 1, 1, 4) / 255
    assert tensor_to_uint8(y)[0, :, 0].tolist() == [101, 100, 0, 255]
    assert quantise(np.array([100.6, 100.4]) / 255).tolist() == [101, 100]


def test_16_to_8_bit_conversion_rounds():
    """A 16-bit image written where only 8 bits fit becomes round(v / 257), not v >> 8."""
    values = np.array([[0, 200, 257 * 100 + 129, 257 * 100 + 128], [65535, 128, 129, 40000]])
    sixteen = values.astype(np.uint16)
    back = decode_image(encode_image(sixteen, ".bmp"))
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, np.rint(values / 257.0).astype(np.uint8))
    assert back[0, 2] == 101 and back[0, 3] == 100 and back[0, 1] == 1


def test_float_to_integer_conversions_round():
    like = split_array(np.zeros((2, 2), np.uint16))
    pixels = np.array([1000.7, 1000.3, 0.0, 65535.0]).reshape(2, 2, 1) / 65535
    assert join_array(pixels, like).tolist() == [[1001, 1000], [0, 65535]]
    written = np.array([[100.6, 100.4], [0.0, 255.0]]) / 255
    assert decode_image(encode_image(written, ".png")).tolist() == [[101, 100], [0, 255]]


def test_integer_images_read_as_value_over_the_types_maximum():
    assert split_array(np.full((2, 2), 255, np.uint8)).pixels.max() == 1.0
    assert split_array(np.full((2, 2), 65535, np.uint16)).pixels.max() == 1.0
    assert split_array(np.full((2, 2), 51, np.uint8)).pixels.max() == np.float32(51 / 255)


@pytest.fixture(scope="module")
def fitted(smooth_rgb):
    """A tiny denoise with a "clean" image, so that its result has a PSNR series: a flat one
    at the photo's mean, whose PSNR peaks before the end as the outputs gain detail."""
    from dipstop import DenoiseResult, denoise

    photo = smooth_rgb[:48, :48]
    noisy = np.rint(add_gaussian_noise(photo / 255, 25, seed=0) * 255).astype(np.uint8)
    flat = np.full_like(photo, int(photo.mean()))
    _, res = denoise(noisy, sigma=25.0, lam=0.01, width=8, max_iters=24, patience=3,
                     clean=flat, precision="fp32", ensemble=1)  # fmt: skip
    assert isinstance(res, DenoiseResult)  # one fit (ensemble=1): its own series
    return res


def test_summary_peak_iteration_is_1_based_and_exact(fitted):
    psnr = fitted.series["psnr"]
    assert len(psnr) == fitted.iterations_run
    assert 1 < int(np.argmax(psnr)) + 1 < fitted.iterations_run  # a peak inside the run
    assert fitted.peak_iteration == int(np.argmax(psnr)) + 1
    assert fitted.peak_psnr == float(psnr[fitted.peak_iteration - 1]) == float(psnr.max())
    assert fitted.summary()["peak_iteration"] == fitted.peak_iteration


def test_summary_stop_iteration_is_1_based_t_star(fitted):
    e = CifsCriterion.values(fitted.series, Context(48 * 48, fitted.lam))
    assert fitted.stop_iteration == detect_offline(e, 3) + 1
    if fitted.stopped_early:  # the rule fired S iterations after t*
        assert fitted.iterations_run == fitted.stop_iteration + 3


def test_a_recorded_runs_peak_t_is_1_based(image_folder):
    from dipstop.lab.runs import grid, run_one
    from dipstop.protocols import get_protocol

    proto = get_protocol("cpu").with_(width=8, crop=48, max_iters=8, patience=3)
    spec = grid(image_folder, [25], proto, images=["a.png"], criteria={"cifs": {"every": 1}})[0]
    _, series, summary = run_one(spec)
    assert summary["peak_t"] == int(np.argmax(series["psnr"])) + 1
    assert series["psnr"][summary["peak_t"] - 1] == summary["peak_psnr"]


def test_synthetic_noise_is_the_seeds_draw_with_std_sigma_over_255():
    clean = np.full((512, 512), 0.5)
    noisy = add_gaussian_noise(clean, 20, seed=7)
    expected = np.clip(0.5 + np.random.default_rng(7).normal(0.0, 20 / 255, clean.shape), 0, 1)
    np.testing.assert_array_equal(noisy, expected.astype(np.float32))
    # 262,144 draws: the std's relative error is ~0.14%, sigma / 256 is 0.39% off
    assert float(np.std(noisy - clean)) == pytest.approx(20 / 255, rel=0.002)


def test_synthetic_noise_is_clipped_to_the_unit_range():
    noisy = add_gaussian_noise(np.full((64, 64), 0.98), 50, seed=0)
    assert noisy.max() == 1.0 and noisy.min() >= 0.0 and (noisy == 1.0).mean() > 0.3


def test_sigma_of_an_8_bit_image_is_that_of_its_float_values():
    rng = np.random.default_rng(3)
    noisy = np.clip(128 + rng.normal(0, 15, (96, 96, 3)), 0, 255).astype(np.uint8)
    assert estimate_sigma(noisy) == pytest.approx(estimate_sigma(noisy / 255.0), abs=1e-9)


def test_crossfade_is_a_raised_cosine_centred_in_the_overlap():
    """Tiles at 0 and 32 of side 64 share 32 pixels; the 16-pixel crossfade sits at 40..56."""
    from dipstop.tiling import axis_weights

    first, second = axis_weights(96, [0, 32], 64, 16)
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(16) + 0.5) / 16)
    np.testing.assert_allclose(second[8:24], rise, atol=1e-12)
    np.testing.assert_allclose(first[40:56], 1 - rise, atol=1e-12)
    assert (first[:40] == 1).all() and (first[56:] == 0).all()
    assert (second[:8] == 0).all() and (second[24:] == 1).all()


def test_identity_tiles_of_a_strip_lower_than_a_tile_give_the_input_back(monkeypatch):
    """Tiles of 48 x 64 (the image is lower than a tile): each region is as high as the
    image and as wide as a tile."""
    from dipstop import tiled_run
    from dipstop.api import DenoiseResult, denoise_tiled

    shapes = []

    def identity(image, clean, options, **_):
        kw = vars(options)
        shapes.append(image.shape)
        result = DenoiseResult(stop_iteration=3, iterations_run=5, stopped_early=True,
                               sigma=kw["sigma"], sigma_estimated=False, lam=kw["lam"],
                               paper_lambda=0.0, settings={"width": 8}, series={},
                               seconds=0.01)  # fmt: skip
        return image, result

    monkeypatch.setattr(tiled_run, "fit_one", identity)
    strip = np.random.default_rng(0).random((48, 150), dtype=np.float32)
    out, res = denoise_tiled(strip, tile=64, overlap=16, sigma=20.0, lam=30.0, ensemble=1,
                             wiener=False)  # the blend itself  # fmt: skip
    assert len(res.tiles) == 3 and set(shapes) == {(48, 64, 1)}
    np.testing.assert_allclose(out, strip, atol=1e-6)


def test_lam_without_a_size_is_the_smallest_calibrated_sizes():
    from dipstop.lambda_table import lam_for_sigma

    table = {"entries": [{"sigma": 10, "lam": 10.0, "pixels": 10_000},
                         {"sigma": 10, "lam": 40.0, "pixels": 160_000}]}  # fmt: skip
    assert lam_for_sigma(10, table) == pytest.approx(10.0)
    assert lam_for_sigma(10, table, pixels=160_000) == pytest.approx(40.0)
