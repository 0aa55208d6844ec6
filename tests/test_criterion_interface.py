"""A criterion defined here, outside the library, is recorded, checkpointed, selected by Eq. 4
and reported, with no library file changed: one class and `@register`."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from dipstop.criteria import REGISTRY, Criterion, Sample, register
from dipstop.lab.executor import run_grid
from dipstop.lab.paper_report import build_report
from dipstop.lab.runs import bench_criteria, grid, run_one
from dipstop.lab.selection import select
from dipstop.lab.store import ResultStore
from dipstop.lambda_table import load_table
from dipstop.protocols import get_protocol

TINY = get_protocol("cpu").with_(width=8, crop=96, max_iters=24, patience=6)


class Spread(Criterion):
    """Device criterion with state: the spread of the last `memory` output means."""

    name, label, recorded, on_host = "spread", "Spread", ("spread",), False

    def __init__(self, every: int = 1, memory: int = 3) -> None:
        super().__init__(every)
        self.memory, self.means = memory, torch.zeros(0)

    def settings(self) -> dict:
        return {"every": self.every, "memory": self.memory}

    def measure(self, sample: Sample) -> dict[str, float]:
        assert sample.output is not None
        self.means = torch.cat([self.means, sample.output.mean().reshape(1)])[-self.memory :]
        return {"spread": float(self.means.max() - self.means.min())}

    def state_dict(self) -> dict:
        return {"means": self.means.clone()}

    def load_state_dict(self, state: dict, device="cpu") -> None:
        self.means = state["means"].to(device)


class Brightness(Criterion):
    """Host criterion scored every 2 iterations; higher is better (so its values negate)."""

    name, label, recorded, lower_is_better = "brightness", "Brightness", ("brightness",), False

    def measure(self, sample: Sample) -> dict[str, float]:
        assert sample.image is not None
        return {"brightness": float(sample.image.mean())}


@pytest.fixture
def registered():
    register(Spread)
    register(Brightness)
    yield
    del REGISTRY["spread"], REGISTRY["brightness"]


def test_a_criterion_defined_in_a_test_is_recorded_selected_and_reported(
    registered, tmp_path, image_folder
):
    criteria = {
        **bench_criteria(4),
        "spread": {"every": 1, "memory": 3},
        "brightness": {"every": 2},
    }
    specs = grid(image_folder, [25], TINY, images=["a.png"], criteria=criteria)
    store = ResultStore(tmp_path / "s.sqlite")
    assert run_grid(specs, store, log=lambda m: None) == 1
    (run,) = store.runs()
    assert run.spec["criteria"]["spread"] == {"every": 1, "memory": 3}  # part of the key
    spread, bright = run.series["spread"], run.series["brightness"]
    assert spread.shape == (24,) and np.isfinite(spread).all() and spread[0] == 0.0
    assert np.isnan(bright[0::2]).all() and np.isfinite(bright[1::2]).all()

    table = load_table()
    picks = select(run, TINY.patience, table)
    sampled = -bright[1::2]  # Eq. 4 over the sampled series (negated: higher is better)...
    s = TINY.patience // 2
    first = next(
        (i for i in range(len(sampled) - s) if sampled[i] <= sampled[i + 1 : i + 1 + s].min()),
        None,
    )
    expected = 2 * first + 2 if first is not None else 24  # ...with patience S / 2
    assert picks["Brightness"] == expected
    assert 1 <= picks["Spread"] <= 24 and list(picks)[-2:] == ["No ES", "Peak"]

    build_report(store, tmp_path / "rep", TINY.patience, table)
    rows = list(csv.DictReader((tmp_path / "rep" / "table1.csv").open()))
    by_method = {r["method"]: float(r["mean_psnr"]) for r in rows}
    assert by_method["Spread"] == pytest.approx(run.series["psnr"][picks["Spread"] - 1])
    assert by_method["Brightness"] == pytest.approx(run.series["psnr"][expected - 1])
    header = next(
        x for x in (tmp_path / "rep" / "report.md").read_text().splitlines() if "| n |" in x
    )
    assert "| CIFS | Brightness | Spread | CIFS (est. sigma) |" in header


def test_a_test_criterion_resumes_from_a_checkpoint_bit_for_bit(
    registered, tmp_path, image_folder, monkeypatch
):
    from dipstop import checkpoints, recording
    from dipstop.runtime import Switches

    monkeypatch.setattr(checkpoints, "STATE_EVERY", 4)
    criteria = {"cifs": {"every": 1}, "spread": {"every": 1, "memory": 5}}
    spec = grid(image_folder, [25], TINY, images=["a.png"], criteria=criteria, averages={})[0]
    _, whole, _ = run_one(spec)
    real, calls = recording.psnr, []

    def psnr_then_ctrl_c(a, b):
        calls.append(1)
        if len(calls) == 15:
            raise KeyboardInterrupt
        return real(a, b)

    monkeypatch.setattr(recording, "psnr", psnr_then_ctrl_c)
    folder = tmp_path / "partial"
    with pytest.raises(KeyboardInterrupt):
        run_one(spec, None, str(folder), Switches(checkpoint_seconds=0.0))
    monkeypatch.setattr(recording, "psnr", real)
    _, resumed, summary = run_one(spec, None, str(folder), Switches(checkpoint_seconds=0.0))
    assert summary["resumed_at"] == 12
    np.testing.assert_array_equal(resumed["spread"], whole["spread"])
    np.testing.assert_array_equal(resumed["mse"], whole["mse"])
