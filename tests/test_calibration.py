import json
import sqlite3

import numpy as np
import pytest

from dipstop.cli import main
from dipstop.errors import DipstopError
from dipstop.lab.calibration import (
    CalibrationRun,
    calibrate_from_store,
    record,
    search_lambda,
    selected_iterations,
)
from dipstop.lab.datasets import list_images
from dipstop.lab.rules import Rule, evaluate, search_lam
from dipstop.lab.store import ResultStore
from dipstop.lambda_table import lam_for_sigma, load_table, table_output
from dipstop.protocols import get_protocol

TINY = get_protocol("cpu").with_(width=8, crop=64, max_iters=12)


def test_policy_search_takes_the_lower_edge_of_a_plateau_of_lams_that_never_stop():
    # PSNR rises to T: every lam large enough never to fire returns the last image, so they
    # tie; the smallest of them is the choice (the middle would be an arbitrary huge lam,
    # which log-lam interpolation to the next sigma would inherit)
    t = np.arange(1.0, 41.0)
    run = ({"mse": 1 / t, "jpeg_bytes": t, "psnr": t.copy()}, 100)
    rule, lams = Rule("cifs", "raw", 5), np.logspace(-2, 3, 11)
    lam, curve = search_lam(rule, [run], lams)
    plateau = lams[curve == curve.max()]
    assert all(not evaluate(rule, *run, float(x)).fired for x in plateau) and len(plateau) >= 4
    assert lam == plateau[0]


def test_selected_iteration_moves_later_as_lam_grows():
    t = np.arange(1, 201, dtype=float)
    run = CalibrationRun({"mse": 1.0 / t, "jpeg_bytes": t}, pixels=100)  # 0.01 t bytes/pixel
    idx = selected_iterations(run, np.array([1e-2, 1.0, 100.0, 1e4]))
    assert list(idx) == sorted(idx) and idx[0] < 5 and idx[-1] == 199
    # the continuous optimum of lam/t + 1e-4 t^2 is t = (lam / 2e-4)^(1/3)
    assert abs((idx[2] + 1) - (100 / 2e-4) ** (1 / 3)) <= 1


def test_search_finds_the_lam_whose_stop_is_the_peak():
    t = np.arange(1, 301, dtype=float)
    runs = [
        CalibrationRun({"mse": 1.0 / t, "jpeg_bytes": t, "psnr": 30 - np.abs(t - peak) / 10}, 100)
        for peak in (70, 80, 90)
    ]
    lam, curve = search_lambda(runs)
    stop = selected_iterations(runs[0], np.array([lam]))[0] + 1
    assert stop == 80 and curve.max() == pytest.approx(30 - 2 / 3)


def test_record_resumes_without_duplicates_and_calibrates(tmp_path, image_folder):
    store = ResultStore(tmp_path / "cal.sqlite")
    images = list_images(image_folder)
    assert [p.name for p in images] == ["a.png", "b.jpg"]
    assert record(images[:1], [25], TINY, store, log=lambda m: None) == 1
    assert record(images, [25, 50], TINY, store, log=lambda m: None) == 3  # 1 kept, 3 new
    assert record(images, [25, 50], TINY, store, log=lambda m: None) == 0
    runs = list(store.runs())
    assert len(runs) == 4 and len({r.key for r in runs}) == 4
    assert all(r.series["psnr"].shape == (12,) for r in runs)
    choices = calibrate_from_store(store, TINY.width, TINY.crop)
    assert [c.sigma for c in choices] == [25.0, 50.0]
    assert all(
        c.lam > 0 and c.n_runs == 2 and c.mean_psnr <= c.mean_peak_psnr + 1e-9 for c in choices
    )


def test_cli_calibrate_writes_a_usable_table(tmp_path, image_folder):
    table = tmp_path / "table.json"
    rc = main(
        [
            "calibrate",
            "--images",
            str(image_folder),
            "--n-images",
            "2",
            "--sigmas",
            "15,30",
            "--iters",
            "10",
            "-S",
            "3",
            "--lam-smooth",
            "1.5",
            "--width",
            "8",
            "--crop",
            "64",
            "--store",
            str(tmp_path / "c.sqlite"),
            "--table",
            str(table),
            "--quiet",
        ]
    )
    assert rc == 0
    doc = load_table(table)  # for the default output, since-best, as its provenance says
    assert table_output(doc) == "since-best" and "S = 3" in doc["provenance"]["selection"]
    assert "best on average over [lam / 1.5, lam * 1.5]" in doc["provenance"]["selection"]
    assert [e["sigma"] for e in doc["entries"]] == [15.0, 30.0]
    assert doc["provenance"]["images"] == ["a.png", "b.jpg"]
    assert doc["protocol"]["width"] == 8
    lo, hi = (e["lam"] for e in doc["entries"])
    assert min(lo, hi) * (1 - 1e-12) <= lam_for_sigma(20, doc) <= max(lo, hi) * (1 + 1e-12)
    assert [e["mean_iterations"] for e in doc["entries"]] == [10.0, 10.0]  # S = 500 > T: all of T


