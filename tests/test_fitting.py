import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dipstop import fitting
from dipstop.errors import DipstopError
from dipstop.fitting import FitSettings, Fitter

TINY = FitSettings(width=8, snapshot_every=5)


def outputs(noisy, settings, n):
    return [it.output.clone() for it in Fitter(noisy, settings).run(n)]


def test_same_seed_same_output_on_cpu():
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    a = outputs(noisy, TINY, 6)
    b = outputs(noisy, TINY, 6)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    c = outputs(noisy, FitSettings(width=8, seed=1), 6)
    assert not torch.equal(a[-1], c[-1])


def test_output_has_the_input_size_and_loss_is_the_mse_on_it():
    noisy = torch.rand(1, 40, 70)
    it = next(Fitter(noisy, TINY).run(1))
    assert it.output.shape == (1, 1, 40, 70)
    assert it.loss == pytest.approx(float(torch.mean((it.output - noisy) ** 2)), rel=1e-5)


def test_loss_falls_while_fitting():
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    losses = [it.loss for it in Fitter(noisy, TINY).run(60)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])


def test_channels_last_computes_the_same_fit():
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    still = FitSettings(width=8, z_noise_std=0.0)  # no perturbation: its draw order is layout's
    a = outputs(noisy, still, 2)  # later steps drift apart: Adam's first steps amplify rounding
    b = outputs(noisy, dataclasses.replace(still, channels_last=True), 2)
    assert all(torch.allclose(x, y, atol=2e-4) for x, y in zip(a, b, strict=True))


def test_bf16_autocast_stays_close_and_still_fits():
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    bf16 = dataclasses.replace(TINY, bf16=True)
    first = next(Fitter(noisy, bf16).run(1)).output
    assert first.dtype == torch.float32
    assert (first - next(Fitter(noisy, TINY).run(1)).output).abs().mean() < 0.01
    losses = [it.loss for it in Fitter(noisy, bf16).run(60)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])


def test_divergence_guard_recovers_from_an_injected_nan():
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    fitter = Fitter(noisy, TINY)
    seen = []
    for it in fitter.run(30):
        seen.append((it.t, it.loss))
        if it.t == 12:  # poison the weights, as a numerical blow-up would
            with torch.no_grad():
                next(fitter.net.parameters()).fill_(float("nan"))
    assert [t for t, _ in seen] == list(range(1, 31))
    assert all(math.isfinite(v) for _, v in seen)
    assert fitter.restores >= 1
    assert all(torch.isfinite(p).all() for p in fitter.net.parameters())


def spiked_fit(monkeypatch, db: float, at: int, n: int = 30):
    """Fit n iterations where iteration `at`'s loss is made exactly `db` above the previous
    iteration's (finite, not NaN), once. Returns the fitter, the yielded (t, loss), the spike
    and, for the step computed right after the spike, the fit's state when it began."""
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    fitter = Fitter(noisy, TINY)
    seen = {}

    forward = fitter._forward

    def forward_after_the_spike(z):
        if "spike" in seen and "after" not in seen:  # before its forward updates BatchNorm
            seen["after"] = [v.clone() for v in fitter._state()]
        return forward(z)

    def mse_loss(y, x):
        loss = F.mse_loss(y, x)
        if fitter.t == at - 1 and "spike" not in seen:
            seen["snapshot"] = [v.clone() for v in fitter.snapshot]
            seen["spike"] = fitter.previous_loss * 10 ** (db / 10)
            return loss * (seen["spike"] / loss.item())
        return loss

    monkeypatch.setattr(fitter, "_forward", forward_after_the_spike)
    monkeypatch.setattr(fitting, "F", SimpleNamespace(mse_loss=mse_loss))
    yielded, seen["taken"] = [], {}
    for it in fitter.run(n):
        yielded.append((it.t, it.loss))
        if it.t not in seen["taken"] and it.t % TINY.snapshot_every == 0:  # the guard's
            seen["taken"][it.t] = [v.clone() for v in fitter.snapshot]  # snapshot at t
    return fitter, yielded, seen


def test_divergence_guard_restores_after_a_finite_jump_of_more_than_5_db(monkeypatch):
    assert TINY.guard_db == 5.0
    fitter, yielded, seen = spiked_fit(monkeypatch, db=5.1, at=13)
    assert fitter.restores == 1
    assert [t for t, _ in yielded] == list(range(1, 31))  # iteration 13 retried, none skipped
    assert math.isfinite(seen["spike"]) and seen["spike"] not in [v for _, v in yielded]
    loss = dict(yielded)
    assert loss[13] <= loss[12] * 10 ** (5.0 / 10)  # the retry passed the guard
    # the retry started from the snapshot (taken at t = 10, snapshot_every = 5), not from
    # the weights that produced the jump: network, BatchNorm buffers and Adam's moments
    assert len(seen["after"]) == len(seen["snapshot"]) == len(seen["taken"][10])
    assert all(torch.equal(a, b) for a, b in zip(seen["after"], seen["snapshot"], strict=True))
    assert all(map(torch.equal, seen["snapshot"], seen["taken"][10]))
    assert not all(map(torch.equal, seen["taken"][10], seen["taken"][5]))  # not a stale one
    assert all(math.isfinite(v) for v in loss.values())
    assert np.mean([loss[t] for t in range(26, 31)]) < np.mean([loss[t] for t in range(9, 14)])


