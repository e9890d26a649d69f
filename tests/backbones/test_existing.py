"""from_model(): a user's own pretrained Keras model as a backbone."""

import keras
import numpy as np
import pytest

from kerafine.backbones import from_model
from kerafine.errors import KerafineError, WeightsError


def _pretrained():
    inputs = keras.Input((6,), name="features")
    x = keras.layers.Dense(16, activation="relu", name="dense_a")(inputs)
    x = keras.layers.Dense(8, activation="relu", name="embedding")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="old_head")(x)
    return keras.Model(inputs, outputs, name="pretrained")


def _x(n=8):
    return np.random.default_rng(0).normal(size=(n, 6)).astype("float32")


def test_default_cut_drops_the_last_layer_and_shares_weights(seeded):
    model = _pretrained()
    backbone = from_model(model)
    assert backbone.name == "pretrained_backbone"
    assert backbone.output.shape == (None, 8)
    assert "old_head" not in [layer.name for layer in backbone.layers]
    assert backbone.get_layer("embedding") is model.get_layer("embedding")
    embedding_only = keras.Model(model.input, model.get_layer("embedding").output)
    np.testing.assert_array_equal(np.asarray(backbone(_x())), np.asarray(embedding_only(_x())))


def test_cut_at_a_named_layer(seeded):
    backbone = from_model(_pretrained(), cut_at="dense_a")
    assert backbone.output.shape == (None, 16)
    assert [layer.name for layer in backbone.layers] == ["features", "dense_a"]


def test_sequential_model_is_cut_too(seeded):
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(4, name="hidden"), keras.layers.Dense(2, name="out")]
    )
    assert from_model(model).output.shape == (None, 4)


def test_loads_a_keras_file_in_safe_mode_and_trains_one_step(tmp_path, seeded):
    path = tmp_path / "pretrained.keras"
    _pretrained().save(path)
    backbone = from_model(str(path), cut_at="embedding")
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(1)(backbone(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    before = [w.copy() for w in backbone.get_weights()]
    model.fit(_x(), np.ones((8, 1)), batch_size=8, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, backbone.get_weights()))


def test_keras_round_trip_keeps_predictions(tmp_path, seeded):
    backbone = from_model(_pretrained())
    path = tmp_path / "backbone.keras"
    backbone.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(restored(_x())), np.asarray(backbone(_x())))


def test_unknown_layer_name_lists_close_names():
    with pytest.raises(
        KerafineError,
        match=r"argument `cut_at`: received 'embeding'; expected the name of a layer of model 'pretrained'\. Did you mean \"embedding\"\? Its layers: \['features', 'dense_a', 'embedding', 'old_head'\]",
    ):
        from_model(_pretrained(), cut_at="embeding")


def test_missing_or_wrong_kind_of_file_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match=r"argument `model_or_path`: received '.*nowhere.keras'.*does not exist"):
        from_model(tmp_path / "nowhere.keras")
    (tmp_path / "weights.h5").write_bytes(b"not a model")
    with pytest.raises(WeightsError, match=r"path of a .keras file"):
        from_model(tmp_path / "weights.h5")
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match=r"a loadable .keras model file.*Keras could not load it"):
        from_model(tmp_path / "corrupt.keras")


def test_lambda_layers_are_refused_by_safe_mode(tmp_path):
    inputs = keras.Input((6,))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.Dense(4)(x))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(WeightsError, match=r"safe_mode=False"):
        from_model(path)


def test_subclassed_model_has_no_graph_to_cut():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(_x())
    with pytest.raises(KerafineError, match=r"argument `model_or_path`.*functional or Sequential"):
        from_model(model)
    with pytest.raises(KerafineError, match=r"argument `model_or_path`: received 3"):
        from_model(3)


def test_dict_inputs_keep_their_names(seeded):
    inputs = {"a": keras.Input((1,), name="a"), "b": keras.Input((1,), name="b")}
    x = keras.layers.Concatenate(name="join")([inputs["a"], inputs["b"]])
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(keras.layers.Dense(3, name="mid")(x)))
    backbone = from_model(model)
    assert sorted(backbone.input) == ["a", "b"]
    assert np.asarray(backbone({"a": np.ones((2, 1)), "b": np.zeros((2, 1))})).shape == (2, 3)


def test_layer_inside_a_nested_model_points_to_its_owner():
    inner = _pretrained()
    inputs = keras.Input((6,))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="new_head")(inner(inputs)), name="outer")
    with pytest.raises(
        KerafineError,
        match=r"'embedding' is inside the nested model 'pretrained'.*from_model\(model.get_layer\('pretrained'\), cut_at='embedding'\)",
    ):
        from_model(outer, cut_at="embedding")
    assert from_model(outer, cut_at="pretrained").output.shape == (None, 3)
    assert from_model(inner, cut_at="embedding").output.shape == (None, 8)


def test_dropping_a_nested_head_keeps_the_outer_graph(seeded):
    """A transfer-style model (nested backbone, Sequential head) reused as a backbone."""
    inner = _pretrained()
    inputs = keras.Input((6,))
    head = keras.Sequential([keras.layers.Dense(2, name="predictions")], name="head")
    outer = keras.Model(inputs, head(inner(inputs)), name="outer")
    backbone = from_model(outer)
    assert [layer.name for layer in backbone.layers][-1] == "pretrained"
    np.testing.assert_array_equal(np.asarray(backbone(_x())), np.asarray(inner(_x())))
