"""Model files: found by path, or downloaded once into the cache and checked by sha256."""

import hashlib

import pytest

from dipstop import models
from dipstop.errors import DipstopError


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A model entry whose 'public source' is a local file:// URL."""
    src = tmp_path / "source" / "model.yml"
    src.parent.mkdir()
    src.write_bytes(b"pretend model parameters")
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    spec = models.ModelFile("fake/model.yml", src.as_uri(), sha)
    monkeypatch.setitem(models.MODEL_FILES, "fake", spec)
    monkeypatch.delenv("DIPSTOP_MODELS", raising=False)
    monkeypatch.setenv("DIPSTOP_CACHE", str(tmp_path / "cache"))
    return src, spec


def test_downloads_into_the_cache_once_and_verifies(fake_model, tmp_path):
    src, spec = fake_model
    path = models.model_path("fake")
    assert path == tmp_path / "cache" / "models" / "fake" / "model.yml"
    assert path.read_bytes() == src.read_bytes()
    src.unlink()  # the source is gone: the cached copy is used
    assert models.model_path("fake") == path


def test_a_download_with_the_wrong_sha256_is_not_used(fake_model, tmp_path):
    src, _ = fake_model
    src.write_bytes(b"tampered")
    with pytest.raises(DipstopError, match="wrong sha256"):
        models.model_path("fake")
    assert not (tmp_path / "cache" / "models" / "fake" / "model.yml").exists()


def test_no_download_allowed_names_the_way_out(fake_model):
    with pytest.raises(DipstopError, match="DIPSTOP_MODELS"):
        models.model_path("fake", download=False)


def test_the_shared_models_match_the_pinned_checksums(shared, monkeypatch):
    monkeypatch.setenv("DIPSTOP_MODELS", str(shared / "models"))
    for name in models.MODEL_FILES:
        assert models.model_path(name).is_file()
