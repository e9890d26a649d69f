"""DriftDetector: the statistical goals of the defaults, and every bad input."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kerafine.drift import DriftDetector, ReferenceProfile
from kerafine.errors import DataError, KerafineError

CATS = [50, 51, 52, 53, 54]
LEVEL_P = [0.4, 0.3, 0.15, 0.1, 0.05]


def _table(rng, n, shift=None, level_p=LEVEL_P):
    """50 continuous N(0, 1) features (+ shift) and 5 categorical ones coded 0..4."""
    x = np.empty((n, 55))
    x[:, :50] = rng.standard_normal((n, 50))
    if shift is not None:
        x[:, :50] += shift
    x[:, 50:] = rng.choice(5, size=(n, 5), p=level_p)
    return x


def test_false_alarm_rate_over_200_no_shift_checks_is_at_most_nominal():
    rng = np.random.default_rng(2024)
    alarms = {"bonferroni": 0, "fdr": 0}
    for _ in range(200):
        profile = ReferenceProfile.from_data(_table(rng, 1000), categorical=CATS)
        current = _table(rng, 250)
        for correction in alarms:
            alarms[correction] += DriftDetector(profile, correction=correction).check(current).is_drift
    # Nominal 5% is 10 of 200; 15 is the binomial 95% quantile at the nominal rate.
    assert alarms["bonferroni"] <= 15, alarms
    assert alarms["fdr"] <= 15, alarms


def test_power_for_a_02_sigma_shift_in_one_of_50_features_with_5000_rows():
    rng = np.random.default_rng(7)
    shift = np.zeros(50)
    shift[17] = 0.2
    hits, right_feature = 0, 0
    reps = 20
    for _ in range(reps):
        detector = DriftDetector(_table(rng, 20000), categorical=CATS)
        report = detector.check(_table(rng, 5000, shift))
        hits += report.is_drift
        right_feature += report.drifted_features == ["f17"]
    assert hits / reps >= 0.9
    assert right_feature >= 0.9 * reps


def test_large_samples_with_a_001_sigma_shift_do_not_alarm_but_would_without_the_effect_floor():
    rng = np.random.default_rng(11)
    report = DriftDetector(rng.standard_normal((200_000, 50))).check(rng.standard_normal((100_000, 50)) + 0.01)
    assert not report.is_drift and report.n_drifted == 0
    assert max(f.effect for f in report.features) < 0.02
    # A 0.05-sigma shift is highly significant at this size (z > 5) yet below the
    # floor (KS distance 0.02 < 0.05): the floor, not a lack of power, keeps quiet.
    profile = ReferenceProfile.from_data(rng.standard_normal((200_000, 5)), max_samples=200_000)
    current = rng.standard_normal((100_000, 5)) + 0.05
    assert not DriftDetector(profile).check(current).is_drift
    no_floor = DriftDetector(profile, min_effect=0.0).check(current)
    assert no_floor.n_drifted == 5 and max(f.p_value_adjusted for f in no_floor.features) < 1e-4


def test_categorical_frequency_change_is_detected_and_stable_levels_are_not():
    rng = np.random.default_rng(3)
    levels = np.array(["eu", "us", "asia", "other"])
    ref = pd.DataFrame({"region": rng.choice(levels, 5000, p=[0.4, 0.3, 0.2, 0.1]), "x": rng.normal(size=5000)})
    same = pd.DataFrame({"region": rng.choice(levels, 1000, p=[0.4, 0.3, 0.2, 0.1]), "x": rng.normal(size=1000)})
    moved = pd.DataFrame({"region": rng.choice(levels, 1000, p=[0.3, 0.3, 0.2, 0.2]), "x": rng.normal(size=1000)})
    detector = DriftDetector(ref)
    assert not detector.check(same).is_drift
    report = detector.check(moved)
    assert report.drifted_features == ["region"]
    feat = report["region"]
    assert feat.kind == "categorical" and feat.method == "chi2"
    assert feat.effect == pytest.approx(0.1, abs=0.04)  # total variation: 10 points moved
    counts = [
        [(ref.region == lv).sum() for lv in sorted(levels)],
        [(moved.region == lv).sum() for lv in sorted(levels)],
    ]
    assert feat.statistic == pytest.approx(stats.chi2_contingency(counts, correction=False).statistic, rel=1e-10)


def test_report_statistics_equal_scipy_on_the_reference_sample():
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(size=(300, 2)), rng.normal(0.3, 1.0, size=(200, 2))
    report = DriftDetector(ref).check(cur)
    for j, f in enumerate(report.features):
        expected = stats.ks_2samp(ref[:, j], cur[:, j])
        assert f.statistic == pytest.approx(expected.statistic, abs=1e-15)
        assert f.p_value == pytest.approx(expected.pvalue, rel=1e-9)  # exact, as scipy, at 300 x 200
        assert f.wasserstein == pytest.approx(
            stats.wasserstein_distance(ref[:, j], cur[:, j]) / ref[:, j].std(), rel=1e-10
        )
        assert f.p_value_adjusted == pytest.approx(min(1.0, 2 * f.p_value))


def test_fdr_finds_at_least_the_features_bonferroni_finds():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(4000, 20))
    cur = rng.normal(size=(1000, 20)) + np.r_[np.full(10, 0.12), np.zeros(10)]
    bonf = set(DriftDetector(ref, min_effect=0.0).check(cur).drifted_features)
    fdr = set(DriftDetector(ref, correction="fdr", min_effect=0.0).check(cur).drifted_features)
    assert bonf < fdr <= {f"f{i}" for i in range(10)}


def test_missing_values_are_counted_and_a_jump_in_their_share_is_its_own_signal():
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"a": rng.normal(size=4000), "b": rng.normal(size=4000)})
    ref.loc[:39, "b"] = np.nan  # 1% missing in the reference
    cur = pd.DataFrame({"a": rng.normal(size=1000), "b": rng.normal(size=1000)})
    cur.loc[:199, "a"] = np.nan  # 20% missing now
    cur.loc[:9, "b"] = np.inf  # non-finite counts as missing: 1%, as before
    report = DriftDetector(ref).check(cur)
    a, b = report["a"], report["b"]
    assert a.missing_drift and not a.value_drift and a.drifted
    assert a.missing_reference == 0.0 and a.missing_current == pytest.approx(0.2)
    assert a.n_current == 800 and a.missing_p_value < 1e-10
    assert not b.drifted and b.missing_current == pytest.approx(0.01) and b.missing_reference == pytest.approx(0.01)
    assert "missing 0.0% -> 20.0%" in report.summary()


def test_feature_with_too_few_non_missing_values_is_reported_not_tested():
    rng = np.random.default_rng(2)
    cur = rng.normal(size=(100, 2))
    cur[:95, 1] = np.nan
    report = DriftDetector(rng.normal(size=(500, 2))).check(cur)
    f = report["f1"]
    assert math.isnan(f.p_value) and "needs at least 10" in f.note and f.missing_drift


def test_unseen_categorical_levels_are_reported_and_count_as_shift():
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"device": rng.choice(["ios", "android"], 2000)})
    cur = pd.DataFrame({"device": np.r_[rng.choice(["ios", "android"], 900), ["kaios"] * 100]})
    f = DriftDetector(ref).check(cur)["device"]
    assert f.unseen_levels == ("kaios",) and f.unseen_share == pytest.approx(0.1)
    assert f.drifted and "never seen in the reference: 'kaios'" in f.note


def test_integer_codes_match_float_codes_of_the_same_levels():
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({"code": rng.integers(0, 3, 1000)})
    cur = pd.DataFrame({"code": rng.integers(0, 3, 300).astype(float)})
    cur.loc[0, "code"] = np.nan  # read back from a CSV, the column is float
    f = DriftDetector(ref, categorical=["code"]).check(cur)["code"]
    assert f.unseen_levels == () and not f.drifted


def test_constant_reference_feature_warns_and_flags_only_a_real_change():
    rng = np.random.default_rng(8)
    ref = np.c_[rng.normal(size=1000), np.full(1000, 3.0)]
    with pytest.warns(UserWarning, match=r"\['f1'\] are constant in the reference"):
        detector = DriftDetector(ref)
    still = detector.check(np.c_[rng.normal(size=300), np.full(300, 3.0)])
    assert not still.is_drift and "constant in the reference" in still["f1"].note
    changed = np.c_[rng.normal(size=300), np.where(rng.random(300) < 0.2, 4.0, 3.0)]
    f = detector.check(changed)["f1"]
    assert f.drifted and f.effect == pytest.approx(0.2, abs=0.06)


def test_distance_methods_use_their_threshold():
    rng = np.random.default_rng(10)
    ref = rng.normal(size=(5000, 2))
    cur = rng.normal(size=(2000, 2)) + [0.5, 0.02]
    for method in ("psi", "jensenshannon", "wasserstein"):
        report = DriftDetector(ref, method=method).check(cur)
        assert report.drifted_features == ["f0"], method
        # Significant against the bootstrap null; under the cut no draw is made (p-value 1).
        assert report["f0"].p_value_adjusted <= 0.05 and report["f0"].method == method
        assert report["f1"].p_value == 1.0
    strict = DriftDetector(ref, method="wasserstein", threshold=0.6).check(cur)
    assert not strict.is_drift


def test_share_threshold_sets_the_dataset_verdict():
    rng = np.random.default_rng(12)
    ref = rng.normal(size=(2000, 4))
    cur = rng.normal(size=(500, 4)) + [1.0, 0, 0, 0]
    report = DriftDetector(ref, share_threshold=0.5).check(cur)
    assert report.n_drifted == 1 and report.drift_share == 0.25 and not report.is_drift
    assert DriftDetector(ref).check(cur).is_drift


def test_columns_are_matched_by_name_in_any_order():
    rng = np.random.default_rng(13)
    ref = pd.DataFrame(rng.normal(size=(500, 3)), columns=["a", "b", "c"])
    cur = pd.DataFrame(rng.normal(size=(200, 3)) + [0, 0, 1.0], columns=["a", "b", "c"])[["c", "a", "b"]]
    assert DriftDetector(ref).check(cur).drifted_features == ["c"]


def test_column_mismatch_names_missing_and_extra_columns():
    rng = np.random.default_rng(0)
    detector = DriftDetector(pd.DataFrame(rng.normal(size=(100, 3)), columns=["a", "b", "c"]))
    cur = pd.DataFrame(rng.normal(size=(50, 3)), columns=["a", "c", "z"])
    with pytest.raises(DataError, match=r"missing \['b'\]; extra \['z'\]"):
        detector.check(cur)
    with pytest.raises(DataError, match="it has 2 features but the reference has 3"):
        detector.check(rng.normal(size=(50, 2)))


def test_too_few_rows_names_the_test_and_the_minimum():
    rng = np.random.default_rng(0)
    detector = DriftDetector(rng.normal(size=(100, 2)))
    with pytest.raises(
        DataError, match="it has 5 rows; the Kolmogorov-Smirnov test of the continuous features needs at least 10"
    ):
        detector.check(rng.normal(size=(5, 2)))
    cat = DriftDetector(pd.DataFrame({"k": rng.choice(["a", "b"], 100)}))
    with pytest.raises(DataError, match="chi-squared test of the categorical features needs at least 10"):
        cat.check(pd.DataFrame({"k": ["a"] * 4}))


def test_non_numeric_values_in_a_continuous_column_are_refused():
    rng = np.random.default_rng(0)
    detector = DriftDetector(pd.DataFrame({"a": rng.normal(size=100)}))
    with pytest.raises(DataError, match="column 'a' is continuous in the reference but holds non-numeric values"):
        detector.check(pd.DataFrame({"a": ["x"] * 20}))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "kss"}, r'`method`: received \'kss\'.*Did you mean "ks"'),
        ({"correction": "holm"}, "`correction`: received 'holm'"),
        ({"p_value": 0.0}, r"`p_value`: received 0.0; expected a float in \(0, 1\)"),
        ({"min_effect": 1.5}, r"`min_effect`: received 1.5; expected a float in \[0, 1\)"),
        ({"share_threshold": -0.1}, "`share_threshold`: received -0.1"),
        ({"threshold": 0.2}, "`threshold`: received 0.2; expected None with method='auto'"),
        ({"method": "psi", "threshold": 0}, "`threshold`: received 0; expected None or a positive float"),
    ],
)
def test_bad_arguments_raise_before_any_work(kwargs, match):
    with pytest.raises(KerafineError, match=match):
        DriftDetector(np.zeros((20, 2)) + np.arange(20)[:, None], **kwargs)


def test_profile_fixes_categorical_so_passing_it_again_is_an_error():
    rng = np.random.default_rng(0)
    profile = ReferenceProfile.from_data(rng.normal(size=(50, 2)))
    with pytest.raises(
        KerafineError, match="`categorical`: received \\['f0'\\]; expected None when `reference` is a ReferenceProfile"
    ):
        DriftDetector(profile, categorical=["f0"])


def test_check_does_not_warn_on_clean_data():
    rng = np.random.default_rng(0)
    detector = DriftDetector(rng.normal(size=(500, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detector.check(rng.normal(size=(100, 3)))


@pytest.mark.parametrize("method", ["psi", "jensenshannon", "wasserstein"])
def test_distance_rules_hold_the_tests_false_alarm_rate_on_a_small_reference(method):
    # A stationary week against a 300-row reference: 20 references x 7 daily checks of
    # 10 unchanged features. A bare cut (PSI/JS/Wasserstein >= 0.1) flags half or more of
    # the features at these sizes; calibrated, a check alarms at about the nominal 5%
    # (Bonferroni over the features), like the KS tests.
    alarms = flagged = checks = 0
    for seed in range(20):
        rng = np.random.default_rng(1000 + seed)
        detector = DriftDetector(rng.normal(size=(300, 10)), method=method)
        for _day in range(7):
            report = detector.check(rng.normal(size=(300, 10)))
            alarms += report.is_drift
            flagged += report.n_drifted
            checks += 1
    # 140 checks at a 5% alarm rate: 7 expected; P(Binomial(140, 0.05) >= 16) < 0.001.
    assert alarms < 16, (method, alarms)
    assert flagged / (checks * 10) < 0.015
    # ... and a real shift is still found at this size.
    found = 0
    for seed in range(10):
        rng = np.random.default_rng(2000 + seed)
        cur = rng.normal(size=(300, 10))
        cur[:, 3] += 0.6
        found += DriftDetector(rng.normal(size=(300, 10)), method=method).check(cur).drifted_features == ["f3"]
    assert found >= 7, (method, found)


def test_distance_rule_reports_are_reproducible_and_seeded():
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) + [0.3, 0, 0]
    a = DriftDetector(ref, method="psi").check(cur)
    b = DriftDetector(ref, method="psi").check(cur)
    assert [f.p_value for f in a.features] == [f.p_value for f in b.features]
    with pytest.raises(KerafineError, match="`seed`.*-1"):
        DriftDetector(ref, method="psi", seed=-1)


# ----------------------------------------------------------- non-finite values (issue 19)


def test_nan_and_inf_rows_are_reported_and_never_enter_the_value_statistics():
    rng = np.random.default_rng(11)
    ref = rng.normal(size=(2000, 2))
    cur = rng.normal(size=(400, 2))
    dirty = cur.copy()
    dirty[[3, 50, 51], 0] = np.nan
    dirty[[7, 399], 1] = np.inf
    dirty[9, 1] = -np.inf
    det = DriftDetector(ref)
    report = det.check(dirty)
    assert report.nonfinite_current_rows == 6
    assert report.nonfinite_first_rows == (3, 7, 9, 50, 51)
    assert report.summary().endswith(
        "; 6 of 400 current rows hold NaN or inf (first rows [3, 7, 9, 50, 51, ...]): left out of the value "
        "tests, counted as missing"
    )
    assert report.to_dict()["nonfinite_current_rows"] == 6 and "6 of 400 current rows" in report._repr_html_()
    # The value statistics equal those of the finite values alone (nothing non-finite was fed to them).
    f0 = det.check(np.column_stack([np.delete(cur[:, 0], [3, 50, 51]), np.delete(cur[:, 1], [3, 50, 51])]))["f0"]
    assert report["f0"].statistic == f0.statistic and report["f0"].n_current == 397
    assert report["f1"].n_current == 397 and report["f1"].missing_current == pytest.approx(3 / 400)


def test_nan_in_a_dataframe_column_is_reported_and_a_clean_check_says_nothing():
    rng = np.random.default_rng(12)
    ref = pd.DataFrame({"a": rng.normal(size=1000), "b": rng.normal(size=1000)})
    cur = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    det = DriftDetector(ref)
    clean = det.check(cur)
    assert clean.nonfinite_current_rows == 0 and "NaN" not in clean.summary()
    cur.loc[[10, 20], "b"] = np.nan
    assert det.check(cur).nonfinite_current_rows == 2
