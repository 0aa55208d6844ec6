"""Reading and writing never change an image's colours silently.

Each file is built here, a few pixels across: TIFFs with alpha in every layout (LZW, planar,
associated, extra channels), PNGs with a colour key (tRNS), animations and multi-page files,
and writes to formats that cannot hold alpha or 16 bits. What dipstop cannot keep it refuses
with a one-line DipstopError, or names in a one-line warning.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

import dipstop.imageio
from dipstop.errors import DipstopError
from dipstop.imageio import decode_image, join_array, read_image, write_image

RNG = np.random.default_rng(20)
RGBA8 = RNG.integers(0, 256, (6, 5, 4), np.uint8)
RGBA16 = RNG.integers(0, 65536, (6, 5, 4), np.uint16)


def as_read(path: Path) -> np.ndarray:
    """The file as dipstop hands it back: source dtype, alpha re-attached."""
    im = read_image(path)
    return join_array(im.pixels, im)


def dipstop_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    """The UserWarnings raised, each checked to be one line."""
    texts = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    for text in texts:
        assert "\n" not in text, text
    return texts


def read_quietly(path: Path) -> tuple[np.ndarray, list[str]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        array = as_read(path)
    return array, dipstop_warnings(record)


def one_line_error(path: Path) -> str:
    with pytest.raises(DipstopError) as info:
        read_image(path)
    text = str(info.value)
    assert "\n" not in text and "; " in text, text
    return text


# -- TIFFs with alpha ------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["tiff_lzw", "jpeg", "packbits", None])
def test_an_8_bit_rgba_tiff_reads_as_stored_in_any_compression(tmp_path, compression):
    """OpenCV (libtiff's RGBA interface) premultiplies: red 200 at alpha 60 came back 47."""
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[...] = (200, 100, 50, 60)
    if compression != "jpeg":  # lossy: one odd pixel would blur into its neighbours
        pixels[0, 0] = (1, 2, 3, 255)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a.tif", compression=compression)
    back, notes = read_quietly(tmp_path / "a.tif")
    assert back.dtype == np.uint8 and notes == []
    if compression == "jpeg":  # lossy colour, but not premultiplied (that gives 47, 24, 12)
        assert np.abs(back[2, 2].astype(int) - (200, 100, 50, 60)).max() <= 3
    else:
        np.testing.assert_array_equal(back, pixels)


@pytest.mark.parametrize("pixels", [RGBA8, RGBA16, RGBA8[:, :, [0, 3]], RGBA16[:, :, [0, 3]]])
@pytest.mark.parametrize("planar", ["contig", "separate"])
@pytest.mark.parametrize("compression", ["lzw", "zlib", None])
def test_tiffs_with_alpha_read_as_stored_in_every_layout(tmp_path, pixels, planar, compression):
    """A planar (a plane per channel) file came back premultiplied (8 bits), with one
    channel in all four (16 bits), or with alpha 0 (gray+alpha)."""
    data = pixels if planar == "contig" else np.moveaxis(pixels, 2, 0)
    tifffile.imwrite(
        tmp_path / "a.tif", data, photometric="rgb" if pixels.shape[2] == 4 else "minisblack",
        extrasamples=["unassalpha"], planarconfig=planar, compression=compression,
    )  # fmt: skip
    back, notes = read_quietly(tmp_path / "a.tif")
    assert back.dtype == pixels.dtype and notes == []
    np.testing.assert_array_equal(back, pixels)


def test_a_missing_tiff_codec_refuses_instead_of_premultiplying(tmp_path, monkeypatch):
    """Without imagecodecs tifffile cannot decode LZW; the fallback must not be OpenCV's."""
    Image.fromarray(RGBA8, "RGBA").save(tmp_path / "a.tif", compression="tiff_lzw")
    Image.fromarray(RGBA8[:, :, :3], "RGB").save(tmp_path / "rgb.tif", compression="tiff_lzw")

    def no_codec(self, *args, **kwargs):
        raise KeyError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_codec)
    text = one_line_error(tmp_path / "a.tif")
    assert "a.tif" in text and "pip install imagecodecs" in text
    # without alpha there is nothing to premultiply: OpenCV reads it as stored
    np.testing.assert_array_equal(read_quietly(tmp_path / "rgb.tif")[0], RGBA8[:, :, :3])


def test_an_rgba_tiff_tifffile_cannot_take_goes_to_pillow_not_opencv(tmp_path, monkeypatch):
    """Pillow keeps unassociated alpha as stored, at 8 bits; OpenCV would premultiply."""
    Image.fromarray(RGBA8, "RGBA").save(tmp_path / "a.tif", compression="tiff_lzw")
    monkeypatch.setattr(dipstop.imageio, "_tiff_as_stored", lambda data, where: (None, []))
    np.testing.assert_array_equal(read_quietly(tmp_path / "a.tif")[0], RGBA8)


