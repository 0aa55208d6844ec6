"""Reading and writing user images at their own bit depth, with one-line errors.

Reading: Pillow opens the header first (format, mode, declared size), so an oversized or
unsupported image is refused before anything is decoded; Pillow then loads it, which notices
a truncated file (OpenCV silently returns a half-gray picture for a truncated JPEG). OpenCV
decodes, because it keeps 16-bit colour (Pillow reduces it to 8 bits); where OpenCV's channels
disagree with the file's mode (a gray+alpha PNG comes out as RGBA), Pillow's decoding is used
instead. Gray and RGB TIFFs are read as stored by tifffile (with imagecodecs for LZW, JPEG and
other compressions): OpenCV goes through libtiff's RGBA interface, which premultiplies alpha,
and misreads planar files. A PNG's colour key (tRNS) becomes an alpha channel. Reading never
changes colours silently: what it cannot keep it refuses, and what it leaves out (the further
frames of an animation, a TIFF's extra channels of unknown meaning) it names in a warning.
Any file gives an image or a DipstopError.

A file's ICC profile and EXIF are kept beside the pixels (`LoadedImage.meta`) and put into a
PNG or JPEG output (`dipstop.metadata`), so a denoised photo shows as the input did.

Writing: encoded in memory, then written to a temporary file in the destination's folder and
renamed over it (`os.replace`), so an interrupted write never leaves a truncated image. What
the format cannot hold (alpha in JPEG, 16 bits in JPEG, BMP and WebP) is named in a warning.

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

from dipstop.codecs import quantise
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
        out = quantise(pixels, like.max_value, like.dtype)
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

    Keeps the file's bit depth (8 or 16), alpha (a PNG's colour key included), ICC profile
    and EXIF; see the module's notes on decoding.

    An animated GIF, PNG or WebP, or a multi-page TIFF, gives its first frame, with a
    warning that names how many it has: the first frame is what viewers show and what a
    still-image tool is expected to read, and refusing would make every such file need a
    conversion; the warning tells who wanted the others to split the file. A TIFF's
    reduced-resolution pages (thumbnails) and an MPO's further images (a preview, a stereo
    pair's other half) are not frames and pass without a warning.

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
        For a missing, unreadable, oversized, damaged or unsupported file, or one whose
        colours cannot be read as stored (premultiplied alpha; a TIFF compression without
        its codec).

    Warns
    -----
    UserWarning
        Naming what is left out: further frames or pages, extra TIFF channels.

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
    array, meta, notes = _decode(data, str(p))
    for note in notes:
        warnings.warn(note, stacklevel=2)
    loaded = split_array(array)
    loaded.meta = meta
    return loaded


def max_file_bytes() -> int:
    """The largest file read: 8 bytes (16-bit RGBA) per allowed pixel, plus 64 MiB."""
    return 8 * max_pixels() + 2**26


def decode_image(data: bytes, where: str = "the image") -> np.ndarray:
    """Image file bytes as H x W (gray) or H x W x 2/3/4 uint8/uint16, RGB(A) order.

    The declared size is checked against the pixel limit before decoding (`max_pixels`).
    `where` names the file in error messages and warnings (`read_image` says which).
    """
    array, _, notes = _decode(data, where)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return array


def _decode(data: bytes, where: str) -> tuple[np.ndarray, dict[str, bytes], list[str]]:
    """`decode_image`'s array, the file's ICC profile and EXIF (`read_metadata`), and notes
    on what was left out, for the caller to warn with (the decoders' own warnings are
    silenced here)."""
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
            array, notes = None, []
            if im.format == "TIFF":  # tifffile notices a truncated file itself
                array, notes = _tiff_as_stored(data, where)
                if array is not None:
                    return array, read_metadata(im), notes
            channels = _channels_of(im, data, where)
            try:
                im.load()
            except Exception as exc:
                raise _damaged(where, exc) from exc
            if im.format in _ANIMATED and getattr(im, "n_frames", 1) > 1:
                notes.append(f"{where} has {im.n_frames} frames; dipstop denoises the first")
            key = _png_colour_key(data) if im.format == "PNG" else None
            if key is not None:  # gray or RGB with a colour key: the key's pixels become alpha
                colour = _decode_opencv(data, channels, im.size, _ANY_DEPTH_NO_ALPHA)
                if colour is None and channels == 3 and data[24] == 16:
                    raise DipstopError(  # Pillow decodes 8 bits, its key matches no pixel
                        f"cannot decode {where}, a 16-bit RGB PNG with a colour key (tRNS), "
                        "keeping its transparency; save it with an alpha channel"
                    )
                array = None if colour is None else _keyed(colour, key)
                channels += 1
            if array is None and not (im.format == "TIFF" and channels in (2, 4)):
                array = _decode_opencv(data, channels, im.size)  # libtiff's would premultiply
            if array is None:
                array = _pillow_array(im, channels, where)
            return array, read_metadata(im), notes


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


_ANIMATED = {"GIF", "PNG", "WEBP"}  # formats whose further frames are an animation's
_ANY_DEPTH_NO_ALPHA = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR


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


def _png_colour_key(data: bytes) -> tuple[int, ...] | None:
    """A gray or RGB PNG's colour key (tRNS chunk): the value whose pixels are transparent,
    on the scale the decoders give (a 1-, 2- or 4-bit gray key scaled to 8 bits as its
    pixels are); None without one.

    >>> def chunk(kind, body):  # a chunk's CRC is not checked here
    ...     return struct.pack(">I", len(body)) + kind + body + bytes(4)
    >>> head = PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 4, 0, 0, 0, 0))
    >>> _png_colour_key(head + chunk(b"tRNS", bytes([0, 3]))), _png_colour_key(head)
    ((51,), None)
    """
    colour_type = _png_colour_type(data)
    if colour_type not in (0, 2):
        return None
    depth, n, at = data[24], 1 if colour_type == 0 else 3, 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        if kind in (b"IDAT", b"IEND"):  # tRNS comes before the image data
            return None
        if kind == b"tRNS":
            body = data[at + 8 : at + 8 + length]
            if len(body) < 2 * n:
                return None
            key = struct.unpack(f">{n}H", body[: 2 * n])
            if depth < 8:
                most = 2**depth - 1
                key = tuple((v & most) * (255 // most) for v in key)
            return key
        at += 12 + length
    return None


def _keyed(array: np.ndarray, key: tuple[int, ...]) -> np.ndarray:
    """Gray or RGB `array` with an alpha channel: transparent where the pixel equals `key`,
    opaque elsewhere."""
    colour = array[:, :, None] if array.ndim == 2 else array
    match = np.all(colour == np.asarray(key, np.int64), axis=2)
    most = np.iinfo(array.dtype).max
    alpha = np.where(match, 0, most).astype(array.dtype)
    return np.ascontiguousarray(np.concatenate([colour, alpha[:, :, None]], axis=2))


_TIFF_GRAY_OR_RGB = {0: 1, 1: 1, 2: 3}  # photometric: min-is-white, min-is-black, RGB
_REDUCED_OR_MASK = 1 | 4  # NewSubfileType bits of a thumbnail page and a transparency mask


def _tiff_as_stored(data: bytes, where: str) -> tuple[np.ndarray | None, list[str]]:
    """A gray or RGB 8- or 16-bit TIFF's first page as stored, by tifffile, and notes on
    what is left out (further pages, extra channels of unspecified meaning).

    OpenCV decodes an 8-bit TIFF with alpha through libtiff's RGBA interface, which
    premultiplies unassociated alpha (a Pillow-written RGBA TIFF's red 200 at alpha 60 came
    back 47), and misreads a planar one (a plane per channel); Pillow keeps 8 bits. So a TIFF
    with extra channels or planes is read here or refused: associated (premultiplied) alpha,
    which dipstop would write back as unassociated, darkened; a compression tifffile has no
    codec for. The array is None for other TIFFs (palette, YCbCr, CMYK, 1-bit, float), and
    for plain gray or RGB ones tifffile cannot decode: OpenCV and Pillow read those right.
    Min-is-white gray comes back inverted to min-is-black, as the other decoders give it.
    """
    import tifffile

    try:
        tif = tifffile.TiffFile(io.BytesIO(data))
    except Exception:  # not a TIFF tifffile can parse: the others decide
        return None, []
    with tif:
        try:
            page = tif.pages[0]
            photometric, extras = int(page.photometric), [int(e) for e in page.extrasamples]
            samples, planar = int(page.samplesperpixel), int(page.planarconfig) == 2
            height, width = int(page.imagelength), int(page.imagewidth)
            dtype = np.dtype(page.dtype) if page.dtype is not None else None
        except Exception:
            return None, []
        try:  # a damaged later page leaves the first readable
            frames = sum(
                1 for p in tif.pages if not getattr(p, "subfiletype", 0) & _REDUCED_OR_MASK
            )
        except Exception:
            frames = 1
        notes = [f"{where} has {frames} pages; dipstop denoises the first"] if frames > 1 else []
        colour = _TIFF_GRAY_OR_RGB.get(photometric)
        if colour is not None and not extras and samples == colour + 1:
            extras = [2]  # no ExtraSamples tag (OpenCV writes RGBA so): alpha, as OpenCV reads it
        if colour is None or dtype not in (np.uint8, np.uint16) or samples != colour + len(extras):
            return None, notes
        if 1 in extras:
            raise DipstopError(
                f"{where} has premultiplied (associated) alpha, which dipstop would write back "
                "as unassociated, darkened; save it with unassociated alpha, or as PNG"
            )
        check_pixel_count(width, height, where)
        try:
            array = page.asarray()
        except Exception as exc:
            if not extras and not planar:
                return None, notes
            if "imagecodecs" not in str(exc):  # a codec it has failed: damaged or truncated
                raise _damaged(where, exc) from exc
            raise DipstopError(
                f"cannot read {where} without the imagecodecs package, and other decoders "
                "would change its colours (premultiplied by alpha); pip install imagecodecs, "
                "or save it as PNG"
            ) from exc
    if planar and array.ndim == 3 and array.shape[0] == samples:
        array = np.moveaxis(array, 0, 2)
    if array.shape != ((height, width) if samples == 1 else (height, width, samples)):
        raise _damaged(where, ValueError(f"decoded shape {array.shape}"))
    if samples > 1:
        alpha = [colour + extras.index(2)] if 2 in extras else []
        dropped = len(extras) - len(alpha)
        if dropped:
            notes.append(
                f"{where} has {dropped} extra channel{'s' * (dropped > 1)} of unspecified "
                f"meaning; dipstop leaves {'them' if dropped > 1 else 'it'} out"
            )
        array = array[:, :, list(range(colour)) + alpha]
        if array.shape[2] == 1:
            array = array[:, :, 0]
    if photometric == 0:  # min-is-white
        array = array.copy()
        gray = array if array.ndim == 2 else array[:, :, 0]
        gray[...] = np.iinfo(dtype).max - gray
    return np.ascontiguousarray(array), notes


def _decode_opencv(
    data: bytes, channels: int, size: tuple[int, int], flags: int = cv2.IMREAD_UNCHANGED
) -> np.ndarray | None:
    """OpenCV's decoding in RGB(A) order, if it has the expected size and channels."""
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
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
    """Pillow's decoding (8 bits, or 16 for I;16 gray) with `channels` channels; Pillow's
    conversion turns a colour key (`transparency`) into alpha, dipstop's for 16-bit gray."""
    if im.mode == "I":
        raise _refuse_kind(where, "32-bit integer")
    try:
        if im.mode.startswith("I;16"):
            gray = np.asarray(im).astype(np.uint16)
            key = im.info.get("transparency")
            return _keyed(gray, (key,)) if channels == 2 and isinstance(key, int) else gray
        target = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
        return np.array(im if im.mode == target else im.convert(target))
    except Exception as exc:
        raise _damaged(where, exc) from exc


