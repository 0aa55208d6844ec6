"""Reading and writing user images at their own bit depth, with one-line errors.

Reading: Pillow opens the header first (format, mode, declared size), so an oversized or
unsupported image is refused before anything is decoded; Pillow then loads it, which notices
a truncated file (OpenCV silently returns a half-gray picture for a truncated JPEG). OpenCV
decodes, because it keeps 16-bit colour (Pillow reduces it to 8 bits); where OpenCV's channels
disagree with the file's mode (a gray+alpha PNG comes out as RGBA, a gray+alpha TIFF loses its
alpha), Pillow's decoding is used instead. TIFFs Pillow cannot identify (16-bit gray+alpha,
float RGB) go through tifffile's header. Any file gives an image or a DipstopError.

A file's ICC profile and EXIF are kept beside the pixels (`LoadedImage.meta`) and put into a
PNG or JPEG output (`dipstop.metadata`), so a denoised photo shows as the input did.

Writing: encoded in memory, then written to a temporary file in the destination's folder and
renamed over it (`os.replace`), so an interrupted write never leaves a truncated image.

Pixels travel inside dipstop as float32 in [0, 1] (H x W x C, RGB order).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from dipstop.errors import DipstopError
from dipstop.metadata import attach, read_metadata
from dipstop.validate import check_pixel_count, image_array, max_pixels

WRITABLE = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp"}
SIXTEEN_BIT_OK = {".png", ".tif", ".tiff"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}  # what a folder's images are

# Pillow modes dipstop reads, by the channels they become (P depends on its transparency)
_CHANNELS = {
    "1": 1,
    "L": 1,
    "I": 1,  # older Pillow opens 16-bit gray PNGs as "I"; a 32-bit TIFF is refused below
    "I;16": 1,
    "I;16B": 1,
    "I;16L": 1,
    "I;16N": 1,
    "LA": 2,
    "RGB": 3,
    "RGBA": 4,
    "PA": 4,
}
_MODE_WORDS = {
    "F": "float32",
    "I": "32-bit integer",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
    "LAB": "CIELAB",
    "HSV": "HSV",
    "La": "premultiplied gray+alpha",
    "RGBa": "premultiplied RGBA",
    "RGBX": "padded RGB",
}


@dataclass
class LoadedImage:
    """An image split into the part dipstop denoises and what passes through unchanged.

    Made by `read_image` and `split_array`; `join_array` puts denoised pixels back into the
    source's form.

    Attributes
    ----------
    pixels : ndarray
        H x W x C float32 in [0, 1], C = 1 (gray) or 3 (RGB).
    alpha : ndarray or None
        H x W alpha channel in the source dtype, passed through untouched.
    dtype : numpy.dtype
        uint8, uint16 or a float type: what to give back.
    ndim : int
        2 or 3; 3 keeps a gray image's channel axis (H x W x 1) on the way back.
    meta : dict
        The file's ICC profile and EXIF ("icc_profile", "exif": bytes), for `write_image`
        to carry to the output (`dipstop.metadata`); empty for an array.
    """

    pixels: np.ndarray  # H x W x C float32 in [0, 1], C = 1 (gray) or 3 (RGB)
    alpha: np.ndarray | None  # H x W in the source dtype, passed through untouched
    dtype: np.dtype  # uint8, uint16 or a float type: what to give back
    ndim: int = 2  # 3 keeps a gray image's channel axis (H x W x 1) on the way back
    meta: dict[str, bytes] = field(default_factory=dict)  # ICC profile and EXIF of a file

    @property
    def max_value(self) -> float:
        if self.dtype.kind == "f":
            return 1.0
        return int(np.iinfo(self.dtype).max)


def split_array(array: np.ndarray) -> LoadedImage:
    """Split an H x W, H x W x 1/2/3/4 integer or float array (RGB order) into a LoadedImage.

    Integer pixels are scaled by their type's maximum to float32 in [0, 1]; a second (gray)
    or fourth (RGB) channel is alpha, kept aside. Float arrays must lie in [0, 1]; they come
    back from `join_array` in their own float type.

    Parameters
    ----------
    array : ndarray
        H x W (gray), H x W x 1, H x W x 2 (gray+alpha), H x W x 3 (RGB) or H x W x 4
        (RGBA); uint8, uint16 or float in [0, 1].

    Returns
    -------
    LoadedImage

    Raises
    ------
    DipstopError
        For another shape or dtype, NaN or inf, or float values outside [0, 1].

    Examples
    --------
    >>> rgba = np.zeros((4, 4, 4), np.uint16)
    >>> rgba[..., 0], rgba[..., 3] = 65535, 1000
    >>> im = split_array(rgba)
    >>> im.pixels.shape, im.pixels.dtype, float(im.pixels[0, 0, 0]), int(im.alpha[0, 0])
    ((4, 4, 3), dtype('float32'), 1.0, 1000)
    """
    array = image_array(array)
    ndim = array.ndim
    if array.ndim == 2:
        array = array[:, :, None]
    scale = 1.0 if array.dtype.kind == "f" else float(np.iinfo(array.dtype).max)
    colour = array.shape[2] in (3, 4)
    n = 3 if colour else 1
    alpha = array[:, :, n] if array.shape[2] in (2, 4) else None
    pixels = (array[:, :, :n].astype(np.float32) / scale).astype(np.float32)
    return LoadedImage(pixels, None if alpha is None else alpha.copy(), array.dtype, ndim)


def join_array(pixels: np.ndarray, like: LoadedImage) -> np.ndarray:
    """Float H x W x C pixels in [0, 1] back to the source's type and shape, alpha re-attached.

    Integer types are rounded (halves to even) after clipping to [0, 1].

    Parameters
    ----------
    pixels : ndarray
        H x W x C float pixels, C as in `like.pixels`.
    like : LoadedImage
        The source, as `split_array` or `read_image` made it.

    Returns
    -------
    ndarray
        In the source's dtype and shape (its alpha, if any, as the last channel).

    Examples
    --------
    >>> gray = np.array([[0, 128], [255, 7]], np.uint8)
    >>> im = split_array(gray)
    >>> np.array_equal(join_array(im.pixels, im), gray), join_array(im.pixels * 2, im)
    (True, array([[  0, 255],
           [255,  14]], dtype=uint8))
    """
    if like.dtype.kind == "f":
        out = np.clip(pixels, 0, 1).astype(like.dtype)
    else:
        out = np.rint(np.clip(pixels, 0, 1) * like.max_value).astype(like.dtype)
    if like.alpha is not None:
        out = np.concatenate([out, like.alpha[:, :, None].astype(out.dtype)], axis=2)
    return out[:, :, 0] if out.shape[2] == 1 and like.ndim == 2 else out


# -- reading ---------------------------------------------------------------------------------


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files in a folder, sorted: a .png, .jpg, .jpeg, .tif, .tiff or .bmp suffix
    (any case), hidden files left out; subfolders are not searched. What `dipstop denoise
    FOLDER` and the lab's data sets take from a folder.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("b.png", "a.JPG", ".c.png", "notes.txt"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> [p.name for p in image_files(folder)]
    ['a.JPG', 'b.png']
    """
    return sorted(
        f
        for f in Path(folder).iterdir()
        if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file()
    )


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Load an image file for denoising; raise DipstopError naming the problem and the fix.

    Keeps the file's bit depth (8 or 16), alpha, ICC profile and EXIF; see the module's
    notes on decoding.

    Parameters
    ----------
    path : str or path-like
        PNG, TIFF, JPEG, BMP, WebP or another format Pillow identifies; at most
        DIPSTOP_MAX_PIXELS pixels (200 million by default).

    Returns
    -------
    LoadedImage

    Raises
    ------
    DipstopError
        For a missing, unreadable, oversized, damaged or unsupported file.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "ramp.png")
    >>> ramp = (np.arange(64 * 64 * 3).reshape(64, 64, 3) * 5).astype(np.uint16)
    >>> write_image(path, ramp)
    >>> im = read_image(path)
    >>> im.dtype, im.pixels.shape, np.array_equal(join_array(im.pixels, im), ramp)
    (dtype('uint16'), (64, 64, 3), True)
    """
    p = Path(path)
    if not p.exists():
        raise DipstopError(f"no such file: {p}; check the path")
    if p.is_dir():
        raise DipstopError(f"{p} is a folder; give an image file")
    if not p.is_file():  # a FIFO or device (/dev/zero) would be read forever
        raise DipstopError(f"{p} is not a regular file; give an image file")
    size, most = p.stat().st_size, max_file_bytes()
    if size > most:
        raise DipstopError(
            f"{p} is {size / 2**20:,.0f} MiB, more than any image within the pixel limit "
            f"needs ({most / 2**20:,.0f} MiB); shrink it, or raise DIPSTOP_MAX_PIXELS"
        )
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DipstopError(f"cannot read {p} ({exc.strerror}); check its permissions") from exc
    array, meta = _decode(data, str(p))
    loaded = split_array(array)
    loaded.meta = meta
    return loaded


def max_file_bytes() -> int:
    """The largest file read: 8 bytes (16-bit RGBA) per allowed pixel, plus 64 MiB."""
    return 8 * max_pixels() + 2**26


def decode_image(data: bytes, where: str = "the image") -> np.ndarray:
    """Image file bytes as H x W (gray) or H x W x 2/3/4 uint8/uint16, RGB(A) order.

    The declared size is checked against the pixel limit before decoding (`max_pixels`).
    `where` names the file in error messages.
    """
    return _decode(data, where)[0]


def _decode(data: bytes, where: str) -> tuple[np.ndarray, dict[str, bytes]]:
    """`decode_image`'s array, and the file's ICC profile and EXIF (`read_metadata`)."""
    if not data:
        raise DipstopError(f"{where} is empty (0 bytes); give an image file")
    with _own_pixel_limit(), _quiet_decoders():
        try:
            im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            return _decode_unidentified(data, where)
        except Exception as exc:  # hostile headers make Pillow's parsers raise all sorts
            raise _damaged(where, exc) from exc
        with im:
            check_pixel_count(im.width, im.height, where)
            channels = _channels_of(im, data, where)
            try:
                im.load()
            except Exception as exc:
                raise _damaged(where, exc) from exc
            array = None
            if im.format == "TIFF" and channels in (2, 4):
                array = _tiff_with_alpha(data, channels, im.size)
            if array is None:
                array = _decode_opencv(data, channels, im.size)
            if array is None:
                array = _pillow_array(im, channels, where)
            return array, read_metadata(im)


_PIL_LIMIT = threading.Lock()


@contextlib.contextmanager
def _own_pixel_limit() -> Iterator[None]:
    """Lift Pillow's decompression-bomb limit: dipstop checks its own (DIPSTOP_MAX_PIXELS)."""
    with _PIL_LIMIT:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


