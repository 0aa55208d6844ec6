"""Running a grid of run specs into a results store: in-process, or as Ray tasks.

Either way the driver alone writes the store, one finished run at a time, so an interrupted
grid keeps every finished run; unfinished ones resume from their checkpoints
(`<store>.partial/`). On a local Ray each task is one single-thread run per core, which on
a 2-core CPU beats one two-thread run (the network is too small to use two threads well).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Sequence

from dipstop.checkpoints import RunCheckpoint, folder_for
from dipstop.fitting import resolve_device
from dipstop.lab.runs import run_one
from dipstop.lab.store import ResultStore, run_key
from dipstop.raytasks import check_ray_address, ray_map
from dipstop.runtime import Switches


class Spec(typing.Protocol):
    """A grid cell: `as_dict()` is everything that determines its run (the store's key)."""

    def as_dict(self) -> dict: ...


# runner(spec, device, checkpoints folder, switches) -> (spec dict, series, summary)
Runner = Callable[[typing.Any, "str | None", "str | None", Switches], tuple[dict, dict, dict]]


def pending(specs: Sequence[Spec], store: ResultStore) -> list[Spec]:
    """The specs whose runs are not in the store yet (by `run_key(spec.as_dict())`)."""
    return [s for s in specs if not store.has(run_key(s.as_dict()))]


def run_grid(
    specs: Sequence[Spec],
    store: ResultStore,
    device: str | None = None,
    ray_address: str | None = None,
    use_ray: bool = False,
    log: Callable[[str], None] = print,
    runner: Runner = run_one,
    switches: Switches | None = None,
) -> int:
    """Run every pending spec and store it as it finishes; returns how many ran.

    `runner(spec, device, checkpoints, switches)` fits one cell and returns (spec dict, series,
    summary). In-process by default; with `use_ray` as Ray tasks (on a local Ray, one 1-CPU
    task per core), the driver alone writing the store. Each run is claimed in the store
    before it starts (all at once with Ray), so benches sharing a store split the grid and
    never compute a run twice: a run another live bench has claimed, or stored, is skipped.
    Checkpoints of unfinished runs live in `<store>.partial/`; a finished run's is deleted.

    Parameters
    ----------
    specs : sequence of RunSpec
        The grid (anything with `as_dict()`; hashable).
    store : ResultStore
        Where finished runs go; runs already there are skipped.
    device : str, optional
        Passed to the runner.
    ray_address : str, optional
        The Ray cluster to join (a local Ray by default).
    use_ray : bool
        Run as Ray tasks (needs `pip install 'dipstop[ray]'`).
    log : callable
        Gets one line per event (the counts, each finished or skipped run).
    runner : callable
        `runner(spec, device, checkpoints, switches) -> (spec dict, series, summary)`;
        `run_one` by default. The summary needs "peak_psnr", "peak_t" and "seconds" (for
        the log).
    switches : Switches, optional
        Engine switches, passed to the runner.

    Returns
    -------
    int
        How many runs were computed and stored.

    Raises
    ------
    DipstopError
        For a device this machine lacks (without `use_ray`) or that dipstop cannot fit on;
        with `use_ray` when Ray is not installed or the cluster cannot be reached. Before
        any run is claimed.

    Examples
    --------
    A stand-in runner shows the flow; `run_one` fits for real:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from dipstop.imageio import write_image
    >>> from dipstop.lab.runs import grid
    >>> from dipstop.protocols import Protocol
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_image(folder / "a.png", np.zeros((64, 64, 3), np.uint8))
    >>> tiny = Protocol("tiny", width=8, max_iters=2, patience=1, crop=None)
    >>> specs = grid(folder, [15, 25], tiny, criteria={"cifs": {"every": 1}})
    >>> def runner(spec, device, checkpoints, switches):
    ...     summary = {"peak_psnr": 30.0, "peak_t": 2, "seconds": 0.0}
    ...     return spec.as_dict(), {"psnr": np.array([29.0, 30.0])}, summary
    >>> store = ResultStore(Path(tempfile.mkdtemp()) / "runs.sqlite")
    >>> lines = []
    >>> run_grid(specs, store, log=lines.append, runner=runner)
    2
    >>> run_grid(specs, store, log=lines.append, runner=runner), lines[-1]
    (0, '2 runs in the grid, 2 already stored, 0 to run')
    >>> store.close()
    """
    resolve_device(device, here=not use_ray)  # a bad device or Ray fails before any claim
    if use_ray:
        check_ray_address(ray_address)
    todo = pending(specs, store)
    log(
        f"{len(specs)} runs in the grid, {len(specs) - len(todo)} already stored, "
        f"{len(todo)} to run"
    )
    folder = str(folder_for(store.path))
    for spec in set(specs) - set(todo):  # stored, but killed before its checkpoint went
        RunCheckpoint(folder, spec.as_dict()).discard()
    switches = switches or Switches()

    def claimed(spec: Spec) -> bool:
        d = spec.as_dict()
        if store.claim(run_key(d)):
            return True
        log(
            f"skipping {d.get('image')} sigma={d.get('sigma'):g} seed={d.get('seed')}: "
            "another bench is running it or has stored it"
        )
        return False

    done = 0
    with store.claiming():  # a heartbeat keeps the claims; they go when this block ends
        results = (
            _ray_results(
                [s for s in todo if claimed(s)], runner, device, ray_address, folder, switches
            )  # fmt: skip
            if use_ray
            else (runner(s, device, folder, switches) for s in todo if claimed(s))
        )
        for spec_dict, series, summary in results:
            store.put(spec_dict, series, summary)
            RunCheckpoint(folder, spec_dict).discard()
            done += 1
            log(
                f"[{done}/{len(todo)}] {spec_dict['image']} sigma={spec_dict['sigma']:g} "
                f"seed={spec_dict['seed']}: peak {summary['peak_psnr']:.2f} dB at "
                f"t={summary['peak_t']}, {summary['seconds']:.0f} s"
            )
    return done


def _ray_results(
    specs: Sequence[Spec],
    runner: Runner,
    device: str | None,
    address: str | None,
    folder: str,
    switches: Switches,
) -> Iterator[tuple[dict, dict, dict]]:
    """Run specs as Ray tasks (one GPU each when the cluster has GPUs); yield as they finish."""
    return ray_map(runner, [(s, device, folder, switches) for s in specs], address)