def test_store_written_by_another_version_is_refused(tmp_path):
    path = tmp_path / "old.sqlite"
    ResultStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='0' WHERE name='schema'")
    with pytest.raises(DipstopError, match="schema 0"):
        ResultStore(path)


def test_a_non_database_file_is_refused(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_text("not sqlite at all, just some text that is long enough" * 20)
    with pytest.raises(DipstopError, match="not a dipstop results store"):
        ResultStore(path)


def test_an_interrupted_recording_resumes_as_if_never_stopped(tmp_path, image_folder, monkeypatch):
    from dipstop import checkpoints, recording
    from dipstop.lab.runs import default_averages
    from dipstop.runtime import Switches

    monkeypatch.setattr(checkpoints, "STATE_EVERY", 4)
    every_state = Switches(checkpoint_seconds=0.0)
    per_iteration = 1 + len(default_averages(500))  # PSNR of the raw output and each average
    proto = get_protocol("cpu").with_(width=8, crop=96, max_iters=20)
    image = list_images(image_folder)[:1]
    whole = ResultStore(tmp_path / "whole.sqlite")
    record(image, [25], proto, whole, log=lambda m: None)
    store = ResultStore(tmp_path / "cut.sqlite")
    real_psnr, calls = recording.psnr, []

    def psnr_then_ctrl_c(a, b):
        calls.append(1)
        if len(calls) == 14 * per_iteration + 1:  # the first PSNR of iteration 15
            raise KeyboardInterrupt
        return real_psnr(a, b)

    monkeypatch.setattr(recording, "psnr", psnr_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        record(image, [25], proto, store, log=lambda m: None, switches=every_state)
    resumed_calls = []
    monkeypatch.setattr(recording, "psnr", lambda a, b: resumed_calls.append(1) or real_psnr(a, b))
    assert record(image, [25], proto, store, log=lambda m: None, switches=every_state) == 1
    assert len(resumed_calls) == (20 - 12) * per_iteration  # resumed from the state at t = 12
    (expected,), (resumed,) = whole.runs(), store.runs()
    assert np.isfinite(resumed.series["psnr"]).all()
    for key in ("mse", "jpeg_bytes", "psnr"):
        np.testing.assert_array_equal(resumed.series[key], expected.series[key], err_msg=key)
    assert not list(checkpoints.folder_for(store.path).glob("*"))


def test_since_best_calibration_with_t_not_above_s_is_one_line(tmp_path, image_folder, capsys):
    args = ["calibrate", "--images", str(image_folder), "--n-images", "1", "--sigmas", "15",
            "-T", "6", "-S", "6", "--width", "8", "--crop", "64", "--store",
            str(tmp_path / "c.sqlite"), "--quiet"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "dipstop: error: since-best averages the last S + 1 outputs: T (6) must be above S (6); "
        "lower -S or raise -T"
    )
    assert main([*args, "--output-policy", "raw"]) == 0  # the paper's selection needs no S


def test_the_package_writes_the_shipped_tables_with_their_provenance(tmp_path, image_folder):
    """`dipstop tables lam-sizes` searches a store as `calibrate` does (same entries), and
    `dipstop tables sigma-correction` writes a monotone curve `estimate_sigma` can read."""
    grid = ["--images", str(image_folder), "--n-images", "2", "--sigmas", "15,30", "--iters",
            "10", "-S", "3", "--lam-smooth", "1.5", "--width", "8", "--crop", "64",
            "--quiet"]  # fmt: skip
    store = tmp_path / "c.sqlite"
    assert main(["calibrate", *grid, "--store", str(store), "-o", str(tmp_path / "a.json")]) == 0
    sizes = tmp_path / "b.json"
    assert main(["tables", "lam-sizes", "--stores", str(store), "--width", "8", "-T", "10",
                 "-S", "3", "--lam-smooth", "1.5", "-o", str(sizes)]) == 0  # fmt: skip
    a, b = load_table(tmp_path / "a.json"), load_table(sizes)
    assert [(e["sigma"], e["lam"]) for e in a["entries"]] == [
        (e["sigma"], e["lam"]) for e in b["entries"]
    ]
    assert b["provenance"]["command"].startswith("dipstop tables lam-sizes")
    curve = tmp_path / "sigma.json"
    assert main(["tables", "sigma-correction", "--data", str(image_folder), "--every", "1",
                 "-o", str(curve)]) == 0  # fmt: skip
    doc = json.loads(curve.read_text())
    assert doc["sigma"][:3] == [0.0, 2.5, 5.0] and np.all(np.diff(doc["mean_raw"]) >= 0)
    assert doc["provenance"]["images"].endswith("every 1th: 2 images")
