"""`dipstop denoise` on several files and folders: outputs, skips, failures, Ctrl-C, Ray."""

from __future__ import annotations

import re
import shutil
import threading

import cv2
import numpy as np
import pytest
import torch

import dipstop.batch
from dipstop.cli import main
from dipstop.noise import add_gaussian_noise
from dipstop.options import DenoiseOptions

TINY = ["--width", "8", "-T", "3", "-S", "3", "--lam", "50", "--threads", "1"]


@pytest.fixture
def photos(tmp_path, smooth_rgb):
    """A folder of two noisy 64x64 images and a file that is not an image."""
    folder = tmp_path / "photos"
    folder.mkdir()
    noisy = np.rint(add_gaussian_noise(smooth_rgb / 255.0, 25, seed=0) * 255).astype(np.uint8)
    cv2.imwrite(str(folder / "a.png"), noisy[:, :, ::-1])
    cv2.imwrite(str(folder / "b.png"), noisy[::-1, :, ::-1])
    (folder / "bad.png").write_text("not a picture")
    return folder


def run(capsys, *argv):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def errors(err):
    return [line for line in err.splitlines() if line.startswith("dipstop: error:")]


def test_a_folder_writes_the_good_images_and_reports_the_bad_file_at_the_end(capsys, photos):
    rc, out, err = run(capsys, "denoise", photos, *TINY)
    assert rc == 2
    assert sorted(p.name for p in photos.iterdir()) == [
        "a.png",
        "a_dipstop.png",
        "b.png",
        "b_dipstop.png",
        "bad.png",
    ]
    assert cv2.imread(str(photos / "a_dipstop.png")).shape == (64, 64, 3)
    (line,) = errors(err)  # one line for the one failed file, naming it and why
    assert line.startswith(f"dipstop: error: {photos / 'bad.png'}: ") and "not an image" in line
    assert "2 denoised, 0 skipped (output exists), 1 failed" in out


def test_a_rerun_skips_existing_outputs_and_overwrite_redoes_them(capsys, photos):
    run(capsys, "denoise", photos, *TINY)
    outputs = [photos / "a_dipstop.png", photos / "b_dipstop.png"]
    before = [p.stat().st_mtime_ns for p in outputs]
    rc, out, err = run(capsys, "denoise", photos, *TINY)
    assert rc == 2 and [p.stat().st_mtime_ns for p in outputs] == before
    assert out.count("skipping") == 2 and "0 denoised, 2 skipped" in out
    assert len(errors(err)) == 1  # the bad file is tried again, and fails again
    rc, out, err = run(capsys, "denoise", photos, *TINY, "--overwrite")
    assert rc == 2 and "2 denoised, 0 skipped" in out
    assert all(p.stat().st_mtime_ns > t for p, t in zip(outputs, before, strict=True))


def test_only_good_files_exit_0_into_a_new_output_folder_with_a_report_each(
    capsys, photos, tmp_path
):
    out_dir, reports = tmp_path / "new" / "out", tmp_path / "reports"
    args = [photos / "a.png", photos / "b.png", "-o", out_dir, "--report", reports, "--quiet"]
    one_fit = ["--ensemble", "1"]  # one fit a photo: its series and curves in its report
    rc, out, err = run(capsys, "denoise", *args, *TINY, *one_fit, "--threads", "2")  # in threads
    assert rc == 0 and out == "" and err == ""
    assert sorted(p.name for p in out_dir.iterdir()) == ["a_dipstop.png", "b_dipstop.png"]
    assert sorted(p.name for p in reports.iterdir()) == ["a", "b"]
    for name in ("summary.json", "curves.png", "before_after.png"):
        assert all((reports / n / name).stat().st_size > 0 for n in "ab"), name


@pytest.mark.parametrize("target", ["out.png", "existing.txt"])
def test_several_inputs_with_an_output_file_fail_before_any_fitting(
    capsys, photos, monkeypatch, target
):
    def no_fitting(*args, **kwargs):
        raise AssertionError("fitted before the error")

    monkeypatch.setattr(dipstop.batch, "denoise", no_fitting)
    (photos.parent / "existing.txt").write_text("a file")
    rc, out, err = run(
        capsys, "denoise", photos / "a.png", photos / "b.png", "-o", photos.parent / target
    )
    assert rc == 2 and err.count("\n") == 1 and "give -o a folder" in errors(err)[0]
    assert out == "" and not (photos / "a_dipstop.png").exists()


