"""InputGuard: the four rules, the margin, filter, bad input; importable without TensorFlow."""

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from kerafine.drift import ReferenceProfile
from kerafine.errors import DataError, KerafineError
from kerafine.security import InputGuard


@pytest.fixture(scope="module")
def profile():
    train = pd.DataFrame(
        {
            "cpu": np.linspace(0.0, 100.0, 101),
            "memory": np.r_[np.linspace(10.0, 20.0, 100), np.nan],  # training had a missing memory value
            "region": ["eu", "us", "asia"] * 33 + ["eu", "us"],
        }
    )
    return ReferenceProfile.from_data(train)


def test_each_rule_flags_the_rows_that_break_it(profile):
    guard = InputGuard(profile, margin=0.1)  # cpu accepted in [-10, 110], memory in [9, 21]
    batch = pd.DataFrame(
        {
            "cpu": [50.0, 110.0, 110.5, -10.5, None, 20.0, "high"],
            "memory": [15.0, 21.0, 15.0, 15.0, 15.0, None, 15.0],
            "region": ["eu", "us", "asia", "mars", "eu", "eu", None],
        }
    )
    report = guard.check(batch)
    rows = {(r.row, r.column, r.rule) for r in report.violations.itertuples()}
    assert rows == {
        (2, "cpu", "out_of_range"),
        (3, "cpu", "out_of_range"),
        (3, "region", "unseen_category"),
        (4, "cpu", "missing"),
        (6, "cpu", "dtype"),
        (6, "region", "missing"),
    }
    # Row 1 sits exactly on the widened bounds; row 5's memory is missing but training had missing memory.
    assert report.rejected_rows.tolist() == [2, 3, 4, 6] and not report.ok
    assert report.counts() == {"out_of_range": 2, "unseen_category": 1, "missing": 2, "dtype": 1}
    assert guard.range_of("cpu") == pytest.approx((-10.0, 110.0))
    assert "4 of 7 rows violate a rule" in str(report)
    assert report.to_dict()["n_rejected"] == 4


def test_margin_widens_the_training_range(profile):
    batch = pd.DataFrame({"cpu": [104.0], "memory": [15.0], "region": ["eu"]})
    assert not InputGuard(profile, margin=0.0).check(batch).ok
    assert InputGuard(profile, margin=0.05).check(batch).ok


def test_filter_splits_rows_with_reasons_and_keeps_the_index(profile):
    guard = InputGuard(profile, margin=0.0)
    batch = pd.DataFrame(
        {"region": ["eu", "mars", "us"], "cpu": [1.0, 2.0, 300.0], "memory": [12.0, 12.0, 12.0]}, index=[10, 11, 12]
    )  # columns in another order are fine
    result = guard.filter(batch)
    assert result.accepted.index.tolist() == [10] and result.rejected.index.tolist() == [11, 12]
    assert result.reasons.to_dict() == {
        11: "region: unseen_category (mars)",
        12: "cpu: out_of_range (300 outside [0, 100])",
    }


def test_arrays_and_dicts_are_checked_in_the_profile_order():
    prof = ReferenceProfile.from_data(np.arange(40.0).reshape(20, 2), feature_names=["a", "b"])
    guard = InputGuard(prof, margin=0.0)
    result = guard.filter(np.array([[0.0, 1.0], [50.0, 1.0]]))
    assert result.accepted.tolist() == [[0.0, 1.0]] and result.rejected.tolist() == [[50.0, 1.0]]
    out = guard.filter({"a": np.array([0.0, 2.0]), "b": np.array([1.0, -5.0])})
    assert out.accepted["a"].tolist() == [0.0] and out.report.rejected_rows.tolist() == [1]


def test_a_batch_with_other_columns_is_refused_as_a_whole(profile):
    guard = InputGuard(profile)
    extra = pd.DataFrame({"cpu": [1.0], "memory": [12.0], "region": ["eu"], "disk": [3.0]})
    with pytest.raises(
        DataError, match=r"argument `batch`.*other columns than the model was trained on \(not in training \['disk'\]\)"
    ):
        guard.check(extra)
    with pytest.raises(DataError, match=r"argument `batch`.*\(missing \['region'\]\)"):
        guard.filter(pd.DataFrame({"cpu": [1.0], "memory": [12.0]}))
    with pytest.raises(DataError, match=r"argument `batch`: received 'an array of shape \(2, 2\)'"):
        guard.check(np.zeros((2, 2)))


def test_bad_constructor_arguments(profile):
    with pytest.raises(
        KerafineError, match=r"argument `profile`: received 'DataFrame'; expected a kerafine.drift.ReferenceProfile"
    ):
        InputGuard(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(KerafineError, match=r"argument `margin`: received -0.1"):
        InputGuard(profile, margin=-0.1)
    with pytest.raises(KerafineError, match=r"argument `rules`"):
        InputGuard(profile, rules=["out_of_range", "spelling"])
    only_range = InputGuard(profile, rules="out_of_range")
    assert only_range.check(pd.DataFrame({"cpu": [None], "memory": [12.0], "region": ["mars"]})).ok


def test_the_guard_imports_and_runs_without_tensorflow():
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from kerafine.drift import ReferenceProfile
        from kerafine.security import InputGuard
        InputGuard(ReferenceProfile.from_data(np.arange(20.0)[:, None])).filter(np.array([[3.0], [99.0]]))
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
