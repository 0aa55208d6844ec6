"""The denoisers a user would try instead of dipstop, run on the same noisy pixels.

- BM3D (Dabov et al. 2007), the `bm3d` package (an optional extra: `pip install dipstop[peers]`),
  with the noise level known or estimated;
- non-local means (Buades et al. 2005), scikit-image's, with its own sigma estimate;
- zero-shot Noise2Noise (ZS-N2N; Mansour & Heckel, CVPR 2023), re-implemented here: a
  two-layer network trained on the image's two diagonal half-resolution copies, with the
  residual and consistency losses, Adam at 1e-3 halved after 1500 of 2000 steps.

Every function takes and returns a float H x W x C image in [0, 1].

References
----------
Dabov, Foi, Katkovnik, Egiazarian, "Image denoising by sparse 3-D transform-domain
collaborative filtering", IEEE TIP 16(8), 2007.
Buades, Coll, Morel, "A non-local algorithm for image denoising", CVPR 2005.
Mansour, Heckel, "Zero-Shot Noise2Noise: Efficient Image Denoising without any Data",
CVPR 2023.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dipstop.errors import DipstopError


def bm3d_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D at noise std `sigma` (0-255 scale); colour images through its CBM3D path.

    Raises
    ------
    DipstopError
        When the optional `bm3d` package is not installed.
    """
    try:
        import bm3d  # noqa: PLC0415 - an optional extra
    except ImportError:
        raise DipstopError(
            "BM3D needs the bm3d package; install it with pip install 'dipstop[peers]'"
        ) from None
    x = np.asarray(noisy, np.float64)
    if x.ndim == 3 and x.shape[2] == 3:
        out = bm3d.bm3d_rgb(x, sigma / 255.0)
    else:
        out = bm3d.bm3d(x, sigma / 255.0)
        out = out.reshape(x.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def nlmeans_denoise(noisy: np.ndarray) -> np.ndarray:
    """scikit-image's fast non-local means with its own sigma estimate (the recipe of its docs:
    h = 0.8 sigma, 5 x 5 patches, 13 x 13 search window)."""
    from skimage.restoration import denoise_nl_means, estimate_sigma  # noqa: PLC0415

    axis = -1 if noisy.ndim == 3 else None
    sigma = float(np.mean(estimate_sigma(noisy, channel_axis=axis)))
    out = denoise_nl_means(
        noisy, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6,
        channel_axis=axis,
    )  # fmt: skip
    return np.clip(out, 0.0, 1.0).astype(np.float32)


class _ZsN2NNet(nn.Module):
    """ZS-N2N's network: 3x3 conv, 3x3 conv (48 channels, leaky ReLU 0.2), 1x1 conv."""

    def __init__(self, channels: int, embed: int = 48) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, embed, 3, padding=1)
        self.conv2 = nn.Conv2d(embed, embed, 3, padding=1)
        self.conv3 = nn.Conv2d(embed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(x), 0.2)
        x = F.leaky_relu(self.conv2(x), 0.2)
        return self.conv3(x)


def pair_downsample(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two half-resolution copies of ZS-N2N: means of each 2x2 block's two diagonals.

    Examples
    --------
    >>> a, b = pair_downsample(torch.arange(16.0).reshape(1, 1, 4, 4))
    >>> a[0, 0].tolist(), b[0, 0].tolist()
    ([[2.5, 4.5], [10.5, 12.5]], [[2.5, 4.5], [10.5, 12.5]])
    """
    c = x.shape[1]
    anti = torch.tensor([[0.0, 0.5], [0.5, 0.0]], dtype=x.dtype, device=x.device)
    main = torch.tensor([[0.5, 0.0], [0.0, 0.5]], dtype=x.dtype, device=x.device)
    first = F.conv2d(x, anti.expand(c, 1, 2, 2), stride=2, groups=c)
    second = F.conv2d(x, main.expand(c, 1, 2, 2), stride=2, groups=c)
    return first, second


def zsn2n_denoise(
    noisy: np.ndarray, steps: int = 2000, seed: int = 0, device: str = "cpu"
) -> np.ndarray:
    """Zero-shot Noise2Noise on one image: no noise level, no training data.

    The network predicts the noise; it is trained so that each half-resolution copy,
    denoised, predicts the other (residual loss), and so that denoising commutes with the
    downsampling (consistency loss). Returns the noisy image minus the predicted noise.
    """
    torch.manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(noisy, np.float32))
    x = (x.permute(2, 0, 1) if x.ndim == 3 else x[None]).unsqueeze(0).to(device)
    net = _ZsN2NNet(x.shape[1]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1500, gamma=0.5)
    for _ in range(steps):
        a, b = pair_downsample(x)
        pred_a, pred_b = a - net(a), b - net(b)
        residual = 0.5 * (F.mse_loss(a, pred_b) + F.mse_loss(b, pred_a))
        da, db = pair_downsample(x - net(x))
        consistency = 0.5 * (F.mse_loss(pred_a, da) + F.mse_loss(pred_b, db))
        opt.zero_grad(set_to_none=True)
        (residual + consistency).backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        out = (x - net(x)).clamp(0, 1)[0].cpu()
    out = out.permute(1, 2, 0) if noisy.ndim == 3 else out[0]
    return out.numpy().astype(np.float32)