def test_imagecodecs_is_a_dependency_of_dipstop():
    tomllib = pytest.importorskip("tomllib")
    import imagecodecs  # noqa: F401

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    names = [d.split(">")[0].split("=")[0].strip() for d in project["project"]["dependencies"]]
    assert {"imagecodecs", "tifffile"} <= set(names)


@pytest.mark.parametrize("pixels", [RGBA8, RGBA16])
def test_premultiplied_alpha_is_refused(tmp_path, pixels):
    """Read as stored and written back as unassociated alpha, it would darken."""
    tifffile.imwrite(tmp_path / "a.tif", pixels, photometric="rgb", extrasamples=["assocalpha"])
    text = one_line_error(tmp_path / "a.tif")
    assert "premultiplied" in text and "a.tif" in text


@pytest.mark.parametrize("pixels", [RGBA8, RGBA16])
def test_an_unspecified_extra_channel_is_named_and_the_depth_kept(tmp_path, pixels):
    """Pillow reads such a file as 8-bit RGB: 16 bits were lost with the channel."""
    tifffile.imwrite(tmp_path / "x.tif", pixels, photometric="rgb", extrasamples=["unspecified"])
    back, notes = read_quietly(tmp_path / "x.tif")
    np.testing.assert_array_equal(back, pixels[:, :, :3])
    assert len(notes) == 1 and "x.tif has 1 extra channel" in notes[0], notes


def test_min_is_white_gray_alpha_is_read_as_black_is_zero(tmp_path):
    stored = RGBA8[:, :, [0, 3]]
    tifffile.imwrite(tmp_path / "w.tif", stored, photometric="miniswhite",
                     extrasamples=["unassalpha"])  # fmt: skip
    back, _ = read_quietly(tmp_path / "w.tif")
    np.testing.assert_array_equal(back[:, :, 0], 255 - stored[:, :, 0])
    np.testing.assert_array_equal(back[:, :, 1], stored[:, :, 1])
    tifffile.imwrite(tmp_path / "g.tif", stored[:, :, 0], photometric="miniswhite")
    plain = Image.open(tmp_path / "g.tif")  # Pillow inverts min-is-white too
    np.testing.assert_array_equal(read_quietly(tmp_path / "g.tif")[0], np.asarray(plain))


# -- colour keys (tRNS) ----------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_trns(png: bytes, key: tuple[int, ...]) -> bytes:
    """A PNG with a tRNS chunk right after IHDR."""
    return png[:33] + png_chunk(b"tRNS", struct.pack(f">{len(key)}H", *key)) + png[33:]


def keyed_png(colour: np.ndarray) -> tuple[bytes, tuple[int, ...]]:
    """An 8- or 16-bit gray or RGB PNG whose first pixel's value is its colour key."""
    bgr = colour if colour.ndim == 2 else colour[:, :, ::-1]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr))
    assert ok
    key = tuple(int(v) for v in np.atleast_1d(colour[0, 0]))
    return with_trns(buf.tobytes(), key), key


COLOURS = {
    "rgb8": RGBA8[:, :, :3],
    "rgb16": RGBA16[:, :, :3],
    "gray8": RGBA8[:, :, 0],
    "gray16": RGBA16[:, :, 0],
}


