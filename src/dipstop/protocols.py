"""Named experimental protocols: every setting that shapes a fit, recorded with each result.

- "paper": the paper's setup (full images, T = 20000, S = 1000, width 128). Needs a GPU.
- "cpu": the same method scaled to a 2-core CPU: 128 x 128 centre crops, width 64,
  T = 3000, S = 500. Chosen by measurement (docs/protocols.md): at 128 x 128 a
  width-64 iteration takes ~0.11 s on 2 cores, the PSNR peak falls well before T at every
  sigma in 5..75, and smaller crops starve the JPEG-size signal (docs/protocols.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from dipstop.errors import DipstopError
from dipstop.fitting import FitSettings


@dataclass(frozen=True)
class Protocol:
    """Network width, iteration budget T, patience S and crop side (None: full image).

    Every setting that shapes a fit, recorded with each result. Frozen: derive variants
    with `with_`. `PROTOCOLS` holds the named ones; `get_protocol` looks them up.

    Parameters
    ----------
    name : str
        The protocol's name, recorded with results.
    width : int
        Network width (channels per layer).
    max_iters : int
        Iteration budget T.
    patience : int
        Patience S of the Eq. 4 stopping rule.
    crop : int or None
        Side of the centre crop lab runs fit (None: the full image). `dipstop.denoise`
        always fits the whole image.
    lr, z_noise_std : float
        Adam's learning rate and the std of z's perturbation; `FitSettings`' defaults.

    Examples
    --------
    >>> cpu = PROTOCOLS["cpu"]
    >>> cpu.width, cpu.max_iters, cpu.patience, cpu.crop
    (64, 3000, 500, 128)
    """

    name: str
    width: int
    max_iters: int
    patience: int
    crop: int | None
    lr: float = FitSettings.lr  # one source of defaults: the fit's own
    z_noise_std: float = FitSettings.z_noise_std

    def fit_settings(self, seed: int = 0) -> FitSettings:
        """The `FitSettings` of a fit under this protocol with this seed (others default).

        Examples
        --------
        >>> s = PROTOCOLS["paper"].fit_settings(seed=7)
        >>> s.width, s.seed, s.lr
        (128, 7, 0.01)
        """
        return FitSettings(width=self.width, lr=self.lr, z_noise_std=self.z_noise_std, seed=seed)

    def with_(self, **changes: object) -> Protocol:
        """A copy with some settings changed (None values are ignored).

        The name is kept unless changed, so a result records both it and the overrides.

        Parameters
        ----------
        **changes
            Field names and new values; None keeps the field as it is.

        Returns
        -------
        Protocol

        Examples
        --------
        >>> p = PROTOCOLS["cpu"].with_(max_iters=100, width=None)
        >>> p.name, p.max_iters, p.width
        ('cpu', 100, 64)
        """
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict:
        """Every field by name (what results and lam tables record).

        Examples
        --------
        >>> sorted(PROTOCOLS["cpu"].as_dict())
        ['crop', 'lr', 'max_iters', 'name', 'patience', 'width', 'z_noise_std']
        """
        return asdict(self)


PROTOCOLS = {
    "paper": Protocol("paper", width=128, max_iters=20000, patience=1000, crop=None),
    "cpu": Protocol("cpu", width=64, max_iters=3000, patience=500, crop=128),
}


def get_protocol(name: str) -> Protocol:
    """The named protocol: "paper" or "cpu".

    Parameters
    ----------
    name : str

    Returns
    -------
    Protocol

    Raises
    ------
    DipstopError
        For an unknown name.

    Examples
    --------
    >>> get_protocol("paper").max_iters
    20000
    >>> get_protocol("gpu")
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: unknown protocol 'gpu'; choose one of paper, cpu
    """
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise DipstopError(
            f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}"
        ) from None
