"""`dipstop report` keeps its Fig. 4 refit: reused on a rerun of the same key, refitted on
request, on another key or over damaged data, and left out with --no-fig4."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dipstop.cli import main
from dipstop.errors import DipstopError
from dipstop.lab import paper_report
from dipstop.lab.executor import run_grid
from dipstop.lab.paper_report import FIG4_KEPT, build_report, load_fig4_refit
from dipstop.lab.runs import grid
from dipstop.lab.store import ResultStore
from dipstop.lambda_table import load_table, write_table
from dipstop.protocols import get_protocol

TINY = get_protocol("cpu").with_(width=8, crop=96, max_iters=16, patience=4)
CIFS = {"cifs": {"every": 1}}
OUTPUTS = ("table1.csv", "runs.csv", "fig1_jpeg_size.csv")


@pytest.fixture(autouse=True)
def _keep_threads():
    """`main` sets the process's thread count when asked (--threads): put it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images(tmp_path_factory, smooth_rgb) -> Path:
    """A folder of one small clean image."""
    folder = tmp_path_factory.mktemp("clean")
    cv2.imwrite(str(folder / "a.png"), cv2.resize(smooth_rgb, (112, 104)))
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory, images) -> Path:
    """A one-run bench store (16 iterations of a width-8 net on a 96-pixel crop, CIFS)."""
    path = tmp_path_factory.mktemp("bench") / "b.sqlite"
    run_grid(grid(images, [25], TINY, criteria=CIFS), ResultStore(path), log=lambda m: None)
    return path


@pytest.fixture(scope="module")
def first(tmp_path_factory, store) -> Path:
    """The folder of a first report of `store` (with its Fig. 4 refit)."""
    out = tmp_path_factory.mktemp("first") / "rep"
    assert main(["report", str(store), "-o", str(out), "--quiet"]) == 0
    return out


@pytest.fixture
def out(tmp_path, first) -> Path:
    """A copy of the first report's folder, for a test to report into again."""
    return Path(shutil.copytree(first, tmp_path / "rep"))


@pytest.fixture
def fits(monkeypatch) -> list[int]:
    """Counts the Fig. 4 refits (each still runs)."""
    calls: list[int] = []
    real = paper_report.refit_fig4

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(paper_report, "refit_fig4", counted)
    return calls


def _no_fit(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("Fig. 4 was refitted")

    monkeypatch.setattr(paper_report, "refit_fig4", refuse)


def _report(store: Path, out: Path, *args: str) -> None:
    assert main(["report", str(store), "-o", str(out), *args]) == 0


def test_a_rerun_redraws_fig4_from_the_kept_refit_without_fitting(store, out, monkeypatch):
    before = {n: (out / n).read_text() for n in (*OUTPUTS, "fig4_example.json")}
    png = cv2.imread(str(out / "fig4_example.png"))
    assert (out / FIG4_KEPT).is_file()
    _no_fit(monkeypatch)
    _report(store, out, "--quiet")
    assert {n: (out / n).read_text() for n in before} == before  # the same numbers, bit for bit
    np.testing.assert_array_equal(cv2.imread(str(out / "fig4_example.png")), png)
    assert "by an earlier report" in (out / "report.md").read_text()


def test_refit_fig4_refits_though_a_refit_of_the_same_key_is_kept(store, out, fits, capsys):
    _report(store, out, "--refit-fig4")
    assert len(fits) == 1
    assert "Fig. 4: refitting a.png at sigma 25" in capsys.readouterr().out


def test_no_fig4_leaves_it_out_says_so_and_keeps_the_rest(tmp_path, store, first, monkeypatch,
                                                          capsys):  # fmt: skip
    _no_fit(monkeypatch)
    out = tmp_path / "skip"
    _report(store, out, "--no-fig4")
    assert "Fig. 4 skipped (--no-fig4)" in capsys.readouterr().out
    text = (out / "report.md").read_text()
    assert "Fig. 4 not drawn (`--no-fig4`)" in text and "![Fig. 4]" not in text
    assert not (out / "fig4_example.png").exists() and not (out / FIG4_KEPT).exists()
    for name in OUTPUTS:  # Table 1 and the other figures' numbers are those of a full report
        assert (out / name).read_text() == (first / name).read_text(), name


def test_the_two_fig4_options_together_are_refused(tmp_path, store, capsys):
    with pytest.raises(SystemExit):
        main(["report", str(store), "-o", str(tmp_path / "r"), "--no-fig4", "--refit-fig4"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(DipstopError, match="unknown Fig. 4 mode 'later'; use one of reuse"):
        build_report(ResultStore(store, readonly=True), tmp_path / "r", 4, {}, fig4="later")


def test_a_kept_refit_of_another_s_is_refitted_with_a_note(store, out, fits, capsys):
    _report(store, out, "-S", "2")
    said = capsys.readouterr().out
    assert len(fits) == 1
    assert f"Fig. 4: the refit kept in {out / FIG4_KEPT} is for another S; refitting" in said
    assert load_fig4_refit(out / FIG4_KEPT)[0]["patience"] == 2  # now kept for S = 2


def test_a_kept_refit_of_another_table_or_image_is_refitted(tmp_path, store, out, fits, images):
    table_path = tmp_path / "table.json"
    write_table(table_path, [{"sigma": 10, "lam": 20.0}, {"sigma": 60, "lam": 200.0}],
                {"name": "test", "width": 8}, {"command": "test"})  # fmt: skip
    notes: list[str] = []
    reader = ResultStore(store, readonly=True)
    build_report(reader, out, 4, load_table(table_path), log=notes.append)
    assert len(fits) == 1 and "is for another lam table" in notes[-2]
    moved = tmp_path / "moved"
    moved.mkdir()
    pixels = cv2.imread(str(images / "a.png"))
    cv2.imwrite(str(moved / "a.png"), pixels[:, ::-1])  # same name, other content
    build_report(reader, out, 4, load_table(table_path), data=moved, log=notes.append)
    assert len(fits) == 2 and "is for another image; refitting" in notes[-2]


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),  # cut short
        lambda p: p.write_text("not a zip"),
        lambda p: _write(p, key=np.array("{}"), t=np.arange(2)),  # arrays missing
        lambda p: _rewrite(p, outputs=np.zeros((1, 4, 4, 3), np.float32)),  # not 8-bit images
    ],
    ids=["truncated", "not-a-zip", "missing-arrays", "wrong-arrays"],
)
def test_damaged_kept_data_is_ignored_with_a_warning_and_refitted(store, out, fits, capsys, damage):
    kept = json.loads((out / "fig4_example.json").read_text())
    damage(out / FIG4_KEPT)
    _report(store, out, "--quiet")
    err = capsys.readouterr().err
    assert len(fits) == 1
    assert f"dipstop: warning: {out / FIG4_KEPT} is damaged (" in err
    assert err.count("\n") == 1 and "Traceback" not in err  # one line
    assert json.loads((out / "fig4_example.json").read_text()) == kept
    load_fig4_refit(out / FIG4_KEPT)  # kept again, whole


def _write(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _rewrite(path: Path, **arrays: np.ndarray) -> None:
    """Replace some of a kept refit's arrays, keeping its key."""
    with np.load(path) as f:
        old = {k: f[k] for k in f.files}
    _write(path, **{**old, **arrays})
