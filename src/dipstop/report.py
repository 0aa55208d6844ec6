"""Reports for one denoising run: the per-iteration series as CSV, a figure, a JSON summary."""

from __future__ import annotations

import csv
import functools
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dipstop.errors import DipstopError
from dipstop.metrics import psnr
from dipstop.results import DenoiseResult, TiledResult

_PLOTTING = threading.Lock()


def _one_figure_at_a_time(draw: Callable[..., None]) -> Callable[..., None]:
    """Matplotlib is not thread-safe (its mathtext parser failed with two threads drawing:
    a folder's files report from threads), so figures are drawn one at a time."""

    @functools.wraps(draw)
    def locked(*args: Any, **kwargs: Any) -> None:
        with _PLOTTING:
            draw(*args, **kwargs)

    return locked


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


@_one_figure_at_a_time
def plot_run(result: DenoiseResult, path: Path) -> None:
    """Loss, JPEG size and criterion against iteration (and PSNR if known), t* marked.

    The E_t panel's y axis is zoomed to the iterations around t* (from t*/2 to the end of
    the run), where its minimum can be seen: over the whole run, the early iterations' large
    MSE dwarfs the dip. The PSNR panel marks the returned image's PSNR.
    """
    s = result.series
    panels = [
        ("mse", "MSE to noisy", True),
        ("jpeg_bytes", "JPEG q95 bytes", False),
        ("criterion", "E_t = lam*MSE + bpp^2", False),
    ]
    if "psnr" in s:
        panels.append(("psnr", "PSNR to clean (dB)", False))
    # Figure, not pyplot: no global figure manager or backend to set
    fig = Figure(figsize=(7, 2.2 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True)
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
        if key == "criterion":
            _zoom_to_minimum(ax, s[key], result.stop_iteration)
        if key == "psnr" and result.settings.get("output") == "since-best":
            ax.axvspan(result.stop_iteration, result.iterations_run, color="C1", alpha=0.12,
                       label="outputs averaged")  # fmt: skip
        if key == "psnr" and result.psnr is not None:
            ax.axhline(
                result.psnr,
                color="C1",
                lw=1,
                label=f"returned ({result.settings.get('output')}): {result.psnr:.2f} dB",
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


def _zoom_to_minimum(ax: Axes, values: np.ndarray, t_star: int) -> None:
    """y limits from the values of t*/2 .. the end (finite ones), the minimum marked."""
    window = np.asarray(values[max(0, t_star // 2 - 1) :], dtype=float)
    window = window[np.isfinite(window)]
    if window.size == 0:
        return
    lo, hi = float(window.min()), float(window.max())
    pad = 0.05 * (hi - lo) or 0.05 * abs(lo) or 1.0
    ax.set_ylim(lo - pad, hi + pad)
    ax.plot([t_star], [values[t_star - 1]], "o", color="C3", ms=4)


@_one_figure_at_a_time
def plot_before_after(
    images: dict[str, np.ndarray | None], path: Path, result: DenoiseResult | None = None
) -> None:
    """The noisy input beside the denoised output (and the clean image when given), with
    their PSNR to the clean one when it is known; `images` maps those names to H x W (x C)
    arrays, uint8/uint16 or float in [0, 1]. Shown at most about 1200 pixels a side (every
    k-th pixel); the PSNR is the full image's."""
    order = [k for k in ("noisy", "denoised", "clean") if images.get(k) is not None]
    clean = images.get("clean")
    height, width = images[order[0]].shape[:2]
    step = -(-max(height, width) // 1200)
    fig = Figure(figsize=(4 * len(order), 4 * height / width + 0.5))
    axes = fig.subplots(1, len(order))
    for ax, name in zip(np.atleast_1d(axes), order, strict=True):
        img = _unit(images[name][::step, ::step])
        ax.imshow(img if img.ndim == 3 and img.shape[2] > 1 else img.squeeze(), cmap="gray",
                  vmin=0, vmax=1, interpolation="nearest")  # fmt: skip
        title = name
        if clean is not None and name != "clean":
            title += f": {psnr(_unit(images[name]), _unit(clean)):.2f} dB"
        if name == "denoised" and result is not None:
            title += f"\n({result.settings.get('output')}, t* = {result.stop_iteration})"
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _unit(image: np.ndarray) -> np.ndarray:
    """An image on the [0, 1] float scale, alpha dropped."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (2, 4):
        a = a[..., :-1]
    if np.issubdtype(a.dtype, np.integer):
        return a / float(np.iinfo(a.dtype).max)
    return np.clip(a.astype(float), 0, 1)


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


def write_run_report(
    result: DenoiseResult | TiledResult,
    folder: str | Path,
    images: dict[str, np.ndarray | None] | None = None,
) -> Path:
    """Write series.csv, curves.png and summary.json into `folder` (created if needed), and
    before_after.png when `images` holds the "noisy" and "denoised" arrays ("clean" too
    when known).

    A tiled run writes tiles.csv (one row per fit) and summary.json instead of the series
    and curves; the fits of an untiled image (an ensemble: one tile, fitted with seeds
    s, s+1, ...) add each fit's series_seed<s>.csv and curves_seed<s>.png.
    """
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if images and images.get("noisy") is not None and images.get("denoised") is not None:
            tiled = isinstance(result, TiledResult)
            plot_before_after(images, out / "before_after.png", None if tiled else result)
        if isinstance(result, TiledResult):
            write_tiles_csv(out / "tiles.csv", result)
            (out / "summary.json").write_text(json.dumps(result.summary(), indent=1, default=str))
            if len({(t.top, t.left) for t in result.tiles}) == 1:  # one image, several fits
                for fit in result.fitted:
                    seed = fit.settings["seed"]
                    write_series_csv(out / f"series_seed{seed}.csv", fit.series)
                    plot_run(fit, out / f"curves_seed{seed}.png")
            return out
        write_series_csv(out / "series.csv", result.series)
        plot_run(result, out / "curves.png")
        (out / "summary.json").write_text(json.dumps(result.summary(), indent=1, default=str))
    except OSError as exc:
        raise DipstopError(
            f"cannot write the report to {out} ({exc.strerror}); use --report elsewhere"
        ) from exc
    return out
