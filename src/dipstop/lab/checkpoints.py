"""Checkpoints of unfinished runs, so that a long run resumes where it was interrupted.

A bench run of the paper protocol is 20,000 iterations (minutes on a GPU, hours on a CPU):
restarting it from scratch after a Ctrl-C, a kill -9 or a time limit throws that away. A
run keeps one file, named by its store key, in a folder beside the results store
(`<store>.partial/`). It is written at most every `seconds`, atomically (a temporary file
renamed over the old one, so a kill mid-write leaves the previous one), and deleted once
the finished run is in the store. A checkpoint that is unreadable, of another format, of
another spec or of another fit (device type, image size, network) is ignored with a
warning: the run starts over. `Switches.checkpoint_seconds` sets the interval.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dipstop.fitting import Fitter
from dipstop.lab.store import run_key

CHECKPOINT_SECONDS = 60.0  # at most one write a minute: the paper run's window alone is 185 MB
FORMAT = 2  # bumped when what a checkpoint holds changes; other formats are ignored
STATE_EVERY = 100  # iterations between the fitter's state copies (6 ms each at width 128)


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
        clock at the save) and whatever else was saved.
        """
        if self.path is None or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path)
        except Exception as exc:  # a truncated or foreign file: start over, say so
            return self._ignore(f"unreadable ({exc})")
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            return self._ignore("of another dipstop version")
        if state.get("spec") != self.spec:
            return None  # another run's file under this key: cannot happen short of a collision
        state["series"] = {k: v.numpy() for k, v in state["series"].items()}
        return state

    def resume(self, fitter: Fitter, apply: Callable[[dict], None] | None = None) -> dict | None:
        """Load the checkpoint into a fitter that has not run, then `apply(state)` for the
        caller's own state (a criterion's window, a moving average). None, with `fitter`
        untouched, when there is no usable checkpoint."""
        state = self.load()
        if state is None:
            return None
        try:
            fitter.load_state_dict(state["fitter"])
        except (KeyError, ValueError) as exc:  # checked before anything is changed
            return self._ignore(f"of another fit ({exc})")
        if apply is not None:
            apply(state)
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
        """Write a fitter's state, the series recorded so far and the run's clock, atomically.

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
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, tmp)
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
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
