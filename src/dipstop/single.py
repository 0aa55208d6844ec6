"""One fit of one image, start to stop: `plan_fit` resolves the options, `fit_one` runs them.

The engine's flow for one image (a whole photo or a tile): network -> fitting loop
(`dipstop.recording.record`) -> CIFS criterion -> online Eq. 4 stop -> output policy ->
`DenoiseResult`. `dipstop.denoise` calls it for an image it does not tile, the tiled runner
(`dipstop.tiling`) for each tile, and a Ray task for either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm import tqdm

from dipstop.checkpoints import RunCheckpoint, image_spec
from dipstop.criteria import CifsCriterion, Context, paper_lambda
from dipstop.errors import DipstopError
from dipstop.estimate import TIMED, WARMUP, RunEstimate, estimate_run, expected_iterations
from dipstop.fitting import Fitter, Iteration, padding_for, resolve_device, resolve_precision
from dipstop.lambda_table import lam_from_table, load_table, mean_iterations_for_sigma, off_size
from dipstop.memory import estimate_bytes
from dipstop.metrics import psnr
from dipstop.noise import estimate_sigma
from dipstop.options import DenoiseOptions
from dipstop.policies import OutputPolicy, make_policy
from dipstop.protocols import Protocol
from dipstop.recording import OnlineStop, Recording, record
from dipstop.results import DenoiseResult
from dipstop.runtime import Switches

__all__ = ["FitPlan", "fit_one", "plan_fit"]


@dataclass(frozen=True)
class FitPlan:
    """What one fit runs with, resolved from `DenoiseOptions` and the image.

    `protocol` carries the width, T, S, lr and z overrides; `precision` is resolved ("auto"
    is fp32 for the paper's rule, output "raw", whatever the CPU); `expected` is the stop
    the estimate assumes, from the lam table (`expected_from` says so) or T.
    """

    protocol: Protocol
    policy: OutputPolicy
    device: torch.device
    precision: str
    shape: tuple[int, int]
    sigma: float
    sigma_estimated: bool
    lam: float
    notes: tuple[str, ...]
    expected: int
    expected_from: str


def plan_fit(pixels: np.ndarray, options: DenoiseOptions) -> FitPlan:
    """Resolve `options` for a fit of `pixels` (H x W x C float in [0, 1]): the protocol
    with its overrides, the output policy, the device, sigma (estimated unless given), lam
    (from the lam table at this image's size unless given) and the expected stop.

    Raises DipstopError, before any fitting, for a setting that cannot run (an image too
    small, a device this machine lacks, a lam that is not positive).
    """
    o = options
    proto = o.fit_protocol()
    if proto.max_iters < 1 or proto.patience < 1 or proto.width < 1:
        raise DipstopError("max_iters, patience and width must be at least 1")
    policy = make_policy(o.output)
    height, width = pixels.shape[:2]
    padding_for(height, width)  # too-small images and bad devices fail before any work
    device = resolve_device(o.device)
    sigma = estimate_sigma(pixels, o.sigma_estimator or "pca") if o.sigma is None else o.sigma
    lam, notes = o.lam, []
    expected, expected_from = proto.max_iters, "T"
    if lam is None:
        tab = load_table(o.table, output=policy.name, width=proto.width)
        lam, notes = lam_from_table(sigma, tab, proto.width, policy.name, height * width)
        table_mean = mean_iterations_for_sigma(sigma, tab, height * width)
        expected = expected_iterations(
            proto.max_iters, proto.patience, table_mean, tab["protocol"].get("patience"),
            o.burn_in or 0,
        )
        expected_from = "lam table" + (
            ", calibrated at another image size" if off_size(tab, height * width) else ""
        )
    if lam <= 0:
        raise DipstopError(f"lam must be positive, got {lam}")
    precision = o.precision
    if precision == "auto" and policy.name == "raw":
        precision = "fp32"  # the paper's rule stays exact: the same t* and image as ever
    return FitPlan(
        protocol=proto, policy=policy, device=device,
        precision=resolve_precision(precision, device), shape=(height, width), sigma=float(sigma),
        sigma_estimated=o.sigma is None, lam=float(lam), notes=tuple(notes),
        expected=expected, expected_from="T" if expected == proto.max_iters else expected_from,
    )  # fmt: skip


def cpu_clock() -> Callable[[], float]:
    """The clock of a fit's CPU seconds: its thread's when torch runs on one thread (a
    tile's fit, which runs its operations on the thread that calls them), the process's
    otherwise (a fit on several threads is all the process does).

    >>> cpu_clock() in (time.thread_time, time.process_time)
    True
    """
    return time.thread_time if torch.get_num_threads() == 1 else time.process_time


def fit_one(
    pixels: np.ndarray,
    clean: np.ndarray | None,
    options: DenoiseOptions,
    *,
    start: dict[str, torch.Tensor] | None = None,
    keep_network: bool = False,
) -> tuple[np.ndarray, DenoiseResult]:
    """Fit `pixels` (H x W x C float in [0, 1]) once and stop by CIFS; never tiles.

    Returns the output policy's image (H x W x C float32, clipped to [0, 1]) and the
    `DenoiseResult`. `clean` (same shape) adds PSNR. The options' hooks apply: progress bar,
    Ctrl-C (`interruptible`), `cancel`, `on_estimate`, the time budget, and `resume_dir`,
    where a checkpoint of the fit is kept about once a minute and deleted when it ends.
    `start`: network weights to fit from instead of the seed's random ones (a warm start;
    the seed still draws the input z and its perturbation); `keep_network`: return the
    network at t* as `result.network`, for fits to start from.
    """
    if clean is not None and clean.shape != pixels.shape:
        raise DipstopError(
            f"clean image is {clean.shape}, noisy is {pixels.shape}; they must match"
        )
    plan = plan_fit(pixels, options)
    switches = options.switches or Switches()
    settings = replace(plan.protocol.fit_settings(options.seed), cuda_graph=switches.cuda_graphs)
    settings = settings.with_precision(plan.precision)
    x = np.ascontiguousarray(pixels)
    fitter = Fitter(torch.from_numpy(x).permute(2, 0, 1), settings, plan.device)
    if start is not None:
        fitter.net.load_state_dict(start)
    clean_t = None
    if clean is not None:
        clean_t = torch.from_numpy(np.ascontiguousarray(clean)).permute(2, 0, 1).unsqueeze(0)
        clean_t = clean_t.to(fitter.device)
    height, width = x.shape[:2]
    cifs = CifsCriterion()
    stop = OnlineStop(cifs, Context(height * width, plan.lam), plan.protocol.patience,
                      plan.policy.stream, options.burn_in or 0)  # fmt: skip
    budget = None if options.max_minutes is None else float(options.max_minutes) * 60.0
    planner = _Planner(plan, estimate_bytes(fitter.shape[2] * fitter.shape[3],
                       plan.protocol.width), budget, options.on_estimate)  # fmt: skip
    checkpoint = None
    if options.resume_dir is not None:
        kept = {"sigma": plan.sigma, "lam": plan.lam, "protocol": plan.protocol.as_dict(),
                "seed": options.seed, "output": plan.policy.name,
                "precision": settings.precision}  # fmt: skip
        if options.burn_in:  # only then: a checkpoint written without one still resumes
            kept["burn_in"] = options.burn_in
        checkpoint = RunCheckpoint(options.resume_dir, image_spec(x, clean, kept),
                                   switches.checkpoint_seconds)  # fmt: skip
    bar = tqdm(total=plan.protocol.max_iters, disable=not options.progress, unit="it",
               dynamic_ncols=True)  # fmt: skip
    show = _progress(bar, stop, plan.protocol.max_iters)

    network = None

    def on_row(it: Iteration, row: dict) -> None:
        nonlocal network
        show(it, row)
        planner.row(it, row)
        if keep_network and stop.stopper.improved:  # the weights a step or two past y_t*
            weights = fitter.net.state_dict().items()
            network = {k: v.detach().to("cpu", copy=True) for k, v in weights}

    clock = cpu_clock()
    cpu_start = clock()
    with bar:
        rec = record(
            fitter, plan.protocol.max_iters, [cifs], clean=clean_t, stop=stop,
            policy=plan.policy, depth=switches.overlap, interruptible=options.interruptible,
            on_row=on_row, max_seconds=budget, cancel=options.cancel, checkpoint=checkpoint,
        )  # fmt: skip
    if rec.output is None:  # interrupted before the first iteration was scored
        raise KeyboardInterrupt
    planner.finish()
    result = _result(rec, plan, options, fitter, stop, cifs, checkpoint)
    result.cpu_seconds = clock() - cpu_start
    result.estimate = planner.estimate
    result.network = network
    if clean_t is not None:
        result.psnr = psnr(rec.output, clean_t)  # the returned image, whatever the policy
        result.peak_iteration = int(np.argmax(rec.series["psnr"])) + 1
        result.peak_psnr = float(rec.series["psnr"].max())
    out = rec.output[0].permute(1, 2, 0).float().cpu().numpy()
    return np.clip(out, 0, 1).astype(np.float32), result


def _result(
    rec: Recording,
    plan: FitPlan,
    options: DenoiseOptions,
    fitter: Fitter,
    stop: OnlineStop,
    cifs: CifsCriterion,
    checkpoint: RunCheckpoint | None,
) -> DenoiseResult:
    """The `DenoiseResult` of a finished recording, with its notes (resumed, interrupted,
    out of time); the checkpoint is discarded when the fit ended by its rule or T."""
    stopper = stop.stopper
    t_star = stopper.best_index + 1
    notes = list(plan.notes)
    if checkpoint is not None:
        if rec.resumed_at:
            notes.append(f"resumed at iteration {rec.resumed_at} from {checkpoint.path}")
        if not (rec.interrupted or rec.stopped_by_budget):
            checkpoint.discard()  # the fit is over: nothing to resume
    if rec.interrupted:
        notes.append(
            f"interrupted after {rec.iterations} iterations, before the stopping rule fired: "
            f"the output is the best so far (t*={t_star})"
        )
    if rec.stopped_by_budget:
        notes.append(
            f"the time budget of {options.max_minutes:g} min ran out after {rec.iterations} "
            f"iterations, before the stopping rule fired: the output is the best so far "
            f"(t*={t_star})"
        )
    return DenoiseResult(
        stop_iteration=t_star,
        iterations_run=rec.iterations,
        stopped_early=stopper.done,
        sigma=plan.sigma,
        sigma_estimated=plan.sigma_estimated,
        lam=plan.lam,
        paper_lambda=paper_lambda(plan.lam, *plan.shape),
        settings={
            **plan.protocol.as_dict(),
            "seed": options.seed,
            "device": str(fitter.device),
            "precision": plan.precision,
            "output": plan.policy.name,
            "burn_in": options.burn_in or 0,
            "criteria": {cifs.name: cifs.settings()},
        },
        series=rec.series,
        seconds=rec.seconds,
        time_split={
            "network": fitter.step_seconds,
            "engine": rec.fit_seconds - fitter.step_seconds,
            "stopping": rec.seconds - rec.fit_seconds,
        },
        restores=fitter.restores,
        notes=notes,
        interrupted=rec.interrupted,
        stopped_by_budget=rec.stopped_by_budget,
    )


class _Planner:
    """A row callback that times the first iterations and makes the run's estimate once."""

    def __init__(
        self,
        plan: FitPlan,
        memory_bytes: int,
        budget: float | None,
        on_estimate: Callable[[RunEstimate], None] | None,
    ) -> None:
        max_iters = plan.protocol.max_iters
        self.args = (max_iters, plan.expected, plan.expected_from, memory_bytes, budget)
        self.when = min(max_iters, WARMUP + TIMED)
        self.on_estimate = on_estimate
        self.seconds: list[float] = []
        self.start = 0  # iterations done before this call's first row (a resumed fit)
        self.estimate: RunEstimate | None = None

    def row(self, it: Iteration, row: dict) -> None:
        if self.estimate is not None:
            return
        if not self.seconds:
            self.start = it.t - 1
        self.seconds.append(row["seconds"])
        if len(self.seconds) == self.when:
            self.finish()

    def finish(self) -> None:
        """Make the estimate now if the run ended before it was due (a tile's share of a time
        budget can be a few iterations), from the rows it has."""
        if self.estimate is None and self.seconds:
            self.estimate = estimate_run(self.seconds, *self.args, start=self.start)
            if self.on_estimate is not None:
                self.on_estimate(self.estimate)


def _progress(bar: tqdm, stop: OnlineStop, max_iters: int) -> Callable[[Iteration, dict], None]:
    """A row callback that advances the progress bar and shows the stop's state."""

    def update(it: Iteration, row: dict) -> None:
        stopper = stop.stopper
        if stopper.improved:  # at most this many iterations remain: the ETA is an upper bound
            bar.total = min(max_iters, it.t + stop.patience)
        bar.set_postfix(
            loss=f"{row['mse']:.2e}",
            jpeg=int(row["jpeg_bytes"]),
            E=f"{row['criterion']:.4g}",
            best_t=stopper.best_index + 1,
            refresh=False,
        )
        bar.update(1)

    return update
