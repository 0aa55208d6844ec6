import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dipstop.stopping import OnlineStopper, detect_offline


def online(values, patience, burn_in=0):
    """What an online run returns: t* when the rule fires, else the running minimum at the
    end (the last index when nothing had a value)."""
    s = OnlineStopper(patience, burn_in)
    for v in values:
        if s.update(v):
            return s.best_index
    return s.best_index if s.best_index >= 0 else len(values) - 1


def brute_force(values, patience):
    """Eq. 4 read literally: smallest t with a value that is the (first) argmin over [t, t+S];
    if none, the first minimum of the series (the last index if all are missing)."""
    m = [np.inf if np.isnan(v) else v for v in values]
    for t in range(len(m) - patience):
        window = m[t : t + patience + 1]
        if not np.isnan(values[t]) and int(np.argmin(window)) == 0:
            return t
    return int(np.argmin(m)) if not all(np.isnan(values)) else len(m) - 1


series = st.lists(
    st.one_of(st.integers(0, 6).map(float), st.just(float("nan"))), min_size=1, max_size=60
)


@settings(max_examples=400, deadline=None)
@given(series, st.integers(1, 12))
def test_offline_rule_equals_online_detector_and_the_literal_definition(values, patience):
    expected = brute_force(values, patience)
    assert detect_offline(values, patience) == expected
    assert online(values, patience) == expected


@settings(max_examples=400, deadline=None)
@given(series, st.integers(1, 12), st.integers(0, 70))
def test_burn_in_is_the_rule_on_the_series_with_its_first_values_missing(
    values, patience, burn_in
):
    masked = [float("nan") if i < burn_in else v for i, v in enumerate(values)]
    expected = brute_force(masked, patience)
    if burn_in and all(np.isnan(masked)) and not all(np.isnan(values)):
        expected = int(np.nanargmin(values))  # ended within the burn-in: its minimum
    assert detect_offline(values, patience, burn_in) == expected
    assert online(values, patience, burn_in) == expected


def test_burn_in_holds_the_stop_past_an_early_minimum():
    early_minimum = [5, 1, 4, 3, 2, 2.5, 3, 3.5, 4, 4.5]
    assert online(early_minimum, 3) == 1
    s = OnlineStopper(3, burn_in=3)
    fired = [s.update(v) for v in early_minimum]
    assert s.best_index == 4 and fired.index(True) == 4 + 3
    values = np.array(early_minimum)
    assert detect_offline(values, 3, burn_in=3) == 4 and values[1] == 1  # not written into


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200), st.integers(1, 50))
def test_agreement_on_continuous_series(values, patience):
    assert detect_offline(values, patience) == online(values, patience)


def test_online_fires_exactly_patience_after_the_minimum():
    s = OnlineStopper(3)
    fired = [s.update(v) for v in [3, 2, 1, 5, 5, 5, 0]]
    assert fired.index(True) == 2 + 3 and s.best_index == 2


def test_missing_values_are_never_selected():
    nan = float("nan")
    assert detect_offline([nan] * 5 + [3, 2, 4, 5, 6], 3) == 6
    assert online([nan] * 5 + [3, 2, 4, 5, 6], 3) == 6
    assert detect_offline([nan] * 6, 2) == 5 == online([nan] * 6, 2)


def test_ties_keep_the_earlier_iteration():
    assert detect_offline([2, 1, 1, 1, 1], 2) == 1


def test_no_candidate_gives_the_minimum_so_far():
    assert detect_offline(np.arange(10, 0, -1), 3) == 9
    assert detect_offline([4, 1, 3, 2, 0.5, 2], 3) == 4 == online([4, 1, 3, 2, 0.5, 2], 3)
    assert detect_offline([4, 1, 3, 2], 5) == 1 == online([4, 1, 3, 2], 5)


@pytest.mark.parametrize("patience", [4, 60])  # the rule fires; T = 40 comes first
def test_denoise_report_and_calibration_stop_a_real_fit_at_the_same_iteration(
    patience, image_folder, tmp_path
):
    """One semantics everywhere: the online stop of `denoise` is the t* that the report's
    selection and the calibration's Eq. 4 column read off the same fit, recorded."""
    import torch

    from dipstop import denoise
    from dipstop.criteria import CifsCriterion, Context
    from dipstop.lab.datasets import synthetic_pair
    from dipstop.lab.runs import grid, run_one
    from dipstop.lab.selection import select
    from dipstop.lab.store import StoredRun
    from dipstop.lambda_table import load_table, write_table
    from dipstop.protocols import get_protocol

    torch.set_num_threads(1)
    lam, path = 1e-3, tmp_path / "table.json"  # E ~ bpp^2: least early, while outputs are blurry
    write_table(path, [{"sigma": 25.0, "lam": lam}], {"width": 8}, {})
    proto = get_protocol("cpu").with_(width=8, crop=64, max_iters=40, patience=patience)
    spec = grid(image_folder, [25], proto, images=["a.png"], criteria={"cifs": {"every": 1}})[0]
    spec_dict, series, summary = run_one(spec)
    _, noisy = synthetic_pair(spec.path, proto.crop, 25.0, 0)
    # the same fit: one (ensemble=1), in fp32 and without a burn-in, as the lab's runs are
    _, res = denoise(noisy, sigma=25.0, width=8, max_iters=40, patience=patience, table=str(path),
                     precision=spec.precision, ensemble=1, burn_in=0)  # fmt: skip
    np.testing.assert_array_equal(res.series["mse"], series["mse"][: res.iterations_run])
    picks = select(StoredRun("k", spec_dict, summary, series), patience, load_table(path))
    e = CifsCriterion.values(series, Context(summary["pixels"], lam))
    assert res.stop_iteration == picks["CIFS"] == detect_offline(e, patience) + 1
    assert res.stopped_early == (patience == 4)
    if patience == 60:  # never fired: the minimum so far, not T
        assert res.stop_iteration == int(np.argmin(e)) + 1 < 40


@pytest.mark.parametrize("bad", [[], [[1, 2]]])
def test_bad_series_rejected(bad):
    with pytest.raises(ValueError):
        detect_offline(np.array(bad), 2)
