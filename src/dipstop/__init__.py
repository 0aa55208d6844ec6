"""dipstop: Deep Image Prior denoising that stops itself (JPEG-size early stopping, CIFS).

>>> import dipstop
>>> callable(dipstop.denoise)
True
"""

from dipstop.api import DenoiseResult, denoise
from dipstop.errors import DipstopError
from dipstop.noise import estimate_sigma

__all__ = ["DenoiseResult", "DipstopError", "denoise", "estimate_sigma"]
__version__ = "0.1.0"
