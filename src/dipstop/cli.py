"""The `dipstop` command line: a thin layer over the Python API.

The user's commands (`denoise`, `demo`) are here, the lab's (`calibrate`, `bench`,
`report`) in `dipstop.lab.commands`. Every user-fixable problem surfaces as one line
`dipstop: error: ...` and exit status 2.
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dipstop.batch import default_output, denoise_file, file_workers, prepare_batch, run_jobs, shown
from dipstop.cli_args import Parser, add_common, add_output, add_ray, log
from dipstop.errors import DipstopError
from dipstop.fitting import resolve_device
from dipstop.imageio import write_image
from dipstop.lab import commands as lab
from dipstop.lambda_table import load_table
from dipstop.metrics import psnr
from dipstop.options import DenoiseOptions, from_args
from dipstop.raytasks import check_ray_address
from dipstop.results import TiledResult
from dipstop.runtime import Switches, set_threads, tune_allocator
from dipstop.sample import sample_pair

if TYPE_CHECKING:
    from dipstop.estimate import RunEstimate
    from dipstop.results import DenoiseResult, TiledResult


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    """Every option of a fit (the CLI fields of `DenoiseOptions`), --clean and --report."""
    p.add_argument("--clean", default=None, help="clean reference image: adds PSNR to the report")
    p.add_argument(
        "--report",
        default=None,
        help="folder for series.csv, curves.png, summary.json (several inputs: one sub-folder "
        "per input)",
    )
    add_common(p, None)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dipstop",
        description="Deep Image Prior denoising that stops itself (JPEG-size early stopping).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    den = sub.add_parser("denoise", help="denoise image files, or the images of folders")
    den.add_argument(
        "input",
        nargs="+",
        help="noisy images (PNG, TIFF, JPEG; 8 or 16 bit; gray, RGB, RGBA), or folders of them",
    )
    add_output(
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
    add_ray(den, "one task per file, or per tile of a tiled photo")
    _add_fit_options(den)

    demo = sub.add_parser("demo", help="denoise the bundled sample image (a cat, sigma 25)")
    add_output(demo, "folder for the images and report", "out/demo")
    _add_fit_options(demo)

    COMMANDS.update(lab.add_commands(sub))
    return parser


def _options(args: argparse.Namespace, interruptible: bool = True) -> DenoiseOptions:
    """The fit's options from the command line, with the CLI's hooks: a progress bar on a
    terminal, the estimate printed, Ctrl-C returning the best output so far."""
    return from_args(
        args,
        progress=not args.quiet and sys.stderr.isatty(),
        interruptible=interruptible,
        switches=args.switches,
        on_estimate=None if args.quiet else _print_estimate,
        ray=getattr(args, "ray", None),
    )


def _print_estimate(estimate: RunEstimate) -> None:
    from tqdm import tqdm

    tqdm.write(f"dipstop: {estimate.line()}", file=sys.stderr)  # clears a progress bar first


def _denoise_file(args: argparse.Namespace, src: Path, dst: Path, clean: Path | None) -> int:
    """One file, as `dipstop denoise IN -o OUT` and `dipstop demo` run it."""
    overwrite = getattr(args, "overwrite", False)
    report = Path(args.report) if args.report else None
    if report is not None:
        _check_folder(report)
    # with --ray the fit (or a tiled photo's tiles) runs as Ray tasks; the file is read and
    # written here, after denoise_file has checked dst is writable
    options = _options(args)
    result = denoise_file(src, dst, options, clean=clean, report=report, overwrite=overwrite)
    if not args.quiet:
        print("\n".join(_result_lines(result, dst)))
    return 130 if result.interrupted else 0  # 130: the shell's code for an interrupt


def _result_lines(result: DenoiseResult | TiledResult, dst: Path | str) -> list[str]:
    """What a finished file says: where it stopped and why, PSNR if known, notes."""
    if isinstance(result, TiledResult):  # one line for all the tiles
        lines = [f"{result.describe()} -> {dst}"]
        if result.psnr is not None:
            lines.append(f"PSNR {result.psnr:.2f} dB{_filtered(result)}")
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
            f"PSNR {result.psnr:.2f} dB{_filtered(result)}, output "
            f"{result.settings.get('output')} (the raw outputs' peak: {result.peak_psnr:.2f} dB "
            f"at t={result.peak_iteration})"
        )
    lines += [f"note: {note}" for note in result.notes]
    return lines


def _filtered(result: DenoiseResult | TiledResult) -> str:
    """What the Wiener filter added, when it ran and the PSNR before it is known."""
    if result.fit_psnr is None:
        return ""
    return f" ({result.fit_psnr:.2f} dB before the Wiener filter)"


def _check_folder(folder: Path) -> None:
    import os

    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise DipstopError(f"cannot create report folder {folder}; choose a writable --report")


def _check_fit_options(args: argparse.Namespace) -> None:
    """The fit options, the table and (in-process) the device, checked before any fitting."""
    _options(args).check()
    if args.table is not None:
        load_table(args.table)
    _check_device_and_ray(args)


def _check_device_and_ray(args: argparse.Namespace) -> None:
    """--device and --ray, checked before any work: a device this machine has (with --ray
    only its name: a cluster may have devices this machine lacks), and a Ray to join (a
    cluster's address must take a connection; none means a fresh local Ray)."""
    ray = getattr(args, "ray", None)
    if getattr(args, "device", None) is not None:

        resolve_device(args.device, here=ray is None)
    if ray is not None:

        check_ray_address(ray)


def cmd_denoise(args: argparse.Namespace) -> int:
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
    if args.clean:
        raise DipstopError(
            "--clean takes one input; denoise the files one at a time to compare each with "
            "its clean image"
        )
    _check_fit_options(args)
    if args.report:
        _check_folder(Path(args.report))
    todo, skipped = prepare_batch(args.input, args.output, args.report, args.overwrite)
    say = log(args)
    for job in skipped:
        say(f"skipping {shown(job.src)}: {shown(job.dst)} exists (pass --overwrite to redo it)")
    options = _options(args, interruptible=False)  # Ctrl-C ends the batch, not just one fit
    workers = None if args.ray is not None else file_workers(todo, options)
    if workers is not None and workers > 1:
        say(f"denoising {len(todo)} files, {workers} at a time (one thread each)")
    outcomes = run_jobs(todo, options, overwrite=args.overwrite, workers=workers)
    done, failed, interrupted = 0, [], False
    try:
        for job, result, error in outcomes:
            step = f"[{done + len(failed) + 1}/{len(todo)}] {shown(job.src)}"
            if result is None:
                failed.append((job, error))
                say(f"{step}: failed (reported at the end)")
            else:
                done += 1
                first, *rest = _result_lines(result, shown(job.dst))
                say("\n".join([f"{step}: {first}", *(f"  {line}" for line in rest)]))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        outcomes.close()
    say(
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
    out = Path(args.output)
    _check_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    clean, noisy = sample_pair()
    write_image(out / "clean.png", clean)
    write_image(out / "noisy.png", noisy)
    if args.report is None:
        args.report = str(out / "report")
    if not args.quiet:

        print(
            f"sample: {out / 'noisy.png'} ({clean.shape[1]}x{clean.shape[0]}, sigma 25), "
            f"PSNR {psnr(noisy / 255.0, clean / 255.0):.2f} dB"
        )
    return _denoise_file(args, out / "noisy.png", out / "denoised.png", out / "clean.png")


# the sub-commands' handlers by name; `build_parser` adds the lab's
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "denoise": cmd_denoise,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]  # for provenance
    tune_allocator()
    set_threads(args.threads)
    with warnings.catch_warnings():  # dipstop's own warnings, one line each
        warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
        try:
            args.switches = Switches.from_env()  # the engine switches, for every command
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
