"""The `dipstop` command line: a thin layer over the Python API.

Every user-fixable problem surfaces as one line `dipstop: error: ...` and exit status 2.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Sequence
from pathlib import Path

from dipstop import validate
from dipstop.errors import DipstopError
from dipstop.protocols import PROTOCOLS, get_protocol
from dipstop.runtime import set_threads, tune_allocator

# argparse types: the checks live in dipstop.validate
_sigma_list = validate.arg_sigma_list
_positive_int = validate.arg_positive_int
_positive_float = validate.arg_positive_float


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--protocol",
        default="cpu",
        choices=sorted(PROTOCOLS),
        help="named settings (width, T, S, crop); options below override them",
    )
    p.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)"
    )
    p.add_argument(
        "--threads",
        type=validate.arg_threads,
        default=None,
        help="CPU threads (default: all cores)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _add_ray(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run as Ray tasks: a local Ray (one 1-thread run per core), or the cluster at ADDRESS",
    )


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sigma",
        type=_positive_float,
        default=None,
        help="noise std on the 0-255 scale (default: estimated from the image)",
    )
    p.add_argument(
        "--lam",
        type=_positive_float,
        default=None,
        help="CIFS weight lam = paper lambda / (H*W), MSE on [0,1] (default: from sigma)",
    )
    p.add_argument("--width", type=_positive_int, default=None, help="network width (channels)")
    p.add_argument("-T", "--max-iters", type=_positive_int, default=None, help="iteration budget T")
    p.add_argument(
        "-S", "--patience", type=_positive_int, default=None, help="patience S of the stop rule"
    )
    p.add_argument("--lr", type=_positive_float, default=None, help="Adam learning rate")
    p.add_argument(
        "--z-noise-std",
        type=validate.arg_non_negative_float,
        default=None,
        help="std of the z perturbation",
    )
    p.add_argument(
        "--seed", type=validate.arg_seed, default=0, help="seed for network, input and noise"
    )
    p.add_argument("--clean", default=None, help="clean reference image: adds PSNR to the report")
    p.add_argument("--report", default=None, help="folder for series.csv, curves.png, summary.json")
    p.add_argument("--table", default=None, help="lam(sigma) table JSON (default: shipped one)")
    _add_common(p)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other dipstop error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = message.replace("\n", " ")
        self.exit(2, f"dipstop: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dipstop",
        description="Deep Image Prior denoising that stops itself (JPEG-size early stopping).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    den = sub.add_parser("denoise", help="denoise an image file")
    den.add_argument("input", help="noisy image (PNG, TIFF, JPEG; 8 or 16 bit; gray, RGB, RGBA)")
    den.add_argument(
        "-o", "--output", default=None, help="denoised image (default: INPUT_dipstop.png)"
    )
    den.add_argument(
        "--overwrite", action="store_true", help="allow the output to replace the input file"
    )
    _add_fit_options(den)

    demo = sub.add_parser("demo", help="denoise the bundled sample image (a cat, sigma 25)")
    demo.add_argument("--out", default="out/demo", help="folder for the images and report")
    _add_fit_options(demo)

    cal = sub.add_parser("calibrate", help="record DIP runs on clean images and fit lam(sigma)")
    cal.add_argument("--images", required=True, help="folder of clean training images")
    cal.add_argument(
        "--n-images", type=_positive_int, default=8, help="images used (evenly spaced)"
    )
    cal.add_argument("--sigmas", type=_sigma_list, default=_sigma_list("5,15,25,35,50,75"))
    cal.add_argument("--seeds", type=_positive_int, default=1, help="seeds per image and sigma")
    cal.add_argument(
        "--iters", type=_positive_int, default=None, help="iterations recorded (default: T)"
    )
    cal.add_argument(
        "--crop", type=_positive_int, default=None, help="centre-crop side (default: protocol's)"
    )
    cal.add_argument(
        "--width", type=_positive_int, default=None, help="network width (default: protocol's)"
    )
    cal.add_argument("--store", default="results/calibration.sqlite", help="results store")
    cal.add_argument("--table", default=None, help="write the lam(sigma) table here (JSON)")
    cal.add_argument("--search-only", action="store_true", help="only search the stored runs")
    _add_ray(cal)
    _add_common(cal)

    bench = sub.add_parser("bench", help="run a data set x sigma x seed grid into a results store")
    bench.add_argument("--data", required=True, help="folder of clean images (e.g. CBSD68)")
    bench.add_argument("--sigmas", type=_sigma_list, default=_sigma_list("15,25,50"))
    bench.add_argument("--seeds", type=_positive_int, default=1, help="seeds per image and sigma")
    pick = bench.add_mutually_exclusive_group()
    pick.add_argument("--images", default=None, help="comma-separated file names to run")
    pick.add_argument(
        "--n-images", type=_positive_int, default=None, help="evenly spaced subset size"
    )
    bench.add_argument(
        "--every", type=_positive_int, default=10, help="BRISQUE/NIQE every k iterations"
    )
    bench.add_argument("--iters", type=_positive_int, default=None, help="T (default: protocol's)")
    bench.add_argument(
        "--crop", type=_positive_int, default=None, help="centre-crop side (default: protocol's)"
    )
    bench.add_argument(
        "--width", type=_positive_int, default=None, help="network width (default: protocol's)"
    )
    bench.add_argument("--store", default="results/bench.sqlite", help="results store")
    _add_ray(bench)
    _add_common(bench)

    rep = sub.add_parser("report", help="Table 1 and Figures 1-4 from a results store")
    rep.add_argument("store", help="results store written by dipstop bench")
    rep.add_argument("--out", default=None, help="report folder (default: STORE's folder/report)")
    rep.add_argument(
        "-S", "--patience", type=_positive_int, default=None, help="S (default: protocol's)"
    )
    rep.add_argument("--table", default=None, help="lam(sigma) table (default: shipped one)")
    rep.add_argument("--fig4-image", default=None, help="image for Fig. 4 (default: first)")
    rep.add_argument(
        "--data", default=None, help="folder of the clean images (default: where bench read them)"
    )
    _add_common(rep)
    return parser


def cmd_calibrate(args: argparse.Namespace) -> int:
    from dipstop.calibration import calibrate_from_store, record
    from dipstop.datasets import evenly_spaced, list_images
    from dipstop.lambda_table import write_table
    from dipstop.store import ResultStore

    protocol = get_protocol(args.protocol).with_(crop=args.crop, width=args.width)
    chosen = evenly_spaced(list_images(args.images), args.n_images)
    store = ResultStore(args.store)
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    if not args.search_only:
        record(
            chosen,
            args.sigmas,
            protocol,
            store,
            range(args.seeds),
            args.iters,
            args.device,
            log,
            use_ray=args.ray is not None,
            ray_address=args.ray or None,
        )
    iters = args.iters or protocol.max_iters
    choices = calibrate_from_store(store, protocol.width, protocol.crop, iters, protocol.patience)
    for c in choices:
        print(
            f"sigma {c.sigma:5.1f}: lam {c.lam:10.4g}  PSNR at argmin E {c.mean_psnr:6.2f} dB, "
            f"at the Eq. 4 stop (S={protocol.patience}) {c.mean_psnr_eq4:6.2f} dB  "
            f"(peak {c.mean_peak_psnr:6.2f} dB, {c.n_runs} runs)"
        )
    if args.table:
        entries = [
            {
                "sigma": c.sigma,
                "lam": c.lam,
                "mean_psnr": round(c.mean_psnr, 4),
                "mean_psnr_eq4": round(c.mean_psnr_eq4, 4),
                "mean_peak_psnr": round(c.mean_peak_psnr, 4),
                "n_runs": c.n_runs,
                "images": c.images,
            }
            for c in choices
        ]
        provenance = {
            "command": "dipstop " + " ".join(sys.argv[1:]),
            "date": datetime.date.today().isoformat(),
            "images": sorted({name for c in choices for name in c.images}),
            "planned_images": [p.name for p in chosen],
            "image_folder": Path(args.images).name,
            "sigmas": args.sigmas,
            "iters": iters,
            "selection": "argmin_t E_t over all recorded iterations (paper Sec. 3.2)",
        }
        write_table(args.table, entries, protocol.as_dict(), provenance)
        print(f"wrote {args.table}")
    return 0


def _fit_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        sigma=args.sigma,
        lam=args.lam,
        protocol=args.protocol,
        width=args.width,
        max_iters=args.max_iters,
        patience=args.patience,
        lr=args.lr,
        z_noise_std=args.z_noise_std,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet and sys.stderr.isatty(),
        table=args.table,
        interruptible=True,  # Ctrl-C: write the best output so far
    )


def _denoise_file(args: argparse.Namespace, src: Path, dst: Path, clean: Path | None) -> int:
    from dipstop.api import denoise
    from dipstop.imageio import check_writable, join_array, read_image, write_image

    check_writable(dst, protect=(src, clean), overwrite=getattr(args, "overwrite", False))
    if args.report:
        _check_folder(Path(args.report))
    image = read_image(src)
    clean_px = None
    if clean is not None:
        clean_img = read_image(clean)
        clean_px = join_array(clean_img.pixels, clean_img)
    raw = join_array(image.pixels, image)
    out, result = denoise(raw, clean=clean_px, **_fit_kwargs(args))
    write_image(dst, out)
    if args.report:
        from dipstop.report import write_run_report

        write_run_report(result, args.report)
    if not args.quiet:
        how = "estimated" if result.sigma_estimated else "given"
        if result.interrupted:
            stop = (
                f"interrupted after {result.iterations_run} iterations; returned the best so "
                f"far, t*={result.stop_iteration}"
            )
        elif result.stopped_early:
            stop = f"stopped at t*={result.stop_iteration} after {result.iterations_run} iterations"
        else:
            stop = f"no stop before T={result.iterations_run}; returned t*={result.stop_iteration}"
        print(
            f"sigma {result.sigma:.1f} ({how}), lam {result.lam:.4g}: {stop}, "
            f"{result.seconds:.0f} s -> {dst}"
        )
        if result.psnr is not None:
            print(
                f"PSNR {result.psnr:.2f} dB at t* (peak {result.peak_psnr:.2f} dB "
                f"at t={result.peak_iteration})"
            )
        for note in result.notes:
            print(f"note: {note}")
    return 130 if result.interrupted else 0  # 130: the shell's code for an interrupt


def _check_folder(folder: Path) -> None:
    import os

    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise DipstopError(f"cannot create report folder {folder}; choose a writable --report")


def cmd_denoise(args: argparse.Namespace) -> int:
    src = Path(args.input)
    dst = Path(args.output) if args.output else src.with_name(src.stem + "_dipstop.png")
    return _denoise_file(args, src, dst, Path(args.clean) if args.clean else None)


def cmd_demo(args: argparse.Namespace) -> int:
    from dipstop.imageio import write_image
    from dipstop.sample import sample_pair

    out = Path(args.out)
    _check_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    clean, noisy = sample_pair()
    write_image(out / "clean.png", clean)
    write_image(out / "noisy.png", noisy)
    if args.report is None:
        args.report = str(out / "report")
    if not args.quiet:
        from dipstop.metrics import psnr

        print(
            f"sample: {out / 'noisy.png'} ({clean.shape[1]}x{clean.shape[0]}, sigma 25), "
            f"PSNR {psnr(noisy / 255.0, clean / 255.0):.2f} dB"
        )
    return _denoise_file(args, out / "noisy.png", out / "denoised.png", out / "clean.png")


def cmd_bench(args: argparse.Namespace) -> int:
    from dipstop.datasets import evenly_spaced, list_images
    from dipstop.experiments import grid, run_grid
    from dipstop.store import ResultStore

    protocol = get_protocol(args.protocol).with_(
        max_iters=args.iters, crop=args.crop, width=args.width
    )
    names = [n.strip() for n in args.images.split(",")] if args.images else None
    if args.n_images:
        files = list_images(args.data)
        names = [f.name for f in evenly_spaced(files, args.n_images)]
    specs = grid(args.data, args.sigmas, protocol, range(args.seeds), names, args.every)
    store = ResultStore(args.store)
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    run_grid(specs, store, args.device, args.ray or None, args.ray is not None, log)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from dipstop.lambda_table import load_table
    from dipstop.paper_report import build_report
    from dipstop.store import ResultStore

    path = Path(args.store)
    if not path.is_file():
        raise DipstopError(f"no results store at {path}; run dipstop bench --store {path} first")
    store = ResultStore(path)
    patience = args.patience or get_protocol(args.protocol).patience
    out = Path(args.out) if args.out else path.parent / "report"
    report = build_report(
        store,
        out,
        patience,
        load_table(args.table),
        args.fig4_image,
        Path(args.data) if args.data else None,
        args.device,
    )
    if not args.quiet:
        print(f"wrote {report}")
    return 0


COMMANDS = {
    "denoise": cmd_denoise,
    "demo": cmd_demo,
    "calibrate": cmd_calibrate,
    "bench": cmd_bench,
    "report": cmd_report,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_allocator()
    set_threads(args.threads)
    try:
        return COMMANDS[args.command](args)
    except DipstopError as exc:
        message = str(exc).replace("\r", "\\r").replace("\n", "\\n")  # one line, always
        print(f"dipstop: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command in ("bench", "calibrate"):
            kept = (
                "finished runs are kept; rerun to resume (the unfinished one from its checkpoint)"
            )
        else:
            kept = "nothing was written"
        print(f"dipstop: interrupted; {kept}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
