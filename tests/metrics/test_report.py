import dataclasses
import io
import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from kerafine.errors import DataError, KerafineError
from kerafine.metrics import UndefinedMetricWarning, classification_report, roc_auc_ci


@pytest.fixture
def binary():
    rng = np.random.default_rng(11)
    y = rng.random(400) < 0.25
    p = np.clip(0.25 + 0.35 * (y - 0.25) + rng.normal(0, 0.18, 400), 0, 1).round(2)  # ties
    w = rng.uniform(0.5, 2.0, 400)
    return y.astype(int), p, w


def test_threshold_metrics_equal_sklearn_at_the_chosen_threshold(binary):
    y, p, w = binary
    for weights in (None, w):
        r = classification_report(y, p, threshold=0.4, sample_weight=weights)
        pred = (p >= 0.4).astype(int)
        assert r.accuracy == pytest.approx(skm.accuracy_score(y, pred, sample_weight=weights), abs=1e-12)
        assert r.precision == pytest.approx(skm.precision_score(y, pred, sample_weight=weights), abs=1e-12)
        assert r.recall == pytest.approx(skm.recall_score(y, pred, sample_weight=weights), abs=1e-12)
        assert r.f1 == pytest.approx(skm.f1_score(y, pred, sample_weight=weights), abs=1e-12)
        np.testing.assert_allclose(r.confusion_matrix, skm.confusion_matrix(y, pred, sample_weight=weights), atol=1e-9)
        assert r.roc_auc == pytest.approx(skm.roc_auc_score(y, p, sample_weight=weights), abs=1e-12)
        assert r.pr_auc == pytest.approx(skm.average_precision_score(y, p, sample_weight=weights), abs=1e-12)
        assert r.roc_auc_interval == roc_auc_ci(y, p, sample_weight=weights)
        assert r.threshold_rule == "fixed"


def test_f1_rule_picks_the_threshold_with_the_best_f1(binary):
    y, p, _ = binary
    r = classification_report(y, p, threshold="f1")
    candidates = np.unique(p)
    f1s = np.array([skm.f1_score(y, (p >= t).astype(int)) for t in candidates])
    assert r.f1 == pytest.approx(f1s.max(), abs=1e-12)
    assert r.threshold == candidates[np.flatnonzero(f1s == f1s.max()).max()]  # highest among equals


def test_youden_rule_maximises_sensitivity_plus_specificity(binary):
    y, p, _ = binary
    r = classification_report(y, p, threshold="youden")
    fpr, tpr, thr = skm.roc_curve(y, p, drop_intermediate=False)
    j = tpr - fpr
    assert r.threshold == thr[np.argmax(j)]
    tn, fp, fn, tp = r.confusion_matrix.ravel()
    assert tp / (tp + fn) - fp / (fp + tn) == pytest.approx(j.max(), abs=1e-12)


def test_calibration_equals_sklearn_reliability_curve_and_ece_by_hand(binary):
    y, p, _ = binary
    r = classification_report(y, p, n_bins=8)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=8)
    np.testing.assert_allclose(r.calibration.fraction_positive, prob_true, atol=1e-12)
    np.testing.assert_allclose(r.calibration.mean_predicted, prob_pred, atol=1e-12)
    edges = np.linspace(0, 1, 9)
    ece = 0.0
    for lo, hi, first in zip(edges[:-1], edges[1:], [True] + [False] * 7):
        inside = ((p > lo) | (first & (p == lo))) & (p <= hi)
        if inside.any():
            ece += inside.sum() / p.size * abs(y[inside].mean() - p[inside].mean())
    assert r.calibration.ece == pytest.approx(ece, abs=1e-12)


def test_logits_have_no_calibration_but_all_else():
    y = np.array([0, 0, 1, 1, 0, 1])
    r = classification_report(y, [-3.0, 0.5, 0.2, 4.0, -1.0, 2.5])
    assert r.calibration is None and r.roc_auc == pytest.approx(8 / 9)
    assert "not probabilities" in str(r)


def test_multiclass_report_equals_sklearn():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    r = classification_report(np.array(["a", "b", "c"])[y], p, labels=["a", "b", "c"])
    pred = p.argmax(axis=1)
    assert r.kind == "multiclass" and r.threshold is None and r.classes == ["a", "b", "c"]
    assert r.accuracy == pytest.approx(skm.accuracy_score(y, pred))
    np.testing.assert_array_equal(r.confusion_matrix, skm.confusion_matrix(y, pred))
    prec, rec, f1, support = skm.precision_recall_fscore_support(y, pred)
    assert [row["f1"] for row in r.per_class] == pytest.approx(f1.tolist())
    assert r.precision == pytest.approx(prec.mean()) and r.recall == pytest.approx(rec.mean())
    assert r.roc_auc == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"), abs=1e-12)
    assert r.pr_auc == pytest.approx(skm.average_precision_score(np.eye(3)[y], p), abs=1e-12)
    assert r.calibration is not None and 0 <= r.calibration.ece <= 1


