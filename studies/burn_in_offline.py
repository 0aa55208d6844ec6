"""Where a burn-in moves the stop: the tile study's recorded fits, replayed offline.

`studies/quality_time.py` stored each cold fit's series (MSE to the noisy tile, JPEG bytes,
PSNR) in `results/quality_time.sqlite`. This replays the default's rule on them (the
width-16 table's lam at the photo's estimated sigma, S = 200) with burn-ins B: t* for each
fit, its raw output's PSNR below the fit's peak, and the mean stop. Outputs are not stored,
so the since-best average's PSNR is not here (`benchmarks/fast_preset.py` measures that).

    python studies/burn_in_offline.py
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path

import numpy as np

from dipstop.criteria.cifs import cifs_value
from dipstop.lambda_table import lam_for_sigma, load_table
from dipstop.stopping import detect_offline

STORE = Path(__file__).resolve().parents[1] / "results" / "quality_time.sqlite"
PIXELS = 128 * 128
PATIENCE = 200
BURN_INS = (0, 50, 100, 150, 200, 300)


def main() -> None:
    db = sqlite3.connect(f"file:{STORE}?mode=ro", uri=True)
    table = load_table(None, output="since-best", width=16)
    for sigma in (15, 25, 50):
        fits = db.execute(
            "SELECT sigma_est, series, peak_psnr FROM fits WHERE setting = 'w16-lr0.01' "
            "AND sigma = ?", (sigma,)).fetchall()  # fmt: skip
        print(f"sigma {sigma}: {len(fits)} fits")
        for burn_in in BURN_INS:
            t_stars, below, stops = [], [], []
            for sigma_est, blob, peak in fits:
                series = json.loads(zlib.decompress(blob))
                mse, nbytes = np.array(series["mse"]), np.array(series["bytes"])
                e = cifs_value(mse, nbytes, PIXELS, lam_for_sigma(sigma_est, table, PIXELS))
                t = detect_offline(e, PATIENCE, burn_in)
                t_stars.append(t + 1)
                below.append(peak - series["psnr"][t])
                stops.append(min(len(e), t + 1 + PATIENCE))
            print(f"  B = {burn_in:3d}: t* {sorted(t_stars)}, raw output {np.mean(below):.2f} dB "
                  f"below the peak, stop at {np.mean(stops):.0f} on average")  # fmt: skip


if __name__ == "__main__":
    main()
