"""Tiled against whole-image denoising: PSNR, time and a look at the seams.

For each CBSD68 image (landscape ones, 481 x 321, or the files named by --names), each size
in --sizes and each sigma in --sigmas, with synthetic Gaussian noise
(`dipstop.lab.datasets.synthetic_pair`: the same noise as `bench` for the same image, sigma
and seed), runs `dipstop.denoise` twice with default settings (sigma estimated, lam from the
table, the protocol's width, T and S): on the whole image (`tile=None`; skipped with
--tiled-only) and in tiles (`dipstop.denoise_tiled`, --tile / --overlap; skipped with
--whole-only). A size is turned
to the image's orientation (481x321 is 321 x 481 for a portrait photo, labelled 321x481);
a size other than the file's own is the image resized (bicubic, rounded to 8 bits) before
the noise is added: CBSD68 has no larger photos, so 768 x 512 is an upscale, smoother than
a native photo of that size. (Before 2026-11-28, a portrait photo was squashed
to the landscape size; rows made so are dropped when a JSON is resumed.) --crop
centre-crops every size afterwards (for a quick check that the script works).

Prints one row per image, size and sigma: PSNR of the noisy input, of each run, the
difference and seconds; saves OUT/NAME.json (the machine, the settings, every row; rewritten
after every row, and resumed: a row gets only the fits it lacks, so a --tiled-only row is
completed by a later run without it, or with --whole-only; the row being fitted keeps its
finished tiles, and its finished whole-image fit, in OUT/NAME_<image>_<size>_s<sigma>.tiles
until it is saved) and, per row whose tiles this run fitted,
OUT/NAME_seam_<image>_<size>_s<sigma>.png: clean | noisy | whole | tiled around the first
point where four tiles meet (tick marks: the crossfade bands), 3x enlarged.

Hours on a 2-core CPU at full size (a whole 768 x 512 fit is ~2.5 s an iteration at width
64); run it on a quiet machine or a GPU. With --ray the tiles run as local Ray tasks (one
single-thread fit per core), the whole image in this process on all cores:

    python -m benchmarks.tiling [--images 2 | --names A.png,B.png] [--sizes 481x321,768x512]
                                [--sigmas 25] [--tile 128] [--overlap 32]
                                [--tiled-only | --whole-only]
                                [--device cuda] [--ray] [--out DIR] [--name tiling]
                                [--precision auto|fp32|bf16]
    python -m benchmarks.tiling --images 1 --crop 160 --width 8 -T 10 --out /tmp/tiling
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.common import RESULTS, SHARED, machine
from dipstop import DenoiseResult, denoise, denoise_tiled
from dipstop.checkpoints import image_spec, run_key
from dipstop.fitting import resolve_device, resolve_precision
from dipstop.imageio import read_image, write_image
from dipstop.lab.datasets import centre_crop, evenly_spaced, list_images, synthetic_pair
from dipstop.lambda_table import load_table
from dipstop.metrics import psnr
from dipstop.policies import DEFAULT_OUTPUT
from dipstop.runtime import cpu_name, set_threads, tune_allocator
from dipstop.tiling import OVERLAP, TILE, axis_starts


def file_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def oriented(size: tuple[int, int], own: tuple[int, int]) -> tuple[int, int]:
    """`size` (width, height) turned to the orientation of an image of size `own`."""
    return size if (own[0] >= own[1]) == (size[0] >= size[1]) else (size[1], size[0])


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


def whole_fit(
    noisy: np.ndarray, clean: np.ndarray, fit: dict, folder: Path
) -> tuple[np.ndarray, DenoiseResult]:
    """The row's whole-image fit, kept in its tile folder (`folder`/whole.pkl) once done, so
    that a restart while the tiles run does not fit it again (over an hour at 768 x 512 on a
    CPU); keyed by the pixels, the settings and the lam table, so a changed table refits.
    Until then the fit checkpoints itself there about once a minute (`resume_dir`)."""
    key = run_key(image_spec(noisy, clean, {**fit, "table": load_table(output=DEFAULT_OUTPUT)}))
    kept = folder / "whole.pkl"
    if kept.exists():
        with kept.open("rb") as f:
            old_key, output, result = pickle.load(f)
        if old_key == key:
            print(f"whole-image fit resumed from {kept}")
            return output, result
    output, result = denoise(noisy, clean=clean, tile=None, resume_dir=folder, **fit)
    folder.mkdir(parents=True, exist_ok=True)
    partial = kept.with_suffix(".tmp")
    with partial.open("wb") as f:
        pickle.dump((key, output, result), f, protocol=pickle.HIGHEST_PROTOCOL)
    partial.replace(kept)
    return output, result


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


def row_key(row: dict) -> tuple:
    """What identifies a row for resuming: image, size and noise."""
    return row["image"], row["size"], row["sigma"]


def fit_result(out: np.ndarray, clean: np.ndarray, res: object) -> dict:
    """One denoise's PSNR, time and stops, for the JSON (whole or tiled)."""
    tiled = hasattr(res, "tiles")
    row = {
        "psnr": psnr(out, clean),
        "seconds": res.seconds,
        "iterations_run": res.iterations_run,
        "sigma": res.sigma,
        "lam": res.lam,
        "precision": res.settings.get("precision"),
        "notes": res.notes,  # e.g. "resumed 8 of 20 tiles ...": its seconds are this run's
    }
    if res.estimate is not None:  # what `denoise` printed before fitting (of the tiles left)
        row["estimate_seconds"] = [res.estimate.seconds_low, res.estimate.seconds_high]
    if tiled:
        fitted = [t.result.seconds for t in res.tiles if t.result is not None]
        # the tiles' own fit times, resumed ones included: what a row cost in compute
        # even when it ran over several sessions (its `seconds` are only the last one's)
        row.update(
            tiles=len(res.tiles), stop_iterations=res.stop_iterations, tile_seconds=sum(fitted)
        )
    else:
        row.update(stop_iteration=res.stop_iteration)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(SHARED / "data" / "cbsd68"))
    ap.add_argument("--images", type=int, default=2, help="evenly spaced landscape images")
    ap.add_argument("--names", default=None, help="NAME,... : these files instead of --images")
    ap.add_argument(
        "--sizes", default="481x321,768x512", help="WxH,... (turned to the image, resized first)"
    )
    ap.add_argument("--crop", type=int, default=None, help="centre-crop side (quick checks)")
    ap.add_argument("--sigmas", default="25", help="noise levels, 0-255 scale: S,S,...")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tile", type=int, default=TILE)
    ap.add_argument("--overlap", type=int, default=OVERLAP)
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--tiled-only", action="store_true", help="skip the whole-image fits")
    only.add_argument("--whole-only", action="store_true", help="skip the tiled fits")
    ap.add_argument("--width", type=int, default=None, help="network width (default: cpu's)")
    ap.add_argument("-T", "--max-iters", type=int, default=None)
    ap.add_argument("-S", "--patience", type=int, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", default="auto", help="auto, fp32 or bf16 (denoise's)")
    ap.add_argument(
        "--ray", action="store_true", help="tiles as local Ray tasks (one 1-thread fit per core)"
    )
    ap.add_argument("--out", default=str(RESULTS), help="folder for JSON and PNGs")
    ap.add_argument("--name", default="tiling", help="OUT/NAME.json (resumed if it exists)")
    args = ap.parse_args()
    tune_allocator()
    set_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    sigmas = [float(v) for v in args.sigmas.split(",")]
    if args.names:
        chosen = [Path(args.data) / n for n in args.names.split(",")]
        missing = [p.name for p in chosen if not p.is_file()]
        if missing:
            sys.exit(f"tiling.py: error: not in {args.data}: {', '.join(missing)}; check --names")
    else:
        landscape = [p for p in list_images(args.data) if read_image(p).pixels.shape[1] == 481]
        chosen = evenly_spaced(landscape, args.images)
    fit = dict(
        width=args.width, max_iters=args.max_iters, patience=args.patience, device=args.device,
        precision=args.precision,
    )  # fmt: skip
    skip = ("out", "data", "name", "threads", "tiled_only", "whole_only")  # rows say what ran
    settings = {k: v for k, v in vars(args).items() if k not in skip}
    kinds = ["whole"] * (not args.tiled_only) + ["tiled"] * (not args.whole_only)
    settings["protocol"] = "cpu"
    precision = resolve_precision(args.precision, resolve_device(args.device))
    result = out / f"{args.name}.json"
    rows = []
    if result.exists():  # resume: keep the rows done under the same fit settings
        saved = json.loads(result.read_text())
        # not precision: bf16 and fp32 fits score alike (docs/calibration.md), and each row
        # records its own with its CPU (a session may get another machine, auto another
        # precision); seconds compare only between rows of one CPU
        same = ("seed", "tile", "overlap", "width", "max_iters", "patience", "crop")
        if any(saved["settings"].get(k) != settings[k] for k in same):
            sys.exit(
                f"tiling.py: error: {result} holds rows with other fit settings; "
                "pass another --name or --out"
            )
        rows = saved["rows"]
        for r in rows:  # rows written before --sigmas carry the one sigma in the settings
            r.setdefault("sigma", saved["settings"].get("sigma"))
            r.setdefault("precision", saved["settings"]["precision"])
            r.setdefault("cpu", saved["machine"].get("cpu", "not recorded"))
        squashed = [
            r for r in rows
            if r["resized_from"] is None and not args.crop
            and tuple(r["pixels"][::-1]) != file_size(Path(args.data) / r["image"])
        ]  # fmt: skip
        if squashed:  # a portrait photo resized to a landscape size, before the fix
            print(f"dropped {len(squashed)} rows fitted on a portrait photo made landscape")
            rows = [r for r in rows if r not in squashed]
    by_key = {row_key(r): r for r in rows}
    print("image    size              sigma  noisy  whole  tiled  tiled-whole  s whole  s tiled")
    with tempfile.TemporaryDirectory() as tmp:
        for sigma in sigmas:  # a sigma for every image first: means by sigma come soonest
            for size in sizes:
                for path in chosen:
                    own = file_size(path)
                    target = oriented(size, own)
                    label = f"{target[0]}x{target[1]}" + (f"_crop{args.crop}" if args.crop else "")
                    row = by_key.get((path.name, label, sigma))
                    missing = [k for k in kinds if row is None or k not in row]
                    if not missing:
                        continue
                    clean, noisy = sized_pair(path, target, args.crop, sigma, args.seed, Path(tmp))
                    outputs = {}
                    tiles = out / f"{args.name}_{path.stem}_{label}_s{sigma:g}.tiles"
                    if "whole" in missing:
                        outputs["whole"] = whole_fit(noisy, clean, fit, tiles)
                    if "tiled" in missing:
                        outputs["tiled"] = denoise_tiled(
                            noisy, clean=clean, tile=args.tile, overlap=args.overlap,
                            ray="" if args.ray else None, resume_dir=tiles, **fit,
                        )  # fmt: skip
                    added = row is not None  # a half added to a row an earlier run wrote
                    if row is None:
                        row = {
                            "image": path.name,
                            "size": label,
                            "sigma": sigma,
                            "pixels": list(clean.shape[:2]),
                            "resized_from": None if target == own else f"{own[0]}x{own[1]}",
                            "noisy_psnr": psnr(noisy, clean),
                            "precision": precision,
                            "cpu": cpu_name(),
                        }
                        rows.append(row)
                        by_key[row_key(row)] = row
                    for kind, (img, res) in outputs.items():
                        row[kind] = fit_result(img, clean, res)
                        if added:  # the row's cpu is its first run's
                            row[kind]["cpu"] = cpu_name()
                    nan = {"psnr": float("nan"), "seconds": float("nan")}
                    whole, tiled = row.get("whole", nan), row.get("tiled", nan)
                    if "whole" in row and "tiled" in row:
                        row["tiled_minus_whole_db"] = tiled["psnr"] - whole["psnr"]
                    print(
                        f"{path.stem:8} {label:17} {sigma:5g} {row['noisy_psnr']:6.2f} "
                        f"{whole['psnr']:6.2f} {tiled['psnr']:6.2f} "
                        f"{row.get('tiled_minus_whole_db', float('nan')):+11.2f} "
                        f"{whole['seconds']:8.0f} {tiled['seconds']:8.0f}"
                    )
                    if "tiled" in outputs:  # the seams are the tiled output's
                        png = out / f"{args.name}_seam_{path.stem}_{label}_s{sigma:g}.png"
                        pictures = {"clean": clean, f"noisy {row['noisy_psnr']:.2f} dB": noisy}
                        for kind, (img, _) in outputs.items():
                            pictures[f"{kind} {row[kind]['psnr']:.2f} dB"] = img
                        seam_figure(
                            pictures, args.tile, args.overlap, png,
                            f"{path.name} at {label}, sigma {sigma:g}: tiles of {args.tile} "
                            f"px, overlap {args.overlap} (ticks: crossfade bands)",
                        )  # fmt: skip
                        row["seam_png"] = png.name
                    settings["torch_threads"] = torch.get_num_threads()
                    payload = {"machine": machine(), "settings": settings, "rows": rows}
                    partial = result.with_suffix(".json.tmp")
                    partial.write_text(json.dumps(payload, indent=1))
                    partial.replace(result)  # written after every row: a restart resumes
                    shutil.rmtree(tiles)  # kept until the row is: a restart resumes its tiles
    summarise(rows)
    print(f"saved {result}")


def resumed(half: dict) -> bool:
    """Whether a row's tiled fit resumed tiles kept by an earlier, interrupted one."""
    return any(note.startswith("resumed") for note in half.get("notes", []))


def summarise(rows: list[dict]) -> None:
    """Per size (either orientation) and sigma, the mean PSNR (noisy, whole, tiled) over
    images (nan until every image has that fit), and the tiled seconds per CPU they ran on
    (fits run in one go only)."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for row in rows:
        side, _, rest = row["size"].partition("_")
        w, h = sorted((int(v) for v in side.split("x")), reverse=True)
        size = f"{w}x{h}" + (f"_{rest}" if rest else "")
        groups.setdefault((size, row["sigma"]), []).append(row)
    print("\nmeans: size              sigma  images  noisy  whole  tiled  s tiled")
    for (size, sigma), group in sorted(groups.items()):
        noisy = np.mean([r["noisy_psnr"] for r in group])
        means = {}
        for kind in ("whole", "tiled"):
            got = [r[kind]["psnr"] for r in group if kind in r]
            means[kind] = np.mean(got) if len(got) == len(group) else float("nan")
        # (cpu, seconds) of each tiled fit run in one go (a resumed one's wall time is partial)
        timed = [
            (r["tiled"].get("cpu", r.get("cpu", "not recorded")), r["tiled"]["seconds"])
            for r in group
            if "tiled" in r and not resumed(r["tiled"])
        ]
        parts = [
            f"{np.mean([t for c, t in timed if c == cpu]):.0f} "
            f"({sum(c == cpu for c, _ in timed)} on {cpu})"
            for cpu in sorted({c for c, _ in timed})
        ]
        untimed = sum("tiled" in r for r in group) - len(timed)
        if untimed:
            parts.append(f"{untimed} resumed, not timed")
        print(
            f"       {size:17} {sigma:5g} {len(group):7} {noisy:6.2f} {means['whole']:6.2f} "
            f"{means['tiled']:6.2f}  {'; '.join(parts)}"
        )


if __name__ == "__main__":
    main()
