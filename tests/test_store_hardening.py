"""Hardening of the results store and the checkpoints (issue 13): checkpoints load as plain
data only and any unusable one means a really fresh run; the store waits for other processes'
locks, opens read-only for the report, survives foreign files and corrupt rows, and benches
sharing it claim runs so that none is computed twice."""

import copy
import os
import pickle
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from dipstop import checkpoints, recording
from dipstop.cli import main
from dipstop.errors import DipstopError
from dipstop.fitting import Fitter
from dipstop.lab import runs
from dipstop.lab import store as store_module
from dipstop.lab.calibration import specs as calibration_specs
from dipstop.lab.datasets import list_images, synthetic_pair
from dipstop.lab.executor import run_grid
from dipstop.lab.runs import bench_criteria, grid
from dipstop.lab.store import ResultStore, run_key
from dipstop.protocols import get_protocol
from dipstop.runtime import Switches

EVERY_STATE = Switches(checkpoint_seconds=0.0)  # a checkpoint at every state copy

TINY = get_protocol("cpu").with_(width=8, crop=96, max_iters=12, patience=5)
QUIET = dict(log=lambda m: None)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, smooth_rgb):
    """Two small clean images, shared by the module's tests (they only read them)."""
    import cv2

    path = tmp_path_factory.mktemp("clean")
    big = cv2.resize(smooth_rgb, (104, 100))
    cv2.imwrite(str(path / "a.png"), big)
    cv2.imwrite(str(path / "b.png"), big[::-1])
    return path


