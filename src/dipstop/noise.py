"""Synthetic noise and blind noise-level estimation.

The estimator is Donoho and Johnstone's wavelet MAD estimator (median absolute deviation of
the finest diagonal wavelet coefficients / 0.6745), as implemented by scikit-image's
`estimate_sigma`, averaged over colour channels. On natural images it reads texture as noise
at low sigma and, because noisy pixels are clipped to [0, 255], underestimates high sigma
(by 14 at sigma 75 on CBSD68). dipstop maps the raw estimate back to the nominal sigma with
a monotone curve fitted on the training images (`fit_sigma_correction`, shipped as
data/sigma_correction.json); the error on CBSD68 is measured by
`benchmarks/sigma_estimation.py` and reported in the README.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources

import numpy as np
from skimage.restoration import estimate_sigma as _skimage_estimate_sigma


def add_gaussian_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """clip(clean + N(0, (sigma/255)^2), 0, 1) for a float image in [0, 1], reproducible by seed."""
    rng = np.random.default_rng(seed)
    noisy = clean + rng.normal(0.0, sigma / 255.0, size=clean.shape)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


CORRECTION_FILE = "sigma_correction.json"


def raw_sigma(image: np.ndarray) -> float:
    """The wavelet MAD estimate, 0-255 scale, of an H x W (x C) float image in [0, 1].

    >>> rng = np.random.default_rng(0)
    >>> noisy = np.clip(0.5 + rng.normal(0, 25 / 255, (128, 128)), 0, 1)
    >>> round(raw_sigma(noisy))
    25
    """
    channel_axis = -1 if image.ndim == 3 else None
    sigma = _skimage_estimate_sigma(image, channel_axis=channel_axis, average_sigmas=True)
    return float(sigma) * 255.0


@cache
def _correction() -> tuple[np.ndarray, np.ndarray]:
    doc = json.loads(resources.files("dipstop.data").joinpath(CORRECTION_FILE).read_text())
    return np.array(doc["mean_raw"]), np.array(doc["sigma"])


def estimate_sigma(image: np.ndarray) -> float:
    """Blind estimate of the Gaussian noise std, on the 0-255 scale, of an image.

    `image` is H x W or H x W x C: float in [0, 1], or uint8 / uint16 (scaled by the type's
    maximum). The raw wavelet estimate is mapped through the shipped correction curve.

    >>> rng = np.random.default_rng(0)
    >>> noisy = np.clip(128 + rng.normal(0, 25, (128, 128, 3)), 0, 255).astype(np.uint8)
    >>> 23 < estimate_sigma(noisy) < 27
    True
    """
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.integer):
        image = image / float(np.iinfo(image.dtype).max)
    raw, nominal = _correction()
    return float(np.interp(raw_sigma(image), raw, nominal))


def fit_sigma_correction(
    cleans: Sequence[np.ndarray], sigmas: Sequence[float], seed: int = 0
) -> dict[str, list[float]]:
    """Mean raw estimate per nominal sigma over clean images (8-bit quantised noisy copies).

    The mean is made non-decreasing so the map from raw estimate to sigma is monotone.
    """
    means = []
    for k, sigma in enumerate(sigmas):
        raws = [
            raw_sigma(np.rint(add_gaussian_noise(c, sigma, seed + 7919 * k + i) * 255) / 255)
            for i, c in enumerate(cleans)
        ]
        means.append(float(np.mean(raws)))
    mono = np.maximum.accumulate(np.array(means) + 1e-9 * np.arange(len(means)))
    return {"sigma": [float(s) for s in sigmas], "mean_raw": mono.tolist()}
