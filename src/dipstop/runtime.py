"""Process-level settings: allocator tuning and threads (the CLI applies them at start), and
the engine switches the CLI reads from the environment."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch

from dipstop.errors import DipstopError

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the OS every iteration.

    Per-iteration activations are large and short-lived; with glibc's defaults each is
    mmap'ed and unmapped again. docs/benchmarks.md: 39-69% slower iterations at 256x256 and
    above without this (at 23-41% more peak memory). The CLI calls it at start; it affects
    the whole process.

    Returns
    -------
    bool
        Whether the settings were applied: False where the C library is not glibc.

    Examples
    --------
    >>> import platform
    >>> tune_allocator() == (platform.libc_ver()[0] == "glibc")
    True
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        )
    except (OSError, AttributeError):
        return False


def cpu_name() -> str:
    """This machine's CPU model ("AMD EPYC", "Intel(R) Xeon(R) ..."), recorded beside timings.

    Seconds are only comparable on one CPU: project machines changed between sessions, and
    bf16 ran 12x slower than fp32 on one without AMX (docs/benchmarks.md).

    Examples
    --------
    >>> isinstance(cpu_name(), str) and len(cpu_name()) > 0
    True
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def set_threads(threads: int | None) -> None:
    """Use `threads` intra-op threads (None keeps PyTorch's default: one per core).

    Sets the process-wide `torch.set_num_threads`; the CLI's --threads.

    Parameters
    ----------
    threads : int or None
        Number of threads; None (or 0) changes nothing.

    Examples
    --------
    >>> before = torch.get_num_threads()
    >>> set_threads(None); torch.get_num_threads() == before
    True
    >>> set_threads(1); torch.get_num_threads()
    1
    >>> set_threads(before)
    """
    if threads:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Switches:
    """Engine switches: how a fit runs, never what it computes. Read once, at the edge.

    - `cuda_graphs`: on CUDA, replay each step as one captured graph (`Fitter`);
    - `overlap`: how many steps host-side scoring may run behind (0: inline);
    - `checkpoint_seconds`: at most one checkpoint write per this many seconds (lab runs).

    The CLI takes them from the environment (`from_env`); Python callers pass them, or get
    these defaults.

    Examples
    --------
    >>> from dataclasses import replace
    >>> Switches().overlap, replace(Switches(), overlap=0).overlap
    (2, 0)
    """

    cuda_graphs: bool = True
    overlap: int = 2
    checkpoint_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Switches:
        """The switches set by DIPSTOP_CUDA_GRAPHS (0/1), DIPSTOP_OVERLAP (depth) and
        DIPSTOP_CHECKPOINT_SECONDS; unset or empty variables keep the defaults.

        Parameters
        ----------
        env : mapping, optional
            The environment to read; `os.environ` by default.

        Returns
        -------
        Switches

        Raises
        ------
        DipstopError
            For a value that is not one the variable takes.

        Examples
        --------
        >>> Switches.from_env({"DIPSTOP_OVERLAP": "0"}).overlap
        0
        >>> Switches.from_env({"DIPSTOP_CUDA_GRAPHS": "yes"})
        Traceback (most recent call last):
        ...
        dipstop.errors.DipstopError: DIPSTOP_CUDA_GRAPHS must be 0 or 1, got 'yes'
        """
        env = os.environ if env is None else env
        out = cls()
        graphs = env.get("DIPSTOP_CUDA_GRAPHS", "").strip()
        if graphs:
            if graphs not in ("0", "1"):
                raise DipstopError(f"DIPSTOP_CUDA_GRAPHS must be 0 or 1, got {graphs!r}")
            out = replace(out, cuda_graphs=graphs == "1")
        depth = env.get("DIPSTOP_OVERLAP", "").strip()
        if depth:
            try:
                out = replace(out, overlap=max(int(depth), 0))
            except ValueError:
                raise DipstopError(
                    f"DIPSTOP_OVERLAP must be a whole number (0 turns the overlap off), "
                    f"got {depth!r}"
                ) from None
        seconds = env.get("DIPSTOP_CHECKPOINT_SECONDS", "").strip()
        if seconds:
            try:
                value = float(seconds)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value < 0:
                raise DipstopError(
                    f"DIPSTOP_CHECKPOINT_SECONDS must be a number of seconds >= 0, got {seconds!r}"
                )
            out = replace(out, checkpoint_seconds=value)
        return out
