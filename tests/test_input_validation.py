"""Hostile input at the edge: every file, option and table gives a result or a DipstopError.

Property-based (hypothesis) fuzzing of the image reader and of the option and table parsers
allows exactly two outcomes: a valid result, or DipstopError with a one-line message. Nothing
else is caught. Round trips check values, not just types; the few `denoise` runs are tiny.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import dipstop.imageio
import dipstop.single
from dipstop.api import denoise
from dipstop.cli import main
from dipstop.errors import DipstopError
from dipstop.imageio import (
    decode_image,
    encode_image,
    join_array,
    read_image,
    split_array,
    write_image,
)
from dipstop.lambda_table import lam_for_sigma, load_table
from dipstop.options import DenoiseOptions
from dipstop.validate import check_table, sigma_list

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TINY = dict(width=8, max_iters=3, patience=2, lam=50.0)
TINY_CLI = ["--width", "8", "-T", "3", "-S", "2", "--lam", "50", "--quiet"]
FUZZ_LIMIT = 1_000_000  # pixel limit while fuzzing: a mutated header cannot make a 190 MP canvas


@pytest.fixture(scope="module", autouse=True)
def _small_pixel_limit():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIPSTOP_MAX_PIXELS", str(FUZZ_LIMIT))
        yield


def one_line(exc: DipstopError) -> str:
    text = str(exc)
    assert text and "\n" not in text, text
    assert "; " in text, f"no fix in {text!r}"
    return text


def image_or_error(data: bytes) -> np.ndarray | None:
    """Decode `data`; a valid H x W (x C) uint8/uint16 image, or None after a DipstopError."""
    try:
        array = decode_image(data, "fuzz.img")
        loaded = split_array(array)
    except DipstopError as exc:
        one_line(exc)
        return None
    assert isinstance(array, np.ndarray) and array.dtype in (np.uint8, np.uint16)
    assert array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (2, 3, 4))
    assert array.shape[0] >= 1 and array.shape[1] >= 1
    assert array.shape[0] * array.shape[1] <= FUZZ_LIMIT
    assert np.isfinite(loaded.pixels).all()
    assert loaded.pixels.min() >= 0 and loaded.pixels.max() <= 1
    return array


def gradient(h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    """A smooth RGB uint8 picture with some texture (JPEG-friendly, not constant)."""
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    rgb = np.stack([x * 255 / w, y * 255 / h, (x + y) * 255 / (h + w)], axis=2)
    return np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8)


def pil_bytes(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def cv_bytes(array: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, array)
    assert ok
    return buf.tobytes()


# -- valid files, the seeds of the truncation and mutation fuzzing -----------------------------

RGB = gradient()
VALID_FILES = {
    "png8": cv_bytes(RGB, ".png"),
    "png16": cv_bytes(RGB.astype(np.uint16) * 257, ".png"),
    "png_gray": cv_bytes(RGB[:, :, 0], ".png"),
    "png_la": pil_bytes(Image.fromarray(RGB[:, :, :2].copy(), "LA"), "PNG"),
    "png_palette": pil_bytes(Image.fromarray(RGB).convert("P"), "PNG"),
    "jpeg": cv_bytes(RGB, ".jpg"),
    "jpeg_gray": cv_bytes(RGB[:, :, 1], ".jpg"),
    "tiff_lzw": cv_bytes(RGB, ".tiff"),
    "tiff16_rgba": cv_bytes(np.dstack([RGB, RGB[:, :, :1]]).astype(np.uint16) * 257, ".tiff"),
    "tiff_pillow_la": pil_bytes(Image.fromarray(RGB[:, :, :2].copy(), "LA"), "TIFF"),
    "tiff16_la": encode_image(RGB[:, :, :2].astype(np.uint16) * 257, ".tiff"),
    "bmp": cv_bytes(RGB, ".bmp"),
    "webp": cv_bytes(RGB, ".webp"),
    "gif": pil_bytes(Image.fromarray(RGB).convert("P"), "GIF"),
}
MAGICS = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"GIF89a", b"BM"]


def test_the_valid_seeds_decode_to_the_picture():
    for name, data in VALID_FILES.items():
        array = image_or_error(data)
        assert array is not None, name
        assert array.shape[:2] == RGB.shape[:2], name


@FUZZ
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=600))
def test_random_bytes_give_an_image_or_a_dipstop_error(magic, tail):
    image_or_error(magic + tail)


@FUZZ
@given(name=st.sampled_from(sorted(VALID_FILES)), cut=st.floats(0, 1, exclude_max=True))
def test_truncated_files_give_an_image_or_a_dipstop_error(name, cut):
    data = VALID_FILES[name]
    image_or_error(data[: int(len(data) * cut)])


@FUZZ
@given(
    name=st.sampled_from(sorted(VALID_FILES)),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupted_files_give_an_image_or_a_dipstop_error(name, edits):
    data = bytearray(VALID_FILES[name])
    for where, value in edits:
        data[where % len(data)] = value  # header bytes are hit often: the files are small
    image_or_error(bytes(data))


def png_header(width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    """A PNG whose IHDR declares width x height, followed by a few bytes of pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def tiff_header(width: int, height: int, bits: int = 8, samples: int = 1) -> bytes:
    """A little-endian TIFF whose only IFD declares width x height and a tiny strip."""
    tags = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, bits),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8),
        (277, 3, 1, samples),
        (278, 4, 1, height),
        (279, 4, 1, 16),
    ]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in tags
    )
    return b"II*\x00" + struct.pack("<I", 24) + b"\x00" * 16 + ifd + struct.pack("<I", 0)


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, a baseline SOF0 declaring width x height (3 components), SOS, junk, EOI."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x00\x03\x11\x00"
    sos = b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    return (
        b"\xff\xd8\xff\xc0"
        + struct.pack(">H", len(sof) + 2)
        + sof
        + b"\xff\xda"
        + struct.pack(">H", len(sos) + 2)
        + sos
        + b"\x00" * 32
        + b"\xff\xd9"
    )


