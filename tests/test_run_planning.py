"""Long runs a user can plan: the estimate printed once the first iterations are timed, a
wall-clock budget that ends a fit with the best output so far, and a fit that resumes."""

from __future__ import annotations

import math
import re
import threading

import cv2
import numpy as np
import pytest
import torch

import dipstop.single
from dipstop.api import denoise
from dipstop.cli import main
from dipstop.criteria import CifsCriterion, Context
from dipstop.errors import DipstopError
from dipstop.estimate import RunEstimate
from dipstop.fitting import FitSettings, Fitter
from dipstop.lambda_table import load_table, write_table
from dipstop.memory import estimate_bytes
from dipstop.noise import add_gaussian_noise
from dipstop.recording import record

TINY = dict(width=8, lam=50.0)


@pytest.fixture
def noisy(smooth_rgb):
    return add_gaussian_noise(smooth_rgb / 255.0, 25, seed=0)  # float32 in [0, 1]


def test_the_cli_prints_a_consistent_estimate_on_stderr_unless_quiet(tmp_path, noisy, capsys):
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.rint(noisy[:, :, ::-1] * 255).astype(np.uint8))
    args = ["denoise", str(src), "--width", "8", "-T", "8", "-S", "8", "--lam", "50"]
    assert main(args) == 0
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("dipstop: estimate:")]
    rate = float(re.search(r"estimate: ([0-9.e+-]+) s/iteration", line).group(1))
    assert rate > 0 and "timed on iterations 2-5" in line and "up to T=8 iterations" in line
    assert re.search(r"needs about \d+ MiB", line), line
    assert main([*args, "--quiet"]) == 0
    assert "estimate" not in capsys.readouterr().err


def test_the_estimate_comes_once_after_the_timed_iterations_and_adds_up(noisy):
    seen = []
    one = dict(ensemble=1, **TINY)  # one fit's estimate
    _, res = denoise(noisy, max_iters=12, patience=12, on_estimate=seen.append, **one)
    est = res.estimate
    assert seen == [est] and isinstance(est, RunEstimate)
    assert est.timed == (2, 5) and est.max_iterations == 12 and est.expected_from == "T"
    assert 1 <= est.expected_iterations <= est.max_iterations
    assert est.seconds_per_iteration > 0
    t = res.series["seconds"]  # the rate is what iterations 2-5 took, per iteration
    assert est.seconds_per_iteration == pytest.approx((t[4] - t[0]) / 4)
    assert t[4] < est.seconds_low <= est.seconds_high
    assert est.seconds_high == pytest.approx(t[4] + 7 * est.seconds_per_iteration)
    assert est.memory_bytes == estimate_bytes(64 * 64, 8)  # a 64x64 image is not padded
    assert res.summary()["estimate"]["timed"] == (2, 5)  # plain data for summary.json
    _, short = denoise(noisy, max_iters=2, patience=2, **one)  # T below 5: timed at T
    assert short.estimate.timed == (2, 2) and short.estimate.seconds_per_iteration > 0


@pytest.mark.parametrize(
    "means, table_s, burn_in, expected",
    [((8, 12), 3, 0, 10), ((8, 12), 1, 0, 12), ((8, 12), None, 0, 10), ((8, 16), 3, 0, 12),
     (None, 3, 0, 20), ((1, 1), 3, 0, 3), ((8, 12), 3, 12, 15)],
)  # fmt: skip
def test_the_lam_tables_mean_iterations_are_the_expected_stop(
    tmp_path, noisy, means, table_s, burn_in, expected
):
    """Entries record the iterations the Eq. 4 rule ran under the table's S (interpolated
    in sigma); a run with another S is expected to stop S later or earlier, never past T
    and never before its burn-in + S (its earliest end); a table without them (the older
    format) expects T."""
    entries = [{"sigma": 10.0, "lam": 50.0}, {"sigma": 30.0, "lam": 50.0}]
    if means is not None:
        for entry, mean in zip(entries, means, strict=True):
            entry["mean_iterations"] = float(mean)
    path = tmp_path / "table.json"
    write_table(path, entries, {"width": 8, "patience": table_s}, {})
    _, res = denoise(noisy, sigma=20, width=8, max_iters=20, patience=3, table=str(path),
                     burn_in=burn_in)  # fmt: skip
    est = res.estimate
    assert est.expected_iterations == expected
    if expected < 20:
        assert est.expected_from == "lam table"
        assert f"{expected} iterations expected (lam table), at most T=20" in est.line()
    else:
        assert est.expected_from == "T" and "up to T=20 iterations" in est.line()


def test_the_shipped_table_expects_a_stop_within_t(noisy):
    table = load_table()
    assert all(1 <= e["mean_iterations"] <= 3000 for e in table["entries"])
    _, res = denoise(noisy, sigma=25, width=8, max_iters=6, patience=6)
    assert 1 <= res.estimate.expected_iterations <= 6


