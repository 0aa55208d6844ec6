"""Synthetic noise and blind noise-level estimation.

The estimator is Donoho and Johnstone's wavelet MAD estimator (median absolute deviation of
the finest diagonal wavelet coefficients / 0.6745), as implemented by scikit-image's
`estimate_sigma`, averaged over colour channels. On natural images it reads texture as noise
at low sigma and, because noisy pixels are clipped to [0, 255], underestimates high sigma
(by 14 at sigma 75 on CBSD68). dipstop maps the raw estimate back to the nominal sigma with
a monotone curve fitted on the training images (`fit_sigma_correction`, shipped as
data/sigma_correction.json); the error on CBSD68 is measured by
`benchmarks/sigma_estimation.py` and reported in the README.

References
----------
Donoho, Johnstone, "Ideal spatial adaptation by wavelet shrinkage", Biometrika 81(3),
1994 (the MAD estimator).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources

import numpy as np
from skimage.restoration import estimate_sigma as _skimage_estimate_sigma


def add_gaussian_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Add clipped Gaussian noise to a clean image, reproducibly.

    Computes clip(clean + N(0, (sigma/255)^2), 0, 1): the synthetic noise of the paper's
    experiments, drawn from NumPy's default generator seeded with `seed`, so the same
    (image, sigma, seed) always gives the same noisy image.

    Parameters
    ----------
    clean : ndarray
        Float image in [0, 1], any shape (H x W or H x W x C).
    sigma : float
        Noise standard deviation on the 0-255 scale.
    seed : int
        Seed of the noise.

    Returns
    -------
    noisy : ndarray of float32
        The noisy image, same shape, clipped to [0, 1].

    Examples
    --------
    >>> clean = np.full((64, 64), 0.5)
    >>> noisy = add_gaussian_noise(clean, 25, seed=1)
    >>> noisy.dtype, np.array_equal(noisy, add_gaussian_noise(clean, 25, seed=1))
    (dtype('float32'), True)
    >>> round(float(np.std(noisy - clean)) * 255)
    25
    """
    rng = np.random.default_rng(seed)
    noisy = clean + rng.normal(0.0, sigma / 255.0, size=clean.shape)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


CORRECTION_FILE = "sigma_correction.json"


def raw_sigma(image: np.ndarray) -> float:
    """The uncorrected wavelet MAD noise estimate of a float image, on the 0-255 scale.

    scikit-image's `estimate_sigma` (Donoho and Johnstone's estimator), averaged over
    channels. `estimate_sigma` maps this raw value through the shipped correction curve.

    Parameters
    ----------
    image : ndarray
        H x W or H x W x C float image in [0, 1].

    Returns
    -------
    float
        The raw estimate of the noise std, 0-255 scale.

    Examples
    --------
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

    The raw wavelet estimate (`raw_sigma`) is mapped through the correction curve shipped as
    data/sigma_correction.json, which undoes its bias on natural images (texture read as
    noise at low sigma, clipping hiding noise at high sigma). `dipstop.denoise` uses it when
    no sigma is given.

    Parameters
    ----------
    image : ndarray
        H x W or H x W x C: float in [0, 1], or uint8 / uint16 (scaled by the type's
        maximum).

    Returns
    -------
    float
        The estimated noise standard deviation, 0-255 scale.

    Examples
    --------
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
    """Fit the correction curve of `estimate_sigma`: mean raw estimate per nominal sigma.

    Each clean image gets noise at each sigma (quantised to 8 bits, as a saved noisy image
    would be) and its `raw_sigma` is averaged over the images. The means are made
    non-decreasing so the map from raw estimate to sigma is monotone.

    Parameters
    ----------
    cleans : sequence of ndarray
        Clean float images in [0, 1].
    sigmas : sequence of float
        Nominal noise levels, 0-255 scale, in increasing order.
    seed : int
        Base seed of the noise (each image and sigma gets its own).

    Returns
    -------
    dict
        {"sigma": [...], "mean_raw": [...]}, the layout of data/sigma_correction.json.

    Examples
    --------
    >>> ramp = np.tile(np.linspace(0, 1, 64), (64, 1))
    >>> curve = fit_sigma_correction([ramp, np.full((64, 64), 0.5)], [10, 25, 40])
    >>> curve["sigma"], bool(np.all(np.diff(curve["mean_raw"]) > 0))
    ([10.0, 25.0, 40.0], True)
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
