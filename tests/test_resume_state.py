"""Resumable state under stress: special input files, damaged or stale kept state, two runs
on one output, huge T, and the messages a batch and a cut-short run give."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import warnings

import cv2
import numpy as np
import pytest
import torch
from filelock import FileLock

from dipstop import checkpoints
from dipstop.api import denoise
from dipstop.cli import main
from dipstop.errors import DipstopError
from dipstop.fitting import FitSettings, Fitter
from dipstop.lambda_table import load_table
from dipstop.recording import record
from dipstop.tile_store import TileStore

TINY = ["--width", "8", "-T", "3", "-S", "3", "--lam", "50", "--threads", "1"]
TILED = dict(tile=64, overlap=16, tile_above=0, width=8, max_iters=4, patience=2, device="cpu")


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


def noisy_png(path, seed=0, shape=(48, 48, 3)):
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, shape, np.uint8))
    return path


# --- special files ------------------------------------------------------------------------


def test_a_fifo_among_a_batchs_inputs_is_a_bad_file_and_the_others_are_denoised(capsys, tmp_path):
    """Planning a batch sizes each input; a FIFO must not be opened (it would wait for a
    writer forever): it fails as any non-image does, reported at the end."""
    a, b = noisy_png(tmp_path / "a.png", 1), noisy_png(tmp_path / "b.png", 2)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    outcome = {}
    worker = threading.Thread(
        target=lambda: outcome.update(r=run(capsys, "denoise", a, fifo, b, *TINY)), daemon=True
    )
    worker.start()
    worker.join(timeout=120)
    if worker.is_alive():  # hung on the FIFO: give it a writer so the thread can end
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        worker.join(timeout=60)
        pytest.fail("the batch hung on the FIFO")
    rc, out, err = outcome["r"]
    assert rc == 2 and (tmp_path / "a_dipstop.png").is_file()
    assert (tmp_path / "b_dipstop.png").is_file()
    (line,) = errors(err)
    assert line.startswith(f"dipstop: error: {fifo}: ") and "not a regular file" in line
    assert "2 denoised, 0 skipped (output exists), 1 failed" in out


# --- damaged or stale resume state --------------------------------------------------------


@pytest.mark.parametrize("manifest", ["[1, 2]", '"key"', '{"key": "ab', "\x00\xff"])
def test_a_damaged_manifest_of_an_earlier_version_neither_breaks_nor_blocks_a_run(
    tmp_path, manifest
):
    """Kept tiles carry their run's key; a run.json left by an earlier version, whatever
    it holds, is not read."""
    noisy = np.random.default_rng(4).random((100, 100, 3)).astype(np.float32)
    folder = tmp_path / "photo.png.partial"
    folder.mkdir()
    (folder / "run.json").write_text(manifest)
    first, res = denoise(noisy, sigma=25.0, resume_dir=folder, **TILED)
    # 4 tiles of 64 px, each fitted once by default: 4 fits kept
    assert res.members == 1 and len(list(folder.glob("tile_*.pt"))) == len(res.tiles) == 4
    again, res = denoise(noisy, sigma=25.0, resume_dir=folder, **TILED)
    assert "resumed 4 of 4 tiles" in " ".join(res.notes) and np.array_equal(again, first)


def _table(path, scale):
    """The shipped table of the default output, every lam times `scale`, at `path`."""
    table = load_table(output="since-best")
    for entry in table["entries"]:
        entry["lam"] *= scale
    path.write_text(json.dumps(table))
    return str(path)


def test_kept_tiles_fitted_with_another_lam_table_content_are_not_reused(tmp_path):
    """The table's path is the same, its content (and so the lam) changed: the kept tiles
    are of another run, refitted with the new lam, as a fresh run is."""
    noisy = np.random.default_rng(4).random((100, 100, 3)).astype(np.float32)
    folder, table = tmp_path / "photo.png.partial", tmp_path / "table.json"
    kw = dict(sigma=25.0, table=_table(table, 1.0), **TILED)
    _, old = denoise(noisy, resume_dir=folder, **kw)
    _table(table, 40.0)
    fresh, new = denoise(noisy, **kw)
    again, res = denoise(noisy, resume_dir=folder, **kw)
    assert new.lam == pytest.approx(40 * old.lam) and res.lam == new.lam
    assert not any("resumed" in n for n in res.notes)
    assert np.array_equal(again, fresh)
    assert all(t.result.lam == new.lam for t in res.tiles)


def test_kept_tiles_of_another_run_or_version_are_deleted_and_refitted(tmp_path):
    out = np.zeros((2, 2, 1), np.float32)
    from dipstop.api import DenoiseResult

    r = DenoiseResult(3, 5, True, 25.0, True, 40.0, 1.0, {}, {"mse": np.ones(5)}, 1.0)
    TileStore(tmp_path, "a").save("000000_seed0", out, r)
    old_version = tmp_path / "tile_000001_seed0.pt"  # no key: written by an earlier dipstop
    torch.save({"out": torch.zeros(2, 2, 1), "result": r.state()}, old_version)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # another run's tiles are no news: no warning
        assert TileStore(tmp_path, "b").load({"000000_seed0": (2, 2, 1),
                                              "000001_seed0": (2, 2, 1)}) == {}  # fmt: skip
    assert not list(tmp_path.glob("tile_*"))


def test_kept_fits_of_this_run_that_it_does_not_ask_for_are_left_for_a_run_that_does(tmp_path):
    """Another seed of the same settings (kept by a run with more fits a tile) is neither
    read nor deleted; one asked for but of another shape is deleted with a warning."""
    from dipstop.api import DenoiseResult

    r = DenoiseResult(3, 5, True, 25.0, True, 40.0, 1.0, {}, {"mse": np.ones(5)}, 1.0)
    store = TileStore(tmp_path, "a")
    for name in ("000000_seed0", "000000_seed1", "000000_seed2"):
        store.save(name, np.zeros((2, 2, 1), np.float32), r)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(TileStore(tmp_path, "a").load({"000000_seed0": (2, 2, 1)})) == ["000000_seed0"]
    assert len(list(tmp_path.glob("tile_*"))) == 3
    with pytest.warns(UserWarning, match=r"tile_000000_seed1.pt \(not of this run: ValueError"):
        assert TileStore(tmp_path, "a").load({"000000_seed1": (3, 2, 1)}) == {}
    assert sorted(p.name for p in tmp_path.glob("tile_*")) == [
        "tile_000000_seed0.pt", "tile_000000_seed2.pt"]  # fmt: skip


def test_a_tile_that_cannot_be_kept_warns_and_the_run_goes_on(tmp_path):
    """The folder gone (another process removed it) or a full disk: a warning, not a
    traceback; the tile is fitted again by a rerun."""
    from dipstop.api import DenoiseResult

    store = TileStore(tmp_path / "gone", "a")
    shutil.rmtree(tmp_path / "gone")
    (tmp_path / "gone").write_text("a file where the folder was")
    r = DenoiseResult(3, 5, True, 25.0, True, 40.0, 1.0, {}, {"mse": np.ones(5)}, 1.0)
    with pytest.warns(UserWarning, match=r"could not keep tile .*tile_000000_seed0.pt"):
        store.save("000000_seed0", np.zeros((2, 2, 1), np.float32), r)


def test_state_is_written_under_a_temporary_name_of_this_process_and_thread(tmp_path, monkeypatch):
    """Two runs (or two fits in threads of one) never write the same temporary file."""
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(str(a)), real(a, b)))
    names = []

    both = threading.Barrier(2)  # both threads alive while they write: distinct thread ids

    def write():
        both.wait()
        checkpoints.write_atomically(tmp_path / "x.pt", lambda tmp: tmp.write_bytes(b"x"))
        both.wait()

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = {os.path.basename(s) for s in seen}
    assert len(names) == 2 and all(str(os.getpid()) in n for n in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]


# --- two runs on one output ---------------------------------------------------------------


def test_a_second_run_on_an_output_being_written_is_refused_in_one_line(capsys, tmp_path):
    src = noisy_png(tmp_path / "photo.png")
    dst = tmp_path / "photo_dipstop.png"
    lock = tmp_path / "photo_dipstop.png.lock"
    with FileLock(lock, timeout=0):  # the other run
        rc, out, err = run(capsys, "denoise", src, "-o", dst, *TINY)
        assert rc == 2 and not dst.exists() and lock.exists()
        (line,) = err.splitlines()
        assert line == (
            f"dipstop: error: another dipstop run is writing {dst} (lock {lock}); wait for it "
            "or choose another -o"
        )
    rc, out, err = run(capsys, "denoise", src, "-o", dst, *TINY)
    assert rc == 0 and dst.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png", "photo_dipstop.png"]


def test_a_batch_reports_an_output_another_run_writes_and_does_the_others(capsys, tmp_path):
    a, b = noisy_png(tmp_path / "a.png", 1), noisy_png(tmp_path / "b.png", 2)
    with FileLock(tmp_path / "b_dipstop.png.lock", timeout=0):
        rc, out, err = run(capsys, "denoise", a, b, *TINY)
    assert rc == 2 and (tmp_path / "a_dipstop.png").is_file()
    (line,) = errors(err)
    assert "another dipstop run is writing" in line and not (tmp_path / "b_dipstop.png").exists()
    assert not (tmp_path / "a_dipstop.png.lock").exists()


def test_the_python_api_refuses_a_resume_folder_another_run_keeps_tiles_in(tmp_path):
    noisy = np.random.default_rng(4).random((100, 100, 3)).astype(np.float32)
    folder = tmp_path / "tiles"
    busy = "another dipstop run is keeping its tiles in"
    with FileLock(f"{folder}.lock", timeout=0), pytest.raises(DipstopError, match=busy):
        denoise(noisy, sigma=25.0, resume_dir=folder, **TILED)
    assert not folder.exists()
    denoise(noisy, sigma=25.0, resume_dir=folder, **TILED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiles"]


# --- huge T -------------------------------------------------------------------------------


def test_a_huge_t_costs_nothing_until_it_is_run():
    fitter = Fitter(torch.rand(3, 32, 32), FitSettings(width=4))
    stop = threading.Event()

    def on_row(it, row):
        if it.t == 5:
            stop.set()

    rec = record(fitter, 10**12, on_row=on_row, cancel=stop)
    assert rec.iterations == 5 and all(len(v) == 5 for v in rec.series.values())


def test_series_grow_past_their_first_size_with_every_value_kept(monkeypatch):
    from dipstop import recording

    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(recording._Series, "START", 2)
    grown = record(Fitter(image, FitSettings(width=4)), 9).series
    monkeypatch.setattr(recording._Series, "START", 1024)
    whole = record(Fitter(image, FitSettings(width=4)), 9).series
    assert grown.keys() == whole.keys()
    assert np.array_equal(grown["mse"], whole["mse"]) and len(grown["mse"]) == 9


def test_the_cli_with_a_huge_t_ends_on_its_budget(capsys, tmp_path):
    src = noisy_png(tmp_path / "photo.png")
    rc, out, err = run(capsys, "denoise", src, "--tile", "0", "--ensemble", "1", "--width", "4",
                       "--lam", "50", "-T", str(10**12), "--max-minutes", "0.005",
                       "--threads", "1")  # fmt: skip
    assert rc == 0 and "time budget ran out" in out and (tmp_path / "photo_dipstop.png").is_file()


# --- messages -----------------------------------------------------------------------------


def test_a_file_name_with_a_newline_is_one_line_of_a_batchs_errors(capsys, tmp_path):
    good = noisy_png(tmp_path / "good.png")
    bad = tmp_path / "bad\nname.png"
    bad.write_text("not a picture")
    rc, out, err = run(capsys, "denoise", good, bad, *TINY)
    assert rc == 2
    (line,) = errors(err)
    assert line.startswith(f"dipstop: error: {str(bad)!r}: ") and "not an image" in line
    assert str(bad)[1:] not in line.split(": ", 2)[2]  # the reason names it escaped, too
    assert not any(row.startswith("name.png") for row in (out + err).splitlines())


def test_a_whole_fit_cut_short_before_its_first_checkpoint_does_not_claim_kept_progress(
    capsys, tmp_path
):
    """Nothing was saved (a checkpoint is due after a minute): the note says so, and the
    folder still marks the output unfinished for a batch rerun."""
    src = noisy_png(tmp_path / "photo.png")
    partial = tmp_path / "photo_dipstop.png.partial"
    args = ["denoise", src, "--tile", "0", "--ensemble", "1", "--width", "8", "--lam", "50",
            "-T", "100000", "-S", "100000", "--max-minutes", "0.005", "--threads", "1"]  # fmt: skip
    rc, out, err = run(capsys, *args)
    assert rc == 0 and "time budget ran out" in out
    assert "progress is kept" not in out + err and "the same command starts it over" in out
    assert partial.is_dir() and not list(partial.iterdir())


def test_a_tiled_run_cut_short_before_any_tile_is_done_does_not_claim_kept_progress(
    capsys, tmp_path
):
    src = noisy_png(tmp_path / "photo.png", shape=(100, 140, 3))
    args = ["denoise", src, "--tile", "64", "--overlap", "16", "--tile-above", "0",
            "--width", "8", "--lam", "50", "-T", "100000", "-S", "100000",
            "--max-minutes", "0.002", "--threads", "1"]  # fmt: skip
    rc, out, err = run(capsys, *args)
    assert rc == 0 and "progress is kept" not in out + err
    assert "the same command starts it over" in out


def test_a_whole_fit_resumed_and_cut_short_again_still_says_its_progress_is_kept(
    capsys, tmp_path, monkeypatch
):
    """The checkpoint it resumed from is still there (none due since): it is kept."""
    monkeypatch.setattr(checkpoints, "STATE_EVERY", 2)
    monkeypatch.setenv("DIPSTOP_CHECKPOINT_SECONDS", "0")
    src = noisy_png(tmp_path / "photo.png")
    partial = tmp_path / "photo_dipstop.png.partial"
    args = ["denoise", src, "--tile", "0", "--ensemble", "1", "--width", "8", "--lam", "50",
            "-T", "100000", "-S", "100000", "--precision", "fp32", "--max-minutes", "0.02",
            "--threads", "1"]  # fmt: skip
    rc, out, _ = run(capsys, *args)
    assert rc == 0 and f"its progress is kept in {partial}" in out
    monkeypatch.setenv("DIPSTOP_CHECKPOINT_SECONDS", "3600")  # no save in the rerun
    (ckpt,) = partial.glob("*.pt")
    saved = ckpt.read_bytes()
    rc, out, _ = run(capsys, *args)
    assert rc == 0 and re.search(r"resumed at iteration \d+", out)
    assert ckpt.read_bytes() == saved and f"its progress is kept in {partial}" in out
