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
    """PSNR in dB between two images on the [0, 1] scale (inf when identical).

    Tensors are C x H x W or 1 x C x H x W; arrays H x W (x C); the two may be mixed.

    >>> psnr(np.zeros((4, 4)), np.full((4, 4), 0.1))
    20.0
    """
    x = _as_nchw(a)
    y = _as_nchw(b, x.device)
    mse = float(torch.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def ssim(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Mean SSIM of two images on the [0, 1] scale (data range 1), as scikit-image computes it.

    >>> round(ssim(np.eye(16), np.eye(16)), 6)
    1.0
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
