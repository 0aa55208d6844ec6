"""Peak memory of a fit against image size and width (CPU: peak RSS; CUDA: max allocated).

Each (size, width) runs in a fresh subprocess for a few iterations; the script prints the
peak and the bytes per padded pixel per channel of width, and saves
results/benchmarks/memory.json. dipstop's memory guard (dipstop.memory) uses these figures.

    python -m benchmarks.memory [--sizes 128x128,256x256,481x321,768x512] [--widths 64,128]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.common import save

CHILD = """
import json, resource, sys, torch
from dipstop.runtime import tune_allocator
tune_allocator()
from dipstop.fitting import Fitter, FitSettings, padding_for
h, w, width, iters, device = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), 3, sys.argv[4]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
f = Fitter(torch.rand(3, h, w), FitSettings(width=width), device)
for _ in f.run(iters):
    pass
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
cuda = torch.cuda.max_memory_allocated() if f.device.type == "cuda" else None
l, r, t, b = padding_for(h, w)
print(json.dumps({"rss_peak": peak, "rss_base": base, "cuda_peak": cuda,
                  "padded_pixels": (h + t + b) * (w + l + r)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128x128,256x256,481x321,768x512")
    ap.add_argument("--widths", default="64,128")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rows = []
    print("  size     width  peak MiB  above start MiB  bytes/(pixel*width)")
    for size in args.sizes.split(","):
        w, h = (int(x) for x in size.split("x"))
        for width in (int(x) for x in args.widths.split(",")):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(h), str(w), str(width), args.device],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            used = r["cuda_peak"] if r["cuda_peak"] is not None else r["rss_peak"] - r["rss_base"]
            row = {
                "width_px": w,
                "height_px": h,
                "width": width,
                **r,
                "used": used,
                "bytes_per_pixel_width": used / (r["padded_pixels"] * width),
            }
            rows.append(row)
            print(
                f"{size:>9} {width:6} {r['rss_peak'] / 2**20:9.0f} {used / 2**20:14.0f} "
                f"{row['bytes_per_pixel_width']:14.1f}"
            )
    save("memory", {"device": args.device, "rows": rows})


if __name__ == "__main__":
    main()
