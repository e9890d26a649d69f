import csv
import warnings

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from kerafine import tensorboard
from kerafine.callbacks.auc_tracker import AUCTracker
from kerafine.callbacks.state import collect_states, restore_states
from kerafine.errors import DataError, KerafineError
from kerafine.metrics import UndefinedMetricWarning, pr_auc, roc_auc


def _data(n=96, seed=0, flip=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x[:, 0] + 0.7 * rng.normal(size=n) > 0).astype("float32")
    return x, (1 - y if flip else y)


def _model(seed=0, lr=0.05, outputs=1, eager=True):
    keras.utils.set_random_seed(seed)
    activation = "sigmoid" if outputs == 1 else "softmax"
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(outputs, activation=activation)])
    loss = "binary_crossentropy" if outputs == 1 else "sparse_categorical_crossentropy"
    model.compile(keras.optimizers.SGD(lr), loss, run_eagerly=eager)
    return model


class _Recorder(keras.callbacks.Callback):
    """Placed after the tracker: what a later callback sees in the logs."""

    def __init__(self, x_val, y_val):
        super().__init__()
        self.x_val, self.y_val = x_val, y_val
        self.seen, self.expected = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(dict(logs))
        p = self.model.predict(self.x_val, verbose=0).ravel()
        self.expected.append(roc_auc_score(self.y_val, p))


def test_val_auc_in_history_equals_sklearn_on_the_models_predictions_at_every_epoch():
    x, y = _data()
    xv, yv = _data(64, seed=1)
    model = _model(eager=False)
    recorder = _Recorder(xv, yv)
    tracker = AUCTracker((xv, yv))
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[tracker, recorder])
    values = history.history["val_auc"]
    np.testing.assert_allclose(values, recorder.expected, rtol=0, atol=1e-12)
    for logs in recorder.seen:
        assert logs["val_auc_lower"] <= logs["val_auc"] <= logs["val_auc_upper"]
    assert len(set(values)) > 1  # the model did change
    # Best value and epoch: tracked, read-only.
    assert tracker.best == max(values) and tracker.best_epoch == int(np.argmax(values))
    with pytest.raises(AttributeError):
        tracker.best = 0.0


def test_reduce_lr_on_plateau_and_early_stopping_react_to_val_auc():
    from kerafine.callbacks.early_stopping import EarlyStopping

    x, y = _data()
    model = _model(lr=1e-9)  # frozen in practice: val_auc never improves after epoch 0
    # min_delta 0.01: a rank swap of two near-tied scores moves the AUC by far less.
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="val_auc", mode="max", patience=1, factor=0.5, min_delta=0.01)
    stop = EarlyStopping(monitor="val_auc", mode="max", patience=3, min_delta=0.01)
    keras_stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=2, min_delta=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a missing key would make the monitors warn
        history = model.fit(x, y, epochs=10, verbose=0, callbacks=[AUCTracker((x, y)), reduce, keras_stop, stop])
    epochs = len(history.history["loss"])
    assert epochs == 3  # Keras EarlyStopping: best at epoch 0, patience 2
    assert keras_stop.stopped_epoch == 2 and stop.wait == 2
    lr = history.history["learning_rate"]
    assert lr[-1] < lr[0]  # ReduceLROnPlateau halved it after one flat epoch


def test_a_monitor_placed_before_the_tracker_gets_a_warning_with_the_fix(tmp_path):
    x, y = _data(32)
    model = _model()
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="val_auc", mode="max")
    logger = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=1, verbose=0, callbacks=[reduce, logger, AUCTracker((x, y))])
    messages = [str(w.message) for w in caught]
    assert any(
        "ReduceLROnPlateau(monitor='val_auc') comes before AUCTracker" in m and "Put AUCTracker first" in m
        for m in messages
    )
    assert any(m.startswith("CSVLogger comes before AUCTracker") for m in messages)
    # and the misplaced monitor indeed never saw the key:
    assert any("Learning rate reduction is conditioned on metric `val_auc`" in m for m in messages)


def test_rare_positives_exact_auc_differs_from_keras_bucketed_auc():
    # The case: 200,000 validation rows, 2% positives, a confident model.
    # Most scores crowd below the first of Keras's 200 thresholds, which counts
    # them as ties. keras.metrics.AUC adds batch counts per bucket, so one
    # update over all rows gives what a fit's batch-by-batch evaluation gives.
    rng = np.random.default_rng(3)
    n = 200_000
    y = (rng.random(n) < 0.02).astype("float32")
    logit = np.where(y == 1, rng.normal(-2.5, 2.5, n), rng.normal(-7.0, 1.5, n))
    scores = (1 / (1 + np.exp(-logit))).astype("float32")
    bucketed = keras.metrics.AUC(num_thresholds=200)
    bucketed.update_state(y, scores)
    exact = roc_auc(y, scores)
    assert exact == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert float(bucketed.result()) < exact - 0.02


