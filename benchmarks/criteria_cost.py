"""Cost per iteration of each criterion and of the engine's bookkeeping, as a fraction of
one iteration's network work (perturbation, forward, backward, Adam), measured in one process.

- CIFS: 8-bit quantisation of the output, host copy and JPEG q95 encode, plus E_t;
- WMV: one window update (W = 100);
- BRISQUE, NIQE: one evaluation each (the bench runs them every k iterations);
- engine and stopping bookkeeping: from a real `dipstop.denoise` run with its progress bar,
  timed inside the loop (`DenoiseResult.time_split`): "engine" is the divergence guard and
  snapshots, "stopping" is quantising the output, any wait for its JPEG (encoded on a worker
  thread during the next step), E_t, the online Eq. 4 rule, the series and the progress bar.
  The total overhead adds CIFS's per-call cost to those two, wherever the encode ran.
  Timed directly rather than as the difference of two noisy medians.

    python -m benchmarks.criteria_cost [--sizes 128x128,481x321] [--width 64] [--iters 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import save
from dipstop.api import denoise
from dipstop.codecs import tensor_to_uint8
from dipstop.criteria import (
    BrisqueCriterion,
    CifsCriterion,
    Context,
    NiqeCriterion,
    Sample,
    WmvCriterion,
)
from dipstop.runtime import tune_allocator


def per_call(fn, n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def measure(size: str, width: int, iters: int, device: str | None) -> dict:
    """Costs of each criterion and of bookkeeping at one image size."""
    w, h = (int(x) for x in size.split("x"))
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    warm = {"width": width, "lam": 50.0, "device": device}  # cuDNN autotunes each shape once
    denoise(noisy, max_iters=5, patience=5, **warm)  # per process: keep it out of the timing
    _, res = denoise(
        noisy, width=width, max_iters=iters, patience=iters, lam=50.0, progress=True, device=device
    )
    n = res.iterations_run
    step = res.time_split["network"] / n
    out = torch.from_numpy(noisy).permute(2, 0, 1).unsqueeze(0).float().to(res.settings["device"])
    out /= 255
    u8 = tensor_to_uint8(out)
    cifs, wmv = CifsCriterion(), WmvCriterion(100)
    brisque, niqe = BrisqueCriterion(), NiqeCriterion()
    context = Context(h * w, lam=50.0)

    def cifs_call() -> None:
        """One CIFS evaluation: quantise and copy to the host, JPEG q95, E_t."""
        row = cifs.measure(Sample(1, 0.01, image=tensor_to_uint8(out)))
        cifs.values({"mse": 0.01, **row}, context)

    for _ in range(100):
        wmv.update(out)
    costs = {
        "cifs": per_call(cifs_call, 50),
        "wmv": per_call(lambda: wmv.update(out), 50),
        "brisque": per_call(lambda: brisque(u8), 10),
        "niqe": per_call(lambda: niqe(u8), 10),
        "engine": res.time_split["engine"] / n,
        "stopping": res.time_split["stopping"] / n,
    }
    return {
        "size": size,
        "width": width,
        "iterations": n,
        "iteration_s": step,
        "costs_s": costs,
        "fractions": {k: v / step for k, v in costs.items()},
        # CIFS's encode runs on a worker thread, outside "stopping", but on a CPU it still
        # takes cycles from the fit: counted in full
        "overhead_fraction": (costs["cifs"] + costs["engine"] + costs["stopping"]) / step,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128x128,481x321")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--iters", type=int, default=200, help="iterations of the denoise run")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    tune_allocator()
    rows = []
    for size in args.sizes.split(","):
        row = measure(size, args.width, args.iters, args.device)
        rows.append(row)
        step, costs = row["iteration_s"], row["costs_s"]
        print(f"{size} width {args.width}: iteration {step:.4f} s")
        for k, v in costs.items():
            print(f"  {k:12} {v * 1000:8.2f} ms  {100 * v / step:6.2f}% of an iteration")
        print(f"  CIFS + engine + stopping: {100 * row['overhead_fraction']:.2f}%")
    suffix = "" if args.device == "cpu" else "_" + args.device.split(":")[0]
    save("criteria_cost" + suffix, {"device": args.device, "rows": rows})


if __name__ == "__main__":
    main()