def test_inputs_that_would_write_the_same_output_fail_before_any_fitting(capsys, photos):
    cv2.imwrite(str(photos / "a.jpg"), cv2.imread(str(photos / "a.png")))
    rc, out, err = run(capsys, "denoise", photos, *TINY)
    assert rc == 2 and "would both write" in errors(err)[0] and err.count("\n") == 1
    assert not (photos / "a_dipstop.png").exists()


def test_ctrl_c_ends_the_batch_keeping_the_finished_outputs(capsys, photos, monkeypatch):
    real, calls = dipstop.batch.denoise, []

    def ctrl_c_on_the_second_file(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(dipstop.batch, "denoise", ctrl_c_on_the_second_file)
    rc, out, err = run(capsys, "denoise", photos, *TINY)
    assert rc == 130 and len(calls) == 2  # the third file was not started
    assert (photos / "a_dipstop.png").is_file() and not (photos / "b_dipstop.png").exists()
    assert "1 denoised" in out and "interrupted" in err and "finished outputs are kept" in err


def test_ray_tasks_write_the_same_pixels_as_in_process(capsys, photos, tmp_path):
    ray = pytest.importorskip("ray")
    longer = [*TINY, "-T", "20", "-S", "20"]  # enough steps for float sums to show in the pixels
    rc, _, _ = run(capsys, "denoise", photos, "-o", tmp_path / "local", *longer)
    assert rc == 2
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rc, out, err = run(capsys, "denoise", photos, "-o", tmp_path / "ray", "--ray", *longer)
        one = tmp_path / "one.png"  # one file keeps -o as a file, as one Ray task
        assert run(capsys, "denoise", photos / "a.png", "-o", one, "--ray", *longer)[0] == 0
    finally:
        ray.shutdown()
    assert rc == 2 and len(errors(err)) == 1 and "bad.png" in errors(err)[0]
    assert "2 denoised, 0 skipped (output exists), 1 failed" in out
    ray_out = tmp_path / "ray"  # what the tasks wrote: their outputs, nothing else
    assert sorted(p.name for p in ray_out.iterdir()) == ["a_dipstop.png", "b_dipstop.png"]
    for name in ("a_dipstop.png", "b_dipstop.png"):
        local = cv2.imread(str(tmp_path / "local" / name), cv2.IMREAD_UNCHANGED)
        remote = cv2.imread(str(ray_out / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(remote, local, err_msg=name)
    single = cv2.imread(str(one), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(single, cv2.imread(str(ray_out / "a_dipstop.png"), -1))


def test_a_tiled_photo_cut_short_keeps_its_tiles_and_a_rerun_completes_it(capsys, tmp_path):
    """A photo cut short by its budget is written with a note, its tiles folder kept beside
    the output (empty here: no tile was done, and the note says so); a folder run does not
    skip an output whose tiles folder is there (it was cut short): it completes it and
    removes the folder, and then skips it as any other."""
    rng = np.random.default_rng(5)
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "big.png"), rng.integers(0, 256, (100, 140, 3), dtype=np.uint8))
    tiles = photos / "big_dipstop.png.partial"
    tiled = ["--tile", "64", "--overlap", "16", "--tile-above", "0", "--width", "8", "--lam", "50"]
    rc, out, err = run(capsys, "denoise", photos, *tiled, "-T", "100000", "-S", "100000",
                       "--max-minutes", "0.002")  # fmt: skip
    assert rc == 0 and (photos / "big_dipstop.png").exists() and tiles.is_dir()
    assert "progress is kept" not in out + err and "the same command starts it over" in out
    rc, out, err = run(capsys, "denoise", photos, *tiled, "-T", "3", "-S", "3")
    assert rc == 0 and "1 denoised, 0 skipped" in out and not tiles.exists()
    rc, out, err = run(capsys, "denoise", photos, *tiled, "-T", "3", "-S", "3")
    assert rc == 0 and "0 denoised, 1 skipped" in out


def test_a_damaged_kept_tile_is_one_warning_line_and_fitted_again(capsys, tmp_path):
    src = tmp_path / "photo.png"
    cv2.imwrite(str(src), np.random.default_rng(7).integers(0, 256, (100, 140, 3), np.uint8))
    partial = tmp_path / "photo_dipstop.png.partial"
    partial.mkdir()
    (partial / "tile_000000_seed0.pt").write_bytes(b"junk")
    rc, out, err = run(
        capsys,
        "denoise",
        src,
        "--tile",
        "64",
        "--overlap",
        "16",
        "--tile-above",
        "0",
        "--width",
        "8",
        "-T",
        "3",
        "-S",
        "3",
        "--lam",
        "50",
        "--ensemble",
        "1",
    )
    (line,) = [line for line in err.splitlines() if "ignoring kept tile" in line]
    head = f"dipstop: warning: ignoring kept tile {partial / 'tile_000000_seed0.pt'} (unreadable: "
    assert rc == 0 and line.startswith(head) and line.endswith("); it is fitted again")
    assert "6 of 6 tiles" in out and "Warning" not in err and not partial.exists()


def test_a_whole_photo_cut_short_keeps_its_checkpoint_and_the_same_command_resumes_it(
    capsys, tmp_path, monkeypatch
):
    """A photo fitted whole and cut short by its budget keeps a checkpoint of its fit in
    OUTPUT.partial; the same command goes on from it (a fresh budget) and says so."""
    from dipstop import checkpoints

    monkeypatch.setattr(checkpoints, "STATE_EVERY", 2)
    monkeypatch.setenv("DIPSTOP_CHECKPOINT_SECONDS", "0")
    src = tmp_path / "photo.png"
    cv2.imwrite(str(src), np.random.default_rng(6).integers(0, 256, (48, 48, 3), np.uint8))
    partial = tmp_path / "photo_dipstop.png.partial"
    args = ["denoise", src, "--tile", "0", "--width", "8", "--lam", "50", "-T", "100000",
            "-S", "100000", "--precision", "fp32", "--max-minutes", "0.1",
            "--threads", "1", "--ensemble", "1"]  # fmt: skip
    rc, out, err = run(capsys, *args)
    assert rc == 0 and (tmp_path / "photo_dipstop.png").exists()
    assert len(list(partial.glob("*.pt"))) == 1, out + err
    assert f"its progress is kept in {partial}: the same command resumes it" in out
    first = int(re.search(r"after (\d+) iterations", out).group(1))
    rc, out, err = run(capsys, *args)
    assert rc == 0 and f"resumed at iteration {first - first % 2}" in out
    assert int(re.search(r"after (\d+) iterations", out).group(1)) > first


def test_in_process_files_run_one_per_thread_with_the_pixels_of_one_at_a_time(
    capsys, photos, tmp_path, monkeypatch
):
    real, threads = dipstop.batch.denoise, set()

    def spy(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(dipstop.batch, "denoise", spy)
    longer = [*TINY, "-T", "20", "-S", "20"]  # enough steps for float sums to show in the pixels
    rc, _, _ = run(capsys, "denoise", photos, "-o", tmp_path / "one", *longer)
    assert rc == 2 and threads == {"MainThread"}
    threads.clear()
    rc, out, err = run(capsys, "denoise", photos, "-o", tmp_path / "two", *longer, "--threads", "2")
    assert rc == 2 and len(threads) == 2 and all(t.startswith("dipstop-file") for t in threads)
    assert "denoising 3 files, 2 at a time" in out
    assert "dipstop: estimate for a.png: " in err and "dipstop: estimate for b.png: " in err
    assert "2 denoised, 0 skipped (output exists), 1 failed" in out
    assert len(errors(err)) == 1 and "bad.png" in errors(err)[0]
    for name in ("a_dipstop.png", "b_dipstop.png"):  # each a 1-thread fit, as with --threads 1
        one = cv2.imread(str(tmp_path / "one" / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "two" / name), -1), one)
    assert torch.get_num_threads() == 2  # the pool's threads set back after the batch


def test_closing_a_threaded_batch_ends_the_running_fits_without_writing_them(
    photos, tmp_path, monkeypatch
):
    shutil.copy(photos / "b.png", photos / "c.png")
    a = cv2.imread(str(photos / "a.png"))[:, :, ::-1]
    real, results = dipstop.batch.denoise, {}

    def quick_a(image, options, **kwargs):  # a is done in 3 steps; the others would run 5000
        quick = np.array_equal(image, a)
        out, result = real(image, options.replace(max_iters=3 if quick else 5000), **kwargs)
        results[len(results)] = result
        return out, result

    monkeypatch.setattr(dipstop.batch, "denoise", quick_a)
    todo, _ = dipstop.batch.prepare_batch([photos / n for n in ("a.png", "b.png", "c.png")])
    fit = DenoiseOptions(width=8, lam=50.0, patience=5000, device="cpu", ensemble=1)
    outcomes = dipstop.batch.run_jobs(todo, fit, workers=2)
    job, result, error = next(outcomes)
    assert error is None and result.iterations_run == 3
    outcomes.close()
    written = sorted(p.name for p in photos.glob("*_dipstop.png"))
    assert written == [job.dst.name]  # the fits still running ended, and wrote nothing
    stopped = [r for r in results.values() if r is not result]
    assert stopped and all(r.interrupted and r.iterations_run < 5000 for r in stopped)
