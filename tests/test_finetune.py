"""Tests for kerafine.finetune: the two phases, frozen-feature caching, callbacks, bad input."""

import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerafine import transfer
from kerafine.errors import DataError, KerafineError
from kerafine.finetune import FineTuneResult, fine_tune
from kerafine.transfer import BatchNormWarning, backbone_of, build_transfer_model


def conv_backbone():
    inputs = keras.Input((6, 6, 2), name="image")
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="relu1")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name="convnet")


def dict_backbone():
    num = keras.Input((3,), name="num")
    cat = keras.Input((1,), name="cat", dtype="int32")
    emb = keras.layers.Flatten(name="flat")(keras.layers.Embedding(4, 2, name="emb")(cat))
    x = keras.layers.Dense(4, activation="relu", name="dense")(keras.layers.Concatenate(name="concat")([num, emb]))
    return keras.Model({"num": num, "cat": cat}, x, name="tabular")


def head(units=1, activation="sigmoid", hidden=0):
    layers = [keras.layers.Dense(hidden, activation="relu", name="hidden")] if hidden else []
    layers.append(keras.layers.Dense(units, activation=activation, name="predictions"))
    return keras.Sequential(layers, name="head")


def image_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 2.0, size=(n, 6, 6, 2)).astype("float32")
    y = (x[:, :3, :, 0].mean(axis=(1, 2)) > 2.0).astype("float32")
    return x, y


def tabular_data(n=40, seed=1):
    rng = np.random.default_rng(seed)
    x = {"num": rng.normal(size=(n, 3)).astype("float32"), "cat": rng.integers(0, 4, size=(n, 1))}
    y = (x["num"][:, 0] + (x["cat"][:, 0] == 2) > 0.5).astype("float32")
    return x, y


def bn_stats(model):
    return [
        keras.ops.convert_to_numpy(v).copy()
        for bn in transfer._batchnorm_layers(backbone_of(model))
        for v in (bn.moving_mean, bn.moving_variance)
    ]


def weights_of(layer):
    return [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]


# ---------------------------------------------------------------------------
# caching equals the slow path


def test_cached_head_phase_equals_full_model_fit():
    keras.utils.set_random_seed(7)
    model = build_transfer_model(conv_backbone(), head(hidden=4))
    start = model.get_weights()
    x, y = image_data()
    xv, yv = image_data(16, seed=3)
    untrained = model.predict(xv, verbose=0)
    runs = {}
    for cache in (True, False):
        model.set_weights(start)
        keras.utils.set_random_seed(11)  # both paths draw the same shuffles
        result = fine_tune(
            model,
            (x, y),
            (xv, yv),
            head_epochs=2,
            finetune_epochs=0,
            head_lr=0.05,
            batch_size=8,
            cache_features=cache,
            shuffle=True,
            verbose=0,
        )
        assert result.features_cached is cache
        runs[cache] = (model.predict(xv, verbose=0), result.head_history.history)
    assert np.abs(runs[True][0] - untrained).max() > 1e-3  # the head did train
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-5, atol=1e-6)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(runs[True][1][key], runs[False][1][key], rtol=1e-5)


def test_cached_phase_with_dict_inputs_validates_like_the_full_model():
    from sklearn.metrics import roc_auc_score

    from kerafine.callbacks.auc_tracker import AUCTracker

    keras.utils.set_random_seed(3)
    model = build_transfer_model(dict_backbone(), head())
    x, y = tabular_data()
    xv, yv = tabular_data(20, seed=5)
    # AUCTracker predicts on the RAW dict validation inputs through self.model (the full model)
    tracker = AUCTracker((xv, yv), ci_level=None)
    result = fine_tune(
        model,
        (x, y),
        (xv, yv),
        head_epochs=4,
        finetune_epochs=0,
        head_lr=0.05,
        metrics=["accuracy"],
        callbacks=[tracker],
        verbose=0,
    )
    assert result.features_cached and result.cache_reason.startswith("frozen backbone")
    assert result.feature_seconds > 0 and result.head_seconds > 0 and result.finetune_history is None
    # the last val_loss was computed on cached features; the full model on raw inputs agrees
    val_loss, val_acc = model.evaluate(xv, yv, verbose=0)
    assert result.head_history.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-5)
    assert result.head_history.history["val_accuracy"][-1] == pytest.approx(val_acc)
    expected_auc = roc_auc_score(yv, model.predict(xv, verbose=0)[:, 0])
    assert result.head_history.history["val_auc"][-1] == pytest.approx(expected_auc, abs=1e-9)


