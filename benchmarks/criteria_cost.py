"""Cost per iteration of each criterion and of the engine's bookkeeping, as a fraction of
one iteration, measured in one process.

- CIFS: 8-bit quantisation of the output, host copy and JPEG q95 encode, plus E_t;
- WMV: one window update (W = 100);
- BRISQUE, NIQE: one evaluation each (the bench runs them every k iterations);
- bookkeeping: what `Fitter.run` adds to a bare step (loss.item() for the divergence guard,
  snapshots every 50 iterations, the yield), from interleaved bare and engine steps.

    python benchmarks/criteria_cost.py [--sizes 128x128,481x321] [--width 64] [--iters 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from dipstop.criteria import (  # noqa: E402
    BrisqueCriterion,
    CifsCriterion,
    NiqeCriterion,
    WmvCriterion,
    output_to_uint8,
)
from dipstop.fitting import FitSettings, Fitter  # noqa: E402
from dipstop.runtime import tune_allocator  # noqa: E402


def per_call(fn, n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def bare_step(f: Fitter) -> None:
    """One step as the engine takes it, without guard, snapshots or yield."""
    left, _, top, _ = f.pad
    z_t = f.z + f.settings.z_noise_std * torch.randn_like(f.z)
    y = f.net(z_t)[:, :, top : top + f.height, left : left + f.width]
    loss = F.mse_loss(y, f.x0)
    f.opt.zero_grad(set_to_none=True)
    loss.backward()
    f.opt.step()


def measure(size: str, width: int, iters: int, repeats: int) -> dict:
    """Costs of each criterion and of bookkeeping at one image size."""
    w, h = (int(x) for x in size.split("x"))
    f = Fitter(torch.rand(3, h, w), FitSettings(width=width))
    gen = f.run(10**9)
    it = next(gen)
    bare, eng = [], []
    for _ in range(repeats):  # interleaved: bare steps, then engine steps
        bare.append(per_call(lambda: bare_step(f), iters))
        eng.append(per_call(lambda: next(gen), iters))
    step = statistics.median(bare)
    out = it.output
    u8 = output_to_uint8(out)
    cifs, wmv = CifsCriterion(50.0), WmvCriterion(100)
    brisque, niqe = BrisqueCriterion(), NiqeCriterion()
    for _ in range(100):
        wmv.update(out)
    costs = {
        "cifs": per_call(lambda: cifs(out, 0.01), 50),
        "wmv": per_call(lambda: wmv.update(out), 50),
        "brisque": per_call(lambda: brisque(u8), 10),
        "niqe": per_call(lambda: niqe(u8), 10),
        "bookkeeping": max(0.0, statistics.median(eng) - step),
    }
    return {
        "size": size,
        "width": width,
        "iteration_s": step,
        "costs_s": costs,
        "fractions": {k: v / step for k, v in costs.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128x128,481x321")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tune_allocator()
    rows = []
    for size in args.sizes.split(","):
        row = measure(size, args.width, args.iters, args.repeats)
        rows.append(row)
        step, costs = row["iteration_s"], row["costs_s"]
        print(f"{size} width {args.width}: iteration {step:.4f} s")
        for k, v in costs.items():
            print(f"  {k:12} {v * 1000:8.2f} ms  {100 * v / step:6.2f}% of an iteration")
        print(f"  CIFS + bookkeeping: {100 * (costs['cifs'] + costs['bookkeeping']) / step:.2f}%")
    save("criteria_cost", {"rows": rows})


if __name__ == "__main__":
    main()
