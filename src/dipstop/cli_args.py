"""The command line's shared pieces: the one-line-error parser and the arguments every
command takes (`dipstop.cli` holds the user's commands, `dipstop.lab.commands` the lab's)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from dipstop import validate
from dipstop.options import add_arguments


def add_common(
    p: argparse.ArgumentParser, options: Sequence[str] | None = ("protocol", "device")
) -> None:
    """--threads and --quiet, and the `options` (DenoiseOptions fields; None: all) a
    command takes."""
    add_arguments(p, options)
    p.add_argument(
        "--threads",
        type=validate.arg_threads,
        default=None,
        help="CPU threads (default: all cores); a tiled photo fits this many tiles at once, "
        "and several files this many files, one thread each",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")


def add_ray(p: argparse.ArgumentParser, what: str = "one run per task") -> None:
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help=f"run as Ray tasks ({what}): a fresh local Ray (one 1-thread task per core; "
        "RAY_ADDRESS when set), or the cluster at ADDRESS (host:port, ray://host:port, auto)",
    )


def add_output(p: argparse.ArgumentParser, what: str, default: str | None) -> None:
    """-o/--output, where a command writes its result (the old --out kept hidden)."""
    p.add_argument("-o", "--output", default=default, help=what)
    p.add_argument("--out", dest="output", help=argparse.SUPPRESS)


class Parser(argparse.ArgumentParser):
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


def log(args: argparse.Namespace) -> Callable[[str], None]:
    return (lambda _msg: None) if args.quiet else (lambda msg: print(msg, flush=True))


