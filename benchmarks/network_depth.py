"""Seconds per iteration of the skip network against its depth (scales) and input depth.

The issue's "width (and depth)" lever, priced before any quality run: a plain DIP step
(forward, MSE, backward, Adam) of `skip_network(3, width, input_depth, scales)` on one
tile, every variant timed in this process, interleaved, `--repeats` times; the table shows
each variant's best time and its ratio to the default (5 scales, input depth 32). Thread
CPU seconds, one thread.

    python -m benchmarks.network_depth [--width 16] [--size 128] [--iters 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
import torch.nn.functional as F

from benchmarks.common import save
from dipstop.network import skip_network

VARIANTS = list(itertools.product((5, 4, 3), (32, 8)))  # (scales, input depth); first: default


def step_seconds(scales: int, input_depth: int, width: int, size: int, iters: int) -> float:
    """Thread CPU seconds a step, after 5 warm-up steps."""
    torch.manual_seed(0)
    net = skip_network(3, width, input_depth, scales)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    z, y = torch.rand(1, input_depth, size, size) * 0.1, torch.rand(1, 3, size, size)
    for i in range(iters + 5):
        if i == 5:
            t0 = time.thread_time()
        loss = F.mse_loss(net(z + torch.randn_like(z) / 30), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.thread_time() - t0) / iters


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    times: dict = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for v in VARIANTS:
            times[v].append(step_seconds(*v, args.width, args.size, args.iters))
    base = min(times[VARIANTS[0]])
    rows = [{"scales": s, "input_depth": d, "ms": round(1000 * min(times[(s, d)]), 2),
             "ratio": round(min(times[(s, d)]) / base, 3)} for s, d in VARIANTS]  # fmt: skip
    for r in rows:
        print(f"{r['scales']} scales, input depth {r['input_depth']:2d}: {r['ms']:.1f} ms "
              f"a step, {r['ratio']:.2f}x")  # fmt: skip
    save(f"network_depth_w{args.width}_{args.size}", {"args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
