"""Does `torch.compile` of the network make a tile's fit cheaper on the CPU?

One process, one thread: a cold compile (a fresh Inductor cache folder) of the default's
network (width 16, 128 x 128), the first iterations of a second fit compiled in the same
process (does it reuse the compiled code?), then eager and compiled iterations timed
interleaved, `--repeats` times, as CPU seconds an iteration (process time: contention on a
shared machine inflates both alike). Saves results/benchmarks/compile_speed[_TAG].json.

    OMP_NUM_THREADS=1 python -m benchmarks.compile_speed --width 16 --iters 40 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from benchmarks.common import save


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--side", type=int, default=128)
    ap.add_argument("--iters", type=int, default=40, help="iterations timed per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")  # cold
    import torch  # after the cache folder is set

    from dipstop.fitting import FitSettings, Fitter

    torch.set_num_threads(1)
    x = torch.rand(3, args.side, args.side)

    def compiled(seed: int) -> tuple[Fitter, float]:
        f = Fitter(x, FitSettings(width=args.width, seed=seed), "cpu")
        t0 = time.perf_counter()
        f.net = torch.compile(f.net)
        steps = f.run(10**9)
        next(steps), next(steps)
        return f, time.perf_counter() - t0

    def per_iteration(steps, n: int) -> float:
        t0 = time.process_time()
        for _ in range(n):
            next(steps)
        return (time.process_time() - t0) / n

    _, cold = compiled(0)
    second, warm = compiled(1)
    eager = Fitter(x, FitSettings(width=args.width, seed=1), "cpu")
    runs = {"eager": eager.run(10**9), "compiled": second.run(10**9)}
    for steps in runs.values():
        for _ in range(3):
            next(steps)
    rows = []
    for _ in range(args.repeats):
        rows.append({name: per_iteration(steps, args.iters) for name, steps in runs.items()})
        r = rows[-1]
        print(f"eager {r['eager'] * 1e3:.1f} ms/it, compiled {r['compiled'] * 1e3:.1f} ms/it, "
              f"ratio {r['compiled'] / r['eager']:.3f}")  # fmt: skip
    ratio = sorted(r["compiled"] / r["eager"] for r in rows)[len(rows) // 2]
    print(f"cold compile {cold:.1f} s; a second fit's first 2 iterations {warm:.1f} s; "
          f"median ratio {ratio:.3f}")  # fmt: skip
    save(f"compile_speed{'_' + args.tag if args.tag else ''}",
         {"args": vars(args), "cold_compile_s": cold, "second_fit_first_2_s": warm,
          "rows": rows, "median_ratio": ratio})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