HUGE = st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)).filter(
    lambda wh: wh[0] * wh[1] > FUZZ_LIMIT
)


@FUZZ
@given(size=HUGE, maker=st.sampled_from(["png", "png16", "png_la", "tiff", "tiff16"]))
def test_huge_declared_sizes_are_refused_before_decoding(size, maker):
    width, height = size
    data = {
        "png": lambda: png_header(width, height),
        "png16": lambda: png_header(width, height, 16, 2),
        "png_la": lambda: png_header(width, height, 8, 4),
        "tiff": lambda: tiff_header(width, height),
        "tiff16": lambda: tiff_header(width, height, 16, 2),  # Pillow cannot identify this
    }[maker]()
    with pytest.raises(DipstopError) as info:
        decode_image(data, "big.img")
    assert "MP, above dipstop's limit" in one_line(info.value)


@FUZZ
@given(width=st.integers(1, 65535), height=st.integers(1, 65535))
def test_jpeg_headers_of_any_size_give_a_dipstop_error(width, height):
    with pytest.raises(DipstopError) as info:
        decode_image(jpeg_header(width, height), "big.jpg")
    text = one_line(info.value)
    if width * height > FUZZ_LIMIT:
        assert "MP, above dipstop's limit" in text


def test_the_pillow_bomb_and_an_empty_file_are_one_line_errors(monkeypatch, tmp_path):
    monkeypatch.delenv("DIPSTOP_MAX_PIXELS")  # the default limit: 200 MP
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(100_000, 100_000))
    with pytest.raises(DipstopError, match=r"10,000 MP, above dipstop's limit of 200 MP"):
        read_image(bomb)
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own guard is restored afterwards
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DipstopError, match="empty"):
        read_image(empty)


def test_the_pixel_limit_follows_the_environment(monkeypatch):
    monkeypatch.setenv("DIPSTOP_MAX_PIXELS", "100")
    with pytest.raises(DipstopError, match="20 x 24|24 x 20"):
        decode_image(VALID_FILES["png8"], "small.png")
    monkeypatch.setenv("DIPSTOP_MAX_PIXELS", "lots")
    with pytest.raises(DipstopError, match="DIPSTOP_MAX_PIXELS"):
        decode_image(VALID_FILES["png8"], "small.png")


