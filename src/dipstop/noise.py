"""Synthetic noise and blind noise-level estimation.

Two estimators, each mapped back to the nominal sigma by a monotone curve fitted on
training images (`fit_sigma_correction`, shipped in data/): "pca" (the default), Chen, Zhu
and Heng's patch-covariance estimator, which tells texture from noise; and "wavelet",
Donoho and Johnstone's MAD of the finest diagonal wavelet coefficients (scikit-image's
`estimate_sigma`, channel-averaged), which reads texture as noise and is kept for the
paper's settings, which compute what they always have. Clipping noisy pixels to [0, 255]
makes both read high sigma low; their curves undo it. Their errors on CBSD68:
`benchmarks/sigma_estimation.py`, docs/calibration.md.

References
----------
Chen, Zhu, Heng, "An efficient statistical method for image noise level estimation", ICCV
2015 (the PCA estimator). Donoho, Johnstone, "Ideal spatial adaptation by wavelet
shrinkage", Biometrika 81(3), 1994 (the MAD estimator).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from skimage.restoration import estimate_sigma as _skimage_estimate_sigma

from dipstop.errors import DipstopError


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


ESTIMATORS = ("pca", "wavelet")
CORRECTION_FILES = {"wavelet": "sigma_correction.json", "pca": "sigma_correction_pca.json"}
PATCH = 7  # side of the PCA estimator's patches
MAX_PATCHES = 60_000  # patches it takes at most (a stride that keeps a big photo cheap)
PATCHES_PER_DIMENSION = 100  # fewer, and the sample covariance's eigenvalues spread too wide


def _check_method(method: str) -> None:
    if method not in ESTIMATORS:
        raise DipstopError(
            f"sigma estimator must be 'pca' or 'wavelet', got {method!r}; "
            "leave it out for the default (pca)"
        )


def _wavelet_raw(image: np.ndarray) -> float:
    channel_axis = -1 if image.ndim == 3 else None
    sigma = _skimage_estimate_sigma(image, channel_axis=channel_axis, average_sigmas=True)
    return float(sigma) * 255.0


def _patch_noise_sd(x: np.ndarray, stride: int, keep_from: float | None) -> float:
    """sqrt of the mean of the smallest covariance eigenvalues of the image's patches: the
    largest set of them whose mean is not above its median (Chen et al.'s rule); with
    `keep_from`, only patches whose mean lies that far from 0 and 255 (clipping shrinks
    the noise there)."""
    cols = sliding_window_view(x, (PATCH, PATCH), axis=(0, 1))[::stride, ::stride]
    p = cols.reshape(-1, cols.shape[2] * PATCH * PATCH)
    if keep_from is not None:
        m = p.mean(axis=1)
        inside = (m > keep_from) & (m < 255.0 - keep_from)
        if inside.sum() > 4 * p.shape[1]:  # else too few patches left to estimate from
            p = p[inside]
    p = p - p.mean(axis=0)
    eig = np.sort(np.linalg.eigvalsh(p.T @ p / len(p)))[::-1]
    for i in range(len(eig)):
        tail = eig[i:]
        tau = tail.mean()
        if np.count_nonzero(tail > tau) >= np.count_nonzero(tail < tau):
            return float(np.sqrt(max(tau, 0.0)))
    return float(np.sqrt(max(eig[-1], 0.0)))


def _pca_stride(shape: tuple[int, ...]) -> tuple[int, bool]:
    """The patch grid's stride for an image of this shape, and whether it gives the PCA
    estimator enough patches (`PATCHES_PER_DIMENSION` for each of a patch's values)."""
    grid = (shape[0] - PATCH + 1, shape[1] - PATCH + 1)
    stride = max(3, int(np.ceil(np.sqrt(grid[0] * grid[1] / MAX_PATCHES))))
    patches = -(-grid[0] // stride) * -(-grid[1] // stride)
    channels = shape[2] if len(shape) == 3 else 1
    return stride, patches >= PATCHES_PER_DIMENSION * channels * PATCH * PATCH


def _pca_raw(image: np.ndarray) -> float:
    x = np.asarray(image, np.float64) * 255.0
    x = x[..., None] if x.ndim == 2 else x
    if min(x.shape[:2]) < PATCH:
        raise DipstopError(
            f"image is {x.shape[1]} x {x.shape[0]}: too small to estimate its noise level from "
            f"{PATCH} x {PATCH} patches; give sigma, or use an image of at least {PATCH} px a side"
        )
    stride, _ = _pca_stride(x.shape)
    first = _patch_noise_sd(x, stride, None)
    return _patch_noise_sd(x, stride, 2.0 * first)


def raw_sigma(image: np.ndarray, method: str = "pca") -> float:
    """The uncorrected noise estimate of a float image, on the 0-255 scale.

    "pca" (the default): Chen, Zhu and Heng's patch estimator: the noise variance is the
    mean of the smallest eigenvalues of the covariance of the image's 7 x 7 (x channels)
    patches, as many as keep that mean at or below their median (texture lives in the
    large ones); taken twice, the second time without the patches within 2 sigma of black
    or white, where clipping hides noise. "wavelet": scikit-image's `estimate_sigma`
    (Donoho and Johnstone's MAD of the finest wavelet coefficients), channel-averaged,
    which reads texture as noise (docs/calibration.md, "Noise-level estimation").
    `estimate_sigma` maps this raw value through the method's correction curve.

    Parameters
    ----------
    image : ndarray
        H x W or H x W x C float image in [0, 1].
    method : str
        "pca" or "wavelet".

    Returns
    -------
    float
        The raw estimate of the noise std, 0-255 scale.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noisy = np.clip(0.5 + rng.normal(0, 25 / 255, (128, 128)), 0, 1)
    >>> round(raw_sigma(noisy)), round(raw_sigma(noisy, "wavelet"))
    (25, 25)
    """
    _check_method(method)
    return _pca_raw(image) if method == "pca" else _wavelet_raw(image)


@cache
def _correction(method: str) -> tuple[np.ndarray, np.ndarray]:
    text = resources.files("dipstop.data").joinpath(CORRECTION_FILES[method]).read_text()
    doc = json.loads(text)
    return np.array(doc["mean_raw"]), np.array(doc["sigma"])


def estimate_sigma(image: np.ndarray, method: str = "pca") -> float:
    """Blind estimate of the Gaussian noise std, on the 0-255 scale, of an image.

    The raw estimate (`raw_sigma`, "pca" by default) is mapped through the method's
    correction curve shipped in data/ (`CORRECTION_FILES`), fitted on training images,
    which undoes its bias (clipping hiding noise at high sigma; for "wavelet", texture read
    as noise at low sigma too). `dipstop.denoise` uses it when no sigma is given: "pca"
    for the quality presets, "wavelet" for the paper's settings (`output="raw"`, protocol
    "paper"), which keep computing what they always have. "pca" needs
    `PATCHES_PER_DIMENSION` patches for each value of a patch (a colour image of about
    370 x 370 pixels, a gray one of about 215 x 215): on a smaller image the sample
    covariance's small eigenvalues spread below the noise's, so it takes "wavelet".

    Parameters
    ----------
    image : ndarray
        H x W or H x W x C: float in [0, 1], or uint8 / uint16 (scaled by the type's
        maximum).
    method : str
        "pca" or "wavelet".

    Returns
    -------
    float
        The estimated noise standard deviation, 0-255 scale.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noisy = np.clip(128 + rng.normal(0, 25, (128, 128, 3)), 0, 255).astype(np.uint8)
    >>> 23 < estimate_sigma(noisy) < 27, 23 < estimate_sigma(noisy, "wavelet") < 27
    (True, True)
    """
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.integer):
        image = image / float(np.iinfo(image.dtype).max)
    if method == "pca" and not _pca_stride(image.shape)[1]:
        method = "wavelet"  # too few patches for a covariance: a small image
    estimate = raw_sigma(image, method)
    raw, nominal = _correction(method)
    return float(np.interp(estimate, raw, nominal))


def fit_sigma_correction(
    cleans: Sequence[np.ndarray], sigmas: Sequence[float], seed: int = 0, method: str = "pca"
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
    method : str
        The estimator whose curve this is: "pca" or "wavelet".

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
            raw_sigma(np.rint(add_gaussian_noise(c, sigma, seed + 7919 * k + i) * 255) / 255,
                      method)
            for i, c in enumerate(cleans)
        ]
        means.append(float(np.mean(raws)))
    mono = np.maximum.accumulate(np.array(means) + 1e-9 * np.arange(len(means)))
    return {"sigma": [float(s) for s in sigmas], "mean_raw": mono.tolist()}
