"""The `kerafine drift` command logic: exit status, table, JSON, profiles, bad input."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from kerafine.cli.drift import run
from kerafine.drift import ReferenceProfile


@pytest.fixture
def csvs(tmp_path):
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(
        {"cpu": rng.normal(size=3000), "mem": rng.normal(size=3000), "region": rng.choice([1, 2, 3], 3000)}
    )
    same = pd.DataFrame(
        {"cpu": rng.normal(size=800), "mem": rng.normal(size=800), "region": rng.choice([1, 2, 3], 800)}
    )
    moved = same.copy()
    moved["mem"] += 0.5
    moved["region"] = rng.choice([1, 2, 3], 800, p=[0.6, 0.2, 0.2])
    paths = {}
    for name, df in (("ref", ref), ("same", same), ("moved", moved)):
        paths[name] = str(tmp_path / f"{name}.csv")
        df.to_csv(paths[name], index=False)
    return paths


def _run(*args, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    status = run(*args, out=out, err=err, **kwargs)
    return status, out.getvalue(), err.getvalue()


def test_no_drift_exits_0_with_a_summary_line(csvs):
    status, out, err = _run(csvs["ref"], csvs["same"], categorical="region")
    assert (status, err) == (0, "")
    assert out.startswith("No drift: 0 of 3 features drifted")


def test_drift_exits_1_and_prints_a_table_of_drifted_columns(csvs, tmp_path):
    status, out, _ = _run(csvs["ref"], csvs["moved"], categorical="region", json_path=str(tmp_path / "r.json"))
    assert status == 1
    lines = out.splitlines()
    assert lines[0].startswith("Drift detected: 2 of 3 features drifted")
    assert lines[1].split()[:6] == ["feature", "kind", "method", "statistic", "p_adj", "effect"]
    # Most shifted first: 27 points of level share moved vs a KS distance near 0.2.
    assert [line.split()[0] for line in lines[2:]] == ["region", "mem"]
    assert lines[2].split()[1:3] == ["categorical", "chi2"]
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["is_drift"] and data["drifted_features"] == ["region", "mem"]


def test_saved_profile_can_be_the_reference(csvs, tmp_path):
    ReferenceProfile.from_data(pd.read_csv(csvs["ref"]), categorical=["region"]).save(tmp_path / "prof")
    assert _run(str(tmp_path / "prof"), csvs["moved"])[0] == 1
    assert _run(str(tmp_path / "prof"), csvs["same"])[0] == 0
    status, _, err = _run(str(tmp_path / "prof"), csvs["same"], categorical="cpu")
    assert status == 2 and "`--categorical`: received 'cpu'" in err


def test_bad_input_exits_2_with_a_message(csvs, tmp_path):
    status, out, err = _run(str(tmp_path / "missing.csv"), csvs["same"])
    assert (status, out) == (2, "") and "`--reference`" in err and "No such file" in err
    pd.DataFrame({"cpu": [1.0] * 20, "disk": [2.0] * 20}).to_csv(tmp_path / "other.csv", index=False)
    status, _, err = _run(csvs["ref"], str(tmp_path / "other.csv"))
    assert status == 2 and "missing ['mem', 'region']; extra ['disk']" in err
    status, _, err = _run(csvs["ref"], csvs["same"], categorical=" , ")
    assert status == 2 and "`--categorical`" in err
    (tmp_path / "empty.csv").write_text("")
    status, _, err = _run(csvs["ref"], str(tmp_path / "empty.csv"))
    assert status == 2 and "a readable CSV file" in err


def test_rows_with_nan_or_inf_are_counted_in_the_printed_summary_and_the_json(csvs, tmp_path):
    cur = pd.read_csv(csvs["same"])
    cur.loc[[4, 8], "cpu"] = np.inf
    cur.loc[15, "mem"] = np.nan
    path = tmp_path / "dirty.csv"
    cur.to_csv(path, index=False)
    status, out, _ = _run(csvs["ref"], str(path), categorical="region", json_path=str(tmp_path / "r.json"))
    assert "3 of 800 current rows hold NaN or inf (first rows [4, 8, 15])" in out.splitlines()[0]
    assert json.loads((tmp_path / "r.json").read_text())["nonfinite_current_rows"] == 3
