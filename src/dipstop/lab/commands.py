"""The lab's commands: `dipstop calibrate`, `bench` and `report` (grids of DIP runs on clean
images, the lam table, the paper's Table 1 and figures). `dipstop.cli` adds them beside the
user's commands."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from dipstop import validate
from dipstop.cli_args import Parser, add_common, add_output, add_ray, log
from dipstop.errors import DipstopError
from dipstop.fitting import PRECISIONS
from dipstop.lab.calibration import calibrate_from_store, specs, write_lambda_table
from dipstop.lab.datasets import evenly_spaced, list_images
from dipstop.lab.executor import run_grid
from dipstop.lab.paper_report import build_report
from dipstop.lab.runs import bench_criteria, grid
from dipstop.lab.store import ResultStore
from dipstop.lab.tables import sigma_correction, size_choices
from dipstop.lambda_table import load_table
from dipstop.noise import ESTIMATORS
from dipstop.options import add_arguments
from dipstop.policies import DEFAULT_OUTPUT
from dipstop.protocols import Protocol, get_protocol

_sigma_list = validate.arg_sigma_list
_positive_int = validate.arg_positive_int
_positive_float = validate.arg_positive_float


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add the lab's sub-commands to `sub`; their handlers by name."""
    cal = sub.add_parser("calibrate", help="record DIP runs on clean images and fit lam(sigma)")
    cal.add_argument("--sigmas", type=_sigma_list, default=_sigma_list("5,15,25,35,50,75"))
    add_output(cal, "write the lam(sigma) table here (JSON)", None)
    cal.add_argument("--table", dest="output", help=argparse.SUPPRESS)
    cal.add_argument("--search-only", action="store_true", help="only search the stored runs")
    add_arguments(cal, ["output"])  # the output the lams are chosen for
    cal.add_argument(
        "--lam-smooth",
        type=_positive_float,
        default=1.0,
        metavar="F",
        help="for an averaged output: the lam best on average over [lam/F, lam*F] (default 1)",
    )
    _add_grid(cal, 8, "results/calibration.sqlite")

    bench = sub.add_parser("bench", help="run a data set x sigma x seed grid into a results store")
    bench.add_argument("--sigmas", type=_sigma_list, default=_sigma_list("15,25,50"))
    bench.add_argument(
        "--every", type=_positive_int, default=10, help="BRISQUE/NIQE every k iterations"
    )
    _add_grid(bench, None, "results/bench.sqlite")

    rep = sub.add_parser("report", help="Table 1 and Figures 1-4 from a results store")
    rep.add_argument("store", help="results store written by dipstop bench")
    add_output(rep, "report folder (default: STORE's folder/report)", None)
    add_arguments(rep, ["patience", "table"])  # S default: the runs' own
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
    add_common(rep)
    _add_tables(sub)
    return {"calibrate": cmd_calibrate, "bench": cmd_bench, "report": cmd_report,
            "tables": cmd_tables}  # fmt: skip


def _add_tables(sub: argparse._SubParsersAction) -> None:
    """`dipstop tables sigma-correction|lam-sizes`: the data files dipstop ships."""
    tab = sub.add_parser("tables", help="write the data files dipstop ships, with provenance")
    which = tab.add_subparsers(dest="kind", required=True, parser_class=Parser)
    sc = which.add_parser("sigma-correction", help="fit the sigma estimator's correction")
    sc.add_argument("--data", required=True, help="folder of training images (e.g. CBSD432)")
    sc.add_argument("--every", type=_positive_int, default=4, help="use every k-th image")
    sc.add_argument("-o", "--output", required=True, help="the JSON file to write")
    sc.add_argument("--estimator", choices=ESTIMATORS, default="pca",
                    help="the estimator whose curve this is (default pca)")
    sizes = which.add_parser("lam-sizes", help="lam at every size the stores hold, one table")
    sizes.add_argument("--stores", nargs="+", required=True, help="calibration stores")
    sizes.add_argument("--images", default=None, help="only these images' runs (a,b,...)")
    sizes.add_argument("--crops", default=None, help="only these crops (e.g. 128,192,full)")
    sizes.add_argument("--lam-smooth", type=_positive_float, default=1.6, metavar="F",
                       help="the lam best on average over [lam/F, lam*F] (default 1.6)",
                       )  # fmt: skip
    sizes.add_argument("-o", "--output", dest="table_out", required=True, help="the JSON file")
    add_arguments(sizes, ["output", "width", "max_iters", "patience"])
    for p in (sc, sizes):
        p.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
        p.add_argument("--threads", type=_positive_int, default=None, help=argparse.SUPPRESS)


