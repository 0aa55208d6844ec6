"""The bench grid, its store (resume after a crash, no duplicates), Ray, and the report."""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dipstop import checkpoints, recording
from dipstop.errors import DipstopError
from dipstop.fitting import FitSettings, Fitter
from dipstop.lab import runs
from dipstop.lab.calibration import record
from dipstop.lab.datasets import list_images
from dipstop.lab.executor import run_grid
from dipstop.lab.paper_report import build_report, recorded_patience
from dipstop.lab.runs import bench_criteria, grid
from dipstop.lab.selection import select
from dipstop.lab.store import ResultStore, StoredRun, run_key
from dipstop.lambda_table import write_table
from dipstop.protocols import get_protocol
from dipstop.runtime import Switches

TINY = get_protocol("cpu").with_(width=8, crop=96, max_iters=30, patience=5)
QUIET = dict(log=lambda m: None)
EVERY5 = bench_criteria(5)  # BRISQUE and NIQE every 5 iterations


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "table.json"
    write_table(
        path,
        [{"sigma": 10, "lam": 20.0}, {"sigma": 60, "lam": 200.0}],
        {"name": "test", "width": 8},
        {"command": "test"},
    )
    from dipstop.lambda_table import load_table

    return load_table(path)


def test_grid_records_every_series_and_skips_finished_runs(tmp_path, image_folder):
    store = ResultStore(tmp_path / "b.sqlite")
    specs = grid(image_folder, [25], TINY, criteria=EVERY5)
    assert run_grid(specs, store, **QUIET) == 2
    assert run_grid(specs, store, **QUIET) == 0
    runs = list(store.runs())
    assert len(runs) == 2
    s = runs[0].series
    for key in (
        "mse",
        "jpeg_bytes",
        "wmv",
        "brisque",
        "niqe",
        "psnr",
        "ssim",
        "psnr_ema",
        "ssim_ema",
    ):
        assert s[key].shape == (30,)
    assert np.isnan(s["brisque"][:4]).all() and not np.isnan(s["brisque"][4::5]).any()
    assert np.isnan(s["wmv"]).all()  # the 100-output window never fills in 30 iterations
    assert np.isfinite(s["psnr"]).all() and (s["ssim"] <= 1).all()
    assert abs(runs[0].summary["sigma_estimated"] - 25) < 10


def test_crash_mid_grid_loses_no_finished_run_and_duplicates_none(tmp_path, image_folder):
    store = ResultStore(tmp_path / "b.sqlite")
    specs = grid(image_folder, [15, 50], TINY, criteria=EVERY5)
    real, calls = runs.run_one, []

    def flaky(spec, device=None, checkpoints=None, switches=None):
        calls.append(spec)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the third run
        return real(spec, device, checkpoints, switches)

    with pytest.raises(KeyboardInterrupt):
        run_grid(specs, store, runner=flaky, **QUIET)
    assert len(list(store.runs())) == 2
    assert run_grid(specs, store, **QUIET) == 2
    keys = [r.key for r in store.runs()]
    assert len(keys) == 4 == len(set(keys))


def test_an_interrupted_run_resumes_from_its_checkpoint_as_if_never_stopped(
    tmp_path, image_folder, monkeypatch
):
    monkeypatch.setattr(checkpoints, "STATE_EVERY", 5)
    small_window = {**EVERY5, "wmv": {"every": 1, "window": 8}}  # its state is resumed too
    spec = grid(image_folder, [25], TINY, criteria=small_window)[0]
    _, whole, _ = runs.run_one(spec)  # no checkpoints
    every_state = dict(switches=Switches(checkpoint_seconds=0.0))  # save at every state
    store = ResultStore(tmp_path / "r.sqlite")
    folder = checkpoints.folder_for(store.path)
    real_ssim, calls = recording.ssim, []

    def ssim_then_ctrl_c(a, b):
        calls.append(1)
        if len(calls) == len(spec.as_dict()["ssim"]) * 23:  # in iteration 23's record
            raise KeyboardInterrupt
        return real_ssim(a, b)

    monkeypatch.setattr(recording, "ssim", ssim_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_grid([spec], store, **QUIET, **every_state)
    assert len(list(folder.glob("*.pt"))) == 1 and not list(store.runs())
    monkeypatch.setattr(recording, "ssim", real_ssim)
    assert run_grid([spec], store, **QUIET, **every_state) == 1
    (run,) = store.runs()
    assert run.summary["resumed_at"] == 20  # the last checkpoint before the interruption
    assert not list(folder.glob("*.pt"))  # deleted once the run is stored
    assert not np.isnan(whole["wmv"]).all()
    for key, values in whole.items():
        if key != "seconds":
            np.testing.assert_array_equal(run.series[key], values, err_msg=key)


def test_an_unusable_checkpoint_is_ignored(tmp_path, image_folder):
    spec = grid(image_folder, [25], TINY.with_(max_iters=6), criteria=EVERY5)[0]
    ckpt = checkpoints.RunCheckpoint(tmp_path, spec.as_dict())
    ckpt.path.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="unreadable"):
        _, series, summary = runs.run_one(spec, None, str(tmp_path))
    assert summary["resumed_at"] is None and np.isfinite(series["mse"]).all()


