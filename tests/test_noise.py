import numpy as np
import pytest

from dipstop.imageio import read_image
from dipstop.lab.datasets import list_images
from dipstop.noise import add_gaussian_noise, estimate_sigma, raw_sigma


def test_noise_is_reproducible_from_its_seed_and_clipped(smooth_rgb):
    clean = smooth_rgb / 255.0
    a, b = add_gaussian_noise(clean, 25, 3), add_gaussian_noise(clean, 25, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, add_gaussian_noise(clean, 25, 4))
    assert a.min() >= 0 and a.max() <= 1 and a.dtype == np.float32


@pytest.mark.parametrize("sigma, max_mae", [(15, 2.0), (25, 2.5), (50, 5.0)])
def test_sigma_estimate_on_cbsd68_is_within_the_stated_error(shared, sigma, max_mae):
    # benchmarks/sigma_estimation.py measures MAE 1.05 / 1.44 / 3.32 over all 68 images
    files = list_images(shared / "data" / "cbsd68")[::7]
    errs = []
    for i, f in enumerate(files):
        noisy = add_gaussian_noise(read_image(f).pixels, sigma, seed=i)
        errs.append(estimate_sigma(np.rint(noisy * 255) / 255) - sigma)
    assert np.mean(np.abs(errs)) < max_mae, errs


def test_the_pca_estimator_tells_texture_from_noise_where_the_wavelet_one_cannot():
    """The coffee photo's fine texture reads as noise to the wavelet MAD (6.9 at sigma 5);
    the patch estimator leaves it in the large eigenvalues."""
    from skimage import data

    clean = data.coffee()[:256, :256] / 255.0
    noisy = np.rint(add_gaussian_noise(clean, 5, seed=0) * 255) / 255
    assert abs(raw_sigma(noisy) - 5) < 0.5 < 1.5 < raw_sigma(noisy, "wavelet") - 5


def test_the_pca_estimators_second_round_leaves_out_the_clipped_patches():
    """Noise clipped at black reads low; the second round, without the patches within 2
    sigma of 0 or 255, gets most of it back."""
    from dipstop.noise import _patch_noise_sd

    clean = np.full((128, 128, 3), 0.5)
    clean[:, :40] = 0.0
    noisy = np.rint(add_gaussian_noise(clean, 40, seed=0) * 255) / 255
    first = _patch_noise_sd(noisy * 255.0, 3, None)
    assert first < 34 and raw_sigma(noisy) > first + 2.5


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: raw_sigma(np.zeros((5, 40))), "image is 40 x 5: too small to estimate its noise"),
        (lambda: estimate_sigma(np.zeros((64, 64)), "mad"),
         "sigma estimator must be 'pca' or 'wavelet', got 'mad'"),
    ],
)  # fmt: skip
def test_an_estimate_that_cannot_be_made_is_one_line_naming_the_fix(call, match):
    from dipstop.errors import DipstopError

    with pytest.raises(DipstopError, match=match) as err:
        call()
    message = str(err.value)
    assert "\n" not in message and ("give sigma" in message or "leave it out" in message)


def test_a_small_image_is_estimated_by_the_wavelet_mad_a_photo_by_patch_covariance(shared):
    """Below about 370 x 370 colour pixels the patches are too few for their covariance:
    "pca" falls back to "wavelet"; a whole CBSD68 photo has enough."""
    photo = read_image(list_images(shared / "data" / "cbsd68")[0]).pixels
    noisy = np.rint(add_gaussian_noise(photo, 25, seed=0) * 255) / 255
    small = noisy[:360, :360]
    assert estimate_sigma(small) == estimate_sigma(small, "wavelet")
    assert noisy.shape[0] * noisy.shape[1] > 370 * 370
    assert abs(estimate_sigma(noisy) - estimate_sigma(noisy, "wavelet")) > 1e-3
