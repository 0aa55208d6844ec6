"""Achieved FLOP/s of a DIP iteration against a measured convolution peak of this machine.

FLOPs of one iteration (forward + backward) are counted by torch.utils.flop_counter; the
peak is the best of a few large 3x3 convolutions (128 -> 128 channels) forward + backward,
the op that dominates DIP. Saves results/benchmarks/flops.json.

    python -m benchmarks.flops [--sizes 128x128,481x321] [--widths 64,128] [--iters 5]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import save
from dipstop.fitting import FitSettings, Fitter
from dipstop.runtime import tune_allocator


def conv_peak(side: int = 128, channels: int = 128, reps: int = 5) -> float:
    """FLOP/s of a 3x3 convolution forward + backward (input and weight gradients)."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
    x = torch.randn(1, channels, side, side, requires_grad=True)
    flops = 3 * 2 * channels * channels * 9 * side * side  # fwd + 2 backward GEMMs
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        conv(x).sum().backward()
        best = max(best, flops / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128x128,481x321")
    ap.add_argument("--widths", default="64,128")
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()
    tune_allocator()
    peak = conv_peak()
    print(f"conv3x3 fwd+bwd peak: {peak / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads)")
    rows = []
    for size in args.sizes.split(","):
        w, h = (int(x) for x in size.split("x"))
        for width in (int(x) for x in args.widths.split(",")):
            f = Fitter(torch.rand(3, h, w), FitSettings(width=width))
            gen = f.run(10**9)
            next(gen)
            with FlopCounterMode(display=False) as counter:
                next(gen)
            flops = counter.get_total_flops()
            t0 = time.perf_counter()
            for _ in range(args.iters):
                next(gen)
            sec = (time.perf_counter() - t0) / args.iters
            row = {
                "size": size,
                "width": width,
                "gflop_per_iter": flops / 1e9,
                "seconds": sec,
                "gflops": flops / sec / 1e9,
                "fraction_of_peak": flops / sec / peak,
            }
            rows.append(row)
            print(
                f"{size:>8} width {width:4}: {row['gflop_per_iter']:7.1f} GFLOP/iter, "
                f"{sec:.3f} s, {row['gflops']:6.1f} GFLOP/s = "
                f"{100 * row['fraction_of_peak']:.0f}% of the conv peak"
            )
    save("flops", {"conv_peak_gflops": peak / 1e9, "rows": rows})


if __name__ == "__main__":
    main()
