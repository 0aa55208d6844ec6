"""Stopping criteria: each turns one iteration's output into one number (lower is better).

- `cifs`: the paper's JPEG-size criterion (dipstop's headline method)
- `wmv`, `brisque`, `niqe`: the paper's comparison criteria (Sec. 4.2)
"""

from dipstop.criteria.brisque import BrisqueCriterion
from dipstop.criteria.cifs import (
    CifsCriterion,
    cifs_value,
    output_to_uint8,
    paper_lambda,
)
from dipstop.criteria.niqe import NiqeCriterion
from dipstop.criteria.wmv import WmvCriterion

__all__ = [
    "BrisqueCriterion",
    "CifsCriterion",
    "NiqeCriterion",
    "WmvCriterion",
    "cifs_value",
    "output_to_uint8",
    "paper_lambda",
]
