"""Data sets: folders of clean images, centre crops, and reproducible synthetic noise."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from dipstop.errors import DipstopError
from dipstop.imageio import read_image
from dipstop.noise import add_gaussian_noise

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files in a folder; DipstopError when there are none."""
    p = Path(folder)
    if not p.is_dir():
        raise DipstopError(f"image folder {p} does not exist; give a folder of clean images")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DipstopError(
            f"no images (.png, .jpg, .tif, .bmp) in {p}; give a folder of clean images"
        )
    return files


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes: identifies an image in a run's key, whatever its path."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def evenly_spaced(files: list[Path], n: int | None) -> list[Path]:
    """`n` files spread over the sorted list (every len // n-th, from the first); all for None.

    >>> [p.name for p in evenly_spaced([Path(f"{i}.png") for i in range(10)], 3)]
    ['0.png', '3.png', '6.png']
    """
    if n is None:
        return files
    return files[:: max(1, len(files) // n)][:n]


def centre_crop(image: np.ndarray, side: int | None) -> np.ndarray:
    """The central side x side crop of an H x W x C image (the image itself for None)."""
    if side is None:
        return image
    h, w = image.shape[:2]
    if min(h, w) < side:
        raise DipstopError(f"image is {w}x{h}, smaller than the protocol's {side}px crop")
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def noise_seed(image_name: str, sigma: float, seed: int) -> int:
    """A reproducible noise seed for one (image, sigma, seed) cell of a grid."""
    digest = hashlib.sha256(f"{image_name}|{sigma:g}|{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def synthetic_pair(
    path: str | Path, crop: int | None, sigma: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) float H x W x C images in [0, 1] for one cell of a grid.

    The clean image is the file's centre crop; the noise is Gaussian, clipped, and drawn from
    `noise_seed(file name, sigma, seed)`, so every run of the same cell sees the same noise.
    """
    p = Path(path)
    clean = centre_crop(read_image(p).pixels, crop)
    return clean, add_gaussian_noise(clean, sigma, noise_seed(p.name, sigma, seed))
