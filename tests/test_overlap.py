"""Host-side criteria overlapped with the next fitting step (dipstop.overlap)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from dipstop import denoise
from dipstop.criteria import CifsCriterion
from dipstop.errors import DipstopError
from dipstop.lab.runs import bench_criteria, grid, run_one
from dipstop.overlap import overlapped
from dipstop.protocols import get_protocol
from dipstop.runtime import Switches

TINY_BENCH = get_protocol("cpu").with_(width=8, crop=96, max_iters=20)


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


def test_work_runs_off_the_main_thread_and_no_thread_outlives_an_early_stop() -> None:
    pairs = overlapped(range(50), lambda _: threading.current_thread().name, depth=1)
    names = []
    for i, name in pairs:
        names.append(name)
        if i == 5:
            break
    pairs.close()
    assert all(n.startswith("dipstop-host") for n in names)
    assert not [t for t in threading.enumerate() if t.name.startswith("dipstop-host")]


def test_a_failing_look_ahead_item_is_raised_after_the_items_before_it() -> None:
    def items():
        yield from range(5)
        raise RuntimeError("step 6 diverged")

    seen = []
    with pytest.raises(RuntimeError, match="diverged"):
        for item, _ in overlapped(items(), lambda x: x, depth=3):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]  # as without the overlap
    stopped = []
    for item, _ in overlapped(items(), lambda x: x, depth=3):  # a consumer that stops first
        stopped.append(item)
        if item == 2:
            break
    assert stopped == [0, 1, 2]  # never sees the error, as it would not have without


@pytest.mark.parametrize("value", ["off", "1.5"])
def test_a_bad_overlap_setting_is_a_clear_error(value) -> None:
    with pytest.raises(DipstopError, match="whole number"):
        Switches.from_env({"DIPSTOP_OVERLAP": value})


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
    kwargs = dict(width=8, max_iters=60, patience=5, lam=80.0, sigma=25.0, ensemble=1, burn_in=0)
    threads = set()
    real_measure = CifsCriterion.measure

    def measure(self, sample):
        threads.add(threading.current_thread().name)
        return real_measure(self, sample)

    monkeypatch.setattr(CifsCriterion, "measure", measure)
    out_a, res_a = denoise(noisy, **kwargs)
    assert threads and all(n.startswith("dipstop-host") for n in threads)
    assert res_a.stopped_early  # the stop, made 2 scored iterations late, changes nothing
    out_b, res_b = denoise(noisy, **kwargs, switches=Switches(overlap=0))
    assert res_a.stop_iteration == res_b.stop_iteration
    assert res_a.iterations_run == res_b.iterations_run
    for key in ("mse", "jpeg_bytes", "criterion"):
        np.testing.assert_array_equal(res_a.series[key], res_b.series[key])
    np.testing.assert_array_equal(out_a, out_b)


def test_bench_recorder_is_identical_with_and_without_overlap(image_folder):
    spec = grid(image_folder, [25], TINY_BENCH, criteria=bench_criteria(5))[0]
    _, overlapped_series, _ = run_one(spec)
    _, inline_series, _ = run_one(spec, switches=Switches(overlap=0))
    for key, values in inline_series.items():
        if key != "seconds":
            np.testing.assert_array_equal(overlapped_series[key], values, err_msg=key)
