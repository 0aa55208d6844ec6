"""A folder of small images in process: one file at a time on all cores, or one per core.

`dipstop denoise FOLDER` runs its files through `dipstop.batch.run_jobs`: since 2026-11-28
on a CPU one single-thread fit per core at once (`workers` = `file_workers`), before that one
file after another on all of torch's threads (`workers=1`). --files centre crops of CBSD68
images (--size, sigma 25 noise, written as PNGs) are denoised both ways, every fit exactly
-T iterations (patience above T: the same work each way), the two ways alternating
--repeats times in one process (after an untimed one-iteration warm-up of each), so the
ratio is measured under the same load. Prints the
times and their ratio, saves results/benchmarks/folder_parallel.json.

    python -m benchmarks.folder_parallel [--files 4] [--size 128] [-T 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import SHARED, save
from dipstop.batch import file_workers, prepare_batch, run_jobs
from dipstop.imageio import write_image
from dipstop.lab.datasets import centre_crop, evenly_spaced, list_images, synthetic_pair
from dipstop.runtime import set_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "data" / "cbsd68"))
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--size", type=int, default=128, help="centre crop side")
    ap.add_argument("-T", "--iters", type=int, default=40, help="iterations per file")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    set_threads(cores)
    fit = dict(
        width=args.width, max_iters=args.iters, patience=args.iters + 1, lam=50.0, sigma=25.0,
        device="cpu", progress=False,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for path in evenly_spaced(list_images(Path(args.data)), args.files):
            _, noisy = synthetic_pair(path, None, 25.0, 0)
            write_image(folder / f"{path.stem}.png", centre_crop(noisy, args.size))
        jobs, _ = prepare_batch([folder], folder / "out")
        workers = file_workers(jobs, fit)
        for n in (1, workers):  # untimed: first calls of each way load kernels and threads
            list(run_jobs(jobs, {**fit, "max_iters": 1}, overwrite=True, workers=n))
        times: dict[str, list[float]] = {"one_at_a_time": [], "per_core": []}
        for _ in range(args.repeats):
            for mode, n in (("one_at_a_time", 1), ("per_core", workers)):
                start = time.perf_counter()
                done = [r for _, r, _ in run_jobs(jobs, fit, overwrite=True, workers=n)]
                times[mode].append(time.perf_counter() - start)
                assert all(r is not None and r.iterations_run == args.iters for r in done), mode
            print(", ".join(f"{m} {t[-1]:.1f} s" for m, t in times.items()), flush=True)
    ratios = [p / o for p, o in zip(times["per_core"], times["one_at_a_time"], strict=True)]
    print(
        f"{args.files} files of {args.size} x {args.size}, {args.iters} iterations each, "
        f"{cores} cores, {workers} workers: per_core / one_at_a_time {np.median(ratios):.2f} "
        f"(median of {len(ratios)}; {min(ratios):.2f}-{max(ratios):.2f})"
    )
    save("folder_parallel", {"settings": vars(args), "cores": cores, "workers": workers,
                             "seconds": times, "ratio_per_core": ratios})  # fmt: skip


if __name__ == "__main__":
    main()
