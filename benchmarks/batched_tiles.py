"""Does fitting a photo's K tiles as one batch (dipstop.batched) beat fitting them one by one?

Times one iteration of all K tiles two ways, interleaved, several repeats, in one process:

- one by one: K `Fitter`s (what `tiling.run_tiles` runs per tile), each stepped once; on
  CUDA each replays its captured CUDA graph, as dipstop's engine does;
- batched: one `BatchedFitter` step (stacked weights, one vmapped forward and backward,
  one Adam over all K tiles' rows, the host copy of the K outputs).

`--loop N` also times N whole iterations with CIFS scoring, stop and policy:
K x `record` (one by one) against `fit_tiles_batched` (its patience above N, so no tile
stops and both do N iterations of every tile). Prints a table and saves
results/benchmarks/batched_tiles[_DEVICE][_TAG].json.

On the CPU batching was measured slower (benchmarks/batched_fit.py); a launch-bound GPU is
where it should pay. A small CPU check:

    python -m benchmarks.batched_tiles --device cpu --k 2,4 --side 64 --width 8 --tag check

The GPU measurement (`studies/gpu_session.sh tiles`): the default's width 16, where K = 40
is a 481 x 321 photo's fits, and the former default's 64:

    python -m benchmarks.batched_tiles --device cuda --k 2,8,20,40 --width 16 --side 128 \\
        --loop 20 --tag w16
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.common import save
from dipstop.batched import BatchedFitter, fit_tiles_batched
from dipstop.criteria import CifsCriterion, Context
from dipstop.fitting import FitSettings, Fitter
from dipstop.policies import make_policy
from dipstop.recording import OnlineStop, record

FOREVER = 10**9  # a budget no timing reaches: the fits never end on their own


def noisy_tiles(count: int, side: int) -> list[torch.Tensor]:
    """Reproducible noisy tiles: smooth colour fields plus Gaussian noise of sigma 25/255."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        base = torch.rand(3, 4, 4, generator=g)
        clean = torch.nn.functional.interpolate(base[None], size=(side, side), mode="bicubic")
        out.append((clean[0] + 25 / 255 * torch.randn(3, side, side, generator=g)).clamp(0, 1))
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step_makers(tiles, settings, device) -> dict[str, Callable[[], None]]:
    """One iteration of all tiles, one by one and batched, on persistent fits."""
    runs = [Fitter(x, settings, device).run(FOREVER) for x in tiles]
    batch = BatchedFitter(tiles, settings, device).run(FOREVER)

    def one_by_one() -> None:
        for run in runs:
            next(run)

    def batched() -> None:
        next(batch)

    return {"one_by_one": one_by_one, "batched": batched}


def seconds_per_call(fn: Callable[[], None], calls: int, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - start) / calls


def loop_makers(tiles, settings, device, iters: int) -> dict[str, Callable[[], None]]:
    """`iters` whole iterations of every tile with CIFS, stop (never firing) and policy."""
    lam, patience = 50.0, iters + 1
    pixels = tiles[0].shape[1] * tiles[0].shape[2]

    def one_by_one() -> None:
        for x in tiles:
            policy, cifs = make_policy("since-best"), CifsCriterion()
            stop = OnlineStop(cifs, Context(pixels, lam), patience, policy.stream)
            record(Fitter(x, settings, device), iters, [cifs], stop=stop, policy=policy)

    def batched() -> None:
        fit_tiles_batched(tiles, settings, lam, patience, iters, device)

    return {"one_by_one": one_by_one, "batched": batched}


def measure(makers: dict[str, Callable[[], None]], calls, warmup, repeats, device) -> dict:
    for fn in makers.values():  # allocator, oneDNN/cuDNN choices, CUDA graph capture
        seconds_per_call(fn, warmup, device)
    times: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(repeats):  # interleaved, so drifts in machine load hit both
        for name, fn in makers.items():
            times[name].append(seconds_per_call(fn, calls, device))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--k", default="4,8,16,40", help="tiles per batch")
    ap.add_argument("--side", type=int, default=128)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5, help="iterations timed per repeat")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--loop", type=int, default=0, help="also time N whole iterations")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    settings = FitSettings(width=args.width)
    rows = []
    print("   K  one by one s/it  batched s/it  batched / one by one   (all K tiles)")
    for k in (int(v) for v in args.k.split(",")):
        tiles = noisy_tiles(k, args.side)
        times = measure(
            step_makers(tiles, settings, args.device), args.iters, 5, args.repeats, args.device
        )
        single, batched = (statistics.median(times[n]) for n in ("one_by_one", "batched"))
        row = {"k": k, "one_by_one_s": single, "batched_s": batched,
               "ratio": batched / single, "times": times}  # fmt: skip
        print(f"{k:4} {single:16.4f} {batched:13.4f} {batched / single:21.3f}")
        if args.loop:
            loop = measure(
                loop_makers(tiles, settings, args.device, args.loop), 1, 1, 2, args.device
            )
            per = {n: statistics.median(v) / args.loop for n, v in loop.items()}
            row["loop"] = {"iters": args.loop, "per_iteration_s": per, "times": loop}
            one, both = per["one_by_one"], per["batched"]
            print(f"     with CIFS, stop and policy: {one:.4f} s/it one by one, "
                  f"{both:.4f} s/it batched, ratio {both / one:.3f}")  # fmt: skip
        rows.append(row)
        del tiles
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    suffix += f"_{args.tag}" if args.tag else ""
    save(f"batched_tiles{suffix}", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
