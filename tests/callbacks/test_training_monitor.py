"""Tests for kerafine.callbacks.training_monitor."""

import math
import warnings

import keras
import numpy as np
import pytest

from kerafine import tensorboard
from kerafine.callbacks.training_monitor import (
    LOG_KEYS,
    TrainingMonitor,
    TrainingProblem,
    TrainingProblemWarning,
)
from kerafine.errors import KerafineError


def _regression(n=128, d=4, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x @ rng.normal(size=(d, 1)) + noise * rng.normal(size=(n, 1))).astype("float32")
    return x, y


def _linear_model(d=4, optimizer=None):
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(1, name="out")])
    model.compile(optimizer or keras.optimizers.SGD(0.01), loss="mse")
    return model


def _kinds(problems):
    return [(p.kind, p.epoch) for p in problems]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(every_n_batches=0), "`every_n_batches`: received 0"),
        (dict(every_n_batches=2.5), "`every_n_batches`"),
        (dict(histograms_every_n_epochs=-1), "`histograms_every_n_epochs`"),
        (dict(overfit_patience=0), "`overfit_patience`"),
        (dict(explode_factor=1.0), "`explode_factor`"),
        (dict(loss_smoothing=0), "`loss_smoothing`: received 0"),
        (dict(weight_check_freq=0), "`weight_check_freq`: received 0; expected an int >= 1"),
        (dict(update_ratio_band=(1e-2, 1e-4)), "`update_ratio_band`"),
    ],
)
def test_bad_arguments_are_rejected_before_training(kwargs, match):
    with pytest.raises(KerafineError, match=match):
        TrainingMonitor(**kwargs)


def test_unknown_on_problem_is_rejected_with_a_suggestion():
    with pytest.raises(
        KerafineError,
        match=r'`on_problem`: received \'stopp\'; expected "warn", "stop" or a callable.*Did you mean "stop"',
    ):
        TrainingMonitor(on_problem="stopp")


def test_log_dir_that_is_a_file_is_rejected(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(KerafineError, match="`log_dir`"):
        TrainingMonitor(log_dir=f)


# ------------------------------------------------------------ logged values


class _LRAtStepProbe(keras.callbacks.Callback):
    """Independent record of the learning rate each step uses: read before the step."""

    def on_epoch_begin(self, epoch, logs=None):
        self.current = []

    def on_train_batch_begin(self, batch, logs=None):
        self.current.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    def on_epoch_end(self, epoch, logs=None):
        self.per_epoch = getattr(self, "per_epoch", []) + [self.current[-1]]


def test_logged_lr_is_the_one_in_use_under_reduce_lr_on_plateau_placed_before_it(tmp_path):
    x, y = _regression()
    model = _linear_model()
    probe = _LRAtStepProbe()
    # min_delta so large that no epoch improves: the rate halves at every epoch end.
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    monitor = TrainingMonitor(log_dir=tmp_path, every_n_batches=4, on_problem=lambda p: None)
    history = model.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[probe, plateau, monitor])
    logged = history.history["learning_rate"]
    assert len(set(np.round(probe.per_epoch, 8))) >= 3  # the rate did change
    np.testing.assert_allclose(logged, probe.per_epoch, rtol=1e-6)
    # The same values reach TensorBoard, read back with TensorBoard's own reader.
    scalars = tensorboard.read_scalars(tmp_path)
    np.testing.assert_allclose([v for _, v in scalars["epoch/learning_rate"]], probe.per_epoch, rtol=1e-6)


def test_logged_lr_is_the_schedule_at_the_last_step_not_the_next_one():
    x, y = _regression()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.8)
    model = _linear_model(optimizer=keras.optimizers.SGD(schedule))
    probe = _LRAtStepProbe()
    monitor = TrainingMonitor(every_n_batches=3, on_problem=lambda p: None)
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[monitor, probe])
    np.testing.assert_allclose(history.history["learning_rate"], probe.per_epoch, rtol=1e-5)
    # 4 steps per epoch: epoch e's last step is step 4e + 3.
    np.testing.assert_allclose(
        history.history["learning_rate"], [0.05 * 0.8 ** (4 * e + 3) for e in range(3)], rtol=1e-5
    )


