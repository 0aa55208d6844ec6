"""How a tiled photo's tiles share the cores: wall time of the same tiled run three ways.

- `one_at_a_time`: each tile fitted by `dipstop.denoise` after the other on all of torch's
  threads (what `denoise` did in process before 2026-11-28);
- `threads`: `dipstop.denoise_tiled` in this process, one 1-thread fit per thread of
  torch's pool at once (the default since 2026-11-28);
- `ray`: `denoise_tiled(ray="")`, one 1-thread Ray task per core (`--ray`).

A CBSD68 image's centre crop (--size, sigma 25 noise) is cut into --tile tiles; every tile
runs exactly -T iterations (the patience is set above T so no stop fires: the same work in
every mode). The modes alternate --repeats times in one process, so the ratios are measured
under the same load; the Ray is started, and its workers warmed up by an untimed
one-iteration run, before the first timing. Prints the times and each mode's time over
`one_at_a_time`'s, saves results/benchmarks/tile_parallel.json.

    python -m benchmarks.tile_parallel [--size 256] [--tile 128] [-T 40] [--repeats 3]
    python -m benchmarks.tile_parallel --size 160 --tile 96 -T 3 --width 8 --repeats 1  # a check
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import SHARED, save
from dipstop import denoise, denoise_tiled
from dipstop.lab.datasets import centre_crop, list_images, synthetic_pair
from dipstop.runtime import set_threads
from dipstop.tiling import plan_tiles


def one_at_a_time(noisy: np.ndarray, tile: int, overlap: int, **fit: object) -> int:
    """Every tile of the plan fitted whole, one after another; the iterations run."""
    plan = plan_tiles(*noisy.shape[:2], tile, overlap)
    runs = 0
    for r, c, h, w in plan.boxes():
        _, res = denoise(noisy[r : r + h, c : c + w], tile=None, **fit)
        runs += res.iterations_run
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "data" / "cbsd68"))
    ap.add_argument("--size", type=int, default=256, help="centre crop side")
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("-T", "--iters", type=int, default=40, help="iterations per tile")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import ray

    cores = os.cpu_count() or 1
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    set_threads(cores)
    _, noisy = synthetic_pair(list_images(Path(args.data))[0], None, 25.0, 0)
    noisy = centre_crop(noisy, args.size)
    fit = dict(
        width=args.width, max_iters=args.iters, patience=args.iters + 1, lam=50.0, sigma=25.0,
        device="cpu",
    )  # fmt: skip
    tiling = dict(tile=args.tile, overlap=args.overlap)
    modes = {
        "one_at_a_time": lambda **f: one_at_a_time(noisy, **tiling, **f),
        "threads": lambda **f: denoise_tiled(noisy, **tiling, **f)[1].iterations_run,
        "ray": lambda **f: denoise_tiled(noisy, **tiling, ray="", **f)[1].iterations_run,
    }
    for run in modes.values():  # untimed: the Ray workers import torch and dipstop once
        run(**{**fit, "max_iters": 1})
    tiles = len(plan_tiles(*noisy.shape[:2], args.tile, args.overlap).boxes())
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.repeats):
        for mode, run in modes.items():
            start = time.perf_counter()
            iterations = run(**fit)
            times[mode].append(time.perf_counter() - start)
            assert iterations == tiles * args.iters, (mode, iterations)
        print(", ".join(f"{mode} {t[-1]:.1f} s" for mode, t in times.items()), flush=True)
    ray.shutdown()
    base = times["one_at_a_time"]
    ratios = {m: [t / b for t, b in zip(times[m], base, strict=True)] for m in modes}
    print(f"{tiles} tiles x {args.iters} iterations, {cores} cores; time / one_at_a_time:")
    for mode in ("threads", "ray"):
        r = ratios[mode]
        print(f"  {mode:8} {np.median(r):.2f} (median of {len(r)}; {min(r):.2f}-{max(r):.2f})")
    save("tile_parallel", {"settings": vars(args), "tiles": tiles, "cores": cores,
                           "seconds": times, "ratio_to_one_at_a_time": ratios})  # fmt: skip


if __name__ == "__main__":
    main()
