"""Tests of kerafine.data.server_metrics: loading, gaps, restarts, labels, leak-free splits."""

import numpy as np
import pandas as pd
import pytest

from kerafine.data.server_metrics import (
    Normalizer,
    load_server_metrics,
    split_by_group,
    split_by_time,
)
from kerafine.errors import DataError, KerafineError

T0 = pd.Timestamp("2024-05-01 00:00:00")


def _csv(tmp_path, name, server, steps, column, values, jitter=0):
    """A metric CSV: one row per (server, step), timestamps every 5 s plus `jitter` seconds."""
    rows = {"server": server, "timestamp": [str(T0 + pd.Timedelta(seconds=5 * s + jitter)) for s in steps],
            column: values}
    path = tmp_path / f"{name}.csv"
    df = pd.DataFrame(rows)
    if path.exists():
        df = pd.concat([pd.read_csv(path), df])
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def fleet(tmp_path):
    """Two servers, 13 steps of 5 s each, with a short gap, a long gap, a restart and one failure."""
    steps = list(range(13))
    for server in ("a", "b"):
        cpu_steps = [s for s in steps if not (server == "a" and s == 4)]  # one missing sample: short gap
        _csv(tmp_path, "cpu", server, cpu_steps, "cpu", [10.0 + s for s in cpu_steps], jitter=1)
        mem_steps = [s for s in steps if not (server == "a" and 7 <= s <= 11)]  # 5 missing: long gap
        _csv(tmp_path, "memory", server, mem_steps, "memory", [50.0 + s for s in mem_steps], jitter=2)
        _csv(tmp_path, "diskio", server, steps, "diskio", [1.0] * 13)
        if server == "b":
            up = [100 + 5 * s for s in range(6)] + [2 + 5 * s for s in range(7)]  # reboot before step 6
        else:
            up = [1000 + 5 * s for s in steps]
        _csv(tmp_path, "uptime", server, steps, "uptime", up, jitter=3)
    pd.DataFrame({"server": ["b"], "timestamp": [str(T0 + pd.Timedelta(seconds=40))]}).to_csv(
        tmp_path / "failures.csv", index=False)
    return {k: tmp_path / f"{k}.csv" for k in ("cpu", "memory", "diskio", "uptime", "failures")}


