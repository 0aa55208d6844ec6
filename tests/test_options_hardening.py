"""Bad lam tables, devices and Ray addresses: a one-line DipstopError naming the fix, fast."""

import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import cv2
import numpy as np
import pytest
import torch

from dipstop.cli import main
from dipstop.errors import DipstopError
from dipstop.fitting import available_devices, resolve_device
from dipstop.lambda_table import lam_for_sigma, load_table, mean_iterations_for_sigma

# -- lam tables ------------------------------------------------------------------------------

GOOD = {  # a table as `dipstop calibrate -o` writes it
    "units": "lam weighs MSE against (JPEG bytes per pixel)^2",
    "protocol": {
        "name": "cpu",
        "width": 64,
        "max_iters": 3000,
        "patience": 500,
        "crop": 128,
        "lr": 0.01,
        "z_noise_std": 0.033,
    },
    "provenance": {
        "command": "dipstop calibrate ...",
        "date": "2026-01-01",
        "images": ["a.png"],
        "planned_images": ["a.png"],
        "image_folder": "data",
        "sigmas": [10.0, 30.0],
        "sizes": [16384, 36864],
        "iters": 3000,
        "output": "since-best",
        "selection": "argmin",
    },
    "entries": [
        {
            "sigma": s,
            "lam": lam,
            "mean_psnr": 30.0,
            "mean_psnr_eq4": None,
            "mean_peak_psnr": 31.0,
            "n_runs": 8,
            "images": ["a.png"],
            "mean_iterations": 900.0,
            "pixels": px,
        }
        for s, lam, px in [(10.0, 200.0, 16384), (30.0, 40.0, 16384), (10.0, 300.0, 36864)]
    ],
}


def _set(doc: dict, path: tuple, value) -> dict:
    doc = copy.deepcopy(doc)
    *parents, last = path
    target = doc
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


_DELETE = object()
TINY = ("--sigma", "20", "-T", "3", "-S", "2", "--width", "4", "--quiet")  # a fit, if any: short

# (where in the table, bad value, the words the message must name)
BAD_FIELDS = [
    (("protocol",), [1], ['"protocol"', "list"]),
    (("protocol",), None, ['"protocol"', "null"]),
    (("protocol", "name"), 3, ["protocol.name", "string"]),
    (("protocol", "width"), "64", ["protocol.width", "whole number"]),
    (("protocol", "max_iters"), 0, ["protocol.max_iters"]),
    (("protocol", "patience"), "x", ["protocol.patience"]),
    (("protocol", "crop"), "x", ["protocol.crop", "or null"]),
    (("protocol", "crop"), True, ["protocol.crop"]),
    (("protocol", "lr"), -1, ["protocol.lr", "above 0"]),
    (("protocol", "z_noise_std"), float("nan"), ["protocol.z_noise_std"]),
    (("provenance",), [1], ['"provenance"', "list"]),
    (("provenance",), "x", ['"provenance"', "string"]),
    (("provenance",), None, ['"provenance"', "null"]),
    (("provenance", "output"), 3, ["provenance.output", "output policy"]),
    (("provenance", "output"), "nonsense", ["provenance.output", "'nonsense'"]),
    (("provenance", "command"), ["dipstop"], ["provenance.command", "string"]),
    (("provenance", "images"), "a.png", ["provenance.images", "list"]),
    (("provenance", "sigmas"), [10, "x"], ["provenance.sigmas"]),
    (("provenance", "sizes"), [1.5], ["provenance.sizes"]),
    (("provenance", "iters"), 2.5, ["provenance.iters"]),
    (("units",), 3, ['"units"', "string"]),
    (("entries",), {"sigma": 10}, ['"entries"', "object"]),
    (("entries",), [], ["no entries"]),
    (("entries", 0), [10, 200], ["entry 0", "list"]),
    (("entries", 1, "lam"), -1, ["entry 1", "lam", "above 0"]),
    (("entries", 1, "lam"), float("nan"), ["entry 1", "lam"]),
    (("entries", 1, "lam"), "200", ["entry 1", "lam"]),
    (("entries", 1, "lam"), [200], ["entry 1", "lam"]),
    (("entries", 1, "lam"), _DELETE, ["entry 1", "'lam'"]),
    (("entries", 0, "sigma"), _DELETE, ["entry 0", "'sigma'"]),
    (("entries", 0, "sigma"), float("inf"), ["entry 0", "sigma"]),
    (("entries", 1, "sigma"), 10, ["sigma 10", "more than once"]),
    (("entries", 0, "pixels"), "16384", ["entry 0", "pixels"]),
    (("entries", 0, "pixels"), 10**400, ["entry 0", "pixels", "at most"]),
    (("entries", 0, "pixels"), _DELETE, ['"pixels" on 2 of its 3']),
    (("entries", 0, "n_runs"), -1, ["entry 0", "n_runs"]),
    (("entries", 0, "mean_iterations"), "900", ["entry 0", "mean_iterations"]),
    (("entries", 0, "mean_psnr"), "x", ["entry 0", "mean_psnr"]),
    (("entries", 0, "mean_peak_psnr"), [], ["entry 0", "mean_peak_psnr"]),
    (("entries", 0, "images"), [1], ["entry 0", "images"]),
]


