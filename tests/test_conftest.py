"""The `shared` fixture: a missing ../shared fails the tests that need it, unless allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

USES_SHARED = """
def test_needs_shared(shared):
    assert (shared / "data").is_dir()
"""


@pytest.fixture
def inner(pytester, monkeypatch):
    """A pytest run of one test using `shared`, under this repository's real conftest."""
    pytester.makeconftest(Path(__file__).with_name("conftest.py").read_text())
    pytester.makepyfile(test_inner=USES_SHARED)
    monkeypatch.delenv("DIPSTOP_ALLOW_MISSING_SHARED", raising=False)

    def run(shared_root: Path):
        monkeypatch.setenv("DIPSTOP_SHARED", str(shared_root))
        return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs")

    return run


def test_missing_shared_fails_with_a_clear_message(inner, tmp_path):
    result = inner(tmp_path / "nowhere")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert f"../shared not found at {tmp_path / 'nowhere'}" in out
    assert "DIPSTOP_ALLOW_MISSING_SHARED=1" in out


def test_missing_shared_skips_when_allowed(inner, tmp_path, monkeypatch):
    monkeypatch.setenv("DIPSTOP_ALLOW_MISSING_SHARED", "1")
    result = inner(tmp_path / "nowhere")
    result.assert_outcomes(skipped=1)
    assert "skipped because DIPSTOP_ALLOW_MISSING_SHARED=1" in result.stdout.str()


def test_only_1_allows_a_missing_shared(inner, tmp_path, monkeypatch):
    monkeypatch.setenv("DIPSTOP_ALLOW_MISSING_SHARED", "0")
    inner(tmp_path / "nowhere").assert_outcomes(errors=1)


def test_present_shared_is_used(inner, tmp_path):
    (tmp_path / "fake_shared" / "data").mkdir(parents=True)
    inner(tmp_path / "fake_shared").assert_outcomes(passed=1)