class _NormProbe(keras.callbacks.Callback):
    """Independent record of the weight norm after each optimizer step."""

    def __init__(self):
        super().__init__()
        self.norms = {}

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations)
        self.norms[step] = math.sqrt(
            sum(float(np.sum(w.numpy().astype(np.float64) ** 2)) for w in self.model.trainable_weights)
        )


def test_epoch_keys_are_stable_and_tensorboard_holds_the_scalars_and_histograms(tmp_path, seeded):
    x, y = _regression(n=64)
    model = _linear_model()
    probe = _NormProbe()
    monitor = TrainingMonitor(
        log_dir=tmp_path, every_n_batches=2, histograms_every_n_epochs=1, on_problem=lambda p: None
    )
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor, probe])
    for key in LOG_KEYS:
        assert len(history.history[key]) == 2, key
    assert all(v > 0 for v in history.history["step_seconds"])
    # 64 samples per epoch: samples/s is consistent with the time per step of 4 steps.
    for sps, step in zip(history.history["samples_per_second"], history.history["step_seconds"]):
        assert sps == pytest.approx(64 / (4 * step), rel=1e-6)
    assert all(v > 10 for v in history.history["rss_mb"])
    scalars = tensorboard.read_scalars(tmp_path)
    for tag in (
        "batch/monitor/learning_rate",
        "batch/monitor/update_ratio",
        "batch/monitor/step_seconds",
        "batch/weight_norm/out",
        "batch/update_ratio/out",
        "epoch/rss_mb",
        "epoch/cpu_percent",
    ):
        assert tag in scalars, (tag, sorted(scalars))
    # No mixing: per-epoch series in kerafine/, per-iteration ones (batch/...) in kerafine/batch/.
    assert all(t.startswith("batch/") for t in tensorboard.read_scalars(tmp_path, subdir=tensorboard.BATCH_SUBDIR))
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    epoch_run = EventAccumulator(str(tmp_path / tensorboard.SUBDIR))  # one run: its own files, not batch/'s
    epoch_run.Reload()
    epoch_tags = epoch_run.Tags()["tensors"]
    assert "epoch/rss_mb" in epoch_tags and not any(t.startswith(("batch/", "monitor/")) for t in epoch_tags)
    # Logging points every 2 batches over 8 steps, at optimizer iterations 2, 4, 6, 8.
    assert [s for s, _ in scalars["batch/monitor/learning_rate"]] == [2, 4, 6, 8]
    # The norm logged at step s is that of the weights the step started from (after step s - 1).
    for step, norm in scalars["batch/weight_norm/out"]:
        assert norm == pytest.approx(probe.norms[step - 1], rel=1e-5), step
    assert any(t.startswith("weights/") for t in tensorboard.read_tags(tmp_path).get("histograms", set()))


def test_update_ratio_is_the_relative_size_of_one_step():
    # One SGD step on one sample: w <- w - lr * grad. Compute the expected ratio by hand.
    x = np.array([[1.0, 2.0]], "float32")
    y = np.array([[3.0]], "float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="out", kernel_initializer="ones")])
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    w0 = np.concatenate([model.get_layer("out").kernel.numpy().ravel(), [0.0]])
    err = x @ w0[:2] - y  # prediction 3, target 3 -> move the target to get a gradient
    y = y + 1.0
    err = float((x @ w0[:2] + w0[2] - y)[0, 0])
    grad = 2 * err * np.array([1.0, 2.0, 1.0])
    expected = np.linalg.norm(0.1 * grad) / np.linalg.norm(w0)
    history = model.fit(
        x,
        y,
        batch_size=1,
        epochs=1,
        verbose=0,
        callbacks=[TrainingMonitor(every_n_batches=1, on_problem=lambda p: None)],
    )
    assert history.history["update_ratio"][0] == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------- problems


def _poisoned_batches(x, y, batch_size, poisoned_global_batch):
    i = 0
    while True:
        for s in range(0, len(x), batch_size):
            xb = x[s : s + batch_size].copy()
            if i == poisoned_global_batch:
                xb[0, 0] = np.nan
            yield xb, y[s : s + batch_size]
            i += 1


def test_nan_loss_from_a_poisoned_batch_is_named_with_its_epoch_and_batch_and_stops(seeded):
    x, y = _regression(n=96)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, name="hidden"), keras.layers.Dense(1, name="out")]
    )
    model.compile(keras.optimizers.SGD(0.002), loss="mse")
    monitor = TrainingMonitor(on_problem="stop")
    # 6 batches per epoch: global batch 9 is epoch 1, batch 3.
    with pytest.warns(TrainingProblemWarning, match=r"loss became nan at epoch 2, batch 3.*probed weights only"):
        history = model.fit(
            _poisoned_batches(x, y, 16, 9), steps_per_epoch=6, epochs=4, shuffle=False, verbose=0, callbacks=[monitor]
        )
    assert _kinds(monitor.problems)[0] == ("nonfinite_loss", 1)
    problem = monitor.problems[0]
    assert problem.batch == 3
    assert problem.values["probed"] == "weights"
    # The NaN gradient spread to every trained layer; the first one in order is named.
    assert problem.values["first_nonfinite_weights"] == "hidden"
    assert problem.values["layers_with_nonfinite_weights"] == 2
    assert len(history.epoch) == 2  # "stop" ended training in the epoch of the NaN


