"""Memory guard: estimate what a fit needs and refuse one that cannot fit, before starting.

benchmarks/memory.py measured the peak on the CPU at 124-128 bytes per padded pixel per
channel of width for images of 256 x 256 and more (more per pixel below, where fixed costs
dominate), on top of ~300 MiB for PyTorch itself. The guard uses 160 bytes and 512 MiB, a
margin for allocator slack; a refused fit costs nothing, a killed one loses the run.
"""

from __future__ import annotations

import os

import torch

from dipstop.errors import DipstopError

BYTES_PER_PIXEL_WIDTH = 160
FIXED_BYTES = 512 * 2**20


def estimate_bytes(padded_pixels: int, width: int) -> int:
    """Peak memory of a fit on a padded canvas of this many pixels at this network width."""
    return FIXED_BYTES + BYTES_PER_PIXEL_WIDTH * padded_pixels * width


def available_bytes(device: torch.device) -> int | None:
    """Free memory on the device (CUDA) or available RAM (CPU); None when unknown."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(
    height: int, width_px: int, padded_pixels: int, width: int, device: torch.device
) -> None:
    """Raise DipstopError naming the size and a way out when the fit would not fit.

    >>> check_fits(64, 64, 64 * 64, 8, torch.device("cpu"))
    """
    need = estimate_bytes(padded_pixels, width)
    have = available_bytes(device)
    if have is not None and need > have:
        gib = 2**30
        raise DipstopError(
            f"a {width_px}x{height} image at width {width} needs about {need / gib:.1f} GiB, "
            f"{device.type} has {have / gib:.1f} GiB free; use a smaller --width, crop or "
            "downscale the image, or a device with more memory"
        )
