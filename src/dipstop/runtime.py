"""Process-level settings that make CPU fitting faster; the CLI applies them at start."""

from __future__ import annotations

import ctypes
import ctypes.util

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the OS every iteration.

    Per-iteration activations are large and short-lived; with glibc's defaults each is
    mmap'ed and unmapped again. docs/benchmarks.md: 39-69% slower iterations at 256x256 and
    above without this (at 23-41% more peak memory). Returns False where not glibc.
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


def set_threads(threads: int | None) -> None:
    """Use `threads` intra-op threads (None keeps PyTorch's default: one per core)."""
    if threads:
        torch.set_num_threads(threads)