def test_nan_probe_with_probe_data_finds_bad_input_rows_and_the_layer_that_makes_nan(seeded):
    x, y = _regression(n=64)
    # A log of a linear output: NaN as soon as one pre-activation is negative.
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, name="linear"),
            keras.layers.Lambda(keras.ops.log, name="log"),
            keras.layers.Dense(1, name="out"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    probe_x = x.copy()
    probe_x[[5, 40], 2] = np.inf
    found = []
    monitor = TrainingMonitor(on_problem=found.append, probe_data=(probe_x, y))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    assert _kinds(found)[0] == ("nonfinite_loss", 0)
    values = found[0].values
    assert values["probed"] == "weights+outputs"
    assert values["nonfinite_input_rows"] == 2 and values["first_nonfinite_input_row"] == 5
    assert values["first_nonfinite_output"] == "log"
    assert "'log'" in found[0].message and "2 row(s) with non-finite inputs" in found[0].message


def test_loss_explosion_after_a_huge_learning_rate_is_reported_at_that_epoch(seeded):
    x, y = _regression(n=256)
    model = _linear_model()
    found = []
    # MSE on unit-variance inputs has curvature 2: SGD is unstable above lr=1.
    huge_lr = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.01 if epoch < 2 else 3.0)
    monitor = TrainingMonitor(on_problem=found.append)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False, callbacks=[huge_lr, monitor])
    batch_level = [p for p in found if p.kind in ("loss_exploding", "nonfinite_loss")]
    assert batch_level[0].kind == "loss_exploding"
    assert batch_level[0].epoch == 2
    assert batch_level[0].values["factor"] > 10
    assert "running median" in batch_level[0].message


def test_rare_positives_of_imbalanced_data_are_not_called_an_explosion(seeded):
    # 2% positives, batches of 16: a batch holding a positive has a loss many
    # times the median of the (mostly all-negative) batches.
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3200, 4)).astype("float32")
    y = np.zeros(3200, "float32")
    y[rng.choice(3200, 64, replace=False)] = 1.0

    def run(**kwargs):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
        found = []
        model.fit(
            x,
            y,
            batch_size=16,
            epochs=3,
            verbose=0,
            shuffle=False,
            callbacks=[TrainingMonitor(on_problem=found.append, **kwargs)],
        )
        return [p for p in found if p.kind == "loss_exploding"]

    # Judged batch by batch the data does trip the rule, so the smoothed default is what keeps quiet.
    assert run(loss_smoothing=1)
    assert run() == []


@pytest.mark.parametrize(
    "optimizer, kind",
    [
        (lambda: keras.optimizers.SGD(1e-7), "lr_too_low"),
        (lambda: keras.optimizers.Adam(0.5), "lr_too_high"),
    ],
)
def test_learning_rate_too_low_or_too_high_is_reported_with_a_tensorboard_text_event(tmp_path, seeded, optimizer, kind):
    x, y = _regression(n=64)
    model = _linear_model(optimizer=optimizer())
    found = []
    monitor = TrainingMonitor(log_dir=tmp_path, every_n_batches=2, on_problem=found.append)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    assert (kind, 0) in _kinds(found)
    ratio = history.history["update_ratio"][0]
    assert (ratio < 1e-4) if kind == "lr_too_low" else (ratio > 1e-2)
    assert f"batch/problems/{kind}" in tensorboard.read_tags(tmp_path)["text"]


