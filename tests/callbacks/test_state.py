"""The callback state protocol and its adapters for Keras's stateful callbacks."""

import keras
import numpy as np
import pytest

from kerafine import _io
from kerafine.callbacks import state
from kerafine.callbacks.early_stopping import EarlyStopping
from kerafine.errors import KerafineError


class _Model:
    stop_training = False
    metrics = []

    def get_weights(self):
        return [np.arange(3.0)]


def _keras_es():
    cb = keras.callbacks.EarlyStopping("val_loss", patience=5, restore_best_weights=True)
    cb.set_model(_Model())
    return cb


def _best_after_keras_reset(best):
    """What Keras's own ``on_train_begin`` leaves in ``best``: ``None`` since the fix of
    keras-team/keras#20256 (PR #22967), the old value in earlier releases (Keras 3.12)."""
    cb = _keras_es()
    cb.best = best
    cb.on_train_begin()
    return cb.best


def test_keras_early_stopping_state_survives_its_own_on_train_begin(tmp_path):
    cb = _keras_es()
    cb.on_train_begin()
    for epoch, v in enumerate([0.5, 0.4, 0.45, 0.47]):
        cb.on_epoch_end(epoch, {"val_loss": v})
    saved = state.get_state(cb)
    assert (saved["wait"], saved["best"], saved["best_epoch"]) == (2, 0.4, 1)
    _io.save_state(tmp_path, "s", saved)

    fresh = _keras_es()
    state.set_state(fresh, _io.load_state(tmp_path, "s"))
    fresh.on_train_begin()  # Keras resets here; the adapter re-applies afterwards
    assert (fresh.wait, fresh.best, fresh.best_epoch) == (2, 0.4, 1)
    np.testing.assert_array_equal(fresh.best_weights[0], np.arange(3.0))
    fresh.on_train_begin()  # one shot: the next fit starts clean
    assert (fresh.wait, fresh.best) == (0, _best_after_keras_reset(0.4))


def test_begun_callbacks_are_set_now_and_not_again_later():
    cb = _keras_es()
    cb.on_train_begin()
    state.set_state(cb, {"wait": 3, "best": 0.1}, begun=True)
    assert (cb.wait, cb.best) == (3, 0.1)
    cb.on_train_begin()  # a later fit: no stale re-apply
    assert (cb.wait, cb.best) == (0, _best_after_keras_reset(0.1))


def test_reduce_lr_and_model_checkpoint_adapters(tmp_path):
    reduce = keras.callbacks.ReduceLROnPlateau("val_loss", patience=3, cooldown=2)
    reduce.wait, reduce.cooldown_counter, reduce.best = 2, 1, 0.25
    check = keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_best_only=True)
    check.best = 0.125
    states = state.collect_states([reduce, check])
    assert states[state.state_key(reduce)] == {"version": 1, "wait": 2, "cooldown_counter": 1, "best": 0.25}
    assert states[state.state_key(check)]["best"] == 0.125

    reduce2 = keras.callbacks.ReduceLROnPlateau("val_loss", patience=3, cooldown=2)
    check2 = keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_best_only=True)
    restored, missing = state.restore_states([reduce2, check2], states)
    assert missing == [] and len(restored) == 2
    reduce2.on_train_begin()
    check2.on_train_begin()
    assert (reduce2.wait, reduce2.cooldown_counter, reduce2.best) == (2, 1, 0.25)
    assert check2.best == 0.125


def test_protocol_callback_begun_clears_restored_flag():
    es = EarlyStopping("val_loss", patience=4)
    es.set_model(_Model())
    es.on_train_begin()
    state.restore_states([es], {es.state_key: {"wait": 2, "best": 0.3}}, begun=[es])
    assert es.wait == 2 and es._restored is False
    es.on_train_begin()
    assert es.wait == 0


def test_duplicate_keys_are_a_clear_error_and_name_tells_them_apart():
    a, b = EarlyStopping("val_loss", patience=1), EarlyStopping("val_loss", patience=9)
    with pytest.raises(KerafineError, match=r"share the state key 'EarlyStopping\[val_loss\]'.*distinct `name=`"):
        state.collect_states([a, b])
    b = EarlyStopping("val_loss", patience=9, name="slow")
    other = keras.callbacks.History()
    keys = list(state.collect_states([a, other, b]))
    assert keys == ["EarlyStopping[val_loss]", "EarlyStopping[val_loss|slow]"]
    # Keys do not depend on list positions: the reversed list gives the same keys.
    assert sorted(state.collect_states([b, a])) == sorted(keys)
    assert list(state.collect_states([a, b], exclude=[a])) == ["EarlyStopping[val_loss|slow]"]
    assert not state.is_stateful(other)
    with pytest.raises(TypeError, match="History does not take part"):
        state.state_key(other)


def test_missing_states_are_reported():
    es = EarlyStopping("val_auc", mode="max")
    restored, missing = state.restore_states([es], {})
    assert restored == [] and missing == ["EarlyStopping[val_auc]"]


# ------------------------------------------------ two writers of one log key (issue 19)


def _auc_setup():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=64) > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    return model, x, y


def _conflicts(record):
    return [str(w.message) for w in record if issubclass(w.category, state.LogKeyConflictWarning)]


def test_a_compiled_metric_and_a_callback_writing_one_key_warn_naming_both():
    from kerafine.callbacks.auc_tracker import AUCTracker

    model, x, y = _auc_setup()
    model.compile("sgd", "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    with pytest.warns(state.LogKeyConflictWarning) as record:
        model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0, callbacks=[AUCTracker((x, y), name="val_auc")])
    (message,) = _conflicts(record)  # once per fit, not every epoch
    assert (
        message.startswith("Two writers of the log key(s) 'val_auc'")
        and "the compiled metric 'auc'" in message
        and "AUCTracker(name='val_auc')" in message
    )


def test_two_callbacks_writing_one_key_warn_naming_both():
    from kerafine.callbacks.auc_tracker import AUCTracker

    model, x, y = _auc_setup()
    model.compile("sgd", "binary_crossentropy")
    half = (x[:32], y[:32])
    with pytest.warns(state.LogKeyConflictWarning) as record:
        model.fit(x, y, epochs=1, verbose=0, callbacks=[AUCTracker((x, y)), AUCTracker(half)])
    (message,) = _conflicts(record)
    assert "'val_auc'" in message and ": another AUCTracker(name='val_auc') and AUCTracker(name='val_auc')" in message


def test_the_usual_callback_list_gives_no_log_key_warning():
    import warnings

    from kerafine.callbacks.auc_tracker import AUCTracker
    from kerafine.callbacks.early_stopping import EarlyStopping
    from kerafine.callbacks.training_monitor import TrainingMonitor

    model, x, y = _auc_setup()
    model.compile("sgd", "binary_crossentropy", metrics=[keras.metrics.AUC(name="keras_auc")])
    callbacks = [
        AUCTracker((x, y), name="val_auc"),
        # ReduceLROnPlateau writes learning_rate too; TrainingMonitor overwrites it on purpose (documented).
        keras.callbacks.ReduceLROnPlateau(monitor="val_auc", mode="max", patience=1),
        TrainingMonitor(on_problem=lambda p: None),
        EarlyStopping(monitor="val_auc", mode="max", patience=3),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", state.LogKeyConflictWarning)
        history = model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0, callbacks=callbacks)
    assert {"val_auc", "val_keras_auc", "learning_rate"} <= set(history.history)
