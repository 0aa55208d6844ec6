"""Shared fixtures: paths into ../shared (read in place, never copied) and tiny images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# Property-based tests draw the same examples on every run ("ci"), so a submission's CI
# result is reproducible; DIPSTOP_HYPOTHESIS=explore draws new ones each run, to hunt.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("DIPSTOP_HYPOTHESIS", "ci"))

SHARED = Path(
    os.environ.get("DIPSTOP_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")
)


ALLOW_MISSING_SHARED = "DIPSTOP_ALLOW_MISSING_SHARED"


def require_shared(root: Path) -> Path:
    """`root` when it holds data/; else the test fails (CI always has ../shared beside the
    checkout), or is skipped where DIPSTOP_ALLOW_MISSING_SHARED=1 says that is expected."""
    if (root / "data").is_dir():
        return root
    missing = f"../shared not found at {root} (no data/ folder there)"
    if os.environ.get(ALLOW_MISSING_SHARED) == "1":
        pytest.skip(f"{missing}; skipped because {ALLOW_MISSING_SHARED}=1")
    pytest.fail(
        f"{missing}: put ../shared beside the checkout or set DIPSTOP_SHARED to it; "
        f"set {ALLOW_MISSING_SHARED}=1 to skip the tests that need it instead",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def shared() -> Path:
    return require_shared(SHARED)


@pytest.fixture(scope="session")
def smooth_rgb() -> np.ndarray:
    """A 64x64 uint8 crop of the public-domain astronaut photo, shrunk so it is smooth."""
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut(), (64, 64), interpolation=cv2.INTER_AREA)


@pytest.fixture(autouse=True, scope="session")
def _models_from_shared():
    """Tests read model files from ../shared/models, never from the network: for the whole
    session, so module-scoped fixtures that score BRISQUE or NIQE see it too."""
    if (SHARED / "models").is_dir() and "DIPSTOP_MODELS" not in os.environ:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DIPSTOP_MODELS", str(SHARED / "models"))
            yield
    else:
        yield


@pytest.fixture
def image_folder(tmp_path, smooth_rgb):
    """A folder of two small clean images (PNG and JPEG, 112x104) and a non-image file."""
    import cv2

    folder = tmp_path / "clean"
    folder.mkdir()
    big = cv2.resize(smooth_rgb, (112, 104))
    cv2.imwrite(str(folder / "a.png"), big)
    cv2.imwrite(str(folder / "b.jpg"), big[::-1])
    (folder / "notes.txt").write_text("ignored")
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (put back after): tiny fits run as the CLI's
    --threads 1, and on a shared, busy CPU two threads spin against each other; runs
    compared must use the same float sums. Modules take it with
    `pytestmark = pytest.mark.usefixtures("one_thread")`; a module fixture that fits asks
    for it too, so it runs after it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
