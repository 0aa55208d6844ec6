"""Tiles in this process (one fit at a time, all threads) against tiles as Ray tasks (one
single-thread fit per core): wall time of the same tiled run, interleaved.

A CBSD68 image's centre crop (--size, sigma 25 noise) is cut into --tile tiles; every tile
runs exactly -T iterations (the patience is set above T so no stop fires: the same work in
both modes). The two modes alternate --repeats times in one process, so the ratio is
measured under the same load; the Ray is started, and its workers warmed up by an
untimed one-iteration run, before the first timing. Prints the
times and the ratio Ray / in-process, saves benchmarks/results/ray_tiles.json.

    python benchmarks/ray_tiles.py [--size 256] [--tile 128] [-T 40] [--repeats 3]
    python benchmarks/ray_tiles.py --size 160 --tile 96 -T 3 --width 8 --repeats 1   # a check
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, save  # noqa: E402

from dipstop import denoise_tiled  # noqa: E402
from dipstop.lab.datasets import centre_crop, list_images, synthetic_pair  # noqa: E402
from dipstop.runtime import set_threads  # noqa: E402


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
        tile=args.tile, overlap=args.overlap, width=args.width, max_iters=args.iters,
        patience=args.iters + 1, lam=50.0, sigma=25.0, device="cpu",
    )  # fmt: skip
    for extra in ({}, {"ray": ""}):  # untimed: the workers import torch and dipstop once
        denoise_tiled(noisy, **{**fit, "max_iters": 1}, **extra)
    times: dict[str, list[float]] = {"in_process": [], "ray": []}
    for _ in range(args.repeats):
        for mode, extra in (("in_process", {}), ("ray", {"ray": ""})):
            start = time.perf_counter()
            _, res = denoise_tiled(noisy, **fit, **extra)
            times[mode].append(time.perf_counter() - start)
            assert res.iterations_run == len(res.tiles) * args.iters
        print(f"in process {times['in_process'][-1]:.1f} s, Ray {times['ray'][-1]:.1f} s")
    ray.shutdown()
    ratios = [r / p for r, p in zip(times["ray"], times["in_process"], strict=True)]
    print(
        f"{len(res.tiles)} tiles x {args.iters} iterations, {cores} cores: Ray / in process "
        f"= {np.median(ratios):.2f} (median of {len(ratios)}; {min(ratios):.2f}-{max(ratios):.2f})"
    )
    save("ray_tiles", {"settings": vars(args), "tiles": len(res.tiles), "cores": cores,
                       "seconds": times, "ratio_ray_over_in_process": ratios})  # fmt: skip


if __name__ == "__main__":
    main()
