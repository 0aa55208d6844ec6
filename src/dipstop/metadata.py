"""A photo's colour profile and EXIF, carried from the input file to the denoised file.

A phone or camera photo often stores its pixels sideways with an EXIF orientation tag, and
its colours in a profile other than sRGB (Display P3, Adobe RGB) named by an embedded ICC
profile. dipstop denoises the pixels as stored; without the tag and the profile the output
would show rotated and with shifted colours. So `read_image` keeps both, as Pillow reads
them, and `write_image` puts them into the encoded PNG (iCCP and eXIf chunks) or JPEG (APP1
and APP2 segments) unchanged: the output shows as the input does, camera data included.
A TIFF output keeps the profile (`dipstop.imageio.encode_image` writes it), not the EXIF;
BMP and WebP outputs neither (`carried` says which are kept).
"""

from __future__ import annotations

import struct
import zlib

from PIL import Image

EXIF_HEADER = b"Exif\x00\x00"  # how Pillow gives EXIF, and how a JPEG's APP1 starts it
ICC_HEADER = b"ICC_PROFILE\x00"  # a JPEG APP2 segment's ICC marker
SEGMENT_MOST = 65533  # bytes a JPEG segment holds after its length field
ICC_ROOM = SEGMENT_MOST - len(ICC_HEADER) - 2  # profile bytes an APP2 segment holds
KEYS = ("icc_profile", "exif")
NAMES = {"icc_profile": "the ICC profile", "exif": "the EXIF"}  # for notes


def read_metadata(im: Image.Image) -> dict[str, bytes]:
    """The ICC profile and EXIF bytes of an opened (loaded) Pillow image, those it has."""
    meta = {}
    for key in KEYS:
        value = im.info.get(key)
        if isinstance(value, bytes) and value:
            meta[key] = value
    return meta


def carried(suffix: str, meta: dict[str, bytes]) -> list[str]:
    """Which of `meta`'s keys a file of this suffix keeps (JPEG drops an EXIF block too big
    for one segment)."""
    ext = suffix.lower()
    if ext == ".png":
        return [k for k in KEYS if k in meta]
    if ext in {".jpg", ".jpeg"}:
        icc = meta.get("icc_profile", b"")
        keep = ["icc_profile"] if 0 < len(icc) <= 255 * ICC_ROOM else []  # 255 segments
        exif = _exif_body(meta)
        if exif is not None and len(EXIF_HEADER) + len(exif) <= SEGMENT_MOST:
            keep.append("exif")
        return keep
    if ext in {".tif", ".tiff"}:
        return ["icc_profile"] if meta.get("icc_profile") else []
    return []


def attach(data: bytes, suffix: str, meta: dict[str, bytes]) -> bytes:
    """Encoded PNG or JPEG bytes with `meta`'s profile and EXIF put in; other formats as
    they are.

    >>> import io
    >>> import numpy as np
    >>> png = io.BytesIO()
    >>> Image.fromarray(np.zeros((4, 4), np.uint8)).save(png, "PNG")
    >>> tagged = attach(png.getvalue(), ".png", {"icc_profile": b"profile bytes"})
    >>> Image.open(io.BytesIO(tagged)).info["icc_profile"]
    b'profile bytes'
    """
    keep = carried(suffix, meta)
    if not keep or suffix.lower() not in {".png", ".jpg", ".jpeg"}:
        return data
    if suffix.lower() == ".png":
        return _png(data, meta, keep)
    return _jpeg(data, meta, keep)


def _exif_body(meta: dict[str, bytes]) -> bytes | None:
    """The EXIF's TIFF structure, without Pillow's "Exif" header."""
    exif = meta.get("exif")
    if exif is None:
        return None
    return exif[len(EXIF_HEADER) :] if exif.startswith(EXIF_HEADER) else exif


def _png(data: bytes, meta: dict[str, bytes], keep: list[str]) -> bytes:
    """iCCP and eXIf chunks right after IHDR (both must come before the image data)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    extra = b""
    if "icc_profile" in keep:  # name, separator, compression method 0, deflated profile
        extra += chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(meta["icc_profile"]))
    if "exif" in keep:
        extra += chunk(b"eXIf", _exif_body(meta))
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR's length and type, its 13 bytes, CRC
    return data[:end_of_ihdr] + extra + data[end_of_ihdr:]


def _jpeg(data: bytes, meta: dict[str, bytes], keep: list[str]) -> bytes:
    """APP1 (EXIF) and APP2 (ICC, split over as many segments as it needs) after SOI and
    the JFIF APP0 segment the encoder wrote."""

    def segment(marker: bytes, body: bytes) -> bytes:
        return marker + struct.pack(">H", len(body) + 2) + body

    at = 2  # after SOI
    if data[2:4] == b"\xff\xe0":  # APP0 (JFIF) stays first
        at = 4 + struct.unpack(">H", data[4:6])[0]
    extra = b""
    if "exif" in keep:
        extra += segment(b"\xff\xe1", EXIF_HEADER + _exif_body(meta))
    if "icc_profile" in keep:
        profile = meta["icc_profile"]
        parts = [profile[i : i + ICC_ROOM] for i in range(0, len(profile), ICC_ROOM)]
        for number, part in enumerate(parts, 1):
            extra += segment(b"\xff\xe2", ICC_HEADER + bytes([number, len(parts)]) + part)
    return data[:at] + extra + data[at:]