# -- every PIL mode, in every format Pillow can save it to -----------------------------------

MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"]
MODES += ["LAB", "HSV", "I", "I;16", "I;16B", "I;16L", "F"]
FORMATS = ["PNG", "TIFF", "JPEG", "BMP", "WEBP", "GIF", "TGA", "PPM"]
LOSSLESS = {"PNG", "TIFF", "BMP", "GIF", "TGA", "PPM"}


def make_mode(mode: str) -> Image.Image:
    rgb = Image.fromarray(RGB)
    if mode.startswith("I;16"):
        im = Image.fromarray(RGB[:, :, 0].astype(np.uint16) * 257)
        return im if mode == "I;16" else im.convert(mode)
    if mode in ("La", "RGBa"):
        return rgb.convert(mode[:-1] + "A").convert(mode)
    if mode == "PA":
        return rgb.convert("P").convert("PA")
    if mode == "HSV":
        return Image.merge("HSV", rgb.split())
    return rgb.convert(mode)


def saved_modes() -> list[tuple[str, str, bytes]]:
    out = []
    for mode in MODES:
        for fmt in FORMATS:
            with contextlib.suppress(Exception):  # only what Pillow can write
                out.append((mode, fmt, pil_bytes(make_mode(mode), fmt)))
    return out


SAVED = saved_modes()


def test_many_mode_and_format_pairs_are_covered():
    assert len(SAVED) >= 40 and {m for m, _, _ in SAVED} >= set(MODES) - {"HSV", "La", "RGBa"}


@pytest.mark.parametrize("mode, fmt, data", SAVED, ids=[f"{m}-{f}" for m, f, _ in SAVED])
def test_every_pil_mode_gives_the_right_image_or_a_dipstop_error(mode, fmt, data):
    array = image_or_error(data)
    if mode in ("L", "LA", "RGB", "RGBA", "1", "P", "I;16") and fmt in LOSSLESS:
        assert array is not None, (mode, fmt)
    if array is None or fmt not in LOSSLESS:
        return
    im = Image.open(io.BytesIO(data))
    # values: what Pillow itself decodes, in the same channels (16-bit gray kept 16-bit)
    if im.mode.startswith("I;16") or im.mode == "I":  # Pillow opens a 16-bit PGM as "I"
        expected = np.asarray(im).astype(np.uint16)
    else:
        channels = 1 if array.ndim == 2 else array.shape[2]
        target = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
        expected = np.asarray(im.convert(target))
    np.testing.assert_array_equal(array, expected)
    if im.mode in ("LA",):  # gray+alpha stays gray+alpha
        assert array.shape[2] == 2


# -- round trips: read(write(x)) == x for lossless formats -----------------------------------


@FUZZ
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    channels=st.sampled_from([1, 2, 3, 4]),
    depth=st.sampled_from([np.uint8, np.uint16]),
    ext=st.sampled_from([".png", ".tif", ".tiff", ".bmp"]),
)
def test_lossless_round_trips_are_exact(seed, h, w, channels, depth, ext):
    if ext == ".bmp" and (depth == np.uint16 or channels == 2):
        depth, channels = np.uint8, 3  # BMP: 8 bits, no gray+alpha
    rng = np.random.default_rng(seed)
    x = rng.integers(0, np.iinfo(depth).max + 1, (h, w, channels)).astype(depth)
    if channels == 1:
        x = x[:, :, 0]
    back = decode_image(encode_image(x, ext), "round" + ext)
    np.testing.assert_array_equal(back, x)
    loaded = split_array(back)
    np.testing.assert_array_equal(join_array(loaded.pixels, loaded), x)


