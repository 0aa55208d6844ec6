"""Tiled against whole-image denoising: PSNR, time and a look at the seams.

For each CBSD68 image (landscape ones, 481 x 321) and each size in --sizes, with synthetic
Gaussian noise (`dipstop.lab.datasets.synthetic_pair`, sigma 25 by default), runs
`dipstop.denoise` twice with default settings (sigma estimated, lam from the table, the
protocol's width, T and S): on the whole image (`tile=None`) and in tiles
(`dipstop.denoise_tiled`, --tile / --overlap). A size other than the file's own is the image
resized (bicubic, rounded to 8 bits) before the noise is added: CBSD68 has no larger
photos, so 768 x 512 is an upscale, smoother than a native photo of that size. --crop
centre-crops every size afterwards (for a quick check that the script works).

Prints one row per image and size: PSNR of the noisy input, of each run, the difference,
seconds and stops; saves OUT/tiling.json (the machine, the settings, every row) and, per
image and size, OUT/tiling_seam_<image>_<size>.png: clean | noisy | whole | tiled around
the first point where four tiles meet (tick marks: the crossfade bands), 3x enlarged.

Hours on a 2-core CPU at full size (a whole 768 x 512 fit is ~2.5 s an iteration at width
64); run it on a quiet machine or a GPU. With --ray the tiles run as local Ray tasks (one
single-thread fit per core), the whole image in this process on all cores:

    python benchmarks/tiling.py [--images 2] [--sizes 481x321,768x512] [--sigma 25]
                                [--tile 128] [--overlap 32] [--device cuda] [--ray] [--out DIR]
                                [--precision auto|fp32|bf16]
    python benchmarks/tiling.py --images 1 --crop 160 --width 8 -T 10 --out /tmp/tiling
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, SHARED, machine  # noqa: E402

from dipstop import denoise, denoise_tiled  # noqa: E402
from dipstop.imageio import read_image, write_image  # noqa: E402
from dipstop.lab.datasets import centre_crop, evenly_spaced, list_images, synthetic_pair  # noqa: E402
from dipstop.metrics import psnr  # noqa: E402
from dipstop.runtime import set_threads, tune_allocator  # noqa: E402
from dipstop.tiling import OVERLAP, TILE, axis_starts  # noqa: E402


def sized_pair(
    path: Path, size: tuple[int, int], crop: int | None, sigma: float, seed: int, tmp: Path
) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) at `size` (width, height): the file itself, or resized and saved as an
    8-bit PNG first so that `synthetic_pair` adds the noise, then centre-cropped."""
    clean8 = np.rint(read_image(path).pixels * 255).astype(np.uint8)
    if clean8.shape[1::-1] != size:
        clean8 = cv2.resize(clean8, size, interpolation=cv2.INTER_CUBIC)
        path = tmp / f"{path.stem}_{size[0]}x{size[1]}.png"
        write_image(path, clean8)
    clean, noisy = synthetic_pair(path, None, sigma, seed)
    return centre_crop(clean, crop), centre_crop(noisy, crop)


