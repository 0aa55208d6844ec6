"""Denoising image files: one, several, or the images of folders; in-process or as Ray tasks.

`denoise_file` reads a file, denoises it, writes the result atomically (and a report). A batch
is planned first (`prepare_batch`: which files, where each output goes, which outputs exist
already), so every problem with the command line shows before any fitting. `run_jobs` then
runs the jobs on a CPU one single-thread fit per core in this process (as tiles are run),
one after another elsewhere, or as Ray tasks (`dipstop.raytasks`), each writing its own
output; a file that fails gives its one-line reason and the batch goes on.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image

from dipstop.api import denoise
from dipstop.checkpoints import hold
from dipstop.errors import DipstopError
from dipstop.estimate import RunEstimate
from dipstop.fitting import padding_for, resolve_device
from dipstop.imageio import (
    IMAGE_SUFFIXES,
    WRITABLE,
    check_writable,
    image_files,
    join_array,
    read_image,
    write_image,
)
from dipstop.memory import estimate_bytes
from dipstop.metadata import NAMES, carried
from dipstop.options import DenoiseOptions
from dipstop.protocols import get_protocol
from dipstop.raytasks import ray_map
from dipstop.report import write_run_report
from dipstop.results import DenoiseResult, TiledResult
from dipstop.runtime import set_threads
from dipstop.workers import WorkerThreads, tile_workers

OUTPUT_TAG = "_dipstop"  # NAME.ext -> NAME_dipstop.png


@dataclass(frozen=True)
class Job:
    """One file to denoise: where it is, where its output (and report) go."""

    src: Path
    dst: Path
    report: Path | None = None
    clean: Path | None = None


# what a job gave: (job, result, None) when it worked, (job, None, reason) when it failed
Outcome = tuple[Job, "DenoiseResult | TiledResult | None", "str | None"]


def default_output(src: Path, folder: Path | None = None) -> Path:
    """NAME_dipstop.png, beside the input or in `folder`.

    >>> default_output(Path("photos/cat.jpg")), default_output(Path("cat.jpg"), Path("out"))
    (PosixPath('photos/cat_dipstop.png'), PosixPath('out/cat_dipstop.png'))
    """
    return (src.parent if folder is None else folder) / f"{src.stem}{OUTPUT_TAG}.png"


def partial_folder(dst: str | os.PathLike) -> Path:
    """Where `denoise_file` keeps a run's progress (finished tiles, or a whole fit's
    checkpoint) until its image is complete: beside the output.

    >>> partial_folder("out/cat_dipstop.png").as_posix()
    'out/cat_dipstop.png.partial'
    """
    dst = Path(dst)
    return dst.with_name(dst.name + ".partial")


def denoise_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    options: DenoiseOptions | None = None,
    *,
    clean: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    overwrite: bool = False,
    partial: bool = True,
    **overrides: Any,
) -> DenoiseResult | TiledResult:
    """Denoise the image file `src` into `dst` (written atomically); a report if asked.

    The run keeps its progress in `partial_folder(dst)` (unless the options name another
    `resume_dir`): a tiled image its finished tiles, a whole one a checkpoint of its fit
    about once a minute. A run cut short (Ctrl-C, a crash, the budget) resumes from there
    when run again; the folder is removed once the image is complete.

    Parameters
    ----------
    src, dst : path
        The noisy image and the output (its suffix picks the format).
    options : DenoiseOptions, optional
        The run's settings (`dipstop.denoise`'s); `overrides` change its fields.
    clean : path, optional
        A clean reference image: adds PSNR to the result and report.
    report : path, optional
        Folder for series.csv, curves.png and summary.json.
    overwrite : bool
        Allow `dst` to replace `src`.
    partial : bool
        Write an output cut short (Ctrl-C, `cancel`, with the best so far and a note). A
        batch that is stopping passes False: a rerun skips existing outputs, so an unfinished
        one must not be there (its progress is kept to resume).
    **overrides
        Fields of `DenoiseOptions`.

    Returns
    -------
    DenoiseResult or TiledResult
        A TiledResult for an image `denoise` tiles (above `tile_above` pixels).

    Raises
    ------
    DipstopError
        For an unreadable input, an unwritable output, or a bad option; `dst` is checked
        before anything is read or fitted.
    """
    src, dst = Path(src), Path(dst)
    options = (options or DenoiseOptions()).replace(**overrides)
    check_writable(dst, protect=(src, clean), overwrite=overwrite)
    lock = lock_file(dst)
    busy = (
        f"another dipstop run is writing {shown(dst)} (lock {shown(lock)}); wait for it or "
        "choose another -o"
    )
    with hold(lock, busy):
        return _denoise_file(src, dst, clean, report, partial, options)


def lock_file(dst: str | os.PathLike) -> Path:
    """The lock a run writing `dst` holds (`checkpoints.hold`), beside it; removed after.

    >>> lock_file("out/cat_dipstop.png").as_posix()
    'out/cat_dipstop.png.lock'
    """
    dst = Path(dst)
    return dst.with_name(dst.name + ".lock")


def _denoise_file(
    src: Path,
    dst: Path,
    clean: str | os.PathLike | None,
    report: str | os.PathLike | None,
    partial: bool,
    options: DenoiseOptions,
) -> DenoiseResult | TiledResult:
    """`denoise_file`, its output's lock held."""
    image = read_image(src)
    clean_px = None
    if clean is not None:
        clean_img = read_image(clean)
        clean_px = join_array(clean_img.pixels, clean_img)
    if options.resume_dir is None:
        options = options.replace(resume_dir=partial_folder(dst))
    folder = Path(options.resume_dir)
    before = _progress_files(folder)
    out, result = denoise(join_array(image.pixels, image), options, clean=clean_px)
    if result.interrupted and not partial:
        return result
    write_image(dst, out, image.meta)  # the photo's colour profile and EXIF go with it
    lost = [NAMES[k] for k in image.meta if k not in carried(dst.suffix, image.meta)]
    if lost:
        result.notes.append(
            f"{' and '.join(lost)} of {shown(src.name)} not written to {dst.suffix} (PNG and "
            "JPEG keep them)"
        )
    if result.interrupted or result.stopped_by_budget:
        after = _progress_files(folder)
        kept = any(p.name.startswith("tile_") for p in after)
        if kept or any(after[p] != before.get(p) for p in after):
            result.notes.append(
                f"its progress is kept in {shown(folder)}: the same command resumes it"
            )
        else:  # the folder, even empty, tells a batch rerun that this output is unfinished
            folder.mkdir(parents=True, exist_ok=True)
            result.notes.append(
                "nothing of its fit was kept to resume (a tile is kept when it is done, a "
                "whole image's fit about once a minute): the same command starts it over"
            )
    else:
        shutil.rmtree(folder, ignore_errors=True)
    if report is not None:

        write_run_report(result, report, {"noisy": image.pixels, "denoised": out,
                                          "clean": clean_px})  # fmt: skip
    return result


