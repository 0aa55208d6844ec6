"""`dipstop demo` and `dipstop report` run through the CLI's `main`, checked by value."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from dipstop.cli import main
from dipstop.lab.executor import run_grid
from dipstop.lab.runs import bench_criteria, grid
from dipstop.lab.selection import AVERAGE_PEAK, DIPSTOP, select
from dipstop.lab.store import ResultStore
from dipstop.lambda_table import load_table
from dipstop.protocols import get_protocol
from dipstop.sample import sample_pair


@pytest.fixture(autouse=True)
def _keep_threads():
    """`main` sets the process's thread count when asked (--threads): put it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_demo_writes_the_images_and_a_consistent_summary(tmp_path):
    out = tmp_path / "demo"
    T, S = 20, 5
    args = ["demo", "-o", str(out), "--width", "8", "-T", str(T), "-S", str(S), "--quiet"]
    assert main(args) == 0
    clean, noisy = sample_pair()
    images = {n: cv2.imread(str(out / f"{n}.png"), cv2.IMREAD_UNCHANGED) for n in
              ("clean", "noisy", "denoised")}  # fmt: skip
    for name, img in images.items():
        assert img is not None and img.shape == clean.shape and img.dtype == np.uint8, name
    np.testing.assert_array_equal(images["clean"][..., ::-1], clean)  # BGR on disk
    np.testing.assert_array_equal(images["noisy"][..., ::-1], noisy)
    summary = json.loads((out / "report" / "summary.json").read_text())
    # by default the cat (one tile: the whole 128 x 128 image) is one fit, seed 0, stopped by
    # its own rule
    assert "members" not in summary and summary["settings"]["seed"] == 0
    t_star, ran = summary["stop_iteration"], summary["iterations_run"]
    assert 1 <= t_star <= ran == min(T, t_star + S)
    assert summary["stopped_early"] == (t_star + S <= T)
    # ... and finished by the Wiener filter, which the summary says
    assert summary["settings"]["wiener"] is True and summary["fit_psnr"] != summary["psnr"]
    assert summary["settings"]["max_iters"] == T and summary["settings"]["patience"] == S
    assert summary["settings"]["width"] == 8
    # the PSNR the summary reports is that of the image written (8-bit rounding: < 0.01 dB)
    assert summary["psnr"] == pytest.approx(_psnr_u8(images["denoised"], images["clean"]), abs=0.01)
    rows = (out / "report" / "series.csv").read_text().splitlines()
    assert len(rows) == 1 + ran  # a header and a row an iteration


def test_report_through_the_cli_takes_the_runs_own_patience(tmp_path, image_folder):
    proto = get_protocol("cpu").with_(width=8, crop=96, max_iters=16, patience=4)
    store_path = tmp_path / "b.sqlite"
    specs = grid(image_folder, [25], proto, images=["a.png"], criteria=bench_criteria(4))
    run_grid(specs, ResultStore(store_path), log=lambda m: None)
    (run,) = ResultStore(store_path).runs()
    table = load_table(None)  # the shipped table, as `report` without --table
    for args, S in (([], 4), (["-S", "2"], 2)):
        out = tmp_path / f"report{S}"
        assert main(["report", str(store_path), "-o", str(out), "--quiet", *args]) == 0
        assert (out / "table1.csv").is_file() and (out / "fig4_example.png").is_file()
        assert f"Patience S = {S};" in (out / "report.md").read_text()
        picks = select(run, S, table)
        rows = list(csv.DictReader((out / "runs.csv").read_text().splitlines()))
        got = {r["method"]: int(r["t"]) for r in rows}
        assert {m: got[m] for m in picks} == picks
        # the run recorded the mean of the last S + 1 = 5 outputs: dipstop's columns at S = 4
        # only, and the averaged image Fig. 4 rebuilds by refitting is the one recorded
        assert (DIPSTOP in got and AVERAGE_PEAK in got) == (S == 4)
        if S == 4:
            psnrs = {r["method"]: float(r["psnr"]) for r in rows}
            assert psnrs[AVERAGE_PEAK] >= psnrs[DIPSTOP]
            fig4 = json.loads((out / "fig4_example.json").read_text())["dipstop"]
            assert fig4["policy"] == "since-best" and fig4["t_star"] == got[DIPSTOP]
            assert fig4["psnr_refit"] == pytest.approx(fig4["psnr"], abs=1e-3)
            assert "Peak (average)" in (out / "report.md").read_text()
    # the picks above tell the patience used apart only where it changes them; which pairs
    # differ follows the trajectory, hence the CPU (on an AMD EPYC S = 4 and 500 pick alike)
    picks = [select(run, s, table) for s in (2, 4, get_protocol("cpu").patience)]
    assert picks[0] != picks[1] or picks[1] != picks[2]