def test_a_table_with_a_bad_mean_iterations_is_refused(tmp_path):
    path = tmp_path / "table.json"
    write_table(path, [{"sigma": 10.0, "lam": 5.0, "mean_iterations": 0}], {}, {})
    with pytest.raises(DipstopError, match="mean_iterations 0"):
        load_table(path)


def test_a_time_budget_ends_the_run_long_before_t_with_the_best_so_far(noisy, smooth_rgb):
    budget = 0.5 / 60  # half a second, where T = 20000 iterations would take minutes
    out, res = denoise(
        noisy, max_iters=20000, patience=20000, clean=smooth_rgb, max_minutes=budget,
        output="raw", **TINY,
    )  # fmt: skip
    assert res.stopped_by_budget and not res.stopped_early and not res.interrupted
    assert res.iterations_run < 2000 and 0.5 < res.seconds < 5
    seconds = res.series["seconds"]
    assert seconds[-1] > 0.5 and (len(seconds) == 1 or seconds[-2] <= 0.5)  # ends at the first
    t_star = int(np.argmin(res.series["criterion"])) + 1  # the best so far...
    assert res.stop_iteration == t_star
    assert res.psnr == pytest.approx(res.series["psnr"][t_star - 1])  # ...is what came back
    # (the default, since-best, returns the mean since t* then: tests/test_policies.py)
    assert out.shape == noisy.shape
    assert any("time budget" in n and f"t*={t_star}" in n for n in res.notes)


def test_record_takes_a_generic_wall_clock_budget():
    fitter = Fitter(torch.rand(3, 64, 64), FitSettings(width=8))
    rec = record(fitter, 100000, [CifsCriterion()], max_seconds=0.3)
    assert rec.stopped_by_budget and rec.iterations < 100000
    assert rec.series["seconds"][-1] > 0.3 >= rec.series["seconds"][:-1].max(initial=0)
    with pytest.raises(DipstopError, match="max_seconds"):
        record(fitter, 10, max_seconds=0)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "5"])
def test_the_budget_is_checked_before_fitting(noisy, monkeypatch, bad):
    def no_fitting(*args, **kwargs):
        raise AssertionError("fitted before the check")

    monkeypatch.setattr(dipstop.single, "Fitter", no_fitting)
    with pytest.raises(DipstopError, match="max_minutes must be a finite number above 0"):
        denoise(noisy, max_minutes=bad, **TINY)


