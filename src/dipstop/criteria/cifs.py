"""Per-iteration criteria: each turns one iteration's output into a number.

CIFS (the paper's Eq. 2-3) in dipstop's size-invariant units: with MSE on the [0, 1] scale
and the JPEG size as bytes per pixel b = L / (H W),

    E_t = lam * MSE_t + b_t^2,

which is the paper's lambda * MSE + L^2 / (H W) divided by H W, so lam = lambda_paper / (H W)
and both pick the same iteration. Lambda tuned on one image size then serves every size.
"""

from __future__ import annotations

import numpy as np
import torch

from dipstop.codecs import jpeg_bytes


def output_to_uint8(output: torch.Tensor) -> np.ndarray:
    """A 1 x C x H x W (or C x H x W) float output in [0, 1] as an 8-bit H x W x C array.

    Quantised on the device so only a quarter of the bytes cross to the host.
    """
    y = output[0] if output.ndim == 4 else output
    q = y.clamp(0, 1).mul_(255).round_().to(torch.uint8)
    return q.permute(1, 2, 0).cpu().numpy()


def cifs_value(mse: float, nbytes: int, pixels: int, lam: float) -> float:
    """E = lam * MSE + (bytes per pixel)^2, dipstop's size-invariant form of Eq. 2.

    >>> cifs_value(0.01, 4096, 64 * 64, lam=100.0)
    2.0
    """
    bpp = nbytes / pixels
    return lam * mse + bpp * bpp


def paper_lambda(lam: float, height: int, width: int) -> float:
    """The paper's lambda (for L^2 / (H W)) equivalent to dipstop's lam at this size."""
    return lam * height * width


class CifsCriterion:
    """Computes JPEG bytes and E_t for each iteration of a fit."""

    def __init__(self, lam: float) -> None:
        self.lam = lam

    def __call__(self, output: torch.Tensor, mse: float) -> tuple[int, float]:
        """(JPEG bytes at q95, E_t) for an output and its MSE to the noisy image."""
        return self.score(output_to_uint8(output), mse)

    def score(self, image: np.ndarray, mse: float) -> tuple[int, float]:
        """The host-side part of `__call__`, on the output already as 8-bit H x W x C.

        >>> CifsCriterion(lam=100.0).score(np.zeros((64, 64, 3), np.uint8), 0.0)[0] > 0
        True
        """
        nbytes = jpeg_bytes(image)
        return nbytes, cifs_value(mse, nbytes, image.shape[0] * image.shape[1], self.lam)
