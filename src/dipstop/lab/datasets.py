"""Data sets: folders of clean images, centre crops, and reproducible synthetic noise."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from dipstop.errors import DipstopError
from dipstop.imageio import image_files, read_image
from dipstop.noise import add_gaussian_noise


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files in a folder; DipstopError when there are none.

    Image files are those `dipstop.imageio.image_files` takes: a .png, .jpg, .jpeg, .tif,
    .tiff or .bmp suffix (any case), not hidden; other files are ignored. Subfolders are not
    searched.

    Parameters
    ----------
    folder : str or Path

    Returns
    -------
    list of Path
        Sorted by path.

    Raises
    ------
    DipstopError
        If the folder does not exist or holds no image.

    Examples
    --------
    >>> import tempfile
    >>> from dipstop.imageio import write_image
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("b.png", "a.jpg"):
    ...     write_image(folder / name, np.zeros((8, 8), np.uint8))
    >>> _ = (folder / "notes.txt").write_text("not an image")
    >>> [p.name for p in list_images(folder)]
    ['a.jpg', 'b.png']
    """
    p = Path(folder)
    if not p.is_dir():
        raise DipstopError(f"image folder {p} does not exist; give a folder of clean images")
    files = image_files(p)
    if not files:
        raise DipstopError(
            f"no images (.png, .jpg, .tif, .bmp) in {p}; give a folder of clean images"
        )
    return files


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes: identifies an image in a run's key, whatever its path.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    str
        64 hex digits.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.png").write_bytes(b"pixels")
    >>> _ = (folder / "copy.png").write_bytes(b"pixels")
    >>> file_sha256(folder / "a.png") == file_sha256(folder / "copy.png")
    True
    """
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def evenly_spaced(files: list[Path], n: int | None) -> list[Path]:
    """`n` files spread over the sorted list (every len // n-th, from the first); all for None.

    Parameters
    ----------
    files : list of Path
        Sorted files.
    n : int or None
        How many to take.

    Returns
    -------
    list of Path

    Examples
    --------
    >>> [p.name for p in evenly_spaced([Path(f"{i}.png") for i in range(10)], 3)]
    ['0.png', '3.png', '6.png']
    """
    if n is None:
        return files
    return files[:: max(1, len(files) // n)][:n]


def centre_crop(image: np.ndarray, side: int | None) -> np.ndarray:
    """The central side x side crop of an H x W x C image (the image itself for None).

    An odd margin leaves the extra pixel at the bottom or right.

    Parameters
    ----------
    image : ndarray
        H x W x C (or H x W).
    side : int or None
        The crop's side (a protocol's `crop`).

    Returns
    -------
    ndarray
        A view of `image`.

    Raises
    ------
    DipstopError
        If the image is smaller than the crop.

    Examples
    --------
    >>> image = np.arange(25).reshape(5, 5)
    >>> centre_crop(image, 2)
    array([[ 6,  7],
           [11, 12]])
    >>> centre_crop(image, 8)
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: image is 5x5, smaller than the protocol's 8px crop
    """
    if side is None:
        return image
    h, w = image.shape[:2]
    if min(h, w) < side:
        raise DipstopError(f"image is {w}x{h}, smaller than the protocol's {side}px crop")
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def noise_seed(image_name: str, sigma: float, seed: int) -> int:
    """A reproducible noise seed for one (image, sigma, seed) cell of a grid.

    The first 4 bytes of sha256("<image_name>|<sigma:g>|<seed>"), so the same cell gets
    the same noise on every machine and in every process.

    Parameters
    ----------
    image_name : str
        The image's file name.
    sigma : float
    seed : int
        The grid's seed.

    Returns
    -------
    int
        In [0, 2**32).

    Examples
    --------
    >>> noise_seed("a.png", 25, 0) == noise_seed("a.png", 25.0, 0)
    True
    >>> noise_seed("a.png", 25, 0) == noise_seed("a.png", 25, 1)
    False
    """
    digest = hashlib.sha256(f"{image_name}|{sigma:g}|{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def synthetic_pair(
    path: str | Path, crop: int | None, sigma: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) float H x W x C images in [0, 1] for one cell of a grid.

    The clean image is the file's centre crop; the noise is Gaussian, clipped, and drawn from
    `noise_seed(file name, sigma, seed)`, so every run of the same cell sees the same noise.

    Parameters
    ----------
    path : str or Path
        The clean image file.
    crop : int or None
        Side of the centre crop (None: the whole image).
    sigma : float
        Noise std, 0-255 scale.
    seed : int
        The grid's seed.

    Returns
    -------
    clean, noisy : ndarray
        float32 H x W x C in [0, 1].

    Examples
    --------
    >>> import tempfile
    >>> from dipstop.imageio import write_image
    >>> path = Path(tempfile.mkdtemp()) / "flat.png"
    >>> write_image(path, np.full((80, 96, 3), 128, np.uint8))
    >>> clean, noisy = synthetic_pair(path, 64, sigma=25, seed=0)
    >>> clean.shape, np.array_equal(noisy, synthetic_pair(path, 64, 25, 0)[1])
    ((64, 64, 3), True)
    >>> round(float(np.std(noisy - clean)) * 255)
    25
    """
    p = Path(path)
    clean = centre_crop(read_image(p).pixels, crop)
    return clean, add_gaussian_noise(clean, sigma, noise_seed(p.name, sigma, seed))
