"""Does scoring iteration t on a worker thread, while step t+1 is fitted, shorten a run?

Times the two loops that use it, with the overlap on (the default depth) and off
(`Switches(overlap=0)`), interleaved, in one process: the bench's recorder
(`dipstop.lab.runs.run_one`: JPEG every iteration, BRISQUE and NIQE every `every`
iterations, PSNR/SSIM of the output and its EMA, WMV; the EMA 0.99 is the one running
average, as when the saved results were measured) and `dipstop.denoise` (CIFS only).
Reports median seconds per iteration and the ratio on / off. Both modes give identical
series (tests/test_overlap.py).

`--emulate SIZE:MS,...` measures instead what the overlap hides where the step runs on a
device: each step is a GIL-free wait of MS milliseconds (as the main thread waits in
`.item()` for a GPU step; pass the graphed H100 step times from benchmarks/README.md), and
the host work is the real JPEG / BRISQUE / NIQE work at that size, at each `--depths`, run
through `dipstop.overlap.overlapped` (the outputs quantised on the main thread first).
This is an emulation of the device, not a GPU measurement.
Saves results/benchmarks/overlap[_DEVICE|_emulated].json.

    python -m benchmarks.overlap [--device cpu] [--crops 128,full] [--every 10,1]
                                 [--iters 40] [--repeats 3] [--threads 2]
    python -m benchmarks.overlap --emulate 128:2.87,full:11.62 [--depths 0,1,2,4,8]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import SHARED, save
from dipstop import denoise
from dipstop.codecs import jpeg_bytes, tensor_to_uint8
from dipstop.criteria import (
    BrisqueCriterion,
    CifsCriterion,
    Context,
    NiqeCriterion,
    Sample,
)
from dipstop.fitting import Iteration
from dipstop.lab.datasets import list_images, synthetic_pair
from dipstop.lab.runs import bench_criteria, grid, run_one
from dipstop.overlap import overlapped
from dipstop.protocols import get_protocol
from dipstop.runtime import Switches, tune_allocator

# the bench recorder's running averages when the saved results were measured: the EMA alone
EMA_ONLY = {"ema": {"kind": "ema", "weight": 0.99}}


def per_iteration(case: dict, overlap: bool, iters: int, device: str) -> float:
    """Seconds per iteration of one run of `case` with the overlap on or off."""
    switches = Switches() if overlap else Switches(overlap=0)  # on: the default depth
    if case["loop"] == "bench":
        _, _, summary = run_one(case["spec"], device, None, switches)
        return summary["seconds"] / iters
    _, res = denoise(
        case["noisy"],
        sigma=25.0,
        lam=60.0,
        max_iters=iters,
        patience=iters,
        device=device,
        switches=switches,
    )
    return res.seconds / res.iterations_run


def emulated_step(case: dict, step_s: float, depth: int, iters: int) -> float:
    """Seconds per iteration of host-scoring `iters` fake steps that each wait `step_s`."""
    output = torch.from_numpy(case["noisy"]).permute(2, 0, 1).unsqueeze(0).float()
    brisque, niqe, cifs = BrisqueCriterion(), NiqeCriterion(), CifsCriterion()
    context = Context(output.shape[2] * output.shape[3], lam=60.0)

    def steps() -> Iterator[Iteration]:
        for t in range(1, iters + 1):
            time.sleep(step_s)  # the device computing step t while the host thread waits
            yield Iteration(t, 0.01, output)

    def bench_work(it: Iteration, u8: np.ndarray) -> tuple:  # the bench recorder's host work
        if it.t % case["every"]:
            return jpeg_bytes(u8), math.nan, math.nan
        return jpeg_bytes(u8), brisque(u8), niqe(u8)

    def cifs_work(it: Iteration, u8: np.ndarray) -> tuple:  # denoise's: JPEG bytes and E_t
        row = {"mse": it.loss, **cifs.measure(Sample(it.t, it.loss, image=u8))}
        return row["jpeg_bytes"], cifs.values(row, context)

    work = bench_work if case["loop"] == "bench" else cifs_work
    # each output quantised and copied to the host on the main thread, scored on the worker
    quantised = ((it, tensor_to_uint8(it.output)) for it in steps())
    start = time.perf_counter()
    for _ in overlapped(quantised, lambda pair: work(*pair), depth):
        pass
    return (time.perf_counter() - start) / iters


def run_emulation(args: argparse.Namespace, folder: Path, image: Path) -> None:
    rows = []
    depths = [int(d) for d in args.depths.split(",")]
    for item in args.emulate.split(","):
        size, ms = item.split(":")
        crop = None if size == "full" else int(size)
        _, noisy = synthetic_pair(str(image), crop, 25.0, 0)
        loops = [{"loop": "bench", "every": int(k)} for k in args.every.split(",")]
        for case in [*loops, {"loop": "denoise", "every": None}]:
            case["noisy"] = noisy
            emulated_step(case, float(ms) / 1000, 1, 20)  # warm-up: models, thread pool
            times: dict[int, list[float]] = {d: [] for d in depths}
            for _ in range(args.repeats):
                for d in depths:
                    times[d].append(emulated_step(case, float(ms) / 1000, d, args.iters))
            med = {d: statistics.median(v) for d, v in times.items()}
            row = {"size": size, "step_ms": float(ms), "loop": case["loop"], "every": case["every"]}
            row.update({f"depth{d}_ms": med[d] * 1000 for d in depths})
            rows.append(row)
            cells = "  ".join(f"depth {d}: {med[d] * 1000:6.2f}" for d in depths)
            print(
                f"{size:>4} step {float(ms):5.2f} ms  {case['loop']:8} every "
                f"{case['every'] or '-':>2}: ms/it  {cells}",
                flush=True,
            )
    save("overlap_emulated", {"args": vars(args), "image": image.name, "rows": rows})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default=str(SHARED / "data" / "cbsd68"), help="image folder")
    ap.add_argument("--crops", default="128,full", help="crop sides; 'full' for whole images")
    ap.add_argument("--every", default="10,1", help="BRISQUE/NIQE every k iterations (bench)")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--emulate", default="", help="SIZE:STEP_MS,... (see the module docstring)")
    ap.add_argument("--depths", default="0,1,2,4,8", help="overlap depths to emulate")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_allocator()
    folder = Path(args.data)
    image = list_images(folder)[0]
    if args.emulate:
        return run_emulation(args, folder, image)
    cases = []
    for crop_arg in args.crops.split(","):
        crop = None if crop_arg == "full" else int(crop_arg)
        protocol = dataclasses.replace(get_protocol("cpu"), max_iters=args.iters, crop=crop)
        for every in (int(k) for k in args.every.split(",")):
            spec = grid(
                folder,
                [25],
                protocol,
                images=[image.name],
                criteria=bench_criteria(every),
                averages=EMA_ONLY,
            )[0]
            cases.append({"loop": "bench", "crop": crop_arg, "every": every, "spec": spec})
        _, noisy = synthetic_pair(str(image), crop, 25.0, 0)
        cases.append({"loop": "denoise", "crop": crop_arg, "every": None, "noisy": noisy})
    rows = []
    for case in cases:
        per_iteration(case, True, args.iters, args.device)  # warm-up: allocator, models
        times: dict[bool, list[float]] = {True: [], False: []}
        for repeat in range(args.repeats):
            for overlap in (False, True) if repeat % 2 == 0 else (True, False):
                times[overlap].append(per_iteration(case, overlap, args.iters, args.device))
        off, on = statistics.median(times[False]), statistics.median(times[True])
        row = {k: case[k] for k in ("loop", "crop", "every")}
        row.update(off_s=off, on_s=on, ratio=on / off, off_all=times[False], on_all=times[True])
        rows.append(row)
        print(
            f"{row['loop']:8} crop {row['crop']:>4} every {row['every'] or '-':>2}: "
            f"off {off * 1000:8.1f} ms/it  on {on * 1000:8.1f} ms/it  on/off {on / off:.3f}",
            flush=True,
        )
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    save(f"overlap{suffix}", {"args": vars(args), "image": image.name, "rows": rows})


if __name__ == "__main__":
    main()