def test_healthy_run_reports_nothing(seeded):
    x, y = _regression(n=128)
    model = _linear_model(optimizer=keras.optimizers.SGD(0.0005))
    found = []
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        verbose=0,
        validation_data=_regression(n=32, seed=1),
        callbacks=[TrainingMonitor(every_n_batches=3, on_problem=found.append)],
    )
    assert found == []


def _overfit_setup(seed=3):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, 20)).astype("float32")
    y = rng.integers(0, 2, size=(16, 1)).astype("float32")
    xv = rng.normal(size=(64, 20)).astype("float32")
    yv = rng.integers(0, 2, size=(64, 1)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    return model, (x, y), (xv, yv)


def _expected_overfit_epoch(loss, val, patience):
    """The documented rule, re-derived from History: no new best val_loss for
    `patience` epochs, val above its best, training loss below its value at the best epoch."""
    best = 0
    for e in range(1, len(val)):
        if val[e] < val[best]:
            best = e
        elif e - best >= patience and loss[e] < loss[best]:
            return e, best
    return None, None


def test_frozen_backbone_modified_by_hand_is_a_freezing_bug_but_trainable_batchnorm_stats_are_not(seeded):
    backbone = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8), keras.layers.BatchNormalization()], name="backbone"
    )
    backbone.trainable = False
    inp = keras.Input((6,))
    h = backbone(inp, training=False)
    h = keras.layers.Dense(4, name="head")(h)
    h = keras.layers.BatchNormalization(name="head_bn")(h)  # trainable: its moving stats change legitimately
    out = keras.layers.Dense(1, name="out")(h)
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    kernel = backbone.layers[0].kernel

    def tamper(epoch, logs):
        if epoch == 1:
            kernel.assign(kernel + 0.5)

    x, y = _regression(n=64, d=6)
    monitor = TrainingMonitor()  # on_problem="warn": a warning, training goes on
    with pytest.warns(
        TrainingProblemWarning, match=r"frozen layer group 'backbone' changed during epoch 2 .*freezing bug"
    ):
        history = model.fit(
            x,
            y,
            batch_size=16,
            epochs=4,
            verbose=0,
            callbacks=[
                keras.callbacks.LambdaCallback(on_epoch_end=tamper),
                monitor,
            ],
        )
    assert len(history.epoch) == 4
    found = monitor.problems
    frozen = [p for p in found if p.kind == "frozen_weights_changed"]
    assert _kinds(frozen) == [("frozen_weights_changed", 1)]
    assert frozen[0].values["group"] == "backbone"
    assert frozen[0].values["changed"] == 1 and "kernel" in frozen[0].values["first"]
    assert "head_bn" not in " ".join(p.message for p in found)


def test_trainable_layer_whose_weights_never_change_is_reported(seeded):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            # Pre-activations near -100: every ReLU is dead, so its gradients are exactly zero.
            keras.layers.Dense(8, activation="relu", bias_initializer=keras.initializers.Constant(-100.0), name="dead"),
            keras.layers.Dense(1, name="out"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), loss="mse")
    found = []
    x, y = _regression(n=64)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[TrainingMonitor(on_problem=found.append)])
    stuck = [p for p in found if p.kind == "weights_not_changing"]
    assert _kinds(stuck) == [("weights_not_changing", 0)]  # reported once while it lasts
    assert stuck[0].values["group"] == "dead"


def test_optimizer_without_learning_rate_is_said_once_and_the_rest_is_monitored():
    class NoRate(keras.optimizers.Optimizer):
        def __init__(self):
            super().__init__(learning_rate=0.01, name="no_rate")

        @property
        def learning_rate(self):
            return None

        def update_step(self, gradient, variable, learning_rate):
            variable.assign_sub(0.01 * gradient)

    x, y = _regression(n=64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(NoRate(), loss="mse")
    monitor = TrainingMonitor(every_n_batches=2, on_problem=lambda p: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor])
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    notes = [w for w in caught if "exposes no learning rate" in str(w.message)]
    assert len(notes) == 1
    assert all(math.isnan(v) for v in history.history["learning_rate"])
    assert all(v > 0 for v in history.history["step_seconds"])
    assert all(math.isfinite(v) and v > 0 for v in history.history["update_ratio"])


