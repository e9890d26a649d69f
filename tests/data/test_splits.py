"""Tests of kerafine.data.splits: leak-free time and group splits, the training-only normaliser."""

import numpy as np
import pandas as pd
import pytest

from kerafine.data.server_metrics import ServerMetrics
from kerafine.data.splits import Normalizer, split_by_group, split_by_time
from kerafine.errors import DataError, KerafineError


def _long_frame(n_servers=3, n_steps=200, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_servers):
        t = pd.date_range("2024-01-01", periods=n_steps, freq="1min")
        rows.append(
            pd.DataFrame(
                {
                    "server": f"s{s}",
                    "timestamp": t,
                    "segment": s,
                    "cpu": rng.normal(50, 5, n_steps),
                    "memory": rng.normal(30, 3, n_steps),
                    "diskio": rng.normal(10, 1, n_steps),
                    "uptime": np.arange(n_steps) * 60.0,
                    "restart": 0,
                    "label": (rng.random(n_steps) < 0.05).astype(float),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_time_split_never_trains_on_later_rows_and_stats_come_from_train_only():
    frame = _long_frame()
    m = ServerMetrics(
        frame=frame, features=("cpu", "memory", "diskio"), gaps=None, freq=pd.Timedelta("1min"), horizon=10
    )
    s = split_by_time(m, val=0.25, test=0.25)
    assert s.train.frame["timestamp"].max() < s.val.frame["timestamp"].min()
    assert s.val.frame["timestamp"].max() < s.test.frame["timestamp"].min()
    # The horizon (10 steps) before each cut is dropped so no training label looks into validation.
    gap = s.val.frame["timestamp"].min() - s.train.frame["timestamp"].max()
    assert gap > pd.Timedelta("10min")
    # Poison the test period: the normaliser must not move.
    before, _ = s.normalized()
    poisoned = frame.copy()
    poisoned.loc[poisoned["timestamp"] >= s.test.frame["timestamp"].min(), "cpu"] = 1e9
    s2 = split_by_time(ServerMetrics(poisoned, m.features, None, m.freq, m.horizon), val=0.25, test=0.25)
    parts, norm = s2.normalized()
    train_cpu = frame.loc[frame["timestamp"] <= s.train.frame["timestamp"].max(), "cpu"].to_numpy()
    assert norm.mean[0] == pytest.approx(train_cpu.mean(), rel=1e-12)
    assert norm.std[0] == pytest.approx(train_cpu.std(), rel=1e-12)
    assert abs(parts.train.frame["cpu"].mean()) < 1e-9
    assert parts.test.frame["cpu"].min() > 1e6  # test rows standardised with train statistics


def test_group_split_puts_each_server_in_exactly_one_part():
    frame = _long_frame(n_servers=10)
    s = split_by_group(frame, val=0.2, test=0.3, seed=1)
    sets = [set(p["server"]) for p in s]
    assert sets[0].isdisjoint(sets[1]) and sets[0].isdisjoint(sets[2]) and sets[1].isdisjoint(sets[2])
    assert sorted(len(x) for x in sets) == [2, 3, 5]
    assert set().union(*sets) == set(frame["server"])


def test_group_split_rejects_unknown_and_overlapping_groups():
    frame = _long_frame(n_servers=4)
    with pytest.raises(DataError, match="argument `val`: received 'nope'"):
        split_by_group(frame, val=["nope"], test=["s1"])
    with pytest.raises(DataError, match="argument `val`: received 's1'; expected a group id not already"):
        split_by_group(frame, val=["s1"], test=["s1"])
    with pytest.raises(KerafineError, match="argument `test`: received 1.5"):
        split_by_group(frame, val=0.2, test=1.5)


def test_normalizer_round_trips_through_a_dict():
    n = Normalizer.fit(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [5.0, 5.0, 5.0]}))
    assert n.std[1] == 1.0  # a constant column is left unscaled rather than divided by zero
    back = Normalizer.from_dict(n.to_dict())
    assert back.columns == n.columns and np.array_equal(back.mean, n.mean) and np.array_equal(back.std, n.std)


def test_server_metrics_and_the_package_re_export_the_split_names():
    import kerafine.data
    from kerafine.data import server_metrics, splits

    for name in ("Splits", "Normalizer", "split_by_time", "split_by_group"):
        assert getattr(server_metrics, name) is getattr(splits, name)
        assert getattr(kerafine.data, name) is getattr(splits, name)


@pytest.mark.parametrize("val", [0, 1.0, -0.1, float("nan"), True, "0.2"])
def test_time_split_rejects_fractions_outside_zero_one(val):
    frame = _long_frame(n_servers=1, n_steps=20)
    with pytest.raises(
        KerafineError, match=r"argument `val`: received .*; expected a fraction strictly between 0 and 1"
    ):
        split_by_time(frame, val=val, test=0.2)


def test_normalized_leaves_no_feature_raw_including_an_added_uptime():
    m = ServerMetrics(
        frame=_long_frame(), features=("cpu", "memory", "diskio"), gaps=None, freq=pd.Timedelta("1min"), horizon=10
    )
    parts, norm = split_by_time(m, val=0.25, test=0.25).normalized()
    assert "uptime" in norm.columns and not {"segment", "restart", "label"} & set(norm.columns)
    # Uptime (up to ~1.2e4 s here) added as a model input reads standardised, like the metrics.
    x, _ = parts.train.windows(5, features=(*m.features, "uptime"))
    assert np.abs(x).max() < 5
    np.testing.assert_allclose(x[:, -1, :].mean(axis=0), 0.0, atol=0.1)
    assert parts.test.frame["label"].isin([0.0, 1.0]).all()  # labels untouched
    with pytest.raises(DataError, match=r"`columns`: \['cpu'\] leaves the features \['memory', 'diskio'\] raw"):
        split_by_time(m, val=0.25, test=0.25).normalized(["cpu"])
