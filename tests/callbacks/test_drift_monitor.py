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
        model = keras.Sequential(
            [keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
        )
        model.compile("sgd", "binary_crossentropy")
        _MODEL.append(model)
    _MODEL[0].stop_training = False
    return _MODEL[0]


def test_writes_logs_keys_warns_and_writes_tensorboard_events(tmp_path):
    x, y = _tabular()
    current = x[:200] + np.array([0.0, 0.0, 1.5], "float32")
    monitor = DriftMonitor(reference=(x, y), current_data=current, log_dir=tmp_path)
    with pytest.warns(
        DriftWarning, match=r"DriftMonitor\[inputs\] at epoch \d: Drift detected: 1 of 3 .*f2 \(ks effect"
    ):
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
        ({"reference_is_shard": "yes"}, "`reference_is_shard`: received 'yes'; expected True or False"),
        ({"reference_is_shard": 1}, "`reference_is_shard`: received 1; expected True or False"),
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
    with pytest.raises(
        KerafineError, match="`reference`: received 'a ReferenceProfile'; expected data the model can predict on"
    ):
        DriftMonitor(profile, x, on="outputs")
    assert DriftMonitor(profile, x).reference is profile  # a profile is fine for inputs


def test_reference_is_shard_outside_a_cluster_checks_against_the_whole_reference():
    # One process: its shard is the whole reference, so the reports equal those without the flag
    # (the two-worker merge is tested in tests/distributed/test_multi_worker.py).
    x, y = _tabular()
    current = x[:200] + np.array([0.0, 0.8, 0.0], "float32")
    reports = {}
    for shard in (False, True):
        for on in ("inputs", "outputs"):
            monitor = DriftMonitor(x, current, on=on, reference_is_shard=shard, on_drift=lambda r: None)
            keras.utils.set_random_seed(3)  # the same weights for both runs of the output check
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
            model.compile("sgd", "binary_crossentropy")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DriftWarning)
                model.fit(x, y, epochs=1, batch_size=100, verbose=0, callbacks=[monitor])
            reports[shard, on] = monitor.last_report
    for on in ("inputs", "outputs"):
        a, b = reports[False, on], reports[True, on]
        assert [(f.name, f.drifted) for f in a.features] == [(f.name, f.drifted) for f in b.features]
        assert [f.p_value for f in a.features] == pytest.approx([f.p_value for f in b.features], rel=1e-6)
    assert reports[True, "inputs"].drifted_features == ["f1"]


def _embedding_fit(log_dir, **kwargs):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 0.7, size=(128, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 2, 128).astype("float32")
    brighter = np.clip(rng.uniform(0.0, 0.7, size=(100, 8, 8, 3)) + 0.25, 0.0, 1.0).astype("float32")
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    emb = keras.layers.GlobalAveragePooling2D(name="embedding")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(emb))
    model.compile("adam", "binary_crossentropy")
    monitor = DriftMonitor(
        images, brighter, on="embeddings", layer="embedding", log_dir=log_dir, on_drift=lambda r: None, **kwargs
    )
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        model.fit(images, labels, epochs=1, batch_size=64, verbose=0, callbacks=[monitor])
    tensorboard.flush(log_dir)
    return monitor, tensorboard.read_scalars(log_dir)


def test_embedding_drift_is_summarised_in_tensorboard_unless_per_dimension(tmp_path):
    monitor, scalars = _embedding_fit(tmp_path / "summary")
    report = monitor.last_report
    assert report.is_drift and len(report.features) == 6
    # Two scalars, whatever the embedding width: no anonymous emb<i> cards.
    assert sorted(t for t in scalars if t.startswith("drift/")) == ["drift/largest_effect", "drift/share"]
    assert scalars["drift/share"][0][1] == pytest.approx(report.drift_share)
    assert scalars["drift/largest_effect"][0][1] == pytest.approx(max(f.effect for f in report.features))
    # The 0/1 verdict is not a (smoothable) scalar; the alert is text.
    assert "drift/detected" not in scalars
    assert "drift/alert" in tensorboard.read_tags(tmp_path / "summary")["text"]

    _, detailed = _embedding_fit(tmp_path / "detail", per_dimension=True)
    assert {f"drift/effect/emb{i}" for i in range(6)} <= set(detailed)
    assert {f"drift/p_value/emb{i}" for i in range(6)} <= set(detailed)
    assert "drift/largest_effect" in detailed


def test_named_input_features_keep_their_per_feature_scalars(tmp_path):
    x, y = _tabular()
    frame = pd.DataFrame(x, columns=["price", "volume", "spread"])
    shifted = frame.iloc[:200].assign(spread=frame["spread"].iloc[:200] + 1.5)
    monitor = DriftMonitor(frame, shifted, log_dir=tmp_path, on_drift=lambda r: None)
    with warnings.catch_warnings(record=True):
        _dense_model().fit(x, y, epochs=1, verbose=0, callbacks=[monitor])
    tensorboard.flush(tmp_path)
    scalars = tensorboard.read_scalars(tmp_path)
    assert {f"drift/effect/{c}" for c in frame.columns} <= set(scalars)
    assert scalars["drift/largest_effect"][0][1] == pytest.approx(monitor.last_report["spread"].effect)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"per_dimension": "yes"},
            r"Invalid value for argument `per_dimension`: received 'yes'; expected True or False",
        ),
        ({"per_dimension": True}, r"`per_dimension`: received True; expected False when on=\"inputs\""),
        (
            {"per_dimension": True, "on": "outputs"},
            r"`per_dimension`: received True; expected False when on=\"outputs\"",
        ),
    ],
)
def test_per_dimension_is_refused_where_it_does_not_apply(kwargs, message):
    x, _ = _tabular()
    with pytest.raises(KerafineError, match=message):
        DriftMonitor(x, x[:100], **kwargs)


def test_nan_rows_of_the_current_inputs_are_warned_about_every_check():
    # Issue 19: non-finite values are left out of the statistics, never silently.
    x, y = _tabular()
    current = _tabular(seed=2, n=200)[0]
    current[[5, 6], 1] = np.nan
    monitor = DriftMonitor(x, current, on_drift=lambda report: None)
    with pytest.warns(
        DriftWarning,
        match=r"DriftMonitor\[inputs\] at epoch 1: 2 of 200 current rows of the inputs "
        r"hold NaN or inf \(first rows \[5, 6\]\)",
    ):
        _dense_model().fit(x, y, epochs=1, verbose=0, callbacks=[monitor])
    assert monitor.history[-1]["nonfinite_current_rows"] == 2