@pytest.fixture(scope="module")
def bench(one_thread, folder, tmp_path_factory):
    """A bench spec, its uninterrupted series, and the genuine checkpoint it leaves at t = 8."""
    spec = grid(folder, [25], TINY, criteria=bench_criteria(4))[0]
    _, whole, _ = runs.run_one(spec)
    ckpt_folder = tmp_path_factory.mktemp("partial")
    real_ssim, calls = recording.ssim, []
    per_iteration = len(spec.as_dict()["ssim"])  # raw output, EMA, mean of the last S + 1

    def ssim_then_ctrl_c(a, b):
        calls.append(1)
        if len(calls) == per_iteration * 10 + 1:  # produced with iteration 11
            raise KeyboardInterrupt
        return real_ssim(a, b)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoints, "STATE_EVERY", 4)
        mp.setattr(recording, "ssim", ssim_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            runs.run_one(spec, None, str(ckpt_folder), EVERY_STATE)
    path = checkpoints.RunCheckpoint(ckpt_folder, spec.as_dict()).path
    state = torch.load(path, weights_only=True, map_location="cpu")
    assert state["fitter"]["t"] == 8
    return spec, whole, state


def assert_same_series(series, whole):
    assert set(series) == set(whole)
    for key, values in whole.items():
        if key != "seconds":
            np.testing.assert_array_equal(series[key], values, err_msg=key)


def plant(folder: Path, spec, state: dict) -> Path:
    path = checkpoints.RunCheckpoint(folder, spec.as_dict()).path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


class Payload:
    """Unpickled, it opens `marker` for writing: code a checkpoint must never run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# --- checkpoints --------------------------------------------------------------------------


@pytest.mark.parametrize("container", ["torch zip", "bare pickle"])
def test_a_planted_malicious_checkpoint_runs_nothing_and_the_run_starts_fresh(
    tmp_path, bench, container, monkeypatch
):
    spec, whole, _ = bench
    store = ResultStore(tmp_path / "r.sqlite")
    path = checkpoints.RunCheckpoint(checkpoints.folder_for(store.path), spec.as_dict()).path
    path.parent.mkdir()
    marker, control = tmp_path / "pwned", tmp_path / "control"
    if container == "torch zip":
        torch.save({"format": checkpoints.FORMAT, "x": Payload(control)}, tmp_path / "c.pt")
        torch.load(tmp_path / "c.pt", weights_only=False)  # the payload is live: it runs
        torch.save({"format": checkpoints.FORMAT, "x": Payload(marker)}, path)
    else:
        pickle.loads(pickle.dumps(Payload(control)))
        path.write_bytes(pickle.dumps({"format": checkpoints.FORMAT, "x": Payload(marker)}))
    assert control.exists()
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # must not open the door
    with pytest.warns(UserWarning) as caught:
        assert run_grid([spec], store, **QUIET) == 1
    assert not marker.exists()
    texts = [str(w.message) for w in caught]
    assert any(f"ignoring checkpoint {path}: unreadable" in t for t in texts), texts
    assert any(t.endswith("the run starts over") for t in texts), texts
    assert not any("weights_only" in t for t in texts), texts  # torch's advice is not passed on
    (run,) = store.runs()
    assert run.summary["resumed_at"] is None and not path.exists()
    assert_same_series(run.series, whole)


def _first(net: dict, change) -> None:
    key = next(iter(net))
    net[key] = change(net[key])


CORRUPTIONS = {  # each changes a genuine checkpoint's state in place
    "a series missing": lambda s: s["series"].pop("psnr"),
    "a series shorter than t": lambda s: s["series"].update(mse=s["series"]["mse"][:5]),
    "a series that is a list": lambda s: s["series"].update(mse=[0.0] * 12),
    "no optimiser state": lambda s: s["fitter"].pop("opt"),
    "no WMV window": lambda s: s["criteria"].pop("wmv"),
    "no EMA": lambda s: s["averages"].pop("ema"),
    "no clock": lambda s: s.pop("seconds"),
    "t as a string": lambda s: s["fitter"].update(t="8"),
    "the fitter as a list": lambda s: s.update(fitter=[1, 2]),
    "a network tensor of another shape": lambda s: _first(
        s["fitter"]["net"], lambda v: v.flatten()[1:]
    ),
    "an Adam moment of another shape": lambda s: s["fitter"]["opt"]["state"][0].update(
        exp_avg=torch.zeros(2)
    ),
    "a short guard snapshot": lambda s: s["fitter"].update(snapshot=s["fitter"]["snapshot"][:3]),
    "an EMA of another size": lambda s: s["averages"]["ema"].update(value=torch.zeros(1, 3, 8, 8)),
    "a WMV window of other outputs": lambda s: s["criteria"]["wmv"].update(count=3),
    "a box average of other outputs": lambda s: s["averages"]["box100"].update(count=5),
}


def test_the_genuine_checkpoint_resumes(tmp_path, bench):
    """The control for the corruptions below: untouched, the same file is resumed from."""
    spec, whole, state = bench
    plant(tmp_path, spec, state)
    _, series, summary = runs.run_one(spec, None, str(tmp_path))
    assert summary["resumed_at"] == 8
    assert_same_series(series, whole)


@pytest.mark.parametrize("what", list(CORRUPTIONS))
def test_a_checkpoint_with_wrong_contents_means_a_fresh_run(tmp_path, bench, what):
    spec, whole, state = bench
    state = copy.deepcopy(state)
    CORRUPTIONS[what](state)
    path = plant(tmp_path, spec, state)
    with pytest.warns(
        UserWarning, match=re.escape(f"ignoring checkpoint {path}: ") + ".*; the run starts over"
    ):
        _, series, summary = runs.run_one(spec, None, str(tmp_path))
    assert summary["resumed_at"] is None
    assert_same_series(series, whole)  # as if no checkpoint had been there


def test_a_failure_while_applying_a_checkpoint_leaves_the_fitter_fresh(tmp_path, bench):
    spec, _, state = bench
    plant(tmp_path, spec, state)
    _, noisy = synthetic_pair(spec.path, TINY.crop, spec.sigma, spec.seed)

    def new_fitter():
        return Fitter(torch.from_numpy(noisy).permute(2, 0, 1), TINY.fit_settings(spec.seed))

    fitter, fresh = new_fitter(), new_fitter()
    ckpt = checkpoints.RunCheckpoint(tmp_path, spec.as_dict())

    def fails(_state):  # after the fitter was loaded, as a criterion's own loading could
        raise RuntimeError("the window would not load")

    with pytest.warns(UserWarning, match="RuntimeError: the window would not load"):
        assert ckpt.resume(fitter, fails) is None
    assert fitter.t == 0 and fitter.snapshot is None and not fitter.opt.state
    mine, theirs = fitter.state_dict(), fresh.state_dict()
    for key, value in theirs["net"].items():
        assert torch.equal(mine["net"][key], value), key
    assert torch.equal(mine["noise_gen"], theirs["noise_gen"])
    assert [it.loss for it in fitter.run(4)] == [it.loss for it in fresh.run(4)]


def test_a_calibration_checkpoint_with_a_short_series_means_a_fresh_recording(
    tmp_path, folder, monkeypatch
):
    image = list_images(folder)[0]
    (spec,) = calibration_specs([image], [25], TINY)
    _, whole, _ = runs.run_one(spec)
    monkeypatch.setattr(checkpoints, "STATE_EVERY", 4)
    real_psnr, calls = recording.psnr, []
    per_iteration = 1 + len(spec.averages)  # the raw output's PSNR and each average's

    def psnr_then_ctrl_c(a, b):
        calls.append(1)
        if len(calls) == 10 * per_iteration + 1:  # produced with iteration 11
            raise KeyboardInterrupt
        return real_psnr(a, b)

    monkeypatch.setattr(recording, "psnr", psnr_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        runs.run_one(spec, None, str(tmp_path), EVERY_STATE)
    monkeypatch.setattr(recording, "psnr", real_psnr)
    path = checkpoints.RunCheckpoint(tmp_path, spec.as_dict()).path
    state = torch.load(path, weights_only=True)
    assert state["fitter"]["t"] == 8
    state["series"]["psnr"] = state["series"]["psnr"][:6]
    torch.save(state, path)
    with pytest.warns(UserWarning, match="series psnr .* the run starts over"):
        _, series, _ = runs.run_one(spec, None, str(tmp_path))
    assert_same_series(series, whole)


# --- the store: locks ---------------------------------------------------------------------


def hold_lock(path: Path, seconds: float, ready: threading.Event) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    ready.set()
    time.sleep(seconds)
    db.execute("COMMIT")
    db.close()


def test_a_run_finishing_while_another_process_holds_the_lock_is_stored(tmp_path, monkeypatch):
    # a short busy timeout, so that it is the retries that wait the lock out
    monkeypatch.setattr(store_module, "BUSY_SECONDS", 0.2)
    monkeypatch.setattr(store_module, "RETRY_PAUSE", 0.1)
    monkeypatch.setattr(store_module, "ATTEMPTS", 100)
    store = ResultStore(tmp_path / "r.sqlite")
    ready = threading.Event()
    holder = threading.Thread(target=hold_lock, args=(store.path, 2.0, ready))
    holder.start()
    ready.wait()
    start = time.monotonic()
    key = store.put({"sigma": 25}, {"mse": np.arange(3.0)}, {"psnr": 30.0})
    waited = time.monotonic() - start
    holder.join()
    assert waited > 1.0  # it did meet the lock
    assert store.has(key) and ResultStore(store.path).get(key).summary["psnr"] == 30.0


def test_a_lock_outlasting_the_retries_is_reported_as_a_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "BUSY_SECONDS", 0.05)
    monkeypatch.setattr(store_module, "RETRY_PAUSE", 0.01)
    monkeypatch.setattr(store_module, "ATTEMPTS", 3)
    store = ResultStore(tmp_path / "r.sqlite")
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    for attempt in (
        lambda: store.put({"sigma": 25}, {"mse": np.zeros(2)}, {}),
        lambda: ResultStore(store.path),
        lambda: ResultStore(store.path, readonly=True),
    ):
        with pytest.raises(DipstopError, match="is locked by another process") as err:
            attempt()
        assert "not a dipstop" not in str(err.value) and "\n" not in str(err.value)
    other.execute("COMMIT")
    store.put({"sigma": 25}, {"mse": np.zeros(2)}, {})
    assert len(list(store.runs())) == 1


# --- the store: read-only, foreign files, corrupt rows ------------------------------------


def snapshot_of(path: Path) -> tuple:
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


def test_read_only_refuses_what_is_not_a_store_and_leaves_it_as_it_was(tmp_path):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (x TEXT)")
        db.execute("INSERT INTO notes VALUES ('mine')")
    db.close()
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    text = tmp_path / "text.sqlite"
    text.write_text("not sqlite at all, just some text that is long enough" * 20)
    for path, why in ((other, "its tables: notes"), (empty, "no tables"), (text, "")):
        before = snapshot_of(path)
        with pytest.raises(DipstopError, match="not a dipstop results store") as err:
            ResultStore(path, readonly=True)
        assert why in str(err.value) and "\n" not in str(err.value)
        assert snapshot_of(path) == before
    before = snapshot_of(other)
    with pytest.raises(DipstopError, match="its tables: notes"):
        ResultStore(other)  # nor does a writable open add dipstop's tables to it
    assert snapshot_of(other) == before


def test_the_report_command_opens_the_store_read_only(tmp_path, capsys):
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")  # a writable open would turn it into an empty store
    before = snapshot_of(empty)
    assert main(["report", str(empty), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dipstop: error:") and "not a dipstop results store" in err
    assert "\n" not in err and snapshot_of(empty) == before
    store = ResultStore(tmp_path / "r.sqlite")
    key = store.put({"kind": "bench", "sigma": 25}, {"mse": np.zeros(2)}, {"psnr": 1.0})
    store.close()
    before = snapshot_of(store.path)
    readonly = ResultStore(store.path, readonly=True)
    assert readonly.get(key).summary == {"psnr": 1.0} and len(list(readonly.runs())) == 1
    with pytest.raises(DipstopError, match="read-only"):
        readonly.put({"sigma": 30}, {"mse": np.zeros(2)}, {})
    readonly.close()
    assert snapshot_of(store.path) == before


def test_a_runs_table_with_other_columns_is_refused(tmp_path):
    path = tmp_path / "odd.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema', '1')")
        db.execute("CREATE TABLE runs (key TEXT PRIMARY KEY, result TEXT)")
    db.close()
    for readonly in (True, False):
        with pytest.raises(DipstopError, match=r"has columns \(key, result\)"):
            ResultStore(path, readonly=readonly)


def test_corrupt_rows_are_skipped_with_a_warning_naming_their_key(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    keys = [store.put({"sigma": s}, {"mse": np.full(3, s)}, {"s": s}) for s in (10, 20, 30, 40)]
    corruptions = {
        keys[0]: ("series", b"\x00\xffnot an archive"),
        keys[1]: ("summary", "{not json"),
        keys[2]: ("spec", "[1, 2]"),
    }
    for key, (column, value) in corruptions.items():
        store.db.execute(f"UPDATE runs SET {column}=? WHERE key=?", (value, key))
    with pytest.warns(UserWarning) as caught:
        (good,) = store.runs()
    assert good.key == keys[3] and good.summary == {"s": 40}
    texts = " ".join(str(w.message) for w in caught)
    for key in corruptions:
        assert f"run {key}" in texts
        with pytest.raises(DipstopError, match=f"run {key} .* is corrupt"):
            store.get(key)


# --- claims: concurrent benches on one store ----------------------------------------------


@dataclass(frozen=True)
class FakeSpec:
    name: str

    def as_dict(self) -> dict:
        return {"kind": "fake", "image": self.name, "sigma": 25.0, "seed": 0}


def fake_runner(computed: list, interrupt_at: str | None = None):
    def run(spec, device=None, folder=None, switches=None):
        if spec.name == interrupt_at:
            raise KeyboardInterrupt
        computed.append(spec.name)
        summary = {"peak_psnr": 30.0, "peak_t": 1, "seconds": 0.0}
        return spec.as_dict(), {"mse": np.zeros(3)}, summary

    return run


def claim_rows(store: ResultStore) -> dict:
    return {k: o for k, o in store.db.execute("SELECT key, owner FROM claims")}


def test_live_claims_are_respected_and_stale_ones_taken_over(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    specs = {name: FakeSpec(name) for name in ("live", "dead", "old", "away", "free")}
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    host, now = store_module.socket.gethostname(), time.time()
    stale = now - store_module.STALE_SECONDS - 1
    planted = {  # owner, host, pid, heartbeat
        "live": ("other bench", host, os.getpid(), now),
        "dead": ("a killed bench", host, dead.pid, now),
        "old": ("a bench elsewhere, gone quiet", "elsewhere", 1, stale),
        "away": ("a bench elsewhere", "elsewhere", 1, now),
    }
    for name, row in planted.items():
        store.db.execute(
            "INSERT INTO claims VALUES (?, ?, ?, ?, ?)", (run_key(specs[name].as_dict()), *row)
        )
    computed, lines = [], []
    assert (
        run_grid(list(specs.values()), store, log=lines.append, runner=fake_runner(computed)) == 3
    )
    assert sorted(computed) == ["dead", "free", "old"]
    assert sum("skipping live" in line or "skipping away" in line for line in lines) == 2
    assert sorted(claim_rows(store).values()) == ["a bench elsewhere", "other bench"]


def test_claims_are_released_when_a_bench_is_interrupted(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    specs = [FakeSpec("a"), FakeSpec("b"), FakeSpec("c")]
    computed = []
    with pytest.raises(KeyboardInterrupt):
        run_grid(specs, store, runner=fake_runner(computed, interrupt_at="b"), **QUIET)
    assert computed == ["a"] and not claim_rows(store)
    assert run_grid(specs, store, runner=fake_runner(computed), **QUIET) == 2


def test_a_bench_keeps_its_claims_alive(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    assert store.claim("k")
    (before,) = store.db.execute("SELECT claimed_at FROM claims").fetchone()
    with store.claiming(every=0.05):
        time.sleep(0.4)
        (after,) = store.db.execute("SELECT claimed_at FROM claims").fetchone()
        assert after > before
        other = ResultStore(store.path)
        assert not other.claim("k")  # held by a live owner
    assert not claim_rows(store)  # released at the end


BENCH = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    import torch

    from dipstop.lab import runs
    from dipstop.lab.executor import run_grid
    from dipstop.lab.runs import bench_criteria, grid
    from dipstop.lab.store import ResultStore, run_key
    from dipstop.protocols import get_protocol

    torch.set_num_threads(1)
    folder, store_path, counter, barrier = sys.argv[1:5]
    proto = get_protocol("cpu").with_(width=8, crop=96, max_iters=4, patience=2)
    specs = grid(folder, [15, 30], proto, criteria=bench_criteria(2))

    def counting(spec, device, ckpts, switches):
        with open(counter, "a") as f:
            f.write(f"{run_key(spec.as_dict())} {os.getpid()}\\n")
        time.sleep(0.5)  # long enough for the other bench to reach the next run
        return runs.run_one(spec, device, ckpts, switches)

    Path(barrier, str(os.getpid())).touch()
    deadline = time.time() + 120
    while len(os.listdir(barrier)) < 2 and time.time() < deadline:
        time.sleep(0.01)
    run_grid(specs, ResultStore(store_path), runner=counting, log=lambda m: None)
    """
)


