"""The `dipstop` command line: a thin layer over the Python API.

Every user-fixable problem surfaces as one line `dipstop: error: ...` and exit status 2.
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from dipstop import validate
from dipstop.errors import DipstopError
from dipstop.fitting import PRECISIONS
from dipstop.policies import DEFAULT_OUTPUT, policy_names
from dipstop.protocols import PROTOCOLS, Protocol, get_protocol
from dipstop.runtime import Switches, set_threads, tune_allocator

if TYPE_CHECKING:
    from dipstop.api import DenoiseResult
    from dipstop.estimate import RunEstimate
    from dipstop.tiling import TiledResult

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
        "--device", default=None, help="cpu, cuda[:N], mps or xpu[:N] (default: cuda if available)"
    )
    p.add_argument(
        "--threads",
        type=validate.arg_threads,
        default=None,
        help="CPU threads (default: all cores); a tiled photo fits this many tiles at once, "
        "and several files this many files, one thread each",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _add_ray(p: argparse.ArgumentParser, what: str = "one run per task") -> None:
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help=f"run as Ray tasks ({what}): a fresh local Ray (one 1-thread task per core; "
        "RAY_ADDRESS when set), or the cluster at ADDRESS (host:port, ray://host:port, auto)",
    )


def _add_budget(p: argparse.ArgumentParser) -> None:
    """-T/--max-iters and -S/--patience, with the old --iters kept as a hidden alias."""
    p.add_argument("-T", "--max-iters", type=_positive_int, default=None, help="iteration budget T")
    p.add_argument("--iters", dest="max_iters", type=_positive_int, help=argparse.SUPPRESS)
    p.add_argument(
        "-S", "--patience", type=_positive_int, default=None, help="patience S of the stop rule"
    )


def _add_output(p: argparse.ArgumentParser, what: str, default: str | None) -> None:
    """-o/--output, where a command writes its result (the old --out kept hidden)."""
    p.add_argument("-o", "--output", default=default, help=what)
    p.add_argument("--out", dest="output", help=argparse.SUPPRESS)


def _add_lab_grid(p: argparse.ArgumentParser, n_images: int | None, store: str) -> None:
    """The options bench and calibrate share: data, images, sigmas, seeds, size, store."""
    p.add_argument("--data", default=None, help="folder of clean images")
    p.add_argument(
        "--images",
        default=None,
        action=_ImagesOrFolder,
        help="comma-separated file names to run (a folder here means --data, as before)",
    )
    p.add_argument(
        "--n-images",
        type=_positive_int,
        default=n_images,
        help=f"evenly spaced subset, unless --images names them (default: {n_images or 'all'})",
    )
    p.add_argument("--seeds", type=_positive_int, default=1, help="seeds per image and sigma")
    _add_budget(p)
    p.add_argument(
        "--crop",
        type=_crop,
        default=None,
        help="centre-crop side, or 'full' for the whole image (default: protocol's)",
    )
    p.add_argument(
        "--width", type=_positive_int, default=None, help="network width (default: protocol's)"
    )
    p.add_argument("--store", default=store, help="results store (SQLite)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS[1:],
        help="fit arithmetic, recorded in each run's key (default fp32; bf16: bfloat16 "
        "forward pass with channels_last, faster on a CPU with AMX)",
    )
    _add_ray(p)
    _add_common(p)


class _ImagesOrFolder(argparse.Action):
    """--images NAMES; a folder is calibrate's old spelling of --data."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:  # type: ignore[override]
        if Path(value).is_dir():
            namespace.data = value
        else:
            setattr(namespace, self.dest, value)


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
    _add_budget(p)
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
    p.add_argument(
        "--output-policy",
        default=DEFAULT_OUTPUT,
        choices=policy_names(),
        help=f"which image is returned (default {DEFAULT_OUTPUT}): since-best = the mean of "
        "the outputs from t* to the stop; raw = the output at the criterion's minimum (the "
        "paper's rule); NAME@stop / NAME@best = a running average at the end or at t*",
    )
    p.add_argument("--clean", default=None, help="clean reference image: adds PSNR to the report")
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="fit arithmetic (default auto: bf16 on a CPU with AMX, where it is faster at the "
        "same PSNR; fp32 elsewhere)",
    )
    p.add_argument(
        "--max-minutes",
        type=_positive_float,
        default=None,
        metavar="M",
        help="time budget per image: end the fit after M minutes with the best output so far "
        "(its progress kept in OUTPUT.partial/: the same command goes on from there)",
    )
    p.add_argument(
        "--report",
        default=None,
        help="folder for series.csv, curves.png, summary.json (several inputs: one sub-folder "
        "per input)",
    )
    p.add_argument("--table", default=None, help="lam(sigma) table JSON (default: shipped one)")
    _add_tiling(p)
    _add_common(p)