def test_cached_phase_from_a_dataset_equals_the_slow_path():
    keras.utils.set_random_seed(5)
    model = build_transfer_model(conv_backbone(), head())
    start = model.get_weights()
    x, y = image_data(40)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    preds = {}
    for cache in (True, False):
        model.set_weights(start)
        result = fine_tune(
            model, ds, head_epochs=3, finetune_epochs=0, head_lr=0.05, cache_features=cache, shuffle=False, verbose=0
        )
        assert result.features_cached is cache
        preds[cache] = model.predict(x[:8], verbose=0)
    np.testing.assert_allclose(preds[True], preds[False], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# the whole recipe


def test_full_fine_tune_run_trains_head_then_top_with_batchnorm_frozen():
    keras.utils.set_random_seed(1)
    model = build_transfer_model(conv_backbone(), head())
    x, y = image_data()
    bb = backbone_of(model)
    stats, conv1, conv2 = bn_stats(model), weights_of(bb.get_layer("conv1")), weights_of(bb.get_layer("conv2"))
    result = fine_tune(
        model,
        (x, y),
        (x[:16], y[:16]),
        head_epochs=2,
        finetune_epochs=2,
        head_lr=1e-2,
        finetune_lr=1e-2,
        unfreeze_top=3,
        batch_size=16,
        verbose=0,
    )
    assert isinstance(result, FineTuneResult)
    assert result.head_history.epoch == [0, 1] and result.finetune_history.epoch == [2, 3]
    assert result.epochs == 4 and len(result.history["val_loss"]) == 4
    assert result.head_lr == 1e-2 and result.finetune_lr == 1e-2 and result.features_cached
    # phase 2 trained the top 3 layers (conv2 bn2 pool) and nothing below
    for a, b in zip(conv1, weights_of(bb.get_layer("conv1"))):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(conv2[0], weights_of(bb.get_layer("conv2"))[0])
    # BatchNorm statistics never moved, in either phase
    for a, b in zip(stats, bn_stats(model)):
        np.testing.assert_array_equal(a, b)
    assert result.to_dict()["epochs"] == 4
    # left compiled, in its phase-2 state
    assert model.optimizer is not None and len(model.trainable_weights) == 4


def test_loss_is_inferred_from_the_predictions_layer():
    from kerafine.finetune import _check_data, _infer_loss

    x, _ = image_data(6)
    labels = np.arange(6) % 3
    cases = [
        (head(3, "softmax"), labels, "sparse_categorical_crossentropy"),
        (head(3, "softmax"), labels[:, None], "sparse_categorical_crossentropy"),
        (head(3, "softmax"), np.eye(3, dtype="float32")[labels], "categorical_crossentropy"),
        (head(1, None), labels.astype("float32"), "mean_squared_error"),
        (head(2, "sigmoid"), np.eye(3, dtype="float32")[labels][:, :2], "binary_crossentropy"),
    ]
    for h, y, expected in cases:
        model = build_transfer_model(conv_backbone(), h)
        assert _infer_loss(model, backbone_of(model), _check_data((x, y), "train_data")) == expected
    ds = tf.data.Dataset.from_tensor_slices((x, np.eye(3, dtype="float32")[labels])).batch(2)
    model = build_transfer_model(conv_backbone(), head(3, "softmax"))
    assert _infer_loss(model, backbone_of(model), _check_data(ds, "train_data")) == "categorical_crossentropy"


def test_loaded_model_is_fine_tuned_with_cached_features(tmp_path):
    keras.utils.set_random_seed(4)
    model = build_transfer_model(conv_backbone(), head())
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x, y = image_data(24)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BatchNormWarning)
        result = fine_tune(loaded, (x, y), head_epochs=1, finetune_epochs=0, verbose=0)
    assert result.features_cached