def test_two_benches_on_one_store_compute_every_run_once(tmp_path, folder):
    script = tmp_path / "bench.py"
    script.write_text(BENCH)
    counter, barrier = tmp_path / "computed.txt", tmp_path / "barrier"
    barrier.mkdir()
    store_path = tmp_path / "shared.sqlite"
    ResultStore(store_path).close()  # created before, as a bench already started would have
    cmd = [sys.executable, str(script), str(folder), str(store_path), str(counter), str(barrier)]
    env = {**os.environ, "PYTHONPATH": str(Path(runs.__file__).parents[2])}
    procs = [subprocess.Popen(cmd, env=env) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    lines = [line.split() for line in counter.read_text().splitlines()]
    keys = [key for key, _ in lines]
    proto = get_protocol("cpu").with_(width=8, crop=96, max_iters=4, patience=2)  # the script's
    specs = grid(folder, [15, 30], proto, criteria=bench_criteria(2))
    expected = {run_key(s.as_dict()) for s in specs}
    assert len(keys) == 4 == len(set(keys)) and set(keys) == expected  # each computed once
    assert len({pid for _, pid in lines}) == 2  # and both benches did some of them
    assert {r.key for r in ResultStore(store_path).runs()} == expected
    assert not claim_rows(ResultStore(store_path))
