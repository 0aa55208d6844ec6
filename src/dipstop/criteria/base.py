"""The criterion interface: one shape for every stopping criterion, and a registry of them.

A criterion turns each iteration of a DIP fit into recorded numbers (`measure`), and a
recorded series into the values the Eq. 4 rule minimises (`values`). Keeping the two apart
lets a run be recorded once and stopped many ways later: CIFS records JPEG bytes, and its
values E_t = lam * MSE_t + bpp_t^2 are computed for any lam afterwards. The recording loop,
the bench, calibration, selection, reports and checkpoints all loop over `REGISTRY`, so a new
criterion is one class plus `@register`.

Host criteria (`on_host`) score the output as an 8-bit H x W x C host image on the scoring
worker thread (JPEG, BRISQUE, NIQE: OpenCV and NumPy); device criteria score the 1 x C x H x W
output tensor on the main thread, in iteration order (ES-WMV keeps a window of outputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from dipstop.errors import DipstopError


@dataclass
class Sample:
    """What one iteration offers a criterion.

    `output` (the device tensor) is set for device criteria, `image` (the 8-bit host copy)
    for host criteria; `mse` is the output's MSE to the noisy image on the [0, 1] scale.

    Parameters
    ----------
    t : int
        The iteration, 1-based.
    mse : float
        MSE of the output to the noisy image, [0, 1] scale.
    output : Tensor, optional
        The output y_t, 1 x C x H x W in [0, 1], on the fitting device.
    image : ndarray, optional
        The output quantised to an H x W x C uint8 host array (`codecs.tensor_to_uint8`).
    """

    t: int
    mse: float
    output: torch.Tensor | None = None
    image: np.ndarray | None = None


@dataclass(frozen=True)
class Context:
    """What turns recorded series into criterion values: the image's pixel count and, for
    CIFS, its weight lam (a float, or an array to evaluate many lams at once).

    Parameters
    ----------
    pixels : int
        H x W of the fitted image.
    lam : float or ndarray, optional
        CIFS's weight; an array (a column of lams) gives one row of values per lam.
    """

    pixels: int
    lam: Any = None


class Criterion:
    """Base class: a per-iteration number from a DIP fit; the stop is Eq. 4 on its values.

    Subclasses set `name` (registry key), `label` (the method's name in tables), `recorded`
    (the series `measure` fills), `on_host`, `scores_one_image` (a no-reference quality
    score of one picture, which the lab also takes of the noisy input), and implement
    `measure`. `every` scores only
    iterations t with t % every == 0 (NaN between), for expensive criteria; the stopping
    rule then runs on that sub-sampled series with patience S / every.

    Parameters
    ----------
    every : int
        Score every `every`-th iteration (1: all).

    Raises
    ------
    DipstopError
        If `every` is not a whole number >= 1.

    Examples
    --------
    A criterion is a subclass with a `measure`:

    >>> class Darkness(Criterion):
    ...     name, label, recorded, on_host = "dark", "Darkness", ("dark",), True
    ...     def measure(self, sample):
    ...         return {"dark": float(sample.image.mean())}
    >>> Darkness().measure(Sample(1, 0.0, image=np.zeros((2, 2, 1), np.uint8)))
    {'dark': 0.0}
    """

    name: ClassVar[str]
    label: ClassVar[str]
    recorded: ClassVar[tuple[str, ...]]
    on_host: ClassVar[bool] = True
    lower_is_better: ClassVar[bool] = True
    scores_one_image: ClassVar[bool] = False  # BRISQUE, NIQE: callable on a uint8 image

    def __init__(self, every: int = 1) -> None:
        if not isinstance(every, int) or every < 1:
            raise DipstopError(f"{self.name}: every must be a whole number >= 1, got {every!r}")
        self.every = every

    def settings(self) -> dict[str, Any]:
        """Everything that changes what this criterion records (part of a run's spec).

        `make_criterion(name, settings())` builds an equal criterion.

        Returns
        -------
        dict
            Setting name to value.

        Examples
        --------
        >>> from dipstop.criteria import CifsCriterion
        >>> CifsCriterion(every=5).settings()
        {'every': 5}
        """
        return {"every": self.every}

    def due(self, t: int) -> bool:
        """Whether iteration t (1-based) is scored: t % every == 0.

        Parameters
        ----------
        t : int
            The iteration, 1-based.

        Returns
        -------
        bool

        Examples
        --------
        >>> from dipstop.criteria import CifsCriterion
        >>> [t for t in range(1, 31) if CifsCriterion(every=10).due(t)]
        [10, 20, 30]
        """
        return t % self.every == 0

    def measure(self, sample: Sample) -> dict[str, float]:
        """The recorded numbers for one scored iteration, by series name.

        Parameters
        ----------
        sample : Sample
            The iteration: `image` is set for host criteria, `output` for device ones.

        Returns
        -------
        dict
            One float per name in `recorded`.

        Examples
        --------
        >>> from dipstop.criteria import CifsCriterion
        >>> image = np.zeros((64, 64, 3), np.uint8)
        >>> sorted(CifsCriterion().measure(Sample(1, 0.0, image=image)))
        ['jpeg_bytes']
        """
        raise NotImplementedError

    @classmethod
    def values(cls, series: Mapping[str, Any], context: Context) -> Any:
        """The values Eq. 4 minimises, from recorded series (arrays, or one row of floats).

        A class method: reports stop stored runs without building the criterion (BRISQUE's
        model, say). The default: the first recorded series, negated when higher is better.

        Parameters
        ----------
        series : mapping
            Recorded series by name ("mse" and this criterion's `recorded`).
        context : Context
            The image's pixel count and, for CIFS, lam.

        Returns
        -------
        ndarray or float
            The values, lower is better; NaN where nothing was scored.

        Examples
        --------
        >>> from dipstop.criteria import WmvCriterion
        >>> WmvCriterion.values({"wmv": np.array([np.nan, 0.5, 0.2])}, Context(pixels=4096))
        array([nan, 0.5, 0.2])
        """
        v = series[cls.recorded[0]]
        return v if cls.lower_is_better else -v

    def state_dict(self) -> dict:
        """State that decides later values (a window of outputs), for checkpoints.

        Stateless criteria return an empty dict.

        Returns
        -------
        dict

        Examples
        --------
        >>> from dipstop.criteria import CifsCriterion
        >>> CifsCriterion().state_dict()
        {}
        """
        return {}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        """Continue from `state_dict()`, tensors on `device`.

        Parameters
        ----------
        state : dict
            What `state_dict()` returned.
        device : torch.device or str
            Where the state's tensors go (the outputs' device).

        Examples
        --------
        See `dipstop.criteria.WmvCriterion.load_state_dict`.

        >>> from dipstop.criteria import CifsCriterion
        >>> CifsCriterion().load_state_dict({}) is None
        True
        """


REGISTRY: dict[str, type[Criterion]] = {}


def register(cls: type[Criterion]) -> type[Criterion]:
    """Class decorator: make a criterion available by its `name` to bench, reports, loops.

    Adds the class to `REGISTRY`, which the recording loop, bench, calibration, selection,
    reports and checkpoints iterate over; a class registered under an existing name
    replaces it.

    Parameters
    ----------
    cls : type
        A `Criterion` subclass with `name`, `label` and `recorded` set.

    Returns
    -------
    type
        `cls`, unchanged.

    Examples
    --------
    >>> from dipstop.criteria import REGISTRY, Context, Criterion, make_criterion, register
    >>> @register
    ... class Brightness(Criterion):
    ...     name, label, recorded = "bright", "Brightness", ("bright",)
    ...     lower_is_better = False
    ...     def measure(self, sample):
    ...         return {"bright": float(sample.image.mean())}
    >>> make_criterion("bright").label
    'Brightness'
    >>> Brightness.values({"bright": np.array([1.0, 3.0])}, Context(pixels=4))
    array([-1., -3.])
    >>> del REGISTRY["bright"]  # keep the example's criterion out of everything else
    """
    REGISTRY[cls.name] = cls
    return cls


def make_criterion(name: str, settings: Mapping[str, Any] | None = None) -> Criterion:
    """A registered criterion, built from the settings a run spec recorded for it.

    Parameters
    ----------
    name : str
        Its registry key ("cifs", "wmv", "brisque", "niqe" or one `register`ed).
    settings : mapping, optional
        Keyword arguments of the criterion's class, as `Criterion.settings()` gives them.

    Returns
    -------
    Criterion

    Raises
    ------
    DipstopError
        For a name that is not registered.

    Examples
    --------
    >>> from dipstop.criteria import make_criterion
    >>> make_criterion("wmv", {"every": 1, "window": 50}).settings()
    {'every': 1, 'window': 50}
    >>> make_criterion("psnr")
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: unknown criterion 'psnr'; choose from brisque, cifs, niqe, wmv
    """
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise DipstopError(
            f"unknown criterion {name!r}; choose from {', '.join(sorted(REGISTRY))}"
        ) from None
    return cls(**dict(settings or {}))
