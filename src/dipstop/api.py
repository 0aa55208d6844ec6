"""The Python API: `denoise` an image with DIP and CIFS early stopping.

A thin layer over the engine: it takes the caller's image form (`dipstop.image_forms`) and
options (`dipstop.options.DenoiseOptions`), and hands the pixels to one fit
(`dipstop.single.fit_one`), a tiled run (`dipstop.tiled_run.run_tiles`) or a Ray task
(`dipstop.workers.fit_remotely`), then finishes the fits' image with the Wiener filter
(`dipstop.wiener`) unless told not to; the image comes back in the caller's form.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from dipstop.image_forms import from_array, to_loaded
from dipstop.imageio import join_array
from dipstop.lambda_table import auto_tile_above
from dipstop.metrics import psnr
from dipstop.options import OVERLAP, TILE, DenoiseOptions
from dipstop.results import DenoiseResult, TiledResult
from dipstop.single import fit_one
from dipstop.tiled_run import run_tiles
from dipstop.wiener import wiener_filter
from dipstop.workers import fit_remotely

__all__ = ["DenoiseOptions", "DenoiseResult", "TiledResult", "denoise", "denoise_tiled"]

Result = DenoiseResult | TiledResult


def denoise(
    image: Any, options: DenoiseOptions | None = None, *, clean: Any = None, **overrides: Any
) -> tuple[Any, DenoiseResult | TiledResult]:
    """Denoise `image` with a Deep Image Prior stopped by CIFS; no noise level needed.

    Parameters
    ----------
    image : ndarray, PIL.Image or Tensor
        H x W, H x W x 3 or x 4 (uint8, uint16 or float in [0, 1]), a PIL image, or a tensor
        (C x H x W or 1 x C x H x W, float in [0, 1]). The result comes back in the same form,
        size, channels and bit depth (alpha passed through untouched).
    options : DenoiseOptions, optional
        Every setting at once, each documented there (`dipstop.options`): sigma, lam, the
        protocol and its overrides, seed, output policy, precision, lam table, tiling,
        device, Ray, time budget, resume folder, progress bar, Ctrl-C, estimate callback,
        cancel event. Defaults: `DenoiseOptions()`.
    clean : same form as `image`, optional
        A clean reference: adds PSNR to the series and the result.
    **overrides
        Fields of `DenoiseOptions` to change (`denoise(img, width=16)`); a name that is no
        option is a TypeError, a bad value a one-line DipstopError before any work.
    Returns
    -------
    denoised : same form as `image`
    result : TiledResult or DenoiseResult
        Where each fit stopped, why, the series and the settings: a `TiledResult` with every
        fit's DenoiseResult (each tile's `ensemble` fits: one by default, or an untiled
        image's fits when `ensemble` > 1); the DenoiseResult itself for one fit of an
        untiled image (the default).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> noisy = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    >>> out, res = denoise(noisy, max_iters=5, patience=2, lam=50.0)  # doctest: +SKIP
    >>> out.shape, out.dtype, res.stop_iteration <= 5  # doctest: +SKIP
    ((64, 64), dtype('uint8'), True)
    """
    opts = (options or DenoiseOptions()).replace(**overrides).check().preset_applied()
    loaded, kind = to_loaded(image)
    clean_px = None if clean is None else to_loaded(clean)[0].pixels
    x = loaded.pixels
    height, width = x.shape[:2]
    tile_above = opts.tile_above
    if opts.tile is not None and tile_above is None:  # the lam table's sizes decide
        tile_above = auto_tile_above(opts.table, opts.output, opts.lam)
    if opts.tile is not None and height * width > tile_above:
        out, result = run_tiles(x, clean_px, opts)
    elif opts.ensemble > 1:  # the whole image as one tile, fitted `ensemble` times
        out, result = run_tiles(x, clean_px, opts.replace(tile=max(height, width, 64), overlap=0))
    elif opts.ray is not None:  # the one fit, as one Ray task
        call = (0, x, clean_px, opts.replace(tile=None))
        ((_, out, result),) = fit_remotely([call], fit_one, ray=opts.ray, threads=None,
                                           max_minutes=opts.max_minutes)  # fmt: skip
    else:
        out, result = fit_one(x, clean_px, opts)
    unfitted = isinstance(result, TiledResult) and all(t.result is None for t in result.tiles)
    if opts.wiener and result.sigma > 0 and not unfitted:  # a run cut before any fit: noisy
        out, result = _wiener(x, out, result, clean_px, opts.basic)
    return from_array(join_array(out, loaded), kind, image), result


def _wiener(
    x: np.ndarray, out: np.ndarray, result: Result, clean: np.ndarray | None,
    basic: float,
) -> tuple[np.ndarray, Result]:  # fmt: skip
    """The noisy pixels Wiener-filtered with the fits' image (and `basic` of BM3D's basic
    estimate) as pilot, at the run's sigma, and the result saying so (its PSNR the returned
    image's, the fits' in `fit_psnr`)."""
    filtered = wiener_filter(x, out, result.sigma, basic=basic)
    score = None if clean is None else psnr(filtered, clean)
    settings = {**result.settings, "wiener": True, "basic": basic}
    return filtered, replace(result, psnr=score, fit_psnr=result.psnr, settings=settings)


def denoise_tiled(
    image: Any, options: DenoiseOptions | None = None, *, clean: Any = None,
    tile: int = TILE, overlap: int = OVERLAP, **overrides: Any,
) -> tuple[Any, TiledResult]:  # fmt: skip
    """Denoise `image` tile by tile, whatever its size; `denoise`'s options apply to each tile.

    `dipstop.denoise` does this by itself for images above its `tile_above` pixels.

    Parameters
    ----------
    image : ndarray, PIL.Image or Tensor
        As for `dipstop.denoise`; it comes back in the same form, channels and dtype.
    options, clean, **overrides
        As for `dipstop.denoise` (`tile_above` does not apply: every image is tiled).
    tile : int
        Tile side (default 128, the lam table's calibration size).
    overlap : int
        Least overlap of neighbouring tiles (default 32), blended by a raised cosine.

    Returns
    -------
    denoised : same form as `image`
    result : TiledResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> noisy = rng.integers(0, 256, (70, 100), dtype=np.uint8)
    >>> out, res = denoise_tiled(noisy, tile=64, overlap=16, width=8, max_iters=2)  # doctest: +SKIP
    >>> out.shape, out.dtype, len(res.tiles), res.members  # doctest: +SKIP
    ((70, 100), dtype('uint8'), 4, 1)

    (4 tiles, each fitted once by default; `ensemble=2` fits each twice.)
    """
    if "tile_above" in overrides:
        raise TypeError("denoise_tiled() got an unexpected keyword argument 'tile_above'")
    return denoise(image, options, clean=clean, tile=tile, overlap=overlap, tile_above=0,
                   **overrides)  # fmt: skip