def test_a_checkpoint_of_another_fit_is_ignored(tmp_path, image_folder):
    """As a checkpoint written on a GPU would be on a CPU: warned about, the run starts over."""
    spec = grid(image_folder, [25], TINY.with_(max_iters=6), criteria=EVERY5)[0]
    other = Fitter(torch.rand(3, 64, 64), FitSettings(width=16)).run(1, state_every=1)
    ckpt = checkpoints.RunCheckpoint(tmp_path, spec.as_dict())
    ckpt.save(next(other).state, {"mse": np.zeros(6)}, 1.0, criteria={}, averages={})
    with pytest.warns(UserWarning, match="of another fit"):
        _, series, summary = runs.run_one(spec, None, str(tmp_path))
    assert summary["resumed_at"] is None and np.isfinite(series["mse"]).all()


def test_kill_9_during_a_bench_then_rerun_completes_the_grid(tmp_path, image_folder):
    store_path = tmp_path / "k.sqlite"
    args = "bench --sigmas 10,20,30 --iters 60 --every 20 --quiet --threads 1 --width 8 --crop 96"
    cmd = [
        sys.executable,
        "-m",
        "dipstop.cli",
        *args.split(),
        "--data",
        str(image_folder),
        "--store",
        str(store_path),
    ]
    proc = subprocess.Popen(cmd)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if store_path.exists() and len(list(ResultStore(store_path).runs())) >= 1:
            break
    assert proc.poll() is None, "bench ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len(list(ResultStore(store_path).runs()))
    assert 1 <= kept < 6
    assert subprocess.run(cmd).returncode == 0
    keys = [r.key for r in ResultStore(store_path).runs()]
    assert len(keys) == 6 == len(set(keys))


def test_kill_9_mid_run_then_rerun_resumes_that_run_from_its_checkpoint(tmp_path, image_folder):
    store_path = tmp_path / "c.sqlite"
    args = "bench --sigmas 25 --iters 200 --every 50 --quiet --threads 1 --width 8 --crop 96"
    cmd = [sys.executable, "-m", "dipstop.cli", *args.split(), "--data", str(image_folder)]
    image = list_images(image_folder)[0].name
    cmd += ["--images", image, "--store", str(store_path)]
    env = {**os.environ, "DIPSTOP_CHECKPOINT_SECONDS": "0"}  # save at every state copy
    proc = subprocess.Popen(cmd, env=env)
    folder = checkpoints.folder_for(store_path)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list(folder.glob("*.pt")):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not store_path.exists() or not list(ResultStore(store_path).runs())
    assert subprocess.run(cmd, env=env).returncode == 0
    (run,) = ResultStore(store_path).runs()
    assert run.summary["resumed_at"] % checkpoints.STATE_EVERY == 0 < run.summary["resumed_at"]
    assert not list(folder.glob("*.pt"))
    # the resumed run continues bit for bit as an uninterrupted one on as many threads
    proto = get_protocol("cpu").with_(max_iters=200, width=8, crop=96)
    (spec,) = grid(image_folder, [25], proto, images=[image], criteria=bench_criteria(50))
    assert run.key == run_key(spec.as_dict())  # the same run as the CLI's
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, whole, summary = runs.run_one(spec)
    finally:
        torch.set_num_threads(threads)
    assert run.summary["threads"] == summary["threads"] == 1
    assert summary["resumed_at"] is None and summary["restores"] == run.summary["restores"]
    assert set(run.series) == set(whole)
    assert np.isfinite(whole["wmv"][99:]).all()  # the 100-output window's state was resumed
    for key, values in whole.items():
        if key != "seconds":
            np.testing.assert_array_equal(run.series[key], values, err_msg=key)


