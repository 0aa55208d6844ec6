"""The in-memory image forms the API takes and gives back: NumPy arrays, PIL images, tensors.

`to_loaded` turns any of them into a `LoadedImage` (float pixels in [0, 1], alpha apart) and
a tag; `from_array` turns the denoised pixels back into the caller's form, size and dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dipstop.errors import DipstopError
from dipstop.imageio import LoadedImage, split_array


def to_loaded(image: Any) -> tuple[LoadedImage, str]:
    """Any supported image form as a LoadedImage, plus a tag for converting back."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim == 3:
            t = t.permute(1, 2, 0)
        if t.ndim not in (2, 3) or not t.is_floating_point():
            raise DipstopError(
                "tensor images must be float in [0, 1], shaped C x H x W, 1 x C x H x W or H x W"
            )
        return split_array((t.float() if t.dtype == torch.bfloat16 else t).numpy()), "tensor"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(image, Image.Image):
        im = image
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        if im.mode not in ("L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "F"):
            raise DipstopError(f"unsupported PIL mode {im.mode}; convert to RGB, RGBA or L first")
        return split_array(np.asarray(im)), "pil"
    if isinstance(image, np.ndarray):
        return split_array(image), "numpy"
    raise DipstopError(
        f"cannot denoise a {type(image).__name__}; pass a NumPy array, a PIL image or a tensor "
        "(or a file path to the CLI)"
    )


def from_array(array: np.ndarray, kind: str, original: Any) -> Any:
    if kind == "tensor":
        t = torch.from_numpy(np.ascontiguousarray(array))
        if t.ndim == 3:
            t = t.permute(2, 0, 1)
        if original.ndim == 4:
            t = t.unsqueeze(0)
        return t.to(device=original.device, dtype=original.dtype)
    if kind == "pil":
        from PIL import Image

        return Image.fromarray(array)
    return array
