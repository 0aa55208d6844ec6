"""A photo's ICC profile and EXIF (orientation, camera data) reach the denoised file."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from dipstop.batch import denoise_file
from dipstop.imageio import encode_image, join_array, read_image, split_array, write_image
from dipstop.metadata import ICC_ROOM, carried

QUICK = dict(width=8, max_iters=2, patience=1, sigma=25.0, device="cpu", progress=False)
ORIENTATION, MODEL = 0x0112, 0x0110  # EXIF tags


@pytest.fixture(scope="module")
def profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def phone_photo(path, profile: bytes, fmt: str = "JPEG") -> np.ndarray:
    """A 48 x 64 photo stored sideways (orientation 6: rotate 90 degrees to show it)."""
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    exif = Image.Exif()
    exif[ORIENTATION], exif[MODEL] = 6, "Test Cam"
    Image.fromarray(pixels).save(path, fmt, exif=exif, icc_profile=profile)
    return pixels


@pytest.mark.parametrize("out_name", ["out.png", "out.jpg"])
def test_a_denoised_photo_keeps_its_orientation_profile_and_camera_data(
    tmp_path, profile, out_name
):
    src, dst = tmp_path / "photo.jpg", tmp_path / out_name
    phone_photo(src, profile)
    assert read_image(src).meta.keys() == {"icc_profile", "exif"}
    denoise_file(src, dst, **QUICK)
    with Image.open(dst) as out:
        exif = out.getexif()
        assert exif[ORIENTATION] == 6 and exif[MODEL] == "Test Cam"
        assert out.info["icc_profile"] == profile
        assert out.size == (64, 48)  # the pixels as stored: the tag shows them upright


def test_a_format_that_drops_them_says_so_in_the_notes(tmp_path, profile):
    src = tmp_path / "photo.jpg"
    phone_photo(src, profile)
    notes = denoise_file(src, tmp_path / "out.bmp", **QUICK).notes
    assert "the ICC profile and the EXIF of photo.jpg not written to .bmp" in " ".join(notes)
    notes = denoise_file(src, tmp_path / "out.tif", **QUICK).notes  # TIFF keeps the profile
    assert "the EXIF of photo.jpg not written to .tif" in " ".join(notes)
    assert not any("EXIF" in n for n in denoise_file(src, tmp_path / "o.png", **QUICK).notes)


def test_a_16_bit_png_keeps_its_profile_and_every_bit(tmp_path, profile):
    src, dst = tmp_path / "deep.png", tmp_path / "copy.png"
    ramp = (np.arange(40 * 50).reshape(40, 50) * 31).astype(np.uint16)
    Image.fromarray(ramp).save(src, icc_profile=profile)  # a 16-bit gray PNG
    loaded = read_image(src)
    assert loaded.meta == {"icc_profile": profile}
    write_image(dst, ramp, loaded.meta)
    with Image.open(dst) as out:
        assert out.info["icc_profile"] == profile
    assert np.array_equal(read_image(dst).pixels, loaded.pixels)


def test_a_profile_longer_than_a_jpeg_segment_is_split_and_reassembled(tmp_path):
    big = np.random.default_rng(1).bytes(2 * ICC_ROOM + 100)  # three APP2 segments
    path = tmp_path / "big.jpg"
    write_image(path, np.zeros((32, 32, 3), np.uint8), {"icc_profile": big})
    with Image.open(path) as out:
        assert out.info["icc_profile"] == big


def test_what_a_format_cannot_hold_is_left_out_and_the_file_still_reads(tmp_path, profile):
    huge_exif = b"Exif\x00\x00" + Image.Exif().tobytes()[6:] + bytes(70_000)
    meta = {"icc_profile": profile, "exif": huge_exif}
    assert carried(".png", meta) == ["icc_profile", "exif"]
    assert carried(".jpg", meta) == ["icc_profile"]  # over one APP1 segment's 65,533 bytes
    assert carried(".tif", meta) == ["icc_profile"] and carried(".bmp", meta) == []
    pixels = np.random.default_rng(2).integers(0, 256, (32, 32, 3), np.uint8)
    for name in ("a.jpg", "a.tif", "a.bmp"):
        write_image(tmp_path / name, pixels, meta)
        assert read_image(tmp_path / name).pixels.shape == (32, 32, 3)
    write_image(tmp_path / "a.bmp", pixels, meta)
    assert (tmp_path / "a.bmp").read_bytes() == encode_image(pixels, ".bmp")


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_tiff_keeps_its_profile_and_every_bit(tmp_path, profile, channels, dtype):
    top = np.iinfo(dtype).max
    pixels = np.random.default_rng(3).integers(0, top + 1, (40, 30, channels)).astype(dtype)
    write_image(tmp_path / "a.tif", pixels, {"icc_profile": profile})
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:  # Pillow reads no 16-bit gray+alpha
        assert tif.pages[0].tags["InterColorProfile"].value == profile
    back = read_image(tmp_path / "a.tif")
    assert back.meta == {"icc_profile": profile} and back.dtype == dtype
    restored = join_array(back.pixels, back)
    assert np.array_equal(restored, pixels[..., 0] if channels == 1 else pixels)


def test_arrays_and_plain_files_carry_nothing(tmp_path):
    pixels = np.zeros((32, 32, 3), np.uint8)
    assert split_array(pixels).meta == {}
    plain = io.BytesIO()
    Image.fromarray(pixels).save(plain, "PNG")
    (tmp_path / "plain.png").write_bytes(plain.getvalue())
    assert read_image(tmp_path / "plain.png").meta == {}
    write_image(tmp_path / "copy.png", pixels, {})
    assert (tmp_path / "copy.png").read_bytes() == encode_image(pixels, ".png")


def test_an_rgba_tiff_with_unassociated_alpha_reads_as_stored(tmp_path):
    """libtiff's RGBA path (OpenCV) would premultiply the colours by alpha."""
    pixels = np.random.default_rng(4).integers(0, 256, (24, 20, 4), np.uint8)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a.tif")  # ExtraSamples 2: unassociated
    back = read_image(tmp_path / "a.tif")
    assert np.array_equal(join_array(back.pixels, back), pixels)
