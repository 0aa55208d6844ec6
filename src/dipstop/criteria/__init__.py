"""Stopping criteria: each turns one iteration's output into recorded numbers (lower is better).

- `base`: the `Criterion` interface and the `REGISTRY` every loop and report iterates over
- `cifs`: the paper's JPEG-size criterion (dipstop's headline method)
- `wmv`, `brisque`, `niqe`: the paper's comparison criteria (Sec. 4.2)
"""

from dipstop.criteria.base import REGISTRY, Context, Criterion, Sample, make_criterion, register
from dipstop.criteria.brisque import BrisqueCriterion
from dipstop.criteria.cifs import CifsCriterion, cifs_value, paper_lambda
from dipstop.criteria.niqe import NiqeCriterion
from dipstop.criteria.wmv import WmvCriterion

__all__ = [
    "REGISTRY",
    "BrisqueCriterion",
    "CifsCriterion",
    "Context",
    "Criterion",
    "NiqeCriterion",
    "Sample",
    "WmvCriterion",
    "cifs_value",
    "make_criterion",
    "paper_lambda",
    "register",
]
