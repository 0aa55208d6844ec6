"""The bundled sample: scikit-image's "Chelsea the cat" (CC0), cropped and shrunk, with noise.

Not a file from any benchmark set; made on demand so the project ships no image data. The
128 x 128 size matches the CPU protocol's crops, so the demo runs in a few minutes on two
cores.
"""

from __future__ import annotations

import cv2
import numpy as np

from dipstop.noise import add_gaussian_noise

SAMPLE_SIDE = 128
SAMPLE_SIGMA = 25.0


def sample_pair(
    side: int = SAMPLE_SIDE, sigma: float = SAMPLE_SIGMA, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) uint8 RGB side x side images of the cat (centre square of the photo)."""
    from skimage import data

    photo = data.chelsea()  # 300 x 451, CC0 (Stefan van der Walt)
    h, w = photo.shape[:2]
    left = (w - h) // 2
    clean = cv2.resize(photo[:, left : left + h], (side, side), interpolation=cv2.INTER_AREA)
    noisy = add_gaussian_noise(clean.astype(np.float32) / 255.0, sigma, seed)
    return clean, np.rint(noisy * 255).astype(np.uint8)
