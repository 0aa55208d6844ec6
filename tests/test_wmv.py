"""ES-WMV: the running-sum update equals the windowed variance computed from scratch."""

from __future__ import annotations

import math

import pytest
import torch

from dipstop.criteria.wmv import WmvCriterion


def brute_force(window: list[torch.Tensor]) -> float:
    """(1/W) sum_w mean_pixels((x_w - xbar)^2), straight from the definition, in float64."""
    stack = torch.stack([x.double() for x in window])
    xbar = stack.mean(dim=0)
    return float(torch.stack([((x - xbar) ** 2).mean() for x in stack]).mean())


@pytest.mark.parametrize("resync_every", [1000, 1, 7])
def test_matches_brute_force_window_variance(resync_every):
    gen = torch.Generator().manual_seed(0)
    w = 5
    crit = WmvCriterion(window=w, resync_every=resync_every)
    seen: list[torch.Tensor] = []
    for t in range(30):
        # drifting mean and changing spread, like a fit that moves and then settles
        x = (0.2 + 0.02 * t + (0.3 / (1 + t)) * torch.rand(1, 3, 8, 6, generator=gen)).float()
        seen.append(x)
        v = crit.update(x)
        if t < w - 1:
            assert math.isnan(v)
        else:
            assert v == pytest.approx(brute_force(seen[-w:]), rel=1e-6)


def test_small_variance_far_from_the_first_output_stays_accurate():
    """After the outputs move far from where they started, a tiny spread is still measured."""
    gen = torch.Generator().manual_seed(1)
    w = 4
    crit = WmvCriterion(window=w, resync_every=10)
    seen = []
    for t in range(40):
        base = 0.0 if t < 20 else 0.9
        x = (base + 1e-4 * torch.rand(1, 1, 5, 5, generator=gen)).float()
        seen.append(x)
        v = crit.update(x)
    assert v == pytest.approx(brute_force(seen[-w:]), rel=1e-6)


def test_nan_until_the_window_is_full():
    crit = WmvCriterion(window=3)
    values = [crit.update(torch.rand(1, 3, 4, 4)) for _ in range(3)]
    assert math.isnan(values[0]) and math.isnan(values[1])
    assert values[2] > 0


def test_constant_outputs_give_zero():
    crit = WmvCriterion(window=4, resync_every=3)
    x = torch.full((1, 3, 7, 9), 0.37)
    values = [crit.update(x) for _ in range(12)]
    assert all(math.isnan(v) for v in values[:3])
    assert values[3:] == [0.0] * 9


def test_rejects_a_change_of_shape_and_a_too_small_window():
    crit = WmvCriterion(window=3)
    crit.update(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        crit.update(torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError):
        WmvCriterion(window=1)


def test_does_not_keep_a_reference_to_the_caller_s_tensor():
    """The fitter may reuse its output buffer; the window must hold copies."""
    crit = WmvCriterion(window=2)
    x = torch.zeros(1, 1, 2, 2)
    crit.update(x)
    x.fill_(1.0)
    assert crit.update(x) == pytest.approx(0.25)
