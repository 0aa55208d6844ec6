"""Do the faster engine settings keep PSNR? Fits the same noisy image under each variant.

For every variant (fp32, channels_last, bf16 autocast, both) one fit of the bundled sample
(scikit-image's cat, `--side` square, sigma 25) for `--iters` iterations, with PSNR to the
clean image at every iteration; reports the peak PSNR and its iteration, the PSNR where the
shipped lam table's CIFS rule (Eq. 4, offline on the recorded series) stops, and seconds
per iteration. Meant for a GPU (`--device cuda`); on a CPU bf16 autocast is slow.

    python benchmarks/variant_psnr.py --device cuda [--side 256] [--width 128] [--iters 3000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402
from iteration_speed import VARIANTS  # noqa: E402

from dipstop.codecs import jpeg_bytes  # noqa: E402
from dipstop.criteria import cifs_value, output_to_uint8  # noqa: E402
from dipstop.fitting import FitSettings, Fitter  # noqa: E402
from dipstop.lambda_table import lam_for_sigma, load_table  # noqa: E402
from dipstop.metrics import psnr  # noqa: E402
from dipstop.noise import estimate_sigma  # noqa: E402
from dipstop.sample import sample_pair  # noqa: E402
from dipstop.stopping import detect_offline  # noqa: E402


def fit(noisy: np.ndarray, clean: np.ndarray, variant: str, args) -> dict:
    settings = FitSettings(width=args.width, **VARIANTS[variant])
    fitter = Fitter(torch.from_numpy(noisy).permute(2, 0, 1), settings, args.device)
    clean_t = torch.from_numpy(clean).permute(2, 0, 1).unsqueeze(0).to(fitter.device)
    mse, size, curve = [], [], []
    start = time.perf_counter()
    for it in fitter.run(args.iters):
        mse.append(it.loss)
        size.append(jpeg_bytes(output_to_uint8(it.output)))
        curve.append(psnr(it.output, clean_t))
    seconds = time.perf_counter() - start
    lam = lam_for_sigma(estimate_sigma(noisy), load_table())
    energy = cifs_value(np.asarray(mse), np.asarray(size), noisy[..., 0].size, lam)
    t_star = detect_offline(energy, args.patience)
    curve_np = np.asarray(curve)
    peak = int(np.argmax(curve_np))
    return {
        "variant": variant,
        "peak_psnr": float(curve_np[peak]),
        "peak_t": peak + 1,
        "cifs_t": t_star + 1,
        "cifs_psnr": float(curve_np[t_star]),
        "last_psnr": float(curve_np[-1]),
        "s_per_iter": seconds / args.iters,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--patience", type=int, default=500)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    clean_u8, noisy_u8 = sample_pair(side=args.side)
    clean, noisy = clean_u8.astype(np.float32) / 255, noisy_u8.astype(np.float32) / 255
    rows = []
    print("variant              peak dB  at t   CIFS dB  at t   last dB   s/iter")
    for v in args.variants.split(","):
        r = fit(noisy, clean, v, args)
        rows.append(r)
        print(
            f"{v:18} {r['peak_psnr']:8.2f} {r['peak_t']:5d} {r['cifs_psnr']:8.2f} "
            f"{r['cifs_t']:5d} {r['last_psnr']:8.2f} {r['s_per_iter']:8.4f}"
        )
    name = "variant_psnr" + ("" if args.device == "cpu" else "_" + args.device.split(":")[0])
    save(name, {**vars(args), "sigma": 25.0, "rows": rows})


if __name__ == "__main__":
    main()