def test_report_serialises_renders_and_plots(binary):
    y, p, _ = binary
    r = classification_report(y, p)
    data = json.loads(r.to_json())
    assert data["roc_auc"] == pytest.approx(r.roc_auc) and data["confusion_matrix"] == r.confusion_matrix.tolist()
    assert data["roc_auc_interval"]["lower"] == pytest.approx(r.roc_auc_interval.lower)
    assert "roc_curve" not in data and len(r.to_dict(curves=True)["roc_curve"]) == 3
    html = r._repr_html_()
    assert html.count("<table>") == 2 and f"{r.roc_auc:.4f}" in html
    text = str(r)
    assert "ROC-AUC" in text and "DeLong" in text and str(r.confusion_matrix[1, 1]) in text
    fig = r.plot()
    assert len(fig.axes) >= 4
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.accuracy = 1.0


def test_to_json_writes_strict_json_with_nan_as_null(tmp_path):
    with pytest.warns(UndefinedMetricWarning):
        r = classification_report([1, 1, 1], [0.2, 0.6, 0.9], threshold=0.5)
    path = tmp_path / "report.json"
    text = r.to_json(path)
    assert "NaN" not in text and json.loads(path.read_text())["roc_auc"] is None
    assert r.accuracy == pytest.approx(2 / 3) and r.confusion_matrix.tolist() == [[2]]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"threshold": "best"}, KerafineError, "`threshold`: received 'best'"),
        ({"threshold": float("nan")}, KerafineError, "`threshold`"),
        ({"level": 0}, KerafineError, "`level`: received 0"),
        ({"n_bins": 0}, KerafineError, "`n_bins`: received 0"),
    ],
)
def test_bad_arguments_are_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        classification_report([0, 1], [0.2, 0.8], **kwargs)


def test_bad_inputs_are_errors():
    with pytest.raises(DataError, match="1 NaN value"):
        classification_report([0, 1], [np.nan, 0.8])
    with pytest.raises(DataError, match="multilabel"):
        classification_report([[1, 1], [0, 1], [1, 0]], [[0.2, 0.8], [0.1, 0.3], [0.6, 0.6]])
    with pytest.warns(UndefinedMetricWarning), pytest.raises(KerafineError, match="single class"):
        classification_report([0, 0], [0.2, 0.8], threshold="f1")


def test_single_negative_class_reports_no_precision_on_the_positive_class():
    # Regression (issue 18): all-zero labels were read as all positive (precision 1.0).
    y = np.zeros(6, int)
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    with pytest.warns(UndefinedMetricWarning):
        r = classification_report(y, p, threshold=0.5)
    assert r.precision == skm.precision_score(y, p >= 0.5, zero_division=0) == 0.0
    assert r.per_class == [{"class": 0, "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 6.0}]


# ------------------------------------------------ softmax(2) heads, majority-class baseline


def test_a_softmax_2_head_is_evaluated_as_binary_with_the_delong_interval():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(21)
    y = (rng.random(400) < 0.3).astype(int)
    p1 = np.clip(0.3 + 0.3 * (y - 0.3) + rng.normal(0, 0.15, 400), 0.001, 0.999)
    two = np.stack([1 - p1, p1], axis=1)
    report = classification_report(y, two, threshold=0.5)
    assert report.kind == "binary" and report.classes == [0, 1]
    assert report.roc_auc == pytest.approx(roc_auc_score(y, p1), abs=1e-12)
    assert report.roc_auc_interval is not None and report.roc_auc_interval.lower < report.roc_auc
    same = classification_report(y, p1, threshold=0.5)
    assert report.accuracy == same.accuracy and report.calibration.ece == pytest.approx(same.calibration.ece)
    # One-hot labels and named classes too.
    onehot = classification_report(np.eye(2)[y], two, threshold=0.5)
    assert onehot.kind == "binary" and onehot.roc_auc == report.roc_auc
    named = classification_report(np.where(y == 1, "spam", "ham"), two, threshold=0.5, labels=["ham", "spam"])
    assert named.kind == "binary" and named.classes == ["ham", "spam"]
    assert [r["class"] for r in named.per_class] == ["ham", "spam"] and named.roc_auc == report.roc_auc
    # Two logits are not probabilities: still the multiclass report.
    assert classification_report(y, np.log(two) + 3.0).kind == "multiclass"


def test_the_majority_class_baseline_is_shown_and_a_model_that_does_not_beat_it_warns():
    rng = np.random.default_rng(22)
    y = (rng.random(1000) < 0.08).astype(int)  # 92 % negatives
    score = np.clip(0.4 * y + rng.normal(0.3, 0.2, 1000), 0, 1)
    with pytest.warns(
        UserWarning, match=r"Accuracy 0\.\d+ does not beat the majority-class baseline 0\.9\d+ .*threshold 0\.2"
    ):
        weak = classification_report(y, score, threshold=0.25)
    assert weak.baseline_accuracy == pytest.approx(1 - y.mean())
    assert weak.accuracy < weak.baseline_accuracy
    assert "majority-class baseline" in str(weak) and "NOT beaten" in str(weak)
    assert weak.to_dict()["baseline_accuracy"] == weak.baseline_accuracy
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        good = classification_report(y, y * 0.9 + 0.05, threshold=0.5)
    assert good.accuracy == 1.0 and "NOT beaten" not in str(good)
    weights = np.where(y == 1, 20.0, 1.0)  # weighted support: the positives are the majority
    with pytest.warns(UserWarning):
        weighted = classification_report(y, np.zeros(1000), threshold=0.5, sample_weight=weights)
    assert weighted.baseline_accuracy == pytest.approx(weights[y == 1].sum() / weights.sum())
