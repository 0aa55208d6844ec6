"""The Wiener filter that finishes a run (`dipstop.wiener`), alone and as `denoise` applies it."""

import argparse

import numpy as np
import pytest

import dipstop.wiener as wiener
from dipstop import denoise
from dipstop.metrics import psnr
from dipstop.options import DenoiseOptions, add_arguments, from_args
from dipstop.wiener import OPPONENT, wiener_filter

pytestmark = pytest.mark.usefixtures("one_thread")


def _scene(h: int = 48, w: int = 40) -> np.ndarray:
    """A smooth colour ramp with a bright square: edges and flat parts."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.2 + 0.5 * xx, 0.3 + 0.4 * yy, 0.5 - 0.3 * xx * yy], axis=-1)
    img[h // 4 : h // 2, w // 4 : w // 2] = 0.9
    return img.astype(np.float32)


def _noisy(clean: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma / 255, clean.shape)
    return np.clip(clean + noise, 0, 1).astype(np.float32)


def test_the_opponent_transform_is_orthonormal_so_white_noise_keeps_its_sigma():
    assert np.allclose(OPPONENT @ OPPONENT.T, np.eye(3))


@pytest.mark.parametrize("shape", [(48, 40, 3), (48, 40), (48, 40, 1), (5, 7, 3)])
def test_a_perfect_pilot_removes_most_of_the_noise_in_every_image_form(shape):
    clean = _scene(*shape[:2])
    clean = clean.mean(axis=-1) if len(shape) == 2 else clean[..., : shape[2]]
    noisy = _noisy(clean, 25)
    out = wiener_filter(noisy, clean, 25)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert psnr(out, clean) > psnr(noisy, clean) + 4


def test_a_better_pilot_gives_a_better_image():
    clean = _scene()
    noisy = _noisy(clean, 25)
    rough = _noisy(clean, 10, seed=1)  # a pilot with errors of its own
    assert psnr(wiener_filter(noisy, clean, 25), clean) > psnr(
        wiener_filter(noisy, rough, 25), clean
    )


def test_a_vanishing_sigma_keeps_the_noisy_image():
    clean = _scene()
    noisy, rough = _noisy(clean, 25), _noisy(clean, 10, seed=1)
    assert np.abs(wiener_filter(noisy, rough, 1e-6) - noisy).max() < 1e-4


def test_bands_give_the_image_one_pass_gives(monkeypatch):
    clean = _scene(64, 50)
    noisy = _noisy(clean, 25)
    whole = wiener_filter(noisy, clean, 25, collaborative=0)
    monkeypatch.setattr(wiener, "BAND_COEFFICIENTS", 64 * 22 * 3)  # three patch rows a band
    banded = wiener_filter(noisy, clean, 25, collaborative=0)
    assert np.abs(whole - banded).max() < 1e-5


def test_shapes_must_match():
    with pytest.raises(ValueError, match="differ in shape"):
        wiener_filter(np.zeros((8, 8)), np.zeros((8, 9)), 25)


KW = dict(width=8, max_iters=8, patience=3, sigma=25.0, device="cpu", tile=None)


def test_denoise_finishes_with_the_filter_by_default_and_says_so():
    clean = _scene()
    noisy = _noisy(clean, 25)
    out, result = denoise(noisy, clean=clean, **KW)
    fits, plain = denoise(noisy, clean=clean, wiener=False, **KW)
    assert np.array_equal(out, wiener_filter(noisy, fits, 25.0, basic=0.7))
    assert result.settings["wiener"] is True and "wiener" not in plain.settings
    assert result.settings["basic"] == 0.7
    assert result.fit_psnr == pytest.approx(plain.psnr)
    assert result.psnr == pytest.approx(psnr(out, clean))


@pytest.mark.parametrize("paper", [{"output": "raw"}, {"protocol": "paper", "max_iters": 8}])
def test_the_papers_settings_return_the_fits_image_unless_asked(paper):
    clean = _scene()
    noisy = _noisy(clean, 25)
    kw = {**KW, **paper}
    out, result = denoise(noisy, **kw)
    asked, _ = denoise(noisy, wiener=True, **kw)
    assert "wiener" not in result.settings
    assert np.array_equal(asked, wiener_filter(noisy, out, 25.0))  # and no basic estimate


def test_every_preset_filters_and_the_flag_turns_it_off():
    for quality in ("fast", "default", "best"):
        assert DenoiseOptions(quality=quality).preset_applied().wiener is True
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert from_args(p.parse_args(["--no-wiener"])).preset_applied().wiener is False
    assert from_args(p.parse_args([])).wiener is None


def test_kept_fits_are_shared_by_runs_with_and_without_the_filter(tmp_path):
    clean = _scene(80, 80)
    noisy = _noisy(clean, 25)
    kw = dict(width=8, max_iters=6, patience=2, sigma=25.0, device="cpu", tile=64, overlap=16,
              tile_above=0, ensemble=1, resume_dir=tmp_path)  # fmt: skip
    plain, _ = denoise(noisy, wiener=False, **kw)
    kept = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    out, _ = denoise(noisy, **kw)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == kept
    assert np.array_equal(out, wiener_filter(noisy, plain, 25.0, basic=0.7))


def test_every_preset_blends_the_fits_with_bm3ds_basic_estimate_unless_told():
    """By default the pilot is 0.3 the fits' image and 0.7 BM3D's basic estimate (chosen on
    whole CBSD432 photos); `basic` sets the share, 0 keeps the fits' image alone."""
    for quality in ("fast", "default", "best"):
        assert DenoiseOptions(quality=quality).preset_applied().basic == 0.7
    assert DenoiseOptions(output="raw", wiener=True).preset_applied().basic == 0.0
    clean = _scene()
    noisy = _noisy(clean, 50)
    kw = {**KW, "sigma": 50.0}
    out, result = denoise(noisy, **kw)
    fits, _ = denoise(noisy, wiener=False, **kw)
    assert result.settings["basic"] == 0.7
    assert np.array_equal(out, wiener_filter(noisy, fits, 50.0, basic=0.7))
    alone, told = denoise(noisy, basic=0.0, **kw)
    assert told.settings["basic"] == 0.0
    assert np.array_equal(alone, wiener_filter(noisy, fits, 50.0))
    assert np.abs(alone - out).max() > 1e-2


