import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from kerafine.errors import DataError, KerafineError
from kerafine.metrics import (
    UndefinedMetricWarning,
    pr_auc,
    precision_recall_curve,
    ranking,
    roc_auc,
    roc_auc_ci,
    roc_curve,
)

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------ strategies


@st.composite
def binary_problems(draw, weighted=None):
    n = draw(st.integers(2, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.random(n) < draw(st.floats(0.05, 0.95))
    y[0], y[1] = True, False  # both classes present
    # A small grid of values gives many ties; a wide one almost none.
    grid = draw(st.sampled_from([2, 5, 1000]))
    scale = draw(st.sampled_from([1.0, 40.0]))  # 40: logits well outside [0, 1]
    s = (rng.integers(0, grid, n) / grid - 0.5) * scale
    if draw(st.booleans()):
        s = s.astype(np.float32)
    w = None
    if weighted if weighted is not None else draw(st.booleans()):
        w = rng.uniform(0.1, 10.0, n)
    return y.astype(int), s, w


@st.composite
def multiclass_problems(draw):
    k = draw(st.integers(3, 4))
    n = draw(st.integers(k + 2, 50))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class present, as scikit-learn requires
    raw = rng.integers(1, 4, size=(n, k)).astype(float)  # few distinct rows: ties
    s = raw / raw.sum(axis=1, keepdims=True)
    w = rng.uniform(0.1, 5.0, n) if draw(st.booleans()) else None
    return y, s, w


@st.composite
def multilabel_problems(draw):
    k = draw(st.integers(2, 4))
    n = draw(st.integers(4, 50))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = (rng.random((n, k)) < 0.4).astype(int)
    y[0], y[1] = 1, 0  # both classes in every column
    s = rng.integers(0, 6, size=(n, k)) / 5.0
    w = rng.uniform(0.1, 5.0, n) if draw(st.booleans()) else None
    return y, s, w


# ---------------------------------------------- equality with scikit-learn


@PROPERTY
@given(binary_problems())
def test_binary_roc_auc_equals_sklearn_with_ties_and_weights(problem):
    y, s, w = problem
    assert roc_auc(y, s, sample_weight=w) == pytest.approx(skm.roc_auc_score(y, s, sample_weight=w), abs=1e-12)


@PROPERTY
@given(binary_problems())
def test_binary_pr_auc_equals_sklearn_average_precision(problem):
    y, s, w = problem
    expected = skm.average_precision_score(y, s, sample_weight=w)
    assert pr_auc(y, s, sample_weight=w) == pytest.approx(expected, abs=1e-12)


@PROPERTY
@given(binary_problems())
def test_two_score_columns_give_the_binary_auc_for_each_class(problem):
    # One-hot of a binary problem with [1 - s, s] columns: class 1's AUC is the binary AUC.
    y, s, w = problem
    s = s.astype(np.float64)
    scores = np.stack([-s, s], axis=1)
    per_class = roc_auc(y, scores, sample_weight=w, average=None)
    assert per_class[1] == pytest.approx(skm.roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    assert per_class[0] == pytest.approx(per_class[1], abs=1e-12)


@PROPERTY
@given(multiclass_problems(), st.sampled_from(["macro", "weighted", None]))
def test_multiclass_ovr_equals_sklearn(problem, average):
    y, s, w = problem
    expected = skm.roc_auc_score(y, s, multi_class="ovr", average=average, sample_weight=w)
    np.testing.assert_allclose(roc_auc(y, s, sample_weight=w, average=average), expected, rtol=0, atol=1e-12)
    onehot = np.eye(s.shape[1], dtype=int)[y]
    expected_ap = skm.average_precision_score(onehot, s, average=average, sample_weight=w)
    np.testing.assert_allclose(pr_auc(y, s, sample_weight=w, average=average), expected_ap, rtol=0, atol=1e-12)


@PROPERTY
@given(multilabel_problems(), st.sampled_from(["macro", "weighted", None]))
def test_multilabel_equals_sklearn(problem, average):
    y, s, w = problem
    np.testing.assert_allclose(
        roc_auc(y, s, sample_weight=w, average=average),
        skm.roc_auc_score(y, s, average=average, sample_weight=w),
        rtol=0,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        pr_auc(y, s, sample_weight=w, average=average),
        skm.average_precision_score(y, s, average=average, sample_weight=w),
        rtol=0,
        atol=1e-12,
    )


@PROPERTY
@given(binary_problems())
def test_curves_equal_sklearn(problem):
    y, s, w = problem
    for ours, theirs in zip(roc_curve(y, s, sample_weight=w), skm.roc_curve(y, s, sample_weight=w)):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    for ours, theirs in zip(
        precision_recall_curve(y, s, sample_weight=w), skm.precision_recall_curve(y, s, sample_weight=w)
    ):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_inputs_take_the_radix_path_and_still_equal_sklearn(dtype):
    rng = np.random.default_rng(7)
    n = 3 * ranking._RADIX_MIN
    y = rng.random(n) < 0.1
    s = np.round(rng.normal(size=n) + y, 2).astype(dtype)  # heavy ties
    s[:4] = [-0.0, 0.0, -0.0, 0.0]  # the two zeros must tie
    w = rng.uniform(0.5, 2.0, n)
    order = ranking._argsort_desc(s)
    if dtype == np.float32:  # the radix pass: stable, as scikit-learn's sort
        np.testing.assert_array_equal(order, np.argsort(-s, kind="stable"))
    assert np.all(np.diff(s[order]) <= 0) and np.array_equal(np.sort(order), np.arange(n))
    assert roc_auc(y, s, sample_weight=w) == pytest.approx(skm.roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    assert pr_auc(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    # Rare negatives: the split path searches the other way round.
    assert roc_auc(~y, s) == pytest.approx(skm.roc_auc_score(~y, s), abs=1e-12)
    assert pr_auc(~y, s) == pytest.approx(skm.average_precision_score(~y, s), abs=1e-12)


def test_logits_give_the_same_auc_as_probabilities():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=6.0, size=500)
    y = rng.random(500) < 1 / (1 + np.exp(-logits))
    probabilities = 1 / (1 + np.exp(-logits))
    assert roc_auc(y, logits) == roc_auc(y, probabilities)
    assert pr_auc(y, logits) == pytest.approx(pr_auc(y, probabilities), abs=1e-15)


def test_column_vectors_from_a_sigmoid_model_are_accepted():
    y = np.array([[0.0], [1.0], [1.0], [0.0]], dtype=np.float32)
    s = np.array([[0.1], [0.9], [0.4], [0.5]], dtype=np.float32)
    assert roc_auc(y, s) == 0.75


def test_multiclass_labels_name_the_score_columns():
    y = np.array(["cat", "dog", "bird", "dog", "cat", "bird"])
    s = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.1, 0.5, 0.4], [0.5, 0.1, 0.4], [0.2, 0.2, 0.6]])
    ours = roc_auc(y, s, labels=["cat", "dog", "bird"], average=None)
    codes = np.array([{"cat": 0, "dog": 1, "bird": 2}[v] for v in y])
    np.testing.assert_allclose(ours, roc_auc(codes, s, average=None), atol=0)


# ---------------------------------------------------------------- DeLong

# The aSAH data set of the pROC R package (Turck et al., 2010, Intensive Care Medicine
# 36(1):107-115), 113 patients: outcome (G = good, P = poor) and two biomarkers.
#
# Used as a published worked example: pROC's documentation prints, for
# ``roc(aSAH$outcome, aSAH$s100b)``, "Area under the curve: 0.7314" and
# "95% CI: 0.6301-0.8326 (DeLong)"; for ndka "0.612" and "95% CI: 0.5012-0.7227
# (DeLong)" (pROC reference manual, ``pROC-package`` and ``ci.auc`` examples).
_ASAH_OUTCOME = (
    "GGGGPPGPGGPGPPGGPGPPPGPGGGGGGGGGPGGPPGPPGGGGGGGGGPPGGGPGGGPGPGGPPPGPPGPPPPGGGPPGPGGGGGGPGGGGGGGGGGGGPPPPPPGGGPGGG"
)
_ASAH_S100B = """
0.13 0.14 0.1 0.04 0.13 0.1 0.47 0.16 0.18 0.1 0.12 0.1 0.44 0.71 0.04 0.08 0.49 0.04
0.07 0.33 0.09 0.09 0.07 0.11 0.07 0.17 0.07 0.11 0.13 0.19 0.05 0.16 0.41 0.14 0.34
0.35 0.48 0.09 0.96 0.25 0.5 0.46 0.16 0.07 0.43 0.45 0.11 0.08 0.09 0.86 0.52 0.08 0.06
0.13 2.07 0.1 0.14 0.15 0.07 0.06 0.77 0.05 0.09 0.3 0.03 0.09 0.04 0.23 0.7 0.09 0.27
0.71 0.08 0.26 0.08 0.16 0.09 0.13 0.1 0.08 0.11 0.33 0.11 0.28 0.07 0.1 0.32 0.22 0.07
0.05 0.24 0.38 0.1 0.15 0.08 0.14 0.1 0.07 0.04 0.19 0.56 0.14 0.58 0.32 0.82 0.74 0.15
0.47 0.17 0.44 0.15 0.5 0.48
"""
_ASAH_NDKA = """
3.01 8.54 8.09 10.42 17.4 12.75 6.0 13.2 15.54 6.01 15.96 17.86 5.18 8.9 13.41 20.75
11.6 16.11 32.37 54.82 32.41 49.94 40.34 9.47 6.29 12.53 6.54 6.3 80.3 12.8 9.8 9.81
9.85 18.21 5.03 14.04 21.93 8.02 7.42 8.38 6.59 9.63 13.12 7.96 14.34 41.43 7.63 7.06
12.59 13.56 3.87 9.44 7.66 12.98 419.19 27.19 22.27 9.95 21.22 11.73 10.4 58.83 6.39
11.09 12.22 13.67 17.21 22.63 12.9 9.7 21.57 8.23 72.57 15.54 10.51 10.6 14.57 5.19 9.63
4.61 21.48 17.3 12.71 9.44 11.07 19.46 10.83 5.37 11.97 7.75 9.83 10.55 28.49 8.53 12.57
12.9 46.83 11.68 12.67 9.01 9.57 34.06 11.72 14.26 47.61 11.67 24.58 10.33 13.87 15.89
22.43 6.79 13.45
"""

POOR = np.array([c == "P" for c in _ASAH_OUTCOME])
S100B = np.array(_ASAH_S100B.split(), dtype=float)
NDKA = np.array(_ASAH_NDKA.split(), dtype=float)


def _brute_force_delong(y, s):
    """DeLong (1988) straight from the definition: the m x n kernel matrix."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size


@PROPERTY
@given(binary_problems(weighted=False))
def test_fast_delong_equals_the_quadratic_definition(problem):
    y, s, _ = problem
    if min(np.count_nonzero(y), np.count_nonzero(1 - y)) < 2:
        return
    auc, var = _brute_force_delong(y, s.astype(np.float64))
    ci = roc_auc_ci(y, s)
    assert ci.auc == pytest.approx(auc, abs=1e-12)
    assert ci.std_error**2 == pytest.approx(var, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    "marker, auc, lower, upper",
    [(S100B, 0.7314, 0.6301, 0.8326), (NDKA, 0.6120, 0.5012, 0.7227)],
)
def test_delong_interval_matches_proc_on_the_asah_worked_example(marker, auc, lower, upper):
    ci = roc_auc_ci(POOR, marker)
    assert (round(ci.auc, 4), round(ci.lower, 4), round(ci.upper, 4)) == (auc, lower, upper)


def test_delong_standard_error_matches_a_stratified_bootstrap():
    rng = np.random.default_rng(2024)
    y = rng.random(400) < 0.3
    s = np.round(rng.normal(size=400) + 1.2 * y, 1)
    ci = roc_auc_ci(y, s)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    boot = []
    for _ in range(1000):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        boot.append(roc_auc(y[idx], s[idx]))
    # The bootstrap SE of 1,500 replicates is itself uncertain by about 2%.
    assert ci.std_error == pytest.approx(np.std(boot, ddof=1), rel=0.1)


def test_weighted_delong_matches_a_weighted_bootstrap_and_reduces_to_delong():
    rng = np.random.default_rng(99)
    n = 400
    y = rng.random(n) < 0.4
    s = rng.normal(size=n) + y
    w = rng.lognormal(sigma=0.8, size=n)
    ci = roc_auc_ci(y, s, sample_weight=w)
    assert ci.auc == pytest.approx(skm.roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    boot = []
    for _ in range(1000):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        boot.append(roc_auc(y[idx], s[idx], sample_weight=w[idx]))
    assert ci.std_error == pytest.approx(np.std(boot, ddof=1), rel=0.1)
    # Scaling every weight changes nothing; equal weights give plain DeLong.
    assert roc_auc_ci(y, s, sample_weight=7 * w).std_error == pytest.approx(ci.std_error, rel=1e-12)
    plain = roc_auc_ci(y, s)
    equal = roc_auc_ci(y, s, sample_weight=np.full(n, 3.0))
    assert equal.std_error == pytest.approx(plain.std_error, rel=1e-12)
    assert (equal.lower, equal.upper) == pytest.approx((plain.lower, plain.upper), abs=1e-12)


def test_interval_level_widens_the_interval():
    narrow = roc_auc_ci(POOR, S100B, level=0.8)
    wide = roc_auc_ci(POOR, S100B, level=0.99)
    assert wide.lower < narrow.lower < narrow.auc < narrow.upper < wide.upper


# ------------------------------------------------------ undefined and bad


@pytest.mark.parametrize("metric", [roc_auc, pr_auc])
@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_single_class_warns_and_returns_nan(metric, labels):
    with pytest.warns(UndefinedMetricWarning, match="single class"):
        assert np.isnan(metric(labels, [0.2, 0.5, 0.9]))


def test_single_class_interval_is_all_nan():
    with pytest.warns(UndefinedMetricWarning):
        ci = roc_auc_ci([1, 1], [0.3, 0.4])
    assert np.isnan([ci.auc, ci.lower, ci.upper, ci.std_error]).all()


def test_a_missing_class_in_multiclass_gives_nan_for_that_class_only():
    y = [0, 1, 0, 1]
    s = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2]]
    # With `labels` naming every column (without it, an absent class raises: see below).
    with pytest.warns(UndefinedMetricWarning, match="class 2"):
        per_class = roc_auc(y, s, average=None, labels=[0, 1, 2])
    assert per_class[:2].tolist() == [1.0, 1.0] and np.isnan(per_class[2])


@pytest.mark.parametrize(
    "bad, message",
    [([np.nan, 0.2, np.nan, 0.1], "2 NaN value"), ([np.inf, 0.2, -np.inf, np.nan], "1 NaN and 2 infinite")],
)
def test_non_finite_scores_are_an_error_that_counts_them(bad, message):
    with pytest.raises(DataError, match=f"`y_score`: received {message}"):
        roc_auc([0, 1, 0, 1], bad)


def test_lengths_that_differ_are_an_error():
    with pytest.raises(DataError, match="3 scores for 4 labels"):
        roc_auc([0, 1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="`sample_weight`: received 2 weights"):
        roc_auc([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], sample_weight=[1, 2])


def test_score_columns_that_do_not_match_the_classes_are_an_error():
    with pytest.raises(DataError, match=r"labels \[3\] with 3 score columns.*do not match the classes"):
        roc_auc([0, 1, 3], np.eye(3))
    with pytest.raises(DataError, match=r"shape \(3, 2\).*one column per score column \(3\)"):
        roc_auc(np.eye(3)[:, :2], np.eye(3))
    with pytest.raises(DataError, match="one label per score column"):
        roc_auc([0, 1, 2], np.eye(3), labels=["a", "b"])
    with pytest.raises(DataError, match=r"labels \[0, 1, 2\] that are not in `labels`"):
        roc_auc([0, 1, 2], np.eye(3), labels=["a", "b", "c"])


def test_more_than_two_labels_with_one_dimensional_scores_is_an_error():
    with pytest.raises(DataError, match=r"3 distinct labels \[0, 1, 2\].*n_samples, n_classes"):
        roc_auc([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4])


def test_empty_input_is_an_error():
    with pytest.raises(DataError, match="0 samples"):
        roc_auc([], [])


@pytest.mark.parametrize("metric", [roc_auc, pr_auc])
def test_unknown_average_is_an_error(metric):
    with pytest.raises(KerafineError, match="`average`: received 'micro'"):
        metric([0, 1], [0.1, 0.2], average="micro")


def test_bad_weights_and_level_are_errors():
    with pytest.raises(DataError, match="1 negative or non-finite weight"):
        roc_auc([0, 1], [0.1, 0.2], sample_weight=[1.0, -1.0])
    with pytest.raises(KerafineError, match="`level`: received 1.5"):
        roc_auc_ci([0, 1], [0.1, 0.2], level=1.5)
    with pytest.raises(KerafineError, match="binary"):
        roc_auc_ci([0, 1, 2], np.eye(3))


def test_importing_metrics_does_not_import_tensorflow_or_keras():
    code = (
        "import sys, kerafine.metrics, kerafine.metrics.report; "
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------- single-class labels (issue 18, bug 1)


@pytest.mark.parametrize("negative", [0, -1, False])
def test_single_negative_class_is_read_as_all_negative(negative):
    # Regression: [0, 0, 0] was read as three positives (y == max(y)).
    y = np.full(3, negative)
    s = [0.2, 0.5, 0.9]
    with pytest.warns(UndefinedMetricWarning, match="no positive"):
        p, r, thr = precision_recall_curve(y, s)
    np.testing.assert_array_equal(p, [0.0, 0.0, 0.0, 1.0])  # scikit-learn's precision
    np.testing.assert_array_equal(thr, [0.2, 0.5, 0.9])
    with pytest.warns(UndefinedMetricWarning, match="no positive"):
        fpr, tpr, _ = roc_curve(y, s)
    # No positive: the false positive rate is defined, the true positive rate is not.
    np.testing.assert_allclose(fpr, [0.0, 1 / 3, 1.0])
    assert np.isnan(tpr).all()


def test_single_positive_class_is_read_as_all_positive():
    with pytest.warns(UndefinedMetricWarning, match="no negative"):
        fpr, tpr, _ = roc_curve([1, 1, 1], [0.2, 0.5, 0.9])
    assert np.isnan(fpr).all()
    np.testing.assert_allclose(tpr, [0.0, 1 / 3, 1.0])


@pytest.mark.parametrize("label", [2, 0.5, "spam"])
def test_single_ambiguous_label_raises(label):
    with pytest.raises(DataError, match=r"`y_true`: received a single label .*cannot tell whether it is the positive"):
        roc_auc([label] * 3, [0.2, 0.5, 0.9])


def test_bytes_labels_raise_as_sklearn():
    y = np.array([b"a", b"b", b"a", b"b"])
    for error in (DataError, TypeError):  # TypeError as scikit-learn's, DataError as every kerafine data error
        with pytest.raises(error, match=r"`y_true`: received labels of dtype \|S1 \(bytes\).*astype\(str\)"):
            roc_auc(y, [0.1, 0.4, 0.35, 0.8])
    with pytest.raises(TypeError, match="bytes"):  # the anchor rejects them too
        skm.roc_auc_score(y, [0.1, 0.4, 0.35, 0.8])


SCORES3 = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.4, 0.3], [0.6, 0.2, 0.2]])


@pytest.mark.parametrize("metric", [roc_auc, pr_auc])
def test_class_absent_from_multiclass_labels_raises_unless_labels_given(metric):
    y = np.array([0, 1, 1, 0])  # class 2 has a score column but no sample
    with pytest.raises(DataError, match=r"`y_true`: received labels without class\(es\) \[2\] for 3 score columns"):
        metric(y, SCORES3)
    with pytest.warns(UndefinedMetricWarning, match="class 2"):
        per_class = metric(y, SCORES3, labels=[0, 1, 2], average=None)
    assert np.isnan(per_class[2]) and np.isfinite(per_class[:2]).all()