def _add_tiling(p: argparse.ArgumentParser) -> None:
    """--tile, --overlap, --tile-above: big images in overlapping tiles (dipstop.tiling)."""
    from dipstop.tiling import OVERLAP, TILE, TILE_ABOVE

    nonneg = validate.arg_non_negative_int
    p.add_argument(
        "--tile",
        type=nonneg,
        default=TILE,
        metavar="N",
        help="images above --tile-above pixels are denoised in overlapping N x N tiles, each "
        f"fitted and stopped on its own (default: {TILE}, the lam table's calibration size; "
        "0: the whole image in one fit)",
    )
    p.add_argument(
        "--overlap",
        type=nonneg,
        default=OVERLAP,
        metavar="M",
        help=f"least overlap of neighbouring tiles, crossfaded (default: {OVERLAP}; at most N/2)",
    )
    p.add_argument(
        "--tile-above",
        type=validate.arg_pixels_or_auto,
        default=None,
        metavar="PIXELS",
        help="tile images with more pixels than this (0: always; default auto: beyond 1.5x "
        "the largest size the lam table was calibrated at, at most 55296 (the shipped one's), "
        f"so no fit runs with an extrapolated lam; {TILE_ABOVE} with --lam or "
        "--output-policy raw)",
    )


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other dipstop error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = message.replace("\n", " ")
        self.exit(2, f"dipstop: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        # argparse reads "--sigma=--" as "--sigma" with no value, i.e. the default: refuse it
        for arg in sys.argv[1:] if args is None else args:
            if isinstance(arg, str) and arg.startswith("-") and arg.endswith("=--"):
                self.error(f"argument {arg[:-3]}: expected a value, got '--'")
        return super().parse_known_args(args, namespace)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dipstop",
        description="Deep Image Prior denoising that stops itself (JPEG-size early stopping).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    den = sub.add_parser("denoise", help="denoise image files, or the images of folders")
    den.add_argument(
        "input",
        nargs="+",
        help="noisy images (PNG, TIFF, JPEG; 8 or 16 bit; gray, RGB, RGBA), or folders of them",
    )
    _add_output(
        den,
        "denoised image (default: INPUT_dipstop.png); with several inputs or a folder, the "
        "folder for the NAME_dipstop.png outputs (created if missing; default: beside each "
        "input)",
        None,
    )
    den.add_argument(
        "--overwrite",
        action="store_true",
        help="allow the output to replace the input file; with several inputs, redo the "
        "files whose output exists (skipped otherwise)",
    )
    _add_ray(den, "one task per file, or per tile of a tiled photo")
    _add_fit_options(den)

    demo = sub.add_parser("demo", help="denoise the bundled sample image (a cat, sigma 25)")
    _add_output(demo, "folder for the images and report", "out/demo")
    _add_fit_options(demo)

    cal = sub.add_parser("calibrate", help="record DIP runs on clean images and fit lam(sigma)")
    cal.add_argument("--sigmas", type=_sigma_list, default=_sigma_list("5,15,25,35,50,75"))
    _add_output(cal, "write the lam(sigma) table here (JSON)", None)
    cal.add_argument("--table", dest="output", help=argparse.SUPPRESS)
    cal.add_argument("--search-only", action="store_true", help="only search the stored runs")
    cal.add_argument(
        "--output-policy",
        default=DEFAULT_OUTPUT,
        choices=policy_names(),
        help=f"the output the lams are chosen for (default {DEFAULT_OUTPUT}; raw = the paper's "
        "selection, argmin of E_t)",
    )
    cal.add_argument(
        "--lam-smooth",
        type=_positive_float,
        default=1.0,
        metavar="F",
        help="for an averaged output: the lam best on average over [lam/F, lam*F] (default 1)",
    )
    _add_lab_grid(cal, 8, "results/calibration.sqlite")

    bench = sub.add_parser("bench", help="run a data set x sigma x seed grid into a results store")
    bench.add_argument("--sigmas", type=_sigma_list, default=_sigma_list("15,25,50"))
    bench.add_argument(
        "--every", type=_positive_int, default=10, help="BRISQUE/NIQE every k iterations"
    )
    _add_lab_grid(bench, None, "results/bench.sqlite")

    rep = sub.add_parser("report", help="Table 1 and Figures 1-4 from a results store")
    rep.add_argument("store", help="results store written by dipstop bench")
    _add_output(rep, "report folder (default: STORE's folder/report)", None)
    rep.add_argument(
        "-S", "--patience", type=_positive_int, default=None, help="S (default: the runs' own)"
    )
    rep.add_argument("--table", default=None, help="lam(sigma) table (default: shipped one)")
    rep.add_argument("--fig4-image", default=None, help="image for Fig. 4 (default: first)")
    rep.add_argument(
        "--data", default=None, help="folder of the clean images (default: where bench read them)"
    )
    fig4 = rep.add_mutually_exclusive_group()
    fig4.add_argument(
        "--refit-fig4",
        dest="fig4",
        action="store_const",
        const="refit",
        default="reuse",
        help="refit Fig. 4's run even if the report folder keeps a refit of the same key "
        "(default: reuse it)",
    )
    fig4.add_argument(
        "--no-fig4",
        dest="fig4",
        action="store_const",
        const="skip",
        help="leave out Fig. 4 (its refit is the slow part of a report)",
    )
    _add_common(rep)
    return parser


def _crop(text: str) -> int:
    """--crop: a side in pixels, or "full" (0) for the whole image."""
    if text.strip().lower() == "full":
        return 0
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a side in pixels nor 'full'; give e.g. 192, or full"
        ) from None


