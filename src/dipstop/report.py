"""Reports for one denoising run: the per-iteration series as CSV, a figure, a JSON summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dipstop.api import DenoiseResult  # noqa: E402
from dipstop.errors import DipstopError  # noqa: E402
from dipstop.tiling import TiledResult  # noqa: E402


def write_series_csv(path: Path, series: dict) -> None:
    """One row per iteration: its number, then one column per series."""
    keys = list(series)
    n = len(next(iter(series.values()))) if series else 0
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["iteration", *keys])
        for row in zip(range(1, n + 1), *(series[k] for k in keys), strict=False):
            w.writerow([f"{v:.8g}" if isinstance(v, float) else v for v in map(_scalar, row)])


def _scalar(v: object) -> object:
    return v.item() if hasattr(v, "item") else v


def plot_run(result: DenoiseResult, path: Path) -> None:
    """Loss, JPEG size and criterion against iteration (and PSNR if known), t* marked."""
    s = result.series
    panels = [
        ("mse", "MSE to noisy", True),
        ("jpeg_bytes", "JPEG q95 bytes", False),
        ("criterion", "E_t = lam*MSE + bpp^2", False),
    ]
    if "psnr" in s:
        panels.append(("psnr", "PSNR to clean (dB)", False))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.2 * len(panels)), sharex=True)
    t = np.arange(1, result.iterations_run + 1)
    for ax, (key, label, log) in zip(axes, panels, strict=False):
        ax.plot(t, s[key], lw=1)
        ax.axvline(
            result.stop_iteration, color="C3", ls="--", lw=1, label=f"t* = {result.stop_iteration}"
        )
        if key == "psnr" and result.peak_iteration:
            ax.axvline(
                result.peak_iteration,
                color="C2",
                ls=":",
                lw=1,
                label=f"peak t = {result.peak_iteration}",
            )
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("iteration")
    axes[0].set_title(
        f"CIFS stopping: sigma {result.sigma:.1f}"
        f"{' (estimated)' if result.sigma_estimated else ''}, lam {result.lam:.3g}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_tiles_csv(path: Path, result: TiledResult) -> None:
    """One row per tile of a tiled run: its box, t*, iterations, seconds (and PSNR)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["top", "left", "height", "width", "stop_iteration", "iterations_run"]
            + ["stopped_early", "seconds", "psnr"]
        )
        for t in result.tiles:
            s = t.summary()
            w.writerow(
                [
                    *s["box"],
                    s["stop_iteration"],
                    s["iterations_run"],
                    s["stopped_early"],
                    f"{s['seconds']:.3f}",
                    "" if s["psnr"] is None else f"{s['psnr']:.4f}",
                ]
            )


def write_run_report(result: DenoiseResult | TiledResult, folder: str | Path) -> Path:
    """Write series.csv, curves.png and summary.json into `folder` (created if needed).

    A tiled run writes tiles.csv (one row per tile) and summary.json instead.
    """
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if isinstance(result, TiledResult):
            write_tiles_csv(out / "tiles.csv", result)
            (out / "summary.json").write_text(json.dumps(result.summary(), indent=1, default=str))
            return out
        write_series_csv(out / "series.csv", result.series)
        plot_run(result, out / "curves.png")
        (out / "summary.json").write_text(json.dumps(result.summary(), indent=1, default=str))
    except OSError as exc:
        raise DipstopError(
            f"cannot write the report to {out} ({exc.strerror}); use --report elsewhere"
        ) from exc
    return out
