"""robustness_curve on a small image model and on the server-metric LSTM: monotone, PGD never weaker than FGSM."""

import warnings

import keras
import numpy as np
import pandas as pd
import pytest

from kerafine.errors import DataError, KerafineError
from kerafine.metrics import roc_auc_ci
from kerafine.security import fgsm, pgd, robustness_curve

_CACHE = {}


def _image_task():
    """A small CNN on kerafine's digits demo images (raw 0-255 pixels, preprocessing inside the model)."""
    if "image" not in _CACHE:
        from kerafine.data.demo import load_digits_task

        task = load_digits_task(image_size=8)
        x, y = task["transfer_train"]
        xt, yt = task["transfer_test"]
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((8, 8, 3)),
                keras.layers.Rescaling(1 / 255.0),
                keras.layers.Conv2D(8, 3, activation="relu"),
                keras.layers.Flatten(),
                keras.layers.Dense(5, activation="softmax"),
            ]
        )
        model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=30, batch_size=32, verbose=0)
        _CACHE["image"] = (model, xt[:200], yt[:200])
    return _CACHE["image"]


def _lstm_task(tmp_path_factory):
    """An LSTM on windows of the simulated server fleet (the demo's data), binary failure label."""
    if "lstm" not in _CACHE:
        from kerafine.backbones import sequence_encoder
        from kerafine.data import Normalizer, load_server_metrics
        from kerafine.data.demo import generate_fleet

        paths = generate_fleet(tmp_path_factory.mktemp("fleet"), "B", n_servers=12, n_steps=1440, seed=0)
        m = load_server_metrics(**paths, freq="1min", horizon=30)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            x, y = m.windows(16, stride=2, normalizer=Normalizer.fit(m))
        # Failures are rare: keep every positive window and three negatives for each.
        rng = np.random.default_rng(0)
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        keep = np.sort(np.concatenate([pos, rng.choice(neg, 3 * pos.size, replace=False)]))
        x, y = x[keep], y[keep]
        order = rng.permutation(len(y))
        x, y = x[order], y[order]
        keras.utils.set_random_seed(0)
        encoder = sequence_encoder((16, x.shape[2]), units=(16,), mask_value=None)
        model = keras.Sequential([encoder, keras.layers.Dense(1, activation="sigmoid")])
        model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
        model.fit(x[200:], y[200:], epochs=10, batch_size=64, verbose=0)
        _CACHE["lstm"] = (model, x[:200], y[:200])
    return _CACHE["lstm"]


def _accuracy(model, x, y):
    p = model.predict(x, verbose=0)
    if p.shape[-1] == 1:
        return float(np.mean((p[:, 0] >= 0.5) == (y == 1)))
    return float(np.mean(np.argmax(p, axis=1) == y))


def test_image_model_curve_falls_monotonically_and_pgd_is_never_weaker_than_fgsm():
    model, x, y = _image_task()
    eps = [2.0, 8.0, 32.0]
    curves = {a: robustness_curve(model, (x, y), eps, attack=a) for a in ("fgsm", "pgd")}
    for curve in curves.values():
        assert curve.kind == "multiclass" and curve.epsilon.tolist() == [0.0] + eps
        assert np.all(np.diff(curve.accuracy) <= 0)
        assert np.isnan(curve.auc_lower).all()  # no DeLong interval for a macro multiclass AUC
    assert curves["pgd"].accuracy[0] == pytest.approx(_accuracy(model, x, y))
    assert curves["pgd"].accuracy[0] > 0.8 and curves["pgd"].accuracy[-1] < curves["pgd"].accuracy[0] - 0.3
    assert np.all(curves["pgd"].accuracy <= curves["fgsm"].accuracy)
    # The raw attacks too, without the curve's worst-case bookkeeping, over seeded random starts.
    raw_fgsm = [_accuracy(model, fgsm(model, x, y, e), y) for e in eps]
    assert all(a >= b for a, b in zip(raw_fgsm, raw_fgsm[1:]))
    for seed in range(3):
        raw_pgd = [_accuracy(model, pgd(model, x, y, e, seed=seed), y) for e in eps]
        assert all(a >= b for a, b in zip(raw_pgd, raw_pgd[1:]))
        assert all(p <= f for p, f in zip(raw_pgd, raw_fgsm)), (seed, raw_pgd, raw_fgsm)


def test_server_metric_lstm_curve_falls_with_epsilon_and_pgd_beats_fgsm(tmp_path_factory):
    model, x, y = _lstm_task(tmp_path_factory)
    eps = [0.05, 0.2, 0.5]
    fg = robustness_curve(model, (x, y), eps, attack="fgsm")
    pg = robustness_curve(model, (x, y), eps, attack="pgd")
    for curve in (fg, pg):
        assert curve.kind == "binary" and curve.threshold == 0.5
        assert np.all(np.diff(curve.accuracy) <= 0) and np.all(np.diff(curve.roc_auc) <= 1e-12)
    assert np.all(pg.accuracy <= fg.accuracy) and np.all(pg.roc_auc <= fg.roc_auc + 1e-12)
    assert pg.roc_auc[0] > 0.7 and pg.roc_auc[-1] < pg.roc_auc[0] - 0.1  # it learned, and the attack hurts
    # The clean point is the exact DeLong interval of the clean scores.
    ci = roc_auc_ci(y, model.predict(x, verbose=0)[:, 0])
    assert (pg.roc_auc[0], pg.auc_lower[0], pg.auc_upper[0]) == pytest.approx((ci.auc, ci.lower, ci.upper))
    raw_fgsm = [_accuracy(model, fgsm(model, x, y, e), y) for e in eps]
    for seed in range(3):
        raw_pgd = [_accuracy(model, pgd(model, x, y, e, seed=seed), y) for e in eps]
        assert all(a >= b for a, b in zip(raw_pgd, raw_pgd[1:]))
        assert all(p <= f for p, f in zip(raw_pgd, raw_fgsm)), (seed, raw_pgd, raw_fgsm)


def test_curve_frame_text_html_and_figure():
    model, x, y = _image_task()
    curve = robustness_curve(model, (x[:40], y[:40]), [4, 1], attack="fgsm")
    frame = curve.to_frame()
    assert isinstance(frame, pd.DataFrame) and frame["epsilon"].tolist() == [0.0, 1.0, 4.0]
    assert list(frame.columns) == ["epsilon", "accuracy", "roc_auc", "auc_lower", "auc_upper"]
    assert "FGSM" in str(curve) and "<table>" in curve._repr_html_()
    from matplotlib.figure import Figure

    fig = curve.plot()
    assert isinstance(fig, Figure) and fig.axes[0].get_xlabel().startswith("epsilon")
    d = curve.to_dict()
    assert d["accuracy"] == frame["accuracy"].tolist() and d["steps"] == 1


def test_bad_arguments_are_refused_before_any_attack():
    model, x, y = _image_task()
    with pytest.raises(KerafineError, match=r"argument `epsilons`: received \[1, 0\]; expected .*> 0"):
        robustness_curve(model, (x, y), [1, 0])
    with pytest.raises(KerafineError, match=r"argument `epsilons`: received \[\]"):
        robustness_curve(model, (x, y), [])
    with pytest.raises(KerafineError, match=r"argument `attack`: received 'cw'; expected \"fgsm\" or \"pgd\""):
        robustness_curve(model, (x, y), [1], attack="cw")
    with pytest.raises(DataError, match=r"argument `data`.*an \(x, y\) tuple"):
        robustness_curve(model, x, [1])
    with pytest.raises(KerafineError, match=r"argument `level`"):
        robustness_curve(model, (x, y), [1], level=1.5)