def test_a_whole_share_of_the_basic_estimate_leaves_the_given_pilot_out():
    clean = _scene()
    noisy, rough = _noisy(clean, 25), _noisy(clean, 12, seed=1)
    whole = wiener_filter(noisy, clean, 25, basic=1.0)
    assert np.abs(whole - wiener_filter(noisy, rough, 25, basic=1.0)).max() < 1e-5
    assert np.abs(whole - wiener_filter(noisy, rough, 25, basic=0.9)).max() > 1e-3


def test_the_gate_keeps_the_pilot_where_its_residual_is_noise():
    """Where the pilot is right (here: the clean image), its residual is noise, and the gated
    filter returns the pilot nearly unchanged; the classical filter takes the noisy
    coefficients wherever the pilot has energy, edges included, and keeps their noise."""
    clean = _scene(64, 64)
    noisy = _noisy(clean, 25)
    gated = wiener_filter(noisy, clean, 25, passes=1, collaborative=0)
    plain = wiener_filter(noisy, clean, 25, gated=False, passes=1, collaborative=0)
    assert psnr(gated, clean) > psnr(plain, clean) + 8  # 49.3 against 38.5 dB
    assert psnr(gated, clean) > 47  # a gate that let pure noise in (no sigma^2 taken): 43.8


def test_the_gate_gives_back_the_texture_a_pilot_smoothed():
    rng = np.random.default_rng(2)
    clean = _scene(64, 64)
    texture = 0.15 * np.sin(np.arange(64) * 1.3)[:, None, None]
    truth = np.clip(clean + texture, 0, 1)
    noisy = np.clip(truth + rng.normal(0, 10 / 255, truth.shape), 0, 1).astype(np.float32)
    pilot = np.clip(clean + texture / 3, 0, 1).astype(np.float32)  # the texture at a third
    assert psnr(wiener_filter(noisy, pilot, 10, collaborative=0), truth) > psnr(pilot, truth) + 6


def test_the_cli_says_what_the_filter_added_and_no_wiener_turns_it_off(tmp_path, capsys):
    import cv2

    from dipstop.cli import main

    clean = _scene()
    for name, img in (("clean", clean), ("noisy", _noisy(clean, 25))):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.round(img * 255).astype(np.uint8))
    run = ["denoise", str(tmp_path / "noisy.png"), "--clean", str(tmp_path / "clean.png"),
           "--width", "8", "-T", "6", "-S", "2", "--sigma", "25", "--threads", "1"]  # fmt: skip
    assert main([*run, "-o", str(tmp_path / "a.png")]) == 0
    assert "before the Wiener filter" in capsys.readouterr().out
    assert main([*run, "-o", str(tmp_path / "b.png"), "--no-wiener"]) == 0
    assert "Wiener" not in capsys.readouterr().out


def test_the_default_is_two_passes_then_0_7_of_the_way_to_the_collaborative_stage():
    clean = _scene()
    noisy, rough = _noisy(clean, 25), _noisy(clean, 12, seed=1)
    solo = {"collaborative": 0}
    once = wiener_filter(noisy, rough, 25, passes=1, **solo)
    twice = wiener_filter(noisy, rough, 25, **solo)
    assert np.abs(twice - wiener_filter(noisy, once, 25, passes=1, **solo)).max() < 1e-5
    assert np.abs(twice - once).max() > 1e-3
    group = wiener_filter(noisy, rough, 25, collaborative=1)  # the stage's image alone
    inside = (twice > 0.02) & (twice < 0.98) & (group > 0.02) & (group < 0.98)  # unclipped
    blend = wiener_filter(noisy, rough, 25)
    assert np.abs(blend - (twice + 0.7 * (group - twice)))[inside].max() < 1e-5
    assert np.abs(group - twice).max() > 1e-2