@pytest.mark.parametrize("opencv", [True, False], ids=["opencv", "pillow-fallback"])
@pytest.mark.parametrize("name", COLOURS)
def test_a_colour_key_becomes_alpha(tmp_path, monkeypatch, name, opencv):
    """The key's pixels were opaque in the output; a 16-bit RGB one also lost 8 bits."""
    colour = COLOURS[name]
    data, key = keyed_png(colour)
    (tmp_path / "k.png").write_bytes(data)
    if not opencv:
        monkeypatch.setattr(dipstop.imageio, "_decode_opencv", lambda *a, **k: None)
    if not opencv and name == "rgb16":  # Pillow decodes 8 bits, and its key matches none
        assert "k.png" in one_line_error(tmp_path / "k.png")
        return
    back, notes = read_quietly(tmp_path / "k.png")
    assert notes == []
    shaped = colour[:, :, None] if colour.ndim == 2 else colour
    match = np.all(shaped == np.array(key), axis=2)
    assert match.any() and not match.all()
    alpha = np.where(match, 0, np.iinfo(colour.dtype).max)
    np.testing.assert_array_equal(back, np.dstack([shaped, alpha]).astype(shaped.dtype))


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_a_low_bit_gray_colour_key_is_scaled_with_its_pixels(tmp_path, depth):
    values = np.arange(8) % 2**depth  # one row of 8 pixels
    bits = "".join(format(int(v), f"0{depth}b") for v in values)
    row = int(bits, 2).to_bytes(len(bits) // 8, "big")
    header = struct.pack(">IIBBBBB", 8, 1, depth, 0, 0, 0, 0)
    data = (
        dipstop.imageio.PNG_SIGNATURE + png_chunk(b"IHDR", header)
        + png_chunk(b"tRNS", struct.pack(">H", 1))
        + png_chunk(b"IDAT", zlib.compress(b"\x00" + row)) + png_chunk(b"IEND", b"")
    )  # fmt: skip
    back = decode_image(data, "low.png")
    scale = 255 // (2**depth - 1)
    np.testing.assert_array_equal(back[0, :, 0], values * scale)
    np.testing.assert_array_equal(back[0, :, 1], np.where(values == 1, 0, 255))


def test_a_palette_png_keeps_its_transparency(tmp_path):
    im = Image.fromarray(RGBA8[:, :, 0]).convert("P")
    im.save(tmp_path / "p.png", transparency=int(np.asarray(im)[0, 0]))
    back, _ = read_quietly(tmp_path / "p.png")
    assert back.shape[2] == 4 and back[0, 0, 3] == 0 and back[:, :, 3].max() == 255


# -- animations and multi-page files ---------------------------------------------------------


def frames(n: int) -> list[Image.Image]:
    return [Image.fromarray(np.full((6, 5, 3), 40 * i + 10, np.uint8)) for i in range(n)]


@pytest.mark.parametrize(
    "name, save, word",
    [
        ("a.gif", {"format": "GIF"}, "frames"),
        ("a.png", {"format": "PNG"}, "frames"),
        ("a.webp", {"format": "WEBP", "lossless": True}, "frames"),
        ("a.tif", {"format": "TIFF"}, "pages"),
    ],
)
def test_only_the_first_frame_is_read_and_a_warning_says_so(tmp_path, name, save, word):
    first, *rest = frames(3)
    first.save(tmp_path / name, save_all=True, append_images=rest, **save)
    back, notes = read_quietly(tmp_path / name)
    np.testing.assert_array_equal(back, np.asarray(first))
    assert notes == [f"{tmp_path / name} has 3 {word}; dipstop denoises the first"]


def test_the_warning_points_at_the_caller_and_decode_image_gives_it_too(tmp_path):
    first, *rest = frames(2)
    first.save(tmp_path / "a.gif", save_all=True, append_images=rest)
    with pytest.warns(UserWarning, match="a.gif has 2 frames") as record:
        read_image(tmp_path / "a.gif")
    assert record[0].filename == __file__  # so the CLI's caller (batch.py) is dipstop's own
    with pytest.warns(UserWarning, match="upload has 2 frames"):
        decode_image((tmp_path / "a.gif").read_bytes(), "upload")


def test_single_frames_thumbnails_and_mpo_previews_give_no_warning(tmp_path):
    first, second = frames(2)
    first.save(tmp_path / "one.gif")
    first.save(tmp_path / "one.tif")
    first.save(tmp_path / "pair.jpg", "MPO", save_all=True, append_images=[second])
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as tif:
        tif.write(np.asarray(first), photometric="rgb")
        tif.write(np.asarray(first)[:3, :3], photometric="rgb", subfiletype=1)  # reduced
    for name in ("one.gif", "one.tif", "pair.jpg", "thumb.tif"):
        assert read_quietly(tmp_path / name)[1] == [], name


# -- writing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array, ext, lost",
    [
        (RGBA16, ".jpg", ["its alpha", "its 16 bits"]),
        (RGBA8, ".jpeg", ["its alpha"]),
        (RGBA8[:, :, [0, 3]], ".jpg", ["its alpha"]),
        (RGBA16[:, :, :3], ".bmp", ["its 16 bits"]),
        (RGBA16, ".webp", ["its 16 bits"]),
        (RGBA16[:, :, 0], ".jpg", ["its 16 bits"]),
    ],
)
def test_a_write_that_loses_alpha_or_depth_says_what(tmp_path, array, ext, lost):
    path = tmp_path / f"out{ext}"
    with pytest.warns(UserWarning) as record:
        write_image(path, array)
    texts = dipstop_warnings(record.list)
    assert len(texts) == 1 and texts[0].startswith(f"{path} cannot keep "), texts
    assert all(word in texts[0] for word in lost) and "write .png or .tif" in texts[0]
    assert ("alpha" in texts[0].split(" cannot keep ")[1]) == ("its alpha" in lost)
    assert record[0].filename == __file__
    assert path.exists()


@pytest.mark.parametrize(
    "array, ext",
    [(RGBA16, ".png"), (RGBA16, ".tif"), (RGBA8, ".bmp"), (RGBA8, ".webp"),
     (RGBA8[:, :, :3], ".jpg"), (np.zeros((4, 4)), ".jpg")],
)  # fmt: skip
def test_a_write_that_keeps_everything_is_quiet(tmp_path, array, ext):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_image(tmp_path / f"out{ext}", array)


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp", ".webp"])
def test_alpha_written_where_it_is_kept_reads_back_as_written(tmp_path, ext):
    write_image(tmp_path / f"a{ext}", RGBA8)
    np.testing.assert_array_equal(read_quietly(tmp_path / f"a{ext}")[0], RGBA8)