def test_a_table_as_calibrate_writes_it_loads(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(GOOD))
    table = load_table(path)
    assert [e["sigma"] for e in table["entries"]] == [10.0, 30.0, 10.0]
    assert lam_for_sigma(20, table, pixels=20000) > 0
    assert mean_iterations_for_sigma(20, table, 20000) == 900.0


@pytest.mark.parametrize(
    "where, value, words", BAD_FIELDS, ids=[".".join(map(str, w)) for w, _, _ in BAD_FIELDS]
)
def test_a_field_of_the_wrong_type_or_shape_is_one_line_naming_file_field_and_fix(
    tmp_path, where, value, words
):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(_set(GOOD, where, value)))
    with pytest.raises(DipstopError) as caught:
        load_table(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "calibrate" in message, message
    for word in words:
        assert word in message, message


def test_a_key_given_twice_in_one_object_is_refused(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"entries": [{"sigma": 10, "lam": 2, "lam": -5}]}')
    with pytest.raises(DipstopError, match=r"gives 'lam' twice in one object; keep one"):
        load_table(path)


def test_a_bad_table_given_as_a_dict_is_refused_too():
    with pytest.raises(DipstopError, match=r"lambda table given has protocol.crop 'x'"):
        lam_for_sigma(20, _set(GOOD, ("protocol", "crop"), "x"))


@pytest.mark.parametrize(
    "where, value", [(("protocol", "crop"), "x"), (("provenance",), [1]), (("units",), 3)]
)
def test_cli_refuses_a_bad_table_in_one_line_before_fitting(capsys, tmp_path, where, value):
    image, table = tmp_path / "x.png", tmp_path / "t.json"
    cv2.imwrite(str(image), np.full((64, 64, 3), 128, np.uint8))
    table.write_text(json.dumps(_set(GOOD, where, value)))
    rc, err = _cli(capsys, "denoise", str(image), "--table", str(table), *TINY)
    _one_line_error(rc, err, str(table), where[-1])
    assert not (tmp_path / "x_denoised.png").exists()


# -- devices ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device", ["mps", "xpu", "xpu:3", "meta", "hpu", "garbage", "", "CPU", "cuda:-1", "mkldnn"]
)
def test_a_device_this_machine_lacks_is_one_line_naming_the_ones_it_has(device):
    if device in ("mps",) and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    if device.startswith("xpu") and hasattr(torch, "xpu") and torch.xpu.is_available():
        pytest.skip("this machine has an XPU")
    with pytest.raises(DipstopError) as caught:
        resolve_device(device)
    message = str(caught.value)
    assert "\n" not in message and repr(device) in message and "cpu" in message, message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:7", torch.device("cuda", 0)])
def test_cuda_without_a_gpu_is_refused(device):
    with pytest.raises(DipstopError, match=r"no CUDA GPU is available; use cpu$"):
        resolve_device(device)


def test_a_cuda_index_beyond_the_gpus_names_the_ones_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert available_devices()[:3] == ["cpu", "cuda:0", "cuda:1"]
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DipstopError, match=r"has 2 cuda devices; use one of cpu, cuda:0, cuda:1"):
        resolve_device("cuda:7")


def test_on_a_cluster_only_the_name_is_checked():
    assert resolve_device("cuda:3", here=False) == torch.device("cuda", 3)
    with pytest.raises(DipstopError, match="cannot fit on device 'meta'"):
        resolve_device("meta", here=False)


def test_the_python_api_refuses_a_missing_device_before_any_work():
    from dipstop.api import denoise

    with pytest.raises(DipstopError, match="'meta'"):
        denoise(np.zeros((64, 64), np.uint8), sigma=20, device="meta", max_iters=3, width=4)


@pytest.mark.parametrize("device", ["mps", "meta", "cuda:99", "xpu"])
def test_cli_refuses_a_missing_device_in_one_line(capsys, tmp_path, device):
    if device in available_devices():
        pytest.skip(f"this machine has {device}")
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 128, np.uint8))
    _one_line_error(*_cli(capsys, "denoise", str(image), "--device", device, *TINY), repr(device))


