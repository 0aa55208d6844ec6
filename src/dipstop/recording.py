"""The recording loop: fitter -> criteria -> series -> online stop -> checkpoint. The only one.

`record` drives a `Fitter` and, for every iteration, writes one row of named series:

- "mse": the output's MSE to the noisy image (the loss), [0, 1] scale;
- each criterion's recorded series ("jpeg_bytes", "wmv", "brisque", "niqe", ...), NaN where
  a sub-sampled criterion was not scored;
- with a clean image: "psnr" (and "ssim" when asked);
- for each running average NAME: "mse_NAME", "jpeg_bytes_NAME", "psnr_NAME" ("ssim_NAME");
- with an online stop: "criterion", the value the Eq. 4 rule saw;
- "seconds": the run's clock when the row was complete.

Work is split by where it runs. On the main thread, in iteration order, as each step is
produced: device criteria (ES-WMV), running averages, PSNR/SSIM, and the 8-bit host copies.
On one worker thread, while the next steps are fitted (`dipstop.overlap`): host criteria
(JPEG, BRISQUE, NIQE). Rows come back in order; the online stop, the output policy and
checkpoints act on them. Bench, calibration, `denoise` and the Fig. 4 refit all call this.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from dipstop.averaging import RunningAverage
from dipstop.codecs import tensor_to_uint8
from dipstop.criteria import CifsCriterion, Context, Criterion, Sample
from dipstop.fitting import Fitter, Iteration
from dipstop.metrics import psnr, ssim
from dipstop.overlap import DEFAULT_DEPTH, overlapped
from dipstop.policies import OutputPolicy, RawAtBest
from dipstop.stopping import OnlineStopper
from dipstop.validate import number


class Checkpointer(Protocol):
    """What the loop needs of a checkpoint file (`dipstop.checkpoints.RunCheckpoint`)."""

    @property
    def state_every(self) -> int: ...

    def resume(
        self, fitter: Fitter, apply: Callable[[dict], None], series: dict
    ) -> dict | None: ...

    def due(self) -> bool: ...

    def save(self, fitter: dict, series: dict, seconds: float, **extra: object) -> None: ...


@dataclass
class OnlineStop:
    """Stop the fit by Eq. 4 (patience S) on one criterion's values, given their context.

    `stream` "" scores the raw outputs; an average's name scores that running average (its
    "mse_NAME" and "jpeg_bytes_NAME" series: CIFS on the averaged output). `stopper` follows
    the rule as rows arrive (its `best_index` is t* - 1 once done); `burn_in` B keeps t* > B.
    """

    criterion: Criterion
    context: Context
    patience: int
    stream: str = ""
    burn_in: int = 0
    stopper: OnlineStopper = field(init=False)

    def __post_init__(self) -> None:
        self.stopper = OnlineStopper(self.patience, self.burn_in)

    def value(self, row: Mapping[str, float]) -> float:
        """The criterion's value for one recorded row, on this stop's stream."""
        if self.stream:
            suffix = "_" + self.stream
            row = {k[: -len(suffix)]: v for k, v in row.items() if k.endswith(suffix)}
        return float(self.criterion.values(row, self.context))


@dataclass
class Recording:
    """What `record` returns: the series of the iterations recorded, and how the run ended."""

    series: dict[str, np.ndarray]
    iterations: int  # rows recorded
    stopper: OnlineStopper | None = None
    output: torch.Tensor | None = None  # the output policy's image
    interrupted: bool = False  # Ctrl-C ended the loop (with `interruptible`)
    stopped_by_budget: bool = False  # this call ran past `max_seconds`
    resumed_at: int | None = None  # the iteration a checkpoint resumed from
    seconds: float = 0.0
    fit_seconds: float = 0.0  # time spent inside the fitter (network and engine)
    states: dict = field(default_factory=dict)


@dataclass
class _Produced:
    """One iteration as the main thread hands it to the worker."""

    it: Iteration
    row: dict[str, float]
    images: dict[str, np.ndarray]
    view: torch.Tensor | None
    extra: dict | None  # criteria and averages state, for a checkpoint at this iteration


class _Series:
    """The named float64 series of a recording, NaN until written: arrays that grow with the
    run (doubling, up to T), so a huge T costs nothing until it is run.

    >>> s = _Series(["mse"], 10**12)
    >>> s.reserve(3); s.arrays["mse"][2] = 1.0
    >>> len(s.arrays["mse"]) < 10**4, s.first(3)["mse"].tolist()
    (True, [nan, nan, 1.0])
    """

    START = 1024  # rows held at first: most runs (T of 3000 and less) grow once or twice

    def __init__(self, names: Sequence[str], max_iters: int) -> None:
        self.max_iters = max_iters
        size = min(max_iters, self.START)
        self.arrays = {k: np.full(size, np.nan) for k in names}

    def reserve(self, rows: int) -> None:
        """Room for at least `rows` rows (and at most T, unless more are asked)."""
        size = len(next(iter(self.arrays.values()), ()))
        if rows <= size:
            return
        size = max(rows, min(2 * size, self.max_iters))
        for k, old in self.arrays.items():
            self.arrays[k] = np.full(size, np.nan)
            self.arrays[k][: len(old)] = old

    def first(self, rows: int) -> dict[str, np.ndarray]:
        """Each series' first `rows` rows (views)."""
        return {k: v[:rows] for k, v in self.arrays.items()}