@pytest.mark.parametrize("ext", [".png", ".tiff"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_files_round_trip_exactly_through_read_and_write(tmp_path, ext, channels):
    rng = np.random.default_rng(channels)
    x = rng.integers(0, 65536, (33, 35, channels)).astype(np.uint16)
    x = x[:, :, 0] if channels == 1 else x
    path = tmp_path / f"x{ext}"
    write_image(path, x)
    loaded = read_image(path)
    assert loaded.dtype == np.uint16
    np.testing.assert_array_equal(join_array(loaded.pixels, loaded), x)
    if channels == 2:  # a real gray+alpha file, not RGBA
        assert loaded.pixels.shape[2] == 1 and loaded.alpha is not None
        if ext == ".png":
            assert path.read_bytes()[24:26] == bytes([16, 4])  # 16 bits, colour type 4
        else:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                assert tif.pages[0].samplesperpixel == 2


def test_jpeg_round_trip_is_close_and_keeps_the_layout(tmp_path):
    x = cv2.resize(gradient(40, 48), (96, 80))
    for image, want in ((x, x), (x[:, :, 1], x[:, :, 1]), (np.dstack([x, x[:, :, :1]]), x)):
        path = tmp_path / "x.jpg"
        with warnings.catch_warnings():  # the RGBA one warns that its alpha is dropped
            warnings.simplefilter("ignore")
            write_image(path, image)
        back = decode_image(path.read_bytes())
        assert back.shape == want.shape and back.dtype == np.uint8
        assert np.abs(back.astype(int) - want).mean() < 3  # JPEG q95 on a smooth picture
    with pytest.warns(UserWarning, match="cannot keep its 16 bits"):
        write_image(path, x.astype(np.uint16) * 257)  # 16 bits become 8
    assert np.abs(decode_image(path.read_bytes()).astype(int) - x).mean() < 3


# -- what denoise gives back: the input's type, shape and channels, alpha untouched ---------


@pytest.fixture(scope="module")
def gray_alpha() -> np.ndarray:
    rng = np.random.default_rng(1)
    gray = cv2.cvtColor(cv2.resize(gradient(), (40, 36)), cv2.COLOR_RGB2GRAY)
    alpha = rng.integers(0, 256, gray.shape, dtype=np.uint8)
    return np.dstack([gray, alpha])


def test_float64_and_h_w_1_inputs_keep_their_type_and_shape():
    x = cv2.resize(gradient(), (40, 36))[:, :, 1]
    out8, _ = denoise(x, **TINY)
    out1, _ = denoise(x[:, :, None], **TINY)  # H x W x 1 stays H x W x 1, the same values
    assert out1.shape == (36, 40, 1) and out1.dtype == np.uint8
    np.testing.assert_array_equal(out1[:, :, 0], out8)
    x32 = (x / 255).astype(np.float32)
    out32, _ = denoise(x32, **TINY)
    out64, _ = denoise(x32.astype(np.float64), **TINY)
    assert out64.dtype == np.float64 and out64.shape == x.shape
    np.testing.assert_array_equal(out64.astype(np.float32), out32)  # the same fit, wider type
    t64 = torch.from_numpy(x32.astype(np.float64))[None, None]
    out_t, _ = denoise(t64, **TINY)
    assert out_t.dtype == torch.float64 and out_t.shape == (1, 1, 36, 40)
    np.testing.assert_array_equal(out_t[0, 0].numpy(), out64)


def test_gray_alpha_array_and_pil_image_stay_gray_alpha(gray_alpha):
    out, _ = denoise(gray_alpha, **TINY)
    assert out.shape == gray_alpha.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 1], gray_alpha[:, :, 1])
    out_pil, _ = denoise(Image.fromarray(gray_alpha, "LA"), **TINY)
    assert out_pil.mode == "LA"
    np.testing.assert_array_equal(np.asarray(out_pil), out)
    f = Image.fromarray((gray_alpha[:, :, 0] / 255).astype(np.float32), "F")
    out_f, _ = denoise(f, **TINY)
    assert out_f.mode == "F" and out_f.size == f.size


