"""End to end: the API and the CLI give the whole image back, denoised, in its own format."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dipstop.api import denoise
from dipstop.cli import main
from dipstop.errors import DipstopError
from dipstop.metrics import psnr
from dipstop.noise import add_gaussian_noise
from dipstop.results import DenoiseResult, TiledResult

QUICK = dict(width=8, max_iters=4, patience=2, lam=50.0)
QUICK_CLI = ["--width", "8", "-T", "3", "-S", "2", "--lam", "50", "--quiet"]


def test_tiny_denoise_raises_psnr_over_the_noisy_input(smooth_rgb):
    noisy = np.rint(add_gaussian_noise(smooth_rgb / 255, 50, seed=0) * 255).astype(np.uint8)
    out, res = denoise(noisy, clean=smooth_rgb, width=16, max_iters=400, patience=50, lam=30.0)
    before, after = psnr(noisy / 255, smooth_rgb / 255), psnr(out / 255, smooth_rgb / 255)
    assert after > before + 2.0, (before, after)
    assert res.psnr == pytest.approx(after, abs=0.05)  # the PSNR of the returned image
    # by default an image of one tile is one fit of the whole image (seed 0), stopped by its
    # rule
    assert isinstance(res, DenoiseResult) and res.settings["seed"] == 0
    expected_run = res.stop_iteration + 50 if res.stopped_early else 400
    assert res.iterations_run == expected_run
    assert res.series["criterion"][res.stop_iteration - 1] == res.series["criterion"].min()
    split = res.time_split  # where the time went: every part timed, the network the most
    assert sum(split.values()) == pytest.approx(res.seconds, rel=1e-6)
    assert min(split.values()) >= 0 and max(split, key=split.get) == "network"
    _, two = denoise(noisy, width=16, max_iters=40, patience=5, lam=30.0, ensemble=2)
    assert isinstance(two, TiledResult) and [t.result.settings["seed"] for t in two.tiles] == [
        0, 1,
    ]  # fmt: skip
    assert all((t.top, t.left, t.height, t.width) == (0, 0, 64, 64) for t in two.tiles)


def test_gray_uint8_comes_back_gray_uint8(smooth_rgb):
    gray = cv2.cvtColor(smooth_rgb, cv2.COLOR_RGB2GRAY)[:, :50]
    out, res = denoise(gray, **QUICK)
    assert out.shape == (64, 50) and out.dtype == np.uint8
    # by default one fit of the whole image, at the run's width and lam
    assert isinstance(res, DenoiseResult) and res.settings["width"] == 8
    assert res.paper_lambda == pytest.approx(50.0 * 64 * 50)


def test_rgba_alpha_is_passed_through_untouched(smooth_rgb):
    alpha = np.random.default_rng(0).integers(0, 256, (64, 64, 1), dtype=np.uint8)
    rgba = np.concatenate([smooth_rgb, alpha], axis=2)
    out, _ = denoise(rgba, **QUICK)
    assert out.shape == (64, 64, 4) and np.array_equal(out[:, :, 3], alpha[:, :, 0])


def test_pil_in_pil_out_and_tensor_in_tensor_out(smooth_rgb):
    out, _ = denoise(Image.fromarray(smooth_rgb), **QUICK)
    assert isinstance(out, Image.Image) and out.size == (64, 64) and out.mode == "RGB"
    t = torch.from_numpy(smooth_rgb).permute(2, 0, 1).float().unsqueeze(0) / 255
    out_t, _ = denoise(t, **QUICK)
    assert isinstance(out_t, torch.Tensor) and out_t.shape == t.shape
    assert float(out_t.min()) >= 0 and float(out_t.max()) <= 1


@pytest.mark.parametrize("ext", [".png", ".tiff"])
def test_16_bit_gray_and_rgba_keep_their_depth_and_channels(tmp_path, smooth_rgb, ext):
    rgb16 = cv2.resize(smooth_rgb, (70, 48)).astype(np.uint16) * 257
    gray16 = rgb16[:, :, 1]
    alpha16 = np.random.default_rng(0).integers(0, 65536, (48, 70, 1), dtype=np.uint16)
    bgra16 = np.concatenate([rgb16[:, :, ::-1], alpha16], axis=2)
    for name, img in (("gray", gray16), ("bgra", bgra16)):
        src, dst = tmp_path / f"{name}{ext}", tmp_path / f"{name}_out{ext}"
        cv2.imwrite(str(src), img)
        assert main(["denoise", str(src), "-o", str(dst), *QUICK_CLI]) == 0
        back = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
        assert back.dtype == np.uint16 and back.shape == img.shape
        if name == "bgra":
            assert np.array_equal(back[:, :, 3], alpha16[:, :, 0])


def test_cli_keeps_16_bit_depth_and_writes_a_report(tmp_path, smooth_rgb):
    src = tmp_path / "in16.png"
    img16 = (cv2.resize(smooth_rgb, (70, 48)).astype(np.uint16) * 257)[:, :, ::-1]
    cv2.imwrite(str(src), img16)
    dst, report = tmp_path / "out.png", tmp_path / "rep"
    extra = ["--clean", str(src), "--report", str(report)]
    one = ["--ensemble", "1"]  # one fit's report: its series and curves
    rc = main(["denoise", str(src), "-o", str(dst), *QUICK_CLI, "-T", "6", *one, *extra])
    assert rc == 0
    back = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape == (48, 70, 3)
    header = (report / "series.csv").read_text().splitlines()[0]
    assert header == "iteration,mse,jpeg_bytes,psnr,criterion,seconds"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["lam"] == 50.0 and summary["iterations_run"] <= 6
    assert (report / "curves.png").stat().st_size > 10_000
    # the returned image's PSNR (here against the input itself), and the three-panel picture
    assert summary["psnr"] == pytest.approx(psnr(back / 65535, img16 / 65535), abs=0.01)
    with Image.open(report / "before_after.png") as pic:
        assert pic.width > 2.5 * pic.height  # noisy | denoised | clean side by side


def test_cli_reads_jpeg_input(tmp_path, smooth_rgb):
    src = tmp_path / "in.jpg"
    cv2.imwrite(str(src), smooth_rgb)
    rc = main(["denoise", str(src), *QUICK_CLI])
    assert rc == 0
    out = cv2.imread(str(tmp_path / "in_dipstop.png"))
    assert out.shape == (64, 64, 3)


@pytest.mark.parametrize("n_runs, provisional", [(2, True), (3, True), (4, False), (8, False)])
def test_a_thin_lambda_table_is_reported_as_provisional(tmp_path, smooth_rgb, n_runs, provisional):
    from dipstop.lambda_table import write_table

    table = tmp_path / "t.json"
    write_table(table, [{"sigma": 20, "lam": 60.0, "n_runs": n_runs}], {"width": 8}, {})
    _, res = denoise(smooth_rgb, width=8, max_iters=3, patience=2, sigma=25, table=str(table))
    assert res.lam == pytest.approx(60.0)
    assert any("provisional" in n for n in res.notes) == provisional
    assert not any("width" in n for n in res.notes)  # table width matches the run's


def _ctrl_c_at_psnr_call(monkeypatch, n):
    """Make the n-th PSNR of the series raise KeyboardInterrupt, as Ctrl-C would mid-fit.

    PSNR is taken as each step is produced, 2 steps ahead of the rows handed out (the
    scoring overlap), so the interrupt at iteration n leaves n - 3 rows recorded.
    """
    import dipstop.recording

    real, calls = dipstop.recording.psnr, []

    def psnr_then_ctrl_c(a, b):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(a, b)

    monkeypatch.setattr(dipstop.recording, "psnr", psnr_then_ctrl_c)


def test_ctrl_c_returns_the_best_output_so_far_when_interruptible(monkeypatch, smooth_rgb):
    noisy = add_gaussian_noise(smooth_rgb / 255, 25, seed=0)  # float in [0, 1]
    kwargs = dict(width=8, max_iters=40, patience=40, lam=50.0, clean=smooth_rgb, ensemble=1)
    _, whole = denoise(noisy, **kwargs)
    _ctrl_c_at_psnr_call(monkeypatch, 13)
    out, res = denoise(noisy, interruptible=True, **kwargs)
    assert res.interrupted and not res.stopped_early and res.iterations_run == 10
    assert all(len(v) == 10 for v in res.series.values())  # rows not yet scored are dropped
    best = int(np.argmin(whole.series["criterion"][:10])) + 1
    assert res.stop_iteration == best and "interrupted after 10" in res.notes[-1]
    assert out.shape == noisy.shape  # the same fit up to the interrupt: the same PSNR at t*
    assert res.fit_psnr == pytest.approx(whole.series["psnr"][best - 1])  # before the filter
    _ctrl_c_at_psnr_call(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):  # the Python API's default: Ctrl-C is Ctrl-C
        denoise(noisy, **kwargs)


def test_cli_ctrl_c_writes_the_best_so_far_and_exits_130(tmp_path, monkeypatch, smooth_rgb, capsys):
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    noisy = add_gaussian_noise(smooth_rgb / 255, 25, seed=0)
    cv2.imwrite(str(src), np.rint(noisy * 255).astype(np.uint8)[:, :, ::-1])
    _ctrl_c_at_psnr_call(monkeypatch, 8)
    args = ["--width", "8", "-T", "30", "-S", "30", "--lam", "50", "--clean", str(src),
            "--ensemble", "1"]  # fmt: skip
    rc = main(["denoise", str(src), "-o", str(dst), *args])
    assert rc == 130 and cv2.imread(str(dst)).shape == smooth_rgb.shape
    assert "interrupted after 5 iterations; returned the best so far" in capsys.readouterr().out


@pytest.mark.parametrize("policy", ["raw", "ema@stop", "ema@best", "since-best", "box100@stop"])
def test_each_output_policy_returns_the_image_its_recorded_psnr_says(policy, smooth_rgb):
    """The image a policy returns has the PSNR the policy reads off the recorded series
    (what offline comparisons of policies rely on)."""
    from dipstop.policies import make_policy

    noisy = add_gaussian_noise(smooth_rgb / 255, 25, seed=1)
    out, res = denoise(  # one fit (ensemble=1): its series and t* say which image it returns
        noisy, clean=smooth_rgb / 255, width=8, max_iters=60, patience=10, lam=30.0, output=policy,
        ensemble=1, wiener=False,  # the policy's own image, not the filter's
    )  # fmt: skip
    p = make_policy(policy)
    t_end = res.iterations_run
    # the loop recorded this policy's averages, and a box of S + 1 for "since-best"
    if policy == "since-best":
        expected = None
    else:
        expected = p.recorded_psnr(res.series, res.stop_iteration, t_end)
    got = psnr(out, smooth_rgb / 255)
    if expected is not None:
        assert got == pytest.approx(expected, abs=1e-4)
    assert res.settings["output"] == policy
    if policy == "ema@best":  # the stop scored the average: its criterion's minimum is t*
        assert res.series["criterion"][res.stop_iteration - 1] == res.series["criterion"].min()
        assert "mse_ema" in res.series and "jpeg_bytes_ema" in res.series


def test_bf16_precision_runs_the_forward_pass_in_bfloat16(smooth_rgb):
    # y_1, the untrained network's output on the unperturbed z: the same weights and input,
    # only the arithmetic differs (later iterates drift apart as any two fits do, and the
    # perturbations of z are drawn in the activations' layout; docs/benchmarks.md compares
    # the PSNR the two reach)
    first = {p: denoise(smooth_rgb, precision=p, width=16, max_iters=1, patience=1, lam=50.0,
                        output="raw", z_noise_std=0.0) for p in ("fp32", "bf16")}  # fmt: skip
    (out32, res32), (out16, res16) = first["fp32"], first["bf16"]
    assert res32.settings["precision"] == "fp32" and res16.settings["precision"] == "bf16"
    assert not np.array_equal(out32, out16)
    assert psnr(out16 / 255, out32 / 255) > 35.0


@pytest.mark.parametrize("amx", [True, False])
def test_auto_precision_is_bf16_on_an_amx_cpu_but_never_for_the_papers_rule(
    monkeypatch, smooth_rgb, amx
):
    monkeypatch.setattr("dipstop.fitting.amx_cpu", lambda: amx)
    _, default = denoise(smooth_rgb, device="cpu", **QUICK)
    _, paper = denoise(smooth_rgb, device="cpu", output="raw", **QUICK)
    assert default.settings["precision"] == ("bf16" if amx else "fp32")
    assert paper.settings["precision"] == "fp32"


def test_an_unknown_precision_is_refused_with_the_choices(smooth_rgb):
    with pytest.raises(DipstopError, match="precision must be 'auto', 'fp32' or 'bf16'"):
        denoise(smooth_rgb, precision="fp16", **QUICK)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cli_says_which_precision_the_fit_ran_in(tmp_path, smooth_rgb, capsys, precision):
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), smooth_rgb)
    # the default's one fit's line in bf16; two fits' (the TiledResult line) in fp32
    fits = ["--ensemble", "2"] if precision == "fp32" else []
    quick = [a for a in QUICK_CLI if a != "--quiet"] + fits
    assert main(["denoise", str(src), *quick, "--precision", precision]) == 0
    out = capsys.readouterr().out
    assert f" s in {precision} -> " in out or f" CPU s) in {precision} -> " in out


def test_a_burn_in_holds_t_star_past_an_early_minimum_and_averages_from_there(smooth_rgb):
    """With a small lam the criterion's minimum comes in the first iterations (t* = 12
    here); a burn-in B = 60 moves t* past B, and the since-best image is the mean of the
    S + 1 outputs from the new t* (here the same as box100@stop's), none from before."""
    noisy = add_gaussian_noise(smooth_rgb / 255, 50, seed=1)
    run = dict(width=8, max_iters=400, patience=99, lam=3.0, ensemble=1, wiener=False)
    _, early = denoise(noisy, burn_in=0, **run)
    out, res = denoise(noisy, clean=smooth_rgb / 255, burn_in=60, **run)
    assert early.stop_iteration <= 60 < res.stop_iteration
    crit = res.series["criterion"]
    assert res.stop_iteration - 1 == 60 + int(np.argmin(crit[60:]))
    assert res.iterations_run == res.stop_iteration + 99 and res.settings["burn_in"] == 60
    box, _ = denoise(noisy, burn_in=60, output="box100@stop", **run)
    np.testing.assert_array_equal(out, box)


def test_a_run_that_ends_within_its_burn_in_returns_its_best_so_far(smooth_rgb):
    """The default's burn-in (B = 100) outlasts a 30-iteration run: t* is then the
    criterion's minimum over the run, its image the average since then, as a run without
    a burn-in that never stopped returns; not an empty result."""
    noisy = add_gaussian_noise(smooth_rgb / 255, 25, seed=1)
    run = dict(width=8, max_iters=30, patience=40, ensemble=1, wiener=False)
    out, res = denoise(noisy, **run)
    assert res.settings["burn_in"] == 100 and not res.stopped_early
    assert res.stop_iteration == int(np.argmin(res.series["criterion"])) + 1
    plain, _ = denoise(noisy, burn_in=0, **run)
    np.testing.assert_array_equal(out, plain)
