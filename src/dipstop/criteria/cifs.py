"""CIFS, the paper's criterion (Eq. 2-3): JPEG size of the output traded against its fit.

CIFS (the paper's Eq. 2-3) in dipstop's size-invariant units: with MSE on the [0, 1] scale
and the JPEG size as bytes per pixel b = L / (H W),

    E_t = lam * MSE_t + b_t^2,

which is the paper's lambda * MSE + L^2 / (H W) divided by H W, so lam = lambda_paper / (H W)
and both pick the same iteration. Lambda tuned on one image size then serves every size.

References
----------
Takagi, Ishizaki, Maeda, "JPEG information regularized deep image prior for denoising"
(the paper dipstop reproduces; ../shared/seed/000_a6d9ecbf0bb99931.txt).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dipstop.codecs import jpeg_bytes
from dipstop.criteria.base import Context, Criterion, Sample, register


def cifs_value(mse: Any, nbytes: Any, pixels: int, lam: Any) -> Any:
    """E = lam * MSE + (bytes per pixel)^2, dipstop's size-invariant form of Eq. 2.

    Parameters
    ----------
    mse : float or ndarray
        MSE of the output to the noisy image, [0, 1] scale.
    nbytes : float or ndarray
        JPEG q95 size L of the 8-bit output, bytes.
    pixels : int
        H x W of the image.
    lam : float or ndarray
        dipstop's size-invariant weight (the paper's lambda / (H W)).

    Returns
    -------
    float or ndarray
        E, broadcast: a column of lams against a row of iterations gives one row per lam.

    Examples
    --------
    >>> import numpy as np
    >>> cifs_value(0.01, 4096, 64 * 64, lam=100.0)
    2.0
    >>> cifs_value(np.array([0.01, 0.02]), np.array([4096, 2048]), 64 * 64,
    ...            lam=np.array([[100.0], [10.0]]))
    array([[2.  , 2.25],
           [1.1 , 0.45]])
    """
    bpp = nbytes / pixels
    return lam * mse + bpp * bpp


def paper_lambda(lam: float, height: int, width: int) -> float:
    """The paper's lambda (for L^2 / (H W)) equivalent to dipstop's lam at this size.

    lambda_paper = lam * H * W: both pick the same iteration on an H x W image.

    Parameters
    ----------
    lam : float
        dipstop's size-invariant weight.
    height, width : int
        The image's size in pixels.

    Returns
    -------
    float

    Examples
    --------
    >>> paper_lambda(50.0, 321, 481)
    7720050.0
    """
    return lam * height * width


@register
class CifsCriterion(Criterion):
    """CIFS: records the JPEG q95 byte count L_t of each output; its values are
    E_t = lam * MSE_t + (L_t / pixels)^2, for the lam in the context.

    A host criterion: `measure` reads the 8-bit output image. Because `values` takes lam
    from the context, a run recorded once can be stopped for any lam afterwards.

    Parameters
    ----------
    every : int
        Score every `every`-th iteration (1, every iteration, in the paper).

    Examples
    --------
    >>> import numpy as np
    >>> c = CifsCriterion()
    >>> row = c.measure(Sample(1, 0.0, image=np.zeros((64, 64, 3), np.uint8)))
    >>> row["jpeg_bytes"] > 0
    True
    >>> float(c.values({"mse": 0.01, "jpeg_bytes": 4096}, Context(64 * 64, lam=100.0)))
    2.0
    """

    name, label, recorded = "cifs", "CIFS", ("jpeg_bytes",)

    def measure(self, sample: Sample) -> dict[str, float]:
        """{"jpeg_bytes": L_t}, the JPEG q95 size of the sample's 8-bit image."""
        assert sample.image is not None
        return {"jpeg_bytes": jpeg_bytes(sample.image)}

    @classmethod
    def values(cls, series: Mapping[str, Any], context: Context) -> Any:
        """E_t = lam * MSE_t + (L_t / pixels)^2 from the "mse" and "jpeg_bytes" series.

        Raises ValueError when the context has no lam. A column of lams gives one row of
        values per lam (`cifs_value`).
        """
        if context.lam is None:
            raise ValueError("CIFS values need lam in the context")
        return cifs_value(series["mse"], series["jpeg_bytes"], context.pixels, context.lam)
