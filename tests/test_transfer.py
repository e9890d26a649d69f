"""Tests for kerafine.transfer: building, freezing, the summary, and BatchNorm safety."""

import warnings

import keras
import numpy as np
import pytest

from kerafine import transfer
from kerafine.errors import KerafineError
from kerafine.transfer import (
    BatchNormWarning,
    backbone_of,
    build_transfer_model,
    check_batchnorm,
    freeze,
    head_of,
    trainable_summary,
    unfreeze,
)

# ---------------------------------------------------------------------------
# tiny hand-made backbones and heads following the contract


def conv_backbone(name="convnet"):
    """Conv2D + BatchNorm, 7 leaf layers, BN in the middle and near the top."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="relu1")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Activation("relu", name="relu2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name=name)


def lstm_backbone():
    inputs = keras.Input((5, 2), name="window")
    x = keras.layers.LSTM(4, return_sequences=True, name="lstm1")(inputs)
    x = keras.layers.LSTM(3, name="lstm2")(x)
    return keras.Model(inputs, x, name="lstm_encoder")


def dict_backbone():
    num = keras.Input((3,), name="num")
    cat = keras.Input((1,), name="cat", dtype="int32")
    emb = keras.layers.Flatten(name="flat")(keras.layers.Embedding(5, 2, name="emb")(cat))
    x = keras.layers.Concatenate(name="concat")([num, emb])
    x = keras.layers.Dense(4, name="dense")(x)
    return keras.Model({"num": num, "cat": cat}, x, name="tabular")


def sigmoid_head(units=1):
    return keras.Sequential([keras.layers.Dense(units, activation="sigmoid", name="predictions")], name="head")


def images(n=32, seed=0):
    rng = np.random.default_rng(seed)
    # Far from the BN initial statistics (mean 0, var 1), so any update shows.
    return (rng.normal(5.0, 3.0, size=(n, 8, 8, 3))).astype("float32"), rng.integers(0, 2, n).astype("float32")


def bn_stats(model):
    return {
        bn.path: (keras.ops.convert_to_numpy(bn.moving_mean), keras.ops.convert_to_numpy(bn.moving_variance))
        for bn in transfer._batchnorm_layers(backbone_of(model))
    }


def n_trainable(model):
    return len(model.trainable_weights)


# ---------------------------------------------------------------------------
# build_transfer_model


def test_build_mirrors_single_input_and_computes_head_of_backbone():
    backbone, head = conv_backbone(), sigmoid_head()
    model = build_transfer_model(backbone, head)
    assert [t.name for t in model.inputs] == ["image"]
    assert tuple(model.inputs[0].shape) == (None, 8, 8, 3)
    x, _ = images(4)
    expected = head(backbone(x, training=False))
    np.testing.assert_allclose(model.predict(x, verbose=0), np.asarray(expected), rtol=1e-6)


def test_build_keeps_dict_inputs_names_and_dtypes():
    model = build_transfer_model(dict_backbone(), sigmoid_head())
    assert isinstance(model.input, dict)
    assert sorted(model.input) == ["cat", "num"]
    assert model.input["cat"].dtype == "int32"
    assert tuple(model.input["num"].shape) == (None, 3)
    out = model.predict({"num": np.ones((3, 3), "float32"), "cat": np.array([[0], [4], [2]])}, verbose=0)
    assert out.shape == (3, 1)


def test_freeze_all_leaves_only_head_trainable():
    model = build_transfer_model(conv_backbone(), sigmoid_head(), freeze="all")
    assert [w.path for w in model.trainable_weights] == ["head/predictions/kernel", "head/predictions/bias"]


def test_freeze_none_trains_everything_but_batchnorm():
    model = build_transfer_model(conv_backbone(), sigmoid_head(), freeze="none")
    # conv1 + conv2 (kernel, bias) + head (kernel, bias); never the 2 BN's gamma/beta
    assert n_trainable(model) == 6
    assert all("bn" not in w.path for w in model.trainable_weights)


def test_freeze_int_leaves_that_many_top_layers_trainable():
    # top 4 of [conv1 bn1 relu1 conv2 bn2 relu2 pool]: conv2 bn2 relu2 pool -> conv2 only has trainable weights
    model = build_transfer_model(conv_backbone(), sigmoid_head(), freeze=4)
    assert sorted(w.path for w in model.trainable_weights) == [
        "conv2/bias",
        "conv2/kernel",
        "head/predictions/bias",
        "head/predictions/kernel",
    ]


def test_freeze_by_name_freezes_up_to_and_including_it():
    model = build_transfer_model(conv_backbone(), sigmoid_head(), freeze="bn1")
    assert sorted(w.path for w in model.trainable_weights)[:2] == ["conv2/bias", "conv2/kernel"]
    freeze(model, "conv2")
    assert n_trainable(model) == 2
    freeze(model, "conv1")
    assert n_trainable(model) == 4


def test_unfreeze_top_layers_then_freeze_all_again():
    model = build_transfer_model(lstm_backbone(), sigmoid_head())
    assert n_trainable(model) == 2
    unfreeze(model, top_layers=1)  # lstm2: kernel, recurrent_kernel, bias
    assert n_trainable(model) == 5
    unfreeze(model)  # both LSTMs
    assert n_trainable(model) == 8
    freeze(model)
    assert n_trainable(model) == 2


def test_nested_backbone_layers_count_one_by_one_and_by_container_name():
    inner = conv_backbone("inner")
    inputs = keras.Input((8, 8, 3))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="proj")(inner(inputs)), name="outer")
    model = build_transfer_model(outer, sigmoid_head(), freeze=2)  # pool, proj
    assert sorted(w.path for w in model.trainable_weights)[2:] == ["proj/bias", "proj/kernel"]
    assert n_trainable(model) == 4
    freeze(model, "inner")  # up to and including the whole nested model
    assert n_trainable(model) == 4
    unfreeze(model, top_layers=5)  # conv2 bn2 relu2 pool proj: conv2 now trains too
    assert n_trainable(model) == 6


def test_freeze_unknown_layer_name_suggests_close_names():
    with pytest.raises(
        KerafineError, match=r'Invalid value for argument `freeze`: received \'conv_2\'.*Did you mean "conv2"'
    ):
        build_transfer_model(conv_backbone(), sigmoid_head(), freeze="conv_2")
    model = build_transfer_model(conv_backbone(), sigmoid_head())
    with pytest.raises(KerafineError, match=r"argument `layers`: received 'nonsense'.*backbone's layers are"):
        freeze(model, "nonsense")


def test_freeze_int_beyond_layer_count_names_the_count():
    with pytest.raises(KerafineError, match=r"`freeze`: received 8; expected .*between 0 and 7 .*it has 7 layers"):
        build_transfer_model(conv_backbone(), sigmoid_head(), freeze=8)
    model = build_transfer_model(conv_backbone(), sigmoid_head())
    with pytest.raises(KerafineError, match=r"`top_layers`: received 99; .*it has 7 layers"):
        unfreeze(model, top_layers=99)
    with pytest.raises(KerafineError, match=r"`freeze`: received -1"):
        build_transfer_model(conv_backbone(), sigmoid_head(), freeze=-1)
    with pytest.raises(KerafineError, match=r"`freeze`: received True"):
        build_transfer_model(conv_backbone(), sigmoid_head(), freeze=True)


def test_build_rejects_non_models_before_building():
    with pytest.raises(KerafineError, match=r"argument `backbone`: received 'vgg16'; expected a built keras.Model"):
        build_transfer_model("vgg16", sigmoid_head())
    with pytest.raises(KerafineError, match=r"argument `head`: received 3"):
        build_transfer_model(conv_backbone(), 3)


# ---------------------------------------------------------------------------
# BatchNorm and inference mode


def test_batchnorm_statistics_unchanged_in_frozen_training_and_after_unfreeze(seeded):
    model = build_transfer_model(conv_backbone(), sigmoid_head())
    x, y = images(32)
    before = bn_stats(model)
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for path, (mean, var) in bn_stats(model).items():
        np.testing.assert_array_equal(mean, before[path][0])
        np.testing.assert_array_equal(var, before[path][1])
    unfreeze(model)
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    conv_before = keras.ops.convert_to_numpy(model.get_layer("convnet").get_layer("conv1").kernel)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    # the backbone did train ...
    assert not np.allclose(conv_before, model.get_layer("convnet").get_layer("conv1").kernel)
    # ... and its BatchNorm statistics did not move
    for path, (mean, var) in bn_stats(model).items():
        np.testing.assert_array_equal(mean, before[path][0])
        np.testing.assert_array_equal(var, before[path][1])


def test_check_batchnorm_agrees_with_what_fit_does_on_a_hand_made_model(seeded):
    # The Keras guide's recipe: call with training=False, later set backbone.trainable = True.
    backbone = conv_backbone()
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(backbone(inputs, training=False)))
    backbone.trainable = True
    with pytest.warns(BatchNormWarning, match=r"keras-team/keras#11590"):
        found = check_batchnorm(model)
    x, y = images(16)
    before = bn_stats(model)
    model.compile("sgd", "binary_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    moved = [path for path, (mean, _) in bn_stats(model).items() if not np.array_equal(mean, before[path][0])]
    # Whatever this Keras version does with the recorded training=False, the check predicts it.
    assert len(found["updating"]) == len(moved)


def test_check_batchnorm_frozen_backbone_without_training_false_is_at_risk():
    backbone = conv_backbone()
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(1)(backbone(inputs)))  # no training=False
    backbone.trainable = False
    found = check_batchnorm(model, warn=False)
    assert found == {"updating": [], "at_risk": ["convnet/bn1", "convnet/bn2"]}


def test_built_model_passes_check_batchnorm_without_warning():
    model = build_transfer_model(conv_backbone(), sigmoid_head(), freeze="none")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_batchnorm(model) == {"updating": [], "at_risk": []}


def test_backbone_dropout_stays_off_when_the_model_trains():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(6, name="d")(inputs)
    backbone = keras.Model(inputs, keras.layers.Dropout(0.5, name="drop")(x), name="noisy")
    model = build_transfer_model(backbone, keras.layers.Dense(1, name="predictions"), freeze="none")
    x = np.ones((4, 6), "float32")
    np.testing.assert_allclose(model(x, training=True), model(x, training=False), rtol=1e-6)


def test_saved_and_loaded_model_predicts_the_same_and_keeps_batchnorm_frozen(tmp_path):
    model = build_transfer_model(conv_backbone(), sigmoid_head(), freeze="none")
    x, _ = images(4)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert not any(bn.trainable for bn in transfer._batchnorm_layers(backbone_of(loaded)))
    assert n_trainable(loaded) == n_trainable(model)
    # the inference pin lives on the object; fine_tune restores it from the recorded training=False
    assert transfer._pin_recorded_inference(loaded) in ([], ["convnet"])
    assert transfer._runs_in_inference(loaded, backbone_of(loaded))


# ---------------------------------------------------------------------------
# finding the parts, summary


def test_backbone_of_and_head_of_on_a_hand_made_model():
    backbone = lstm_backbone()
    inputs = keras.Input((5, 2))
    x = keras.layers.Dense(3, activation="relu", name="hidden")(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, name="predictions")(x))
    assert backbone_of(model) is backbone
    head = head_of(model)
    features = np.ones((2, 3), "float32")
    expected = model.get_layer("predictions")(model.get_layer("hidden")(features))
    np.testing.assert_allclose(head(features), expected, rtol=1e-6)


def test_backbone_of_errors_without_or_with_several_nested_models():
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(KerafineError, match="has no nested backbone model"):
        backbone_of(plain)
    inputs = keras.Input((8, 8, 3))
    a, b = conv_backbone("a"), conv_backbone("b")
    two = keras.Model(inputs, keras.layers.Concatenate()([a(inputs), b(inputs)]))
    with pytest.raises(KerafineError, match=r"several nested models \(\['a', 'b'\]\)"):
        backbone_of(two)
    with pytest.raises(KerafineError, match="argument `model`: received 3"):
        backbone_of(3)


def test_trainable_summary_rows_and_totals_match_the_model():
    model = build_transfer_model(conv_backbone(), sigmoid_head(), freeze=4)
    summary = trainable_summary(model)
    names = [r.name for r in summary.rows]
    assert names[:2] == ["convnet/conv1", "convnet/bn1"] and names[-1] == "head/predictions"
    rows = {r.name: r for r in summary.rows}
    assert rows["convnet/conv1"].trainable is False and rows["convnet/conv2"].trainable is True
    assert rows["convnet/bn2"].trainable is False and rows["convnet/bn2"].params == 16
    assert rows["convnet/conv2"].params == 3 * 3 * 4 * 4 + 4
    assert summary.total_params == model.count_params()
    assert summary.trainable_params == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert summary.trainable_layers == ["convnet/conv2", "head/predictions"]
    assert sum(r.trainable_params for r in summary.rows) == summary.trainable_params
    text = str(summary)
    assert "convnet/bn2" in text and f"trainable: {summary.trainable_params:,}" in text
    assert list(summary.to_frame().columns[:4]) == ["name", "type", "trainable", "params"]


# ---------------------------------------------------------------------------
# with kerafine's own backbones and heads


def test_with_kerafine_sequence_encoder_and_classification_head():
    from kerafine import backbones, heads

    encoder = backbones.sequence_encoder((6, 3), units=(4, 3))
    model = build_transfer_model(encoder, heads.classification(3), freeze="all")
    assert [w.path.split("/")[1] for w in model.trainable_weights] == ["predictions", "predictions"]
    unfreeze(model, top_layers=1)
    assert n_trainable(model) > 2
    assert model.predict(np.zeros((2, 6, 3), "float32"), verbose=0).shape == (2, 3)