def test_bench_refuses_a_missing_device_before_touching_the_store(capsys, tmp_path):
    store = tmp_path / "runs.sqlite"
    rc, err = _cli(capsys, "bench", "--data", str(tmp_path), "--store", str(store),
                   "--device", "meta")  # fmt: skip
    _one_line_error(rc, err, "'meta'")
    assert not store.exists()


def test_run_grid_refuses_a_missing_device_before_claiming(tmp_path):
    from dipstop.lab.executor import run_grid
    from dipstop.lab.store import ResultStore

    store = ResultStore(tmp_path / "runs.sqlite")
    ran = []
    with pytest.raises(DipstopError, match="'meta'"):
        run_grid([object()], store, device="meta", runner=lambda *a: ran.append(a))
    store.close()
    assert not ran


# -- Ray -------------------------------------------------------------------------------------


def _closed_port() -> int:
    """A local TCP port nothing listens on (a dead head's GCS port looks like this)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FakeRay:
    """Stands in for the `ray` module: records what `ray.init` was asked."""

    def __init__(self):
        self.inits = []

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.inits.append(kwargs)

    def cluster_resources(self):
        return {"CPU": 3.0}


@pytest.mark.parametrize("address", [None, ""])
def test_no_address_means_a_fresh_local_ray_not_the_recorded_one(monkeypatch, address):
    from dipstop.raytasks import ray_slots

    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_slots(address) == 3
    assert fake.inits[0]["address"] == "local"


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}"])
def test_an_unreachable_address_is_one_line_within_seconds(monkeypatch, address):
    from dipstop.raytasks import ray_slots

    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    address = address.format(port=_closed_port())
    start = time.monotonic()
    with pytest.raises(DipstopError, match=r"cannot reach the Ray at --ray .*; start it"):
        ray_slots(address)
    assert time.monotonic() - start < 10 and not fake.inits


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1", "host:port", "h:70000"])
def test_a_malformed_address_is_refused(address):
    from dipstop.raytasks import check_ray_address

    with pytest.raises(DipstopError, match="is not a Ray address; give host:port"):
        check_ray_address(address)


def test_ray_address_in_the_environment_is_checked_and_named(monkeypatch):
    from dipstop.raytasks import check_ray_address

    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_closed_port()}")
    with pytest.raises(DipstopError, match=r"RAY_ADDRESS=127.0.0.1:\d+ .*unset RAY_ADDRESS"):
        check_ray_address("")


def test_cli_refuses_an_unreachable_ray_in_one_line(capsys, tmp_path):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 128, np.uint8))
    rc, err = _cli(capsys, "denoise", str(image), "--ray", f"127.0.0.1:{_closed_port()}", *TINY)
    _one_line_error(rc, err, "cannot reach the Ray", "drop the address")


def test_ray_starts_fresh_after_a_local_head_died():
    """A dead head's record in Ray's temp folder: --ray alone starts a local Ray anyway,
    and a DipstopError raised in a task reaches the caller as itself.

    Writes the record a `ray start --head` leaves (its GCS port now closed) in a private
    RAY_TMPDIR, and joins from a child process, killed with its group if it hangs."""
    pytest.importorskip("ray")
    folder = tempfile.mkdtemp(prefix="rd", dir="/tmp")  # short: Ray's sockets live in it
    os.makedirs(os.path.join(folder, "ray"))
    with open(os.path.join(folder, "ray", "ray_current_cluster"), "w") as f:
        f.write(f"127.0.0.1:{_closed_port()}")
    env = {**os.environ, "RAY_TMPDIR": folder}
    env.pop("RAY_ADDRESS", None)
    code = textwrap.dedent(
        """
        import ray
        from dipstop.errors import DipstopError
        from dipstop.fitting import resolve_device
        from dipstop.raytasks import ray_map, ray_slots
        print("slots", ray_slots(""), flush=True)
        try:  # a DipstopError in a task comes back as itself: one line, no remote traceback
            list(ray_map(resolve_device, [("meta",)]))
        except DipstopError as exc:
            print("task error:", type(exc).__name__, repr(str(exc)), flush=True)
        ray.shutdown()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = child.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        out = "still waiting on the dead head after 150 s"
    finally:
        with contextlib.suppress(ProcessLookupError):  # the child and the Ray it started
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        shutil.rmtree(folder, ignore_errors=True)
    assert "slots" in out, out[-2000:]
    assert "task error: DipstopError \"dipstop cannot fit on device 'meta'; use" in out, out[-2000:]


# -- helpers ---------------------------------------------------------------------------------


def _cli(capsys, *argv):
    try:
        rc = main(list(argv))
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err.strip()


def _one_line_error(rc, err, *words):
    assert rc == 2, err
    assert err.count("\n") == 0 and err.startswith("dipstop: error:"), err
    for word in words:
        assert word in err, err
