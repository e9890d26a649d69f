"""DriftMonitor: logs keys, warnings, handler, stop, TensorBoard, state, embedding drift."""

import warnings

import keras
import numpy as np
import pandas as pd
import pytest

from kerafine import tensorboard
from kerafine.callbacks.drift_monitor import DriftMonitor
from kerafine.callbacks.state import collect_states, restore_states
from kerafine.drift import DriftReport, DriftWarning, ReferenceProfile
from kerafine.errors import DataError, KerafineError


def _tabular(seed=0, n=400):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    return x, y


_MODEL = []


def _dense_model():
    """One small compiled model shared by the tabular tests: its train step is traced once.

    The input-drift checks do not depend on the weights, so reusing it is safe.
    """
    if not _MODEL:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
        model.compile("sgd", "binary_crossentropy")
        _MODEL.append(model)
    _MODEL[0].stop_training = False
    return _MODEL[0]


def test_writes_logs_keys_warns_and_writes_tensorboard_events(tmp_path):
    x, y = _tabular()
    current = x[:200] + np.array([0.0, 0.0, 1.5], "float32")
    monitor = DriftMonitor(reference=(x, y), current_data=current, log_dir=tmp_path)
    with pytest.warns(DriftWarning, match=r"DriftMonitor\[inputs\] at epoch \d: Drift detected: 1 of 3 .*f2 \(ks effect"):
        history = _dense_model().fit(x, y, epochs=2, verbose=0, callbacks=[monitor])
    assert history.history["drift_share"] == pytest.approx([1 / 3, 1 / 3])
    assert history.history["drift_detected"] == [1.0, 1.0]
    assert monitor.n_alerts == 2 and isinstance(monitor.last_report, DriftReport)
    tensorboard.flush()
    scalars = tensorboard.read_scalars(tmp_path)
    assert [v for _, v in scalars["drift/share"]] == pytest.approx([1 / 3, 1 / 3])
    assert {"drift/effect/f0", "drift/effect/f2", "drift/p_value/f2"} <= set(scalars)
    tags = tensorboard.read_tags(tmp_path)
    assert "drift/alert" in tags["text"]
    assert {"drift/f2/reference", "drift/f2/current"} <= tags["histograms"]


def test_no_drift_means_no_warning_and_no_handler_call():
    x, y = _tabular()
    calls = []
    # A no-shift check alarms in 5% of draws by design (seed 1 is one of them); seed 2 is not.
    monitor = DriftMonitor(x, _tabular(seed=2, n=200)[0], on_drift=calls.append)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DriftWarning)
        history = _dense_model().fit(x, y, epochs=1, verbose=0, callbacks=[monitor])
    assert history.history["drift_detected"] == [0.0] and calls == []


def test_stop_ends_training_after_the_first_alert():
    x, y = _tabular()
    monitor = DriftMonitor(x, x[:200] * 3.0, on_drift="stop")
    with pytest.warns(DriftWarning):
        history = _dense_model().fit(x, y, epochs=5, verbose=0, callbacks=[monitor])
    assert len(history.history["loss"]) == 1


def test_callable_handler_receives_the_report_and_every_n_epochs_spaces_checks():
    x, y = _tabular()
    reports = []
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    shifted = frame.iloc[:200].assign(b=lambda d: d.b + 2.0)
    monitor = DriftMonitor(frame, shifted, every_n_epochs=2, on_drift=reports.append, name="prod")
    with pytest.warns(DriftWarning):
        history = _dense_model().fit(x, y, epochs=4, verbose=0, callbacks=[monitor])
    assert len(reports) == 2 and reports[0].drifted_features == ["b"]
    assert history.history["prod_drift_detected"] == [1.0, 1.0]  # epochs 2 and 4 only
    assert [h["epoch"] for h in monitor.history] == [1, 3]


def test_embedding_drift_is_detected_on_brightness_change_and_not_on_fresh_images():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 0.7, size=(256, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 2, 256).astype("float32")
    fresh = rng.uniform(0.0, 0.7, size=(200, 8, 8, 3)).astype("float32")
    brighter = np.clip(fresh + 0.25, 0.0, 1.0)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    emb = keras.layers.GlobalAveragePooling2D(name="embedding")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(emb))
    model.compile("adam", "binary_crossentropy")
    clean = DriftMonitor(images, fresh, on="embeddings", layer="embedding", name="clean")
    bright = DriftMonitor(images, brighter, on="embeddings", layer="embedding", name="bright")
    outputs = DriftMonitor(images, brighter, on="outputs", on_drift=lambda r: None, name="out")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        history = model.fit(images, labels, epochs=1, batch_size=64, verbose=0, callbacks=[clean, bright, outputs])
    assert history.history["clean_drift_detected"] == [0.0]
    assert history.history["bright_drift_detected"] == [1.0]
    assert bright.last_report.drift_share > 0.5
    assert clean.last_report.features[0].name == "emb0" and len(clean.last_report.features) == 6
    # One fit context for the three monitors; the reference embedding (asked for by
    # `clean` and `bright`) was computed once: 6 requests, 5 distinct (inputs, layer) pairs.
    ctx = clean.context
    assert bright.context is ctx and outputs.context is ctx
    assert ctx.predictions.passes == 5


def test_state_round_trip_survives_on_train_begin():
    x, y = _tabular()
    model = _dense_model()
    first = DriftMonitor(x, x[:200] + 2.0, on_drift=lambda r: None)
    with warnings.catch_warnings(record=True):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[first])
    states = collect_states([first])
    assert list(states) == ["DriftMonitor[inputs||]"] and states["DriftMonitor[inputs||]"]["n_alerts"] == 2
    second = DriftMonitor(x, x[:200] + 2.0, on_drift=lambda r: None)
    restored, missing = restore_states([second], states)
    assert restored == ["DriftMonitor[inputs||]"] and missing == []
    with warnings.catch_warnings(record=True):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[second])
    assert second.n_alerts == 3 and [h["epoch"] for h in second.history] == [0, 1, 0]


def test_bad_arguments_raise_before_fit(tmp_path):
    x, _ = _tabular()
    cases = [
        ({"on": "weights"}, "`on`: received 'weights'"),
        ({"on": "embeddings"}, "`layer`: received None; expected the name of a layer"),
        ({"layer": "dense"}, "`layer`: received 'dense'; expected None when on=\"inputs\""),
        ({"every_n_epochs": 0}, "`every_n_epochs`: received 0"),
        ({"on_drift": "page"}, "`on_drift`: received 'page'"),
        ({"min_effect": 2.0}, "`min_effect`: received 2.0"),
    ]
    for kwargs, match in cases:
        with pytest.raises(KerafineError, match=match):
            DriftMonitor(x, x, **kwargs)
    with pytest.raises(DataError, match="it has 2 features but the reference has 3"):
        DriftMonitor(x, x[:, :2])
    (tmp_path / "file").write_text("")
    with pytest.raises(KerafineError, match="`log_dir`"):
        DriftMonitor(x, x, log_dir=tmp_path / "file")
    profile = ReferenceProfile.from_data(x)
    with pytest.raises(KerafineError, match="`reference`: received 'a ReferenceProfile'; expected data the model can predict on"):
        DriftMonitor(profile, x, on="outputs")
    assert DriftMonitor(profile, x).reference is profile  # a profile is fine for inputs