@pytest.mark.parametrize("depth", [8, 16])
def test_cli_gray_alpha_png_comes_back_gray_alpha_without_colour_cast(tmp_path, gray_alpha, depth):
    image = gray_alpha.astype(np.uint16) * 257 if depth == 16 else gray_alpha
    src, dst = tmp_path / "la.png", tmp_path / "la_out.png"
    write_image(src, image)
    assert src.read_bytes()[25] == 4  # a real gray+alpha PNG (colour type 4)
    assert main(["denoise", str(src), "-o", str(dst), *TINY_CLI]) == 0
    data = dst.read_bytes()
    assert data[24] == depth and data[25] == 4  # written gray+alpha, at the input's depth
    back = decode_image(data)
    assert back.shape == image.shape and back.dtype == image.dtype
    np.testing.assert_array_equal(back[:, :, 1], image[:, :, 1])  # alpha untouched
    seen = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)  # any RGBA view of it is gray
    assert np.array_equal(seen[:, :, 0], seen[:, :, 1]) and np.array_equal(
        seen[:, :, 1], seen[:, :, 2]
    )
    assert not np.array_equal(back[:, :, 0], image[:, :, 0])  # it was denoised


def test_cli_gray_alpha_tiff_keeps_its_alpha(tmp_path, gray_alpha):
    src, dst = tmp_path / "la.tiff", tmp_path / "la_out.tiff"
    Image.fromarray(gray_alpha, "LA").save(src)  # OpenCV alone reads this as gray, no alpha
    assert main(["denoise", str(src), "-o", str(dst), *TINY_CLI]) == 0
    back = Image.open(dst)
    assert back.mode == "LA"
    np.testing.assert_array_equal(np.asarray(back)[:, :, 1], gray_alpha[:, :, 1])


# -- settings: refused before any fitting starts ---------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A folder for the hypothesis tests (function-scoped tmp_path would be shared anyway)."""
    return tmp_path_factory.mktemp("scratch")


@pytest.fixture
def no_fitting(monkeypatch):
    """Fail the test if a fit starts: every check must come before."""

    def fitter(*args, **kwargs):
        raise AssertionError("a fit started")

    monkeypatch.setattr(dipstop.single, "Fitter", fitter)


BAD_OPTIONS = [
    dict(lam=float("nan")),
    dict(lam=float("inf")),
    dict(lam=-1.0),
    dict(lam=0),
    dict(lam="50"),
    dict(lam=True),
    dict(sigma=float("inf")),
    dict(sigma=float("nan")),
    dict(sigma=-5),
    dict(sigma=0.0),
    dict(z_noise_std=float("nan")),
    dict(z_noise_std=float("inf")),
    dict(z_noise_std=-0.1),
    dict(lr=float("nan")),
    dict(lr=0.0),
    dict(lr=float("inf")),
    dict(width=2.5),
    dict(width=8.0),
    dict(width=0),
    dict(max_iters=-1),
    dict(max_iters="3"),
    dict(patience=0),
    dict(seed=-1),
    dict(seed=2**64),
    dict(seed=1.5),
    dict(protocol=["cpu"]),
    dict(table=5),
]


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=[str(b) for b in BAD_OPTIONS])
def test_bad_options_are_refused_before_fitting(no_fitting, bad):
    kwargs = {**TINY, "lam": None, **bad}
    with pytest.raises(DipstopError) as info:
        denoise(gradient(40, 40), **kwargs)
    text = one_line(info.value)
    assert next(iter(bad)) in text


SETTING_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)
OPTION = st.sampled_from(
    ["sigma", "lam", "width", "max_iters", "patience", "lr", "z_noise_std", "seed", "protocol"]
)


@FUZZ
@given(name=OPTION, value=SETTING_VALUES)
def test_option_checks_accept_only_sane_values(name, value):
    try:
        DenoiseOptions(**{name: value}).check()
    except DipstopError as exc:
        one_line(exc)
        return
    if value is None or name == "protocol":
        return
    assert not isinstance(value, (bool, str, list))
    assert math.isfinite(float(value))
    if name in ("sigma", "lam", "lr"):
        assert value > 0
    elif name == "z_noise_std":
        assert value >= 0
    elif name == "seed":
        assert isinstance(value, int) and 0 <= value < 2**63
    else:
        assert isinstance(value, int) and value >= 1