# ---------------------------------------------------------------------------
# hand-made models, BatchNorm warning, when not to cache


def test_hand_made_model_without_training_false_warns_and_is_not_cached_with_dropout():
    keras.utils.set_random_seed(6)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, name="c")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dropout(0.3, name="drop")(keras.layers.GlobalAveragePooling2D(name="gap")(x))
    base = keras.Model(inputs, x, name="base")
    raw = keras.Input((6, 6, 2))
    model = keras.Model(raw, keras.layers.Dense(1, activation="sigmoid", name="predictions")(base(raw)))
    base.trainable = True  # the classic mistake: BN trainable and running in training mode
    stats = bn_stats(model)
    x, y = image_data(16)
    with pytest.warns(BatchNormWarning, match=r"\['base/bn'\]"):
        result = fine_tune(model, (x, y), head_epochs=1, finetune_epochs=1, verbose=0)
    assert not result.features_cached and "'drop'" in result.cache_reason
    for a, b in zip(stats, bn_stats(model)):  # fine_tune kept them frozen anyway
        np.testing.assert_array_equal(a, b)


def test_cache_features_false_and_no_head_epochs_skip_caching():
    model = build_transfer_model(dict_backbone(), head())
    x, y = tabular_data(16)
    r = fine_tune(model, (x, y), head_epochs=1, finetune_epochs=0, cache_features=False, verbose=0)
    assert not r.features_cached and r.cache_reason == "cache_features=False"
    r = fine_tune(model, (x, y), head_epochs=0, finetune_epochs=1, verbose=0)
    assert r.head_history is None and r.finetune_history.epoch == [0] and not r.features_cached


def test_resuming_callback_turns_auto_caching_off(tmp_path):
    model = build_transfer_model(dict_backbone(), head())
    x, y = tabular_data(16)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    r = fine_tune(model, (x, y), head_epochs=1, finetune_epochs=0, callbacks=[backup], verbose=0)
    assert not r.features_cached and "BackupAndRestore" in r.cache_reason


# ---------------------------------------------------------------------------
# callbacks in the cached phase see the full model


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.models, self.lrs, self.heads = [], [], []

    def on_epoch_end(self, epoch, logs=None):
        self.models.append(self.model)
        self.lrs.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        self.heads.append(self.model.get_layer("head").get_weights())


def test_callbacks_in_cached_phase_see_the_full_model(tmp_path):
    keras.utils.set_random_seed(8)
    model = build_transfer_model(conv_backbone(), head())
    x, y = image_data(32)
    recorder = Recorder()
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "last.keras"), monitor="loss")
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=0, min_delta=1e9, factor=0.5)
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9, restore_best_weights=True)
    result = fine_tune(
        model,
        (x, y),
        head_epochs=5,
        finetune_epochs=0,
        head_lr=0.01,
        callbacks=[checkpoint, reduce, recorder, stop],
        verbose=0,
    )
    assert result.features_cached
    assert all(m is model for m in recorder.models)
    # ReduceLROnPlateau changed the optimizer that was training; EarlyStopping stopped the head-only fit
    assert recorder.lrs == [pytest.approx(0.01), pytest.approx(0.005)]
    assert result.head_history.epoch == [0, 1]
    # ModelCheckpoint saved the full model (raw image input) as it was after epoch 1 ...
    saved = keras.models.load_model(tmp_path / "last.keras")
    assert [t.name for t in saved.inputs] == ["image"]
    for a, b in zip(saved.get_layer("head").get_weights(), recorder.heads[1]):
        np.testing.assert_array_equal(a, b)
    # ... and EarlyStopping restored the epoch-0 head into the model
    assert not np.array_equal(recorder.heads[0][0], recorder.heads[1][0])
    for a, b in zip(model.get_layer("head").get_weights(), recorder.heads[0]):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# with kerafine's own backbones and heads