def test_loader_joins_fills_short_gaps_drops_long_ones_and_finds_restarts(fleet):
    m = load_server_metrics(**fleet, freq="5s", horizon=2, max_gap=3)
    f = m.frame
    assert m.features == ("cpu", "memory", "diskio")
    assert list(f.columns) == ["server", "timestamp", "segment", "cpu", "memory", "diskio", "uptime", "restart",
                               "label"]
    a, b = f[f.server == "a"], f[f.server == "b"]
    # Server a: steps 7..11 of memory missing (5 > max_gap) are dropped; step 12 starts a new segment.
    assert a["timestamp"].tolist() == [T0 + pd.Timedelta(seconds=5 * s) for s in [0, 1, 2, 3, 4, 5, 6, 12]]
    assert a["segment"].nunique() == 2 and a["segment"].iloc[-1] != a["segment"].iloc[0]
    # The missing CPU sample at step 4 is interpolated between steps 3 and 5.
    assert a["cpu"].tolist()[:7] == [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    assert len(b) == 13 and b["segment"].nunique() == 1
    assert m.gaps.to_dict("records") == [
        {"server": "a", "start": T0 + pd.Timedelta(seconds=35), "end": T0 + pd.Timedelta(seconds=55), "steps": 5}
    ]
    # Restart: uptime drops at step 6 of server b only.
    assert m.restarts.to_dict("records") == [{"server": "b", "timestamp": T0 + pd.Timedelta(seconds=30)}]
    # Label: failure of b at 40 s, horizon 2 steps (10 s): rows at 30 s and 35 s are positive.
    assert b["label"].tolist()[:11] == [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    # The last 10 s of each record cannot be labelled (the future is not observed).
    assert b["label"].iloc[11:].isna().all() and np.isnan(a["label"].iloc[-1])


def test_windows_stay_inside_segments_and_drop_unknown_labels(fleet):
    m = load_server_metrics(**fleet, freq="5s", horizon=2, max_gap=3)
    with pytest.warns(UserWarning, match="shorter than 3 rows"):
        x, y, servers = m.windows(3, return_servers=True)
    # a: segment of 7 rows -> 5 windows (the 1-row segment gives none); b: 13 rows -> 11 windows,
    # minus those ending on the 2 unlabelled rows.
    assert (servers == "a").sum() == 5 and (servers == "b").sum() == 9
    assert x.shape == (14, 3, 3)
    assert y[servers == "b"].tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0]


def test_timestamps_may_be_epoch_seconds(tmp_path, fleet):
    df = pd.read_csv(fleet["cpu"])
    df["timestamp"] = (pd.to_datetime(df["timestamp"]) - pd.Timestamp("1970-01-01")) // pd.Timedelta("1s")
    df.to_csv(fleet["cpu"], index=False)
    m = load_server_metrics(**fleet, freq="5s", horizon=2)
    assert m.frame["timestamp"].min() == T0


def test_missing_column_is_named_with_the_columns_found(fleet):
    df = pd.read_csv(fleet["memory"]).rename(columns={"timestamp": "time"})
    df.to_csv(fleet["memory"], index=False)
    with pytest.raises(DataError, match=r"argument `memory`: .* has no column 'timestamp'; found columns "
                                        r"\['server', 'time', 'memory'\]"):
        load_server_metrics(**fleet, freq="5s")


def test_unparseable_timestamp_is_reported_with_its_row(fleet):
    df = pd.read_csv(fleet["diskio"])
    df.loc[3, "timestamp"] = "yesterday-ish"
    df.to_csv(fleet["diskio"], index=False)
    with pytest.raises(DataError, match=r"argument `diskio`: .* unparseable timestamp .* row 3: 'yesterday-ish'"):
        load_server_metrics(**fleet, freq="5s")


def test_non_monotonic_timestamps_per_server_are_rejected(fleet):
    df = pd.read_csv(fleet["uptime"])
    df.iloc[[4, 5]] = df.iloc[[5, 4]].to_numpy()
    df.to_csv(fleet["uptime"], index=False)
    with pytest.raises(DataError, match=r"timestamps of server 'a' .* are not increasing at row 5"):
        load_server_metrics(**fleet, freq="5s")


def test_duplicate_timestamps_are_rejected(fleet):
    df = pd.read_csv(fleet["cpu"])
    df.loc[2, "timestamp"] = df.loc[1, "timestamp"]
    df.to_csv(fleet["cpu"], index=False)
    with pytest.raises(DataError, match="not increasing at row 2"):
        load_server_metrics(**fleet, freq="5s")


def test_server_with_fewer_samples_than_a_window_is_named(fleet):
    m = load_server_metrics(**fleet, freq="5s", horizon=2)
    with pytest.raises(DataError, match=r"Server 'a' has 7 consecutive samples, fewer than one window \(window=8"):
        m.windows(8)


@pytest.mark.parametrize("kwargs, match", [
    ({"freq": "often"}, "argument `freq`: received 'often'"),
    ({"horizon": 0}, "argument `horizon`: received 0; expected a positive int"),
    ({"max_gap": -1}, "argument `max_gap`: received -1"),
])
def test_bad_loader_arguments(fleet, kwargs, match):
    with pytest.raises(KerafineError, match=match):
        load_server_metrics(**fleet, **kwargs)


@pytest.mark.parametrize("window", [0, -3])
def test_window_not_positive_is_rejected(fleet, window):
    m = load_server_metrics(**fleet, freq="5s", horizon=2)
    with pytest.raises(KerafineError, match=f"argument `window`: received {window}"):
        m.windows(window)
    with pytest.raises(KerafineError, match="argument `horizon`: received 0"):
        m.forecast_windows(3, horizon=0)


def _long_frame(n_servers=3, n_steps=200, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_servers):
        t = pd.date_range("2024-01-01", periods=n_steps, freq="1min")
        rows.append(pd.DataFrame({"server": f"s{s}", "timestamp": t, "segment": s,
                                  "cpu": rng.normal(50, 5, n_steps), "memory": rng.normal(30, 3, n_steps),
                                  "diskio": rng.normal(10, 1, n_steps), "uptime": np.arange(n_steps) * 60.0,
                                  "restart": 0, "label": (rng.random(n_steps) < 0.05).astype(float)}))
    return pd.concat(rows, ignore_index=True)


def test_time_split_never_trains_on_later_rows_and_stats_come_from_train_only():
    from kerafine.data.server_metrics import ServerMetrics

    frame = _long_frame()
    m = ServerMetrics(frame=frame, features=("cpu", "memory", "diskio"), gaps=None,
                      freq=pd.Timedelta("1min"), horizon=10)
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


def test_normalized_leaves_no_feature_raw_including_an_added_uptime():
    from kerafine.data.server_metrics import ServerMetrics

    m = ServerMetrics(frame=_long_frame(), features=("cpu", "memory", "diskio"), gaps=None,
                      freq=pd.Timedelta("1min"), horizon=10)
    parts, norm = split_by_time(m, val=0.25, test=0.25).normalized()
    assert "uptime" in norm.columns and not {"segment", "restart", "label"} & set(norm.columns)
    # Uptime (up to ~1.2e4 s here) added as a model input reads standardised, like the metrics.
    x, _ = parts.train.windows(5, features=(*m.features, "uptime"))
    assert np.abs(x).max() < 5
    np.testing.assert_allclose(x[:, -1, :].mean(axis=0), 0.0, atol=0.1)
    assert parts.test.frame["label"].isin([0.0, 1.0]).all()  # labels untouched
    with pytest.raises(DataError, match=r"`columns`: \['cpu'\] leaves the features \['memory', 'diskio'\] raw"):
        split_by_time(m, val=0.25, test=0.25).normalized(["cpu"])