def test_ray_executor_matches_in_process_runs_for_bench_and_calibration(tmp_path, image_folder):
    ray = pytest.importorskip("ray")
    proto = TINY.with_(max_iters=12)
    specs = grid(image_folder, [25], proto, criteria=bench_criteria(4))
    images = list_images(image_folder)
    stores = {name: ResultStore(tmp_path / f"{name}.sqlite") for name in ("bl", "br", "cl", "cr")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray runs each 1-CPU task on one thread: same float sums
    try:
        run_grid(specs, stores["bl"], **QUIET)
        record(images, [25], proto, stores["cl"], **QUIET)
    finally:
        torch.set_num_threads(threads)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert run_grid(specs, stores["br"], use_ray=True, **QUIET) == 2
        assert record(images, [25], proto, stores["cr"], use_ray=True, **QUIET) == 2
    finally:
        ray.shutdown()
    for local, remote in (("bl", "br"), ("cl", "cr")):
        a = {r.key: r for r in stores[local].runs()}
        b = {r.key: r for r in stores[remote].runs()}
        assert len(a) == 2 and a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key].series["mse"], b[key].series["mse"], rtol=1e-5)


def fake_run(series: dict, sigma=25.0, est=25.0, pixels=64) -> StoredRun:
    n = len(series["mse"])
    base = {k: np.full(n, np.nan) for k in ("wmv", "brisque", "niqe", "ssim")}
    spec = {"sigma": sigma, "criteria": EVERY5}
    return StoredRun("k", spec, {"sigma_estimated": est, "pixels": pixels}, {**base, **series})


def test_selection_applies_eq4_per_criterion(table):
    n = 40
    t = np.arange(1, n + 1, dtype=float)
    brisque = np.full(n, np.nan)
    brisque[4::5] = [9, 7, 8, 9, 9, 1, 9, 9]  # sampled every 5: min 7 at t=10 holds 2 samples
    run = fake_run(
        {
            "mse": 1 / t,
            "jpeg_bytes": 8 * t,
            "psnr": -np.abs(t - 17),
            "wmv": np.r_[np.full(5, np.nan), np.abs(t[5:] - 20)],
            "brisque": brisque,
            "niqe": brisque,
        }
    )
    picks = select(run, patience=10, table=table)
    assert picks["No ES"] == 40 and picks["Peak"] == 17
    assert picks["ES-WMV"] == 20
    assert picks["BRISQUE"] == 10  # S/k = 2 samples: 7 at t=10 beats 8 and 9 after it
    # CIFS: lam/t + (t/8)^2 is least near (32 lam)^(1/3), lam = the table lam at sigma 25
    lam = float(np.exp(np.interp(25, [10, 60], np.log([20.0, 200.0]))))
    assert abs(picks["CIFS"] - (32 * lam) ** (1 / 3)) <= 1


