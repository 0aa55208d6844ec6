"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan, Bovik, IEEE SPL 2013).

A no-reference score: the distance between a multivariate Gaussian fitted to natural-scene
statistics of an image's 96x96 blocks and the same model fitted to pristine images (LIVE's
`modelparameters.mat`). Lower is better. It follows the official MATLAB release
(`computequality.m`) and BasicSR's port of it:

- luminance: BT.601 weights (0.299, 0.587, 0.114) of the 8-bit RGB image, rounded;
- the image is cropped to whole 96x96 blocks; MSCN coefficients use a normalised 7x7 Gaussian
  (sigma 7/6), C = 1 and replicated borders, as MATLAB's `imfilter(..., 'replicate')`;
- two scales, the second from MATLAB's `imresize(im, 0.5)` (bicubic with antialiasing);
- per block 18 AGGD features (of the MSCN map and of its four neighbour products, the
  neighbours taken circularly inside the block as `circshift` does): 36 over both scales;
- score sqrt(d pinv((cov_p + cov_d) / 2) d^T), d = mu_p - nanmean(features), cov_d the
  covariance of the blocks without NaN features (MATLAB's `nancov`).

References
----------
Mittal, Soundararajan, Bovik, "Making a 'completely blind' image quality analyzer",
IEEE SPL 20(3), 2013.

Why float32 in places: with few blocks per image the score is touchy. A handful of pixels one
grey level off, or one alpha one 0.001 step off, can move a noisy image's score by 0.02. So the
image takes the float32 steps that BasicSR takes (its float32 pipeline gives the shared
reference scores): the luminance is OpenCV's float32 conversion of the [0, 1] image, which
decides the ~0.1% of pixels whose exact luminance ends in .5, and the MSCN maps and the
half-size image are rounded to float32. The block statistics are computed in float64.

>>> import numpy as np
>>> to_luminance(np.array([[[255, 255, 255], [10, 20, 30]]], dtype=np.uint8))
array([[255.,  18.]], dtype=float32)
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import scipy.io
from scipy.ndimage import correlate1d
from scipy.special import gamma

from dipstop.criteria.base import Criterion, Sample, register
from dipstop.errors import DipstopError
from dipstop.models import model_path

BLOCK = 96
"""Block side at the first scale (the LIVE model was trained on 96x96 blocks)."""

MIN_BLOCKS = 1
"""Whole blocks each side must hold at the first scale.

Standard NIQE needs two blocks or more: the distorted model's covariance needs them. For
images of 96 to 191 pixels a side (the CPU protocol's 128 x 128 crops) there is one block,
and dipstop takes its covariance as zero, scoring sqrt(d pinv(cov_p / 2) d^T). This is a
dipstop extension, not in the MATLAB release; with two blocks or more nothing changes."""

_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
_GAM = 0.2 + 0.001 * np.arange(9801)  # MATLAB's 0.2:0.001:10
_R_GAM = gamma(2.0 / _GAM) ** 2 / (gamma(1.0 / _GAM) * gamma(3.0 / _GAM))


def _gaussian_1d(size: int = 7, sigma: float = 7.0 / 6.0) -> np.ndarray:
    """1-D factor g of MATLAB's normalised `fspecial('gaussian', 7, 7/6)`, which is outer(g, g)."""
    x = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


_WINDOW = _gaussian_1d()


@functools.cache
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """(mu (36,), cov (36, 36)) of the LIVE pristine model, read once per process."""
    path = model_path("niqe")
    try:
        mat = scipy.io.loadmat(path)
        mu = np.asarray(mat["mu_prisparam"], dtype=np.float64).reshape(-1)
        cov = np.asarray(mat["cov_prisparam"], dtype=np.float64)
    except (OSError, ValueError, KeyError) as exc:
        raise DipstopError(
            f"cannot read the NIQE model {path} ({exc}); replace it with LIVE's modelparameters.mat"
        ) from exc
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise DipstopError(f"NIQE model {path} has the wrong shapes; expected 1x36 and 36x36")
    return mu, cov


def _cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB imresize's bicubic kernel (a = -0.5)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@functools.lru_cache(maxsize=32)
def _half_matrix(n: int) -> np.ndarray:
    """(ceil(n/2), n) matrix doing MATLAB's `imresize(., 0.5)` along one axis.

    Antialiased bicubic: the kernel is stretched to width 8, weights are normalised per output
    sample and taps beyond the ends are mirrored (MATLAB's `contributions`).
    """
    scale = 0.5
    width = 4.0 / scale
    n_out = int(np.ceil(n * scale))
    x = np.arange(1, n_out + 1) / scale + 0.5 * (1.0 - 1.0 / scale)  # 1-based input coords
    taps = int(np.ceil(width)) + 2
    idx = np.floor(x - width / 2.0)[:, None] + np.arange(taps)[None, :]
    w = scale * _cubic(scale * (x[:, None] - idx))
    w /= w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n), np.arange(n - 1, -1, -1)])
    cols = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n)]
    m = np.zeros((n_out, n))
    np.add.at(m, (np.repeat(np.arange(n_out), taps), cols.ravel()), w.ravel())
    return m


