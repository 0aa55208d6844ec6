"""Would fitting two images in one process (batched, as one grouped network) raise throughput?

Times a 3x3 convolution forward + backward at width 64 three ways: two independent single
convolutions (two separate fits), one grouped convolution with groups=2 (two networks
stacked into one), and a batch of 2 through shared weights (an upper bound). Saves
benchmarks/results/grouped_conv.json.

    python benchmarks/grouped_conv.py [--sides 128,64,32] [--iters 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402


def per_step(conv: torch.nn.Module, x: torch.Tensor, n: int) -> float:
    for _ in range(3):
        conv(x).sum().backward()
    t0 = time.perf_counter()
    for _ in range(n):
        conv(x).sum().backward()
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sides", default="128,64,32")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    w, rows = args.width, []
    print(" side  2 x single ms  grouped(2) ms  batch of 2 ms  grouped / 2 x single")
    for side in (int(s) for s in args.sides.split(",")):
        single = per_step(
            torch.nn.Conv2d(w, w, 3, padding=1),
            torch.randn(1, w, side, side, requires_grad=True),
            args.iters,
        )
        grouped = per_step(
            torch.nn.Conv2d(2 * w, 2 * w, 3, padding=1, groups=2),
            torch.randn(1, 2 * w, side, side, requires_grad=True),
            args.iters,
        )
        batch = per_step(
            torch.nn.Conv2d(w, w, 3, padding=1),
            torch.randn(2, w, side, side, requires_grad=True),
            args.iters,
        )
        row = {
            "side": side,
            "two_single_s": 2 * single,
            "grouped_s": grouped,
            "batch_s": batch,
            "ratio": grouped / (2 * single),
        }
        rows.append(row)
        print(
            f"{side:5} {2e3 * single:14.2f} {1e3 * grouped:14.2f} {1e3 * batch:14.2f} "
            f"{row['ratio']:21.3f}"
        )
    save("grouped_conv", {"width": w, "rows": rows})


if __name__ == "__main__":
    main()