@contextlib.contextmanager
def _quiet_decoders() -> Iterator[None]:
    """No decoder chatter on a damaged file (Pillow's warnings, OpenCV's and tifffile's logs):
    either the image decodes or a one-line DipstopError says why."""
    log = logging.getLogger("tifffile")
    disabled = log.disabled
    cv_log = getattr(getattr(cv2, "utils", None), "logging", None)
    cv_level = cv_log.getLogLevel() if cv_log else None
    log.disabled = True
    if cv_log:
        cv_log.setLogLevel(cv_log.LOG_LEVEL_SILENT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.disabled = disabled
        if cv_log:
            cv_log.setLogLevel(cv_level)


def _damaged(where: str, exc: BaseException) -> DipstopError:
    why = " ".join(str(exc).split())[:120] or type(exc).__name__
    return DipstopError(f"{where} is damaged or truncated ({why}); re-export or re-download it")


def _refuse_kind(where: str, kind: str) -> DipstopError:
    return DipstopError(
        f"{where} has {kind} pixels; dipstop reads 8- and 16-bit gray, gray+alpha, RGB, RGBA "
        "and palette images, convert it first"
    )


def _channels_of(im: Image.Image, data: bytes, where: str) -> int:
    """How many channels the image has for dipstop: 1, 2 (gray+alpha), 3 or 4."""
    if _png_colour_type(data) == 4:
        return 2  # Pillow opens a 16-bit gray+alpha PNG as 8-bit RGBA
    if im.mode == "P":
        return 4 if "transparency" in im.info else 3
    if im.mode in _CHANNELS:
        return _CHANNELS[im.mode]
    raise _refuse_kind(where, _MODE_WORDS.get(im.mode, f"{im.mode}-mode"))


def _png_colour_type(data: bytes) -> int | None:
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 26:
        return data[25]
    return None


def _tiff_with_alpha(data: bytes, channels: int, size: tuple[int, int]) -> np.ndarray | None:
    """A TIFF with alpha as stored, by tifffile: OpenCV decodes it through libtiff's RGBA
    interface, which premultiplies unassociated alpha (a Pillow-written RGBA TIFF's red 200
    at alpha 60 came back 47). None where tifffile cannot (LZW needs imagecodecs)."""
    import tifffile

    try:
        array = tifffile.imread(io.BytesIO(data), key=0)
    except Exception:  # a compression it lacks, or a layout it does not read
        return None
    if array.dtype not in (np.uint8, np.uint16) or array.shape != (size[1], size[0], channels):
        return None
    return np.ascontiguousarray(array)


def _decode_opencv(data: bytes, channels: int, size: tuple[int, int]) -> np.ndarray | None:
    """OpenCV's decoding in RGB(A) order, if it has the expected size and channels."""
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    if array is None or array.dtype not in (np.uint8, np.uint16):
        return None
    if array.shape[:2] != (size[1], size[0]):
        return None
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    have = 1 if array.ndim == 2 else array.shape[2]
    if have >= 3:  # OpenCV's BGR(A) to RGB(A)
        array = array[:, :, [2, 1, 0, 3][:have]]
    if have == channels:
        return array
    if channels == 2 and have == 4:  # gray+alpha decoded as RGBA: equal colour channels
        grey = array[:, :, 0]
        if np.array_equal(grey, array[:, :, 1]) and np.array_equal(grey, array[:, :, 2]):
            return np.ascontiguousarray(array[:, :, [0, 3]])
    return None


def _pillow_array(im: Image.Image, channels: int, where: str) -> np.ndarray:
    """Pillow's decoding (8 bits, or 16 for I;16 gray) with `channels` channels."""
    if im.mode == "I":
        raise _refuse_kind(where, "32-bit integer")
    try:
        if im.mode.startswith("I;16"):
            return np.asarray(im).astype(np.uint16)
        target = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
        return np.array(im if im.mode == target else im.convert(target))
    except Exception as exc:
        raise _damaged(where, exc) from exc


def _decode_unidentified(data: bytes, where: str) -> tuple[np.ndarray, dict[str, bytes]]:
    """Files Pillow cannot identify: TIFFs are read through tifffile's header (and their ICC
    profile with them), others refused."""
    not_image = DipstopError(
        f"{where} is not an image dipstop can read; convert it to PNG, TIFF or JPEG"
    )
    if data[:4] not in TIFF_MAGICS:
        raise not_image
    try:
        import tifffile
    except ImportError:  # pragma: no cover - scikit-image depends on tifffile
        raise not_image from None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            width, height = int(page.imagewidth), int(page.imagelength)
            check_pixel_count(width, height, where)
            dtype = page.dtype
            if dtype is None or np.dtype(dtype) not in (np.uint8, np.uint16):
                raise _refuse_kind(where, str(dtype) if dtype is not None else "unknown")
            samples = int(page.samplesperpixel)
            photometric = int(page.photometric)
            icc = page.tags.get(34675)  # InterColorProfile
            meta = {"icc_profile": bytes(icc.value)} if icc is not None and icc.value else {}
            if samples == 2 and photometric in (0, 1):  # gray+alpha (min-is-white/black)
                try:
                    array = page.asarray()
                except Exception as exc:
                    raise DipstopError(
                        f"cannot decode the gray+alpha TIFF {where} ({exc}); save it as PNG"
                    ) from exc
                if array.shape == (height, width, 2):
                    return np.ascontiguousarray(array), meta
                raise _damaged(where, ValueError(f"decoded shape {array.shape}"))
    except DipstopError:
        raise
    except Exception as exc:
        raise _damaged(where, exc) from exc
    array = _decode_opencv(data, samples, (width, height)) if samples in (1, 3, 4) else None
    if array is None:
        raise DipstopError(
            f"{where} is a TIFF layout dipstop cannot read ({samples} samples of {dtype}, "
            f"photometric {photometric}); save it as 8- or 16-bit PNG"
        )
    return array, meta


# -- writing ---------------------------------------------------------------------------------


def check_writable(
    path: str | os.PathLike,
    protect: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
) -> Path:
    """Fail before any fitting if `path` cannot be written, so no computation is wasted.

    `protect` lists the run's input files: writing over one of them is refused unless
    `overwrite` (the CLI's --overwrite) says to.

    Parameters
    ----------
    path : str or path-like
        The output file; its suffix picks the format (.png, .tif, .tiff, .jpg, .jpeg, .bmp
        or .webp).
    protect : iterable of paths
        Files that must not be replaced (None entries are ignored).
    overwrite : bool
        Allow replacing a protected file.

    Returns
    -------
    Path
        `path`.

    Raises
    ------
    DipstopError
        For an unwritable format, a missing or unwritable folder, a folder at `path`, or a
        protected file.

    Examples
    --------
    >>> check_writable("out.xyz")
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: cannot write .xyz; name the output with one of .bmp, .jpeg, \
.jpg, .png, .tif, .tiff, .webp
    >>> import os, tempfile
    >>> noisy = os.path.join(tempfile.mkdtemp(), "noisy.png")
    >>> write_image(noisy, np.zeros((8, 8), np.uint8))
    >>> check_writable(noisy, protect=[noisy], overwrite=True).name
    'noisy.png'
    """
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
    for other in protect:
        if other is None or overwrite or not p.exists() or not Path(other).exists():
            continue
        if os.path.samefile(p, other):
            raise DipstopError(
                f"the output {p} is the input {other}, which would be replaced; name another "
                "output with -o, or pass --overwrite to replace it"
            )
    return p


def encode_image(array: np.ndarray, suffix: str, icc_profile: bytes | None = None) -> bytes:
    """An 8- or 16-bit (or float, written as 8-bit) array, RGB(A) order, as file bytes.

    JPEG, BMP and WebP get 8 bits; JPEG drops alpha; gray+alpha is written as such to PNG
    and TIFF, and as RGBA with equal colour channels to BMP and WebP. A TIFF carries
    `icc_profile` (PNG and JPEG get theirs from `dipstop.metadata.attach`; other formats
    ignore it).
    """
    ext = suffix.lower()
    if ext not in WRITABLE:
        raise DipstopError(f"cannot write {suffix or 'a file without extension'}; use .png")
    if isinstance(array, np.ndarray) and array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise DipstopError("cannot write an image with NaN or inf pixels; fix them first")
        array = np.rint(np.clip(array, 0, 1) * 255).astype(np.uint8)
    array = image_array(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype == np.uint16 and ext not in SIXTEEN_BIT_OK:
        array = np.rint(array / 257.0).astype(np.uint8)
    channels = 1 if array.ndim == 2 else array.shape[2]
    if ext in {".jpg", ".jpeg"} and channels in (2, 4):
        array = array[:, :, :-1] if channels == 4 else array[:, :, 0]  # JPEG has no alpha
        channels -= 1
    if ext in {".tif", ".tiff"}:
        return _tiff(array, icc_profile)
    if channels == 2:
        if ext == ".png":
            return _png_gray_alpha(array)
        array, channels = array[:, :, [0, 0, 0, 1]], 4
    if channels >= 3:  # RGB(A) to OpenCV's BGR(A)
        array = array[:, :, [2, 1, 0, 3][:channels]]
    try:
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(array))
    except cv2.error:
        ok = False
    if not ok:
        raise DipstopError(f"OpenCV could not encode {suffix} for this image; try .png")
    return buf.tobytes()


def _png_gray_alpha(array: np.ndarray) -> bytes:
    """A gray+alpha PNG (colour type 4, 8 or 16 bits): OpenCV cannot write one."""
    height, width, _ = array.shape
    rows = array.astype(array.dtype.newbyteorder(">")).view(np.uint8).reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter 0 per row

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8 * array.dtype.itemsize, 4, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def _tiff(array: np.ndarray, icc_profile: bytes | None) -> bytes:
    """A TIFF written by tifffile (OpenCV can write neither gray+alpha nor an ICC profile):
    gray or RGB, alpha as unassociated extra sample, deflate-compressed, the profile in
    its tag (34675) when given."""
    import tifffile

    channels = 1 if array.ndim == 2 else array.shape[2]
    buf = io.BytesIO()
    tifffile.imwrite(
        buf, array, photometric="minisblack" if channels <= 2 else "rgb",
        extrasamples=["unassalpha"] if channels in (2, 4) else None,
        compression="zlib", iccprofile=icc_profile, metadata=None,
    )  # fmt: skip
    return buf.getvalue()


def write_image(
    path: str | os.PathLike, array: np.ndarray, meta: dict[str, bytes] | None = None
) -> None:
    """Write an image array (RGB(A) order) to a file, atomically; see `encode_image`.

    The bytes go to a temporary file in the same folder, which then replaces `path`, so an
    error or a kill during the write leaves any existing file at `path` untouched. A
    symbolic link at `path` is kept and its target replaced; an existing file's permissions
    are kept.

    Parameters
    ----------
    path : str or path-like
        The file; its suffix picks the format. PNG and TIFF keep 16 bits; JPEG, BMP and
        WebP get 8; JPEG drops alpha.
    array : ndarray
        H x W or H x W x 1/2/3/4, uint8, uint16 or float in [0, 1] (written as 8-bit).
    meta : dict, optional
        An ICC profile and EXIF to put in (`LoadedImage.meta`; PNG and JPEG keep both, TIFF
        the profile, `dipstop.metadata`).

    Raises
    ------
    DipstopError
        For an unwritable format or array, or when the file cannot be written.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "gray.jpg")
    >>> write_image(path, np.full((32, 32), 0.5))
    >>> im = read_image(path)
    >>> im.dtype, im.pixels.shape, int(join_array(im.pixels, im)[0, 0])
    (dtype('uint8'), (32, 32, 1), 128)
    """
    p = Path(path)
    meta = meta or {}
    data = attach(encode_image(array, p.suffix, meta.get("icc_profile")), p.suffix, meta)
    target = Path(os.path.realpath(p))
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            why = exc.strerror or str(exc)
            raise DipstopError(f"cannot write {p} ({why}); choose another path with -o") from exc
        raise