def test_single_class_validation_labels_warn_once_and_write_nan():
    x, y = _data(32)
    model = _model()
    with pytest.warns(UndefinedMetricWarning) as caught:
        history = model.fit(x, y, epochs=2, verbose=0, callbacks=[AUCTracker((x, np.ones_like(y)), curve="both")])
    assert sum("AUCTracker" in str(w.message) for w in caught) == 1
    assert np.isnan(history.history["val_auc"]).all() and np.isnan(history.history["val_pr_auc"]).all()
    assert len(history.history["loss"]) == 2


def test_skipped_epochs_leave_the_keys_out_instead_of_stale_values():
    x, y = _data(32)
    recorder = _Recorder(x, y)
    tracker = AUCTracker((x, y), every_n_epochs=2)
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="val_auc", mode="max")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _model().fit(x, y, epochs=2, verbose=0, callbacks=[tracker, recorder, reduce])
    assert ["val_auc" in logs for logs in recorder.seen] == [False, True]
    np.testing.assert_allclose(history.history["val_auc"], [recorder.expected[1]], atol=1e-12)
    messages = [str(w.message) for w in caught]
    assert any("writes only every 2 epochs" in m and "every_n_epochs=1" in m for m in messages)
    # Keras's monitor skips the epoch without the key (a warning), it does not count it as a bad epoch.
    assert sum("conditioned on metric `val_auc`" in m for m in messages) == 1 and reduce.wait == 0


def test_multiclass_writes_the_average_and_one_key_per_class():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(90, 4)).astype("float32")
    y = np.argmax(x[:, :3] + 0.5 * rng.normal(size=(90, 3)), axis=1)
    model = _model(outputs=3)
    tracker = AUCTracker((x, y), curve="both", class_names=["a", "b", "c"])
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[tracker])
    p = model.predict(x, verbose=0)
    assert history.history["val_auc"][0] == pytest.approx(roc_auc_score(y, p, multi_class="ovr"), abs=1e-12)
    per_class = roc_auc(y, p, average=None)
    assert [history.history[f"val_auc_{c}"][0] for c in "abc"] == pytest.approx(per_class.tolist(), abs=1e-12)
    assert history.history["val_pr_auc_b"][0] == pytest.approx(pr_auc(y, p, average=None)[1], abs=1e-12)
    assert "val_auc_lower" not in history.history  # intervals are binary only


def test_weighted_average_equals_sklearn_and_the_metrics_function():
    # Imbalanced classes, so "weighted" and "macro" differ; sample weights count in the support.
    rng = np.random.default_rng(6)
    x = rng.normal(size=(120, 4)).astype("float32")
    y = np.argmax(x[:, :3] + [1.0, 0.0, -0.8] + 0.5 * rng.normal(size=(120, 3)), axis=1)
    w = rng.uniform(0.5, 2.0, size=120)
    model = _model(outputs=3)
    tracker = AUCTracker((x, y, w), curve="both", average="weighted")
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[tracker])
    p = model.predict(x, verbose=0)
    expected = roc_auc_score(y, p, multi_class="ovr", average="weighted", sample_weight=w)
    assert history.history["val_auc"][0] == pytest.approx(expected, abs=1e-12)
    assert history.history["val_auc"][0] != pytest.approx(roc_auc(y, p, sample_weight=w, average="macro"), abs=1e-6)
    assert history.history["val_pr_auc"][0] == pytest.approx(
        pr_auc(y, p, sample_weight=w, average="weighted"), abs=1e-12
    )


def test_predictions_are_shared_between_trackers(monkeypatch):
    x, y = _data(32)
    model = _model()
    calls = []
    original = model.predict
    monkeypatch.setattr(model, "predict", lambda *a, **k: calls.append(1) or original(*a, **k))
    roc = AUCTracker((x, y), name="val_auc")
    pr = AUCTracker((x, y), name="val_ap_auc", curve="pr")
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[roc, pr])
    assert len(calls) == 2  # one forward pass per epoch for both trackers
    assert "val_ap_pr_auc" in history.history and "val_auc" in history.history


def test_state_round_trip_survives_on_train_begin_once():
    x, y = _data(32)
    tracker = AUCTracker((x, y))
    tracker.set_state({"version": 1, "best": 0.91, "best_epoch": 4})
    other = AUCTracker((x, y), name="val_other_auc")
    states = collect_states([tracker, other])
    assert set(states) == {"AUCTracker[val_auc]", "AUCTracker[val_other_auc]"}
    fresh = AUCTracker((x, y))
    restored, missing = restore_states([fresh], states)
    assert restored == ["AUCTracker[val_auc]"] and missing == []
    fresh.on_train_begin()
    assert (fresh.best, fresh.best_epoch) == (0.91, 4)
    fresh.on_train_begin()  # a later fit starts clean
    assert fresh.best is None and fresh.best_epoch is None


