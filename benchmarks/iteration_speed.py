"""Seconds per iteration: the dipstop engine against a plain eager PyTorch loop.

The baseline is written here: the same network (same builder, same seed), Adam with its
default settings, z + N(0, s^2) each step, MSE, zero_grad, backward, step. The engine is
what `dipstop.denoise` runs per iteration: `Fitter.run` (divergence guard, snapshots) plus
the CIFS criterion (8-bit quantisation, JPEG encode). Both run in this process, interleaved,
`--repeats` times; the table shows medians and the ratio engine / baseline.

    python benchmarks/iteration_speed.py [--sizes 64x64,128x128,256x256,481x321]
        [--widths 64,128] [--iters 10] [--repeats 3]
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

from dipstop.criteria import CifsCriterion  # noqa: E402
from dipstop.fitting import FitSettings, Fitter  # noqa: E402
from dipstop.network import skip_network  # noqa: E402
from dipstop.runtime import tune_allocator  # noqa: E402


def baseline_steps(h: int, w: int, width: int):
    """A plain DIP loop (sides already multiples of 32), as a generator of steps."""
    torch.manual_seed(0)
    net = skip_network(3, width)
    x0 = torch.rand(1, 3, h, w)
    z = torch.rand(1, 32, h, w) * 0.1
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    while True:
        y = net(z + torch.randn_like(z) / 30)
        loss = F.mse_loss(y, x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        yield


def engine_steps(h: int, w: int, width: int):
    fitter = Fitter(torch.rand(3, h, w), FitSettings(width=width))
    crit = CifsCriterion(50.0)
    for it in fitter.run(10**9):
        crit(it.output, it.loss)
        yield


def timed(gen, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        next(gen)
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64x64,128x128,256x256,481x321")
    ap.add_argument("--widths", default="64,128")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-allocator-tuning", action="store_true")
    args = ap.parse_args()
    if not args.no_allocator_tuning:
        tune_allocator()
    rows = []
    print("    size  width  baseline s/it  engine s/it  engine/baseline")
    for size in args.sizes.split(","):
        w, h = (int(x) for x in size.split("x"))
        for width in (int(x) for x in args.widths.split(",")):
            pad = lambda n: max(64, -(-n // 32) * 32)  # noqa: E731 - baseline needs /32 sides
            base, eng = baseline_steps(pad(h), pad(w), width), engine_steps(h, w, width)
            timed(base, 2), timed(eng, 2)  # warm-up
            b, e = [], []
            for _ in range(args.repeats):
                b.append(timed(base, args.iters))
                e.append(timed(eng, args.iters))
            row = {
                "size": size,
                "width": width,
                "baseline_s": statistics.median(b),
                "engine_s": statistics.median(e),
                "baseline_all": b,
                "engine_all": e,
            }
            row["ratio"] = row["engine_s"] / row["baseline_s"]
            rows.append(row)
            print(
                f"{size:>8} {width:6} {row['baseline_s']:14.4f} {row['engine_s']:12.4f} "
                f"{row['ratio']:16.3f}"
            )
    save(
        "iteration_speed",
        {
            "iters": args.iters,
            "repeats": args.repeats,
            "allocator_tuned": not args.no_allocator_tuning,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