def test_fine_tune_with_kerafine_sequence_encoder_and_head():
    from kerafine import backbones, heads

    keras.utils.set_random_seed(9)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5, 2)).astype("float32")
    y = (x[:, -1, 0] > 0).astype("int64")
    model = build_transfer_model(backbones.sequence_encoder((5, 2), units=(4,)), heads.classification(2))
    result = fine_tune(model, (x, y), head_epochs=1, finetune_epochs=0, verbose=0)
    assert result.features_cached and model.loss == "binary_crossentropy"


# ---------------------------------------------------------------------------
# bad input, rejected before any work


@pytest.fixture
def small():
    model = build_transfer_model(conv_backbone(), head())
    x, y = image_data(8)
    return model, (x, y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"head_epochs": -1}, r"argument `head_epochs`: received -1; expected an int >= 0"),
        ({"finetune_epochs": 2.5}, r"argument `finetune_epochs`: received 2.5; expected an int >= 0"),
        ({"head_epochs": True}, r"argument `head_epochs`: received True"),
        ({"head_epochs": 0, "finetune_epochs": 0}, r"`finetune_epochs`: received 0; expected an int >= 1 when"),
        ({"head_lr": -0.1}, r"argument `head_lr`: received -0.1; expected a positive finite float, .*\"find\""),
        ({"finetune_lr": float("nan")}, r"argument `finetune_lr`: received nan"),
        ({"head_lr": "fast"}, r"argument `head_lr`: received 'fast'"),
        ({"cache_features": "yes"}, r"argument `cache_features`: received 'yes'; expected \"auto\", True or False"),
        ({"unfreeze_top": 99}, r"argument `unfreeze_top`: received 99; .*it has 6 layers"),
        ({"unfreeze_top": "conv3"}, r"argument `unfreeze_top`: received 'conv3'.*Did you mean \"conv2\" or \"conv1\""),
        ({"verbose": 3}, r"argument `verbose`: received 3"),
        ({"batch_size": 0}, r"argument `batch_size`: received 0"),
        ({"optimizer": "adamm"}, r"argument `optimizer`: received 'adamm'"),
        ({"callbacks": ["stop"]}, r"argument `callbacks`"),
    ],
)
def test_bad_arguments_fail_before_any_work(small, kwargs, match):
    model, data = small
    before = weights_of(model)
    with pytest.raises(KerafineError, match=match):
        fine_tune(model, data, **kwargs)
    assert getattr(model, "optimizer", None) is None  # never compiled
    for a, b in zip(before, weights_of(model)):
        np.testing.assert_array_equal(a, b)


def test_loss_cannot_be_inferred_without_a_predictions_layer():
    model = build_transfer_model(conv_backbone(), keras.layers.Dense(1, name="out"))
    with pytest.raises(KerafineError, match=r"argument `loss`: received None; .*no Dense layer named \"predictions\""):
        fine_tune(model, image_data(8))
    model = build_transfer_model(conv_backbone(), head(3, "softmax"))
    with pytest.raises(KerafineError, match=r"labels of shape \(8, 2\) fit neither sparse"):
        fine_tune(model, (image_data(8)[0], np.zeros((8, 2))))
    model = build_transfer_model(conv_backbone(), head(1, "relu"))
    with pytest.raises(KerafineError, match=r"activation 'relu' has no default loss"):
        fine_tune(model, image_data(8))


