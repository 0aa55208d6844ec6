"""BRISQUE (Mittal, Moorthy and Bovik 2012), one of the paper's comparison criteria (Sec. 4.2).

Scored by OpenCV contrib's `cv2.quality.QualityBRISQUE` with the LIVE model files, as in the
paper. Lower is better. OpenCV clamps the SVM's prediction to [0, 100], so very good and very
bad images saturate at the ends of that range.

OpenCV turns a 3-channel input into gray with `COLOR_BGR2GRAY` (it assumes BGR order) and then
scales it to [0, 1]. dipstop's arrays are RGB, so we convert with `COLOR_RGB2GRAY` ourselves and
pass the 8-bit gray image: that gives OpenCV's score for the correctly ordered colour image
(bit-identical to passing the BGR array) and skips its own conversion. Passing RGB straight in
would swap the red and blue weights.

A flat image (all pixels equal) has no defined BRISQUE: its MSCN coefficients are all zero, the
features are NaN, and OpenCV's SVM returns a huge negative number that is clamped to 0, the
"best" score. We return NaN instead, which the stopping rule treats as +inf (never a minimum).

References
----------
Mittal, Moorthy, Bovik, "No-reference image quality assessment in the spatial
domain", IEEE TIP 21(12), 2012.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import cv2
import numpy as np

from dipstop.criteria.base import Criterion, Sample, register
from dipstop.errors import DipstopError
from dipstop.models import model_path


def _to_gray(img: np.ndarray) -> np.ndarray:
    """An H x W (x 1 or 3, RGB order) uint8 image as a contiguous H x W uint8 gray image."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"BRISQUE needs a uint8 image, got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return np.ascontiguousarray(a)
    if a.ndim == 3 and a.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"BRISQUE needs an H x W or H x W x 3 image, got shape {a.shape}")


@register
class BrisqueCriterion(Criterion):
    """BRISQUE score of 8-bit images; the OpenCV model is loaded once, at construction.

    Scores lie in [0, 100] (OpenCV clamps them); lower is better; NaN for a flat image.
    A host criterion, usually scored every 10th iteration (it costs more than a step).

    Parameters
    ----------
    model_file, range_file : str or Path, optional
        The LIVE model's two YAML files; by default `dipstop.models.model_path` finds them
        ($DIPSTOP_MODELS, the user cache, or a checked download).
    every : int
        Score every `every`-th iteration.

    Raises
    ------
    DipstopError
        If a model file is missing or OpenCV cannot load it.

    Examples
    --------
    >>> BrisqueCriterion("missing_model.yml", "missing_range.yml")
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: BRISQUE model file missing_model.yml not found

    Scoring needs the model files (downloaded on first use), so it is not run here:

    >>> from skimage import data
    >>> clean = data.astronaut()[::4, ::4]
    >>> rng = np.random.default_rng(0)
    >>> noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    >>> b = BrisqueCriterion(every=10)  # doctest: +SKIP
    >>> b(clean) < b(noisy), math.isnan(b(np.zeros((64, 64), np.uint8)))  # doctest: +SKIP
    (True, True)
    """

    name, label, recorded = "brisque", "BRISQUE", ("brisque",)
    scores_one_image = True

    def __init__(
        self,
        model_file: str | Path | None = None,
        range_file: str | Path | None = None,
        *,
        every: int = 1,
    ) -> None:
        """Load the model; the files default to `dipstop.models.model_path` (LIVE model)."""
        super().__init__(every)
        model = Path(model_file) if model_file is not None else model_path("brisque_model")
        range_ = Path(range_file) if range_file is not None else model_path("brisque_range")
        for f in (model, range_):
            if not f.is_file():
                raise DipstopError(f"BRISQUE model file {f} not found")
        try:
            self._quality = cv2.quality.QualityBRISQUE_create(str(model), str(range_))
        except cv2.error as exc:
            raise DipstopError(
                f"OpenCV cannot load the BRISQUE model {model} / {range_} ({exc}); "
                "replace the files or check that opencv-contrib-python-headless is installed"
            ) from exc

    def measure(self, sample: Sample) -> dict[str, float]:
        """{"brisque": score} of the sample's 8-bit image."""
        assert sample.image is not None
        return {"brisque": self(sample.image)}

    def __call__(self, rgb_uint8: np.ndarray) -> float:
        """BRISQUE of an H x W x 3 RGB (or H x W gray) uint8 image; lower is better.

        Parameters
        ----------
        rgb_uint8 : ndarray of uint8
            H x W x 3 (RGB order), H x W x 1 or H x W.

        Returns
        -------
        float
            In [0, 100]; NaN for a flat image.

        Raises
        ------
        ValueError
            For another dtype or shape.
        """
        gray = _to_gray(rgb_uint8)
        if gray.size == 0 or gray.min() == gray.max():
            return math.nan
        return float(self._quality.compute(gray)[0])


@functools.lru_cache(maxsize=4)
def _criterion_for(model: str, range_: str) -> BrisqueCriterion:
    return BrisqueCriterion(model, range_)


def brisque(rgb_uint8: np.ndarray) -> float:
    """BRISQUE of one image (see `BrisqueCriterion`): clamped to [0, 100], lower is better.

    The loaded model is cached per model-file location, so repeated calls stay cheap; for a
    series of scores, holding one `BrisqueCriterion` also skips the files' checksum each call.

    Parameters
    ----------
    rgb_uint8 : ndarray of uint8
        H x W x 3 (RGB order), H x W x 1 or H x W.

    Returns
    -------
    float
        In [0, 100]; NaN for a flat image.

    Raises
    ------
    DipstopError
        If the model files cannot be found, downloaded or loaded.

    Examples
    --------
    Needs the LIVE model files (downloaded on first use), so not run here:

    >>> from skimage import data
    >>> clean = data.astronaut()[::4, ::4]
    >>> rng = np.random.default_rng(0)
    >>> noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    >>> brisque(clean) < brisque(noisy)  # doctest: +SKIP
    True
    """
    key = (str(model_path("brisque_model")), str(model_path("brisque_range")))
    return _criterion_for(*key)(rgb_uint8)
