"""`DenoiseOptions`: every setting of a denoising run, its default, its check and its flag.

One frozen object owns the options of `dipstop.denoise`, the tiled runner and the CLI: each
option is one field here, with its default, the check that refuses a bad value in one line
(`dipstop.validate`), its group, and (for the ones users set from the shell) its command-line
flag and help text, from which `add_arguments` builds the CLI's fit options. A new option is
one field.

The groups: method (what is computed: sigma, lam, the network and the stop), tiling (how a big
image is cut), execution (where and how long it runs: device, Ray, budget, resume folder,
engine switches) and hooks (what the caller sees: progress bar, Ctrl-C, estimate callback,
cancel event). Only the method and tiling groups can change the image.

Stdlib dataclasses rather than pydantic or attrs: the checks already exist as one-line
messages that name the fix (`validate.number`, `validate.whole`), which a validation
library's own multi-line errors would have to be translated back into; a dependency would
buy nothing else here.

Examples
--------
>>> opts = DenoiseOptions(width=16).replace(seed=3)
>>> opts.width, opts.seed, opts.tile, opts.output
(16, 3, 128, 'since-best')
>>> DenoiseOptions(overlap=80).check()
Traceback (most recent call last):
...
dipstop.errors.DipstopError: overlap must be a whole number from 0 to 64, got 80; give \
an overlap of at most half the tile
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from dipstop import validate
from dipstop.errors import DipstopError
from dipstop.fitting import PRECISIONS
from dipstop.lambda_table import TILE_ABOVE
from dipstop.noise import ESTIMATORS
from dipstop.policies import DEFAULT_OUTPUT, policy_names
from dipstop.protocols import PROTOCOLS, Protocol, get_protocol
from dipstop.runtime import Switches
from dipstop.tiling import OVERLAP, TILE, check_overlap, check_tile

METHOD, TILING, EXECUTION, HOOKS = "method", "tiling", "execution", "hooks"


def _option(default: Any, group: str, check: Callable[[Any], Any] | None = None,
            **cli: Any) -> Any:  # fmt: skip
    """A field of `DenoiseOptions`: its default, group, check (of a value that is not None)
    and command-line flag (`cli`: "flags", argparse's keywords, "hidden" aliases, "dest",
    "zero_is_none"; none: not on the CLI)."""
    return field(default=default, metadata={"group": group, "check": check, "cli": cli or None})


def _sigma(v: Any) -> None:
    fix = "give the noise std on the 0-255 scale, e.g. 25, or leave it out to estimate it"
    validate.number(v, "sigma", above=0, fix=fix)


def _estimator(v: Any) -> None:
    if v not in ESTIMATORS:
        raise DipstopError(
            f"sigma_estimator must be 'pca' or 'wavelet', got {validate._show(v)}; "
            "leave it out for the default"
        )


def _lam(v: Any) -> None:
    fix = "give e.g. 50, or leave it out to take it from the table"
    validate.number(v, "lam", above=0, fix=fix)


def _name(what: str, example: str) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        if not isinstance(v, str):
            shown = validate._show(v)
            raise DipstopError(f"{what} must be a name, got {shown}; use e.g. {example!r}")

    return check


def _whole(name: str) -> Callable[[Any], None]:
    return lambda v: validate.whole(v, name)


def _lr(v: Any) -> None:
    validate.number(v, "lr", above=0, fix="give the Adam learning rate, e.g. 0.01")


def _z_noise(v: Any) -> None:
    validate.number(v, "z_noise_std", at_least=0, fix="give e.g. 0.033 (0 turns it off)")


def _basic(v: Any) -> None:
    share = validate.number(v, "basic", at_least=0, fix="give a share from 0 to 1, e.g. 0.5")
    if share > 1:
        raise DipstopError(f"basic must be at most 1, got {share:g}; give a share from 0 to 1")


def _seed(v: Any) -> None:
    validate.whole(v, "seed", at_least=0, at_most=validate.MAX_SEED)


def _table(v: Any) -> None:
    if not isinstance(v, (str, os.PathLike)):
        raise DipstopError(
            f"table must be a path to a lam table JSON, got {type(v).__name__}; "
            "pass the file name (or leave it out for the shipped table)"
        )


def _precision(v: Any) -> None:
    if v not in PRECISIONS:
        raise DipstopError(
            f"precision must be 'auto', 'fp32' or 'bf16', got {validate._show(v)}; "
            "leave it out for the fastest that keeps the image (auto)"
        )


def _device(v: Any) -> None:
    if isinstance(v, str):
        return
    import torch  # noqa: PLC0415 - only for a device given as an object

    if not isinstance(v, torch.device):
        raise DipstopError(
            f"device must be a name like 'cpu' or 'cuda:0', got {type(v).__name__}; "
            "pass a string or a torch.device"
        )


def _minutes(v: Any) -> None:
    validate.number(v, "max_minutes", above=0, fix="give the time budget in minutes, e.g. 30")


def _tile_above(v: Any) -> None:
    validate.whole(v, "tile_above", at_least=0, fix="give a number of pixels, e.g. 1000000")


def _burn_in(v: Any) -> None:
    fix = "give a number of iterations, e.g. 100 (0 for none)"
    validate.whole(v, "burn_in", at_least=0, fix=fix)


def _flag(name: str) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        if not isinstance(v, bool):
            shown = validate._show(v)
            raise DipstopError(f"{name} must be True or False, got {shown}; pass a bool")

    return check


@dataclass(frozen=True)
class Preset:
    """A named point on the quality-per-time front: the method settings it fills in.

    Measured on CBSD432 tiles and crops (docs/quality_time.md): a width-16 network gives
    more PSNR per CPU second than width 64, fits averaged (an ensemble of seeds) more
    again, a tile started from the photo's first tile's network (`warm_start`) reaches a
    good image sooner, and the Wiener filter that finishes every preset recovers most of
    what a shorter fit leaves. "default" is one width-16 fit a tile, S = 200, warm: with
    the filter 0.16 and 0.23 dB below two cold fits at S = 700 on the two whole photos
    where both ran (sigma 25), at 0.27-0.31x their CPU, which brings a 481 x 321 photo
    within the 20 minutes of a 2-core CPU without AMX. Its t* comes after each fit's first
    100 iterations (`burn_in`): a warm tile's criterion can dip while the network leaves
    the first tile's image, and a stop there returns an underfitted tile (on whole
    textured CBSD432 photos +0.17 to +0.45 dB where that happened, at 1.0-1.4x the CPU;
    +0.00 to +0.07 on crops). "fast" shortens S
    to 50: 0.03 / 0.09 dB below the default at 0.17-0.72x its CPU of fits on whole CBSD432
    photos at sigma 25 / 50 (`studies/whole_pilot.py`).
    "best" averages four cold fits at S = 700 (+0.25 dB over two before the filter, at
    twice their CPU; two are the former default). Every preset's filter takes 0.7 of
    BM3D's basic estimate into its pilot (`basic`): +0.60 / +0.40 dB on whole CBSD432
    photos at sigma 25 / 50 (`studies/whole_pilot.py`).
    """

    width: int
    patience: int
    ensemble: int
    warm_start: bool = False
    wiener: bool = True
    burn_in: int = 0
    basic: float = 0.7


PRESETS = {
    "fast": Preset(width=16, patience=50, ensemble=1, warm_start=True),
    "default": Preset(width=16, patience=200, ensemble=1, warm_start=True, burn_in=100),
    "best": Preset(width=16, patience=700, ensemble=4),
}


def _quality(v: Any) -> None:
    if v not in PRESETS:
        raise DipstopError(
            f"quality must be one of {', '.join(PRESETS)}, got {validate._show(v)}; "
            "leave it out for the default"
        )


_POSITIVE_INT = validate.arg_positive_int
_POSITIVE_FLOAT = validate.arg_positive_float


@dataclass(frozen=True)
class DenoiseOptions:
    """Every option of `dipstop.denoise`, with its default (see the module's docstring).

    Attributes
    ----------
    sigma : float, optional
        Noise standard deviation on the 0-255 scale; estimated from the image when not given.
    sigma_estimator : str, optional
        How sigma is estimated when not given (`dipstop.noise.estimate_sigma`): "pca"
        (patch covariance, which tells texture from noise; the presets') or "wavelet" (the
        wavelet MAD; the paper's settings', which keep computing what they always have).
    lam : float, optional
        CIFS weight (dipstop's size-invariant lam = the paper's lambda / (H W), MSE on
        [0, 1]); from the lam(sigma) table when not given.
    protocol : str
        Named settings ("cpu" or "paper"); `width`, `max_iters` (T), `patience` (S), `lr` and
        `z_noise_std` override them.
    width, max_iters, patience, lr, z_noise_std : optional
        Overrides of the protocol's (and the quality preset's) settings of the same name.
    quality : str
        A point on the quality-per-time front ("fast", "default", "best"; `PRESETS`): the
        width, S, fits a tile, warm start, burn-in and filter that the fields left None get.
    ensemble : int, optional
        Fits a tile (seeds `seed`, `seed` + 1, ...), averaged; the preset's by default.
    seed : int
        Seed of the network, its input and the input's perturbation.
    output : str
        Output policy (`dipstop.policies`). The default, "since-best", returns the mean of
        the last S + 1 outputs, y_{t*} .. y_{t*+S} when the rule fires (dipstop's, measured
        in docs/calibration.md); "raw" the output at the criterion's minimum, the paper's
        rule exactly; "ema@stop" the moving average when the fit stops; "ema@best" stops on
        CIFS of that average and returns it there. The shipped lam table of the policy is
        used ("raw"'s for a policy that has none).
    device : str, optional
        "cpu", "cuda" or "cuda:N"; CUDA when available by default.
    precision : str
        "fp32", "bf16" (bfloat16 forward pass, channels_last), or "auto": bf16 on a CPU with
        AMX, where it is 1.5-1.6x faster at the same PSNR, fp32 elsewhere
        (`dipstop.fitting.resolve_precision`) and with `output="raw"`, which stays the
        paper's rule exactly.
    table : str, optional
        Path of a lam(sigma) table (default: the one shipped for `output`).
    progress : bool
        Show a progress bar on stderr.
    interruptible : bool
        Ctrl-C ends the fit and returns the output policy's image so far, with
        `result.interrupted` set (the CLI does this).
    switches : Switches, optional
        Engine switches (CUDA graphs, scoring overlap): how the fit runs, not what it
        computes; `dipstop.runtime.Switches()` by default.
    max_minutes : float, optional
        A wall-clock budget: the fit ends once it has run this long and returns the output
        policy's image so far, with `result.stopped_by_budget` set and a note. Finite, above 0.
        A tiled image shares it out: each tile gets what is left over the tiles left.
    on_estimate : callable, optional
        Called once with the run's `RunEstimate`, when its first iterations have been timed
        (after 5 iterations, or T if fewer); the estimate is also `result.estimate`. A tiled
        image is estimated on its first tile, for all its tiles.
    cancel : threading.Event, optional
        Set from another thread (a GUI's cancel button), it ends the fit as Ctrl-C would with
        `interruptible`: the output policy's image so far, `result.interrupted` set. A tiled
        run ends its running tiles so and fits no more; with `ray` it stops waiting for the
        tasks between tiles (an untiled Ray task runs to its end).
    tile : int or None
        Images of more than `tile_above` pixels are denoised in overlapping tiles of this
        side (`dipstop.tiling`; default 128, the lam table's calibration size), each fitted
        and stopped on its own; None fits the whole image, whatever its size.
    overlap : int
        Least overlap of neighbouring tiles, blended by a raised cosine (default 32).
    tile_above : int, optional
        Tile images with more pixels than this (0 tiles every image). Default: beyond 1.5x
        the largest size the lam table was calibrated at, at most 55,296 (`auto_tile_above`;
        the shipped table, calibrated up to whole 481 x 321 photos, gives 55,296: tiles beat
        whole fits there), so no fit runs at a size whose lam is extrapolated; 1,000,000 with
        an explicit lam or output "raw".
    warm_start : bool, optional
        Fit a tiled image's first tile from random networks, then start every other tile's
        fits from the first tile's networks at its t* (fit j of each tile from the first
        tile's fit j) instead of random ones: the tiles share the noise and the look of one
        photo, and a fit started so reaches a better image sooner (docs/quality_time.md,
        "Warm starts"). The first tile's fits run before the others start. Default: the
        quality preset's (on for "fast" and "default", off for "best").
    wiener : bool, optional
        Finish with a residual-gated Wiener filter (`dipstop.wiener`): the noisy image in a
        sliding 8 x 8 DCT, the fits' image (the pilot) given back the part of its residual
        that is signal, at the run's sigma, in two passes; a second for a photo. It adds
        most where the fits left texture behind (docs/quality_time.md, "Wiener filter").
        Default: the quality preset's (on); off for the paper's settings (protocol "paper",
        output "raw").
    basic : float, optional
        The share of BM3D's basic estimate (its first stage: collaborative hard
        thresholding of the noisy image) in the Wiener filter's pilot, beside the fits'
        image, in [0, 1] (`dipstop.wiener`): on whole photos the two err in different
        places, and the blend is a better pilot than either (docs/quality_time.md, "The
        filter's pilot"). 0 keeps the pilot the fits' alone. Default: the quality preset's
        (0.7); 0 for the paper's settings.
    burn_in : int, optional
        The stop's t* comes after each fit's first B iterations: a warm tile's criterion
        can dip while its network is still leaving the first tile's image, and a stop
        there returns an underfitted tile (docs/quality_time.md, "The presets now"). A
        fit that ends within its burn-in returns its minimum so far. Default: the quality
        preset's (100 for "default", 0 for "fast" and "best"); 0 for the paper's settings.
    resume_dir : path, optional
        A folder where the run keeps its progress, so that run again with the same image and
        settings after an interruption (Ctrl-C, a crash, the time budget) it goes on from
        there: a tiled run each tile as it finishes (`dipstop.tiling.TileStore`), a whole
        image a checkpoint of its fit about once a minute (`dipstop.checkpoints`; with `ray`
        written by the task, so on a cluster the folder must be on a disk it can write),
        deleted when the fit ends by its rule or T. The folder is not removed here; the CLI
        keeps OUTPUT.partial and removes it once the image is complete.
    ray : str, optional
        Fit as Ray tasks (`dipstop.raytasks`): "" a local Ray, else a cluster's address. A
        tiled image's tiles run as single-thread tasks, as many at once as the Ray has CPUs
        (or GPUs), blended here as they finish; an image that is not tiled is one task. The
        fits' progress, estimate and Ctrl-C stay in the tasks: a tiled run's estimate comes
        when its first tile is done, and with `interruptible` Ctrl-C keeps the tiles done so
        far; `max_minutes` is a deadline for each task (tiles not started by then keep the
        noisy pixels).

    Examples
    --------
    >>> DenoiseOptions(protocol="paper").replace(max_iters=100).max_iters
    100
    """

    # fmt: off
    # -- method: what is computed
    sigma: float | None = _option(None, METHOD, _sigma,
        flags=("--sigma",), type=_POSITIVE_FLOAT,
        help="noise std on the 0-255 scale (default: estimated from the image)")
    sigma_estimator: str | None = _option(None, METHOD, _estimator,
        flags=("--sigma-estimator",), choices=ESTIMATORS,
        help="how sigma is estimated when not given: pca (patch covariance; the default) or "
        "wavelet (wavelet MAD, the default for --protocol paper and --output-policy raw)")
    lam: float | None = _option(None, METHOD, _lam,
        flags=("--lam",), type=_POSITIVE_FLOAT,
        help="CIFS weight lam = paper lambda / (H*W), MSE on [0,1] (default: from sigma)")
    protocol: str = _option("cpu", METHOD, _name("protocol", "cpu"),
        flags=("--protocol",), choices=sorted(PROTOCOLS),
        help="named settings (width, T, S, crop); options below override them")
    width: int | None = _option(None, METHOD, _whole("width"),
        flags=("--width",), type=_POSITIVE_INT, help="network width (channels)")
    max_iters: int | None = _option(None, METHOD, _whole("max_iters"),
        flags=("-T", "--max-iters"), type=_POSITIVE_INT, hidden=("--iters",),
        help="iteration budget T")
    patience: int | None = _option(None, METHOD, _whole("patience"),
        flags=("-S", "--patience"), type=_POSITIVE_INT, help="patience S of the stop rule")
    lr: float | None = _option(None, METHOD, _lr,
        flags=("--lr",), type=_POSITIVE_FLOAT, help="Adam learning rate")
    z_noise_std: float | None = _option(None, METHOD, _z_noise,
        flags=("--z-noise-std",), type=validate.arg_non_negative_float,
        help="std of the z perturbation")
    seed: int = _option(0, METHOD, _seed,
        flags=("--seed",), type=validate.arg_seed, help="seed for network, input and noise")
    quality: str = _option("default", METHOD, _quality,
        flags=("--quality",), choices=tuple(PRESETS),
        help="a point on the quality-per-time front (docs/quality_time.md): fast, default or "
        "best; sets the width, S, fits per tile, warm start and burn-in that -S, --width, "
        "--ensemble, --warm-start and --burn-in do not "
        "(not for --protocol paper or --output-policy raw, the paper's settings)")
    burn_in: int | None = _option(None, METHOD, _burn_in,
        flags=("--burn-in",), type=validate.arg_non_negative_int, metavar="B",
        help="the stop's t* comes after the first B iterations of each fit (default: the "
        f"quality preset's, {', '.join(f'{q} {p.burn_in}' for q, p in PRESETS.items())}; 0 "
        "for the paper's settings)")
    ensemble: int | None = _option(None, METHOD, _whole("ensemble"),
        flags=("--ensemble",), type=_POSITIVE_INT, metavar="N",
        help="average N fits of each tile (seeds SEED, SEED+1, ...), N times the work "
        "(default: the quality preset's)")
    output: str = _option(DEFAULT_OUTPUT, METHOD, _name("output", DEFAULT_OUTPUT),
        flags=("--output-policy",), dest="output_policy", choices=policy_names(),
        help=f"which image is returned (default {DEFAULT_OUTPUT}): since-best = the mean of "
        "the outputs from t* to the stop; raw = the output at the criterion's minimum (the "
        "paper's rule); NAME@stop / NAME@best = a running average at the end or at t*")
    wiener: bool | None = _option(None, METHOD, _flag("wiener"),
        flags=("--wiener",), action=argparse.BooleanOptionalAction,
        help="finish with a residual-gated Wiener filter of the noisy image (sliding 8 x 8 "
        "DCT, the fits' image as pilot, two passes): gives back texture the fits smoothed "
        "(default: the quality preset's, on; off for --protocol paper and --output-policy raw)")
    basic: float | None = _option(None, METHOD, _basic,
        flags=("--basic",), type=float,
        help="the share of BM3D's basic estimate in the Wiener filter's pilot, beside the fits' "
        "image, 0 to 1 (default: the quality preset's, 0.7; 0: the fits' image alone)")
    table: str | os.PathLike | None = _option(None, METHOD, _table,
        flags=("--table",), help="lam(sigma) table JSON (default: shipped one)")
    precision: str = _option("auto", METHOD, _precision,
        flags=("--precision",), choices=PRECISIONS,
        help="fit arithmetic (default auto: bf16 on a CPU with AMX, where it is faster at the "
        "same PSNR; fp32 elsewhere)")
    # -- tiling: how a big image is cut
    tile: int | None = _option(TILE, TILING, check_tile,
        flags=("--tile",), type=validate.arg_non_negative_int, metavar="N", zero_is_none=True,
        help="images above --tile-above pixels are denoised in overlapping N x N tiles, each "
        f"fitted and stopped on its own (default: {TILE}, the lam table's calibration size; "
        "0: the whole image in one fit)")
    overlap: int = _option(OVERLAP, TILING, None,
        flags=("--overlap",), type=validate.arg_non_negative_int, metavar="M",
        help=f"least overlap of neighbouring tiles, crossfaded (default: {OVERLAP}; at most N/2)")
    tile_above: int | None = _option(None, TILING, _tile_above,
        flags=("--tile-above",), type=validate.arg_pixels_or_auto, metavar="PIXELS",
        help="tile images with more pixels than this (0: always; default auto: beyond 1.5x "
        "the largest size the lam table was calibrated at, at most 55296 (the shipped one's), "
        f"so no fit runs with an extrapolated lam; {TILE_ABOVE} with --lam or "
        "--output-policy raw)")
    warm_start: bool | None = _option(None, TILING, _flag("warm_start"),
        flags=("--warm-start",), action=argparse.BooleanOptionalAction,
        help="start every tile but the first from the first tile's fitted network instead "
        "of a random one (default: the quality preset's: off for best only)")
    # -- execution: where and how long
    device: Any = _option(None, EXECUTION, _device,
        flags=("--device",),
        help="cpu, cuda[:N], mps or xpu[:N] (default: cuda if available)")
    ray: str | None = _option(None, EXECUTION, _name("ray", ""))
    max_minutes: float | None = _option(None, EXECUTION, _minutes,
        flags=("--max-minutes",), type=_POSITIVE_FLOAT, metavar="M",
        help="time budget per image: end the fit after M minutes with the best output so far "
        "(its progress kept in OUTPUT.partial/: the same command goes on from there)")
    resume_dir: str | os.PathLike | None = _option(None, EXECUTION)
    switches: Switches | None = _option(None, EXECUTION)
    # -- hooks: what the caller sees
    progress: bool = _option(False, HOOKS)
    interruptible: bool = _option(False, HOOKS)
    on_estimate: Callable[..., None] | None = _option(None, HOOKS)
    cancel: threading.Event | None = _option(None, HOOKS)
    # fmt: on

    def replace(self, **changes: Any) -> DenoiseOptions:
        """A copy with `changes`; a name that is no option is a TypeError, as for a call.

        >>> DenoiseOptions().replace(widht=8)
        Traceback (most recent call last):
        ...
        TypeError: unexpected option 'widht'
        """
        unknown = set(changes) - NAMES
        if unknown:
            raise TypeError(f"unexpected option {sorted(unknown)[0]!r}")
        return replace(self, **changes)

    def check(self) -> DenoiseOptions:
        """Refuse the first bad option in one line (`DipstopError`); self when all are good.

        Numbers must be finite (sigma, lam, lr, max_minutes above 0, z_noise_std at least 0;
        width, T, S whole numbers of at least 1; seed in [0, 2**63 - 2]; tile at least 64 and
        overlap at most half of it). Whether a protocol, output policy or device exists is
        checked by the code that uses it.
        """
        for f in fields(self):
            value, check = getattr(self, f.name), f.metadata["check"]
            if check is not None and value is not None:
                check(value)
        if self.tile is not None:
            check_overlap(self.overlap, self.tile)
        return self

    def preset_applied(self) -> DenoiseOptions:
        """These options with the quality preset's width, S, ensemble, warm start and Wiener
        filter in the fields left None; the paper's settings (protocol "paper", output "raw")
        take no preset: an ensemble of 1, cold starts, no filter or burn-in and the wavelet
        sigma estimator unless asked.

        >>> o = DenoiseOptions(quality="best", patience=300).preset_applied()
        >>> o.width, o.patience, o.ensemble, o.warm_start, o.wiener
        (16, 300, 4, False, True)
        >>> DenoiseOptions(quality="fast").preset_applied().warm_start
        True
        >>> o = DenoiseOptions(quality="best", output="raw").preset_applied()
        >>> o.width is None, o.wiener
        (True, False)
        """
        if self.protocol != "cpu" or self.output == "raw":
            return replace(self, ensemble=self.ensemble or 1, warm_start=bool(self.warm_start),
                           wiener=bool(self.wiener), burn_in=self.burn_in or 0,
                           basic=self.basic or 0.0,
                           sigma_estimator=self.sigma_estimator or "wavelet")  # fmt: skip
        p = PRESETS[self.quality]
        warm = p.warm_start if self.warm_start is None else self.warm_start
        wiener = p.wiener if self.wiener is None else self.wiener
        return replace(self, width=self.width or p.width, patience=self.patience or p.patience,
                       ensemble=self.ensemble or p.ensemble, warm_start=warm,
                       wiener=wiener,
                       burn_in=p.burn_in if self.burn_in is None else self.burn_in,
                       basic=p.basic if self.basic is None else self.basic,
                       sigma_estimator=self.sigma_estimator or "pca")  # fmt: skip

    def fit_protocol(self) -> Protocol:
        """The named protocol with this run's width, T, S, lr and z overrides.

        >>> DenoiseOptions(width=16).fit_protocol().width, DenoiseOptions().fit_protocol().patience
        (16, 500)
        """
        return get_protocol(self.protocol).with_(
            width=self.width, max_iters=self.max_iters, patience=self.patience, lr=self.lr,
            z_noise_std=self.z_noise_std,
        )  # fmt: skip

    def of(self, group: str) -> dict[str, Any]:
        """The options of one group, by name.

        >>> sorted(DenoiseOptions().of(TILING))
        ['overlap', 'tile', 'tile_above', 'warm_start']
        """
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["group"] == group}


NAMES = frozenset(f.name for f in fields(DenoiseOptions))


def add_arguments(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """Add the command-line flags of the options `names` (default: every option on the CLI)
    to `parser`, with their help texts; `from_args` reads them back.

    >>> p = argparse.ArgumentParser()
    >>> add_arguments(p, ["width", "tile"])
    >>> o = from_args(p.parse_args(["--width", "8", "--tile", "0"]))
    >>> o.width, o.tile, o.seed
    (8, None, 0)
    """
    wanted = None if names is None else set(names)
    for f in fields(DenoiseOptions):
        cli = f.metadata["cli"]
        if cli is None or (wanted is not None and f.name not in wanted):
            continue
        kw = {k: v for k, v in cli.items() if k not in ("flags", "hidden", "zero_is_none", "dest")}
        dest = cli.get("dest", f.name)
        parser.add_argument(*cli["flags"], dest=dest, default=f.default, **kw)
        for alias in cli.get("hidden", ()):
            parser.add_argument(alias, dest=dest, type=cli.get("type"), help=argparse.SUPPRESS)


def from_args(args: argparse.Namespace, **extra: Any) -> DenoiseOptions:
    """The options an argparse namespace holds (those `add_arguments` added), plus `extra`."""
    given = {}
    for f in fields(DenoiseOptions):
        cli = f.metadata["cli"]
        dest = None if cli is None else cli.get("dest", f.name)
        if dest is not None and hasattr(args, dest):
            value = getattr(args, dest)
            given[f.name] = None if cli.get("zero_is_none") and value == 0 else value
    return DenoiseOptions(**{**given, **extra})
