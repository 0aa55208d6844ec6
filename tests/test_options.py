"""DenoiseOptions: one owner for every option, its default, check, flag and preset."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields

import numpy as np
import pytest

import dipstop.cli
import dipstop.cli_args
import dipstop.lab.commands
from dipstop import tiled_run
from dipstop.api import denoise, denoise_tiled
from dipstop.cli import build_parser
from dipstop.errors import DipstopError
from dipstop.options import NAMES, PRESETS, DenoiseOptions, from_args
from dipstop.results import DenoiseResult


def test_what_users_get_by_default_is_one_warm_width_16_fit_a_tile_then_the_filter():
    o = DenoiseOptions().preset_applied()
    assert (o.quality, o.width, o.patience, o.ensemble) == ("default", 16, 200, 1)
    assert (o.warm_start, o.wiener, o.burn_in, o.sigma_estimator) == (True, True, 100, "pca")
    assert (o.protocol, o.output, o.precision, o.tile, o.overlap) == (
        "cpu", "since-best", "auto", 128, 32,
    )  # fmt: skip


def test_presets_fill_only_what_the_user_left_unset_and_never_the_papers_settings():
    best = DenoiseOptions(quality="best").preset_applied()
    assert (best.width, best.patience, best.ensemble, best.warm_start) == (16, 700, 4, False)
    fast = DenoiseOptions(quality="fast").preset_applied()
    assert (fast.width, fast.patience, fast.ensemble, fast.warm_start) == (16, 50, 1, True)
    assert (fast.burn_in, best.burn_in) == (0, 0)  # measured for the default only
    mine = DenoiseOptions(quality="best", width=32, ensemble=1).preset_applied()
    assert (mine.width, mine.patience, mine.ensemble) == (32, 700, 1)
    for paper in (DenoiseOptions(quality="fast", output="raw"),
                  DenoiseOptions(quality="fast", protocol="paper")):  # fmt: skip
        o = paper.preset_applied()
        assert (o.width, o.patience, o.ensemble, o.burn_in) == (None, None, 1, 0)
        assert o.sigma_estimator == "wavelet"  # what the paper's settings always computed
    asked = DenoiseOptions(output="raw", sigma_estimator="pca").preset_applied()
    assert asked.sigma_estimator == "pca"
    assert DenoiseOptions(burn_in=0).preset_applied().burn_in == 0  # 0 is kept, not "unset"
    assert DenoiseOptions(quality="best", burn_in=30).preset_applied().burn_in == 30


def test_every_field_is_documented():
    doc = DenoiseOptions.__doc__
    entries = {name.strip() for line in doc.splitlines() if line.startswith("    ") and
               not line.startswith("        ") and " : " in line
               for name in line.split(" : ")[0].split(",")}  # fmt: skip
    assert {f.name for f in fields(DenoiseOptions)} <= entries


def test_every_cli_option_is_generated_from_its_field():
    args = build_parser().parse_args(
        ["denoise", "x.png", "--quality", "best", "--ensemble", "3", "--width", "8", "-S", "7",
         "--tile", "0", "--output-policy", "raw", "--seed", "5"]
    )  # fmt: skip
    o = from_args(args)
    assert (o.quality, o.ensemble, o.width, o.patience, o.tile, o.output, o.seed) == (
        "best", 3, 8, 7, None, "raw", 5,
    )  # fmt: skip
    # no fit option's flag is written out by hand in the CLI: one definition each. The lab
    # grids' --precision is their own: fp32 or bf16 only, recorded in each run's key, where
    # "auto" would make the key depend on the machine
    modules = (dipstop.cli, dipstop.cli_args, dipstop.lab.commands)
    source = "".join(inspect.getsource(m) for m in modules)
    source = source.replace('"--precision",\n        default="fp32"', "")
    for f in fields(DenoiseOptions):
        for flag in (f.metadata["cli"] or {}).get("flags", ()):
            for added in re.finditer(rf'add_argument\(\s*("-\w",\s*)?"{flag}"[^)]*\)', source):
                assert "SUPPRESS" in added.group(0), f"{flag} is defined in cli.py too"


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"quality": "ultra"}, "quality must be one of fast, default, best"),
        ({"ensemble": 0}, "ensemble must be a whole number of at least 1"),
        ({"tile": 32}, "tile must be a whole number of at least 64"),
        ({"overlap": 70}, "overlap must be a whole number from 0 to 64"),
        ({"lam": -1.0}, "lam must be a finite number above 0"),
        ({"burn_in": -1}, "burn_in must be a whole number of at least 0"),
        ({"basic": 1.5}, "basic must be at most 1, got 1.5; give a share from 0 to 1"),
        ({"basic": -0.5}, "basic must be a finite number of at least 0"),
        ({"sigma_estimator": "mad"}, "sigma_estimator must be 'pca' or 'wavelet', got 'mad'"),
    ],
)
def test_a_bad_option_is_one_line_naming_it(bad, match):
    with pytest.raises(DipstopError, match=match) as err:
        DenoiseOptions(**bad).check()
    assert "\n" not in str(err.value)


def test_an_unknown_option_is_a_type_error_as_for_any_call():
    with pytest.raises(TypeError, match="unexpected option 'widht'"):
        denoise(np.zeros((64, 64), np.uint8), widht=8)
    assert {"sigma", "lam", "quality", "ensemble", "tile", "ray", "cancel"} <= NAMES
    assert set(PRESETS) == {"fast", "default", "best"}


def _stub(image, clean, options, **_):
    """A tile fit that returns its tile plus 0.1 x its seed."""
    result = DenoiseResult(3, 5, True, options.sigma or 25.0, False, options.lam or 50.0, 0.0,
                           {"seed": options.seed}, {}, 0.01)  # fmt: skip
    return image + np.float32(0.1 * options.seed), result


def test_an_ensemble_blends_the_mean_of_its_members_fitted_with_successive_seeds(monkeypatch):
    monkeypatch.setattr(tiled_run, "fit_one", _stub)
    flat = np.full((70, 100), 0.3, np.float32)
    out, res = denoise_tiled(flat, tile=64, overlap=16, sigma=25.0, lam=50.0, seed=2,
                             ensemble=3, wiener=False)  # the blend itself  # fmt: skip
    # seeds 2, 3, 4 add 0.2, 0.3, 0.4: their mean 0.3 on top of 0.3, everywhere
    np.testing.assert_allclose(out, 0.6, atol=1e-6)
    assert len(res.tiles) == 4 * 3
    assert [t.result.settings["seed"] for t in res.tiles[:3]] == [2, 3, 4]
    # an image small enough to be fitted whole is one tile, fitted `ensemble` times
    small = np.full((40, 50), 0.3, np.float32)
    out, res = denoise(small, sigma=25.0, lam=50.0, ensemble=2, wiener=False)
    np.testing.assert_allclose(out, 0.35, atol=1e-6)
    assert [t.result.settings["seed"] for t in res.tiles] == [0, 1]


def test_a_narrow_preset_reads_the_lam_table_shipped_for_its_width():
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    _, res = denoise(noisy, quality="fast", sigma=25.0, max_iters=2)
    assert res.settings["width"] == 16 and res.settings["patience"] == PRESETS["fast"].patience
    assert not any("width" in note for note in res.notes)  # the width-16 table, no caveat
    _, res = denoise(noisy, quality="fast", width=32, sigma=25.0, max_iters=2)
    assert any("calibrated at width 64, run at width 32" in note for note in res.notes)


def test_an_ensembles_summary_line_counts_fits_and_seeds(monkeypatch):
    monkeypatch.setattr(tiled_run, "fit_one", _stub)
    _, res = denoise(np.full((40, 50), 0.3, np.float32), sigma=25.0, lam=50.0, ensemble=2)
    assert res.members == 2 and "2 of 2 fits (2 seeds a tile)" in res.describe()
    _, res = denoise_tiled(np.full((70, 100), 0.3, np.float32), tile=64, sigma=25.0, lam=50.0,
                           ensemble=1)  # fmt: skip
    assert res.members == 1 and "6 of 6 tiles of 64 px" in res.describe()


def test_the_report_of_an_untiled_images_fits_has_each_fits_series_and_curves(tmp_path):
    from dipstop.report import write_run_report

    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    _, res = denoise(noisy, sigma=25.0, width=8, max_iters=4, patience=2, seed=3, ensemble=2)
    write_run_report(res, tmp_path)
    for fit, seed in zip(res.fitted, (3, 4), strict=True):
        rows = (tmp_path / f"series_seed{seed}.csv").read_text().splitlines()
        assert len(rows) == 1 + fit.iterations_run
        assert (tmp_path / f"curves_seed{seed}.png").stat().st_size > 1000
    assert not (tmp_path / "series.csv").exists()


def test_the_default_is_one_width_16_fit_at_the_width_16_tables_lam():
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    _, res = denoise(noisy, sigma=25.0, max_iters=2)
    assert isinstance(res, DenoiseResult) and res.settings["seed"] == 0  # one fit, untiled
    assert (res.settings["width"], res.settings["patience"]) == (16, 200)
    _, one = denoise(noisy, sigma=25.0, max_iters=2, width=64)  # its own table
    assert res.lam == pytest.approx(1.4 * one.lam) and one.settings["width"] == 64
    _, best = denoise(noisy, quality="best", sigma=25.0, max_iters=2)
    assert [t.result.settings["seed"] for t in best.tiles] == [0, 1, 2, 3]
    assert best.lam == pytest.approx(res.lam)


def test_a_photos_default_run_reads_sigma_by_patch_covariance_the_papers_by_wavelet(
    monkeypatch, shared
):
    """What users get: a whole photo's tiles are fitted at the PCA estimate; the paper's
    settings (output "raw") keep the wavelet MAD's."""
    from dipstop.imageio import read_image
    from dipstop.lab.datasets import list_images
    from dipstop.noise import add_gaussian_noise, estimate_sigma

    monkeypatch.setattr(tiled_run, "fit_one", _stub)
    photo = read_image(list_images(shared / "data" / "cbsd68")[0]).pixels
    noisy = np.rint(add_gaussian_noise(photo, 25, seed=0) * 255).astype(np.uint8)
    pca, wavelet = estimate_sigma(noisy, "pca"), estimate_sigma(noisy, "wavelet")
    assert abs(pca - wavelet) > 0.05
    _, res = denoise(noisy, lam=50.0, wiener=False, tile_above=0)
    assert res.sigma == pytest.approx(pca, abs=1e-4) and len(res.tiles) > 1
    _, res = denoise(noisy, lam=50.0, output="raw", tile_above=0)
    assert res.sigma == pytest.approx(wavelet, abs=1e-4)