# -------------------------------------------------------------------- state


def test_state_round_trips_through_get_state_and_set_state():
    monitor = TrainingMonitor(overfit_patience=2, on_problem=lambda p: None)
    model, (x, y), val = _overfit_setup()
    model.fit(x, y, validation_data=val, batch_size=8, epochs=3, verbose=0, callbacks=[monitor])
    state = monitor.get_state()
    fresh = TrainingMonitor(overfit_patience=2, on_problem=lambda p: None)
    fresh.set_state(state)
    again = fresh.get_state()
    assert again.keys() == state.keys()
    np.testing.assert_array_equal(again["loss_window"], state["loss_window"])
    assert len(state["loss_window"]) == 6  # 2 batches x 3 epochs
    for key in ("best_val_loss", "best_epoch", "train_loss_at_best", "active", "problems", "lr_missing_warned"):
        assert again[key] == state[key], key
    assert fresh._restored
    assert all(isinstance(p, TrainingProblem) for p in fresh.problems)


def test_overfitting_is_reported_with_gap_and_best_epoch_and_its_memory_survives_checkpoint_restart(tmp_path):
    from kerafine.callbacks.checkpoint_restart import CheckpointRestart

    def run(epochs, ckpt_dir):
        model, (x, y), val = _overfit_setup()
        found = []
        monitor = TrainingMonitor(overfit_patience=3, on_problem=found.append)
        callbacks = [monitor] if ckpt_dir is None else [monitor, CheckpointRestart(ckpt_dir)]
        history = model.fit(
            x, y, validation_data=val, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks
        )
        return found, history

    # Uninterrupted reference run: over-fitting is found at the epoch the documented rule gives.
    found, history = run(6, None)
    loss, val_loss = history.history["loss"], history.history["val_loss"]
    expected_epoch, best = _expected_overfit_epoch(loss, val_loss, 3)
    assert expected_epoch is not None, val_loss
    overfit = [p for p in found if p.kind == "overfitting"]
    assert len(overfit) == 1
    assert overfit[0].epoch == expected_epoch
    assert overfit[0].values["best_epoch"] == best
    assert overfit[0].values["gap"] == pytest.approx(val_loss[expected_epoch] - loss[expected_epoch])
    assert f"(epoch {best + 1})" in overfit[0].message
    reference = [(p.kind, p.epoch, p.values.get("best_epoch")) for p in overfit]

    # Interrupted run: a new model, monitor and CheckpointRestart resume from the checkpoint.
    stop_at = reference[0][1]  # interrupt just before the detection epoch, after the best one
    assert stop_at - reference[0][2] >= 3
    run(stop_at, tmp_path / "ckpt")
    resumed, history2 = run(6, tmp_path / "ckpt")
    assert history2.epoch[0] == stop_at  # it did resume
    got = [(p.kind, p.epoch, p.values.get("best_epoch")) for p in resumed if p.kind == "overfitting"]
    assert got == reference


def test_name_defaults_to_none_and_is_what_the_state_key_carries():
    # Regression: the argument-check loop reused `name` and left it at "loss_smoothing".
    from kerafine.callbacks.training_monitor import TrainingMonitor

    assert TrainingMonitor().name is None
    assert TrainingMonitor().state_key == "kerafine.TrainingMonitor[]"
    assert TrainingMonitor(name="phase2").state_key == "kerafine.TrainingMonitor[phase2]"


# ------------------------------------------------- dead-model alarms (issue 19)


def _softmax_transfer(collapsed):
    from kerafine.transfer import build_transfer_model
    from tests._dead_models import bn_backbone

    model = build_transfer_model(
        bn_backbone(collapsed), keras.layers.Dense(3, activation="softmax", name="predictions")
    )
    model.compile(keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    return model


def test_constant_backbone_features_on_probe_data_are_named_with_the_batchnorm_hint(seeded):
    from tests._dead_models import images

    x, y = images(64), np.arange(64) % 3
    found = []
    monitor = TrainingMonitor(on_problem=found.append, probe_data=x)
    _softmax_transfer(True).fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[monitor])
    constant = [p for p in found if p.kind == "constant_features"]
    assert [p.epoch for p in constant] == [0]  # found at the first epoch's start, reported once
    assert constant[0].values["first_collapsing_batchnorm"] == "bn"
    assert "BatchNorm moving statistics" in constant[0].message and "'bn'" in constant[0].message


