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
    """Network width, iteration budget T, patience S and crop side (None: full image)."""

    name: str
    width: int
    max_iters: int
    patience: int
    crop: int | None
    lr: float = FitSettings.lr  # one source of defaults: the fit's own
    z_noise_std: float = FitSettings.z_noise_std

    def fit_settings(self, seed: int = 0) -> FitSettings:
        return FitSettings(width=self.width, lr=self.lr, z_noise_std=self.z_noise_std, seed=seed)

    def with_(self, **changes: object) -> Protocol:
        """A copy with some settings changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict:
        return asdict(self)


PROTOCOLS = {
    "paper": Protocol("paper", width=128, max_iters=20000, patience=1000, crop=None),
    "cpu": Protocol("cpu", width=64, max_iters=3000, patience=500, crop=128),
}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise DipstopError(
            f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}"
        ) from None
