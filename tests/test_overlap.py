"""Host-side criteria overlapped with the next fitting step (dipstop.overlap)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from dipstop import denoise
from dipstop.overlap import overlapped


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_pairs_in_order_at_any_depth(depth: int) -> None:
    got = list(overlapped(range(20), lambda x: x * x, depth=depth))
    assert got == [(x, x * x) for x in range(20)]


def test_work_runs_while_the_next_item_is_produced() -> None:
    """With depth 1, work on item t sees item t+1 produced; inline, it never does."""
    n = 6
    produced = [threading.Event() for _ in range(n + 1)]

    def items():
        for i in range(n):
            produced[i].set()
            yield i
        produced[n].set()  # asked for one more: the end

    def waits_for_next(i: int) -> bool:
        return produced[i + 1].wait(timeout=5)

    assert [seen for _, seen in overlapped(items(), waits_for_next, depth=1)] == [True] * n
    for event in produced:
        event.clear()
    inline = [seen for _, seen in overlapped(items(), lambda i: produced[i + 1].is_set(), 0)]
    assert inline == [False] * n


def test_work_runs_off_the_main_thread() -> None:
    names = [name for _, name in overlapped(range(3), lambda _: threading.current_thread().name)]
    assert all(n != threading.main_thread().name for n in names)


def test_early_stop_computes_at_most_depth_more_items() -> None:
    produced: list[int] = []

    def items():
        for i in range(100):
            produced.append(i)
            yield i

    pairs = overlapped(items(), lambda x: x, depth=2)
    for item, _ in pairs:
        if item == 4:
            break
    pairs.close()
    assert produced == list(range(7))  # items 0-4 used, 5 and 6 produced ahead


def test_an_error_in_work_is_raised_at_its_turn() -> None:
    def work(x: int) -> int:
        if x == 3:
            raise ValueError("bad item")
        return x

    seen = []
    with pytest.raises(ValueError, match="bad item"):
        for item, _ in overlapped(range(10), work, depth=1):
            seen.append(item)
    assert seen == [0, 1, 2]


def test_denoise_is_identical_with_and_without_overlap(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    noisy = np.clip(128 + rng.normal(0, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
    kwargs = dict(width=8, max_iters=60, patience=5, lam=80.0, sigma=25.0)
    out_a, res_a = denoise(noisy, **kwargs)
    assert res_a.stopped_early  # the stop, made one scored iteration late, changes nothing
    monkeypatch.setenv("DIPSTOP_OVERLAP", "0")
    out_b, res_b = denoise(noisy, **kwargs)
    assert res_a.stop_iteration == res_b.stop_iteration
    assert res_a.iterations_run == res_b.iterations_run
    for key in ("loss", "jpeg_bytes", "criterion"):
        np.testing.assert_array_equal(res_a.series[key], res_b.series[key])
    np.testing.assert_array_equal(out_a, out_b)
