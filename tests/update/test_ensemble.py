"""ensemble: mean/weighted/stacking combiners, out-of-fold stacking scores, save/load, bad input."""

import numpy as np
import pytest

from kerafine.errors import DataError, KerafineError
from kerafine.metrics import roc_auc
from kerafine.update import ensemble, stacking_combiner
from tests.update._models import data, mlp, trained_mlp


@pytest.fixture(scope="module")
def members():
    return [trained_mlp(units=8, seed=s, epochs=5 + 5 * s, n=300) for s in range(3)]


def _p(m, x):
    return m.predict(x, verbose=0).ravel().astype(np.float64)


def test_mean_is_the_average_of_the_members(members):
    x, _ = data(200, seed=3)
    e = ensemble(members, "mean")
    expected = np.mean([_p(m, x) for m in members], axis=0)
    assert _p(e, x) == pytest.approx(expected, abs=1e-6)


def test_weighted_uses_skill_above_chance_on_validation(members):
    xv, yv = data(300, seed=4)
    x, _ = data(100, seed=5)
    # Documented rule: weight proportional to max(AUC - 0.5, 0.001) (a worse-than-chance member counts ~0).
    skill = np.maximum([roc_auc(yv, _p(m, xv)) - 0.5 for m in members], 1e-3)
    w = skill / skill.sum()
    e = ensemble(members, "weighted", validation_data=(xv, yv))
    assert _p(e, x) == pytest.approx(np.column_stack([_p(m, x) for m in members]) @ w, abs=1e-5)


def test_stacking_out_of_fold_scores_never_come_from_a_combiner_fitted_on_the_row():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 150)
    s = np.column_stack([y + rng.normal(size=150), y + rng.normal(scale=2, size=150)])
    c = stacking_combiner(s, y, folds=5, seed=3)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=3).split(s, y):
        lr = LogisticRegression(max_iter=1000).fit(s[train], y[train])
        assert c.oof_scores[test] == pytest.approx(lr.predict_proba(s[test])[:, 1], abs=1e-9)
    full = LogisticRegression(max_iter=1000).fit(s, y)
    assert c.coef == pytest.approx(full.coef_[0]) and c.intercept == pytest.approx(full.intercept_[0])


def test_stacking_model_applies_the_fitted_combiner(members):
    xv, yv = data(300, seed=4)
    x, _ = data(100, seed=5)
    c = stacking_combiner(np.column_stack([_p(m, xv) for m in members]), yv)
    e = ensemble(members, "stacking", validation_data=(xv, yv))
    z = np.column_stack([_p(m, x) for m in members]) @ c.coef + c.intercept
    assert _p(e, x) == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-5)


def test_saves_and_loads_with_kerafine_load_model(members, tmp_path):
    import kerafine

    xv, yv = data(300, seed=4)
    x, _ = data(50, seed=5)
    for method in ("mean", "stacking"):
        e = ensemble(members, method, validation_data=(xv, yv))
        path = tmp_path / f"{method}.keras"
        e.save(path)
        assert _p(kerafine.load_model(path), x) == pytest.approx(_p(e, x), abs=1e-6)


def test_models_loaded_from_the_same_file_can_be_combined(tmp_path):
    import kerafine

    m = mlp(units=4)
    m.save(tmp_path / "m.keras")
    a, b = kerafine.load_model(tmp_path / "m.keras"), kerafine.load_model(tmp_path / "m.keras")
    x, _ = data(20)
    assert _p(ensemble([a, b]), x) == pytest.approx(_p(m, x), abs=1e-6)


@pytest.mark.parametrize(
    "which, kwargs, error, match",
    [
        ("empty", {}, KerafineError, "models.*two or more"),
        ("one", {}, KerafineError, "models.*two or more"),
        ("same", {}, KerafineError, "models.*distinct"),
        ("inputs", {}, KerafineError, "models.*input shapes"),
        ("outputs", {}, KerafineError, "models.*output shapes"),
        ("ok", dict(method="median"), KerafineError, "method"),
        ("ok", dict(method="weighted"), KerafineError, "validation_data"),
        (
            "ok",
            dict(method="stacking", validation_data=(np.zeros((10, 4)), np.ones(10))),
            DataError,
            "validation_data.*single class",
        ),
    ],
)
def test_bad_input_names_the_argument(which, kwargs, error, match):
    a, b = mlp(units=2), mlp(units=2, seed=1)
    models = {
        "empty": [],
        "one": [a],
        "same": [a, a],
        "inputs": [a, mlp(units=2, inputs=3)],
        "outputs": [a, mlp(units=2, outputs=2)],
        "ok": [a, b],
    }[which]
    with pytest.raises(error, match=match):
        ensemble(models, **kwargs)
