"""kerafine.calibrate: lower ECE on held-out data, save/load, the diagram, bad input."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import kerafine
from kerafine.calibration import IsotonicCalibration, TemperatureScaling
from kerafine.errors import DataError, KerafineError
from kerafine.metrics import classification_report, roc_auc


def _binary_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    logit = 1.5 * x[:, 0] - x[:, 1] - 2.0  # about 20 % positives
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype("float32")
    return x, y


def _softmax_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    logits = np.stack([np.zeros(n), 1.5 * x[:, 0], 1.5 * x[:, 1] - 2.0], axis=1)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return x, y.astype("int64")


def _train(x, y, units, class_weight, seed):
    keras.utils.set_random_seed(seed)
    activation = "sigmoid" if units == 1 else "softmax"
    loss = "binary_crossentropy" if units == 1 else "sparse_categorical_crossentropy"
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units, activation=activation)])
    model.compile(keras.optimizers.Adam(0.05), loss)
    model.fit(x, y, epochs=15, batch_size=64, class_weight=class_weight, verbose=0)
    return model


@pytest.fixture(scope="module")
def weighted_binary():
    """A logistic model trained with balanced class weights: its probabilities are inflated."""
    x, y = _binary_data(3000, seed=7)
    w1 = float((1 - y[:1000].mean()) / y[:1000].mean())
    model = _train(x[:1000], y[:1000], 1, {0: 1.0, 1: w1}, seed=7)
    return model, (x[1000:2000], y[1000:2000]), (x[2000:], y[2000:])


@pytest.fixture(scope="module")
def weighted_softmax():
    """A softmax model trained with a weight of 10 on its rarest class (about 12 % of rows)."""
    x, y = _softmax_data(3000, seed=11)
    model = _train(x[:1000], y[:1000], 3, {0: 1.0, 1: 1.0, 2: 10.0}, seed=11)
    return model, (x[1000:2000], y[1000:2000]), (x[2000:], y[2000:])


def _ece(model, data):
    x, y = data
    p = model.predict(x, verbose=0)
    if p.shape[1] == 1:
        return classification_report(y, p[:, 0], threshold=0.5).calibration.ece
    return classification_report(y, p, labels=[0, 1, 2]).calibration.ece


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibrate_lowers_held_out_ece_of_class_weighted_sigmoid_model(weighted_binary, method):
    model, val, test = weighted_binary
    before = _ece(model, test)
    assert before > 0.1  # the class weights really did miscalibrate it
    result = kerafine.calibrate(model, val, method, test_data=test)
    after = _ece(result.model, test)
    assert after < before / 3
    assert result.evaluated_on == "test_data"
    assert result.before.ece == pytest.approx(before)
    assert result.after.ece == pytest.approx(after, abs=1e-6)


def test_platt_keeps_the_binary_ranking(weighted_binary):
    model, val, test = weighted_binary
    result = kerafine.calibrate(model, val, "platt")
    x, y = test
    before = roc_auc(y, model.predict(x, verbose=0)[:, 0])
    after = roc_auc(y, result.model.predict(x, verbose=0)[:, 0])
    assert after == pytest.approx(before, abs=1e-3)
    # Balanced weights add log((1 - prior) / prior) to the logit; the fitted bias takes most of it back.
    assert result.bias[0] < -0.5


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibrate_lowers_held_out_ece_of_class_weighted_softmax_model(weighted_softmax, method):
    model, val, test = weighted_softmax
    before = _ece(model, test)
    assert before > 0.08
    result = kerafine.calibrate(model, val, method, test_data=test)
    after = _ece(result.model, test)
    assert after < before / 2
    rows = result.model.predict(test[0], verbose=0).sum(axis=1)
    np.testing.assert_allclose(rows, 1.0, atol=1e-5)


@pytest.mark.parametrize("units", [1, 3])
def test_temperature_undoes_over_confidence(units):
    # An over-confident model: a maximum-likelihood model whose logits are multiplied
    # by 4 (what over-training does to the last layer). Temperature ~4 undoes it.
    x, y = (_binary_data if units == 1 else _softmax_data)(4000, seed=3)
    model = _train(x[:2000], y[:2000], units, None, seed=3)
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([4.0 * kernel, 4.0 * bias])
    val, test = (x[2000:3000], y[2000:3000]), (x[3000:], y[3000:])
    before = _ece(model, test)
    result = kerafine.calibrate(model, val, "temperature", test_data=test)
    assert 2.5 < result.temperature < 6.0
    assert result.bias is None
    assert _ece(result.model, test) < before / 2
    if units == 3:  # temperature never changes the arg-max
        np.testing.assert_array_equal(
            model.predict(test[0], verbose=0).argmax(1), result.model.predict(test[0], verbose=0).argmax(1)
        )


@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic"])
def test_calibrated_model_saves_and_loads_with_kerafine_load_model(weighted_softmax, method, tmp_path):
    model, val, test = weighted_softmax
    result = kerafine.calibrate(model, val, method)
    path = tmp_path / "calibrated.keras"
    result.model.save(path)
    loaded = kerafine.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(test[0], verbose=0), result.model.predict(test[0], verbose=0), rtol=1e-5, atol=1e-6
    )


def test_calibrated_transfer_model_round_trip(tmp_path):
    from kerafine import backbones, heads

    x, y = _binary_data(600, seed=5)
    keras.utils.set_random_seed(5)
    encoder = backbones.sequence_encoder((3, 1), units=(4,))
    model = kerafine.build_transfer_model(encoder, heads.classification(2))
    xs = x[:, :, None]
    model.compile("adam", "binary_crossentropy")
    model.fit(xs[:300], y[:300], epochs=2, verbose=0)
    result = kerafine.calibrate(model, (xs[300:], y[300:]), "isotonic")
    path = tmp_path / "m.keras"
    result.model.save(path)
    loaded = kerafine.load_model(path)
    np.testing.assert_allclose(loaded.predict(xs, verbose=0), result.model.predict(xs, verbose=0), atol=1e-6)


def test_plot_is_a_before_after_reliability_figure(weighted_binary):
    from matplotlib.figure import Figure

    model, val, test = weighted_binary
    result = kerafine.calibrate(model, val, "isotonic", test_data=test)
    fig = result.plot()
    assert isinstance(fig, Figure)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels[0] == "perfect"
    assert labels[1].startswith("before (ECE") and labels[2].startswith("after (ECE")
    assert result.to_dict()["ece_after"] < result.to_dict()["ece_before"]
    assert "isotonic" in repr(result)


def test_layers_compute_their_documented_maps():
    p = np.array([[0.2], [0.9]], "float32")
    z = np.log(p / (1 - p))
    out = np.asarray(TemperatureScaling(2.0, "sigmoid", bias=[0.5])(p))
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-(z / 2.0 + 0.5))), rtol=1e-5)
    # Linear between knots, flat outside; rows renormalised.
    layer = IsotonicCalibration([[0.0, 1.0], [0.0, 1.0]], [[0.0, 0.5], [0.25, 0.25]])
    got = np.asarray(layer(np.array([[0.5, 0.5], [2.0, -1.0]], "float32")))
    np.testing.assert_allclose(got, [[0.5, 0.5], [2 / 3, 1 / 3]], rtol=1e-5)


def test_bad_input_is_refused_with_a_clear_error(weighted_binary):
    model, val, _ = weighted_binary
    with pytest.raises(KerafineError, match="`method`.*'beta'.*temperature"):
        kerafine.calibrate(model, val, "beta")
    with pytest.raises(DataError, match="`validation_data`.*tuple"):
        kerafine.calibrate(model, val[0])
    with pytest.raises(DataError, match="single class"):
        kerafine.calibrate(model, (val[0], np.zeros(len(val[0]))))
    with pytest.raises(DataError, match="label 2.0 at row"):
        kerafine.calibrate(model, (val[0], np.where(np.arange(len(val[0])) == 3, 2.0, val[1])))
    logits = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, kernel_initializer="ones")])
    with pytest.raises(DataError, match="probabilities"):
        kerafine.calibrate(logits, val)
    with pytest.raises(KerafineError, match="`batch_size`"):
        kerafine.calibrate(model, val, batch_size=0)


def test_a_tabular_model_fed_a_dict_is_calibrated_and_reloaded(tmp_path):
    import pandas as pd

    from kerafine import heads
    from kerafine.backbones import tabular_encoder

    rng = np.random.default_rng(8)
    frame = pd.DataFrame({"a": rng.normal(size=600), "c": rng.choice(["x", "y"], 600)})
    y = (rng.random(600) < 1 / (1 + np.exp(-(2 * frame["a"] - 1)))).astype("float32").to_numpy()
    feed = {c: frame[c].to_numpy() for c in frame}
    keras.utils.set_random_seed(8)
    model = kerafine.build_transfer_model(
        tabular_encoder(["a"], ["c"], hidden=(4,), data=frame), heads.classification(2)
    )
    model.compile("adam", "binary_crossentropy")
    model.fit(feed, y, epochs=2, verbose=0)
    result = kerafine.calibrate(model, (feed, y), "isotonic")
    assert isinstance(result.model.input, dict)  # fed like the original
    path = tmp_path / "tabular.keras"
    result.model.save(path)
    loaded = kerafine.load_model(path)
    np.testing.assert_allclose(loaded.predict(feed, verbose=0), result.model.predict(feed, verbose=0), atol=1e-6)


def test_nan_or_inf_rows_of_calibration_or_test_data_are_refused_before_predicting(weighted_binary):
    # Issue 19: a NaN row's output means nothing (a ReLU may turn it into a finite score).
    model, val, test = weighted_binary
    x = val[0].copy()
    x[[4, 11]] = np.nan
    with pytest.raises(
        DataError, match=r"`validation_data`: 2 of \d+ rows hold NaN or inf \(inputs: 2; first rows \[4, 11\]\)"
    ):
        kerafine.calibrate(model, (x, val[1]))
    xt = test[0].copy()
    xt[0, 0] = np.inf
    with pytest.raises(DataError, match=r"`test_data`: 1 of \d+ rows hold NaN or inf \(inputs: 1; first rows \[0\]\)"):
        kerafine.calibrate(model, val, test_data=(xt, test[1]))
