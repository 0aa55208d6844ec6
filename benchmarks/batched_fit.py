"""Would fitting several images in one process, as one batched network, raise throughput?

N independent DIP networks (dipstop's skip network, each with its own fused Adam) are
stepped two ways, interleaved, several repeats: one after another (what N separate fits
do), and stacked with `torch.func.stack_module_state` and run as one `vmap`ped
forward + backward with one Adam over the stacked parameters (Adam is elementwise, so this
is the same N fits). BatchNorm keeps no running statistics in either (DIP uses batch
statistics only: train mode throughout). Reports time per step of all N fits and the
ratio batched / one-by-one. Checks first that both give the same outputs. On CUDA the
one-by-one steps launch eagerly (dipstop's engine replays CUDA graphs), so there the ratio
flatters batching. Saves results/benchmarks/batched_fit[_DEVICE].json.

    python -m benchmarks.batched_fit [--device cpu] [--sides 64,128] [--width 64] [--n 2,4]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from benchmarks.common import save
from dipstop.fitting import make_adam
from dipstop.network import skip_network


def make_steps(side: int, width: int, n: int, device: str) -> dict[str, Callable[[], None]]:
    """One step of N fits, one by one and batched, on the same networks' initial weights."""
    torch.manual_seed(0)
    nets = [skip_network(3, width, 32).to(device).train() for _ in range(n)]
    for net in nets:  # vmap cannot update shared running statistics; DIP never reads them
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.track_running_stats, m.running_mean, m.running_var = False, None, None
    z = torch.rand(n, 1, 32, side, side, device=device) * 0.1
    x = torch.rand(n, 1, 3, side, side, device=device)
    opts = [make_adam(net.parameters(), 0.01) for net in nets]
    params, buffers = stack_module_state(nets)
    params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    batched_opt = make_adam(params.values(), 0.01)
    template = copy.deepcopy(nets[0]).to("meta")
    forward = vmap(lambda p, b, zi: functional_call(template, (p, b), (zi,)))

    with torch.no_grad():  # the stacked networks compute what the N networks compute
        separate = torch.stack([net(zi) for net, zi in zip(nets, z, strict=True)])
        diff = (forward(params, buffers, z) - separate).abs().max().item()
    if diff > 1e-4:
        raise SystemExit(f"batched outputs differ from one-by-one outputs by {diff:.2e}")

    def one_by_one() -> None:
        for net, opt, zi, xi in zip(nets, opts, z, x, strict=True):
            opt.zero_grad(set_to_none=True)
            F.mse_loss(net(zi), xi).backward()
            opt.step()

    def batched() -> None:
        batched_opt.zero_grad(set_to_none=True)
        y = forward(params, buffers, z)
        ((y - x) ** 2).mean(dim=(1, 2, 3, 4)).sum().backward()  # sum of the N fits' MSEs
        batched_opt.step()

    return {"one_by_one": one_by_one, "batched": batched}


def seconds_per_step(step: Callable[[], None], iters: int, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sides", default="64,128")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--n", default="2,4", help="fits per process")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    rows = []
    print("  side  N  one by one s/step  batched s/step  batched / one by one")
    for side in (int(s) for s in args.sides.split(",")):
        for n in (int(k) for k in args.n.split(",")):
            steps = make_steps(side, args.width, n, args.device)
            for step in steps.values():  # warm-up: allocator, oneDNN/cuDNN choices
                seconds_per_step(step, 2, args.device)
            times: dict[str, list[float]] = {name: [] for name in steps}
            for _ in range(args.repeats):
                for name, step in steps.items():
                    times[name].append(seconds_per_step(step, args.iters, args.device))
            single = statistics.median(times["one_by_one"])
            batched = statistics.median(times["batched"])
            rows.append(
                {"side": side, "n": n, "one_by_one_s": single, "batched_s": batched, **times}
            )
            print(f"{side:6} {n:2} {single:18.4f} {batched:15.4f} {batched / single:21.3f}")
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    save(f"batched_fit{suffix}", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
