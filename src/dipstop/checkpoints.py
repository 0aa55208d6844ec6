"""Checkpoints of unfinished runs, so that a long run resumes where it was interrupted.

A bench run of the paper protocol is 20,000 iterations (minutes on a GPU, hours on a CPU),
a whole-photo `denoise` on a CPU can be an hour: restarting it from scratch after a Ctrl-C,
a kill -9 or a time limit throws that away. A run keeps one file, named by `run_key` of its
spec, in a folder: beside the results store for the lab (`<store>.partial/`), the
`resume_dir` of `dipstop.denoise` (the CLI's `OUTPUT.partial/`). It is written at most
every `seconds`, atomically (a temporary file renamed over the old one, so a kill mid-write
leaves the previous one), and deleted once the run is finished (in the store, or the
denoised image written). `Switches.checkpoint_seconds` sets the interval.

A checkpoint is read with `torch.load(weights_only=True)`: only tensors and plain containers
(dict, list, tuple, str, int, float, bool, None), never code, since a file planted in the
folder must not run anything. Everything in it is checked against the run before any of it
is applied: one that is unreadable, of another format, spec or fit (device type, image size,
network), or whose contents do not fit the run (a missing key, a short or missing series, a
tensor of another shape) is ignored with a warning and the run starts over from scratch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout

from dipstop.errors import DipstopError
from dipstop.fitting import Fitter

CHECKPOINT_SECONDS = 60.0  # at most one write a minute: the paper run's window alone is 185 MB
FORMAT = 2  # bumped when what a checkpoint holds changes; other formats are ignored
STATE_EVERY = 100  # iterations between the fitter's state copies (6 ms each at width 128)


def run_key(spec: dict) -> str:
    """sha256 (64 hex digits) of the canonical JSON of `spec`, everything that determines a
    run (`dipstop.lab.runs.RunSpec.as_dict()`, or a `denoise` fit's): sorted keys, no
    whitespace, values JSON cannot hold written with `str`.

    The results store's key and a checkpoint's file name: the same spec always gives the
    same key, whatever its key order.

    Examples
    --------
    >>> run_key({"sigma": 25, "seed": 0}) == run_key({"seed": 0, "sigma": 25})
    True
    >>> run_key({"sigma": 25, "seed": 0}) == run_key({"sigma": 25, "seed": 1})
    False
    """
    canon = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()


def image_spec(
    pixels: np.ndarray, clean: np.ndarray | None, settings: dict[str, Any]
) -> dict[str, Any]:
    """The spec of a `denoise` fit, for `run_key`: digests of its pixels and clean image, and
    every setting that changes its result (device and engine switches excepted: they change
    how, not what). Names a whole image's checkpoint and a tiled run's kept tiles.

    >>> a = np.zeros((2, 2), np.float32)
    >>> image_spec(a, None, {"seed": 0}) == image_spec(a.copy(), None, {"seed": 0})
    True
    >>> image_spec(a, None, {})["pixels"] == image_spec(a.reshape(4, 1), None, {})["pixels"]
    False
    """

    def digest(array: np.ndarray | None) -> str | None:
        if array is None:
            return None
        h = hashlib.sha256(str(array.shape).encode())
        h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()

    kept = {k: v for k, v in settings.items() if k not in ("device", "switches")}
    return {"pixels": digest(pixels), "clean": digest(clean), **kept}


def folder_for(store_path: str | Path) -> Path:
    """Where the checkpoints of a store's unfinished runs live: `<store>.partial/`."""
    return Path(f"{Path(store_path).resolve()}.partial")


class RunCheckpoint:
    """The checkpoint file of one run (`folder` None: keep none).

    >>> ckpt = RunCheckpoint(None, {"image": "a.png"})
    >>> ckpt.load() is None, ckpt.due()
    (True, False)
    """

    def __init__(
        self, folder: str | Path | None, spec: dict, seconds: float = CHECKPOINT_SECONDS
    ) -> None:
        self.spec = spec
        self.path = Path(folder) / f"{run_key(spec)}.pt" if folder else None
        self.seconds = seconds
        self._last = time.monotonic()

    def load(self) -> dict | None:
        """The saved state of this run, or None when there is none (or it is unusable).

        Keys: "fitter" (`Fitter.state_dict()`), "series" (NumPy arrays), "seconds" (the run's
        clock at the save) and whatever else was saved. Only the file's format is checked
        here; `resume` checks its contents against the run.
        """
        if self.path is None or not self.path.is_file():
            return None
        try:
            with warnings.catch_warnings():  # torch's own notes on the file are not for users
                warnings.simplefilter("ignore")
                state = torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception as exc:  # a truncated, foreign or malicious file: start over, say so
            return self._ignore(f"unreadable ({why_unreadable(exc)})")
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            return self._ignore("of another dipstop version")
        if state.get("spec") != self.spec:
            return None  # another run's file under this key: cannot happen short of a collision
        series, seconds = state.get("series"), state.get("seconds")
        if not isinstance(state.get("fitter"), dict) or not isinstance(series, dict):
            return self._ignore("incomplete (no fitter state or no series)")
        if not all(isinstance(k, str) and torch.is_tensor(v) for k, v in series.items()):
            return self._ignore("incomplete (a series that is not an array)")
        if not _is_real(seconds) or not 0 <= seconds < math.inf:
            return self._ignore(f"incomplete (its clock is {seconds!r})")
        state["series"] = {k: v.numpy() for k, v in series.items()}
        return state

    def resume(
        self,
        fitter: Fitter,
        apply: Callable[[dict], None] | None = None,
        series: dict[str, np.ndarray] | None = None,
    ) -> dict | None:
        """Load the checkpoint into a fitter that has not run, then `apply(state)` for the
        caller's own state (a criterion's window, a moving average). None, with `fitter` as
        it was, when there is no usable checkpoint: the run starts over.

        `series` is the run's record (name -> an array as long as its T iterations, or a
        broadcast view standing for one): the saved series must be those, each with a value
        for every iteration up to the saved one, which must not be past T. The fit's state
        is checked against `fitter` before any of it is applied; should loading or `apply`
        fail anyway, `fitter` is reset to its fresh state. `apply` must raise before changing
        anything of the caller's, or the caller must discard what it changed when None comes
        back. The file resumed from is touched, so that its folder shows it is this run's
        (`batch.denoise_file` tells whether a run cut short kept progress).
        """
        state = self.load()
        if state is None:
            return None
        fresh = fitter.state_dict()
        try:
            _check_fit(state["fitter"], fresh, fitter)
            if series is not None:
                _check_series(state["series"], series, state["fitter"]["t"])
        except _OtherFit as exc:
            return self._ignore(f"of another fit ({exc})")
        except ValueError as exc:
            return self._ignore(f"not of this run ({exc})")
        try:
            fitter.load_state_dict(state["fitter"])
            if apply is not None:
                apply(state)
        except Exception as exc:  # checked above, so unexpected: any half-loaded state goes
            fitter.load_state_dict(fresh)
            fitter.snapshot = None  # the fresh state has none; load_state_dict keeps the old
            return self._ignore(f"not of this run ({type(exc).__name__}: {_first_line(exc)})")
        with contextlib.suppress(OSError):
            os.utime(self.path)
        return state

    @property
    def state_every(self) -> int:
        """How often to ask `Fitter.run` for its state: every STATE_EVERY steps, or never."""
        return STATE_EVERY if self.path is not None else 0

    def due(self) -> bool:
        """Whether `seconds` have passed since the last save (or since this run began)."""
        return self.path is not None and time.monotonic() - self._last >= self.seconds

    def save(
        self, fitter: dict, series: dict[str, np.ndarray], seconds: float, **extra: object
    ) -> None:
        """Write a fitter's state, the series recorded so far (a value per iteration up to
        the fitter's) and the run's clock, atomically (`write_atomically`).

        A failed write (a full disk) warns and leaves the previous checkpoint: the run goes on.
        """
        if self.path is None:
            return
        state = {
            "format": FORMAT,
            "spec": self.spec,
            "fitter": fitter,
            "series": {k: torch.from_numpy(np.array(v)) for k, v in series.items()},
            "seconds": float(seconds),
            **extra,
        }
        try:
            write_atomically(self.path, lambda tmp: torch.save(state, tmp))
        except OSError as exc:
            warnings.warn(f"could not write checkpoint {self.path} ({exc})", stacklevel=2)
        self._last = time.monotonic()

    def discard(self) -> None:
        """Delete the file and any temporary left by a killed write (the run is stored)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            for tmp in self.path.parent.glob(f"{self.path.stem}.*.tmp"):
                tmp.unlink(missing_ok=True)

    def _ignore(self, why: str) -> None:
        warnings.warn(f"ignoring checkpoint {self.path}: {why}; the run starts over", stacklevel=3)
        return None


def tensor(
    value: object, shape: tuple, what: str, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """`value` if it is a tensor of `shape` (and `dtype`, else floating), else ValueError."""
    if not torch.is_tensor(value):
        raise ValueError(f"{what} is {type(value).__name__}, not a tensor")
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{what} is {tuple(value.shape)}, this run's is {tuple(shape)}")
    if (value.dtype != dtype) if dtype is not None else not value.dtype.is_floating_point:
        raise ValueError(f"{what} is {value.dtype}")
    return value


class _OtherFit(ValueError):
    """The state was written by another fit: another device type, image size or network."""


# what changes as a fit runs; every other key of `Fitter.state_dict()` names the fit
_PROGRESS = ("t", "previous_loss", "snapshot_loss", "restores", "net", "opt", "noise_gen")


def _check_fit(state: object, fresh: dict, fitter: Fitter) -> None:
    """ValueError unless `state` is a `Fitter.state_dict()` that `fitter` can continue from:
    the same fit, every key there, every tensor of the shape and dtype the fit's own has."""
    if not isinstance(state, dict):
        raise ValueError("the fit's state is not a dict")
    identity = {k: v for k, v in fresh.items() if k not in (*_PROGRESS, "snapshot")}
    theirs = {k: state.get(k) for k in identity}
    if theirs != identity:
        raise _OtherFit(f"{theirs}; this fit is {identity}")
    missing = [k for k in fresh if k not in state]
    if missing:
        raise ValueError(f"the fit's state has no {', '.join(missing)}")
    for key in ("t", "restores"):
        value = state[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"the fit's {key} is {value!r}")
    for key in ("previous_loss", "snapshot_loss"):
        if not _is_real(state[key]):
            raise ValueError(f"the fit's {key} is {state[key]!r}")
    _check_like(state["net"], fresh["net"], "network")
    _check_like(state["noise_gen"], fresh["noise_gen"], "noise generator state")
    params = [p for group in fitter.opt.param_groups for p in group["params"]]
    moments = _check_adam(state["opt"], fresh["opt"], params)
    live = [*fitter.net.parameters(), *fitter.net.buffers()]
    snapshot = state["snapshot"]
    full = live + moments  # a snapshot taken before Adam had state holds only `live`
    if snapshot is not None:
        if not isinstance(snapshot, list) or len(snapshot) not in (len(live), len(full)):
            raise ValueError("the divergence guard's snapshot does not match the network")
        for i, (saved, own) in enumerate(zip(snapshot, full[: len(snapshot)], strict=True)):
            tensor(saved, own.shape, f"snapshot tensor {i}", own.dtype)


def _check_adam(state: object, fresh: dict, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """ValueError unless `state` is the Adam state of these parameters; returns its moment
    tensors in the order `Fitter._state` lists them (parameter by parameter)."""
    if not isinstance(state, dict) or not {"state", "param_groups"} <= set(state):
        raise ValueError("the optimiser state has no state or param_groups")
    groups, moments = state["param_groups"], state["state"]
    if not isinstance(groups, list) or len(groups) != len(fresh["param_groups"]):
        raise ValueError("the optimiser state has other parameter groups")
    for group, own in zip(groups, fresh["param_groups"], strict=True):
        if not isinstance(group, dict) or group.get("params") != own["params"]:
            raise ValueError("the optimiser state has other parameter groups")
    if not isinstance(moments, dict) or not set(moments) <= set(range(len(params))):
        raise ValueError("the optimiser state is of other parameters")
    order = []
    for i, p in enumerate(params):
        entry = moments.get(i, {})
        if not isinstance(entry, dict) or (entry and "step" not in entry):
            raise ValueError(f"the optimiser state of parameter {i} is incomplete")
        for name, value in entry.items():
            shape, dtype = ((), None) if name == "step" else (p.shape, p.dtype)
            order.append(tensor(value, shape, f"Adam's {name} of parameter {i}", dtype))
    return order


def _check_like(value: object, own: object, what: str) -> None:
    """ValueError unless `value` has the keys, and tensors of the shapes and dtypes, of `own`."""
    if torch.is_tensor(own):
        tensor(value, own.shape, what, own.dtype)
    elif isinstance(own, dict):
        if not isinstance(value, dict) or set(value) != set(own):
            raise ValueError(f"the {what} has other entries")
        for key in own:
            _check_like(value[key], own[key], f"{what} {key}")
    elif type(value) is not type(own):
        raise ValueError(f"the {what} is {value!r}")


def _check_series(saved: dict[str, np.ndarray], fresh: dict[str, np.ndarray], t: int) -> None:
    """ValueError unless `saved` has every series of `fresh`, each of its dtype with a value
    for each of the t iterations run (one of an earlier version holds all T), and T >= t."""
    if set(saved) != set(fresh):
        names = ", ".join(sorted(set(saved) ^ set(fresh)))
        raise ValueError(f"the series differ from this run's in {names}")
    for name, own in fresh.items():
        value = saved[name]
        if value.ndim != 1 or len(value) < t or value.dtype != own.dtype:
            raise ValueError(
                f"series {name} is {value.dtype} {value.shape}, not {own.dtype} of {t} iterations"
            )
    if t > min((len(v) for v in fresh.values()), default=0):
        raise ValueError(f"it is at iteration {t}, past this run's end")


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` to a temporary file beside `path`, then rename it over `path`, so a kill
    mid-write leaves the previous file (or none), never a truncated one. The temporary name
    is unique to this process and thread (two runs, or two fits of one process, never write
    the same one); it is removed if the write fails, and the OSError raised.
    """
    tmp = path.with_name(f"{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def hold(lock: Path, busy: str) -> Iterator[None]:
    """Hold the lock file `lock` (a `filelock.FileLock`) while the block runs; DipstopError
    `busy` at once if another run, or another thread of this one, holds it.

    Refuse rather than wait: the other run is most likely the same command started twice
    (a second terminal, a cron job), and waiting would fit the image again once it is done,
    or hang for the hours a photo's fit can take without a word of why; refusing says at
    once what is going on, and a batch goes on with its other files. The file is removed
    before the lock is released, so none is left beside the output: filelock checks after
    locking that its file still has a name, so a run that opened the removed file retries
    on the new one instead of sharing the lock.
    """
    lock = Path(lock)
    held = FileLock(lock, timeout=0)
    try:
        held.acquire()
    except Timeout:
        raise DipstopError(busy) from None
    except OSError as exc:
        raise DipstopError(
            f"cannot create the lock file {lock} ({exc.strerror or exc}); choose a writable "
            "location"
        ) from exc
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        held.release()


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else ""


def why_unreadable(exc: BaseException) -> str:
    """Why torch.load failed, in dipstop's words: torch's message advises loading the file
    with weights_only=False, which a checkpoint of dipstop never needs and must never get."""
    text = str(exc)
    if "weights_only" not in text and "WeightsUnpickler" not in text:
        return f"{type(exc).__name__}: {_first_line(exc)}"
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (
            f"it would import {found.group(1)}; a dipstop checkpoint holds only tensors and "
            "plain containers"
        )
    return "not a checkpoint of tensors and plain containers"