def _progress_files(folder: Path) -> dict[Path, int]:
    """The kept tiles and checkpoints in a run's progress folder, with their mtimes (ns).

    After a run, a tile there is this run's (`TileStore` deletes others' tiles), and a
    checkpoint new or touched since the run began is this run's (saved, or resumed from).
    """
    try:
        return {p: p.stat().st_mtime_ns for p in folder.glob("*.pt")}
    except OSError:
        return {}


def shown(path: str | os.PathLike) -> str:
    """A path as a one-line message shows it: as it is, or quoted with escapes when it
    holds a newline or another character that is not printable.

    >>> shown("photos/cat.png"), shown("photos/cat\\n2.png")
    ('photos/cat.png', "'photos/cat\\\\n2.png'")
    """
    text = os.fspath(path)
    return text if text.isprintable() else repr(text)


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given and folders as their images (`image_files`), each file once.

    A folder's own outputs (NAME_dipstop.png) are left out, so a rerun does not denoise them.

    Raises
    ------
    DipstopError
        For a path that does not exist, or a folder without images.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("b.png", "a.jpg", "a_dipstop.png", "notes.txt"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> [p.name for p in expand_inputs([folder, folder / "b.png", folder / "notes.txt"])]
    ['a.jpg', 'b.png', 'notes.txt']
    """
    files: list[Path] = []
    seen: set[str] = set()
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = [f for f in image_files(path) if not f.stem.endswith(OUTPUT_TAG)]
            if not found:
                kinds = ", ".join(sorted(IMAGE_SUFFIXES))
                raise DipstopError(
                    f"no images ({kinds}) in folder {path}; give image files or a folder "
                    "holding some"
                )
        elif path.exists():
            found = [path]
        else:
            raise DipstopError(f"no such file or folder: {path}; check the path")
        for f in found:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files


def prepare_batch(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> tuple[list[Job], list[Job]]:
    """Plan a batch: the jobs to run and those skipped because their output exists.

    Each output is NAME_dipstop.png in the folder `output` (created here, after every
    check) or beside its input; with `report`, each job's report goes to `report`/NAME.
    Existing outputs are skipped unless `overwrite`, or unless their progress folder
    (`partial_folder`) says that run was cut short: it resumes.

    Parameters
    ----------
    inputs : sequence of path
        Image files and folders (`expand_inputs`).
    output : path, optional
        The folder for the outputs; not an existing file, nor a new name with an image
        suffix (that is a file name: one input only).
    report : path, optional
        The folder of the reports.
    overwrite : bool
        Redo jobs whose output exists.

    Returns
    -------
    todo, skipped : list of Job

    Raises
    ------
    DipstopError
        For a missing input, a folder without images, an output folder that is a file, two
        inputs writing one output or report, or an unwritable output (nothing written yet).

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("a.png", "b.png", "b_dipstop.png"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> todo, skipped = prepare_batch([folder])
    >>> [j.dst.name for j in todo], [j.dst.name for j in skipped]
    (['a_dipstop.png'], ['b_dipstop.png'])
    >>> prepare_batch([folder], folder / "out.png")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: -o ... names an image file, but there are 2 inputs; give -o \
a folder (it is created if missing), or one input
    """
    files = expand_inputs(inputs)
    folder = None if output is None else Path(output)
    if folder is not None:
        if folder.exists() and not folder.is_dir():
            raise DipstopError(
                f"-o {folder} is a file, but there are {len(files)} inputs; give -o a folder "
                "(it is created if missing), or one input"
            )
        if not folder.exists() and folder.suffix.lower() in WRITABLE:
            raise DipstopError(
                f"-o {folder} names an image file, but there are {len(files)} inputs; give -o "
                "a folder (it is created if missing), or one input"
            )
    jobs = [
        Job(f, default_output(f, folder), Path(report) / f.stem if report else None) for f in files
    ]
    _refuse_clashes(jobs, "dst", "write")
    if report:
        _refuse_clashes(jobs, "report", "write the report folder")
    if folder is not None and not folder.exists():
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise DipstopError(
                f"cannot create the output folder {folder} ({exc.strerror}); choose a writable -o"
            ) from exc
    todo = [j for j in jobs if overwrite or not j.dst.exists() or partial_folder(j.dst).is_dir()]
    for job in todo:
        check_writable(job.dst, protect=(job.src,), overwrite=overwrite)
    return todo, [j for j in jobs if j not in todo]


def _refuse_clashes(jobs: Sequence[Job], field: str, what: str) -> None:
    taken: dict[str, Job] = {}
    for job in jobs:
        key = os.path.abspath(getattr(job, field))
        if key in taken:
            raise DipstopError(
                f"{taken[key].src} and {job.src} would both {what} {getattr(job, field)}; "
                "rename one, or denoise them in separate runs"
            )
        taken[key] = job


def run_jobs(
    jobs: Sequence[Job],
    options: DenoiseOptions,
    *,
    overwrite: bool = False,
    workers: int | None = None,
) -> Iterator[Outcome]:
    """Run the jobs; yield (job, result, None) or (job, None, reason) as each finishes.

    In-process on a CPU `workers` at a time (default `file_workers`), each a single-thread
    fit on a thread of its own (two 1-thread fits get more done than one 2-thread fit:
    docs/benchmarks.md), in the order they finish, without progress bars, each estimate
    naming its file;
    one after another, in order, when one worker is all there is. With `options.ray` as Ray
    tasks (`ray_map`), each a single-thread fit that writes its own output. A job that
    fails with a DipstopError (an unreadable or too small image, ...) gives its one-line
    reason; the others go on. Closing the iterator early (Ctrl-C in the caller) ends the
    fits running in threads without writing their outputs.

    Parameters
    ----------
    jobs : sequence of Job
    options : DenoiseOptions
        The runs' settings; `ray` not None runs the files as Ray tasks on that cluster
        ("" a local Ray), without progress bar, Ctrl-C handling or estimate callback (they
        run elsewhere).
    overwrite : bool
        Passed to `denoise_file`.
    workers : int, optional
        Fits at once in this process (not with Ray).

    Yields
    ------
    Outcome
    """
    quiet = options.replace(progress=False, interruptible=False, on_estimate=None, ray=None)
    if options.ray is not None:
        calls = [(job, quiet, overwrite, True) for job in jobs]
        yield from ray_map(_task, calls, options.ray)
        return
    workers = file_workers(jobs, options) if workers is None else min(workers, len(jobs))
    if workers <= 1:
        for job in jobs:
            yield _attempt(job, options, overwrite)
        return
    told = options.on_estimate  # each file's estimate, named (they come in any order)

    def run(job: Job, _: float | None, stop: threading.Event) -> Outcome:
        named = quiet.replace(cancel=stop, on_estimate=_named(told, job))
        return _attempt(job, named, overwrite, partial=False)

    # closing the pool ends the running fits, their outputs unwritten
    pool = WorkerThreads(jobs, workers, run, name="dipstop-file")
    try:
        while pool.running:
            outcome = pool.get(timeout=0.2)
            if outcome is not None and (outcome[1] is None or not outcome[1].interrupted):
                yield outcome  # not the ones stopped
    finally:
        pool.close()


def _named(
    tell: Callable[[RunEstimate], None] | None, job: Job
) -> Callable[[RunEstimate], None] | None:
    """`tell`, given each estimate with the job's file named in it."""
    if tell is None:
        return None
    return lambda estimate: tell(replace(estimate, of=job.src.name))


def file_workers(jobs: Sequence[Job], options: DenoiseOptions) -> int:
    """How many files a CPU fits at once in this process: as many as `tile_workers` gives
    for the largest file fitted whole (a photo that is tiled needs less), so a batch with a
    photo too big for two whole fits runs one file at a time, each photo's tiles in
    parallel instead; 1 on a GPU.

    >>> file_workers([], DenoiseOptions())
    1
    """
    if len(jobs) < 2 or resolve_device(options.device).type != "cpu":
        return 1
    width = options.width or get_protocol(options.protocol).width
    need = max(estimate_bytes(_padded_pixels(job.src), width) for job in jobs)
    return tile_workers(len(jobs), need)


def _padded_pixels(path: Path) -> int:
    """The pixels a whole fit of the image at `path` runs on; 0 when it cannot be read (its
    job fails with the reason when it runs)."""
    try:
        if not path.is_file():  # opening a FIFO would wait for a writer: forever
            return 0
        with Image.open(path) as img:
            w, h = img.size
        left, right, top, bottom = padding_for(max(h, 32), max(w, 32))
    except (OSError, ValueError, Image.DecompressionBombError, DipstopError):
        return 0
    return (h + top + bottom) * (w + left + right)


def _attempt(
    job: Job, options: DenoiseOptions, overwrite: bool, partial: bool = True
) -> Outcome:
    try:
        result = denoise_file(
            job.src, job.dst, options, clean=job.clean, report=job.report, overwrite=overwrite,
            partial=partial,
        )  # fmt: skip
    except DipstopError as exc:
        text = str(exc).replace(os.fspath(job.src), shown(job.src))
        return job, None, " ".join(text.split())  # one line, always
    return job, result, None


def _task(job: Job, options: DenoiseOptions, overwrite: bool, partial: bool) -> Outcome:
    """One job as a Ray task: a single-thread fit (one task per core)."""
    set_threads(1)
    return _attempt(job, options, overwrite, partial)
