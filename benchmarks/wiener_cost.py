"""What the Wiener filter that finishes a run costs: CPU seconds and peak memory by size.

Each size runs in a child process of its own (one torch thread), so its peak resident memory
(`ru_maxrss`) is the filter's on top of an idle torch process's, which is measured the same
way (size "none") and reported beside it. The image is a CBSD68 photo tiled up to the size,
with sigma-25 noise; the pilot is the clean image (the cost does not depend on the pilot).

    python -m benchmarks.wiener_cost [--sizes 481x321,1924x1284,4000x3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import SHARED, save


def child(size: str, repeats: int) -> dict:
    """Time the filter at `size` ("none": load torch only) in this process."""
    import torch  # noqa: PLC0415 - the child's own import, part of the baseline

    from dipstop.lab.datasets import synthetic_pair  # noqa: PLC0415
    from dipstop.options import PRESETS  # noqa: PLC0415
    from dipstop.wiener import wiener_filter  # noqa: PLC0415

    torch.set_num_threads(1)
    if size == "none":
        return {"size": size, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    w, h = (int(v) for v in size.split("x"))
    clean, noisy = synthetic_pair(SHARED / "data" / "cbsd68" / "101085.png", None, 25, 0)
    reps = (-(-h // clean.shape[0]), -(-w // clean.shape[1]), 1)
    clean, noisy = (np.tile(a, reps)[:h, :w].copy() for a in (clean, noisy))
    seconds = []
    for _ in range(repeats):
        c0 = time.process_time()
        wiener_filter(noisy, clean, 25.0, basic=PRESETS["default"].basic)  # as denoise runs it
        seconds.append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"size": size, "megapixels": w * h / 1e6, "cpu_s": seconds, "peak_mib": peak}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="481x321,1924x1284,4000x3000")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.repeats)))
        return 0
    rows = []
    for size in ["none", *args.sizes.split(",")]:
        cmd = [sys.executable, "-m", "benchmarks.wiener_cost", "--child", size,
               "--repeats", str(args.repeats)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = rows[0]["peak_mib"]
    print(f"idle torch process: {base:.0f} MiB peak")
    print("| size | MP | CPU s (median) | peak MiB over idle |")
    print("|---|---|---|---|")
    for r in rows[1:]:
        r["peak_over_idle_mib"] = r["peak_mib"] - base
        print(f"| {r['size']} | {r['megapixels']:.2f} | {np.median(r['cpu_s']):.2f} | "
              f"{r['peak_over_idle_mib']:.0f} |")  # fmt: skip
    save("wiener_cost", {"repeats": args.repeats, "idle_peak_mib": base, "rows": rows[1:]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
