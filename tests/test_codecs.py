import cv2
import numpy as np
import pytest

from dipstop.codecs import jpeg_bytes, quantise


def opencv_bytes_of_rgb(rgb: np.ndarray) -> int:
    bgr = rgb[:, :, ::-1] if rgb.ndim == 3 else rgb
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.size


@pytest.mark.parametrize("name", ["101085.png", "108005.png", "167062.png"])
def test_byte_count_equals_opencv_on_real_images(shared, name):
    bgr = cv2.imread(str(shared / "data" / "cbsd68" / name))
    rgb = bgr[:, :, ::-1]
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert jpeg_bytes(np.ascontiguousarray(rgb)) == buf.size
    crop = np.ascontiguousarray(rgb[17:145, 33:161])
    assert jpeg_bytes(crop) == opencv_bytes_of_rgb(crop)


@pytest.mark.parametrize("seed", range(4))
def test_byte_count_equals_opencv_on_random_images(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(8, 200, size=2)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (h, w), dtype=np.uint8)
    assert jpeg_bytes(rgb) == opencv_bytes_of_rgb(rgb)
    assert jpeg_bytes(gray) == opencv_bytes_of_rgb(gray)
    assert jpeg_bytes(gray[:, :, None]) == opencv_bytes_of_rgb(gray)


@pytest.mark.parametrize("seed", range(2))
def test_channel_planar_views_give_the_same_bytes(seed):
    # the fitting loop's outputs are C x H x W tensors seen as H x W x C: non-contiguous
    planes = np.random.default_rng(seed).integers(0, 256, (3, 40, 72), dtype=np.uint8)
    view = planes.transpose(1, 2, 0)
    assert not view.flags.c_contiguous
    assert jpeg_bytes(view) == opencv_bytes_of_rgb(np.ascontiguousarray(view))
    assert jpeg_bytes(view[5:30, 7:61]) == opencv_bytes_of_rgb(
        np.ascontiguousarray(view[5:30, 7:61])
    )


def test_noise_makes_jpegs_bigger(smooth_rgb):
    rng = np.random.default_rng(0)
    sizes = [
        jpeg_bytes(quantise(smooth_rgb / 255 + rng.normal(0, s / 255, smooth_rgb.shape)))
        for s in (0, 10, 25, 50)
    ]
    assert sizes == sorted(sizes) and sizes[-1] > 1.2 * sizes[0]


def test_quantisation_rounds_and_clips():
    q = quantise(np.array([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 1.0, 2.0]))
    assert q.tolist() == [0, 0, 0, 2, 255, 255]


def test_float_pixels_are_refused():
    with pytest.raises(TypeError, match="uint8"):
        jpeg_bytes(np.zeros((8, 8)))