def test_a_healthy_backbone_or_no_probe_data_gives_no_constant_features_problem(seeded):
    from tests._dead_models import images

    x, y = images(64), np.arange(64) % 3
    for collapsed, probe in ((False, x), (True, None)):
        found = []
        monitor = TrainingMonitor(on_problem=found.append, probe_data=probe)
        _softmax_transfer(collapsed).fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
        assert "constant_features" not in [p.kind for p in found]


def _binary_classifier(bias):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid", name="out")])
    out = model.get_layer("out")
    out.kernel.assign(np.zeros((4, 1), "float32"))
    out.bias.assign(np.full((1,), bias, "float32"))
    return model


def test_one_class_on_validation_is_reported_after_two_epochs_in_a_row_or_at_the_end_of_the_fit(seeded):
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = _binary_classifier(-20.0)  # sigmoid(-20): class 0 everywhere, and lr 1e-9 keeps it so
    model.compile(keras.optimizers.SGD(1e-9), loss="binary_crossentropy")
    found = []
    monitor = TrainingMonitor(on_problem=found.append, validation_data=(x, y))
    model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[monitor])
    found = [p for p in found if p.kind == "one_class_predictions"]  # lr_too_low is right too, and not the point
    assert _kinds(found) == [("one_class_predictions", 1)]
    values = found[0].values
    assert values["predicted_class"] == 0 and values["rows"] == 64 and values["same_score"]
    assert values["majority_baseline"] == pytest.approx(max(y.mean(), 1 - y.mean()))
    # A one-epoch fit ending on a one-class model is still reported (at train end).
    found.clear()
    model.fit(
        x,
        y,
        batch_size=32,
        epochs=1,
        verbose=0,
        callbacks=[TrainingMonitor(on_problem=found.append, validation_data=(x, y))],
    )
    assert [k for k in _kinds(found) if k[0] == "one_class_predictions"] == [("one_class_predictions", 0)]


def test_a_model_that_separates_the_classes_is_not_one_class(seeded):
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = _binary_classifier(0.0)
    model.get_layer("out").kernel.assign(np.array([[3.0], [0], [0], [0]], "float32"))
    model.compile(keras.optimizers.SGD(1e-3), loss="binary_crossentropy")
    found = []
    model.fit(
        x,
        y,
        batch_size=32,
        epochs=2,
        verbose=0,
        callbacks=[TrainingMonitor(on_problem=found.append, validation_data=(x, y))],
    )
    assert "one_class_predictions" not in [p.kind for p in found]


def test_validation_data_is_checked_when_the_monitor_is_built():
    from kerafine.errors import DataError

    with pytest.raises(DataError, match="`validation_data`: the inputs have 4 rows but the labels have 3"):
        TrainingMonitor(validation_data=(np.zeros((4, 2)), np.zeros(3)))


# ------------------------------------------------- non-finite weights (issue 19)


def _relu_cnn():
    inputs = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    return model


def _images_with_two_nan_rows(n=64, rows=(16, 17), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, size=n)
    x[list(rows)] = np.nan
    return x, y


def test_two_nan_images_in_a_relu_cnn_are_flagged_at_the_first_poisoned_batch_whatever_the_loss(seeded):
    # Issue 19: the loss may stay finite (a ReLU that maps NaN to 0) or not; the weights
    # go NaN either way (the conv1 kernel's gradient multiplies the NaN inputs), so the
    # problem is judged on the weights and must be flagged at batch 1, the poisoned one.
    x, y = _images_with_two_nan_rows()
    model = _relu_cnn()
    found = []
    monitor = TrainingMonitor(on_problem=found.append, every_n_batches=1, probe_data=x)
    history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[monitor])
    weights = [p for p in found if p.kind == "nonfinite_weights"]
    assert len(weights) == 1, _kinds(found)
    problem = weights[0]
    assert (problem.epoch, problem.batch) == (0, 1)
    assert problem.values["first_nonfinite_weights"] == "conv1"
    assert problem.values["nonfinite_input_rows"] == 2
    assert problem.values["first_nonfinite_input_row"] == 16
    assert "'conv1'" in problem.message and "2 row(s) with non-finite inputs (first row 16)" in problem.message
    # Nothing was flagged before the poisoned batch.
    assert all((p.epoch, p.batch) >= (0, 1) for p in found if p.batch is not None)
    assert all(p.epoch >= 0 for p in found)
    assert math.isnan(history.history["update_ratio"][-1])
    assert not np.isfinite(model.get_layer("conv1").kernel.numpy()).all()