def _decode_unidentified(data: bytes, where: str) -> tuple[np.ndarray, dict[str, bytes], list[str]]:
    """Files Pillow cannot identify: TIFFs are read through tifffile (and their ICC profile
    with them; `_tiff_as_stored`), others refused."""
    not_image = DipstopError(
        f"{where} is not an image dipstop can read; convert it to PNG, TIFF or JPEG"
    )
    if data[:4] not in TIFF_MAGICS:
        raise not_image
    try:
        import tifffile
    except ImportError:  # pragma: no cover - a dependency of dipstop
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
    except DipstopError:
        raise
    except Exception as exc:
        raise _damaged(where, exc) from exc
    array, notes = _tiff_as_stored(data, where)
    if array is None and samples in (1, 3):  # no alpha: OpenCV's decoding is as stored
        array = _decode_opencv(data, samples, (width, height))
    if array is None:
        raise DipstopError(
            f"{where} is a TIFF layout dipstop cannot read ({samples} samples of {dtype}, "
            f"photometric {photometric}); save it as 8- or 16-bit PNG"
        )
    return array, meta, notes


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
        array = quantise(array)
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


def _lost_in(array: np.ndarray, ext: str) -> list[str]:
    """What writing an (encodable) array as `ext` loses: its alpha, its 16 bits.

    >>> _lost_in(np.zeros((2, 2, 4), np.uint16), ".jpg"), _lost_in(np.zeros((2, 2)), ".bmp")
    (['its alpha', 'its 16 bits (written with 8)'], [])
    """
    lost = []
    if ext in {".jpg", ".jpeg"} and array.ndim == 3 and array.shape[2] in (2, 4):
        lost.append("its alpha")
    if array.dtype == np.uint16 and ext not in SIXTEEN_BIT_OK:
        lost.append("its 16 bits (written with 8)")
    return lost


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
        WebP get 8; JPEG drops alpha (a warning says which of these a write loses).
    array : ndarray
        H x W or H x W x 1/2/3/4, uint8, uint16 or float in [0, 1] (written as 8-bit).
    meta : dict, optional
        An ICC profile and EXIF to put in (`LoadedImage.meta`; PNG and JPEG keep both, TIFF
        the profile, `dipstop.metadata`).

    Raises
    ------
    DipstopError
        For an unwritable format or array, or when the file cannot be written.

    Warns
    -----
    UserWarning
        When the format cannot hold the array's alpha or 16 bits, naming what is lost.

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
    lost = _lost_in(np.asarray(array), p.suffix.lower())
    if lost:
        them = "them" if len(lost) > 1 else "it"
        warnings.warn(
            f"{p} cannot keep {' or '.join(lost)} as {p.suffix.lower()}; write .png or .tif "
            f"to keep {them}",
            stacklevel=2,
        )
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
