"""Synthetic noise and blind noise-level estimation.

The estimator is Donoho and Johnstone's wavelet MAD estimator (median absolute deviation of
the finest diagonal wavelet coefficients / 0.6745), as implemented by scikit-image's
`estimate_sigma`, averaged over colour channels. Its error on CBSD68 is measured by
`benchmarks/sigma_estimation.py` and reported in the README.
"""

from __future__ import annotations

import numpy as np
from skimage.restoration import estimate_sigma as _skimage_estimate_sigma


def add_gaussian_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """clip(clean + N(0, (sigma/255)^2), 0, 1) for a float image in [0, 1], reproducible by seed."""
    rng = np.random.default_rng(seed)
    noisy = clean + rng.normal(0.0, sigma / 255.0, size=clean.shape)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def estimate_sigma(image: np.ndarray) -> float:
    """Noise standard deviation on the 0-255 scale of an H x W (x C) float image in [0, 1].

    >>> rng = np.random.default_rng(0)
    >>> noisy = np.clip(0.5 + rng.normal(0, 25 / 255, (128, 128)), 0, 1)
    >>> round(estimate_sigma(noisy))
    25
    """
    channel_axis = -1 if image.ndim == 3 else None
    sigma = _skimage_estimate_sigma(image, channel_axis=channel_axis, average_sigmas=True)
    return float(sigma) * 255.0
