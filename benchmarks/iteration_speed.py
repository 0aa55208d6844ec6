"""Seconds per iteration: the dipstop engine against a plain eager PyTorch loop.

The baseline is written here: the same network (same builder, same seed), Adam with its
default settings, z + N(0, s^2) each step, MSE, zero_grad, backward, step. The engine is
what `dipstop.denoise` runs per iteration: `Fitter.run` (divergence guard, snapshots) plus
the CIFS criterion (8-bit quantisation, JPEG encode). Both run in this process, interleaved,
`--repeats` times; the table shows medians and the ratio engine / baseline. On CUDA the
clock is read after a device synchronise, and `--variants` adds engine settings to compare
(no CUDA graph, channels_last, bf16 autocast, both), each timed interleaved with the others.

    python -m benchmarks.iteration_speed [--sizes 64x64,128x128,256x256,481x321]
        [--widths 64,128] [--iters 10] [--repeats 3] [--device cuda]
        [--variants fp32,no_graph,channels_last,bf16,channels_last+bf16] [--threads N]
        [--name SUFFIX]

On a CPU with AMX (`dipstop.fitting.amx_cpu`) "channels_last+bf16" is what
`precision="bf16"` (and "auto" there) runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks.common import save
from dipstop.codecs import tensor_to_uint8
from dipstop.criteria import CifsCriterion, Context, Sample
from dipstop.fitting import FitSettings, Fitter
from dipstop.network import skip_network
from dipstop.runtime import tune_allocator

VARIANTS = {
    "fp32": {},  # the default: on CUDA each step is a replayed CUDA graph
    "no_graph": {"cuda_graph": False},  # CUDA: the same step launched kernel by kernel
    "channels_last": {"channels_last": True},
    "bf16": {"bf16": True},
    "channels_last+bf16": {"channels_last": True, "bf16": True},
}


def baseline_steps(h: int, w: int, width: int, device: str):
    """A plain DIP loop on the unpadded image, as a generator of steps."""
    torch.manual_seed(0)
    net = skip_network(3, width).to(device)
    x0 = torch.rand(1, 3, h, w, device=device)
    z = torch.rand(1, 32, h, w, device=device) * 0.1
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    while True:
        y = net(z + torch.randn_like(z) / 30)
        loss = F.mse_loss(y, x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        yield


def engine_steps(h: int, w: int, width: int, device: str, variant: str):
    settings = FitSettings(width=width, **VARIANTS[variant])
    fitter = Fitter(torch.rand(3, h, w), settings, device)
    crit, context = CifsCriterion(), Context(h * w, lam=50.0)
    for it in fitter.run(10**9):  # CIFS inline: quantise, JPEG-encode, E_t
        row = crit.measure(Sample(it.t, it.loss, image=tensor_to_uint8(it.output)))
        crit.values({"mse": it.loss, **row}, context)
        yield


def timed(gen, n: int, device: str) -> float:
    sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        next(gen)
    sync()
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64x64,128x128,256x256,481x321")
    ap.add_argument("--widths", default="64,128")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-allocator-tuning", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default="fp32", help=f"engine settings: {','.join(VARIANTS)}")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    ap.add_argument("--name", default="", help="suffix of the saved record's name")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    if not args.no_allocator_tuning:
        tune_allocator()
    rows = []
    print("    size  width  baseline s/it  " + "  ".join(f"{v} s/it, ratio" for v in variants))
    for size in args.sizes.split(","):
        w, h = (int(x) for x in size.split("x"))
        for width in (int(x) for x in args.widths.split(",")):
            pad = lambda n: max(64, -(-n // 32) * 32)  # noqa: E731 - baseline needs /32 sides
            gens = {"baseline": baseline_steps(pad(h), pad(w), width, args.device)}
            for v in variants:
                gens[v] = engine_steps(h, w, width, args.device, v)
            times: dict[str, list[float]] = {name: [] for name in gens}
            for gen in gens.values():
                timed(gen, 3, args.device)  # warm-up (and cuDNN autotuning)
            for _ in range(args.repeats):
                for name, gen in gens.items():
                    times[name].append(timed(gen, args.iters, args.device))
            med = {name: statistics.median(ts) for name, ts in times.items()}
            row = {"size": size, "width": width, "seconds": med, "all": times}
            row["ratio"] = {v: med[v] / med["baseline"] for v in variants}
            rows.append(row)
            cells = "  ".join(f"{med[v]:10.4f} {row['ratio'][v]:6.3f}" for v in variants)
            print(f"{size:>8} {width:6} {med['baseline']:14.4f}  {cells}")
    save(
        "iteration_speed"
        + ("" if args.device == "cpu" else "_" + args.device.split(":")[0])
        + (f"_{args.name}" if args.name else ""),
        {
            "iters": args.iters,
            "repeats": args.repeats,
            "device": args.device,
            "allocator_tuned": not args.no_allocator_tuning,
            "threads": torch.get_num_threads(),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
