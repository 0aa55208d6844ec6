"""Output policies: the image a run returns online is the one offline rule evaluation scores."""

import pytest
import torch

from dipstop.averaging import BoxMean
from dipstop.criteria import CifsCriterion, Context
from dipstop.fitting import FitSettings, Fitter
from dipstop.lab.rules import Rule, evaluate
from dipstop.metrics import psnr
from dipstop.noise import add_gaussian_noise
from dipstop.policies import MeanSinceBest, make_policy, policy_names
from dipstop.recording import OnlineStop, record

T, S = 40, 6


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    clean = torch.rand(1, 3, 48, 48).cumsum(-1).cumsum(-2)
    clean = clean / clean.amax()
    noisy = torch.as_tensor(add_gaussian_noise(clean[0].numpy(), 25, seed=3)).float()
    return noisy, clean


@pytest.mark.parametrize("lam, fires", [(0.01, True), (1e9, False)])
def test_since_best_online_equals_offline_fired_or_not(pair, lam, fires):
    """since-best returns the mean of the last S + 1 outputs: from t* when Eq. 4 fires, the
    last S + 1 before T when it never does; the recorded box mean of S + 1 says which."""
    noisy, clean = pair
    fitter = Fitter(noisy, FitSettings(width=8, seed=1))
    pixels = noisy.shape[-1] * noisy.shape[-2]
    stop = OnlineStop(CifsCriterion(), Context(pixels, lam), S)
    policy = MeanSinceBest()
    rec = record(fitter, T, [CifsCriterion()], clean=clean, averages={f"box{S + 1}":
                 BoxMean(S + 1)}, stop=stop, policy=policy)  # fmt: skip
    online = psnr(rec.output, clean)
    outcome = evaluate(Rule("cifs", "since-best", S), rec.series, pixels, lam)
    assert outcome.fired is fires and rec.stopper.done is fires
    assert outcome.t_end == rec.iterations == (outcome.t_star + S if fires else T)
    assert online == pytest.approx(outcome.psnr, abs=1e-4)
    if not fires:  # the tail from T - S, not the (shorter) mean since t*
        assert outcome.t_star > T - S
        assert online == pytest.approx(rec.series[f"psnr_box{S + 1}"][-1], abs=1e-4)


def test_since_best_cut_short_returns_the_mean_since_the_minimum():
    p = make_policy("since-best")
    p.begin(max_iters=100, patience=5)
    for v, best in ((9.0, True), (1.0, True), (2.0, False), (3.0, False)):
        p.keep(torch.tensor(v), best)
    assert float(p.result()) == 2.0  # ended at t = 4 < T - S: no tail, the mean since t* = 2


def test_unknown_policy_is_one_line_with_the_choices():
    with pytest.raises(
        Exception, match="unknown output policy 'nope'; choose from raw, since-best"
    ):
        make_policy("nope")


@pytest.mark.parametrize("name", policy_names())
def test_a_policy_restored_from_its_state_returns_what_it_would_have(name):
    """`load_state_dict(state_dict())` into a fresh policy mid-stream (as a resumed fit does,
    its averages restored by the loop) ends with the image of the policy never stopped."""
    gen = torch.Generator().manual_seed(1)
    outputs = [torch.rand(1, 3, 8, 8, generator=gen) for _ in range(T)]
    improved = [t < 5 or t % 7 == 0 for t in range(T)]

    def feed(policy, averages, steps):
        for t in steps:
            current = {n: a.update(outputs[t]) for n, a in averages.items()}
            policy.keep(policy.view(outputs[t], current), improved[t])

    whole = make_policy(name)
    whole.begin(T, S)
    feed(whole, whole.averages(), range(T))
    cut = make_policy(name)
    cut.begin(T, S)
    feed(cut, cut.averages(), range(T - 3))  # past T - S: since-best's tail sum has begun
    state = cut.state_dict()
    averages = {n: a.state_dict() for n, a in cut.averages().items()}
    resumed = make_policy(name)
    resumed.begin(T, S)
    resumed.load_state_dict(state)
    for n, a in resumed.averages().items():
        a.load_state_dict(averages[n])
    feed(resumed, resumed.averages(), range(T - 3, T))
    torch.testing.assert_close(resumed.result(), whole.result(), rtol=0, atol=1e-6)
