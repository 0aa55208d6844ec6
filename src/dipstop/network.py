"""The Deep Image Prior "skip" network (Ulyanov et al.), as fixed in docs/design.md.

Five scales; each has a 1x1 skip branch (4 channels) and a deeper branch that halves the
resolution, recurses and upsamples back. Reflection padding, LeakyReLU(0.2), BatchNorm in
train mode, sigmoid output. Any size of at least 33 pixels a side runs as it is: a stride-2
conv of an odd side n gives (n + 1) / 2, its upsampling n + 1, and the join crops that to
the skip branch's n (as the original DIP's concat does). Pure: builds modules, does no I/O.

References
----------
Ulyanov, Vedaldi, Lempitsky, "Deep image prior", CVPR 2018; IJCV 2020.
"""

from __future__ import annotations

import torch
from torch import nn

SCALES = 5
SKIP_CHANNELS = 4
MIN_SIDE = 2**SCALES + 1  # the deepest 3x3 conv needs 2 pixels to reflection-pad


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    """Conv with bias and reflection padding of (k-1)//2 applied before it."""
    pad = (k - 1) // 2
    layers: list[nn.Module] = []
    if pad:
        layers.append(nn.ReflectionPad2d(pad))
    layers.append(nn.Conv2d(c_in, c_out, k, stride=stride, padding=0, bias=True))
    return nn.Sequential(*layers)


def _bn_act(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.LeakyReLU(0.2, inplace=True)]


class _Level(nn.Module):
    """One scale: concat(skip(x), up(deeper(x))) -> BN -> conv3x3 -> BN/act -> conv1x1 -> BN/act."""

    def __init__(self, c_in: int, width: int, inner: nn.Module | None) -> None:
        super().__init__()
        self.skip = nn.Sequential(_conv(c_in, SKIP_CHANNELS, 1), *_bn_act(SKIP_CHANNELS))
        deeper: list[nn.Module] = [
            _conv(c_in, width, 3, stride=2),
            *_bn_act(width),
            _conv(width, width, 3),
            *_bn_act(width),
        ]
        if inner is not None:
            deeper.append(inner)
        deeper.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
        self.deeper = nn.Sequential(*deeper)
        self.join = nn.Sequential(
            nn.BatchNorm2d(SKIP_CHANNELS + width),
            _conv(SKIP_CHANNELS + width, width, 3),
            *_bn_act(width),
            _conv(width, width, 1),
            *_bn_act(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip, deep = self.skip(x), self.deeper(x)
        height, width = skip.shape[-2:]
        if deep.shape[-2:] != skip.shape[-2:]:  # an odd side came back one pixel longer
            deep = deep[..., :height, :width]
        return self.join(torch.cat([skip, deep], dim=1))


def skip_network(
    out_channels: int = 3, width: int = 128, input_depth: int = 32, scales: int = SCALES
) -> nn.Sequential:
    """Build the DIP denoising network: `scales` scales (5, the paper's) of `width` channels,
    sigmoid output.

    Width 128 is the paper's (about 2.2 M parameters); 64 runs about 3x faster on a CPU.
    Fewer scales save little (`benchmarks/network_depth.py`: a step of 3 scales takes 0.92x
    the time of 5 at width 16 on 128 x 128) and no dipstop run uses them.

    >>> net = skip_network(out_channels=3, width=128)
    >>> sum(p.numel() for p in net.parameters()) // 100_000
    22
    """
    if width < 1 or out_channels < 1 or input_depth < 1 or scales < 1:
        raise ValueError("width, out_channels, input_depth and scales must be positive")
    level: nn.Module | None = None
    for i in reversed(range(scales)):
        level = _Level(input_depth if i == 0 else width, width, level)
    assert level is not None
    return nn.Sequential(level, _conv(width, out_channels, 1), nn.Sigmoid())
