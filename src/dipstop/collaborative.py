"""Collaborative filtering: BM3D's two stages, the second with any pilot image.

Each reference patch (every `step` pixels) is stacked with the patches most like it in a
(2 `radius` + 1)^2 search window, likeness measured on a guide image (the pilot's, not the
noise's, so that noise does not pick the group). The stack (a "group") is moved to a 3-D
transform (2-D DCT of each patch, 1-D DCT across the group), where each coefficient of the
noisy group is scaled by the Wiener gain P^2 / (P^2 + sigma^2) of the pilot's group, and the
patches go back to their places, averaged with the weight 1 / (sigma^2 sum of the gains^2).
A texture repeated across a group is kept, while the noise, independent from patch to patch,
is averaged away: what the sliding-window filter of `dipstop.wiener` cannot do.

The first stage (`collaborative_threshold`, no pilot) sets each group's small coefficients to
0 instead, in BM3D's 2-D transform for it: the biorthogonal 1.5 wavelet (`wavelet_2d`), which
keeps smooth parts and edges in fewer coefficients than the DCT (on CBSD432 whole photos at
sigma 25, +0.0-0.2 dB to the stage's image and +0.06 to the filter's, docs/quality_time.md).

As in BM3D, a group holds the reference and those of its `group` - 1 nearest patches whose
mean squared difference to it is at most `tau`, cut to a power of two. Matching runs in bands
of reference rows, so memory stays bounded on large photos.

References
----------
K. Dabov, A. Foi, V. Katkovnik, K. Egiazarian, "Image denoising by sparse 3-D
transform-domain collaborative filtering", IEEE TIP 16(8), 2007.
M. Lebrun, "An analysis and implementation of the BM3D image denoising method", IPOL 2012.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

import numpy as np
import pywt
import torch
import torch.nn.functional as F

BAND_REFERENCES = 2**11  # reference patches filtered at once: bounds the memory


@functools.lru_cache(maxsize=16)
def dct_matrix(n: int) -> torch.Tensor:
    """The n x n orthonormal DCT-II matrix (rows: frequencies).

    >>> d = dct_matrix(8).double()
    >>> bool(torch.allclose(d @ d.T, torch.eye(8, dtype=torch.float64), atol=1e-6))
    True
    """
    k = np.arange(n)[:, None]
    d = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return torch.tensor(d, dtype=torch.float32)


def dct_2d(p: int) -> torch.Tensor:
    """The p*p orthonormal 2-D DCT-II basis images, flattened (rows: basis images)."""
    return torch.kron(dct_matrix(p), dct_matrix(p))


@functools.lru_cache(maxsize=16)
def wavelet_2d(p: int, name: str = "bior1.5") -> tuple[torch.Tensor, torch.Tensor]:
    """The 2-D transform of BM3D's first stage: the full dyadic decomposition of a p x p patch
    (p a power of 2) by the wavelet `name` (periodic at the patch's edges), each basis row
    scaled to unit norm as in BM3D, so that white noise keeps its std in every coefficient.

    Returns (analysis, synthesis), p*p x p*p: coefficients = patch @ analysis.T, and
    patch = coefficients @ synthesis (the DCT's pair is `dct_2d` twice).

    >>> a, s = wavelet_2d(8)
    >>> bool(torch.allclose(a @ s.T, torch.eye(64), atol=1e-5))  # perfect reconstruction
    True
    >>> bool(torch.allclose(a.norm(dim=1), torch.ones(64)))
    True
    """
    levels = round(math.log2(p))
    if p < 2 or 2**levels != p:
        raise ValueError(f"a wavelet transform needs a patch side that is a power of 2, not {p}")
    with warnings.catch_warnings():  # every coefficient of so short a signal meets an edge
        warnings.simplefilter("ignore", UserWarning)
        bands = pywt.wavedec(np.eye(p), name, mode="periodization", level=levels, axis=1)
    one = np.concatenate(bands, axis=1).T  # rows: the 1-D analysis basis
    one /= np.linalg.norm(one, axis=1, keepdims=True)
    analysis = np.kron(one, one)
    return (torch.tensor(analysis, dtype=torch.float32),
            torch.tensor(np.linalg.inv(analysis).T, dtype=torch.float32))  # fmt: skip


def reference_grid(n: int, step: int) -> torch.Tensor:
    """Reference patch origins along one side of `n` patch positions: every `step`-th, and
    the last, so that every pixel is covered.

    >>> reference_grid(10, 3).tolist()
    [0, 3, 6, 9]
    >>> reference_grid(11, 3).tolist()
    [0, 3, 6, 9, 10]
    """
    return torch.tensor(sorted(set(range(0, n, step)) | {n - 1}))


def match(
    guide: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, patch: int, radius: int, group: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each reference patch (origins `rows` x `cols` of `guide`, H x W), the origins of
    its `group` nearest patches in the search window, nearest first, as flat indices into the
    H - patch + 1 by W - patch + 1 patch positions, and their mean squared differences. The
    reference comes first, also where other patches equal it (flat parts), so that every
    pixel is in some group."""
    h, w = guide.shape
    nw = w - patch + 1
    far = float(guide.abs().max()) * 4 + 1  # beyond the image: never among the nearest
    padded = F.pad(guide[None, None], (radius,) * 4, value=far)[0, 0]
    top, bottom = int(rows[0]), int(rows[-1]) + patch  # the band's rows of the guide
    ref = guide[top:bottom]
    span = 2 * radius + 1
    dist = torch.empty(span, span, len(rows), len(cols))
    for i, dy in enumerate(range(-radius, radius + 1)):
        # every horizontal shift at once: span x band rows x W
        shifted = padded[radius + dy + top : radius + dy + bottom].unfold(1, w, 1)
        sq = (shifted.permute(1, 0, 2) - ref).square()
        # patch sums at the references only: running sums down, then across
        down = F.pad(sq.cumsum(1, dtype=torch.float64), (0, 0, 1, 0))
        strip = down[:, rows - top + patch] - down[:, rows - top]
        across = F.pad(strip.cumsum(2), (1, 0))
        dist[i] = (across[..., cols + patch] - across[..., cols]) / patch**2
    dist = dist.reshape(span * span, -1)
    dist[(span * span) // 2] = -1.0  # the reference itself first, even among exact ties
    nearest, which = torch.topk(dist, min(group, dist.shape[0]), dim=0, largest=False)
    dy = which // span - radius
    dx = which % span - radius
    r = rows[:, None].expand(len(rows), len(cols)).reshape(-1)
    c = cols[None, :].expand(len(rows), len(cols)).reshape(-1)
    return ((r + dy) * nw + (c + dx)).T, nearest.clamp_min(0).T


def collaborative_wiener(
    noisy: torch.Tensor,
    pilot: torch.Tensor,
    guide: torch.Tensor,
    sigma: float,
    patch: int = 8,
    step: int = 3,
    radius: int = 19,
    group: int = 32,
    tau: float = (400 / 255**2),
) -> torch.Tensor:
    """The collaborative Wiener estimate of `noisy` (C x H x W, white noise of std `sigma`
    on the same scale in each channel) given `pilot` (C x H x W), groups matched on `guide`
    (H x W, the pilot's grey level: `tau` is on its scale); see the module.

    >>> rng = np.random.default_rng(0)
    >>> stripes = torch.tensor(np.tile([0.3, 0.3, 0.7, 0.7], (24, 6)), dtype=torch.float32)
    >>> noisy = stripes + torch.tensor(rng.normal(0, 0.1, (24, 24)), dtype=torch.float32)
    >>> est = collaborative_wiener(noisy[None], stripes[None], stripes, 0.1, radius=8)
    >>> err = lambda a: float((a - stripes).square().mean().sqrt())
    >>> err(est[0]) < err(noisy) / 3
    True
    """
    return _collaborate(noisy, pilot, guide, sigma, _wiener, _transform(patch, None), patch,
                        step, radius, group, tau)  # fmt: skip


def collaborative_threshold(
    noisy: torch.Tensor,
    guide: torch.Tensor,
    sigma: float,
    patch: int = 8,
    step: int = 3,
    radius: int = 19,
    group: int = 16,
    tau: float = (2500 / 255**2),
    threshold: float = 2.7,
    wavelet: str | None = "bior1.5",
) -> torch.Tensor:
    """BM3D's first stage: `noisy` (C x H x W, white noise of std `sigma`) with each group's
    3-D transform coefficients below `threshold` sigma set to 0, groups matched on `guide`
    (H x W, the noisy grey level: `tau`, BM3D's, allows for the noise in the distances). The
    2-D transform is the `wavelet`'s (`wavelet_2d`, BM3D's bior1.5), or the DCT for None.

    No pilot: this is the estimate a pilot can be made from. The patches go back weighted
    by 1 / (sigma^2 x the coefficients kept), as in BM3D.

    >>> rng = np.random.default_rng(0)
    >>> stripes = torch.tensor(np.tile([0.3, 0.3, 0.7, 0.7], (24, 6)), dtype=torch.float32)
    >>> noisy = stripes + torch.tensor(rng.normal(0, 0.1, (24, 24)), dtype=torch.float32)
    >>> est = collaborative_threshold(noisy[None], noisy, 0.1, radius=8)
    >>> err = lambda a: float((a - stripes).square().mean().sqrt())
    >>> err(est[0]) < err(noisy) / 3
    True
    """
    shrink = functools.partial(_threshold, threshold=threshold)
    return _collaborate(noisy, noisy, guide, sigma, shrink, _transform(patch, wavelet), patch,
                        step, radius, group, tau)  # fmt: skip


def _transform(patch: int, wavelet: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2-D (analysis, synthesis) pair: the `wavelet`'s, or the DCT's (its own inverse)
    for None."""
    if wavelet is None:
        return dct_2d(patch), dct_2d(patch)
    return wavelet_2d(patch, wavelet)


Shrink = Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]


def _wiener(ty: torch.Tensor, tq: torch.Tensor, var: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each noisy coefficient scaled by the pilot's Wiener gain; a group's weight."""
    gain = tq.square() / (tq.square() + var)
    return gain * ty, 1.0 / (var * gain.square().sum(dim=(0, 2, 3))).clamp_min(1e-12)


def _threshold(
    ty: torch.Tensor, tq: torch.Tensor, var: float, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each noisy coefficient kept where its magnitude is above `threshold` sigma (the
    pilot, the noisy image itself, is not read); a group's weight."""
    keep = ty.abs() > threshold * math.sqrt(var)
    return ty * keep, 1.0 / (var * keep.sum(dim=(0, 2, 3)).clamp_min(1))


def _collaborate(
    noisy: torch.Tensor, pilot: torch.Tensor, guide: torch.Tensor, sigma: float, shrink: Shrink,
    transform: tuple[torch.Tensor, torch.Tensor], patch: int, step: int, radius: int,
    group: int, tau: float,
) -> torch.Tensor:  # fmt: skip
    """Group, transform (the 2-D (analysis, synthesis) pair, then the DCT across), `shrink`
    and aggregate: the stages' one loop (see the module)."""
    c, h, w = noisy.shape
    if h < patch or w < patch:
        return pilot.clone()
    nh, nw = h - patch + 1, w - patch + 1
    basis, synthesis = transform
    offsets = (torch.arange(patch)[:, None] * w + torch.arange(patch)[None, :]).reshape(-1)
    num, den = torch.zeros(c, h * w), torch.zeros(h * w)
    rows, cols = reference_grid(nh, step), reference_grid(nw, step)
    # bands of at least radius / step reference rows, so that a band's coefficients (its rows
    # and the search window's beyond) are not mostly recomputed by the next band
    per_band = max(radius // step + 1, BAND_REFERENCES // len(cols))
    var = sigma**2
    for first in range(0, len(rows), per_band):
        band = rows[first : first + per_band]
        where, dist = match(guide, band, cols, patch, radius, group)
        # the 3-D transform's input: the DCT of every patch a group of this band can hold
        lo, hi = max(int(band[0]) - radius, 0), min(int(band[-1]) + radius, nh - 1)
        coef_y = _coefficients(noisy, lo, hi + patch, basis)
        coef_q = coef_y if pilot is noisy else _coefficients(pilot, lo, hi + patch, basis)
        count = (dist <= tau).sum(dim=1).clamp_min(1)  # the reference itself always counts
        size = 2 ** torch.floor(torch.log2(count.float())).long()
        for part in range(0, len(where), BAND_REFERENCES):  # groups filtered a chunk at a time
            chunk = slice(part, part + BAND_REFERENCES)
            for m in size[chunk].unique().tolist():
                idx = where[chunk][size[chunk] == m, :m]  # groups x m, flat patch positions
                est, weight = _filter_groups(idx - lo * nw, coef_y, coef_q, synthesis, var,
                                             shrink)  # fmt: skip
                pixels = ((idx // nw) * w + idx % nw)[..., None] + offsets  # g x m x p*p
                flat = pixels.reshape(-1)
                spread = weight[:, None, None].expand(pixels.shape).reshape(-1)
                den.index_add_(0, flat, spread)
                for k in range(c):
                    num[k].index_add_(0, flat, est[k].reshape(-1) * spread)
    return (num / den).reshape(c, h, w)


def _coefficients(image: torch.Tensor, top: int, bottom: int, basis: torch.Tensor) -> torch.Tensor:
    """The 2-D DCT of every patch of `image`'s rows top..bottom (C x patches x p*p)."""
    p = math.isqrt(basis.shape[0])
    rows = image[:, top:bottom].unfold(1, p, 1).unfold(2, p, 1)
    return rows.reshape(image.shape[0], -1, p * p) @ basis.T


def _filter_groups(
    local: torch.Tensor, coef_y: torch.Tensor, coef_q: torch.Tensor, synthesis: torch.Tensor,
    var: float, shrink: Shrink,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Groups of one size (`local`: groups x m indices into the band's coefficients) shrunk
    in the 3-D transform and brought back by `synthesis`: their patches (C x groups x m x
    p*p pixels) and weights."""
    across = dct_matrix(local.shape[1])
    ty = torch.einsum("ij,cgjk->cgik", across, coef_y[:, local])
    tq = ty if coef_q is coef_y else torch.einsum("ij,cgjk->cgik", across, coef_q[:, local])
    shrunk, weight = shrink(ty, tq, var)
    return torch.einsum("ij,cgik->cgjk", across, shrunk) @ synthesis, weight