def _lab_protocol(args: argparse.Namespace) -> Protocol:
    """The protocol of bench and calibrate runs: the named one with the options' overrides."""
    protocol = get_protocol(args.protocol).with_(
        crop=args.crop or None, width=args.width, max_iters=args.max_iters, patience=args.patience
    )
    return replace(protocol, crop=None) if args.crop == 0 else protocol


def _grid_images(args: argparse.Namespace) -> tuple[Path, list[str] | None]:
    """The data folder and the chosen file names of bench and calibrate."""
    from dipstop.lab.datasets import evenly_spaced, list_images

    data, names = args.data, None
    if data is None:
        raise DipstopError("no image folder given; pass --data DIR (a folder of clean images)")
    if args.images:
        names = [n.strip() for n in args.images.split(",") if n.strip()]
    elif args.n_images:
        names = [f.name for f in evenly_spaced(list_images(data), args.n_images)]
    return Path(data), names


def _log(args: argparse.Namespace) -> Callable[[str], None]:
    return (lambda _msg: None) if args.quiet else (lambda msg: print(msg, flush=True))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from dipstop.lab.calibration import calibrate_from_store, specs, write_lambda_table
    from dipstop.lab.datasets import list_images
    from dipstop.lab.executor import run_grid
    from dipstop.lab.store import ResultStore

    protocol = _lab_protocol(args)
    data, names = _grid_images(args)
    chosen = [data / n for n in names] if names else list_images(data)
    store = ResultStore(args.store, readonly=args.search_only)  # a search only reads
    if not args.search_only:
        todo = specs(chosen, args.sigmas, protocol, range(args.seeds), args.precision)
        use_ray = args.ray is not None
        run_grid(todo, store, args.device, args.ray, use_ray, _log(args), switches=SWITCHES)
    policy = args.output_policy
    choices = calibrate_from_store(
        store,
        protocol.width,
        protocol.crop,
        protocol.max_iters,
        protocol.patience,
        policy,
        args.lam_smooth,
    )
    for c in choices:
        at = "argmin E" if policy == "raw" else f"{policy}'s output"
        print(
            f"sigma {c.sigma:5.1f}: lam {c.lam:10.4g}  PSNR at {at} {c.mean_psnr:6.2f} dB, "
            f"at the Eq. 4 stop (S={protocol.patience}) {c.mean_psnr_eq4:6.2f} dB  "
            f"(raw peak {c.mean_peak_psnr:6.2f} dB, {c.n_runs} runs, "
            f"{c.mean_iterations:.0f} iterations)"
        )
    if args.output:
        command = "dipstop " + " ".join(sys.argv[1:])
        write_lambda_table(
            args.output,
            choices,
            protocol,
            command,
            [p.name for p in chosen],
            data.name,
            policy,
            args.lam_smooth,
        )
        print(f"wrote {args.output}")
    return 0


