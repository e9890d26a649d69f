"""kerafine EarlyStopping: Keras's decisions epoch for epoch, plus restorable state."""

import json
import warnings

import keras
import numpy as np
import pytest

from kerafine import _io
from kerafine.callbacks.early_stopping import EarlyStopping
from kerafine.errors import KerafineError


class _FakeModel:
    """Just what EarlyStopping touches: stop_training and the weights."""

    metrics = []

    def __init__(self):
        self.stop_training = False
        self.epoch = -1
        self.restored = None

    def get_weights(self):
        return [np.array([float(self.epoch)])]

    def set_weights(self, weights):
        self.restored = float(weights[0][0])


def _drive(callback, history, start=0, model=None, begin=True):
    """Feed `history` (list of val_loss) to `callback`; return per-epoch (stop, wait, best, best_epoch)."""
    model = model or _FakeModel()
    callback.set_model(model)
    if begin:
        callback.on_train_begin()
    trace = []
    for epoch in range(start, len(history)):
        model.epoch = epoch
        callback.on_epoch_end(epoch, {"val_loss": history[epoch], "loss": 1.0})
        best = callback.best
        trace.append((model.stop_training, callback.wait, None if best is None else float(best), callback.best_epoch))
        if model.stop_training:
            break
    callback.on_train_end()
    return trace, model


def _histories(n_cases, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n_cases):
        length = int(rng.integers(2, 14))
        kind = rng.integers(3)
        if kind == 0:  # a noisy descent
            h = 1.0 / (1 + np.arange(length)) + rng.normal(0, 0.05, length)
        elif kind == 1:  # values on a coarse grid: exact ties happen
            h = np.round(rng.uniform(0, 1, length), 1)
        else:  # differences near float32 resolution
            h = 0.3 + rng.integers(-2, 3, length) * 1e-8
        yield [float(v) for v in h]


_CASES = [
    dict(patience=0),
    dict(patience=2),
    dict(patience=1, min_delta=0.05),
    dict(patience=2, baseline=0.4),
    dict(patience=1, start_from_epoch=3),
    dict(patience=2, restore_best_weights=True),
    dict(patience=1, baseline=0.5, restore_best_weights=True, start_from_epoch=1),
    dict(patience=3, mode="max", min_delta=0.01),
    dict(patience=0, mode="min", baseline=0.2, restore_best_weights=True),
]


@pytest.mark.parametrize("kwargs", _CASES, ids=[json.dumps(c, sort_keys=True) for c in _CASES])
def test_decisions_match_keras_epoch_for_epoch(kwargs):
    compared = 0
    for history in _histories(40, seed=len(json.dumps(kwargs))):
        ours, our_model = _drive(EarlyStopping("val_loss", **kwargs), history)
        theirs, their_model = _drive(keras.callbacks.EarlyStopping("val_loss", **kwargs), history)
        assert ours == theirs, history
        assert our_model.restored == their_model.restored
        compared += len(ours)
    assert compared > 100


def test_relative_min_delta_needs_that_fraction_of_the_best():
    stop = EarlyStopping("val_loss", min_delta="1%", patience=5)
    trace, _ = _drive(stop, [1.0, 0.995, 0.98, 0.975])
    # 0.995 is within 1% of 1.0 (no improvement); 0.98 beats 0.99; 0.975 is within 1% of 0.98.
    assert [t[1] for t in trace] == [0, 1, 0, 1]
    assert stop.best == pytest.approx(0.98)
    assert stop.min_delta == "1%"  # the argument is stored as given


def test_restore_best_weights_restores_the_best_epoch_in_a_real_fit():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.5), loss="mse")
    snapshots = []

    class Snap(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append((logs["loss"], [w.copy() for w in self.model.get_weights()]))

    stop = EarlyStopping("loss", patience=2, restore_best_weights=True)
    # A learning rate far too high: the loss grows, so the best epoch is early.
    model.fit(x, x.sum(1, keepdims=True) * 10, epochs=10, verbose=0, callbacks=[Snap(), stop])
    best = int(np.argmin([s[0] for s in snapshots]))
    assert stop.best_epoch == best
    for got, want in zip(model.get_weights(), snapshots[best][1]):
        np.testing.assert_array_equal(got, want)


def test_state_round_trip_through_files_resumes_identically(tmp_path):
    history = [0.9, 0.7, 0.72, 0.6, 0.61, 0.62, 0.65, 0.5, 0.55, 0.56]
    full, full_model = _drive(EarlyStopping("val_loss", patience=2, restore_best_weights=True), history)

    first = EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    part, _ = _drive(first, history[:5])
    _io.save_state(tmp_path, "es", first.get_state())
    second = EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    second.set_state(_io.load_state(tmp_path, "es"))
    rest, rest_model = _drive(second, history, start=5)  # on_train_begin must keep the state
    assert part + rest == full
    assert rest_model.restored == full_model.restored == 3.0
    assert second.stopped_epoch == len(full) - 1


def test_restored_flag_is_one_shot():
    stop = EarlyStopping("val_loss", patience=3)
    stop.set_state({"wait": 2, "best": 0.5, "best_epoch": 4})
    stop.set_model(_FakeModel())
    stop.on_train_begin()
    assert (stop.wait, stop.best) == (2, 0.5)
    stop.on_train_begin()  # a later fit starts clean, as Keras's does
    assert (stop.wait, stop.best) == (0, None)


def test_state_key_names_the_monitor():
    assert EarlyStopping("val_auc", mode="max").state_key != EarlyStopping("val_loss").state_key


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="minimum"), r"`mode`: received 'minimum'; expected \"auto\", \"min\" or \"max\""),
        (dict(min_delta=-0.1), r"`min_delta`: received -0.1"),
        (dict(min_delta="-1%"), r"`min_delta`: received '-1%'"),
        (dict(min_delta="abc"), r"`min_delta`: received 'abc'"),
        (dict(patience=-1), r"`patience`: received -1; expected an int >= 0"),
        (dict(patience=1.5), r"`patience`: received 1.5"),
        (dict(baseline=float("nan")), r"`baseline`: received nan"),
        (dict(start_from_epoch=-2), r"`start_from_epoch`: received -2"),
        (dict(restore_best_weights="yes"), r"`restore_best_weights`: received 'yes'"),
        (dict(monitor=""), r"`monitor`: received ''"),
    ],
)
def test_bad_arguments_raise_before_training(kwargs, match):
    with pytest.raises(KerafineError, match=match):
        EarlyStopping(**kwargs)