def test_bad_data_is_rejected(small):
    model, (x, y) = small
    with pytest.raises(DataError, match=r"`train_data`: the inputs have 8 rows but the labels have 7"):
        fine_tune(model, (x, y[:7]))
    with pytest.raises(DataError, match=r"`validation_data`: received \[1, 2\]"):
        fine_tune(model, (x, y), validation_data=[1, 2])
    with pytest.raises(DataError, match=r"`train_data`.*expected a finite dataset.*repeat"):
        fine_tune(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat())
    with pytest.raises(DataError, match=r"`train_data`.*\(x, y\) or \(x, y, sample_weight\) batches"):
        fine_tune(model, tf.data.Dataset.from_tensor_slices(x).batch(4))
    with pytest.raises(KerafineError, match=r"argument `model`: received 'model'"):
        fine_tune("model", (x, y))
    assert getattr(model, "optimizer", None) is None


def test_head_lr_find_uses_the_lr_find_suggestion(caplog):
    keras.utils.set_random_seed(10)
    inputs = keras.Input((4,))
    model = build_transfer_model(
        keras.Model(inputs, keras.layers.Dense(6, activation="tanh")(inputs), name="enc"), head()
    )
    x = np.random.default_rng(2).normal(size=(80, 4)).astype("float32")
    y = (x[:, 0] - x[:, 1] > 0).astype("float32")
    with caplog.at_level("INFO", logger="kerafine.finetune"):
        result = fine_tune(model, (x, y), head_epochs=1, finetune_epochs=0, head_lr="find", batch_size=8, verbose=0)
    lr, rule = result.lr_found["head"]
    assert result.head_lr == lr and rule in ("steepest", "min/10") and 0 < lr < 1.0
    # the optimizer that trained the head (shared by the full model in the cached phase) ran at it
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(lr, rel=1e-6)
    assert f"lr_find suggested {lr:.3g} (rule: {rule})" in caplog.text
    with pytest.raises(KerafineError, match=r"`finetune_lr`: received 'find'; .*at least 10 batches .* there are 3"):
        fine_tune(model, (x[:24], y[:24]), finetune_lr="find", batch_size=8)


# ---------------------------------------------------------------------------
# checkpointing the cached head phase: killed, resumed, bit-identical, features not recomputed


def _run_finetune_script(config):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = str(Path(__file__).with_name("_finetune_kill_script.py"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, script, json.dumps(config)], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.slow
def test_cached_head_phase_killed_and_resumed_ends_bit_identical_without_recomputing_features(tmp_path):
    reference = _run_finetune_script({"directory": str(tmp_path / "ref"), "out": str(tmp_path / "ref.npz")})
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed = _run_finetune_script(
        {"directory": str(tmp_path / "run"), "out": str(tmp_path / "run.npz"), "kill_epoch": 3}
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (tmp_path / "run.npz").exists()
    features = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("features-"))
    assert len(features) == 1  # written (checksummed) before the head phase started
    resumed = _run_finetune_script({"directory": str(tmp_path / "run"), "out": str(tmp_path / "run.npz")})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ref, run = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "run.npz")
    # The uninterrupted run computed the features once (train + validation); the resumed run loaded them.
    assert int(ref["backbone_predict_calls"]) == 2 and not bool(ref["features_loaded"])
    assert int(run["backbone_predict_calls"]) == 0 and bool(run["features_loaded"]) and bool(run["features_cached"])
    assert bool(run["head_resumed"]) and not bool(ref["head_resumed"])
    weights = sorted(k for k in ref.files if k.startswith("w"))
    assert weights and weights == sorted(k for k in run.files if k.startswith("w"))
    for k in weights:
        np.testing.assert_array_equal(ref[k], run[k], err_msg=k)