CLI_NUMBER_TEXT = st.one_of(
    st.sampled_from(["inf", "-inf", "nan", "NaN", "1e400", "-0", "0", "1e-400", " 5 ", "0x10"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet="0123456789.-+einfa ", max_size=8),
)


def run_cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(list(argv))
        except SystemExit as exc:  # argparse exits on its own errors
            rc = exc.code
    return rc, err.getvalue().strip()


def assert_one_line_error(rc, err, *words):
    assert rc == 2, err
    assert err.count("\n") == 0 and err.startswith("dipstop: error:"), err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


@FUZZ
@given(
    option=st.sampled_from(["--sigma", "--lam", "--lr", "--z-noise-std", "--seed", "-T"]),
    text=CLI_NUMBER_TEXT,
)
def test_cli_numbers_are_finite_or_refused_with_one_line(scratch, option, text):
    # the input does not exist: a good value reaches "no such file", a bad one stops earlier
    out = str(scratch / "out.png")
    rc, err = run_cli("denoise", str(scratch / "missing.png"), "-o", out, f"{option}={text}")
    assert_one_line_error(rc, err)
    if "no such file" in err:
        value = float(text)
        assert math.isfinite(value) and value >= 0
        assert value > 0 or option == "--z-noise-std" or option == "--seed"
    else:
        assert option.lstrip("-") in err or option in err, err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["denoise", "in.png", "--sigma", "inf"], ["--sigma", "finite"]),
        (["denoise", "in.png", "--lam", "inf"], ["--lam", "finite"]),
        (["denoise", "in.png", "--lam", "nan"], ["--lam", "finite"]),
        (["denoise", "in.png", "--z-noise-std", "nan"], ["--z-noise-std", "finite"]),
        (["denoise", "in.png", "--z-noise-std", "-1"], ["--z-noise-std"]),
        (["denoise", "in.png", "--lr", "1e999"], ["--lr"]),
        (["denoise", "in.png", "--seed", "-1"], ["--seed"]),
        (["denoise", "in.png", "--threads", "100000"], ["--threads"]),
        (["bench", "--data", ".", "--sigmas", "nan"], ["--sigmas", "nan"]),
        (["bench", "--data", ".", "--sigmas", "5:inf:5"], ["--sigmas"]),
        (["bench", "--data", ".", "--sigmas", "5:75:0"], ["--sigmas"]),
        (["bench", "--data", ".", "--sigmas", "1:1e9:0.001"], ["more than"]),
        (["bench", "--data", ".", "--sigmas", ","], ["no sigmas"]),
        (["calibrate", "--images", ".", "--sigmas", "5,5"], ["twice"]),
        (["calibrate", "--images", ".", "--sigmas", "-5"], ["--sigmas"]),
    ],
)
def test_cli_refuses_non_finite_and_malformed_settings(argv, words):
    assert_one_line_error(*run_cli(*argv), *words)


@FUZZ
@given(text=st.text(alphabet="0123456789.,:-+naifeE ", max_size=14))
def test_sigma_lists_are_distinct_finite_positive_or_refused(text):
    try:
        values = sigma_list(text)
    except DipstopError as exc:
        one_line(exc)
        return
    assert 1 <= len(values) <= 1000 and len(set(values)) == len(values)
    assert all(math.isfinite(v) and v > 0 for v in values)


# -- lam tables ------------------------------------------------------------------------------

NUMBERISH = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**400), 10**400),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
ENTRY = st.one_of(
    st.dictionaries(
        st.sampled_from(["sigma", "lam", "n_runs", "mean_psnr"]), NUMBERISH, max_size=4
    ),
    st.fixed_dictionaries({"sigma": NUMBERISH, "lam": NUMBERISH}),
    st.fixed_dictionaries({"sigma": st.sampled_from([5, 15, 25.0]), "lam": st.floats(0.01, 1e4)}),
    NUMBERISH,
    st.lists(NUMBERISH, max_size=2),
)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=4)),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
TABLE_DOC = st.one_of(
    JSONISH,
    st.lists(ENTRY, max_size=3),
    st.fixed_dictionaries(
        {"entries": st.one_of(st.lists(ENTRY, max_size=4), JSONISH)},
        optional={"protocol": st.one_of(st.fixed_dictionaries({"width": st.integers()}), JSONISH)},
    ),
)


