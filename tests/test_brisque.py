"""BRISQUE via OpenCV contrib: clean beats noisy, RGB and gray inputs, missing model files."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from dipstop.criteria.brisque import BrisqueCriterion, brisque
from dipstop.errors import DipstopError
from dipstop.models import model_path


@pytest.fixture(scope="module")
def clean_rgb(shared) -> np.ndarray:
    """CBSD68 101085.png (481 x 321) in RGB order."""
    bgr = cv2.imread(str(shared / "data" / "cbsd68" / "101085.png"), cv2.IMREAD_COLOR)
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_clean_scores_lower_than_noisy_and_matches_the_recorded_value(clean_rgb):
    crit = BrisqueCriterion()
    noise = np.random.default_rng(0).normal(0.0, 25.0, clean_rgb.shape)
    noisy = np.clip(np.rint(clean_rgb + noise), 0, 255).astype(np.uint8)
    clean_score, noisy_score = crit(clean_rgb), crit(noisy)
    assert clean_score < noisy_score
    # ../shared/models/brisque/SOURCE.md: 13.34 for the clean image (noisy: ~51.8, seed-dependent)
    assert clean_score == pytest.approx(13.34, abs=0.05)
    assert noisy_score > 40


def test_rgb_scores_as_opencv_scores_the_same_pixels_in_bgr_order(clean_rgb):
    bgr = cv2.cvtColor(clean_rgb, cv2.COLOR_RGB2BGR)
    expected = cv2.quality.QualityBRISQUE_compute(
        bgr, str(model_path("brisque_model")), str(model_path("brisque_range"))
    )[0]
    assert brisque(clean_rgb) == pytest.approx(expected, rel=1e-6)


def test_gray_input_is_accepted(clean_rgb):
    crit = BrisqueCriterion()
    gray = cv2.cvtColor(clean_rgb, cv2.COLOR_RGB2GRAY)
    assert crit(gray) == crit(clean_rgb)
    assert crit(gray[:, :, None]) == crit(gray)


def test_flat_image_has_no_score():
    assert math.isnan(BrisqueCriterion()(np.full((64, 64, 3), 128, np.uint8)))


def test_bad_input_is_rejected():
    crit = BrisqueCriterion()
    with pytest.raises(ValueError, match="uint8"):
        crit(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        crit(np.zeros((32, 32, 4), np.uint8))


def test_missing_model_file_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DIPSTOP_MODELS", str(tmp_path))
    with pytest.raises(DipstopError, match="brisque_model_live.yml") as info:
        BrisqueCriterion()
    assert str(tmp_path) in str(info.value)
