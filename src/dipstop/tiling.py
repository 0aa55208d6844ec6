"""Where the tiles of a big photo go: overlapping squares and their blending weights.

Pure geometry. A 12-megapixel photo cannot be fitted whole (about 120 GiB at width 64,
`dipstop.memory`, and days on a CPU), so it is cut into overlapping square tiles
(`plan_tiles`), each fitted and stopped on its own (`dipstop.tiled_run`), and the outputs
are blended with a raised-cosine crossfade in the middle of each overlap
(`TilePlan.weights`). The weights of the tiles covering a pixel sum to 1 everywhere, so a
tile that returned its input unchanged would give the input back exactly and a smooth image
shows no seam. The default tile is 128 px: the lam table is calibrated on 128 x 128 crops.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dipstop.validate import whole

__all__ = [
    "OVERLAP",
    "TILE",
    "TilePlan",
    "axis_starts",
    "axis_weights",
    "check_overlap",
    "check_tile",
    "plan_tiles",
]

TILE = 128  # the side of the crops the lam table is calibrated on
OVERLAP = 32  # pixels two neighbouring tiles share (at least; the plan spreads any slack)


def check_tile(tile: object) -> int:
    """A tile side: a whole number of at least 64 (one-line DipstopError otherwise)."""
    return whole(tile, "tile", at_least=64, fix="give a tile side of 64 or more, e.g. 128")


def check_overlap(overlap: object, tile: int) -> int:
    """An overlap: a whole number from 0 to half the tile (one-line DipstopError otherwise)."""
    return whole(overlap, "overlap", at_least=0, at_most=tile // 2,
                 fix="give an overlap of at most half the tile")  # fmt: skip


# -- the plan --------------------------------------------------------------------------------


def axis_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Starts of the fewest tiles of side `tile` covering [0, n) with at least `overlap` shared.

    The first tile starts at 0 and the last ends at n; the starts between are spread
    evenly, so every overlap is `overlap` or a little more. A side no longer than a tile is
    one tile (of side n).

    Parameters
    ----------
    n : int
        The image's side.
    tile, overlap : int
        Tile side, and the least overlap of neighbours (below `tile`).

    Returns
    -------
    list of int

    Examples
    --------
    >>> axis_starts(130, 64, 16), axis_starts(50, 64, 16), axis_starts(64, 64, 16)
    ([0, 33, 66], [0], [0])
    """
    if n <= tile:
        return [0]
    k = 1 + math.ceil((n - tile) / (tile - overlap))
    return [(i * (n - tile) + (k - 1) // 2) // (k - 1) for i in range(k)]


def axis_weights(n: int, starts: list[int], side: int, overlap: int) -> list[np.ndarray]:
    """Blending weights along one axis: one array of length `side` per tile, summing to 1.

    Where two neighbours overlap, the crossfade is a raised cosine over `overlap` pixels (or
    the whole overlap, if shorter) centred in the overlap: the earlier tile's weight falls
    from 1 to 0 as the later one's rises, and the two sum to 1. Elsewhere a pixel's one
    tile has weight 1. The weights are then divided by their sum over the tiles, which
    only matters where two crossfades would meet (they do not in a `axis_starts` plan).

    Parameters
    ----------
    n : int
        The image's side.
    starts : list of int
        The tiles' starts (`axis_starts`).
    side : int
        The tiles' side along this axis (min(tile, n)).
    overlap : int
        The crossfade's length.

    Returns
    -------
    list of ndarray
        float64, one per tile, in tile coordinates.

    Examples
    --------
    Two tiles of 64 on 100 px share [36, 64); the 8-px crossfade is its middle, [46, 54):

    >>> w = axis_weights(100, [0, 36], 64, 8)
    >>> [round(float(v), 3) for v in w[0][45:55]]
    [1.0, 0.99, 0.916, 0.778, 0.598, 0.402, 0.222, 0.084, 0.01, 0.0]
    >>> float(w[0][50] + w[1][50 - 36])
    1.0
    """
    weights = [np.ones(side) for _ in starts]
    for j in range(len(starts) - 1):
        shared = starts[j] + side - starts[j + 1]  # the overlap's length
        r = max(0, min(overlap, shared))
        a = starts[j + 1] + (shared - r) // 2  # where the crossfade starts, image coordinates
        # a raised cosine, symmetric: rise[i] + rise[r - 1 - i] = 1
        rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / max(r, 1))
        before_next = a - starts[j + 1]
        weights[j + 1] *= np.concatenate(
            [np.zeros(before_next), rise, np.ones(side - before_next - r)]
        )
        before_this = a - starts[j]
        weights[j] *= np.concatenate(
            [np.ones(before_this), 1 - rise, np.zeros(side - before_this - r)]
        )
    total = np.zeros(n)
    for s, w in zip(starts, weights, strict=True):
        total[s : s + side] += w
    return [w / total[s : s + side] for s, w in zip(starts, weights, strict=True)]


@dataclass(frozen=True)
class TilePlan:
    """Overlapping tiles covering an H x W image exactly, and their blending weights.

    Made by `plan_tiles`. Tiles form a grid: every row start with every column start. Every
    tile lies inside the image and is `tile_h` x `tile_w` (the tile side, or the image's
    side where the image is smaller).

    Attributes
    ----------
    height, width : int
        The image's size.
    tile, overlap : int
        Requested tile side and least overlap.
    rows, cols : tuple of int
        Tile starts along y and x.
    tile_h, tile_w : int
        Every tile's size.
    """

    height: int
    width: int
    tile: int
    overlap: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    tile_h: int
    tile_w: int

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) of every tile, row by row."""
        return [(r, c, self.tile_h, self.tile_w) for r in self.rows for c in self.cols]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def weights(self) -> Iterator[np.ndarray]:
        """Every tile's tile_h x tile_w float32 weights, in `boxes` order, made one at a time
        (the outer product of the per-axis weights); they sum to 1 at every pixel."""
        return (self.weight(i) for i in range(len(self)))

    def weight(self, index: int) -> np.ndarray:
        """The weights of tile `index` (in `boxes` order), as `weights` gives them."""
        wy, wx = self._axis_weights
        row, col = divmod(index, len(self.cols))
        return np.outer(wy[row], wx[col]).astype(np.float32)

    @functools.cached_property
    def _axis_weights(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return (
            axis_weights(self.height, list(self.rows), self.tile_h, self.overlap),
            axis_weights(self.width, list(self.cols), self.tile_w, self.overlap),
        )


def plan_tiles(height: int, width: int, tile: int = TILE, overlap: int = OVERLAP) -> TilePlan:
    """The tile plan of an H x W image (`axis_starts` along each axis).

    Parameters
    ----------
    height, width : int
        The image's size.
    tile : int
        Tile side, at least 64 (the network pads anything smaller to 64).
    overlap : int
        Least overlap of neighbouring tiles, from 0 to tile // 2.

    Returns
    -------
    TilePlan

    Raises
    ------
    DipstopError
        For a tile or overlap out of range.

    Examples
    --------
    >>> plan = plan_tiles(97, 130, tile=64, overlap=16)
    >>> plan.rows, plan.cols, len(plan), plan.boxes()[-1]
    ((0, 33), (0, 33, 66), 6, (33, 66, 64, 64))
    """
    tile = check_tile(tile)
    check_overlap(overlap, tile)
    return TilePlan(
        height,
        width,
        tile,
        overlap,
        tuple(axis_starts(height, tile, overlap)),
        tuple(axis_starts(width, tile, overlap)),
        min(tile, height),
        min(tile, width),
    )
