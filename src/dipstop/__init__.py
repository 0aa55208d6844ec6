"""dipstop: Deep Image Prior denoising that stops itself (JPEG-size early stopping, CIFS).

- `denoise`: denoise an image (array, PIL image or tensor); returns the image in the same
  form and a `TiledResult`: by default each 128 x 128 tile (a small image: the image) is
  fitted twice and the two images averaged, each fit a `DenoiseResult` (where it stopped,
  why, the series and the settings); one fit of an untiled image (`ensemble=1`) returns its
  `DenoiseResult` itself. Images above the size the lam table serves whole (55,296 pixels
  with the shipped table) are tiled;
- `DenoiseOptions`: every setting of a run, its default and its check, in one frozen object
  (`denoise(image, options)`, or its fields as keywords);
- `denoise_tiled`: denoise in overlapping tiles, each fitted and stopped on its own, at any
  size (memory bounded by a tile's fit per core);
- `estimate_sigma`: the blind noise-level estimate `denoise` uses when no sigma is given;
- `DipstopError`: the one exception for problems a user can fix, with the fix in its message.

Examples
--------
>>> import numpy as np
>>> import dipstop
>>> rng = np.random.default_rng(0)
>>> clean = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
>>> noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32)
>>> 20 < dipstop.estimate_sigma(noisy) < 30
True
>>> out, result = dipstop.denoise(noisy, sigma=25, max_iters=4)  # doctest: +SKIP
>>> out.shape, out.dtype, 1 <= result.stop_iteration <= 4  # doctest: +SKIP
((64, 64), dtype('float32'), True)
"""

from dipstop.api import denoise, denoise_tiled
from dipstop.errors import DipstopError
from dipstop.noise import estimate_sigma
from dipstop.options import DenoiseOptions
from dipstop.results import DenoiseResult, TiledResult

__all__ = [
    "DenoiseOptions",
    "DenoiseResult",
    "DipstopError",
    "TiledResult",
    "denoise",
    "denoise_tiled",
    "estimate_sigma",
]
__version__ = "0.1.0"
