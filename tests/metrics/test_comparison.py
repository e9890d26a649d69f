"""Paired DeLong test: against a written-out reference, its level, its power, bad input."""

import math
import subprocess
import sys

import numpy as np
import pytest

from kerafine.errors import DataError, KerafineError
from kerafine.metrics import UndefinedMetricWarning, roc_auc, roc_auc_compare


def _reference(y, a, b):
    """DeLong, DeLong & Clarke-Pearson (1988) written out from the definitions, O(m n).

    psi(X, Y) = 1 if X > Y, 1/2 if equal, 0 otherwise, for a positive's score X and a
    negative's score Y; V10 (per positive) and V01 (per negative) average psi over the
    other class; S10, S01 are their sample covariance matrices; var(A_b - A_a) =
    (S10_aa + S10_bb - 2 S10_ab) / m + (S01_aa + S01_bb - 2 S01_ab) / n.
    """
    y = np.asarray(y).astype(bool)
    out = []
    for s in (np.asarray(a, float), np.asarray(b, float)):
        x, z = s[y], s[~y]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        out.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = out
    m, n = len(v10a), len(v01a)

    def cov(u, v):
        return float(np.sum((u - u.mean()) * (v - v.mean())) / (len(u) - 1))

    var = (cov(v10a, v10a) + cov(v10b, v10b) - 2 * cov(v10a, v10b)) / m + (
        cov(v01a, v01a) + cov(v01b, v01b) - 2 * cov(v01a, v01b)
    ) / n
    z = (auc_b - auc_a) / math.sqrt(var)
    return auc_a, auc_b, math.sqrt(var), math.erfc(abs(z) / math.sqrt(2))


@pytest.mark.parametrize("seed", range(6))
def test_equals_the_reference_computation_to_1e9(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    y = rng.integers(0, 2, n)
    y[:2], y[2:4] = 0, 1
    a = y * 0.8 + rng.normal(size=n)
    b = 0.5 * a + y * 0.3 + rng.normal(size=n)
    if seed % 2:  # ties inside and across classes
        a, b = np.round(a, 1), np.round(b, 0)
    r = roc_auc_compare(y, a, b)
    auc_a, auc_b, se, p = _reference(y, a, b)
    assert r.auc_a == pytest.approx(auc_a, abs=1e-12)
    assert r.auc_b == pytest.approx(auc_b, abs=1e-12)
    assert r.std_error == pytest.approx(se, abs=1e-9)
    assert r.p_value == pytest.approx(p, abs=1e-9)
    assert r.auc_a == pytest.approx(roc_auc(y, a), abs=1e-12)
    assert r.difference == pytest.approx(auc_b - auc_a, abs=1e-12)


def test_float32_scores_as_keras_outputs_them():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    a = (y + rng.normal(size=300)).astype(np.float32)
    b = (y + rng.normal(size=300)).astype(np.float32)
    r = roc_auc_compare(y, a.reshape(-1, 1), b)
    assert r.std_error == pytest.approx(_reference(y, a, b)[2], abs=1e-9)


def test_holds_its_level_on_equally_good_models():
    # Two models of the same quality, correlated through a shared signal, compared on
    # fresh rows each time: a 5 % test must reject about 5 % of the time.
    rng = np.random.default_rng(12345)
    draws, rejections = 1500, 0
    for _ in range(draws):
        y = rng.integers(0, 2, 200)
        shared = rng.normal(size=200)
        a = y + shared + rng.normal(size=200)
        b = y + shared + rng.normal(size=200)
        rejections += roc_auc_compare(y, a, b).p_value < 0.05
    rate = rejections / draws
    # Binomial(1500, 0.05): sd 0.0056; four sd either side.
    assert abs(rate - 0.05) < 4 * math.sqrt(0.05 * 0.95 / draws), rate


def test_one_sided_alternatives_split_the_two_sided_p_value():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    a = y + rng.normal(scale=2.0, size=400)
    b = y + rng.normal(size=400)
    two = roc_auc_compare(y, a, b)
    greater = roc_auc_compare(y, a, b, alternative="greater")
    less = roc_auc_compare(y, a, b, alternative="less")
    assert two.difference > 0
    assert greater.p_value == pytest.approx(two.p_value / 2, rel=1e-12)
    assert less.p_value == pytest.approx(1 - two.p_value / 2, rel=1e-12)


def test_detects_a_better_model():
    rng = np.random.default_rng(5)
    hits = 0
    for _ in range(100):
        y = rng.integers(0, 2, 400)
        a = y + rng.normal(scale=2.0, size=400)
        b = y + rng.normal(scale=0.7, size=400)
        r = roc_auc_compare(y, a, b)
        hits += (r.p_value < 0.05) and r.difference > 0
    assert hits >= 95


def test_interval_covers_the_difference_and_matches_z():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 300)
    a, b = y + rng.normal(size=300), y + rng.normal(scale=0.8, size=300)
    r = roc_auc_compare(y, a, b, level=0.9)
    assert r.lower < r.difference < r.upper
    assert r.z == pytest.approx(r.difference / r.std_error)
    assert (r.upper - r.lower) / 2 == pytest.approx(1.6448536269514722 * r.std_error, rel=1e-9)


def test_identical_rankings_are_no_evidence():
    y = [0, 0, 1, 1, 0, 1]
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.7])
    r = roc_auc_compare(y, s, 3 * s + 1)  # same order
    assert r.difference == 0 and r.std_error == 0 and r.p_value == 1.0


def test_single_class_warns_and_returns_nan():
    with pytest.warns(UndefinedMetricWarning, match="single class"):
        r = roc_auc_compare([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    assert math.isnan(r.p_value) and math.isnan(r.auc_a)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(y_true=[0, 1, 0, 1], score_a=[0.1, 0.2, 0.3], score_b=[0.1, 0.2, 0.3, 0.4]), DataError, "score"),
        (
            dict(y_true=[0, 1, 0, 1], score_a=[0.1, np.nan, 0.3, 0.4], score_b=[0.1, 0.2, 0.3, 0.4]),
            DataError,
            "score_a",
        ),
        (
            dict(y_true=[0, 1, 0, 0], score_a=[0.1, 0.2, 0.3, 0.4], score_b=[0.1, 0.2, 0.3, 0.4]),
            DataError,
            "at least 2 of each",
        ),
        (
            dict(y_true=[0, 1, 0, 1], score_a=[0.1, 0.2, 0.3, 0.4], score_b=[0.1, 0.2, 0.3, 0.4], level=1.5),
            KerafineError,
            "level",
        ),
        (
            dict(y_true=[0, 1, 0, 1], score_a=[0.1, 0.2, 0.3, 0.4], score_b=[0.1, 0.2, 0.3, 0.4], alternative="bigger"),
            KerafineError,
            "alternative",
        ),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        roc_auc_compare(**kwargs)


def test_imports_without_tensorflow():
    code = (
        "import sys; import kerafine.metrics.comparison; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
