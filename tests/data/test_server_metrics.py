"""Tests of kerafine.data.server_metrics: loading, gaps, restarts, labels (splits: test_splits.py)."""

import numpy as np
import pandas as pd
import pytest

from kerafine.data.server_metrics import load_server_metrics
from kerafine.errors import DataError, KerafineError

T0 = pd.Timestamp("2024-05-01 00:00:00")


def _csv(tmp_path, name, server, steps, column, values, jitter=0):
    """A metric CSV: one row per (server, step), timestamps every 5 s plus `jitter` seconds."""
    rows = {
        "server": server,
        "timestamp": [str(T0 + pd.Timedelta(seconds=5 * s + jitter)) for s in steps],
        column: values,
    }
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
        tmp_path / "failures.csv", index=False
    )
    return {k: tmp_path / f"{k}.csv" for k in ("cpu", "memory", "diskio", "uptime", "failures")}


def test_loader_joins_fills_short_gaps_drops_long_ones_and_finds_restarts(fleet):
    m = load_server_metrics(**fleet, freq="5s", horizon=2, max_gap=3)
    f = m.frame
    assert m.features == ("cpu", "memory", "diskio")
    assert list(f.columns) == [
        "server",
        "timestamp",
        "segment",
        "cpu",
        "memory",
        "diskio",
        "uptime",
        "restart",
        "label",
    ]
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
    with pytest.raises(
        DataError,
        match=r"argument `memory`: .* has no column 'timestamp'; found columns "
        r"\['server', 'time', 'memory'\]",
    ):
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


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"freq": "often"}, "argument `freq`: received 'often'"),
        ({"horizon": 0}, "argument `horizon`: received 0; expected a positive int"),
        ({"max_gap": -1}, "argument `max_gap`: received -1"),
    ],
)
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
