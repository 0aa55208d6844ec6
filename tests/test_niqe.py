"""NIQE: parity with the shared reference scores, monotonicity in noise, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dipstop.criteria import niqe as niqe_mod
from dipstop.criteria.niqe import NiqeCriterion, imresize_half, niqe, pristine_model
from dipstop.errors import DipstopError

REFERENCE = Path("testvectors/niqe/niqe_reference.json")


def _reference(shared: Path) -> dict[str, float]:
    return json.loads((shared / REFERENCE).read_text())["scores"]


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, f"cannot read {path}"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _image_path(shared: Path, name: str) -> Path:
    local = shared / REFERENCE.parent / name
    return local if local.is_file() else shared / "data" / name


@pytest.fixture
def fresh_model_cache():
    """Forget the loaded pristine model before and after a test that changes where it is."""
    pristine_model.cache_clear()
    yield
    pristine_model.cache_clear()


# docs/design.md and docs/reproduction.md: "with two blocks or more it reproduces the LIVE
# reference scores within 5e-4" (largest deviation measured: 4.53e-4, cbsd68/119082.png)
CLAIMED = 5e-4


def test_matches_reference_scores_within_the_documented_tolerance(shared):
    ref = _reference(shared)
    assert len(ref) >= 8
    images = {name: _read_rgb(_image_path(shared, name)) for name in ref}
    for name, rgb in images.items():  # the claim is for images of two 96x96 blocks or more
        assert (rgb.shape[0] // 96) * (rgb.shape[1] // 96) >= 2, name
    dev = {name: abs(niqe(images[name]) - score) for name, score in ref.items()}
    assert max(dev.values()) < CLAIMED, dev


def test_noisier_image_scores_worse(shared):
    clean = _read_rgb(shared / "data" / "cbsd68" / "108005.png")
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0.0, 15.0, clean.shape), 0, 255).round().astype(np.uint8)
    assert niqe(noisy) > niqe(clean) + 1.0


def test_criterion_and_gray_input_agree_with_niqe(shared):
    rgb = _read_rgb(shared / "data" / "cbsd68" / "253027.png")
    score = niqe(rgb)
    assert NiqeCriterion()(rgb) == score
    assert niqe(niqe_mod.to_luminance(rgb)) == pytest.approx(score, abs=1e-9)


def test_too_small_image_is_an_error():
    with pytest.raises(DipstopError, match=r"at least 96x96.*got 80x300") as info:
        niqe(np.zeros((80, 300, 3), dtype=np.uint8))
    assert "\n" not in str(info.value)


def test_single_block_images_score_with_zero_distorted_covariance(shared):
    rgb = _read_rgb(shared / "data" / "cbsd68" / "108005.png")[100:228, 100:228]
    rng = np.random.default_rng(0)
    noisy = np.clip(rgb + rng.normal(0, 25, rgb.shape), 0, 255).astype(np.uint8)
    clean_score, noisy_score = niqe(rgb), niqe(noisy)
    assert np.isfinite(clean_score) and noisy_score > clean_score
    # by hand: one block's 36 features against the pristine model, cov_d = 0
    mu_p, cov_p = niqe_mod.pristine_model()
    im = niqe_mod.to_luminance(rgb)[:96, :96]
    half = niqe_mod.imresize_half(im / np.float32(255)).astype(np.float32) * np.float32(255)
    f = np.concatenate(
        [
            niqe_mod._block_features(niqe_mod._mscn(im), 96),
            niqe_mod._block_features(niqe_mod._mscn(half), 48),
        ],
        axis=1,
    )[0]
    d = mu_p - f
    assert clean_score == pytest.approx(np.sqrt(d @ np.linalg.pinv(cov_p / 2) @ d), rel=1e-9)


def test_missing_model_names_the_path(monkeypatch, tmp_path, fresh_model_cache):
    monkeypatch.setenv("DIPSTOP_MODELS", str(tmp_path))
    expected = tmp_path / "niqe" / "modelparameters.mat"
    with pytest.raises(DipstopError, match="not found") as info:
        niqe(np.full((192, 192), 128.0))
    assert str(expected) in str(info.value)
    with pytest.raises(DipstopError):
        NiqeCriterion()


def test_alpha_lookup_matches_brute_force_argmin():
    x = np.random.default_rng(1).standard_t(df=4, size=(64, 500)) - 0.1
    alpha, _, _ = niqe_mod._aggd(x)
    # Recompute r_norm the plain way, then MATLAB's min over the whole table.
    left = np.sqrt([np.mean(r[r < 0] ** 2) for r in x])
    right = np.sqrt([np.mean(r[r > 0] ** 2) for r in x])
    g = left / right
    r_hat = np.abs(x).mean(axis=1) ** 2 / (x**2).mean(axis=1)
    r_norm = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    brute = niqe_mod._GAM[np.argmin((niqe_mod._R_GAM[None, :] - r_norm[:, None]) ** 2, axis=1)]
    np.testing.assert_array_equal(alpha, brute)


def test_imresize_half_shape_and_constant():
    out = imresize_half(np.full((97, 50), 7.0))
    assert out.shape == (49, 25)
    np.testing.assert_allclose(out, 7.0, rtol=0, atol=1e-12)
