"""A 12-megapixel photo under a time budget: does it run to the end, in bounded memory?

Makes a 4000 x 3000 photo by enlarging a CBSD68 image (bicubic; CBSD68 has no photo that
large) and adding Gaussian noise, then runs `dipstop.denoise` on it with default settings
(tiled, since it is above 1 MP) and `max_minutes`: the first tile's timing gives the whole
run's estimate, the budget ends the run with the tiles done so far denoised and the rest
left noisy. Prints and saves (results/benchmarks/big_photo.json) the estimate, the tiles
done, the wall time and the process's peak resident memory.

    python -m benchmarks.big_photo [--minutes 2] [--size 4000x3000] [--device cuda]
"""

from __future__ import annotations

import argparse
import resource
import time

import cv2
import numpy as np

from benchmarks.common import SHARED, save
from dipstop import denoise
from dipstop.noise import add_gaussian_noise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0, help="the time budget")
    ap.add_argument("--size", default="4000x3000", help="W x H of the enlarged photo")
    ap.add_argument("--image", default="101085.png", help="the CBSD68 image to enlarge")
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    src = cv2.imread(str(SHARED / "data" / "cbsd68" / args.image))[:, :, ::-1]
    clean = cv2.resize(src, (width, height), interpolation=cv2.INTER_CUBIC)
    noisy = np.rint(add_gaussian_noise(clean / 255.0, args.sigma, seed=0) * 255).astype(np.uint8)
    del src
    start = time.perf_counter()
    out, res = denoise(noisy, max_minutes=args.minutes, device=args.device)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    done = sum(1 for t in res.tiles if t.result is not None)
    est = res.estimate
    row = {
        "size": [width, height],
        "megapixels": width * height / 1e6,
        "sigma": args.sigma,
        "sigma_estimated": res.sigma,
        "lam": res.lam,
        "budget_minutes": args.minutes,
        "tiles": len(res.tiles),
        "tiles_done": done,
        "stopped_by_budget": res.stopped_by_budget,
        "seconds": seconds,
        "estimate_hours": None
        if est is None
        else [est.seconds_low / 3600, est.seconds_high / 3600],
        "estimate_line": None if est is None else est.line(),
        "peak_rss_mib": peak_mib,
        "output_shape": list(out.shape),
        "notes": res.notes,
    }
    print(f"{width}x{height} ({row['megapixels']:.0f} MP), sigma {args.sigma:g}: "
          f"{done} of {len(res.tiles)} tiles in {seconds:.0f} s (budget {args.minutes:g} min); "
          f"peak memory {peak_mib:.0f} MiB")  # fmt: skip
    if est is not None:
        print(est.line())
    save("big_photo", row)


if __name__ == "__main__":
    main()
