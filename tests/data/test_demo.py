"""Tests of the embedded demo data (kerafine.data.demo)."""

import numpy as np
import pandas as pd
import pytest

from kerafine.data.demo import generate_fleet, load_digits_task, simulate_fleet
from kerafine.data.server_metrics import load_server_metrics
from kerafine.errors import KerafineError


def test_same_seed_same_csv_bytes_and_other_seed_differs(tmp_path):
    a = generate_fleet(tmp_path / "a", "A", n_servers=2, n_steps=400, seed=5)
    b = generate_fleet(tmp_path / "b", "A", n_servers=2, n_steps=400, seed=5)
    c = generate_fleet(tmp_path / "c", "A", n_servers=2, n_steps=400, seed=6)
    assert all(a[k].read_bytes() == b[k].read_bytes() for k in a)
    assert a["cpu"].read_bytes() != c["cpu"].read_bytes()


def test_fleets_have_different_hardware_profiles():
    a = simulate_fleet("A", n_servers=6, n_steps=1440, seed=0)
    b = simulate_fleet("B", n_servers=6, n_steps=1440, seed=0)
    assert b["diskio"]["diskio"].median() > 3 * a["diskio"]["diskio"].median()
    assert b["cpu"]["cpu"].median() > a["cpu"]["cpu"].median() + 5


def test_fleet_c_is_fleet_b_shifted_enough_for_a_drift_alert():
    from kerafine.drift import DriftDetector

    b = simulate_fleet("B", n_servers=6, n_steps=1440, seed=0)
    c = simulate_fleet("C", n_servers=6, n_steps=1440, seed=0)
    assert c["cpu"]["cpu"].median() > b["cpu"]["cpu"].median() + 10  # hotter
    assert c["memory"]["memory"].median() > b["memory"]["memory"].median() + 10  # fuller
    assert c["diskio"]["diskio"].median() < 0.7 * b["diskio"]["diskio"].median()  # slower storage
    assert len(c["failures"]) > 0 and set(c["failures"]["precursor"]) <= {"memory_leak", "cpu_saturation", "io_stall"}
    # The same seed gives fleet C its own stream, not fleet B's values shifted.
    assert not np.allclose(
        c["cpu"]["cpu"].to_numpy()[:50] - b["cpu"]["cpu"].to_numpy()[:50],
        c["cpu"]["cpu"].to_numpy()[0] - b["cpu"]["cpu"].to_numpy()[0],
    )
    names = ["cpu", "memory", "diskio"]
    rows = lambda t: (
        t["cpu"].merge(t["memory"], on=["server", "timestamp"]).merge(t["diskio"], on=["server", "timestamp"])
    )
    report = DriftDetector(rows(b)[names].to_numpy(), feature_names=names).check(rows(c)[names].to_numpy())
    assert report.is_drift and {f.name for f in report.features if f.drifted} == set(names)


def test_failures_are_preceded_by_their_precursor_and_followed_by_a_reboot(tmp_path):
    paths = generate_fleet(tmp_path, "A", n_servers=12, n_steps=2880, seed=0)
    m = load_server_metrics(**paths, freq="1min", horizon=30)
    failures = pd.read_csv(paths["failures"], parse_dates=["timestamp"])
    assert set(failures["precursor"]) == {"memory_leak", "cpu_saturation", "io_stall"}
    f = m.frame.set_index(["server", "timestamp"])
    rises = {"memory_leak": [], "cpu_saturation": [], "io_stall": []}
    for row in failures.itertuples():
        s = f.loc[row.server]
        before = s[(s.index < row.timestamp) & (s.index >= row.timestamp - pd.Timedelta("20min"))]
        baseline = s[(s.index < row.timestamp - pd.Timedelta("3h")) & (s.index >= row.timestamp - pd.Timedelta("5h"))]
        if len(before) < 10 or len(baseline) < 60:
            continue
        column = {"memory_leak": "memory", "cpu_saturation": "cpu", "io_stall": "diskio"}[row.precursor]
        rises[row.precursor].append(before[column].mean() - baseline[column].mean())
        # The server comes back with a fresh uptime after the failure.
        after = s[(s.index > row.timestamp) & (s.index <= row.timestamp + pd.Timedelta("30min"))]
        assert after["restart"].sum() >= 1
    assert np.median(rises["memory_leak"]) > 15
    assert np.median(rises["cpu_saturation"]) > 15
    assert np.median(rises["io_stall"]) < -5


def test_missing_samples_and_jitter_exercise_the_loader(tmp_path):
    paths = generate_fleet(tmp_path, "B", n_servers=3, n_steps=1000, seed=2)
    cpu = pd.read_csv(paths["cpu"], parse_dates=["timestamp"])
    assert len(cpu) < 3 * 1000  # samples were dropped
    assert (cpu["timestamp"].dt.second != 0).any()  # and are off the grid
    m = load_server_metrics(**paths, freq="1min", horizon=30)
    assert m.frame.groupby("server").size().min() > 900


def test_digits_task_splits_classes_without_overlap():
    task = load_digits_task(pretrain_classes=(0, 1, 2), image_size=16)
    x, y = task["pretrain"]
    assert x.shape[1:] == (16, 16, 3) and set(y.tolist()) == {0, 1, 2}
    assert set(task["transfer_train"][1].tolist()) == set(range(7))
    assert 0.0 <= x.min() and x.max() <= 255.0
    n = sum(len(v[1]) for v in task.values())
    assert n == 1797  # every bundled digit used exactly once


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fleet": "D"}, "argument `fleet`"),
        ({"n_servers": 0}, "argument `n_servers`"),
    ],
)
def test_bad_fleet_arguments(kwargs, match):
    with pytest.raises(KerafineError, match=match):
        simulate_fleet(**kwargs)