def _tiny_fit(callback, validation=True):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", loss="mse", metrics=["mae"])
    x, y = np.ones((8, 2)), np.ones((8, 1))
    return model.fit(x, y, epochs=3, verbose=0, callbacks=[callback], validation_data=(x, y) if validation else None)


def test_monitor_key_that_never_appears_raises_listing_available_keys():
    with pytest.raises(
        KerafineError, match=r"val_mea.*Available keys: loss, mae, val_loss, val_mae.*Did you mean \"val_mae\""
    ):
        _tiny_fit(EarlyStopping("val_mea", mode="min"))


def test_validation_monitor_without_validation_warns_once():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _tiny_fit(EarlyStopping("val_loss"), validation=False)
    mine = [w for w in caught if "validation did not run" in str(w.message)]
    assert len(mine) == 1
    assert len(history.history["loss"]) == 3


def test_auto_mode_without_a_known_direction_raises():
    stop = EarlyStopping("my_score")
    stop.set_model(_FakeModel())
    stop.on_train_begin()
    with pytest.raises(KerafineError, match=r"`mode`.*cannot be inferred"):
        stop.on_epoch_end(0, {"my_score": 1.0})


def test_auto_mode_reads_direction_of_compiled_metric():
    stop = EarlyStopping("val_mae")  # Keras metrics say mae goes down
    _tiny_fit(stop)
    assert stop._direction == "min"


# ------------------------------------ array-valued metrics, monitor_op (issue 18)


def test_f1_score_metric_of_one_class_is_monitored_in_a_real_fit():
    # Regression: float(current) raised "only 0-dimensional arrays can be converted" at the first epoch end.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("sgd", loss="binary_crossentropy", metrics=[keras.metrics.F1Score(name="f1_score")])
    x = np.array([[0.0, 1.0], [1.0, 0.0]] * 4)
    y = np.array([[0.0], [1.0]] * 4)
    stop = EarlyStopping("f1_score", patience=5)
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[stop])
    # Keras 3.15 logs an array of one value (3.12 a scalar): either way one value, monitored.
    assert np.size(history.history["f1_score"][0]) == 1
    assert stop.monitor_op is keras.ops.greater  # F1Score's direction is "up"
    assert stop.best == pytest.approx(float(np.max(history.history["f1_score"])))


def test_one_element_array_values_give_keras_decisions():
    history = [0.5, 0.4, 0.45, 0.41, 0.3, 0.35, 0.36, 0.37]

    def drive(callback):
        model = _FakeModel()
        callback.set_model(model)
        callback.on_train_begin()
        stops = []
        for epoch, value in enumerate(history):
            callback.on_epoch_end(epoch, {"val_loss": np.array([value], dtype=np.float32)})
            stops.append(model.stop_training)
            if model.stop_training:
                break
        return stops, callback.best_epoch

    ours = drive(EarlyStopping("val_loss", patience=2))
    theirs = drive(keras.callbacks.EarlyStopping("val_loss", patience=2))
    assert ours == theirs and ours[0][-1]


def test_array_of_several_values_is_an_error_naming_the_shape():
    stop = EarlyStopping("f1_score", mode="max")
    stop.set_model(_FakeModel())
    stop.on_train_begin()
    with pytest.raises(KerafineError, match=r"'f1_score'.*array of shape \(3,\).*F1Score\(average='macro'\)"):
        stop.on_epoch_end(0, {"f1_score": np.array([0.2, 0.5, 0.9])})


@pytest.mark.parametrize(
    "monitor, mode, op", [("val_loss", "auto", "less"), ("val_mae", "max", "greater"), ("mae", "min", "less")]
)
def test_monitor_op_is_public_and_equals_keras(monitor, mode, op):
    ours = EarlyStopping(monitor, mode=mode)
    assert ours.monitor_op is None  # as Keras: unknown until the first epoch end
    theirs = keras.callbacks.EarlyStopping(monitor, mode=mode)
    _tiny_fit(ours)
    _tiny_fit(theirs)
    assert ours.monitor_op is getattr(keras.ops, op) is theirs.monitor_op
    with pytest.raises(AttributeError):
        ours.monitor_op = keras.ops.greater
