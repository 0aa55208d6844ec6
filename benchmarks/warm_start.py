"""Warm starts on tiled crops: the default's tiles fitted cold and warm (`warm_start`), paired.

The tile study (`studies/warm_start.py`) measures one tile started from another's network;
this runs whole tiled runs, where every tile but the first starts warm, on 256 x 256 centre
crops of CBSD432 photos (calibration photos; 9 tiles of 128 x 128 at overlap 32, each
pixel in 2.25 tiles on average, as in a 481 x 321 photo's 20). The noise is drawn on the
whole photo (`synthetic_pair(path, None, sigma, 0)`) and cropped, sigma estimated on the
crop as a run does. One thread (a single-thread fit at a time), cold then warm per photo.

    python -m benchmarks.warm_start --names 187083.jpg --sigma 25 --name warm_start_a

Record: results/benchmarks/NAME.json, rewritten after each run; a rerun skips the runs it
holds.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from benchmarks.common import RESULTS, SHARED, save
from dipstop import denoise
from dipstop.lab.datasets import centre_crop, synthetic_pair


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--names", required=True, help="comma-separated CBSD432 file names")
    p.add_argument("--sigma", type=float, default=25.0)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--options", default="{}", help="JSON of denoise options for both runs")
    p.add_argument("--name", default="warm_start")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    path = RESULTS / f"{args.name}.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    options = json.loads(args.options)
    for name in args.names.split(","):
        clean, noisy = synthetic_pair(SHARED / "data" / "cbsd432_jpg" / name, None, args.sigma, 0)
        clean, noisy = centre_crop(clean, args.crop), centre_crop(noisy, args.crop)
        for warm in (False, True):
            key = {"photo": name, "sigma": args.sigma, "crop": args.crop, "warm_start": warm,
                   "options": options}  # fmt: skip
            if any(all(r[k] == v for k, v in key.items()) for r in rows):
                continue
            _, res = denoise(noisy, clean=clean, device="cpu", tile_above=0,
                             warm_start=warm, **options)  # fmt: skip
            rows.append({**key, "psnr": res.psnr, "cpu_s": res.cpu_seconds,
                         "wall_s": res.seconds, "iterations": res.iterations_run,
                         "tiles": len(res.tiles),
                         "t_star": [t.result.stop_iteration for t in res.tiles]})  # fmt: skip
            save(args.name, {"rows": rows})
            print(f"{name} sigma {args.sigma:g} warm={warm}: {res.psnr:.2f} dB, "
                  f"{res.cpu_seconds:.0f} CPU s, {res.iterations_run} iterations", flush=True)
    for name in args.names.split(","):
        pair = {r["warm_start"]: r for r in rows if r["photo"] == name and r["options"] == options
                and r["sigma"] == args.sigma and r["crop"] == args.crop}  # fmt: skip
        if len(pair) == 2:
            d = pair[True]["psnr"] - pair[False]["psnr"]
            ratio = pair[True]["cpu_s"] / pair[False]["cpu_s"]
            print(f"{name}: warm - cold {d:+.2f} dB at {ratio:.2f}x the CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
