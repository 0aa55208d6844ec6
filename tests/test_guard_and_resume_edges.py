"""The divergence guard and resuming at their edges.

A NaN before the first snapshot restarts the fit from its initial state (with Adam's state
cleared), it does not end as "diverged"; snapshots are taken every `snapshot_every` steps,
not every step, and a restore goes back to the last one; a saved state reads back exactly,
guard snapshot included, through a checkpoint file too; the run key names what the result
depends on.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dipstop import fitting
from dipstop.checkpoints import RunCheckpoint, image_spec, run_key
from dipstop.fitting import FitSettings, Fitter

SETTINGS = FitSettings(width=8, snapshot_every=5, max_restores=1)


@pytest.fixture(scope="module")
def noisy() -> torch.Tensor:
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))


def poison(fitter: Fitter) -> None:
    """NaN weights, as a numerical blow-up would leave them."""
    with torch.no_grad():
        next(fitter.net.parameters()).fill_(float("nan"))


def watched(fitter: Fitter, monkeypatch) -> list[tuple[int, float]]:
    """(t, the guard's reference loss) at the start of every forward pass of `fitter`."""
    seen: list[tuple[int, float]] = []
    forward = fitter._forward

    def recording(z):
        seen.append((fitter.t, fitter.previous_loss))
        return forward(z)

    monkeypatch.setattr(fitter, "_forward", recording)
    return seen


def test_a_nan_before_the_first_snapshot_restarts_from_the_initial_state(noisy, monkeypatch):
    """Restored to the initial weights with Adam's state cleared and no guard reference: one
    restore (max_restores=1 allows it), and the rest is the fresh fit on the perturbations
    drawn after the failed step."""
    fitter = Fitter(noisy, SETTINGS)
    seen = watched(fitter, monkeypatch)
    out = {}
    for it in fitter.run(10):
        out[it.t] = it.output.clone()
        if it.t == 2:
            poison(fitter)
    assert sorted(out) == list(range(1, 11)) and fitter.restores == 1
    assert [t for t, _ in seen[:4]] == [0, 1, 2, 2]  # step 3 tried, then retried
    assert seen[3][1] == math.inf  # the initial snapshot's loss: no reference after it
    fresh = Fitter(noisy, SETTINGS)
    for _ in range(3):  # the perturbations of steps 1 and 2 and of the failed try
        torch.randn(fresh.shape, generator=fresh.noise_gen)
    again = [it.output for it in fresh.run(8)]
    assert all(torch.equal(out[t + 3], y) for t, y in enumerate(again))


def test_an_infinite_loss_on_the_first_step_is_restored(noisy, monkeypatch):
    fitter = Fitter(noisy, SETTINGS)
    calls = []

    def mse_loss(y, x):
        calls.append(1)
        loss = F.mse_loss(y, x)
        return loss * math.inf if len(calls) == 1 else loss

    monkeypatch.setattr(fitting, "F", SimpleNamespace(mse_loss=mse_loss))
    losses = [it.loss for it in fitter.run(3)]
    assert fitter.restores == 1 and all(math.isfinite(v) for v in losses)


def test_snapshots_are_taken_every_snapshot_every_steps(noisy, monkeypatch):
    fitter = Fitter(noisy, SETTINGS)
    taken = []
    take = fitter._take_snapshot

    def counting():
        taken.append(fitter.t)
        return take()

    monkeypatch.setattr(fitter, "_take_snapshot", counting)
    seen = watched(fitter, monkeypatch)
    at5, loss = None, {}
    for it in fitter.run(12):
        loss[it.t] = it.loss
        if it.t == 5:
            at5 = [v.clone() for v in fitter.snapshot]
        if it.t == 7:
            poison(fitter)
    assert taken == [0, 5, 10]  # the initial one, then t = 5 and t = 10
    assert fitter.restores == 1
    # the retried step 8 saw the snapshot's loss as its reference ...
    retry = [i for i, (t, _) in enumerate(seen) if t == 7][1]
    assert seen[retry][1] == loss[5]
    assert len(at5) == len(fitter._state())  # taken with Adam's state: a full restore


def test_a_restore_puts_back_the_state_of_the_last_snapshot(noisy, monkeypatch):
    fitter = Fitter(noisy, SETTINGS)
    restored = []
    restore = fitter._restore

    def recording(snapshot):
        restore(snapshot)
        restored.append([v.clone() for v in fitter._state()])

    monkeypatch.setattr(fitter, "_restore", recording)
    for it in fitter.run(8):
        if it.t == 5:
            at5 = [v.clone() for v in fitter.snapshot]
        if it.t == 7:
            poison(fitter)
    assert len(restored) == 1
    assert all(map(torch.equal, restored[0], at5))


def saved_at(noisy: torch.Tensor, t: int) -> dict:
    return [it.state for it in Fitter(noisy, SETTINGS).run(t, state_every=t)][-1]


def same(a: object, b: object) -> bool:
    """Equal states: tensors equal, containers equal item by item."""
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_a_loaded_state_reads_back_as_saved_guard_snapshot_included(noisy):
    """Saved at t = 7 after a restore at t = 4: count, reference loss and snapshot read back."""
    fitter = Fitter(noisy, SETTINGS)
    for it in fitter.run(7, state_every=7):
        if it.t == 3:
            poison(fitter)
    state = it.state
    assert state["restores"] == 1 and state["snapshot"] is not None
    assert state["previous_loss"] < math.inf and state["snapshot_loss"] < math.inf
    resumed = Fitter(noisy, SETTINGS)
    resumed.load_state_dict(state)
    assert same(resumed.state_dict(), state)


def test_resume_through_a_checkpoint_file_then_restore_matches_the_uninterrupted_fit(
    noisy, tmp_path
):
    """Saved at t = 7 (last snapshot t = 5), NaN after t = 8: the resumed fit restores the
    snapshot it read from the file, exactly as the uninterrupted fit does."""

    def fit(fitter: Fitter) -> dict[int, torch.Tensor]:
        out = {}
        for it in fitter.run(12):
            out[it.t] = it.output.clone()
            if it.t == 8:
                poison(fitter)
        return out

    whole = Fitter(noisy, SETTINGS)
    expected = fit(whole)
    spec = {"image": "x", "seed": 0}
    RunCheckpoint(tmp_path, spec).save(saved_at(noisy, 7), {}, seconds=1.0)
    resumed = Fitter(noisy, SETTINGS)
    assert RunCheckpoint(tmp_path, spec).resume(resumed) is not None
    assert resumed.t == 7
    got = fit(resumed)
    assert whole.restores == resumed.restores == 1
    assert sorted(got) == list(range(8, 13))
    assert all(torch.equal(got[t], expected[t]) for t in got)


def test_the_run_key_names_the_pixels_their_shape_the_clean_image_and_the_seed():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    base = run_key(image_spec(a, None, {"seed": 0}))
    assert run_key(image_spec(a.reshape(4, 3), None, {"seed": 0})) != base
    assert run_key(image_spec(a, a, {"seed": 0})) != base
    assert run_key(image_spec(a, None, {"seed": 1})) != base
    assert run_key(image_spec(a.copy(), None, {"seed": 0, "device": "cuda"})) == base