def _nan_to_zero_relu(h):
    # max(h, 0) written as a comparison: NaN > 0 is False in IEEE arithmetic, so NaN maps
    # to 0 on every CPU. This builds, by construction, the CPU quirk of the issue.
    return keras.ops.where(h > 0, h, 0.0)


def test_nan_images_poison_conv1_while_the_loss_stays_finite_and_are_flagged_at_that_batch(seeded):
    # Issue 19's case exactly: the loss stays finite (here by construction), conv1's kernel
    # goes NaN at the poisoned batch (its gradient multiplies the NaN inputs), update_ratio
    # is NaN, and the monitor must not say problems == [].
    x, y = _images_with_two_nan_rows()
    inputs = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    h = keras.layers.Lambda(_nan_to_zero_relu, name="relu")(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(h))
    model.compile(keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    losses = []
    found = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: losses.append(logs["loss"]))
    monitor = TrainingMonitor(on_problem=found.append, every_n_batches=1, probe_data=(x, y))
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=[record, monitor])
    assert np.isfinite(losses).all()  # the trap: nothing in the loss says the model died
    assert not np.isfinite(model.get_layer("conv1").kernel.numpy()).all()
    assert all(math.isnan(r) for r in history.history["update_ratio"][1:])  # epoch 0 had one good step
    assert "nonfinite_loss" not in [p.kind for p in found]
    weights = [p for p in found if p.kind == "nonfinite_weights"]
    assert [(p.epoch, p.batch) for p in weights] == [(0, 1)]
    assert weights[0].values["first_nonfinite_weights"] == "conv1"
    assert weights[0].values["nonfinite_input_rows"] == 2 and weights[0].values["first_nonfinite_input_row"] == 16
    assert "finite, yet the model is dead" in weights[0].message


def test_nan_weights_without_probe_data_are_a_problem_naming_the_first_layer(seeded):
    x, y = _images_with_two_nan_rows(rows=(0, 1))
    model = _relu_cnn()
    monitor = TrainingMonitor(on_problem="warn", every_n_batches=2)
    with pytest.warns(TrainingProblemWarning, match=r"weights became NaN/inf at epoch 1, batch 0.*'conv1'"):
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    assert [p.kind for p in monitor.problems].count("nonfinite_weights") == 1
    assert monitor.problems != []


def test_finite_training_reports_no_nonfinite_weights(seeded):
    x, y = _images_with_two_nan_rows(rows=())
    model = _relu_cnn()
    found = []
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        verbose=0,
        callbacks=[TrainingMonitor(on_problem=found.append, every_n_batches=1)],
    )
    assert "nonfinite_weights" not in [p.kind for p in found]


@pytest.mark.parametrize("freq, flagged_at", [(1, 2), (4, 3)])
def test_weights_poisoned_by_hand_with_inf_are_flagged_at_the_next_weight_check(seeded, freq, flagged_at):
    # A weight set to inf (not NaN): the check is on isfinite, not isnan.
    x, y = _regression(n=64)
    model = _linear_model()
    found = []

    class Poison(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                kernel = self.model.get_layer("out").kernel
                kernel.assign(np.full(kernel.shape, np.inf, "float32"))

    model.fit(
        x,
        y,
        batch_size=16,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[Poison(), TrainingMonitor(on_problem=found.append, weight_check_freq=freq)],
    )
    weights = [p for p in found if p.kind == "nonfinite_weights"]
    # Checked after batches 0, 1, 2, 3 (freq 1) or after the 4th batch only (freq 4).
    assert [(p.epoch, p.batch) for p in weights] == [(0, flagged_at)]
    assert weights[0].values["first_nonfinite_weights"] == "out"