def series_names(
    criteria: Sequence[Criterion],
    averages: Collection[str],
    clean: bool,
    ssim_of: Collection[str],
    stop: bool,
) -> list[str]:
    """The series a recording with these parts writes ("" in `ssim_of` is the raw output)."""
    names = ["mse"] + [n for c in criteria for n in c.recorded]
    if clean:
        names += ["psnr"] + (["ssim"] if "" in ssim_of else [])
    for a in averages:
        names += [f"mse_{a}", f"jpeg_bytes_{a}"]
        if clean:
            names += [f"psnr_{a}"] + ([f"ssim_{a}"] if a in ssim_of else [])
    return names + (["criterion"] if stop else []) + ["seconds"]


def record(
    fitter: Fitter,
    max_iters: int,
    criteria: Sequence[Criterion] = (),
    *,
    clean: torch.Tensor | None = None,
    averages: Mapping[str, RunningAverage] | None = None,
    ssim_of: Collection[str] = (),
    stop: OnlineStop | None = None,
    policy: OutputPolicy | None = None,
    checkpoint: Checkpointer | None = None,
    depth: int = DEFAULT_DEPTH,
    interruptible: bool = False,
    on_row: Callable[[Iteration, dict[str, float]], None] | None = None,
    max_seconds: float | None = None,
    cancel: threading.Event | None = None,
) -> Recording:
    """Fit up to `max_iters` iterations, recording every criterion; stop online if asked.

    Parameters
    ----------
    fitter : Fitter
        The fit to drive (a resumed one continues from its iteration).
    max_iters : int
        The iteration budget T.
    criteria : sequence of Criterion
        What to record each iteration (host criteria run on the scoring worker).
    clean : Tensor, optional
        1 x C x H x W on the fitter's device: adds PSNR, and SSIM for the streams in
        `ssim_of` ("" the raw output, or an average's name).
    averages : mapping of str to RunningAverage, optional
        Running averages to keep and record (MSE, JPEG bytes, PSNR of each).
    stop : OnlineStop, optional
        Stop by Eq. 4 on one criterion's values; the loop ends at t* + S.
    policy : OutputPolicy, optional
        Picks the returned image (`Recording.output`); needs `stop` (default "raw").
    checkpoint : Checkpointer, optional
        Resumes the run when it holds a usable state; saved about as often as it says.
    depth : int
        Scoring overlap: how many steps host work may run behind (0: inline).
    interruptible : bool
        Ctrl-C ends the loop and returns what was recorded so far.
    on_row : callable, optional
        `on_row(iteration, row)` sees every recorded row, in order (a progress bar, a refit
        keeping chosen outputs).
    max_seconds : float, optional
        A wall-clock budget for this call (a resumed run's earlier time not counted): the
        loop ends after the first row recorded once it has run this long, with
        `Recording.stopped_by_budget` set and the policy's image so far. Finite, above 0.
    cancel : threading.Event, optional
        Set from another thread, it ends the loop after the next row, as an interruption
        (`Recording.interrupted`; a tiled run stopping its tile fits).

    Returns
    -------
    Recording
        The series (one value per recorded iteration), the stopper, the policy's image.

    Examples
    --------
    >>> from dipstop.fitting import FitSettings
    >>> fit = Fitter(torch.rand(3, 64, 64), FitSettings(width=8))
    >>> rec = record(fit, 3, [CifsCriterion()])  # doctest: +SKIP
    >>> rec.iterations, sorted(rec.series)  # doctest: +SKIP
    (3, ['jpeg_bytes', 'mse', 'seconds'])
    """
    if max_seconds is not None:
        number(max_seconds, "max_seconds", above=0, fix="give the budget in seconds, e.g. 600")
    recorder = _Recorder(fitter, max_iters, criteria, clean, averages, ssim_of, stop, policy)
    return recorder.run(checkpoint, depth, interruptible, on_row, max_seconds, cancel)


