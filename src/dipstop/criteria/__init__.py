"""Stopping criteria: each turns one iteration's output into one number (lower is better).

- `cifs`: the paper's JPEG-size criterion (dipstop's headline method)
- `wmv`, `brisque`, `niqe`: the paper's comparison criteria (Sec. 4.2)
"""

from dipstop.criteria.cifs import (
    CifsCriterion,
    cifs_value,
    output_to_uint8,
    paper_lambda,
    psnr,
)

__all__ = ["CifsCriterion", "cifs_value", "output_to_uint8", "paper_lambda", "psnr"]
