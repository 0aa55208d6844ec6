"""The Python API: `denoise` an image with DIP and CIFS early stopping.

A thin layer that wires the stages together: fitting loop -> CIFS criterion -> online Eq. 4
stopping -> result. Accepts NumPy arrays, PIL images and tensors, and returns the same kind.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from dipstop.criteria import CifsCriterion, paper_lambda
from dipstop.errors import DipstopError
from dipstop.fitting import Fitter, Iteration, padding_for, resolve_device
from dipstop.imageio import LoadedImage, join_array, split_array
from dipstop.lambda_table import lam_for_sigma, load_table
from dipstop.metrics import psnr
from dipstop.noise import estimate_sigma
from dipstop.overlap import score_outputs
from dipstop.protocols import get_protocol
from dipstop.stopping import OnlineStopper
from dipstop.validate import check_denoise_options

T = TypeVar("T")


@dataclass
class DenoiseResult:
    """What a denoising run did: where it stopped, why, and with which settings.

    `series` holds one value per iteration run: "iteration", "loss" (MSE to the noisy image,
    [0, 1] scale), "jpeg_bytes", "criterion" (E_t) and, when a clean image was given, "psnr".
    `time_split` says where the `seconds` went: "network" (perturbation, forward, backward,
    Adam), "engine" (divergence guard, snapshots) and "stopping" (quantising each output, any
    wait for its JPEG, which is encoded on a worker thread during the next step, the Eq. 4
    rule, series, progress bar). That overlap fits up to 2 iterations past the last one
    recorded; their time is in "network" and their divergence-guard restores in `restores`.
    """

    stop_iteration: int
    iterations_run: int
    stopped_early: bool
    sigma: float
    sigma_estimated: bool
    lam: float
    paper_lambda: float
    settings: dict
    series: dict[str, np.ndarray]
    seconds: float
    time_split: dict[str, float] = field(default_factory=dict)
    restores: int = 0
    psnr: float | None = None  # PSNR of the returned image to the clean one, if given
    peak_psnr: float | None = None
    peak_iteration: int | None = None
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C ended the fit (with `interruptible`): best so far

    def summary(self) -> dict:
        """The scalar fields, for JSON reports."""
        return {k: v for k, v in self.__dict__.items() if k != "series"}


def denoise(
    image: Any,
    *,
    sigma: float | None = None,
    lam: float | None = None,
    protocol: str = "cpu",
    width: int | None = None,
    max_iters: int | None = None,
    patience: int | None = None,
    lr: float | None = None,
    z_noise_std: float | None = None,
    seed: int = 0,
    device: str | None = None,
    clean: Any = None,
    progress: bool = False,
    table: str | None = None,
    interruptible: bool = False,
) -> tuple[Any, DenoiseResult]:
    """Denoise `image` with a Deep Image Prior stopped by CIFS; no noise level needed.

    `image` is a NumPy array (H x W, H x W x 3 or x 4; uint8, uint16 or float in [0, 1]),
    a PIL image or a tensor (C x H x W or 1 x C x H x W, float in [0, 1]). The result comes
    back in the same form, size, channels and bit depth (alpha passed through untouched).
    sigma (0-255 scale) is estimated when not given; lam (dipstop's size-invariant weight,
    the paper's lambda / (H W), MSE on [0, 1]) then comes from the shipped lam(sigma) table.
    The fit stops S iterations after the criterion's last new minimum and returns the
    output at that minimum. `clean` (same form as `image`) adds PSNR to the series.
    With `interruptible`, Ctrl-C (KeyboardInterrupt) ends the fit and returns the output at
    the criterion's minimum so far, with `result.interrupted` set (the CLI does this).

    >>> rng = np.random.default_rng(0)
    >>> noisy = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    >>> out, res = denoise(noisy, width=8, max_iters=5, patience=2, lam=50.0)
    >>> out.shape, out.dtype, res.iterations_run <= 5
    ((64, 64), dtype('uint8'), True)
    """
    check_denoise_options(
        sigma=sigma,
        lam=lam,
        protocol=protocol,
        width=width,
        max_iters=max_iters,
        patience=patience,
        lr=lr,
        z_noise_std=z_noise_std,
        seed=seed,
        table=table,
        device=device,
    )
    loaded, kind = _to_loaded(image)
    proto = get_protocol(protocol).with_(
        width=width, max_iters=max_iters, patience=patience, lr=lr, z_noise_std=z_noise_std
    )
    if proto.max_iters < 1 or proto.patience < 1 or proto.width < 1:
        raise DipstopError("max_iters, patience and width must be at least 1")
    x = loaded.pixels
    height, width_px = x.shape[:2]
    padding_for(height, width_px)  # too-small images and bad devices fail before any work
    dev = resolve_device(device)
    notes: list[str] = []
    sigma_estimated = sigma is None
    if sigma is None:
        sigma = estimate_sigma(x)
    if lam is None:
        tab = load_table(table)
        lam = lam_for_sigma(sigma, tab)
        thin = [e for e in tab["entries"] if e.get("n_runs", 8) < 8]
        if thin:
            notes.append(
                "lam table is provisional: "
                + ", ".join(f"sigma {e['sigma']:g} from {e['n_runs']} run(s)" for e in thin)
            )
        if tab["protocol"].get("width") != proto.width:
            notes.append(
                f"lam table calibrated at width {tab['protocol'].get('width')}, run at "
                f"width {proto.width}: pass lam to override"
            )
    if lam <= 0:
        raise DipstopError(f"lam must be positive, got {lam}")
    clean_t = None
    if clean is not None:
        clean_px = _to_loaded(clean)[0].pixels
        if clean_px.shape != x.shape:
            raise DipstopError(
                f"clean image is {clean_px.shape}, noisy is {x.shape}; they must match"
            )
        clean_t = torch.from_numpy(clean_px).permute(2, 0, 1).unsqueeze(0)

    fitter = Fitter(torch.from_numpy(x).permute(2, 0, 1), proto.fit_settings(seed), dev)
    if clean_t is not None:
        clean_t = clean_t.to(fitter.device)
    criterion = CifsCriterion(lam)
    stopper = OnlineStopper(proto.patience)
    cols: dict[str, list[float]] = {k: [] for k in ("iteration", "loss", "jpeg_bytes", "criterion")}
    if clean_t is not None:
        cols["psnr"] = []
    best_output: torch.Tensor | None = None
    bar = tqdm(total=proto.max_iters, disable=not progress, unit="it", dynamic_ncols=True)
    fit_clock = _Clock()
    # each output's JPEG is encoded on a worker thread while the next step is fitted
    scored = score_outputs(
        fit_clock.timed(fitter.run(proto.max_iters)), lambda it, u8: criterion.score(u8, it.loss)
    )
    start = time.perf_counter()
    interrupted = False
    with bar, contextlib.closing(scored):
        try:
            for it, (nbytes, value) in scored:
                _record(cols, it, nbytes, value, clean_t)
                done = stopper.update(value)
                if stopper.improved:
                    best_output = it.output
                    # at most this many iterations remain: the bar's ETA is an upper bound
                    bar.total = min(proto.max_iters, it.t + proto.patience)
                bar.set_postfix(
                    loss=f"{it.loss:.2e}",
                    jpeg=nbytes,
                    E=f"{value:.4g}",
                    best_t=stopper.best_index + 1,
                    refresh=False,
                )
                bar.update(1)
                if done:
                    break
        except KeyboardInterrupt:
            if not interruptible or best_output is None:
                raise
            interrupted = True
    seconds = time.perf_counter() - start
    assert best_output is not None
    cols = {k: v[: stopper.count] for k, v in cols.items()}  # an interrupted record is dropped
    if interrupted:
        notes.append(
            f"interrupted after {stopper.count} iterations, before the stopping rule fired: "
            f"the output is the best so far (t*={stopper.best_index + 1})"
        )
    series = {k: np.asarray(v) for k, v in cols.items()}
    t_star = stopper.best_index + 1
    pixels = join_array(_to_hwc(best_output), loaded)
    result = DenoiseResult(
        stop_iteration=t_star,
        iterations_run=len(series["iteration"]),
        stopped_early=stopper.done,
        sigma=float(sigma),
        sigma_estimated=sigma_estimated,
        lam=float(lam),
        paper_lambda=paper_lambda(lam, height, width_px),
        settings={**proto.as_dict(), "seed": seed, "device": str(fitter.device)},
        series=series,
        seconds=seconds,
        time_split={
            "network": fitter.step_seconds,
            "engine": fit_clock.seconds - fitter.step_seconds,
            "stopping": seconds - fit_clock.seconds,
        },
        restores=fitter.restores,
        notes=notes,
        interrupted=interrupted,
    )
    if "psnr" in series:
        result.psnr = float(series["psnr"][t_star - 1])
        result.peak_iteration = int(np.argmax(series["psnr"])) + 1
        result.peak_psnr = float(series["psnr"].max())
    return _from_array(pixels, kind, image), result


class _Clock:
    """Adds up the time spent inside an iterator's `next` (the fitter's share of a run)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, items: Iterable[T]) -> Iterator[T]:
        source = iter(items)
        while True:
            start = time.perf_counter()
            try:
                item = next(source)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - start
            yield item