def imresize_half(im: np.ndarray) -> np.ndarray:
    """MATLAB's `imresize(im, 0.5)` (bicubic, antialiased) of a 2-D image, in float64."""
    im = np.asarray(im, dtype=np.float64)
    return _half_matrix(im.shape[0]) @ im @ _half_matrix(im.shape[1]).T


def _blur(a: np.ndarray) -> np.ndarray:
    """The 7x7 Gaussian with replicated borders, accumulated in float64, rounded to float32."""
    a = correlate1d(a.astype(np.float64), _WINDOW, axis=0, mode="nearest")
    return correlate1d(a, _WINDOW, axis=1, mode="nearest").astype(np.float32)


def _mscn(im: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (im - mu) / (sigma + 1), float32."""
    im = im.astype(np.float32)
    mu = _blur(im)
    sigma = np.sqrt(np.abs(_blur(im * im) - mu * mu))
    return (im - mu) / (sigma + np.float32(1.0))


def _aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise AGGD fit (alpha, beta_left, beta_right) of x (rows, samples).

    The moment-matching estimator of `estimateaggdparam.m` with its 0.001-step lookup of
    alpha. A row without negative (positive) samples gets a NaN beta_left (beta_right).
    """
    neg_part, pos_part = np.minimum(x, 0.0), np.maximum(x, 0.0)
    left_sq = np.einsum("ij,ij->i", neg_part, neg_part)
    right_sq = np.einsum("ij,ij->i", pos_part, pos_part)
    n_neg, n_pos = np.count_nonzero(x < 0, axis=1), np.count_nonzero(x > 0, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        left_std = np.sqrt(np.where(n_neg > 0, left_sq / n_neg, np.nan))
        right_std = np.sqrt(np.where(n_pos > 0, right_sq / n_pos, np.nan))
        g = left_std / right_std
        r_hat = (pos_part.sum(axis=1) - neg_part.sum(axis=1)) ** 2 / (
            x.shape[1] * (left_sq + right_sq)
        )
        r_norm = r_hat * (g**3 + 1.0) * (g + 1.0) / (g**2 + 1.0) ** 2
    # _R_GAM rises strictly, so the nearest entry is one of the two around r_norm; a tie goes
    # to the lower index and NaN to the first, as MATLAB's min does.
    hi = np.clip(np.searchsorted(_R_GAM, r_norm), 1, _R_GAM.size - 1)
    lo = hi - 1
    pick = np.where((_R_GAM[lo] - r_norm) ** 2 <= (_R_GAM[hi] - r_norm) ** 2, lo, hi)
    pick = np.where(np.isnan(r_norm), 0, pick)
    alpha = _GAM[pick]
    k = np.sqrt(gamma(1.0 / alpha) / gamma(3.0 / alpha))
    return alpha, left_std * k, right_std * k


def _block_features(mscn: np.ndarray, b: int) -> np.ndarray:
    """The 18 features of `computefeature.m` for each b x b block of an MSCN map: (blocks, 18)."""
    h, w = mscn.shape
    blocks = mscn.astype(np.float64).reshape(h // b, b, w // b, b).swapaxes(1, 2)
    blocks = blocks.reshape(-1, b, b)
    n = blocks.shape[0]
    maps = np.empty((5, n, b, b))
    maps[0] = blocks
    for i, s in enumerate(_SHIFTS, start=1):
        np.multiply(blocks, np.roll(blocks, s, axis=(1, 2)), out=maps[i])
    alpha, bl, br = (v.reshape(5, n) for v in _aggd(maps.reshape(5 * n, b * b)))
    feats = [alpha[0], (bl[0] + br[0]) / 2.0]
    for i in range(1, 5):
        a = alpha[i]
        feats += [a, (br[i] - bl[i]) * gamma(2.0 / a) / gamma(1.0 / a), bl[i], br[i]]
    return np.stack(feats, axis=1)


def to_luminance(image: np.ndarray) -> np.ndarray:
    """H x W float32 luminance on 0-255: gray as given, RGB by BT.601 weights, then rounded.

    RGB goes through OpenCV's float32 conversion of the [0, 1] image in BGR order and NumPy's
    round, as BasicSR does, so that pixels whose luminance ends in .5 round the same way.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return a.astype(np.float32)
    if a.ndim == 3 and a.shape[2] == 3:
        bgr = np.ascontiguousarray(a[:, :, ::-1], dtype=np.float32) / np.float32(255.0)
        return np.round(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) * np.float32(255.0))
    raise DipstopError(f"NIQE needs an H x W or H x W x 3 image, got shape {a.shape}")


def niqe(image: np.ndarray) -> float:
    """NIQE score of an H x W gray (0-255) or H x W x 3 8-bit RGB image; lower is better.

    Both sides must be at least 96 pixels; with a single block the distorted covariance is
    taken as zero (see MIN_BLOCKS). NaN when no block has finite features (a flat image).
    The image is cropped to whole 96 x 96 blocks.

    Parameters
    ----------
    image : ndarray
        H x W gray on the 0-255 scale, or H x W x 3 uint8 RGB (H x W x 1 is taken as gray).

    Returns
    -------
    float
        The NIQE score; NaN for a flat image.

    Raises
    ------
    DipstopError
        For an image below 96 x 96 or of another shape, or when the pristine model
        (LIVE's modelparameters.mat, found by `dipstop.models.model_path`) cannot be read.

    Examples
    --------
    >>> niqe(np.zeros((64, 64, 3), np.uint8))
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: NIQE needs an image of at least 96x96 pixels (1x1 blocks of \
96x96), got 64x64

    Scoring needs the pristine model (downloaded on first use), so it is not run here:

    >>> from skimage import data
    >>> clean = data.astronaut()[::4, ::4]
    >>> rng = np.random.default_rng(0)
    >>> noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    >>> niqe(clean) < niqe(noisy)  # doctest: +SKIP
    True
    """
    im = to_luminance(image)
    h, w = im.shape
    rows, cols = h // BLOCK, w // BLOCK
    if rows < MIN_BLOCKS or cols < MIN_BLOCKS:
        side = MIN_BLOCKS * BLOCK
        raise DipstopError(
            f"NIQE needs an image of at least {side}x{side} pixels ({MIN_BLOCKS}x{MIN_BLOCKS} "
            f"blocks of {BLOCK}x{BLOCK}), got {h}x{w}"
        )
    mu_p, cov_p = pristine_model()
    im = im[: rows * BLOCK, : cols * BLOCK]
    half = imresize_half(im / np.float32(255.0)).astype(np.float32) * np.float32(255.0)
    dist = np.concatenate(
        [_block_features(_mscn(im), BLOCK), _block_features(_mscn(half), BLOCK // 2)], axis=1
    )
    complete = dist[~np.isnan(dist).any(axis=1)]
    if complete.shape[0] == 0:
        return float("nan")
    d = mu_p - np.nanmean(dist, axis=0)
    cov_d = np.cov(complete, rowvar=False) if complete.shape[0] > 1 else np.zeros_like(cov_p)
    return float(np.sqrt(d @ np.linalg.pinv((cov_p + cov_d) / 2.0) @ d))


@register
class NiqeCriterion(Criterion):
    """Per-iteration stopping criterion: NIQE of an 8-bit RGB output (lower is better).

    Reads the pristine model when built, so a missing model fails before a fit starts.
    A host criterion, usually scored every 10th iteration (it costs more than a step).

    Parameters
    ----------
    every : int
        Score every `every`-th iteration.

    Raises
    ------
    DipstopError
        If the pristine model cannot be found or read.

    Examples
    --------
    Needs the pristine model (downloaded on first use), so not run here:

    >>> from skimage import data
    >>> n = NiqeCriterion(every=10)  # doctest: +SKIP
    >>> n.due(20), n.settings()  # doctest: +SKIP
    (True, {'every': 10})
    >>> 0 < n(data.astronaut()[::4, ::4]) < 10  # doctest: +SKIP
    True
    """

    name, label, recorded = "niqe", "NIQE", ("niqe",)
    scores_one_image = True

    def __init__(self, every: int = 1) -> None:
        super().__init__(every)
        pristine_model()

    def measure(self, sample: Sample) -> dict[str, float]:
        """{"niqe": score} of the sample's 8-bit image."""
        assert sample.image is not None
        return {"niqe": self(sample.image)}

    def __call__(self, rgb_uint8: np.ndarray) -> float:
        """NIQE of one H x W x 3 uint8 output (an H x W gray array works too); see `niqe`."""
        return niqe(rgb_uint8)