def _fit_kwargs(args: argparse.Namespace, interruptible: bool = True) -> dict:
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
        precision=args.precision,
        output=args.output_policy,
        progress=not args.quiet and sys.stderr.isatty(),
        table=args.table,
        interruptible=interruptible,  # Ctrl-C: return the best output so far
        switches=SWITCHES,
        max_minutes=args.max_minutes,
        on_estimate=None if args.quiet else _print_estimate,
        tile=args.tile or None,
        overlap=args.overlap,
        tile_above=args.tile_above,
    )


def _print_estimate(estimate: RunEstimate) -> None:
    from tqdm import tqdm

    tqdm.write(f"dipstop: {estimate.line()}", file=sys.stderr)  # clears a progress bar first


def _denoise_file(args: argparse.Namespace, src: Path, dst: Path, clean: Path | None) -> int:
    """One file, as `dipstop denoise IN -o OUT` and `dipstop demo` run it."""
    from dipstop.batch import denoise_file

    overwrite = getattr(args, "overwrite", False)
    report = Path(args.report) if args.report else None
    if report is not None:
        _check_folder(report)
    # with --ray the fit (or a tiled photo's tiles) runs as Ray tasks; the file is read and
    # written here, after denoise_file has checked dst is writable
    fit = {**_fit_kwargs(args), "ray": getattr(args, "ray", None)}
    result = denoise_file(src, dst, clean=clean, report=report, overwrite=overwrite, **fit)
    if not args.quiet:
        print("\n".join(_result_lines(result, dst)))
    return 130 if result.interrupted else 0  # 130: the shell's code for an interrupt


