"""The finished tiles of a tiled run, kept on disk so that an interrupted run resumes.

`tiles_spec` names a run (what its tiles' results are made of); `TileStore` keeps each tile
as it finishes, keyed by that name, and gives back the ones a rerun of the same image and
settings can blend instead of fitting again.
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

__all__ = ["TileStore", "tiles_spec"]


def tiles_spec(
    pixels: np.ndarray,
    clean: np.ndarray | None,
    options: DenoiseOptions,
    resolved: dict[str, Any],
) -> dict[str, Any]:
    """The spec of a tiled run (`checkpoints.image_spec`) that names its kept tiles: every
    method option (`DenoiseOptions` group "method": what the tiles' results are made of),
    with the ones resolved for the run replaced by their values (`resolved`: sigma, lam,
    the lam table's content, not its path, the protocol with its overrides, the output
    policy, the precision), and the tiling. What changes how, not what (device, engine
    switches, threads, progress, the time budget, where the files are) is not in it.

    >>> a = np.zeros((2, 2, 1), np.float32)
    >>> spec = tiles_spec(a, None, DenoiseOptions(tile=64), {"sigma": 25.0, "lam": 0.5})
    >>> spec["lam"], spec["seed"], spec["tile"], "width" in spec
    (0.5, 0, 64, False)
    """
    settings = {k: v for k, v in options.of(METHOD).items() if k not in PROTOCOL_PARTS}
    settings |= {**resolved, "tile": options.tile, "overlap": options.overlap}
    return image_spec(pixels, clean, settings)


# the method options a run's resolved protocol holds (or, for table, its content)
PROTOCOL_PARTS = ("width", "max_iters", "patience", "lr", "z_noise_std", "table")


class TileStore:
    """The finished tiles of one tiled run, kept in a folder as they finish, so that a run
    interrupted (Ctrl-C, a crash, the time budget) and started again with the same image and
    settings fits only the tiles not there.

    `key` names the run (`run_key` of its `tiles_spec`) and is kept in each tile's file, so
    no manifest can be damaged or disagree with the tiles. Each tile is one `torch.save` of
    the key, its output and `DenoiseResult.state()`, written atomically
    (`checkpoints.write_atomically`), so a tile is whole or absent. It is read back with
    `torch.load(weights_only=True)`, so a file planted in the folder runs no code. A tile of
    another run (another key, or none: an earlier version) is deleted as stale; one that is
    unreadable or not of this run's shape is deleted with a warning, and refitted.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "photo.png.partial"
    >>> r = DenoiseResult(3, 5, True, 25.0, True, 40.0, 1.0, {}, {"mse": np.ones(5)}, 1.0)
    >>> TileStore(folder, "a").save(3, np.zeros((2, 2, 1), np.float32), r)
    >>> kept = TileStore(folder, "a").load({3: (2, 2, 1)})
    >>> sorted(kept), kept[3][1].stop_iteration, TileStore(folder, "b").load({3: (2, 2, 1)})
    ([3], 3, {})
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
        self, shapes: dict[int, tuple[int, ...]]
    ) -> dict[int, tuple[np.ndarray, DenoiseResult]]:
        """The tiles already done, index -> (output, result), of those whose index and
        output shape are in `shapes` (the run's tiles); the folder's other tiles are
        deleted (they would never be used)."""
        done = {}
        for path in sorted(self.folder.glob("tile_*.pt")):
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
            try:
                index = int(path.stem.split("_")[1])
                out = state["out"].numpy()
                if tuple(out.shape) != shapes.get(index):
                    raise ValueError(
                        f"a tile of {tuple(out.shape)}, this run's is {shapes.get(index)}"
                    )
                done[index] = (out, DenoiseResult.from_state(state["result"]))
            except Exception as exc:
                _ignore_tile(path, f"not of this run: {type(exc).__name__}: {exc}")
        return done

    def save(self, index: int, out: np.ndarray, result: DenoiseResult) -> None:
        """Keep tile `index`'s output and result; a failed write (a full disk, the folder
        gone) warns and the run goes on without it."""
        path = self.folder / f"tile_{index:06d}.pt"
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