def test_auto_caching_stays_on_with_checkpoint_restart_and_checkpoints_the_head_phase(tmp_path):
    from kerafine.callbacks.checkpoint_restart import CheckpointRestart

    model = build_transfer_model(dict_backbone(), head())
    x, y = tabular_data(16)
    ckpt = CheckpointRestart(tmp_path / "c", background_save=False)
    r = fine_tune(model, (x, y), head_epochs=2, finetune_epochs=0, callbacks=[ckpt], batch_size=8, verbose=0)
    assert r.features_cached and not r.features_loaded
    assert [p.name for p in ckpt.checkpoints()][0] == "ckpt-00000003"  # initial + one per head epoch
    # A second run of the same script resumes the finished head phase: nothing trains, nothing is recomputed.
    again = fine_tune(
        model,
        (x, y),
        head_epochs=2,
        finetune_epochs=0,
        callbacks=[CheckpointRestart(tmp_path / "c")],
        batch_size=8,
        verbose=0,
    )
    assert again.features_loaded and again.head_history.epoch == []


def test_a_single_class_training_split_warns_naming_the_split_and_the_counts():
    import keras

    import kerafine

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    backbone = keras.Model(inputs, keras.layers.Dense(8, activation="relu")(inputs), name="enc")
    head = keras.Sequential([keras.layers.Dense(1, activation="sigmoid", name="predictions")], name="head")
    model = kerafine.build_transfer_model(backbone, head)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    with pytest.warns(UserWarning, match=r"The training split holds a single class \(0: 32; 32 rows\)"):
        kerafine.fine_tune(model, (x, np.zeros(32, "float32")), head_epochs=1, finetune_epochs=0, verbose=0)


# ---------------------------------------------------------------------------
# dead-model alarms (issue 19) and class weights


def _softmax_model(collapsed):
    from tests._dead_models import bn_backbone

    keras.utils.set_random_seed(0)
    return build_transfer_model(bn_backbone(collapsed), keras.layers.Dense(3, activation="softmax", name="predictions"))


def test_constant_backbone_features_are_flagged_before_training_with_the_batchnorm_hint():
    from kerafine.callbacks.training_monitor import TrainingProblemWarning
    from tests._dead_models import images

    x = images(64)
    y = np.arange(64) % 3
    with pytest.warns(TrainingProblemWarning, match=r"near-constant features: 4 of 4 .*BatchNorm moving statistics"):
        result = fine_tune(
            _softmax_model(True), (x, y), validation_data=(x, y), head_epochs=1, finetune_epochs=0, verbose=0
        )
    kinds = [p.kind for p in result.problems]
    assert kinds[0] == "constant_features" and result.problems[0].epoch == 0
    assert result.problems[0].values["first_collapsing_batchnorm"] == "bn"
    # The features are constant, so every validation row gets one class: flagged too, after training.
    assert "one_class_predictions" in kinds
    assert result.to_dict()["problems"][0]["kind"] == "constant_features"


def test_a_healthy_backbone_gives_no_dead_model_alarm():
    from kerafine.callbacks.training_monitor import TrainingProblemWarning
    from tests._dead_models import images

    x = images(64)
    model = _softmax_model(False)
    # Labels the frozen features separate by construction (terciles of one feature): a head that learns
    # predicts more than one class, whatever the random backbone.
    f = keras.ops.convert_to_numpy(backbone_of(model)(x, training=False))
    score = f[:, 0] - f[:, 1]
    y = np.searchsorted(np.quantile(score, [1 / 3, 2 / 3]), score)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingProblemWarning)
        result = fine_tune(
            model,
            (x, y),
            validation_data=(x, y),
            head_epochs=30,
            finetune_epochs=0,
            head_lr=0.05,
            batch_size=16,
            verbose=0,
        )
    assert result.problems == ()
    assert len(np.unique(model.predict(x, verbose=0).argmax(axis=1))) > 1