def _result_lines(result: DenoiseResult | TiledResult, dst: Path | str) -> list[str]:
    """What a finished file says: where it stopped and why, PSNR if known, notes."""
    from dipstop.tiling import TiledResult

    if isinstance(result, TiledResult):  # one line for all the tiles
        lines = [f"{result.describe()} -> {dst}"]
        if result.psnr is not None:
            lines.append(f"PSNR {result.psnr:.2f} dB")
        return lines + [f"note: {note}" for note in result.notes]
    how = "estimated" if result.sigma_estimated else "given"
    if result.interrupted:
        stop = (
            f"interrupted after {result.iterations_run} iterations; returned the best so "
            f"far, t*={result.stop_iteration}"
        )
    elif result.stopped_by_budget:
        stop = (
            f"time budget ran out after {result.iterations_run} iterations; returned the best "
            f"so far, t*={result.stop_iteration}"
        )
    elif result.stopped_early:
        stop = f"stopped at t*={result.stop_iteration} after {result.iterations_run} iterations"
    else:
        stop = f"no stop before T={result.iterations_run}; returned t*={result.stop_iteration}"
    lines = [
        f"sigma {result.sigma:.1f} ({how}), lam {result.lam:.4g}: {stop}, "
        f"{result.seconds:.0f} s in {result.settings.get('precision', 'fp32')} -> {dst}"
    ]
    if result.psnr is not None:
        lines.append(
            f"PSNR {result.psnr:.2f} dB, output {result.settings.get('output')} (the raw "
            f"outputs' peak: {result.peak_psnr:.2f} dB at t={result.peak_iteration})"
        )
    lines += [f"note: {note}" for note in result.notes]
    return lines


def _check_folder(folder: Path) -> None:
    import os

    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise DipstopError(f"cannot create report folder {folder}; choose a writable --report")


def _check_fit_options(args: argparse.Namespace) -> None:
    """The fit options, the table and (in-process) the device, checked before any fitting."""
    import inspect

    from dipstop.lambda_table import load_table
    from dipstop.validate import check_denoise_options, check_tiling

    fit = _fit_kwargs(args)
    checked = inspect.signature(check_denoise_options).parameters
    check_denoise_options(**{k: v for k, v in fit.items() if k in checked})
    check_tiling(args.tile or None, args.overlap, args.tile_above)
    if args.table is not None:
        load_table(args.table)
    _check_device_and_ray(args)


def _check_device_and_ray(args: argparse.Namespace) -> None:
    """--device and --ray, checked before any work: a device this machine has (with --ray
    only its name: a cluster may have devices this machine lacks), and a Ray to join (a
    cluster's address must take a connection; none means a fresh local Ray)."""
    ray = getattr(args, "ray", None)
    if getattr(args, "device", None) is not None:
        from dipstop.fitting import resolve_device

        resolve_device(args.device, here=ray is None)
    if ray is not None:
        from dipstop.raytasks import check_ray_address

        check_ray_address(ray)


def cmd_denoise(args: argparse.Namespace) -> int:
    from dipstop.batch import default_output

    if len(args.input) == 1 and not Path(args.input[0]).is_dir():  # one file: -o is a file
        src = Path(args.input[0])
        dst = Path(args.output) if args.output else default_output(src)
        return _denoise_file(args, src, dst, Path(args.clean) if args.clean else None)
    return _denoise_batch(args)


