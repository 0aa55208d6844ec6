import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dipstop.stopping import OnlineStopper, detect_offline


def online(values, patience):
    s = OnlineStopper(patience)
    for v in values:
        if s.update(v):
            return s.best_index
    return len(values) - 1


def brute_force(values, patience):
    """Eq. 4 read literally: smallest t with a value that is the (first) argmin over [t, t+S]."""
    m = [np.inf if np.isnan(v) else v for v in values]
    for t in range(len(m) - patience):
        window = m[t : t + patience + 1]
        if not np.isnan(values[t]) and int(np.argmin(window)) == 0:
            return t
    return len(m) - 1


series = st.lists(
    st.one_of(st.integers(0, 6).map(float), st.just(float("nan"))), min_size=1, max_size=60
)


@settings(max_examples=400, deadline=None)
@given(series, st.integers(1, 12))
def test_offline_rule_equals_online_detector_and_the_literal_definition(values, patience):
    expected = brute_force(values, patience)
    assert detect_offline(values, patience) == expected
    assert online(values, patience) == expected


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


def test_no_candidate_gives_the_last_iteration():
    assert detect_offline(np.arange(10, 0, -1), 3) == 9


@pytest.mark.parametrize("bad", [[], [[1, 2]]])
def test_bad_series_rejected(bad):
    with pytest.raises(ValueError):
        detect_offline(np.array(bad), 2)
