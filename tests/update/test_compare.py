"""compare/decide: the table's figures against independent computations; the promotion rule; bad input."""

import math

import numpy as np
import pandas as pd
import pytest

from kerafine.errors import DataError, KerafineError
from kerafine.update import compare, decide
from kerafine.update.compare import Comparison
from tests.update._models import data, mlp, trained_mlp


@pytest.fixture(scope="module")
def table():
    good = trained_mlp(units=16, epochs=30)
    weak = trained_mlp(units=2, epochs=1, seed=1)
    sets = {"old": data(400, seed=7), "new": data(300, seed=8)}
    return compare({"current": weak, "challenger": good}, sets, timing_repeats=1), (weak, good), sets


def test_figures_match_scikit_learn_and_the_paired_test(table):
    from sklearn.metrics import average_precision_score, roc_auc_score

    from kerafine.metrics import roc_auc_compare

    c, (weak, good), sets = table
    for ts, (x, y) in sets.items():
        pw, pg = (m.predict(x, verbose=0).ravel() for m in (weak, good))
        row = c.row("challenger", ts)
        assert row["roc_auc"] == pytest.approx(roc_auc_score(y, pg), abs=1e-12)
        assert row["pr_auc"] == pytest.approx(average_precision_score(y, pg), abs=1e-12)
        assert row["roc_auc_lower"] < row["roc_auc"] < row["roc_auc_upper"]
        assert row["p_value"] == pytest.approx(roc_auc_compare(y, pw, pg).p_value, abs=1e-12)
        assert row["auc_difference"] == pytest.approx(roc_auc_score(y, pg) - roc_auc_score(y, pw), abs=1e-12)
        assert row["params"] == good.count_params() and row["predict_ms_per_1k"] > 0
        assert row["rows"] == len(y) and row["positives"] == int(y.sum())
        assert 0 <= row["ece"] <= 1
        assert math.isnan(c.row("current", ts)["p_value"])


def test_table_exports_and_plots(table, tmp_path):
    import json

    c = table[0]
    d = json.loads(c.to_json(tmp_path / "c.json"))
    assert d["current"] == "current" and len(d["rows"]) == 4 and d["rows"][0]["p_value"] is None
    assert "challenger" in str(c) and "<table" in c._repr_html_()
    fig = c.plot()
    assert len(fig.axes) == 2


def test_a_clearly_better_challenger_is_promoted(table):
    d = decide(table[0], margin=0.05)
    assert d.promote and d.champion == "challenger" and "qualifies" in str(d)


def _comparison(rows):
    nan = float("nan")
    base = [
        dict(candidate="cur", test_set="new", roc_auc=0.80, auc_difference=nan, p_value=nan),
        dict(candidate="cur", test_set="old", roc_auc=0.90, auc_difference=nan, p_value=nan),
    ]
    return Comparison(pd.DataFrame(base + rows), "cur", 0.95)


def _ch(name, new_diff, p, old_diff):
    return [
        dict(candidate=name, test_set="new", roc_auc=0.80 + new_diff, auc_difference=new_diff, p_value=p),
        dict(candidate=name, test_set="old", roc_auc=0.90 + old_diff, auc_difference=old_diff, p_value=0.5),
    ]


@pytest.mark.parametrize(
    "rows, promote, champion, reason",
    [
        (_ch("a", 0.05, 0.20, 0.0), False, "cur", "not significantly better"),
        (_ch("a", -0.05, 0.001, 0.0), False, "cur", "not significantly better"),
        (_ch("a", 0.05, 0.001, -0.02), False, "cur", "loses more than the margin"),
        (_ch("a", 0.05, 0.001, -0.005), True, "a", "within the margin"),
        (_ch("a", 0.05, 0.001, 0.0) + _ch("b", 0.08, 0.01, 0.0), True, "b", "highest ROC-AUC"),
        (_ch("a", 0.05, 0.001, 0.0) + _ch("b", 0.08, 0.01, -0.03), True, "a", "qualifies"),
    ],
)
def test_decision_rule(rows, promote, champion, reason):
    d = decide(_comparison(rows), margin=0.01)
    assert (d.promote, d.champion) == (promote, champion)
    assert reason in d.text


def test_decide_without_an_old_test_set():
    c = _comparison(_ch("a", 0.05, 0.001, -0.5))
    assert decide(c, old=None).promote


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(new="fresh"), "new"), (dict(old="past"), "old"), (dict(alpha=0), "alpha"), (dict(margin=-1), "margin")],
)
def test_decide_bad_arguments(kwargs, match):
    with pytest.raises(KerafineError, match=match):
        decide(_comparison(_ch("a", 0.05, 0.001, 0.0)), **kwargs)


@pytest.mark.parametrize(
    "which, error, match",
    [
        ("empty", KerafineError, "candidates"),
        ("inputs", KerafineError, "candidates.*input shape"),
        ("one_class", DataError, r"test_sets\['new'\].*single class"),
        ("no_sets", KerafineError, "test_sets"),
        ("current", KerafineError, "current"),
        ("shape", DataError, r"test_sets\['new'\].*shape"),
    ],
)
def test_compare_bad_input(which, error, match):
    a, b = mlp(units=2), mlp(units=2, seed=1)
    x, y = data(50)
    cands, sets, kw = {"a": a, "b": b}, {"new": (x, y)}, {}
    if which == "empty":
        cands = {}
    elif which == "inputs":
        cands = {"a": a, "b": mlp(units=2, inputs=3)}
    elif which == "one_class":
        sets = {"new": (x, np.zeros(len(x)))}
    elif which == "no_sets":
        sets = {}
    elif which == "current":
        kw = dict(current="c")
    elif which == "shape":
        sets = {"new": (x[:, :3], y)}
    with pytest.raises(error, match=match):
        compare(cands, sets, **kw)