@FUZZ
@given(doc=TABLE_DOC, sigma=st.floats(0, 200))
def test_tables_are_valid_or_refused_naming_the_table(doc, sigma):
    try:
        table = check_table(doc, "fuzz.json")
    except DipstopError as exc:
        assert "fuzz.json" in one_line(exc)
        return
    sigmas = [e["sigma"] for e in table["entries"]]
    assert sigmas == sorted(sigmas) and len(set(sigmas)) == len(sigmas)
    assert all(math.isfinite(e["lam"]) and e["lam"] > 0 for e in table["entries"])
    assert isinstance(table["protocol"], dict)
    lam = lam_for_sigma(sigma, doc)
    assert math.isfinite(lam) and lam > 0


@FUZZ
@given(text=st.one_of(TABLE_DOC.map(json.dumps), st.text(max_size=40)))
def test_table_files_are_valid_or_refused(scratch, text):
    path = scratch / "t.json"
    path.write_text(text)
    try:
        table = load_table(path)
    except DipstopError as exc:
        assert str(path) in one_line(exc)
        return
    assert table["entries"] and isinstance(table["protocol"], dict)


BAD_TABLES = {
    "a list": [{"sigma": 5, "lam": 1.0}],
    "a non-dict entry": {"entries": [{"sigma": 5, "lam": 1.0}, 7]},
    "no lam": {"entries": [{"sigma": 5}]},
    "no sigma": {"entries": [{"lam": 5.0}]},
    "NaN lam": {"entries": [{"sigma": 5, "lam": float("nan")}]},
    "infinite sigma": {"entries": [{"sigma": float("inf"), "lam": 1.0}]},
    "negative lam": {"entries": [{"sigma": 5, "lam": -1.0}]},
    "zero sigma": {"entries": [{"sigma": 0, "lam": 1.0}]},
    "a string lam": {"entries": [{"sigma": 5, "lam": "1.0"}]},
    "duplicated sigmas": {"entries": [{"sigma": 5, "lam": 1.0}, {"sigma": 5.0, "lam": 2.0}]},
    "no entries": {"entries": []},
    "entries not a list": {"entries": {"sigma": 5, "lam": 1.0}},
    "protocol a list": {"entries": [{"sigma": 5, "lam": 1.0}], "protocol": [64]},
    "n_runs a string": {"entries": [{"sigma": 5, "lam": 1.0, "n_runs": "two"}]},
}


@pytest.mark.parametrize("why", sorted(BAD_TABLES))
def test_bad_tables_fail_at_load_time_in_the_api_and_the_cli(tmp_path, no_fitting, why):
    table = tmp_path / "bad.json"
    table.write_text(json.dumps(BAD_TABLES[why]))  # NaN and Infinity as JSON allows them
    with pytest.raises(DipstopError) as info:
        load_table(table)
    assert str(table) in one_line(info.value) and "calibrate" in str(info.value)
    with pytest.raises(DipstopError):
        denoise(gradient(40, 40), width=8, max_iters=3, patience=2, table=str(table))
    src = tmp_path / "in.png"
    write_image(src, gradient(40, 40))
    rc, err = run_cli("denoise", str(src), "--width", "8", "-T", "3", "--table", str(table))
    assert_one_line_error(rc, err, str(table))


@pytest.mark.parametrize("text", ["", "{", "not json", "[1, 2", "NaN"])
def test_unreadable_table_files_are_refused(tmp_path, text):
    table = tmp_path / "broken.json"
    table.write_text(text)
    with pytest.raises(DipstopError, match="broken.json"):
        load_table(table)
    with pytest.raises(DipstopError, match="folder|Is a directory|directory"):
        load_table(tmp_path)


def test_the_shipped_table_passes_the_checks():
    table = load_table()
    assert len(table["entries"]) >= 2 and table["protocol"]["width"] == 64


# -- the output must not silently replace an input -------------------------------------------


