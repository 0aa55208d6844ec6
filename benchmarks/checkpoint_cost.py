"""What a whole-image fit's checkpoint costs (`denoise(resume_dir=...)`, the CLI's OUTPUT.partial).

For each size, a whole-image `denoise` (default settings but T; sigma 25 synthetic noise on a
CBSD68 photo resized) saves a checkpoint at every 5th iteration (`STATE_EVERY` 5, interval 0);
each `RunCheckpoint.save` is timed in the fit's own process. Prints and saves
results/benchmarks/checkpoint_cost.json: the file's size, the median save time, the median
seconds per iteration of the same fit, and the share of the fit's time a save once a minute
(`Switches.checkpoint_seconds`, the default) takes.

    python -m benchmarks.checkpoint_cost [--sizes 481x321,128x128] [-T 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import cv2
import numpy as np

from benchmarks.common import SHARED, save
from dipstop import checkpoints
from dipstop.api import denoise
from dipstop.noise import add_gaussian_noise
from dipstop.runtime import Switches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="481x321,128x128")
    ap.add_argument("-T", "--max-iters", type=int, default=20)
    ap.add_argument("--image", default=str(SHARED / "data" / "cbsd68" / "101085.png"))
    args = ap.parse_args()
    checkpoints.STATE_EVERY = 5
    real_save, saves = checkpoints.RunCheckpoint.save, []

    def timed_save(self, *a, **k):
        began = time.perf_counter()
        real_save(self, *a, **k)
        saves.append((time.perf_counter() - began, self.path.stat().st_size))

    checkpoints.RunCheckpoint.save = timed_save
    clean = cv2.imread(args.image)[:, :, ::-1]
    rows = []
    print("size       MB   save s   s/iteration   save once a minute")
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        image = cv2.resize(clean, (w, h), interpolation=cv2.INTER_AREA) / 255.0
        noisy = add_gaussian_noise(image, 25, seed=0)
        saves.clear()
        with tempfile.TemporaryDirectory() as folder:
            _, res = denoise(noisy, tile=None, max_iters=args.max_iters,
                             patience=args.max_iters, resume_dir=folder,
                             switches=Switches(checkpoint_seconds=0.0))  # fmt: skip
        per_iteration = float(np.median(np.diff(res.series["seconds"])))
        save_s = float(np.median([s for s, _ in saves]))
        mb = saves[-1][1] / 2**20
        share = save_s / Switches().checkpoint_seconds
        rows.append(dict(size=size, megabytes=mb, save_seconds=save_s, saves=len(saves),
                         seconds_per_iteration=per_iteration, share_of_a_minute=share,
                         precision=res.settings["precision"]))  # fmt: skip
        print(f"{size:9} {mb:5.1f} {save_s:8.3f} {per_iteration:13.3f} {share:19.2%}")
    save("checkpoint_cost", {"max_iters": args.max_iters, "rows": rows})


if __name__ == "__main__":
    main()
