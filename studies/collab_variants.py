"""The collaborative stage's own settings, scored offline on the post-filter study's kept crops.

A study (issue 32): each kept CBSD432 crop (`studies/post_filter.py`, two cold fits at
S = 700, unfiltered) is filtered by the shipped filter and by variants of its collaborative
stage, and each photo's gain over the shipped filter is taken on its 5 crops' summed squared
error; mean +- standard error over the photos whose crops are all kept.

    python studies/collab_variants.py --sigmas 25,50
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import post_filter as pf  # noqa: E402

from dipstop.collaborative import collaborative_wiener  # noqa: E402
from dipstop.wiener import OPPONENT, wiener_filter  # noqa: E402

# name: (keywords of the stage, its share, how many times it runs: each its pilot the last image)
# (the passes' image is clipped to [0, 1] here, not in the shipped filter: "wiener_filter"
# is the shipped filter itself, the check that this makes no difference)
VARIANTS = {
    "shipped": ({}, 0.7, 1),
    "wiener_filter": None,
    "second pass": ({}, 0.7, 2),
    "references every 2 pixels": ({"step": 2}, 0.7, 1),
    "groups of at most 16": ({"group": 16}, 0.7, 1),
    "share 0.8": ({}, 0.8, 1),
}


def filtered(noisy: np.ndarray, pilot: np.ndarray, sigma: float, stage: dict, share: float,
             runs: int) -> np.ndarray:  # fmt: skip
    """The gated passes, then the collaborative stage `runs` times, each moved `share` of the
    way from the passes' image to the stage's."""
    opp = OPPONENT.astype(np.float32)
    passes = wiener_filter(noisy, pilot, sigma, collaborative=0) @ opp.T  # clipped, as shipped
    y, q = noisy @ opp.T, passes
    chw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))  # noqa: E731
    for _ in range(runs):
        guide = torch.from_numpy(np.ascontiguousarray(q[..., 0] / np.sqrt(3)))
        group = collaborative_wiener(chw(y), chw(q), guide, sigma / 255.0, **stage)
        q = passes + share * (group.permute(1, 2, 0).numpy() - passes)
    return np.clip(q @ opp, 0.0, 1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sigmas", default="25,50")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    sigmas = [float(s) for s in args.sigmas.split(",")]
    sse: dict = {}  # (sigma, variant) -> photo -> [(sse, cpu s)]
    for photo, sigma, preset, crop in pf.jobs():
        kept = pf.kept_path(photo, sigma, preset, crop).exists()
        if sigma not in sigmas or preset != "default" or not kept:
            continue
        job = pf.load(photo, sigma, preset, crop)
        for name, variant in VARIANTS.items():
            c0 = time.process_time()
            args = (job["noisy"], job["out"], job["sigma_est"])
            out = wiener_filter(*args) if variant is None else filtered(*args, *variant)
            err = float(np.square(out - job["clean"]).sum())
            sse.setdefault((sigma, name), {}).setdefault(photo.stem, []).append(
                (err, time.process_time() - c0))
    for sigma in sigmas:
        base = sse[(sigma, "shipped")]
        done = [ph for ph, e in base.items() if len(e) == pf.CROPS]
        for name in VARIANTS:
            rows = sse[(sigma, name)]
            total = lambda r, ph: sum(e for e, _ in r[ph])  # noqa: E731
            gain = np.array([10 * np.log10(total(base, ph) / total(rows, ph)) for ph in done])
            cpu = np.mean([c for ph in done for _, c in rows[ph]])
            se = gain.std(ddof=1) / np.sqrt(len(gain))
            print(f"sigma {sigma:g} {name:26s} photos {len(done)}: {gain.mean():+.3f} +- {se:.3f} "
                  f"(min {gain.min():+.2f}), {cpu:.1f} CPU-s a crop", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
