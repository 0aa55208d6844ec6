"""dipstop's post-filter: what the fits left of the signal, given back by Wiener filtering.

The classical second stage of BM3D (Dabov et al., 2007), without its block matching, moves
each p x p patch of the noisy image y to the 2-D DCT and shrinks each coefficient Y by the
Wiener gain g = P^2 / (P^2 + sigma^2) that a pilot estimate's coefficient P gives. With the
DIP's image as the pilot that alone loses where the DIP is at its best (edges, smooth parts)
as much as it gains on textures (+0.00 +- 0.22 dB on CBSD432 crops at sigma 25, one photo
-1.38; -0.30 at 50; docs/quality_time.md, "Wiener filter"), because it takes its image from
the noisy coefficients and leaves the pilot's.

dipstop's filter starts from the pilot and adds back only the part of its residual Y - P that
is both where the pilot says there is signal (g) and where the residual is stronger than noise
in a small neighbourhood (k = e^2 / (e^2 + sigma^2), with e^2 = the residual's mean square
over `window` x `window` neighbouring patches, less sigma^2, at least 0): each coefficient
becomes P + k g (Y - P). Where the DIP stopped before fitting a texture, the residual holds
it and k opens; where the DIP fitted the image, the residual is noise and k stays near 0.
The patches go back and are averaged where they overlap, each weighted by the inverse of its
estimate's noise variance (1 / sum of its squared gains); the image so filtered is the
pilot of a second pass (`passes`).

Last, the passes' image is the pilot of a collaborative Wiener stage (`dipstop.collaborative`:
BM3D's second stage, patches grouped with their likes across the image), and the result is
a blend of the two (`collaborative`). The two err in different places: the gated passes keep the
DIP's image where it is right, the collaborative stage recovers repeated textures the DIP
smoothed, and gives back some noise where it is wrong; a blend (0.7 of the stage's image)
beats either on CBSD432 crops (docs/quality_time.md, "Wiener filter"). Colour images are
filtered in an orthonormal opponent colour space (luminance, two chrominances), where white
noise keeps its sigma.

The pilot itself may be blended with BM3D's basic estimate of the noisy image (`basic`:
its first stage, `dipstop.collaborative.collaborative_threshold`) before the passes: on
whole photos the DIP's fits smooth repeated textures it keeps, and it blurs smooth parts
and edges the fits keep; `denoise` takes 0.7 of it (docs/quality_time.md, "The filter's
pilot").

References
----------
K. Dabov, A. Foi, V. Katkovnik, K. Egiazarian, "Image denoising by sparse 3-D
transform-domain collaborative filtering", IEEE TIP 16(8), 2007.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dipstop.collaborative import collaborative_threshold, collaborative_wiener, dct_2d

# rows: luminance, red-blue, green against red and blue; orthonormal, so its inverse is its
# transpose and white noise of std sigma stays white with std sigma in each channel
OPPONENT = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], np.float64)
OPPONENT /= np.linalg.norm(OPPONENT, axis=1, keepdims=True)
_OPPONENT32 = OPPONENT.astype(np.float32)

BAND_COEFFICIENTS = 2**22  # coefficients a band holds at once: bounds the memory (about 100 MB)


def dct_basis(p: int) -> torch.Tensor:
    """The p*p orthonormal 2-D DCT-II basis images, as conv2d weights (p*p x 1 x p x p).

    >>> b = dct_basis(4).reshape(16, 16).double()
    >>> bool(torch.allclose(b @ b.T, torch.eye(16, dtype=torch.float64), atol=1e-6))
    True
    """
    return dct_2d(p).reshape(p * p, 1, p, p)


def wiener_filter(
    noisy: np.ndarray,
    pilot: np.ndarray,
    sigma: float,
    patch: int = 8,
    stride: int = 2,
    window: int = 3,
    gated: bool = True,
    passes: int = 2,
    collaborative: float = 0.7,
    basic: float = 0.0,
) -> np.ndarray:
    """The pilot with what its residual holds of the signal added back (see the module).

    Parameters
    ----------
    noisy, pilot : ndarray
        H x W or H x W x C, float on the [0, 1] scale; `pilot` an estimate of the clean
        image (dipstop's fits' image).
    sigma : float
        The noise std on the 0-255 scale (given, or `dipstop.noise.estimate_sigma`).
    patch, stride : int
        The DCT's patch side and the step between patches (1 = every patch).
    window : int
        Odd side, in patches, of the neighbourhood whose residual decides the gate.
    gated : bool
        False: the classical empirical Wiener filter (each coefficient g Y), for comparison.
    passes : int
        How many times to filter, each pass's image the next one's pilot: a better pilot
        gives more texture back (on CBSD432 crops at sigma 25: +0.22 dB after one pass,
        +0.33 after two, +0.38 after three, when one photo begins to lose).
    collaborative : float
        The share of the collaborative (block-matching) Wiener estimate in the result, made
        with the passes' image as its pilot (`dipstop.collaborative`); 0 leaves it out. On
        CBSD432 crops at sigma 25 the filter adds +0.33 dB over the fits' image without it,
        +0.66 at 0.5, +0.71 at 0.7 and +0.69 with the stage's image alone (1), where the
        photo that gains least gains +0.29, +0.28 and +0.12: 0.7 is near the best on both.
    basic : float
        The share of BM3D's basic estimate (`dipstop.collaborative.collaborative_threshold`
        of the noisy image) in the pilot, in [0, 1]; 0 leaves it out, 1 leaves the given
        pilot out (`denoise`: the quality preset's, 0.7).

    Returns
    -------
    ndarray
        Same shape as `noisy`, float32 in [0, 1].

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ramp = np.tile(np.linspace(0.2, 0.8, 32, dtype=np.float32), (32, 1))
    >>> texture = 0.1 * np.sin(np.arange(32) * 2.0)[:, None]
    >>> noisy = ramp + texture + rng.normal(0, 0.05, ramp.shape)
    >>> pilot = ramp + texture / 3  # an estimate that smoothed the texture
    >>> out = wiener_filter(noisy, pilot, 12.75)
    >>> err = lambda a: float(np.abs(a - ramp - texture).mean())
    >>> err(out) < err(pilot) / 2
    True
    """
    y, q = np.asarray(noisy, np.float32), np.asarray(pilot, np.float32)
    if y.shape != q.shape:
        raise ValueError(f"noisy {y.shape} and pilot {q.shape} differ in shape")
    gray = y.ndim == 2
    if gray:
        y, q = y[..., None], q[..., None]
    colour = y.shape[2] == 3
    if colour:
        y, q = y @ _OPPONENT32.T, q @ _OPPONENT32.T
    grey = (lambda a: a[..., 0] / np.sqrt(3)) if colour else (lambda a: a[..., 0])
    if basic:
        chw = torch.from_numpy(np.ascontiguousarray(y.transpose(2, 0, 1)))
        ht = collaborative_threshold(chw, torch.from_numpy(grey(y)), sigma / 255.0)
        q = q + basic * (ht.permute(1, 2, 0).numpy() - q)
    for _ in range(passes):
        q = np.stack([_filter_plane(y[..., c], q[..., c], sigma / 255.0, patch, stride,
                                    window if gated else 0) for c in range(y.shape[2])],
                     axis=-1)  # fmt: skip
    if collaborative:
        chw = (torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))) for a in (y, q))
        group = collaborative_wiener(*chw, torch.from_numpy(grey(q)), sigma / 255.0)
        q = q + collaborative * (group.permute(1, 2, 0).numpy() - q)
    out = q
    if colour:
        out = out @ _OPPONENT32
    out = np.clip(out, 0.0, 1.0, out=out)
    return out[..., 0] if gray else out


def _filter_plane(
    y: np.ndarray, q: np.ndarray, sigma: float, p: int, s: int, window: int
) -> np.ndarray:
    """One channel: every p x p patch at steps of s (the image extended at its bottom and
    right edges so that the last patches end on them), in bands of patch rows; `window` 0
    for the ungated filter."""
    h, w = y.shape
    pad_h = (-(max(h, p) - p)) % s + max(p - h, 0)
    pad_w = (-(max(w, p) - p)) % s + max(p - w, 0)
    yt, qt = (F.pad(torch.from_numpy(np.ascontiguousarray(a))[None, None], (0, pad_w, 0, pad_h),
                    mode="replicate") for a in (y, q))  # fmt: skip
    hp, wp = yt.shape[-2:]
    basis, ones = dct_basis(p), torch.ones(1, 1, p, p)
    num, den = torch.zeros(1, 1, hp, wp), torch.zeros(1, 1, hp, wp)
    starts = (hp - p) // s + 1  # patch rows
    per_band = max(1, BAND_COEFFICIENTS // (p * p * ((wp - p) // s + 1)))
    halo = window // 2  # patch rows a band reads beyond its own, for the gate's neighbourhood
    for first in range(0, starts, per_band):
        last = min(first + per_band, starts)  # this band's patch rows: first .. last - 1
        lo, hi = max(first - halo, 0), min(last + halo, starts)
        rows = slice(lo * s, (hi - 1) * s + p)
        cy, cq = (F.conv2d(t[..., rows, :], basis, stride=s) for t in (yt, qt))
        gain = cq.square() / (cq.square() + sigma**2)
        if window:
            r = cy - cq
            power = F.avg_pool2d(r.square(), window, stride=1, padding=halo,
                                 count_include_pad=False)  # fmt: skip
            excess = (power - sigma**2).clamp_min(0)
            gain = gain * excess / (excess + sigma**2)
            est = cq + gain * r
        else:
            est = gain * cy
        keep = slice(first - lo, last - lo)  # drop the halo's patch rows
        est, gain = est[..., keep, :], gain[..., keep, :]
        weight = 1.0 / gain.square().sum(dim=1, keepdim=True).clamp_min(1e-8)
        out_rows = slice(first * s, (last - 1) * s + p)
        num[..., out_rows, :] += F.conv_transpose2d(est * weight, basis, stride=s)
        den[..., out_rows, :] += F.conv_transpose2d(weight, ones, stride=s)
    return (num / den)[0, 0, :h, :w].numpy()