class _Recorder:
    """One recording's state (series, criteria, averages, stop, policy) and its steps:
    `produce` (device work, main thread), `score` (host work, on the overlap worker),
    `run` (the loop: rows in order, the stop, checkpoints, budget, interruptions)."""

    def __init__(
        self,
        fitter: Fitter,
        max_iters: int,
        criteria: Sequence[Criterion],
        clean: torch.Tensor | None,
        averages: Mapping[str, RunningAverage] | None,
        ssim_of: Collection[str],
        stop: OnlineStop | None,
        policy: OutputPolicy | None,
    ) -> None:
        averages = dict(averages or {})
        if policy is not None:
            if stop is None:
                raise ValueError("an output policy needs an online stop")
            averages = {**policy.averages(), **averages}
        self.fitter, self.max_iters, self.criteria, self.clean = fitter, max_iters, criteria, clean
        self.averages, self.ssim_of, self.stop = averages, ssim_of, stop
        self.names = series_names(criteria, averages, clean is not None, ssim_of, stop is not None)
        self.series = _Series(self.names, max_iters)
        self.device = [c for c in criteria if not c.on_host]
        self.host = [c for c in criteria if c.on_host]
        self.need_images = bool(self.host or averages)
        self.cifs = CifsCriterion()
        self.stopper = stop.stopper if stop else None
        if stop is not None and policy is None:
            policy = RawAtBest()
        if policy is not None and stop is not None:
            policy.begin(max_iters, stop.patience)
        self.policy = policy
        self.stateful = {
            **{f"criteria/{c.name}": c for c in criteria},
            **{f"averages/{n}": a for n, a in averages.items()},
        }
        if policy is not None:
            self.stateful["policy/state"] = policy  # kept as rows arrive, saved with checkpoints
        self.fit_seconds = 0.0
        self.state_every = 0

    def apply(self, state: dict) -> None:
        """Load the criteria's, averages' and policy's saved states, all or none."""
        fitter = self.fitter
        before = {k: obj.state_dict() for k, obj in self.stateful.items()}
        try:
            for key, obj in self.stateful.items():
                group, name = key.split("/")
                saved = state[group][name] if group != "policy" else state.get(group)
                _check_state(saved, fitter.t, tuple(fitter.x0.shape), key)
                obj.load_state_dict(saved, fitter.device)
        except BaseException:
            for key, obj in self.stateful.items():
                obj.load_state_dict(before[key], fitter.device)
            raise

    def resume(self, checkpoint: Checkpointer | None) -> dict | None:
        """The checkpoint's saved run, loaded into the fitter, series and stop; None if none."""
        if checkpoint is None:
            return None
        self.state_every = checkpoint.state_every
        # the record it expects: T values a series (views, no memory)
        whole = {k: np.broadcast_to(np.float64(np.nan), (self.max_iters,)) for k in self.names}
        saved = checkpoint.resume(self.fitter, self.apply, whole)
        if saved is not None:
            t = self.fitter.t
            self.series.reserve(t)
            for k in self.names:
                self.series.arrays[k][:t] = saved["series"][k][:t]
            if self.stopper is not None:  # the rule's state is the criterion values so far
                for value in self.series.arrays["criterion"][:t]:
                    self.stopper.update(value)
        return saved

    def produce(self) -> Iterator[_Produced]:
        """Device work, in iteration order, on the main thread."""
        fitter, clean, ssim_of, averages = self.fitter, self.clean, self.ssim_of, self.averages
        steps = fitter.run(self.max_iters, self.state_every)
        while True:
            began = time.perf_counter()
            try:
                it = next(steps)
            except StopIteration:
                return
            finally:
                self.fit_seconds += time.perf_counter() - began
            row: dict[str, float] = {"mse": it.loss}
            for c in self.device:
                row.update(_measured(c, Sample(it.t, it.loss, output=it.output)))
            if clean is not None:
                row["psnr"] = psnr(it.output, clean)
                if "" in ssim_of:
                    row["ssim"] = ssim(it.output, clean)
            images = {"": tensor_to_uint8(it.output)} if self.need_images else {}
            current = {}
            for name, avg in averages.items():
                a = current[name] = avg.update(it.output)
                row[f"mse_{name}"] = float(F.mse_loss(a, fitter.x0))
                if clean is not None:
                    row[f"psnr_{name}"] = psnr(a, clean)
                    if name in ssim_of:
                        row[f"ssim_{name}"] = ssim(a, clean)
                images[name] = tensor_to_uint8(a)
            view = self.policy.view(it.output, current) if self.policy else None
            extra = None
            if it.state is not None:
                extra = {
                    "criteria": {c.name: c.state_dict() for c in self.criteria},
                    "averages": {n: a.state_dict() for n, a in averages.items()},
                }
            yield _Produced(it, row, images, view, extra)

    def score(self, item: _Produced) -> dict[str, float]:
        """Host work, on the worker thread while the next steps are fitted."""
        it, row = item.it, {}
        for c in self.host:
            row.update(_measured(c, Sample(it.t, it.loss, image=item.images[""])))
        for name in self.averages:
            sample = Sample(it.t, 0.0, image=item.images[name])
            row[f"jpeg_bytes_{name}"] = self.cifs.measure(sample)["jpeg_bytes"]
        return row

    def run(
        self,
        checkpoint: Checkpointer | None,
        depth: int,
        interruptible: bool,
        on_row: Callable[[Iteration, dict[str, float]], None] | None,
        max_seconds: float | None,
        cancel: threading.Event | None,
    ) -> Recording:
        """The loop: each row in order, the stop, checkpoints, the budget, interruptions."""
        saved = self.resume(checkpoint)
        stop, stopper, policy, series = self.stop, self.stopper, self.policy, self.series
        began = time.perf_counter()
        start = began - (saved["seconds"] if saved else 0.0)  # a resumed run's clock goes on
        interrupted, out_of_time, count = False, False, self.fitter.t
        rows = overlapped(self.produce(), self.score, depth)
        with contextlib.closing(rows):
            try:
                for item, host_row in rows:
                    i = item.it.t - 1
                    row = {**item.row, **host_row}
                    if stop is not None and stopper is not None and policy is not None:
                        value = stop.value(row)
                        row["criterion"] = value
                        done = stopper.update(value)
                        policy.keep(item.view, stopper.improved)
                    else:
                        done = False
                    row["seconds"] = time.perf_counter() - start
                    series.reserve(i + 1)
                    for k, v in row.items():
                        series.arrays[k][i] = v
                    count = item.it.t
                    if on_row is not None:
                        on_row(item.it, row)
                    # not once the rule fired: a resumed run would fit past its stop
                    if checkpoint and item.extra is not None and not done and checkpoint.due():
                        kept = {"policy": policy.state_dict()} if policy is not None else {}
                        so_far = series.first(count)
                        checkpoint.save(item.it.state, so_far, row["seconds"], **item.extra,
                                        **kept)  # fmt: skip
                    if done:
                        break
                    if max_seconds is not None and time.perf_counter() - began > max_seconds:
                        out_of_time = True
                        break
                    if cancel is not None and cancel.is_set():
                        interrupted = True
                        break
            except KeyboardInterrupt:
                if not interruptible:
                    raise
                interrupted = True
        return Recording(
            series=series.first(count),
            iterations=count,
            stopper=stopper,
            output=policy.result() if policy else None,
            interrupted=interrupted,
            stopped_by_budget=out_of_time,
            resumed_at=saved["fitter"]["t"] if saved else None,
            seconds=time.perf_counter() - start,
            fit_seconds=self.fit_seconds,
        )


def _check_state(state: object, t: int, shape: tuple[int, ...], what: str) -> None:
    """A saved criterion or average state fits this run at iteration t: ValueError if not.

    What counts its updates has counted t (one per iteration), and every image-shaped tensor
    in it (4-D or more) ends in the output's shape.
    """
    if not isinstance(state, dict):
        raise ValueError(f"the saved {what} is not a dict")
    if "count" in state and state["count"] != t:
        raise ValueError(f"the saved {what} saw {state['count']!r} outputs, not {t}")
    for key, value in state.items():
        if torch.is_tensor(value) and value.ndim >= 4 and tuple(value.shape[-4:]) != shape:
            raise ValueError(f"the saved {what} {key} is {tuple(value.shape)}, not of {shape}")


def _measured(c: Criterion, sample: Sample) -> dict[str, float]:
    """A criterion's row for one iteration: measured when due, NaN otherwise."""
    if c.due(sample.t):
        return c.measure(sample)
    return dict.fromkeys(c.recorded, math.nan)