def _denoise_batch(args: argparse.Namespace) -> int:
    """Several files or folders: plan, run (in-process or as Ray tasks), summarise.

    A file that fails is reported at the end and the others go on (exit 2 if any failed);
    Ctrl-C ends the batch, keeping the finished outputs (exit 130).
    """
    from dipstop.batch import file_workers, prepare_batch, run_jobs, shown

    if args.clean:
        raise DipstopError(
            "--clean takes one input; denoise the files one at a time to compare each with "
            "its clean image"
        )
    _check_fit_options(args)
    if args.report:
        _check_folder(Path(args.report))
    todo, skipped = prepare_batch(args.input, args.output, args.report, args.overwrite)
    log = _log(args)
    for job in skipped:
        log(f"skipping {shown(job.src)}: {shown(job.dst)} exists (pass --overwrite to redo it)")
    fit = _fit_kwargs(args, interruptible=False)  # Ctrl-C ends the batch, not just one fit
    workers = None if args.ray is not None else file_workers(todo, fit)
    if workers is not None and workers > 1:
        log(f"denoising {len(todo)} files, {workers} at a time (one thread each)")
    outcomes = run_jobs(
        todo, fit, use_ray=args.ray is not None, ray_address=args.ray, overwrite=args.overwrite,
        workers=workers,
    )  # fmt: skip
    done, failed, interrupted = 0, [], False
    try:
        for job, result, error in outcomes:
            step = f"[{done + len(failed) + 1}/{len(todo)}] {shown(job.src)}"
            if result is None:
                failed.append((job, error))
                log(f"{step}: failed (reported at the end)")
            else:
                done += 1
                first, *rest = _result_lines(result, shown(job.dst))
                log("\n".join([f"{step}: {first}", *(f"  {line}" for line in rest)]))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        outcomes.close()
    log(
        f"{done} denoised, {len(skipped)} skipped (output exists), {len(failed)} failed"
        + (f", {len(todo) - done - len(failed)} not run (interrupted)" if interrupted else "")
    )
    for job, error in failed:
        print(f"dipstop: error: {shown(job.src)}: {error}", file=sys.stderr)
    if interrupted:
        print(
            f"dipstop: interrupted; the {done} finished outputs are kept; rerun the same "
            "command to do the rest (finished outputs are skipped)",
            file=sys.stderr,
        )
        return 130
    return 2 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dipstop.imageio import write_image
    from dipstop.sample import sample_pair

    out = Path(args.output)
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
    from dipstop.lab.executor import run_grid
    from dipstop.lab.runs import bench_criteria, grid
    from dipstop.lab.store import ResultStore

    protocol = _lab_protocol(args)
    data, names = _grid_images(args)
    specs = grid(data, args.sigmas, protocol, range(args.seeds), names,
                 bench_criteria(args.every), precision=args.precision)  # fmt: skip
    store = ResultStore(args.store)
    use_ray = args.ray is not None
    run_grid(specs, store, args.device, args.ray, use_ray, _log(args), switches=SWITCHES)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from dipstop.lab.paper_report import build_report
    from dipstop.lab.store import ResultStore
    from dipstop.lambda_table import load_table

    path = Path(args.store)
    if not path.is_file():
        raise DipstopError(f"no results store at {path}; run dipstop bench --store {path} first")
    store = ResultStore(path, readonly=True)
    out = Path(args.output) if args.output else path.parent / "report"
    report = build_report(
        store,
        out,
        args.patience,  # None: the S of the protocol the runs were recorded under
        load_table(args.table),
        args.fig4_image,
        Path(args.data) if args.data else None,
        args.device,
        load_table(output=DEFAULT_OUTPUT),
        fig4=args.fig4,
        log=_log(args),
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


SWITCHES = Switches()  # the engine switches, read from the environment by `main`


def main(argv: Sequence[str] | None = None) -> int:
    global SWITCHES
    args = build_parser().parse_args(argv)
    tune_allocator()
    set_threads(args.threads)
    with warnings.catch_warnings():  # dipstop's own warnings, one line each
        warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
        try:
            SWITCHES = Switches.from_env()
            _check_device_and_ray(args)
            return COMMANDS[args.command](args)
        except DipstopError as exc:
            message = str(exc).replace("\r", "\\r").replace("\n", "\\n")  # one line, always
            print(f"dipstop: error: {message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            if args.command in ("bench", "calibrate"):
                kept = (
                    "finished runs are kept; rerun to resume (the unfinished one from its "
                    "checkpoint)"
                )
            else:
                kept = "nothing was written"
            print(f"dipstop: interrupted; {kept}", file=sys.stderr)
            return 130


def _show_warning(
    shown: Callable[..., None], message: Warning | str, category: type[Warning], filename: str,
    lineno: int, file: object = None, line: str | None = None,
) -> None:  # fmt: skip
    """`warnings.showwarning` for the CLI: a warning dipstop raises is one line,
    "dipstop: warning: ..."; any other goes to `shown` (Python's own format)."""
    if issubclass(category, UserWarning) and Path(filename).is_relative_to(Path(__file__).parent):
        print(f"dipstop: warning: {message}", file=sys.stderr)
    else:
        shown(message, category, filename, lineno, file, line)


if __name__ == "__main__":
    sys.exit(main())
