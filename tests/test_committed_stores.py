"""The committed results stores (written under store schema 1) still load, migrate once, and
give the committed numbers: Table 1 of `results/report` and the shipped lam table."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from dipstop.lab.calibration import calibrate_from_store
from dipstop.lab.paper_report import summarise, table_rows
from dipstop.lab.store import ResultStore, upgrade_spec
from dipstop.lambda_table import load_table

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _copy(name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    shutil.copy(RESULTS / name, path)
    return path


def _schema(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()[0]


def test_bench_store_migrates_once_and_reproduces_the_committed_table1(tmp_path):
    path = _copy("bench.sqlite", tmp_path)
    assert _schema(path) == "1"
    runs = list(ResultStore(path).runs())
    assert _schema(path) == "3" and len(runs) == 36
    assert all(r.spec["kind"] == "run" and r.spec == upgrade_spec(r.spec) for r in runs)
    assert len(list(ResultStore(path).runs())) == 36  # reopening changes nothing
    summary = summarise(table_rows(runs, patience=500, table=load_table()))
    committed = list(csv.DictReader((RESULTS / "report" / "table1.csv").open()))
    assert len(committed) == sum(len(methods) for methods in summary.values())
    for row in committed:
        mean, std, n = summary[(row["dataset"], float(row["sigma"]))][row["method"]]
        assert mean == pytest.approx(float(row["mean_psnr"]), rel=1e-12), row
        assert std == pytest.approx(float(row["std_psnr"]), rel=1e-12, abs=1e-12), row
        assert n == int(row["n"])


def test_calibration_store_migrates_and_reproduces_the_shipped_lam_table(tmp_path):
    store = ResultStore(_copy("calibration.sqlite", tmp_path))
    shipped = load_table()
    proto = shipped["protocol"]
    choices = calibrate_from_store(
        store, proto["width"], proto["crop"], proto["max_iters"], proto["patience"]
    )
    assert [c.sigma for c in choices] == [e["sigma"] for e in shipped["entries"]]
    for c, e in zip(choices, shipped["entries"], strict=True):
        # the lam grid is a geometric series: its last bit may differ between CPUs
        assert c.lam == pytest.approx(e["lam"], rel=1e-12)
        assert c.n_runs == e["n_runs"] and c.images == e["images"]
        assert round(c.mean_psnr, 4) == e["mean_psnr"]
        assert round(c.mean_psnr_eq4, 4) == e["mean_psnr_eq4"]
        assert c.mean_iterations == e["mean_iterations"]  # the estimate's expected stop
    assert json.loads(json.dumps(shipped["provenance"]))["images"] == sorted(
        {name for c in choices for name in c.images}
    )


def test_a_read_only_open_of_an_old_store_upgrades_as_it_reads_and_changes_nothing(tmp_path):
    path = _copy("calibration.sqlite", tmp_path)
    before = path.read_bytes()
    runs = list(ResultStore(path, readonly=True).runs())
    assert len(runs) == 64 and all(r.spec["kind"] == "run" and "fit" in r.spec for r in runs)
    assert path.read_bytes() == before and _schema(path) == "1"


def test_the_since_best_stores_reproduce_the_shipped_default_lam_table():
    """The default output's table is what its committed command finds: at 128 x 128 on
    calibration2, at its larger sizes on the size grid's store; the same lams, scores and
    expected stops (read-only: the stores are not copied or changed)."""
    shipped = load_table(output="since-best")
    proto, prov = shipped["protocol"], shipped["provenance"]
    assert prov["output"] == "since-best" and "[lam / 1.6, lam * 1.6]" in prov["selection"]
    assert "results/size_calibration.sqlite" in prov["command"]
    choices = []
    for name in ("calibration2.sqlite", "size_calibration.sqlite"):
        store = ResultStore(RESULTS / name, readonly=True)
        for crop in sorted({r.spec["protocol"]["crop"] or 0 for r in store.runs()}):
            choices += calibrate_from_store(
                store, proto["width"], crop or None, proto["max_iters"], proto["patience"],
                "since-best", smooth=1.6,
            )  # fmt: skip
    shipped_sizes = set(prov["sizes"])  # the store may already hold runs of a size to come
    order = sorted(
        (c for c in choices if c.pixels in shipped_sizes), key=lambda c: (c.sigma, c.pixels)
    )
    entries = sorted(shipped["entries"], key=lambda e: (e["sigma"], e["pixels"]))
    assert [(c.sigma, c.pixels) for c in order] == [(e["sigma"], e["pixels"]) for e in entries]
    assert prov["sizes"][0] == 128 * 128 and len(prov["sizes"]) >= 2
    for c, e in zip(order, entries, strict=True):
        # the lam grid is a geometric series: its last bit may differ between CPUs
        assert c.lam == pytest.approx(e["lam"], rel=1e-12)
        assert c.n_runs == e["n_runs"] and c.images == e["images"]
        assert c.n_runs == (8 if c.pixels == 128 * 128 else 4)
        assert round(c.mean_psnr, 4) == e["mean_psnr"]
        assert c.mean_iterations == e["mean_iterations"]


def test_fp32_calibration_specs_still_find_their_committed_runs(shared):
    """Precision joined the fit settings without moving an fp32 run's key: the calibration
    grid's specs, built today, are the runs calibration2 holds; bf16 ones are other runs."""
    from dipstop.lab.calibration import specs
    from dipstop.lab.store import run_key
    from dipstop.protocols import PROTOCOLS

    store = ResultStore(RESULTS / "calibration2.sqlite", readonly=True)
    image = [shared / "data" / "cbsd432_jpg" / "100007.jpg"]
    for precision, stored in (("fp32", True), ("bf16", False)):
        (spec,) = specs(image, [25], PROTOCOLS["cpu"], precision=precision)
        assert store.has(run_key(spec.as_dict())) is stored
        assert spec.as_dict()["fit"]["bf16"] is (precision == "bf16")
