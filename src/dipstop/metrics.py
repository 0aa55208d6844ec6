"""Full-reference metrics against a clean image: PSNR and SSIM, on the outputs' device.

They run every iteration of a bench run, so they stay on the device (no host copy of the
output) and return one float each. SSIM reproduces scikit-image's `structural_similarity`
defaults (7x7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03, borders of 3 pixels
excluded, mean over channels); tests/test_metrics.py checks it against scikit-image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

SSIM_WINDOW = 7


def _as_nchw(x: np.ndarray | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """1 x C x H x W float64: tensors as given (C x H x W or 1 x C x H x W), arrays as H x W x C."""
    if isinstance(x, torch.Tensor):
        t = x.detach().to(device or x.device, torch.float64)
        return t if t.ndim == 4 else t.unsqueeze(0)
    a = torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)
    if a.ndim == 2:
        a = a[:, :, None]
    return a.permute(2, 0, 1).unsqueeze(0)


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Peak signal-to-noise ratio, in dB, between two images on the [0, 1] scale.

    10 log10(1 / MSE), computed in float64 on the first image's device (a tensor stays
    where it is: no host copy).

    Parameters
    ----------
    a, b : ndarray or Tensor
        The images, same size and channels. Tensors are C x H x W or 1 x C x H x W; arrays
        H x W or H x W x C; the two may be mixed.

    Returns
    -------
    float
        The PSNR in dB; inf when the images are identical.

    Examples
    --------
    >>> psnr(np.zeros((4, 4)), np.full((4, 4), 0.1))
    20.0
    >>> psnr(torch.zeros(3, 4, 4), np.zeros((4, 4, 3)))
    inf
    """
    x = _as_nchw(a)
    y = _as_nchw(b, x.device)
    mse = float(torch.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def ssim(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Mean structural similarity of two images on the [0, 1] scale (data range 1).

    Reproduces scikit-image's `structural_similarity` with its defaults (7x7 uniform
    window, sample covariance, K1 = 0.01, K2 = 0.03, 3-pixel borders excluded, mean over
    channels), computed on the first image's device.

    Parameters
    ----------
    a, b : ndarray or Tensor
        The images, same size and channels; at least 7 x 7. Layouts as for `psnr`.

    Returns
    -------
    float
        The mean SSIM; 1.0 for identical images.

    Examples
    --------
    >>> from skimage.metrics import structural_similarity
    >>> rng = np.random.default_rng(0)
    >>> a = rng.random((32, 32, 3))
    >>> b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    >>> ref = structural_similarity(a, b, channel_axis=-1, data_range=1)
    >>> abs(ssim(a, b) - float(ref)) < 1e-9, round(ssim(np.eye(16), np.eye(16)), 6)
    (True, 1.0)
    """
    x = _as_nchw(a)
    y = _as_nchw(b, x.device)
    n = SSIM_WINDOW**2
    cov_norm = n / (n - 1)

    def mean(t: torch.Tensor) -> torch.Tensor:  # valid 7x7 means = skimage's cropped region
        return F.avg_pool2d(t, SSIM_WINDOW, stride=1)

    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean(dim=(0, 2, 3)).mean())