def test_divergence_guard_keeps_a_jump_just_under_5_db(monkeypatch):
    fitter, yielded, seen = spiked_fit(monkeypatch, db=4.9, at=13)
    assert fitter.restores == 0
    assert [t for t, _ in yielded] == list(range(1, 31))
    loss = dict(yielded)
    assert loss[13] == pytest.approx(seen["spike"], rel=1e-6)  # kept and yielded as it was
    assert loss[13] == pytest.approx(loss[12] * 10 ** (4.9 / 10), rel=1e-6)
    # the fit went on from the jumped step's own update, not from the snapshot
    assert not all(map(torch.equal, seen["after"], seen["snapshot"]))


def test_a_fit_resumed_from_its_saved_state_continues_exactly(tmp_path):
    """Including the divergence guard: a NaN injected after the resume is restored from
    the snapshot that was saved (taken at t = 10, saved with the state at t = 12; the NaN
    at t = 13 comes before the next snapshot at t = 15), as in the uninterrupted fit."""
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))

    def poison_at(fitter, t, it):
        if it.t == t:
            with torch.no_grad():
                next(fitter.net.parameters()).fill_(float("nan"))

    whole = Fitter(noisy, TINY)
    expected = []
    for it in whole.run(30):
        expected.append(it.loss)
        poison_at(whole, 13, it)
    first = Fitter(noisy, TINY)
    states = [it.state for it in first.run(12, state_every=6) if it.state is not None]
    assert [s["t"] for s in states] == [6, 12]
    torch.save(states[-1], tmp_path / "state.pt")
    resumed = Fitter(noisy, TINY)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt"))
    rest = []
    for it in resumed.run(30):
        rest.append(it.loss)
        poison_at(resumed, 13, it)
    assert whole.restores == resumed.restores == 1
    assert states[-1]["snapshot"] is not None and states[-1]["snapshot_loss"] == expected[9]
    assert rest == expected[12:]
    with pytest.raises(RuntimeError, match="not run yet"):
        resumed.load_state_dict(states[0])


def test_a_state_of_another_fit_is_refused_without_changing_anything():
    noisy = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    state = [it.state for it in Fitter(noisy, TINY).run(2, state_every=2)][-1]
    wider = Fitter(noisy, dataclasses.replace(TINY, width=16))
    before = [p.clone() for p in wider.net.parameters()]
    with pytest.raises(ValueError, match="another fit"):
        wider.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(before, wider.net.parameters(), strict=True))
    with pytest.raises(ValueError, match="another fit"):
        Fitter(noisy, TINY).load_state_dict({**state, "device_type": "cuda"})
    with pytest.raises(ValueError, match="another fit"):
        Fitter(torch.rand(3, 64, 96), TINY).load_state_dict(state)  # another image size


def test_repeated_divergence_is_a_clear_error():
    noisy = torch.rand(1, 64, 64)
    fitter = Fitter(noisy, FitSettings(width=8, max_restores=3))
    with torch.no_grad():
        for p in fitter.net.parameters():
            p.fill_(float("nan"))
    with pytest.raises(DipstopError, match="learning rate"):
        list(fitter.run(5))


def test_too_small_image_is_a_clear_error():
    with pytest.raises(DipstopError, match="at least 32"):
        Fitter(torch.rand(3, 20, 64), TINY)


def test_unknown_or_missing_device_is_a_clear_error():
    with pytest.raises(DipstopError, match="device"):
        Fitter(torch.rand(3, 64, 64), TINY, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DipstopError, match="no CUDA"):
            Fitter(torch.rand(3, 64, 64), TINY, device="cuda")


def test_memory_guard_refuses_a_fit_that_cannot_fit(monkeypatch):
    from dipstop import memory

    with pytest.raises(DipstopError, match=r"40000x30000 image at width 128 needs about"):
        memory.check_fits(30000, 40000, 30016 * 40000, 128, torch.device("cpu"))
    monkeypatch.setattr(memory, "available_bytes", lambda device: 600 * 2**20)
    with pytest.raises(DipstopError, match="smaller --width"):
        Fitter(torch.rand(3, 256, 256), FitSettings(width=64))
    Fitter(torch.rand(3, 64, 64), FitSettings(width=8))  # small enough still runs


def test_memory_estimate_covers_the_measured_peak():
    # benchmarks/memory.py: 481x321 at width 64 peaked 1404 MiB above start (padded 512x352)
    from dipstop.memory import estimate_bytes

    assert estimate_bytes(512 * 352, 64) > 1404 * 2**20