def test_a_model_predicting_one_class_on_validation_is_flagged():
    from kerafine.callbacks.training_monitor import TrainingProblemWarning

    x, y = image_data(48)
    keras.utils.set_random_seed(0)
    model = build_transfer_model(conv_backbone(), head())
    out = model.get_layer("head").get_layer("predictions")
    out.kernel.assign(np.zeros_like(keras.ops.convert_to_numpy(out.kernel)))
    out.bias.assign(np.full((1,), -20.0, "float32"))  # sigmoid(-20): class 0 for every row
    with pytest.warns(TrainingProblemWarning, match=r"predicts class 0 for all 48 validation rows .*labels hold 2"):
        result = fine_tune(
            model, (x, y), validation_data=(x, y), head_epochs=1, finetune_epochs=0, head_lr=1e-9, verbose=0
        )
    (problem,) = result.problems
    assert problem.kind == "one_class_predictions" and problem.values["rows"] == 48


def test_class_weight_balanced_is_scikit_learns_and_reaches_both_phases():
    from sklearn.utils.class_weight import compute_class_weight

    x, _ = image_data(48)
    signal = x[:, :3, :, 0].mean(axis=(1, 2))
    y = (signal > np.quantile(signal, 0.75)).astype("float32")  # 12 of 48 positive: "balanced" is not all ones

    def run(**kwargs):
        keras.utils.set_random_seed(0)
        model = build_transfer_model(conv_backbone(), head())
        result = fine_tune(
            model,
            kwargs.pop("data"),
            head_epochs=1,
            finetune_epochs=1,
            unfreeze_top=2,
            shuffle=False,
            verbose=0,
            **kwargs,
        )
        return result, model.get_weights()

    result, weighted = run(data=(x, y), class_weight="balanced")
    expected = compute_class_weight("balanced", classes=np.unique(y), y=y)
    assert sorted(result.class_weight) == [0, 1]
    np.testing.assert_allclose([result.class_weight[0], result.class_weight[1]], expected, rtol=1e-12)
    # Keras turns class weights into per-sample weights: the same run with those sample weights
    # gives the same weights after both phases, and an unweighted run does not.
    w = np.where(y == 1, expected[1], expected[0]).astype("float32")
    _, by_sample = run(data=(x, y, w))
    _, plain = run(data=(x, y))
    for a, b in zip(weighted, by_sample):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(weighted, plain))