def test_report_numbers_equal_the_stored_ones(tmp_path, image_folder, table):
    store = ResultStore(tmp_path / "b.sqlite")
    small_window = {**EVERY5, "wmv": {"every": 1, "window": 8}}  # ES-WMV has values by t=8
    run_grid(grid(image_folder, [25], TINY, criteria=small_window), store, **QUIET)
    report = build_report(store, tmp_path / "rep", patience=5, table=table)
    runs = list(store.runs())
    text = (tmp_path / "rep" / "table1.csv").read_text().splitlines()
    rows = {r["method"]: r for r in csv.DictReader(text)}
    peak = np.mean([r.series["psnr"].max() for r in runs])
    last = np.mean([r.series["psnr"][-1] for r in runs])
    assert float(rows["Peak"]["mean_psnr"]) == pytest.approx(peak, rel=1e-12)
    assert float(rows["No ES"]["mean_psnr"]) == pytest.approx(last, rel=1e-12)
    # every stopping rule's column: the mean over runs of the stored PSNR at select's pick,
    # and runs.csv holds those picks, run by run
    picks = {r.spec["image"]: select(r, 5, table) for r in runs}
    rules = ["BRISQUE", "NIQE", "ES-WMV", "CIFS", "CIFS (est. sigma)"]
    assert set(rows) == {*rules, "No ES", "Peak"}
    per_run = list(csv.DictReader((tmp_path / "rep" / "runs.csv").read_text().splitlines()))
    assert len(per_run) == len(runs) * len(rows)
    for r in runs:
        for method, t in picks[r.spec["image"]].items():
            (row,) = [x for x in per_run if (x["image"], x["method"]) == (r.spec["image"], method)]
            assert int(row["t"]) == t, (r.spec["image"], method)
            assert float(row["psnr"]) == r.series["psnr"][t - 1]
    for method in rules:
        stored = [r.series["psnr"][picks[r.spec["image"]][method] - 1] for r in runs]
        assert float(rows[method]["mean_psnr"]) == pytest.approx(np.mean(stored), rel=1e-12)
        assert float(rows[method]["std_psnr"]) == pytest.approx(np.std(stored), abs=1e-12)
        assert int(rows[method]["n"]) == 2
    assert len({t for p in picks.values() for t in p.values()}) > 2  # not all at T or the peak
    text = report.read_text()
    assert f"{peak:.3f}" in text and "Table 1" in text
    assert "2 runs (2 on cpu)" in text  # which device recorded the runs
    for fig in ("fig1_jpeg_size", "fig2_lambda", "fig3_gap_to_peak", "fig4_example"):
        assert (tmp_path / "rep" / f"{fig}.png").stat().st_size > 5_000
    import json

    info = json.loads((tmp_path / "rep" / "fig4_example.json").read_text())
    assert info["max_loss_drift"] < 1e-6  # the refit reproduced the stored run


def test_report_default_s_is_the_one_the_runs_were_recorded_with():
    def run(summary: dict) -> StoredRun:
        return StoredRun("k", {"protocol": {"name": "cpu"}}, summary, {})

    assert recorded_patience([run({"patience": 5}), run({"patience": 5})]) == 5
    assert recorded_patience([run({})]) == get_protocol("cpu").patience  # older stores
    with pytest.raises(DipstopError, match=r"different S \(5, 500\); pass -S"):
        recorded_patience([run({"patience": 5}), run({})])


def test_empty_or_non_image_data_set_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DipstopError, match="no images"):
        grid(tmp_path, [25], TINY)
    with pytest.raises(DipstopError, match="does not exist"):
        grid(tmp_path / "missing", [25], TINY)


def test_report_of_an_empty_store_is_refused(tmp_path, table):
    with pytest.raises(DipstopError, match="no bench runs"):
        build_report(ResultStore(tmp_path / "e.sqlite"), tmp_path / "r", 5, table)


def test_report_finds_moved_images_with_data_and_says_so_without(tmp_path, image_folder, table):
    store = ResultStore(tmp_path / "b.sqlite")
    run_grid(
        grid(image_folder, [25], TINY.with_(max_iters=12), criteria=bench_criteria(4)),
        store,
        **QUIET,
    )
    moved = image_folder.rename(tmp_path / "moved")
    with pytest.raises(DipstopError, match="pass --data"):
        build_report(store, tmp_path / "r1", 5, table)
    report = build_report(store, tmp_path / "r2", 5, table, data=moved)
    assert report.is_file() and (tmp_path / "r2" / "fig4_example.png").is_file()


def test_a_bf16_grid_run_is_its_own_run_and_fits_in_bfloat16(tmp_path, image_folder):
    cifs = {"cifs": {"every": 1}}
    store = ResultStore(tmp_path / "b.sqlite")
    (fp32,) = grid(image_folder, [25], TINY, images=["a.png"], criteria=cifs)
    (bf16,) = grid(image_folder, [25], TINY, images=["a.png"], criteria=cifs, precision="bf16")
    assert run_grid([fp32, bf16], store, **QUIET) == 2  # two keys, two runs
    by_key = {r.key: r for r in store.runs()}
    a, b = by_key[run_key(fp32.as_dict())], by_key[run_key(bf16.as_dict())]
    assert b.spec["fit"]["bf16"] and b.spec["fit"]["channels_last"] and not a.spec["fit"]["bf16"]
    assert not np.allclose(a.series["mse"], b.series["mse"], rtol=1e-6)
    assert a.summary["sigma_estimated"] == b.summary["sigma_estimated"]  # the same noisy image
