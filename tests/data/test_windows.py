"""Tests of kerafine.data.windows.sliding_windows."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerafine.data.windows import sliding_windows, window_starts
from kerafine.errors import DataError, KerafineError


def _naive(series, window, horizon, stride, labels, groups):
    """Reference: a Python loop over every candidate start row."""
    series = np.asarray(series, dtype=np.float64)
    if series.ndim == 1:
        series = series[:, None]
    n = len(series)
    groups = np.zeros(n, dtype=int) if groups is None else np.asarray(groups)
    xs, ys = [], []
    start_of_group = {}
    for i in range(n):
        start_of_group.setdefault(groups[i], i)
    for s in range(n):
        last = s + window - 1 + horizon
        if last >= n:
            break
        if len(set(groups[s : last + 1].tolist())) != 1:
            continue
        if (s - start_of_group[groups[s]]) % stride:
            continue
        xs.append(series[s : s + window])
        if labels is None:
            ys.append(series[s + window - 1 + horizon])
        else:
            ys.append(max(labels[s + window : s + window + horizon]))
    return np.array(xs), np.array(ys)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n_groups=st.integers(1, 4),
    window=st.integers(1, 6),
    horizon=st.integers(1, 4),
    stride=st.integers(1, 3),
    n_features=st.integers(1, 3),
    with_labels=st.booleans(),
)
def test_windows_match_naive_reference_and_never_mix_groups(
    data, n_groups, window, horizon, stride, n_features, with_labels
):
    lengths = data.draw(
        st.lists(st.integers(window + horizon, window + horizon + 12), min_size=n_groups, max_size=n_groups)
    )
    groups = np.repeat(np.arange(n_groups) * 7 + 3, lengths)
    rng = np.random.default_rng(sum(lengths))
    series = rng.normal(size=(len(groups), n_features))
    labels = (rng.random(len(groups)) < 0.2).astype(float) if with_labels else None
    x, y = sliding_windows(
        series, window, horizon=horizon, stride=stride, labels=labels, groups=groups, dtype="float64"
    )
    ref_x, ref_y = _naive(series, window, horizon, stride, labels, groups)
    np.testing.assert_array_equal(x, ref_x)
    np.testing.assert_array_equal(y.reshape(ref_y.shape), ref_y)
    # Every window and its target come from one group: encode the group in the values and check.
    tagged = np.repeat(groups[:, None].astype(float), n_features, axis=1)
    tx, ty = sliding_windows(tagged, window, horizon=horizon, stride=stride, groups=groups, dtype="float64")
    assert np.all(tx == tx[:, :1, :1])
    assert np.all(ty == tx[:, 0, :])


def test_labelled_window_target_is_event_within_horizon_after_window():
    labels = np.zeros(10)
    labels[7] = 1
    x, y = sliding_windows(np.arange(10.0), window=3, horizon=2, labels=labels)
    # windows end at rows 2..7; the event at row 7 is within 2 rows after windows ending at 5 and 6
    assert y.tolist() == [0, 0, 0, 1, 1, 0][: len(y)]
    assert x[:, -1, 0].tolist() == [2, 3, 4, 5, 6, 7][: len(y)]


def test_as_dataset_yields_the_same_windows():
    series = np.arange(40.0).reshape(20, 2)
    x, y = sliding_windows(series, 4)
    ds = sliding_windows(series, 4, as_dataset=True, batch_size=5)
    xs = np.concatenate([b[0].numpy() for b in ds])
    np.testing.assert_array_equal(xs, x)


@pytest.mark.parametrize("name", ["window", "horizon", "stride"])
@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_non_positive_window_horizon_or_stride_is_rejected(name, value):
    kwargs = {"window": 3, "horizon": 1, "stride": 1, name: value}
    with pytest.raises(KerafineError, match=f"argument `{name}`: received {value!r}; expected a positive int"):
        sliding_windows(np.zeros(20), **kwargs)


def test_group_shorter_than_one_window_is_named():
    groups = ["a"] * 10 + ["b"] * 3
    with pytest.raises(DataError, match=r"Group 'b' has 3 samples, fewer than one window"):
        sliding_windows(np.zeros(13), window=4, groups=groups)


def test_unsorted_groups_are_rejected():
    with pytest.raises(DataError, match="appears in 2 separate runs"):
        window_starts(6, 1, groups=["a", "a", "b", "b", "a", "a"])


def test_label_length_mismatch_is_rejected():
    with pytest.raises(DataError, match=r"one label per row of `series`, shape \(10,\)"):
        sliding_windows(np.zeros(10), 2, labels=np.zeros(9))


def test_robust_normalize_standardises_each_group_by_its_own_statistics():
    rng = np.random.default_rng(0)
    a = rng.normal(50.0, 5.0, size=(400, 2))
    b = 1000.0 + 40.0 * rng.normal(size=(300, 2))
    series = np.concatenate([a, b])
    groups = np.repeat(["a", "b"], [400, 300])
    x, y = sliding_windows(series, window=4, groups=groups, normalize="robust")
    n_a = 400 - 4 - 1 + 1
    for part, raw in ((x[:n_a], a), (x[n_a:], b)):
        # The group's rows as windows see them: first step of each window plus the tail.
        rows = np.concatenate([part[:, 0, :], part[-1, 1:, :]])
        expected = (raw - np.median(raw, axis=0)) / (
            (np.percentile(raw, 75, axis=0) - np.percentile(raw, 25, axis=0)) / 1.349
        )
        np.testing.assert_allclose(rows, np.clip(expected[: len(rows)], -10, 10), rtol=1e-5, atol=1e-5)
    # Without labels the forecast targets are normalised the same way.
    np.testing.assert_allclose(y[: n_a - 1], x[1:n_a, -1, :], atol=1e-6)
    # Normal data: the scale is close to the standard deviation, so z-scores have sd ~ 1.
    assert 0.9 < x[n_a:, 0, :].std() < 1.1


def test_robust_normalize_clips_outliers_and_survives_constant_groups():
    series = np.concatenate([np.zeros(50), [1e6], np.zeros(49), np.full(20, 7.0)])
    series[:50] += np.arange(50) % 2  # IQR 1 on the first group
    groups = np.repeat([0, 1], [100, 20])
    x, _ = sliding_windows(series, window=5, groups=groups, normalize="robust")
    assert x.max() == 10.0  # the 1e6 spike is clipped
    assert np.all(np.isfinite(x))
    np.testing.assert_array_equal(x[-1], 0.0)  # the constant group: centred, scale 1


def test_robust_normalize_leaves_labels_alone_and_bad_values_are_rejected():
    labels = np.r_[np.zeros(20), np.ones(5), np.zeros(15)]
    _, plain = sliding_windows(np.arange(40.0) * 3, window=4, labels=labels)
    _, norm = sliding_windows(np.arange(40.0) * 3, window=4, labels=labels, normalize="robust")
    np.testing.assert_array_equal(plain, norm)
    for bad in ("zscore", True, 1):
        with pytest.raises(KerafineError, match=r"argument `normalize`: received .*; expected None or \"robust\""):
            sliding_windows(np.arange(10.0), window=3, normalize=bad)
