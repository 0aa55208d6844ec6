"""The bundled sample: scikit-image's public-domain astronaut photo, shrunk, with noise.

Not a file from any benchmark set; made on demand so the project ships no image data.
"""

from __future__ import annotations

import cv2
import numpy as np

from dipstop.noise import add_gaussian_noise

SAMPLE_SIDE = 192
SAMPLE_SIGMA = 25.0


def sample_pair(
    side: int = SAMPLE_SIDE, sigma: float = SAMPLE_SIGMA, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) uint8 RGB images of the astronaut (NASA, public domain), side x side."""
    from skimage import data

    clean = cv2.resize(data.astronaut(), (side, side), interpolation=cv2.INTER_AREA)
    noisy = add_gaussian_noise(clean.astype(np.float32) / 255.0, sigma, seed)
    return clean, np.rint(noisy * 255).astype(np.uint8)
