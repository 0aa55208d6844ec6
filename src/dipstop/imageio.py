"""Reading and writing user images at their own bit depth, with one-line errors.

OpenCV decodes (8- and 16-bit PNG/TIFF, JPEG, gray, RGB, RGBA); Pillow checks first that the
file is a complete image, because OpenCV silently returns a half-gray picture for a
truncated JPEG. Pixels travel inside dipstop as float32 in [0, 1] (H x W x C, RGB order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from dipstop.errors import DipstopError

WRITABLE = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp"}
SIXTEEN_BIT_OK = {".png", ".tif", ".tiff"}


@dataclass
class LoadedImage:
    """An image split into the part dipstop denoises and what passes through unchanged."""

    pixels: np.ndarray  # H x W x C float32 in [0, 1], C = 1 (gray) or 3 (RGB)
    alpha: np.ndarray | None  # H x W in the source dtype, passed through untouched
    dtype: np.dtype  # uint8 or uint16: the bit depth to write back

    @property
    def max_value(self) -> int:
        return int(np.iinfo(self.dtype).max)


def split_array(array: np.ndarray) -> LoadedImage:
    """Split an H x W, H x W x 1/2/3/4 integer or float array (RGB order) into a LoadedImage.

    Float arrays must lie in [0, 1]; they are written back as float by the Python API.
    """
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise DipstopError(
            f"unsupported image shape {array.shape}; give H x W (gray), H x W x 3 (RGB) "
            "or H x W x 4 (RGBA)"
        )
    if array.dtype in (np.uint8, np.uint16):
        dtype = array.dtype
        scale = float(np.iinfo(dtype).max)
    elif np.issubdtype(array.dtype, np.floating):
        dtype, scale = np.dtype(np.float32), 1.0
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise DipstopError("float image values must be finite and in [0, 1]; rescale it first")
    else:
        raise DipstopError(
            f"unsupported pixel type {array.dtype}; use uint8, uint16 or float in [0, 1]"
        )
    colour = array.shape[2] in (3, 4)
    n = 3 if colour else 1
    alpha = array[:, :, n] if array.shape[2] in (2, 4) else None
    pixels = (array[:, :, :n].astype(np.float32) / scale).astype(np.float32)
    return LoadedImage(pixels, None if alpha is None else alpha.copy(), np.dtype(dtype))


def join_array(pixels: np.ndarray, like: LoadedImage) -> np.ndarray:
    """Float H x W x C pixels in [0, 1] back to the source's bit depth, alpha re-attached."""
    if like.dtype == np.float32:
        out = pixels.astype(np.float32)
    else:
        out = np.rint(np.clip(pixels, 0, 1) * like.max_value).astype(like.dtype)
    if like.alpha is not None:
        out = np.concatenate([out, like.alpha[:, :, None].astype(out.dtype)], axis=2)
    return out[:, :, 0] if out.shape[2] == 1 else out


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Load an image file for denoising; raise DipstopError naming the problem and the fix."""
    p = Path(path)
    if not p.exists():
        raise DipstopError(f"no such file: {p}; check the path")
    if p.is_dir():
        raise DipstopError(f"{p} is a folder; give an image file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DipstopError(f"cannot read {p} ({exc.strerror}); check its permissions") from exc
    _check_complete(p, data)
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise DipstopError(f"{p} is not an image OpenCV can read; convert it to PNG, TIFF or JPEG")
    if array.ndim == 3 and array.shape[2] >= 3:  # OpenCV's BGR(A) to RGB(A)
        order = [2, 1, 0] + ([3] if array.shape[2] == 4 else [])
        array = array[:, :, order]
    if array.dtype not in (np.uint8, np.uint16):
        raise DipstopError(
            f"{p} has {array.dtype} pixels; dipstop reads 8- and 16-bit images, convert it first"
        )
    return split_array(array)


def _check_complete(path: Path, data: bytes) -> None:
    """Reject non-images and truncated files with Pillow, which notices truncation."""
    import io

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except UnidentifiedImageError:
        # Pillow lacks some formats OpenCV reads (e.g. some 16-bit TIFFs); OpenCV decides.
        return
    except (OSError, SyntaxError, ValueError) as exc:
        raise DipstopError(
            f"{path} is damaged or truncated ({exc}); re-export or re-download it"
        ) from exc


def check_writable(path: str | os.PathLike) -> Path:
    """Fail before any fitting if `path` cannot be written, so no computation is wasted."""
    p = Path(path)
    if p.suffix.lower() not in WRITABLE:
        raise DipstopError(
            f"cannot write {p.suffix or 'a file without extension'}; "
            f"name the output with one of {', '.join(sorted(WRITABLE))}"
        )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise DipstopError(f"output folder {parent} does not exist; create it first")
    if p.is_dir() or not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise DipstopError(f"cannot write {p}; choose a writable location with -o")
    return p


def write_image(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an 8- or 16-bit array (RGB(A) order) to a file; JPEG/BMP/WebP get 8 bits."""
    p = Path(path)
    if array.dtype == np.uint16 and p.suffix.lower() not in SIXTEEN_BIT_OK:
        array = np.rint(array / 257.0).astype(np.uint8)
    if array.dtype == np.float32:
        array = np.rint(np.clip(array, 0, 1) * 255).astype(np.uint8)
    if p.suffix.lower() in {".jpg", ".jpeg"} and array.ndim == 3 and array.shape[2] in (2, 4):
        array = array[:, :, :-1]  # JPEG has no alpha channel
    if array.ndim == 3 and array.shape[2] >= 3:
        order = [2, 1, 0] + ([3] if array.shape[2] == 4 else [])
        array = array[:, :, order]
    ok, buf = cv2.imencode(p.suffix.lower(), np.ascontiguousarray(array))
    if not ok:
        raise DipstopError(f"OpenCV could not encode {p.suffix} for this image; try .png")
    try:
        p.write_bytes(buf.tobytes())
    except OSError as exc:
        raise DipstopError(
            f"cannot write {p} ({exc.strerror}); choose another path with -o"
        ) from exc
