"""lam tables calibrated at several image sizes: checked, interpolated in log(pixels), and
looked up at the size that is fitted (the whole image, or one tile)."""

import numpy as np
import pytest

from dipstop.api import denoise
from dipstop.errors import DipstopError
from dipstop.lab.selection import select
from dipstop.lab.store import StoredRun
from dipstop.lambda_table import lam_for_sigma, load_table, table_sizes, write_table

FIT = dict(width=8, max_iters=2, patience=1, sigma=25)


@pytest.fixture
def two_sizes(tmp_path):
    """lam 10 at 64 x 64 and 40 at 128 x 128, at sigma 25 (and 20 and 80 at sigma 50)."""
    path = tmp_path / "sizes.json"
    entries = [{"sigma": 25, "lam": 10.0, "pixels": 64 * 64, "n_runs": 8},
               {"sigma": 25, "lam": 40.0, "pixels": 128 * 128, "n_runs": 8},
               {"sigma": 50, "lam": 20.0, "pixels": 64 * 64, "n_runs": 8},
               {"sigma": 50, "lam": 80.0, "pixels": 128 * 128, "n_runs": 8}]  # fmt: skip
    write_table(path, entries, {"width": 8}, {"output": "since-best"})
    return path


def test_the_same_sigma_at_two_sizes_is_one_table_interpolated_in_log_pixels(two_sizes):
    table = load_table(two_sizes)
    assert table_sizes(table) == [4096, 16384]
    assert lam_for_sigma(25, table, 4096) == pytest.approx(10.0)
    # lam 10 -> 40 over 4x the pixels: a slope of 1 in log-log, so lam grows as the pixels
    assert lam_for_sigma(25, table, 90 * 91) == pytest.approx(10.0 * 90 * 91 / 4096)
    assert lam_for_sigma(37.5, table, 8192) == pytest.approx(np.sqrt(10 * 20) * 2)  # both axes
    assert lam_for_sigma(25, table, 10**6) == pytest.approx(40.0)  # the nearest end beyond


def test_a_size_calibrated_at_fewer_sigmas_follows_the_base_sizes_sigma_curve():
    """The grids calibrate larger sizes at sigma 15, 25, 50 only: beyond them a larger image
    keeps its measured ratio to the 128 x 128 lam, not the end sigma's lam."""
    base = [(5, 300.0), (15, 80.0), (25, 45.0), (50, 27.0), (75, 15.0)]
    entries = [{"sigma": s, "lam": lam, "pixels": 128 * 128} for s, lam in base]
    entries += [{"sigma": 15, "lam": 96.0, "pixels": 481 * 321},  # 1.2x the base
                {"sigma": 50, "lam": 40.5, "pixels": 481 * 321}]  # 1.5x  # fmt: skip
    table = {"entries": entries}
    whole = 481 * 321
    assert lam_for_sigma(5, table, whole) == pytest.approx(300.0 * 1.2)  # held at sigma 15's
    assert lam_for_sigma(75, table, whole) == pytest.approx(15.0 * 1.5)  # and sigma 50's
    ratio_25 = 1.2 * (1.5 / 1.2) ** (10 / 35)  # log ratio linear in sigma from 15 to 50
    assert lam_for_sigma(25, table, whole) == pytest.approx(45.0 * ratio_25)
    assert lam_for_sigma(75, table, 128 * 128) == pytest.approx(15.0)  # the base, unchanged


@pytest.mark.parametrize(
    "entries, problem",
    [
        ([{"sigma": 5, "lam": 1, "pixels": 9}, {"sigma": 9, "lam": 1}], 'gives "pixels" on 1 of'),
        ([{"sigma": 5, "lam": 1, "pixels": 9}, {"sigma": 5, "lam": 2, "pixels": 9}],
         "lists sigma 5 at 9 pixels more than once"),
        ([{"sigma": 5, "lam": 1, "pixels": 0.5}], "has pixels 0.5, not a whole number >= 1"),
    ],
)  # fmt: skip
def test_a_malformed_sized_table_is_refused_in_one_line(tmp_path, entries, problem):
    path = tmp_path / "bad.json"
    write_table(path, entries, {}, {})
    with pytest.raises(DipstopError, match=problem):
        load_table(path)


def test_denoise_takes_lam_at_the_image_size(two_sizes, smooth_rgb):
    _, small = denoise(smooth_rgb, table=str(two_sizes), **FIT)  # 64 x 64
    big = np.tile(smooth_rgb, (2, 2, 1))  # 128 x 128
    _, large = denoise(big, table=str(two_sizes), **FIT)
    assert (small.lam, large.lam) == pytest.approx((10.0, 40.0))
    assert not any("pixels" in n for n in small.notes + large.notes)  # both sizes calibrated


def test_tiles_take_lam_at_the_tile_size(two_sizes, smooth_rgb):
    big = np.tile(smooth_rgb, (2, 2, 1))  # 128 x 128 in 64 x 64 tiles
    _, res = denoise(big, table=str(two_sizes), tile=64, overlap=16, tile_above=64 * 64, **FIT)
    assert len(res.tiles) > 1 and res.lam == pytest.approx(10.0)
    assert all(t.result.lam == pytest.approx(res.lam) for t in res.tiles)  # one lam for all


def test_an_image_far_from_the_calibrated_sizes_is_noted(tmp_path, smooth_rgb):
    path = tmp_path / "one.json"
    write_table(path, [{"sigma": 25, "lam": 5.0, "n_runs": 8}], {"width": 8, "crop": 32}, {})
    _, res = denoise(smooth_rgb, table=str(path), **FIT)  # 4096 pixels against 32 x 32
    assert res.lam == pytest.approx(5.0)
    assert any("calibrated at 1024 pixels, the image has 4096" in n for n in res.notes)


def test_recorded_runs_are_scored_with_lam_at_their_own_size():
    """The report and benchmarks read lam for a stored run at the run's pixel count: a
    whole-image run in a table calibrated at 128 x 128 and at its size gets its size's lam."""
    t = np.arange(1, 301, dtype=float)
    spec = {"sigma": 25.0, "criteria": {"cifs": {"every": 1}}}

    def run(pixels: int) -> StoredRun:  # E_t = lam / t + (t / 100)^2: least at (5000 lam)^(1/3)
        series = {"mse": 1 / t, "jpeg_bytes": pixels * t / 100, "psnr": 30 - (t / 40) ** 2}
        return StoredRun("key", spec, {"pixels": pixels, "sigma_estimated": 25.0}, series)

    sized = {"entries": [{"sigma": 25.0, "lam": 62.5, "pixels": 1024},
                         {"sigma": 25.0, "lam": 250.0, "pixels": 4096}]}  # fmt: skip
    assert run(4096).table_lam(sized) == pytest.approx(250.0)
    assert select(run(4096), patience=20, table=sized)["CIFS (est. sigma)"] == 108  # lam 250
    assert select(run(1024), patience=20, table=sized)["CIFS (est. sigma)"] == 68  # lam 62.5
