"""Model files for the no-reference criteria (BRISQUE, NIQE): found locally or downloaded.

Lookup order for a file such as `niqe/modelparameters.mat`:
1. `$DIPSTOP_MODELS/<relative path>` (e.g. DIPSTOP_MODELS=../shared/models);
2. the user cache, `$DIPSTOP_CACHE` or `~/.cache/dipstop/models/<relative path>`;
3. a download from the file's public source into that cache, checked by sha256.
A file whose sha256 does not match is never used.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dipstop.errors import DipstopError

_CONTRIB = (
    "https://raw.githubusercontent.com/opencv/opencv_contrib/"
    "2a5154a4479e841aa1282ef83d139c4870d17b8f/modules/quality/samples/"
)
_SPSR = (
    "https://raw.githubusercontent.com/Maclory/SPSR/881e78111c418d5e0a0150b213e0f8c3525e8089/"
    "metrics/MetricEvaluation/utils/niqe/"
)


@dataclass(frozen=True)
class ModelFile:
    relpath: str
    url: str
    sha256: str


MODEL_FILES = {
    "brisque_model": ModelFile(
        "brisque/brisque_model_live.yml",
        _CONTRIB + "brisque_model_live.yml",
        "4c44c7eec9e5139830c0bb0e4a044c9cd351ba5bbc9e3798beca3243e2782ff4",
    ),
    "brisque_range": ModelFile(
        "brisque/brisque_range_live.yml",
        _CONTRIB + "brisque_range_live.yml",
        "a18427f4f7ad087524bd0d63389649a3899b51ca6d44a4d5f8d8171f1f914a9c",
    ),
    "niqe": ModelFile(
        "niqe/modelparameters.mat",
        _SPSR + "modelparameters.mat",
        "fa2aa4d12dd9595c3fb6bf8b4e1a15c79d5d1469238d0901c88dead195be578d",
    ),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("DIPSTOP_CACHE", Path.home() / ".cache" / "dipstop")) / "models"


def model_path(name: str, download: bool = True) -> Path:
    """Local path of a verified model file; downloads it into the cache if allowed."""
    spec = MODEL_FILES[name]
    root = os.environ.get("DIPSTOP_MODELS")
    if root:
        p = Path(root) / spec.relpath
        if not p.is_file():
            raise DipstopError(
                f"model file {p} not found (DIPSTOP_MODELS={root}); point DIPSTOP_MODELS at a "
                f"folder holding {spec.relpath}, or unset it to download from {spec.url}"
            )
        if _sha256(p) != spec.sha256:
            raise DipstopError(f"model file {p} has the wrong sha256; replace it with {spec.url}")
        return p
    cached = cache_dir() / spec.relpath
    if cached.is_file() and _sha256(cached) == spec.sha256:
        return cached
    if not download:
        raise DipstopError(
            f"model file {spec.relpath} is not in {cache_dir()}; set DIPSTOP_MODELS to a folder "
            f"holding it, or allow the download from {spec.url}"
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(cached.suffix + ".part")
    try:
        with urllib.request.urlopen(spec.url, timeout=60) as resp:
            tmp.write_bytes(resp.read())
    except OSError as exc:
        raise DipstopError(
            f"cannot download {spec.url} ({exc}); download it yourself and set DIPSTOP_MODELS "
            f"to the folder holding {spec.relpath}"
        ) from exc
    if _sha256(tmp) != spec.sha256:
        tmp.unlink()
        raise DipstopError(f"download of {spec.url} has the wrong sha256; not using it")
    tmp.replace(cached)
    return cached
