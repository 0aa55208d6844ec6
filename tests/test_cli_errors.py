"""Bad input: a one-line error naming the problem and the fix, exit status 2, no traceback."""

import cv2
import numpy as np
import pytest

from dipstop.cli import main


def run_cli(capsys, *argv):
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse exits on its own errors
        rc = exc.code
    err = capsys.readouterr().err.strip()
    return rc, err


def assert_one_line_error(rc, err, *words):
    assert rc == 2
    assert err.count("\n") == 0 and err.startswith("dipstop: error:"), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


@pytest.fixture
def good_png(tmp_path, smooth_rgb):
    p = tmp_path / "good.png"
    cv2.imwrite(str(p), smooth_rgb)
    return p


def test_missing_path(capsys, tmp_path):
    assert_one_line_error(*run_cli(capsys, "denoise", str(tmp_path / "nope.png")), "no such file")


def test_not_an_image(capsys, tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not a picture")
    assert_one_line_error(*run_cli(capsys, "denoise", str(p)), "not an image")


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_file(capsys, tmp_path, smooth_rgb, ext):
    p = tmp_path / f"cut{ext}"
    ok, buf = cv2.imencode(ext, smooth_rgb)
    p.write_bytes(buf.tobytes()[: buf.size // 2])
    assert_one_line_error(*run_cli(capsys, "denoise", str(p)), "truncated")


def test_too_small(capsys, tmp_path):
    p = tmp_path / "small.png"
    cv2.imwrite(str(p), np.zeros((16, 48, 3), np.uint8))
    assert_one_line_error(*run_cli(capsys, "denoise", str(p), "--lam", "50"), "at least 32")


def test_unsupported_pixel_type(capsys, tmp_path):
    p = tmp_path / "float.tiff"
    cv2.imwrite(str(p), np.random.default_rng(0).random((64, 64, 3), dtype=np.float32))
    assert_one_line_error(*run_cli(capsys, "denoise", str(p)), "float32", "8- and 16-bit")


def test_unwritable_output_fails_before_fitting(capsys, tmp_path, good_png):
    rc, err = run_cli(capsys, "denoise", str(good_png), "-o", str(tmp_path / "no" / "out.png"))
    assert_one_line_error(rc, err, "does not exist")
    rc, err = run_cli(capsys, "denoise", str(good_png), "-o", str(tmp_path / "out.xyz"))
    assert_one_line_error(rc, err, ".png")


def test_folder_as_input(capsys, tmp_path):
    assert_one_line_error(*run_cli(capsys, "denoise", str(tmp_path)), "folder")


def test_bad_option_value(capsys, good_png):
    assert_one_line_error(*run_cli(capsys, "denoise", str(good_png), "--width", "wide"), "width")
    assert_one_line_error(*run_cli(capsys, "denoise", str(good_png), "-T", "0"), "at least 1")
    assert_one_line_error(*run_cli(capsys, "denoise", str(good_png), "--device", "tpu"), "device")


def test_calibrate_on_a_folder_without_images(capsys, tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    rc, err = run_cli(
        capsys, "calibrate", "--images", str(tmp_path), "--store", str(tmp_path / "s.sqlite")
    )
    assert_one_line_error(rc, err, "no images")


def test_empty_file(capsys, tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    assert_one_line_error(*run_cli(capsys, "denoise", str(p)), "empty")


def test_decompression_bomb_is_refused_before_decoding(capsys, tmp_path):
    import struct
    import zlib

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    p = tmp_path / "bomb.png"
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    assert_one_line_error(*run_cli(capsys, "denoise", str(p)), "100000 x 100000", "limit")


def test_output_over_the_input_needs_overwrite(capsys, good_png):
    before = good_png.read_bytes()
    rc, err = run_cli(capsys, "denoise", str(good_png), "-o", str(good_png))
    assert_one_line_error(rc, err, "--overwrite")
    assert good_png.read_bytes() == before


@pytest.mark.parametrize(
    "option, value", [("--sigma", "inf"), ("--lam", "nan"), ("--z-noise-std", "nan")]
)
def test_non_finite_numbers(capsys, good_png, option, value):
    assert_one_line_error(*run_cli(capsys, "denoise", str(good_png), option, value), option)


def test_bad_table_fails_before_fitting(capsys, tmp_path, good_png):
    table = tmp_path / "t.json"
    table.write_text('[{"sigma": 5, "lam": 1.0}]')
    rc, err = run_cli(capsys, "denoise", str(good_png), "--table", str(table))
    assert_one_line_error(rc, err, str(table), "calibrate")
