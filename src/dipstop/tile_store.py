"""The finished fits of a tiled run, kept on disk so that an interrupted run resumes.

`tiles_spec` names a run (what its fits are made of); `TileStore` keeps each fit as it
finishes, under that name and the fit's own (`fit_name`: its tile and seed), and gives back
the ones a rerun of the same image and settings can blend instead of fitting again. Runs
that differ only in how many fits a tile (`ensemble`) share the fits they have in common:
`best`'s four seeds start from the two a `default` run kept.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dipstop.checkpoints import image_spec, why_unreadable, write_atomically
from dipstop.errors import DipstopError
from dipstop.options import METHOD, DenoiseOptions
from dipstop.results import DenoiseResult

__all__ = ["TileStore", "fit_name", "tiles_spec"]


def tiles_spec(
    pixels: np.ndarray,
    clean: np.ndarray | None,
    options: DenoiseOptions,
    resolved: dict[str, Any],
) -> dict[str, Any]:
    """The spec of a tiled run (`checkpoints.image_spec`) that names its kept fits: every
    method option (`DenoiseOptions` group "method": what the fits are made of), with the
    ones resolved for the run replaced by their values (`resolved`: sigma, lam, the lam
    table's content, not its path, the protocol with its overrides, the output policy, the
    precision), and the tiling. What changes how, not what (device, engine switches,
    threads, progress, the time budget, where the files are) is not in it, nor what names a
    fit within the run (its seed: `fit_name`), nor the number of fits a tile and the preset
    (resolved by then into the protocol and the ensemble), so that runs of one image with
    more or fewer fits a tile share the fits they have in common, nor what is done to the
    blended image after the fits (the Wiener filter).

    >>> a = np.zeros((2, 2, 1), np.float32)
    >>> spec = tiles_spec(a, None, DenoiseOptions(tile=64), {"sigma": 25.0, "lam": 0.5})
    >>> spec["lam"], spec["tile"], "width" in spec, "seed" in spec, "ensemble" in spec
    (0.5, 64, False, False, False)
    """
    left_out = PROTOCOL_PARTS + RESOLVED + PER_FIT + AFTER_FITS + WHEN_SET
    settings = {k: v for k, v in options.of(METHOD).items() if k not in left_out}
    settings |= {**resolved, "tile": options.tile, "overlap": options.overlap}
    settings |= when_set(options)
    return image_spec(pixels, clean, settings)


# the method options a run's resolved protocol holds (or, for table, its content)
PROTOCOL_PARTS = ("width", "max_iters", "patience", "lr", "z_noise_std", "table")
# the ones a run resolves into a value the spec holds (the estimator into sigma)
RESOLVED = ("sigma_estimator",)
# the ones that name a fit within the run, or how many there are (a preset: width, S, fits)
PER_FIT = ("seed", "ensemble", "quality")
# the ones in a key only when set (`when_set`), so that older runs keep their keys
WHEN_SET = ("warm_start", "burn_in")
# the ones applied to the blended image, after the fits: they do not change a fit
AFTER_FITS = ("wiener", "basic")


def when_set(options: DenoiseOptions) -> dict[str, Any]:
    """The `WHEN_SET` options that are set: a key holds them only then, so that the key of
    a run without them stays what it was before they existed.

    >>> when_set(DenoiseOptions(warm_start=True)), when_set(DenoiseOptions())
    ({'warm_start': True}, {})
    """
    return {k: getattr(options, k) for k in WHEN_SET if getattr(options, k)}


def fit_name(box: int, seed: int) -> str:
    """The name a fit is kept under in its run's folder: its tile and its seed.

    >>> fit_name(3, 1)
    '000003_seed1'
    """
    return f"{box:06d}_seed{seed}"


class TileStore:
    """The finished fits of one tiled run, kept in a folder as they finish, so that a run
    interrupted (Ctrl-C, a crash, the time budget) and started again with the same image and
    settings fits only the ones not there.

    `key` names the run (`run_key` of its `tiles_spec`) and is kept in each fit's file
    (`tile_<fit_name>.pt`), so no manifest can be damaged or disagree with the fits. Each is
    one `torch.save` of the key, its output and `DenoiseResult.state()`, written atomically
    (`checkpoints.write_atomically`), so a fit is whole or absent. It is read back with
    `torch.load(weights_only=True)`, so a file planted in the folder runs no code. A fit of
    another run (another key, or none: an earlier version) is deleted as stale; one of this
    run that is unreadable or not of its tile's shape is deleted with a warning, and
    refitted; one of the same key that this run does not ask for (another seed: a run with
    more fits a tile) is left for the run that does.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "photo.png.partial"
    >>> r = DenoiseResult(3, 5, True, 25.0, True, 40.0, 1.0, {}, {"mse": np.ones(5)}, 1.0)
    >>> TileStore(folder, "a").save("000003_seed0", np.zeros((2, 2, 1), np.float32), r)
    >>> kept = TileStore(folder, "a").load({"000003_seed0": (2, 2, 1)})
    >>> list(kept), kept["000003_seed0"][1].stop_iteration
    (['000003_seed0'], 3)
    >>> TileStore(folder, "b").load({"000003_seed0": (2, 2, 1)})
    {}
    """

    def __init__(self, folder: str | Path, key: str) -> None:
        self.folder, self.key = Path(folder), key
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DipstopError(
                f"cannot keep the finished tiles in {self.folder} ({exc.strerror or exc}); "
                "pass a writable tile folder"
            ) from exc

    def load(
        self, shapes: dict[str, tuple[int, ...]]
    ) -> dict[str, tuple[np.ndarray, DenoiseResult]]:
        """The fits already done, name -> (output, result), of those named in `shapes`
        (the run's fits, with their output shapes)."""
        done = {}
        for path in sorted(self.folder.glob("tile_*.pt")):
            name = path.stem.removeprefix("tile_")
            try:
                with warnings.catch_warnings():  # torch's own notes on the file are not for users
                    warnings.simplefilter("ignore")
                    state = torch.load(path, weights_only=True, map_location="cpu")
            except Exception as exc:  # a damaged or foreign file: that tile is fitted again
                _ignore_tile(path, f"unreadable: {why_unreadable(exc)}")
                continue
            if not isinstance(state, dict) or state.get("key") != self.key:
                path.unlink(missing_ok=True)  # another run's (other settings, or an old dipstop)
                continue
            if name not in shapes:  # another seed of this run's settings: not asked for here
                continue
            try:
                out = state["out"].numpy()
                if tuple(out.shape) != shapes[name]:
                    raise ValueError(f"a tile of {tuple(out.shape)}, this run's is {shapes[name]}")
                done[name] = (out, DenoiseResult.from_state(state["result"]))
            except Exception as exc:
                _ignore_tile(path, f"not of this run: {type(exc).__name__}: {exc}")
        return done

    def save(self, name: str, out: np.ndarray, result: DenoiseResult) -> None:
        """Keep fit `name`'s (`fit_name`) output and result; a failed write (a full disk,
        the folder gone) warns and the run goes on without it."""
        path = self.folder / f"tile_{name}.pt"
        # torch.tensor copies: a Ray task's output is read-only, which from_numpy warns of
        state = {"key": self.key, "out": torch.tensor(out), "result": result.state()}
        try:
            write_atomically(path, lambda tmp: torch.save(state, tmp))
        except OSError as exc:
            warnings.warn(
                f"could not keep tile {path} ({exc.strerror or exc}); a rerun fits it again",
                stacklevel=2,
            )


def _ignore_tile(path: Path, why: str) -> None:
    """Warn of a kept tile that cannot be used, and delete it (it is fitted again)."""
    warnings.warn(f"ignoring kept tile {path} ({why}); it is fitted again", stacklevel=3)
    path.unlink(missing_ok=True)