def seam_figure(
    images: dict[str, np.ndarray], tile: int, overlap: int, path: Path, title: str
) -> None:
    """Side by side crops around the first four-tile corner, crossfade bands ticked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = next(iter(images.values())).shape[:2]
    centres, bands = [], []
    for n in (h, w):
        starts, side = axis_starts(n, tile, overlap), min(tile, n)
        if len(starts) < 2:
            centres.append(n // 2)
            bands.append([])
            continue
        shared = starts[0] + side - starts[1]
        r = min(overlap, shared)
        a = starts[1] + (shared - r) // 2  # where `axis_weights` puts the crossfade
        centres.append(a + r // 2)
        bands.append([a, a + r])
    half = min(48, h // 2, w // 2)
    y0 = int(np.clip(centres[0] - half, 0, h - 2 * half))
    x0 = int(np.clip(centres[1] - half, 0, w - 2 * half))
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.6))
    for ax, (label, img) in zip(axes, images.items(), strict=True):
        crop = np.clip(img[y0 : y0 + 2 * half, x0 : x0 + 2 * half], 0, 1)
        crop = np.repeat(np.repeat(crop, 3, axis=0), 3, axis=1)  # 3x, nearest
        ax.imshow(crop.squeeze(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_yticks([3 * (b - y0) for b in bands[0] if y0 <= b <= y0 + 2 * half])
        ax.set_xticks([3 * (b - x0) for b in bands[1] if x0 <= b <= x0 + 2 * half])
        ax.set_xticklabels([])
        ax.set_yticklabels([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(SHARED / "data" / "cbsd68"))
    ap.add_argument("--images", type=int, default=2, help="evenly spaced landscape images")
    ap.add_argument("--sizes", default="481x321,768x512", help="WxH,... (resized first)")
    ap.add_argument("--crop", type=int, default=None, help="centre-crop side (quick checks)")
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tile", type=int, default=TILE)
    ap.add_argument("--overlap", type=int, default=OVERLAP)
    ap.add_argument("--width", type=int, default=None, help="network width (default: cpu's)")
    ap.add_argument("-T", "--max-iters", type=int, default=None)
    ap.add_argument("-S", "--patience", type=int, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", default="auto", help="auto, fp32 or bf16 (denoise's)")
    ap.add_argument(
        "--ray", action="store_true", help="tiles as local Ray tasks (one 1-thread fit per core)"
    )
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for JSON and PNGs")
    args = ap.parse_args()
    tune_allocator()
    set_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    landscape = [p for p in list_images(args.data) if read_image(p).pixels.shape[1] == 481]
    chosen = evenly_spaced(landscape, args.images)
    fit = dict(
        width=args.width, max_iters=args.max_iters, patience=args.patience, device=args.device,
        precision=args.precision,
    )  # fmt: skip
    rows = []
    head = "image    size              noisy  whole  tiled  tiled-whole  s whole  s tiled"
    print(head + "  t* whole  t*s")
    with tempfile.TemporaryDirectory() as tmp:
        for path in chosen:
            for size in sizes:
                clean, noisy = sized_pair(path, size, args.crop, args.sigma, args.seed, Path(tmp))
                whole_out, whole = denoise(noisy, clean=clean, tile=None, **fit)
                tiled_out, tiled = denoise_tiled(
                    noisy, clean=clean, tile=args.tile, overlap=args.overlap,
                    ray="" if args.ray else None, **fit,
                )  # fmt: skip
                h, w = clean.shape[:2]
                label = f"{size[0]}x{size[1]}" + (f"_crop{args.crop}" if args.crop else "")
                row = {
                    "image": path.name,
                    "size": label,
                    "pixels": [h, w],
                    "resized_from": None if size == (481, 321) else "481x321",
                    "noisy_psnr": psnr(noisy, clean),
                    "whole": {
                        "psnr": psnr(whole_out, clean),
                        "seconds": whole.seconds,
                        "stop_iteration": whole.stop_iteration,
                        "iterations_run": whole.iterations_run,
                        "sigma": whole.sigma,
                        "lam": whole.lam,
                        "precision": whole.settings["precision"],
                    },
                    "tiled": {
                        "psnr": psnr(tiled_out, clean),
                        "seconds": tiled.seconds,
                        "tiles": len(tiled.tiles),
                        "stop_iterations": tiled.stop_iterations,
                        "iterations_run": tiled.iterations_run,
                        "sigma": tiled.sigma,
                        "lam": tiled.lam,
                    },
                }
                row["tiled_minus_whole_db"] = row["tiled"]["psnr"] - row["whole"]["psnr"]
                rows.append(row)
                stops = tiled.stop_iterations
                print(
                    f"{path.stem:8} {label:17} {row['noisy_psnr']:6.2f} "
                    f"{row['whole']['psnr']:6.2f} {row['tiled']['psnr']:6.2f} "
                    f"{row['tiled_minus_whole_db']:+11.2f} {whole.seconds:8.0f} "
                    f"{tiled.seconds:8.0f} {whole.stop_iteration:9} "
                    f"{min(stops)}-{max(stops)} ({len(stops)} tiles)"
                )
                png = out / f"tiling_seam_{path.stem}_{row['size']}.png"
                seam_figure(
                    {
                        "clean": clean,
                        f"noisy {row['noisy_psnr']:.2f} dB": noisy,
                        f"whole {row['whole']['psnr']:.2f} dB": whole_out,
                        f"tiled {row['tiled']['psnr']:.2f} dB": tiled_out,
                    },
                    args.tile,
                    args.overlap,
                    png,
                    f"{path.name} at {row['size']}, sigma {args.sigma:g}: tiles of {args.tile} "
                    f"px, overlap {args.overlap} (ticks: crossfade bands)",
                )
                row["seam_png"] = png.name
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "data")}
    settings["protocol"] = "cpu"
    settings["torch_threads"] = torch.get_num_threads()
    result = out / "tiling.json"
    result.write_text(
        json.dumps({"machine": machine(), "settings": settings, "rows": rows}, indent=1)
    )
    print(f"saved {result}")


if __name__ == "__main__":
    main()
