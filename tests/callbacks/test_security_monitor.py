"""SecurityMonitor: logs keys, every_n_epochs, TensorBoard, the falling-robustness warning, state."""

import warnings

import keras
import numpy as np
import pytest

from kerafine import tensorboard
from kerafine.callbacks import SecurityMonitor, SecurityWarning
from kerafine.callbacks.state import collect_states, restore_states
from kerafine.errors import DataError, KerafineError


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    return model


def test_logs_clean_and_robust_accuracy_on_checked_epochs_only(tmp_path):
    x, y = _data()
    model = _model()
    monitor = SecurityMonitor((x, y), epsilon=0.3, every_n_epochs=2, log_dir=tmp_path)
    history = model.fit(x, y, epochs=4, verbose=0, callbacks=[monitor])
    assert len(history.history["robust_accuracy"]) == 2  # epochs 2 and 4 only
    assert [h["epoch"] for h in monitor.history] == [1, 3]
    for h in monitor.history:
        assert 0 <= h["robust_accuracy"] <= h["clean_accuracy"] <= 1
    # The clean value is the model's accuracy on the sample; the attack costs accuracy at eps=0.3.
    p = model.predict(x, verbose=0)[:, 0]
    assert monitor.history[-1]["clean_accuracy"] == pytest.approx(np.mean((p >= 0.5) == (y == 1)))
    assert monitor.history[-1]["robust_accuracy"] < monitor.history[-1]["clean_accuracy"]
    scalars = tensorboard.read_scalars(tmp_path)
    assert [s for s, _ in scalars["security/robust_accuracy"]] == [1, 3]
    assert "security/clean_accuracy" in scalars


def test_warns_when_robust_accuracy_falls_while_clean_accuracy_rises():
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=3, verbose=0)
    monitor = SecurityMonitor((x, y), epsilon=0.5, name="sec")
    monitor.set_model(model)
    clean, robust = monitor.check()
    assert robust < 1.0 and clean > 0.0
    # A previous check (as restored from a checkpoint) with lower clean and higher robust accuracy.
    monitor.set_state({"history": [{"epoch": 0, "clean_accuracy": 0.0, "robust_accuracy": 1.0}]})
    with pytest.warns(SecurityWarning, match=r"Robust accuracy at epsilon=0.5 \(fgsm\) fell from 1.0000 \(epoch 1\)"):
        history = model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])
    assert "sec_robust_accuracy" in history.history and monitor.n_alerts == 1
    # Clean accuracy not rising: no warning.
    monitor.set_state({"history": [{"epoch": 0, "clean_accuracy": 1.0, "robust_accuracy": 1.0}]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecurityWarning)
        model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])


def test_state_round_trip_through_checkpoint_helpers():
    x, y = _data()
    model = _model()
    monitor = SecurityMonitor((x, y), epsilon=0.1, attack="pgd", steps=3)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[monitor])
    states = collect_states([monitor])
    fresh = SecurityMonitor((x, y), epsilon=0.1, attack="pgd", steps=3)
    restore_states([fresh], states)
    assert fresh.history == monitor.history and fresh.state_key == "SecurityMonitor[pgd|0.1|]"
    model.fit(x, y, epochs=1, verbose=0, callbacks=[fresh])
    assert len(fresh.history) == 3  # restored history survived on_train_begin


def test_bad_arguments_fail_before_fit(tmp_path):
    x, y = _data(20)
    with pytest.raises(KerafineError, match=r"argument `epsilon`: received 0"):
        SecurityMonitor((x, y), epsilon=0)
    with pytest.raises(KerafineError, match=r"argument `attack`"):
        SecurityMonitor((x, y), epsilon=0.1, attack="deepfool")
    with pytest.raises(KerafineError, match=r"argument `every_n_epochs`"):
        SecurityMonitor((x, y), epsilon=0.1, every_n_epochs=0)
    with pytest.raises(DataError, match=r"argument `data`"):
        SecurityMonitor(x, epsilon=0.1)
    with pytest.raises(DataError, match=r"argument `y`"):
        SecurityMonitor((x, y[:5]), epsilon=0.1)
    with pytest.raises(KerafineError, match=r"argument `perturb`.*'city'.*strings"):
        SecurityMonitor(({"num": x, "city": np.array(["a"] * 20, dtype=object)}, y), epsilon=0.1, perturb=["city"])