@pytest.mark.parametrize(
    "class_weight, match",
    [
        ("balance", r"`class_weight`: received 'balance'; expected \"balanced\""),
        ({0: 1.0, 1: -2.0}, r"`class_weight`.*finite weights >= 0 \(class 1 has -2.0\)"),
        ({0: 1.0, 3: 2.0}, r"`class_weight`.*keys among the classes of the training labels \[0, 1\] \(got the key 3\)"),
        ({0: float("nan")}, r"finite weights >= 0"),
        ([1.0, 2.0], r"`class_weight`: received \[1.0, 2.0\]"),
    ],
)
def test_bad_class_weight_is_refused_before_any_work(class_weight, match):
    x, y = image_data(16)
    model = build_transfer_model(conv_backbone(), head())
    before = model.get_weights()
    with pytest.raises(KerafineError, match=match):
        fine_tune(model, (x, y), head_epochs=1, finetune_epochs=0, class_weight=class_weight, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert getattr(model, "optimizer", None) is None  # never compiled: no work started


# ---------------------------------------------------------- non-finite data (issue 19)


def _relu_cnn_transfer():
    inputs = keras.Input((6, 6, 2), name="image")
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return build_transfer_model(keras.Model(inputs, x, name="convnet"), head())


def test_two_nan_images_are_refused_before_training_naming_the_data_count_and_rows():
    x, y = image_data()
    x[[16, 17]] = np.nan
    model = _relu_cnn_transfer()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(
        DataError,
        match=r"`train_data`: 2 of 48 rows hold NaN or inf \(inputs: 2; first rows \[16, 17\]\)"
        r".*non_finite=\"drop\"",
    ):
        fine_tune(model, (x, y), head_epochs=1, finetune_epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # nothing trained


@pytest.mark.parametrize(
    "where, match",
    [
        ("labels", r"`validation_data`: 1 of 48 rows hold NaN or inf \(labels: 1; first rows \[5\]\)"),
        ("inf", r"`validation_data`: 1 of 48 rows hold NaN or inf \(inputs: 1; first rows \[7\]\)"),
        ("weights", r"`validation_data`: 1 of 48 rows hold NaN or inf \(sample weights: 1; first rows \[3\]\)"),
    ],
)
def test_nan_or_inf_in_validation_labels_inputs_or_weights_is_refused(where, match):
    x, y = image_data()
    w = np.ones(len(y), "float32")
    if where == "labels":
        y = y.copy()
        y[5] = np.nan
    elif where == "inf":
        x[7, 0, 0, 0] = -np.inf
    else:
        w[3] = np.nan
    with pytest.raises(DataError, match=match):
        fine_tune(
            _relu_cnn_transfer(),
            image_data(seed=1),
            validation_data=(x, y, w),
            head_epochs=1,
            finetune_epochs=0,
            verbose=0,
        )


def test_nan_in_one_named_input_is_named_by_its_key():
    x, y = tabular_data()
    x["num"][[2, 9, 11], 1] = np.nan
    model = build_transfer_model(dict_backbone(), head())
    with pytest.raises(
        DataError, match=r"3 of 40 rows hold NaN or inf \(inputs\['num'\]: 3; first rows \[2, 9, 11\]\)"
    ):
        fine_tune(model, (x, y), head_epochs=1, finetune_epochs=0, verbose=0)


def test_non_finite_drop_trains_on_the_finite_rows_and_says_how_many_it_dropped(seeded):
    x, y = image_data()
    x[[16, 17]] = np.nan
    model = _relu_cnn_transfer()
    with pytest.warns(UserWarning, match=r"dropped the rows of `train_data` holding NaN or inf: 2 of 48 rows"):
        result = fine_tune(
            model, (x, y), head_epochs=1, finetune_epochs=1, verbose=0, non_finite="drop", cache_features=False
        )
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert np.isfinite(result.history["loss"]).all()


def test_non_finite_drop_of_every_row_is_refused():
    x, y = image_data(n=8)
    x[:] = np.nan
    with pytest.raises(DataError, match="would leave no row to train on"):
        fine_tune(_relu_cnn_transfer(), (x, y), head_epochs=1, finetune_epochs=0, verbose=0, non_finite="drop")


def test_unknown_non_finite_option_is_refused():
    with pytest.raises(KerafineError, match=r"`non_finite`: received 'skip'; expected 'raise' or 'drop'"):
        fine_tune(_relu_cnn_transfer(), image_data(), head_epochs=1, verbose=0, non_finite="skip")


def test_a_model_that_imputes_nan_trains_and_evaluates_on_nan_cells_but_inf_is_still_refused(seeded):
    import pandas as pd

    import kerafine
    from kerafine.backbones import tabular_encoder

    rng = np.random.default_rng(4)
    n = 120
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.integers(0, 3, n)})
    y = (frame["a"] + frame["c"] > 1).astype("float32").to_numpy()
    frame.loc[[3, 50], "a"] = np.nan
    encoder = tabular_encoder(["a", "b"], ["c"], hidden=(4,), data=frame, impute="median")
    model = build_transfer_model(encoder, head())
    feed = {c: frame[c].to_numpy() for c in ("a", "b", "c")}
    fine_tune(model, (feed, y), head_epochs=1, finetune_epochs=1, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    report = kerafine.evaluate(model, (feed, y), threshold=0.5)
    assert (report.n_samples, report.nonfinite_excluded) == (n, 0)
    feed["b"] = feed["b"].copy()
    feed["b"][7] = np.inf
    with pytest.raises(DataError, match=r"1 of 120 rows hold NaN or inf \(inputs\['b'\]: 1; first rows \[7\]\)"):
        fine_tune(model, (feed, y), head_epochs=1, finetune_epochs=0, verbose=0)
    with pytest.raises(DataError, match=r"1 of 120 rows hold NaN or inf"):
        kerafine.evaluate(model, (feed, y), threshold=0.5)
