"""kerafine.heads: unbuilt Sequential heads ending in a Dense named "predictions"."""

import keras
import numpy as np
import pytest

from kerafine import heads
from kerafine.errors import KerafineError


def _activation(layer):
    return keras.activations.serialize(layer.activation)


@pytest.mark.parametrize(
    "n_classes, multilabel, units, activation",
    [
        (2, False, 1, "sigmoid"),
        (5, False, 5, "softmax"),
        (2, True, 2, "sigmoid"),
        (4, True, 4, "sigmoid"),
    ],
)
def test_classification_output_layer(n_classes, multilabel, units, activation):
    head = heads.classification(n_classes, multilabel=multilabel)
    assert isinstance(head, keras.Sequential)
    assert head.name == "head"
    assert not head.built
    last = head.layers[-1]
    assert isinstance(last, keras.layers.Dense) and last.name == "predictions"
    assert last.units == units and _activation(last) == activation


def test_softmax_rows_sum_to_one_and_sigmoids_are_independent():
    x = np.random.default_rng(0).normal(size=(6, 10)).astype("float32")
    softmax = np.asarray(heads.classification(4)(x))
    np.testing.assert_allclose(softmax.sum(axis=1), 1.0, rtol=1e-5)
    multilabel = np.asarray(heads.classification(4, multilabel=True)(x))
    assert np.all((multilabel > 0) & (multilabel < 1))
    assert not np.allclose(multilabel.sum(axis=1), 1.0)


def test_hidden_layers_and_dropout_come_before_predictions():
    head = heads.classification(3, hidden=(16, 8), dropout=0.25)
    kinds = [(type(layer).__name__, layer.name) for layer in head.layers]
    assert kinds == [
        ("Dense", "hidden_0"),
        ("Dropout", "dropout_0"),
        ("Dense", "hidden_1"),
        ("Dropout", "dropout_1"),
        ("Dense", "predictions"),
    ]
    assert all(_activation(layer) == "relu" for layer in head.layers if layer.name.startswith("hidden"))
    assert head.layers[1].rate == 0.25
    only_dropout = heads.regression(dropout=0.5)
    assert [layer.name for layer in only_dropout.layers] == ["dropout", "predictions"]


def test_head_builds_on_the_feature_width_it_first_sees():
    head = heads.regression(2, hidden=(4,))
    assert np.asarray(head(np.zeros((3, 7), "float32"))).shape == (3, 2)
    assert head.built
    assert head.layers[0].kernel.shape == (7, 4)


def test_regression_is_linear():
    head = heads.regression(n_outputs=3)
    last = head.layers[-1]
    assert last.name == "predictions" and last.units == 3 and _activation(last) == "linear"
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(head(2 * x)) - np.asarray(head(x)), np.asarray(head(x)) - np.asarray(head(0 * x)), atol=1e-5
    )


def test_head_trains_one_step_on_a_backbone_and_round_trips(tmp_path, seeded):
    inputs = keras.Input((5,))
    features = keras.layers.Dense(6, activation="relu")(inputs)
    model = keras.Model(inputs, heads.classification(3, hidden=(4,), dropout=0.1)(features))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
    y = np.arange(16) % 3
    before = [w.copy() for w in model.get_layer("head").get_weights()]
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_layer("head").get_weights()))
    path = tmp_path / "with_head.keras"
    model.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(restored(x)), np.asarray(model(x)))
    assert restored.get_layer("head").layers[-1].name == "predictions"


def test_predictions_stay_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        head = heads.classification(3, hidden=(4,))
        out = head(np.zeros((2, 5), "float32"))
    finally:
        keras.config.set_dtype_policy(previous)
    assert head.layers[0].compute_dtype == "float16"
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


@pytest.mark.parametrize("n_classes", [1, 0, -3, 2.0, True, "3"])
def test_fewer_than_two_classes_or_not_an_int_is_rejected(n_classes):
    with pytest.raises(KerafineError, match=r"argument `n_classes`: received .*; expected an int >= 2\. .*n_classes=2"):
        heads.classification(n_classes)


def test_bad_head_arguments_are_rejected():
    with pytest.raises(KerafineError, match=r"argument `hidden`: received \(16, 0\)"):
        heads.classification(3, hidden=(16, 0))
    with pytest.raises(KerafineError, match=r"argument `dropout`: received 1.5; expected a float in \[0, 1\)"):
        heads.classification(3, dropout=1.5)
    with pytest.raises(KerafineError, match=r"argument `multilabel`: received 'yes'"):
        heads.classification(3, multilabel="yes")
    with pytest.raises(KerafineError, match=r"argument `n_outputs`: received 0; expected an int >= 1"):
        heads.regression(0)