def _add_grid(p: argparse.ArgumentParser, n_images: int | None, store: str) -> None:
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
    p.add_argument(
        "--crop",
        type=_crop,
        default=None,
        help="centre-crop side, or 'full' for the whole image (default: protocol's)",
    )
    p.add_argument("--store", default=store, help="results store (SQLite)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS[1:],
        help="fit arithmetic, recorded in each run's key (default fp32; bf16: bfloat16 "
        "forward pass with channels_last, faster on a CPU with AMX)",
    )
    add_ray(p)
    add_common(p, ("protocol", "device", "width", "max_iters", "patience"))


class _ImagesOrFolder(argparse.Action):
    """--images NAMES; a folder is calibrate's old spelling of --data."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:  # type: ignore[override]
        if Path(value).is_dir():
            namespace.data = value
        else:
            setattr(namespace, self.dest, value)


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
    data, names = args.data, None
    if data is None:
        raise DipstopError("no image folder given; pass --data DIR (a folder of clean images)")
    if args.images:
        names = [n.strip() for n in args.images.split(",") if n.strip()]
    elif args.n_images:
        names = [f.name for f in evenly_spaced(list_images(data), args.n_images)]
    return Path(data), names


def cmd_calibrate(args: argparse.Namespace) -> int:
    protocol = _lab_protocol(args)
    data, names = _grid_images(args)
    chosen = [data / n for n in names] if names else list_images(data)
    store = ResultStore(args.store, readonly=args.search_only)  # a search only reads
    if not args.search_only:
        todo = specs(chosen, args.sigmas, protocol, range(args.seeds), args.precision)
        use_ray = args.ray is not None
        run_grid(todo, store, args.device, args.ray, use_ray, log(args), switches=args.switches)
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
        command = "dipstop " + " ".join(args.argv)
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


def cmd_bench(args: argparse.Namespace) -> int:
    protocol = _lab_protocol(args)
    data, names = _grid_images(args)
    specs = grid(data, args.sigmas, protocol, range(args.seeds), names,
                 bench_criteria(args.every), precision=args.precision)  # fmt: skip
    store = ResultStore(args.store)
    use_ray = args.ray is not None
    run_grid(specs, store, args.device, args.ray, use_ray, log(args), switches=args.switches)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
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
        log=log(args),
    )
    if not args.quiet:
        print(f"wrote {report}")
    return 0




def cmd_tables(args: argparse.Namespace) -> int:
    """Write a shipped data file (`dipstop.lab.tables`), its provenance the command line."""
    command = "dipstop " + " ".join(args.argv)
    if args.kind == "sigma-correction":
        curve = sigma_correction(args.data, args.every, command, args.estimator)
        Path(args.output).write_text(json.dumps(curve, indent=1) + "\n")
        print(f"wrote {args.output}")
        return 0
    protocol = get_protocol("cpu").with_(width=args.width, max_iters=args.max_iters,
                                         patience=args.patience)  # fmt: skip
    images = set(args.images.split(",")) if args.images else None
    crops = None if args.crops is None else {_crop(c) for c in args.crops.split(",")}
    try:
        choices, folders = size_choices(args.stores, protocol.width, protocol.max_iters,
                                        protocol.patience, args.output_policy, args.lam_smooth,
                                        images, crops)  # fmt: skip
    except ValueError as exc:
        raise DipstopError(f"{exc}; give each size and sigma in one store") from None
    write_lambda_table(args.table_out, choices, protocol, command, policy=args.output_policy,
                       folder=folders.pop() if len(folders) == 1 else None,
                       smooth=args.lam_smooth)  # fmt: skip
    print(f"wrote {args.table_out}")
    return 0