def _record(
    cols: dict[str, list[float]],
    it: Iteration,
    nbytes: int,
    value: float,
    clean: torch.Tensor | None,
) -> None:
    """Append one iteration to the series (PSNR only when a clean image was given)."""
    cols["iteration"].append(it.t)
    cols["loss"].append(it.loss)
    cols["jpeg_bytes"].append(nbytes)
    cols["criterion"].append(value)
    if clean is not None:
        cols["psnr"].append(psnr(it.output, clean))


def _to_hwc(output: torch.Tensor) -> np.ndarray:
    return output[0].permute(1, 2, 0).float().cpu().numpy()


def _to_loaded(image: Any) -> tuple[LoadedImage, str]:
    """Any supported image form as a LoadedImage, plus a tag for converting back."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim == 3:
            t = t.permute(1, 2, 0)
        if t.ndim not in (2, 3) or not t.is_floating_point():
            raise DipstopError(
                "tensor images must be float in [0, 1], shaped C x H x W, 1 x C x H x W or H x W"
            )
        return split_array((t.float() if t.dtype == torch.bfloat16 else t).numpy()), "tensor"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(image, Image.Image):
        im = image
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        if im.mode not in ("L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "F"):
            raise DipstopError(f"unsupported PIL mode {im.mode}; convert to RGB, RGBA or L first")
        return split_array(np.asarray(im)), "pil"
    if isinstance(image, np.ndarray):
        return split_array(image), "numpy"
    raise DipstopError(
        f"cannot denoise a {type(image).__name__}; pass a NumPy array, a PIL image or a tensor "
        "(or a file path to the CLI)"
    )


def _from_array(array: np.ndarray, kind: str, original: Any) -> Any:
    if kind == "tensor":
        t = torch.from_numpy(np.ascontiguousarray(array))
        if t.ndim == 3:
            t = t.permute(2, 0, 1)
        if original.ndim == 4:
            t = t.unsqueeze(0)
        return t.to(device=original.device, dtype=original.dtype)
    if kind == "pil":
        from PIL import Image

        return Image.fromarray(array)
    return array