def test_output_equal_to_input_is_refused_unless_overwrite(tmp_path):
    src = tmp_path / "in.png"
    write_image(src, gradient(40, 40))
    original = src.read_bytes()
    for out in (src, tmp_path / "." / "in.png"):
        rc, err = run_cli("denoise", str(src), "-o", str(out), *TINY_CLI)
        assert_one_line_error(rc, err, "--overwrite")
        assert src.read_bytes() == original
    link = tmp_path / "link.png"
    link.symlink_to(src)
    assert_one_line_error(*run_cli("denoise", str(src), "-o", str(link), *TINY_CLI), "input")
    clean = tmp_path / "clean.png"
    write_image(clean, gradient(40, 40))
    clean_bytes = clean.read_bytes()
    rc, err = run_cli("denoise", str(src), "--clean", str(clean), "-o", str(clean), *TINY_CLI)
    assert_one_line_error(rc, err, "--overwrite")
    assert clean.read_bytes() == clean_bytes and src.read_bytes() == original
    assert run_cli("denoise", str(src), "-o", str(src), "--overwrite", *TINY_CLI)[0] == 0
    assert src.read_bytes() != original and decode_image(src.read_bytes()).shape == (40, 40, 3)


# -- atomic writes ---------------------------------------------------------------------------


def test_a_failed_encode_leaves_the_destination_untouched(tmp_path, monkeypatch):
    dst = tmp_path / "out.png"
    dst.write_bytes(b"the previous result")

    def broken(*args, **kwargs):
        raise cv2.error("simulated encoder failure")

    monkeypatch.setattr(dipstop.imageio.cv2, "imencode", broken)
    with pytest.raises(DipstopError, match="could not encode"):
        write_image(dst, gradient())
    assert dst.read_bytes() == b"the previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


@pytest.mark.parametrize("where", ["fsync", "replace"])
@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_an_interrupted_write_leaves_the_destination_untouched(
    tmp_path, monkeypatch, where, failure
):
    dst = tmp_path / "out.png"
    dst.write_bytes(b"the previous result")
    seen = []

    def interrupted(*args, **kwargs):
        seen.append(sorted(p.name for p in tmp_path.iterdir()))  # the temp file is there now
        raise failure(28, "No space left on device") if failure is OSError else failure()

    monkeypatch.setattr(dipstop.imageio.os, where, interrupted)
    expected = DipstopError if failure is OSError else KeyboardInterrupt
    with pytest.raises(expected):
        write_image(dst, gradient())
    monkeypatch.undo()
    assert len(seen[0]) == 2 and seen[0][0].startswith(".out.png.")  # it was mid-write
    assert dst.read_bytes() == b"the previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temp file left


def test_a_write_replaces_atomically_keeping_permissions_and_links(tmp_path):
    dst = tmp_path / "out.png"
    write_image(dst, gradient())
    dst.chmod(0o640)
    link = tmp_path / "link.png"
    link.symlink_to(dst)
    write_image(link, gradient(seed=1))
    assert link.is_symlink() and (dst.stat().st_mode & 0o777) == 0o640
    np.testing.assert_array_equal(decode_image(dst.read_bytes()), gradient(seed=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.png", "out.png"]
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


# -- files that are not regular images --------------------------------------------------------


def test_special_and_oversized_files_are_refused_without_reading_them(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(DipstopError, match="not a regular file"):
        read_image(fifo)
    with pytest.raises(DipstopError, match="not a file"):
        load_table(fifo)
    sparse = tmp_path / "huge.png"
    with sparse.open("wb") as f:
        f.truncate(200 * 2**20)  # 200 MiB of nothing, beyond 8 bytes x 1 MP + 64 MiB
    with pytest.raises(DipstopError, match="MiB, more than any image"):
        read_image(sparse)


def test_a_file_name_with_a_newline_still_gives_one_line(tmp_path):
    rc, err = run_cli("denoise", str(tmp_path / "a\nb.png"), *TINY_CLI)
    assert_one_line_error(rc, err, "no such file", "a\\nb.png")


def test_a_device_of_the_wrong_type_is_refused_before_fitting(no_fitting):
    with pytest.raises(DipstopError, match="device must be"):
        denoise(gradient(40, 40), device=["cpu"], **TINY)