@pytest.mark.parametrize("value", ["0", "-2", "inf", "nan"])
def test_the_cli_refuses_a_bad_budget_in_one_line(tmp_path, capsys, value):
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(SystemExit) as exc:
        main(["denoise", str(src), "--max-minutes", value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "--max-minutes" in err
    assert not (tmp_path / "in_dipstop.png").exists()


def test_a_tiled_image_is_estimated_on_its_first_tile_and_shares_the_budget(smooth_rgb):
    noisy = add_gaussian_noise(cv2.resize(smooth_rgb, (96, 96)) / 255.0, 25, seed=0)
    # 4 tiles of 64 px, one fit each (ensemble=1): the estimate of a tile's fit, scaled
    tiling = dict(tile=64, overlap=16, tile_above=0, ensemble=1, **TINY)
    seen = []
    _, res = denoise(noisy, max_iters=6, patience=6, on_estimate=seen.append, **tiling)
    assert len(res.tiles) == 4 and seen == [res.estimate] and res.estimate.tiles == 4
    one = res.tiles[0].result.estimate  # the first tile's, times the rounds of tiles
    rounds = -(-4 // res.estimate.parallel)  # a tile per thread of torch's pool at a time
    assert res.estimate.parallel == min(4, torch.get_num_threads())
    assert res.estimate.seconds_high == pytest.approx(rounds * one.seconds_high)
    assert "per tile, 4 tiles" in res.estimate.line() and not res.stopped_by_budget
    _, res = denoise(noisy, max_iters=6, patience=6, max_minutes=1.0, **tiling)  # room for all
    assert all(t.result is not None and not t.result.stopped_by_budget for t in res.tiles)
    budget = 1.0 / 60  # a second for all four, where T = 20000 would take minutes
    _, res = denoise(noisy, max_iters=20000, patience=20000, max_minutes=budget, **tiling)
    assert res.stopped_by_budget and res.seconds < 5
    assert any("time budget" in n for n in res.notes)
    fitted = [t.result for t in res.tiles if t.result is not None]
    assert fitted and all(r.stopped_by_budget and r.iterations_run < 20000 for r in fitted)
    # shares of a second would cut every tile to a few iterations: the first round of tiles
    # (one per worker thread) had it all, and the others were not started
    first = [t.result for t in res.tiles[: res.estimate.parallel]]
    assert fitted == first and all(r.iterations_run > 5 for r in first)
    assert any(f"{4 - len(first)} of 4 tiles were not fitted" in n for n in res.notes)
    # a tile's share of the budget may be a few iterations: the estimate is still made, on
    # what they timed, and says how long the whole run would take without the budget
    est = res.estimate
    assert est is not None and est.seconds_low > 60 * budget and est.budget_seconds == 1.0
    assert est.line().endswith("the time budget of 1.0 s ends it first")


@pytest.mark.parametrize("crop, off", [(64, False), (56, False), (48, True), (256, True)])
def test_an_image_far_from_the_tables_size_says_its_expected_stop_is_carried_over(
    tmp_path, noisy, crop, off
):
    """The 64x64 image against tables calibrated at crop x crop: more than 1.5x away in pixels,
    the expected stop is the table's at another size (a whole photo ran 2.4x longer)."""
    entries = [{"sigma": s, "lam": 50.0, "mean_iterations": 5.0} for s in (10.0, 30.0)]
    path = tmp_path / "table.json"
    write_table(path, entries, {"width": 8, "patience": 2, "crop": crop}, {})
    _, res = denoise(noisy, sigma=20, width=8, max_iters=8, patience=2, table=str(path),
                     burn_in=0)
    assert res.estimate.expected_iterations == 5
    assert (", calibrated at another image size" in res.estimate.line()) == off
    assert any("not measured at this one" in n for n in res.notes) == off


@pytest.mark.parametrize("output", ["since-best", "raw", "ema@best"])
def test_a_whole_fit_cut_short_resumes_from_its_checkpoint_as_if_never_stopped(
    tmp_path, noisy, monkeypatch, output
):
    """With `resume_dir` a whole-image fit saves its state (network, criteria, the output
    policy's kept images) as it goes; cut short and run again with the same settings, it
    goes on from the last save and returns the image, t* and series of a fit never stopped.
    The checkpoint is deleted once the fit ends by its rule or T."""
    from dipstop import checkpoints
    from dipstop.runtime import Switches

    monkeypatch.setattr(checkpoints, "STATE_EVERY", 4)
    kw = dict(TINY, max_iters=40, patience=6, output=output, device="cpu", precision="fp32",
              tile=None, ensemble=1, switches=Switches(checkpoint_seconds=0.0))  # fmt: skip
    full, res_full = denoise(noisy, **kw)
    folder = tmp_path / "out.png.partial"
    cancel = threading.Event()
    _, cut = denoise(noisy, resume_dir=folder, cancel=cancel, on_estimate=lambda e: cancel.set(),
                     **kw)  # fmt: skip
    assert cut.interrupted and cut.iterations_run == 5 < res_full.iterations_run
    assert len(list(folder.glob("*.pt"))) == 1  # saved at t = 4
    out, res = denoise(noisy, resume_dir=folder, **kw)
    assert f"resumed at iteration 4 from {folder}" in " ".join(res.notes)
    np.testing.assert_array_equal(out, full)
    assert (res.stop_iteration, res.iterations_run) == (res_full.stop_iteration,
                                                        res_full.iterations_run)  # fmt: skip
    for key in ("mse", "jpeg_bytes", "criterion"):
        np.testing.assert_array_equal(res.series[key], res_full.series[key], err_msg=key)
    assert not list(folder.glob("*.pt"))
    _, other = denoise(noisy, resume_dir=folder, **{**kw, "seed": 1})  # another fit: not resumed
    assert not any("resumed" in n for n in other.notes)


def test_no_checkpoint_is_saved_once_the_rule_has_fired(noisy):
    """A checkpoint at t* + S would resume a fit past its stop: the loop saves none there."""
    from dipstop.policies import make_policy
    from dipstop.recording import OnlineStop

    class Every:  # a Checkpointer that keeps the iteration of each save
        state_every, saved = 1, []

        def resume(self, fitter, apply, series):
            return None

        def due(self):
            return True

        def save(self, fitter, series, seconds, **extra):
            self.saved.append((fitter["t"], sorted(extra)))

    class Flat(CifsCriterion):  # never beats its first value: the rule fires at t = 1 + S
        @classmethod
        def values(cls, series, context):
            return 1.0

    fitter = Fitter(torch.as_tensor(noisy).permute(2, 0, 1), FitSettings(width=8))
    stop = OnlineStop(Flat(), Context(64 * 64, 1.0), patience=3)
    ckpt = Every()
    rec = record(fitter, 50, [CifsCriterion()], stop=stop, policy=make_policy("since-best"),
                 checkpoint=ckpt)  # fmt: skip
    assert rec.stopper.done and rec.iterations == 4
    assert [t for t, _ in ckpt.saved] == [1, 2, 3]  # not at t* + S = 4
    assert all(keys == ["averages", "criteria", "policy"] for _, keys in ckpt.saved)
