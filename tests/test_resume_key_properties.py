"""Properties of what names a tiled run's kept fits (the run's key and each fit's name, its
tile and seed): whatever changes the result changes them (nothing stale is reused), and
nothing else does (a rerun resumes); runs that differ only in the number of fits a tile
share the fits they have in common.

Both are caught where the run asks its `TileStore` for the fits kept, before any fit, so
each example costs a sigma estimate and a table lookup, not a fit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dipstop import tiled_run
from dipstop.api import denoise
from dipstop.batch import denoise_file
from dipstop.imageio import write_image
from dipstop.lambda_table import load_table
from dipstop.policies import policy_names

PIXELS = np.random.default_rng(0).integers(0, 256, (64, 100, 3), dtype=np.uint8)
SETTINGS = dict(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                HealthCheck.function_scoped_fixture])  # fmt: skip

# every result-changing option, each with values to draw from (the first is the base's)
CHANGING = {
    "width": [8, 4, 16],
    "lr": [0.01, 0.02, 0.005],
    "seed": [0, 1, 7],
    "patience": [2, 3, 50],
    "max_iters": [4, 5, 10**6],
    "z_noise_std": [None, 0.0, 0.1],
    "precision": ["fp32", "bf16"],
    "output": ["since-best", *[p for p in policy_names() if p != "since-best"]],
    "tile": [64, 96],
    "overlap": [16, 0, 32],
    "sigma": [25.0, 15.0, None],
    "lam": [None, 50.0, 0.5],
    "ensemble": [1, 2, 3],
    "burn_in": [0, 30, 100],
}  # a quality preset sets width, S and ensemble, each here (BASE sets all three)
BASE = {k: v[0] for k, v in CHANGING.items()}


class _Key(Exception):
    """Raised by the stand-in store with the key the run gave it and the fits it asked for."""


@pytest.fixture(autouse=True)
def _catch_the_key(monkeypatch):
    class Store:
        def __init__(self, folder, key):
            self.key = key

        def load(self, shapes):
            raise _Key(self.key, frozenset(shapes))

    monkeypatch.setattr(tiled_run, "TileStore", Store)


def names_of(folder, pixels=PIXELS, **options) -> set[tuple[str, str]]:
    """What the run would read from its folder: (key, fit name) of each of its fits."""
    with pytest.raises(_Key) as caught:
        denoise(pixels, resume_dir=folder, tile_above=0, device="cpu", **options)
    key, names = caught.value.args
    return {(key, name) for name in names}


def key_of(folder, pixels=PIXELS, **options) -> str:
    ((key,),) = {(k,) for k, _ in names_of(folder, pixels, **options)}
    return key


@settings(**SETTINGS)
@given(data=st.data())
def test_any_result_changing_option_changes_the_fits_named(tmp_path, data):
    name = data.draw(st.sampled_from(sorted(CHANGING)), label="option")
    value = data.draw(st.sampled_from(CHANGING[name][1:]), label="value")
    assert names_of(tmp_path / "a", **BASE) != names_of(tmp_path / "a", **{**BASE, name: value})


def test_a_run_without_a_burn_in_is_named_as_before_there_was_one():
    """burn_in joins a run's spec only when set, so fits kept before the option existed
    still resume."""
    from dipstop.options import DenoiseOptions
    from dipstop.tile_store import tiles_spec

    def spec(b):
        return tiles_spec(PIXELS, None, DenoiseOptions(burn_in=b), {"sigma": 25.0})

    assert "burn_in" not in spec(0) and spec(30)["burn_in"] == 30


def test_more_fits_a_tile_name_the_fewer_fits_and_more(tmp_path):
    """An ensemble of 3 asks for the fits of one of 2 (seeds 0, 1) and a seed-2 fit a tile;
    one fit with seed 1 is the second fit of each tile of the ensemble of 2."""
    opts = {**BASE, "ensemble": 2}
    two = names_of(tmp_path, **opts)
    three = names_of(tmp_path, **{**opts, "ensemble": 3})
    assert two < three and len(three) == 3 * len(two) // 2
    assert {n[1][-5:] for n in three - two} == {"seed2"}
    assert names_of(tmp_path, **{**opts, "ensemble": 1, "seed": 1}) < two


@settings(**SETTINGS)
@given(
    y=st.integers(0, 63),
    x=st.integers(0, 99),
    c=st.integers(0, 2),
    step=st.sampled_from([-1, 1, 128]),
)
def test_any_pixel_changed_changes_the_key(tmp_path, y, x, c, step):
    other = PIXELS.copy()
    other[y, x, c] = (int(other[y, x, c]) + step) % 256
    assert key_of(tmp_path / "a", **BASE) != key_of(tmp_path / "a", other, **BASE)


def _write_table(path, scale: float, note: str = "") -> str:
    table = load_table(output="since-best")
    for entry in table["entries"]:
        entry["lam"] *= scale
    table["provenance"]["command"] += note
    path.write_text(json.dumps(table))
    return str(path)


@settings(**SETTINGS)
@given(scale=st.floats(0.25, 4.0).filter(lambda s: abs(s - 1) > 1e-6), note=st.text(max_size=5))
def test_a_lam_tables_content_changes_the_key_its_path_does_not(tmp_path, scale, note):
    """Same path, other content (another lam, or only another provenance): another key;
    the same content at another path: the same key. An explicit lam reads no table."""
    table = tmp_path / "table.json"
    opts = {**BASE, "table": _write_table(table, 1.0)}
    before = key_of(tmp_path / "a", **opts)
    _write_table(table, scale)
    assert key_of(tmp_path / "a", **opts) != before
    _write_table(table, 1.0, note or "!")
    assert key_of(tmp_path / "a", **opts) != before
    moved = _write_table(tmp_path / "elsewhere.json", 1.0)
    assert key_of(tmp_path / "a", **{**opts, "table": moved}) == before
    given_lam = {**BASE, "lam": 50.0}
    assert key_of(tmp_path / "a", **{**given_lam, "table": moved}) == key_of(
        tmp_path / "a", **given_lam
    )


@settings(**SETTINGS)
@given(
    threads=st.sampled_from([1, 2]),
    progress=st.booleans(),
    interruptible=st.booleans(),
    max_minutes=st.sampled_from([None, 0.5, 600.0]),
    folder=st.sampled_from(["a", "b.partial", "x/y"]),
)
def test_result_neutral_options_keep_the_key(
    tmp_path, threads, progress, interruptible, max_minutes, folder
):
    before = torch.get_num_threads()
    base = key_of(tmp_path / "a", **BASE)
    torch.set_num_threads(threads)
    try:
        again = key_of(tmp_path / folder, progress=progress, interruptible=interruptible,
                       max_minutes=max_minutes, **BASE)  # fmt: skip
    finally:
        torch.set_num_threads(before)
    assert again == base


@settings(**SETTINGS)
@given(src=st.sampled_from(["a.png", "b c.png", "x/photo.png"]),
       dst=st.sampled_from(["out.png", "o/other.png", "a_dipstop.png"]))  # fmt: skip
def test_the_files_paths_keep_the_key(tmp_path, src, dst):
    """The same pixels read from another file, written to another output (and so kept in
    another OUTPUT.partial): the same key."""
    first, second = tmp_path / "first.png", tmp_path / "in" / src
    for path in (first, second, tmp_path / "o" / "x", tmp_path / "out" / "x"):
        path.parent.mkdir(parents=True, exist_ok=True)
    write_image(first, PIXELS)
    write_image(second, PIXELS)
    opts = {**BASE, "tile_above": 0, "device": "cpu"}
    keys = []
    for s, d in ((first, tmp_path / "out" / "first.png"), (second, tmp_path / dst)):
        with pytest.raises(_Key) as caught:
            denoise_file(s, d, **opts)
        keys.append(caught.value.args[0])
    assert keys[0] == keys[1]