def test_best_survives_a_restart_through_checkpoint_restart(tmp_path):
    from kerafine.callbacks.checkpoint_restart import CheckpointRestart

    # Training on flipped labels makes the validation AUC fall: epoch 0 is the best.
    x, y = _data(64, flip=True)
    xv, yv = _data(64)
    first = AUCTracker((xv, yv), ci_level=None)
    _model(lr=0.5).fit(
        x, y, epochs=2, shuffle=False, verbose=0, callbacks=[first, CheckpointRestart(tmp_path / "ckpt")]
    )
    assert first.best_epoch == 0
    second = AUCTracker((xv, yv), ci_level=None)
    history = _model(lr=0.5).fit(
        x, y, epochs=4, shuffle=False, verbose=0, callbacks=[second, CheckpointRestart(tmp_path / "ckpt")]
    )
    assert len(history.history["val_auc"]) == 2  # only epochs 2 and 3 ran
    assert (second.best, second.best_epoch) == (first.best, 0)


def test_tensorboard_and_csv_logger_record_the_scalars_curve_images_and_pr_curves(tmp_path):
    x, y = _data(48)
    log_dir = tmp_path / "logs"
    path = tmp_path / "log.csv"
    callbacks = [
        AUCTracker((x, y), curve="both", log_dir=log_dir),
        keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False),
        keras.callbacks.CSVLogger(str(path)),
    ]
    history = _model().fit(x, y, epochs=2, verbose=0, callbacks=callbacks)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 2 and {"val_auc", "val_pr_auc", "val_auc_lower", "val_auc_upper"} <= set(rows[0])
    assert [float(r["val_pr_auc"]) for r in rows] == pytest.approx(history.history["val_pr_auc"], abs=1e-12)
    tensorboard.flush()
    scalars = tensorboard.read_scalars(log_dir)
    assert [step for step, _ in scalars["val_auc"]] == [0, 1]
    assert [v for _, v in scalars["val_auc"]] == pytest.approx(history.history["val_auc"], abs=1e-6)
    tags = tensorboard.read_tags(log_dir)
    assert {"val_auc/roc_curve", "val_auc/pr_curve"} <= tags["images"]
    assert "val_auc/pr/pr_curves" in tags["pr_curves"]
    # Keras's own TensorBoard, later in the list, logged the key too.
    keras_side = tensorboard.read_scalars(log_dir, subdir="validation")
    assert [v for _, v in keras_side["epoch_auc"]] == pytest.approx(history.history["val_auc"], abs=1e-6)
    assert "epoch_pr_auc" in keras_side and "epoch_auc_lower" in keras_side


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"curve": "det"}, "`curve`: received 'det'"),
        ({"average": "micro"}, "`average`: received 'micro'"),
        ({"every_n_epochs": 0}, "`every_n_epochs`: received 0"),
        ({"ci_level": 1.0}, "`ci_level`: received 1.0"),
        ({"name": ""}, "`name`"),
    ],
)
def test_bad_arguments_raise_before_fit(kwargs, message):
    x, y = _data(8)
    with pytest.raises(KerafineError, match=message):
        AUCTracker((x, y), **kwargs)


def test_empty_or_unlabelled_validation_data_raise_before_fit():
    with pytest.raises(DataError, match="0 rows"):
        AUCTracker((np.zeros((0, 4), "float32"), np.zeros(0)))
    with pytest.raises(DataError, match="without labels"):
        AUCTracker(np.zeros((4, 4), "float32"))


def test_tf_dataset_validation_data_and_logits_are_accepted():
    import tensorflow as tf

    x, y = _data(64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])  # logits, outside [0, 1]
    model.compile("sgd", keras.losses.BinaryCrossentropy(from_logits=True), run_eagerly=True)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[AUCTracker(dataset)])
    assert history.history["val_auc"][0] == pytest.approx(
        roc_auc_score(y, model.predict(x, verbose=0).ravel()), abs=1e-12
    )


def test_tensorboard_gets_val_pr_auc_also_when_curve_is_roc(tmp_path):
    from sklearn.metrics import average_precision_score

    x, y = _data()
    model = _model()
    tracker = AUCTracker((x, y), log_dir=tmp_path)  # curve="roc": the logs hold no PR-AUC
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[tracker])
    assert "val_pr_auc" not in history.history
    tensorboard.flush(tmp_path)
    scalars = tensorboard.read_scalars(tmp_path)
    expected = average_precision_score(y, model.predict(x, verbose=0)[:, 0])
    assert [s for s, _ in scalars["val_pr_auc"]] == [0]
    assert scalars["val_pr_auc"][0][1] == pytest.approx(expected, abs=1e-6)
