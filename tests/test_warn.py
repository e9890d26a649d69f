"""kerafine._warn: warnings raised during fit point at the user's line (this file), not at Keras."""

import os
import subprocess
import sys
import warnings

import keras
import numpy as np

import kerafine
from kerafine import _warn
from kerafine.callbacks import AUCTracker, DriftMonitor, TrainingMonitor
from kerafine.callbacks.training_monitor import TrainingProblemWarning
from kerafine.drift import DriftWarning

HERE = os.path.abspath(__file__)


def _xy(n=128, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.SGD(0.01), "binary_crossentropy")
    return model


def _caught(category, fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit()
    found = [w for w in caught if issubclass(w.category, category)]
    assert found, [str(w.message) for w in caught]
    return found


def test_drift_warning_points_at_the_users_fit_line():
    x, y = _xy()
    monitor = DriftMonitor(reference=x, current_data=x[:64] + np.array([0, 0, 0, 2.0], "float32"))
    model = _model()
    found = _caught(DriftWarning, lambda: model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor]))
    assert {os.path.abspath(w.filename) for w in found} == {HERE}


def test_training_problem_warning_points_at_the_users_fit_line():
    x, y = _xy()
    model = _model()
    model.compile(keras.optimizers.SGD(1e-9), "binary_crossentropy")  # weights barely move: lr_too_low
    monitor = TrainingMonitor()
    found = _caught(
        TrainingProblemWarning, lambda: model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[monitor])
    )
    assert {os.path.abspath(w.filename) for w in found} == {HERE}, [(w.filename, str(w.message)) for w in found]


def test_auc_tracker_single_class_warning_points_at_the_users_fit_line():
    from kerafine.metrics import UndefinedMetricWarning

    x, y = _xy()
    model = _model()
    tracker = AUCTracker((x, np.zeros_like(y)))
    found = _caught(UndefinedMetricWarning, lambda: model.fit(x, y, epochs=1, verbose=0, callbacks=[tracker]))
    assert {os.path.abspath(w.filename) for w in found} == {HERE}


def test_under_fine_tune_the_warning_points_at_the_users_call_or_the_documented_fallback():
    x, y = _xy()
    inputs = keras.Input((4,))
    enc = keras.Model(inputs, keras.layers.Dense(4, name="enc")(inputs), name="encoder")
    model = kerafine.build_transfer_model(enc, keras.layers.Dense(1, activation="sigmoid", name="predictions"))
    monitor = DriftMonitor(reference=x, current_data=x[:64] + np.array([0, 0, 0, 2.0], "float32"))
    found = _caught(
        DriftWarning,
        lambda: kerafine.fine_tune(model, (x, y), head_epochs=1, finetune_epochs=0, verbose=0, callbacks=[monitor]),
    )
    files = {os.path.abspath(w.filename) for w in found}
    if sys.version_info >= (3, 12):
        assert files == {HERE}  # skip_file_prefixes: every kerafine/Keras/TensorFlow frame is skipped
    else:
        # Python < 3.12: the fixed stacklevel reaches the fit call fine_tune makes (documented in kerafine._warn).
        assert files == {os.path.join(os.path.dirname(kerafine.__file__), "finetune.py")}


def test_skip_prefixes_name_kerafine_keras_and_tensorflow():
    prefixes = _warn.skip_prefixes()
    for package in (kerafine, keras):
        assert any(
            os.path.realpath(package.__file__).startswith(p) or package.__file__.startswith(p) for p in prefixes
        ), (package.__file__, prefixes)
    assert any(os.sep + "tensorflow" + os.sep in p for p in prefixes)
    assert all(p.endswith(os.sep) for p in prefixes)  # a directory, so "keras_foo" is not "keras"


def test_warn_from_a_plain_function_points_at_its_caller():
    def kerafine_like_entry():
        _warn.warn("hello", UserWarning)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kerafine_like_entry()  # this file calls the "entry point" ...
    # ... which lives in this file too: on 3.11 stacklevel 3 is this line; on 3.12 the first non-skipped
    # frame is the entry point's own line (this file is not in a skipped directory). Both are this file.
    assert [os.path.abspath(w.filename) for w in caught] == [HERE]


def test_importing_the_helper_does_not_import_keras_or_tensorflow():
    code = (
        "import sys, kerafine._warn as w; w.skip_prefixes(); print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    )
    root = os.path.dirname(os.path.dirname(HERE))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert proc.stdout.split() == ["False", "False"], proc.stderr


def test_early_stopping_no_validation_warning_points_at_the_users_fit_line():
    from kerafine.callbacks import EarlyStopping

    x, y = _xy()
    model = _model()
    stopper = EarlyStopping(monitor="val_loss", patience=2)  # no validation data: warned once
    found = _caught(UserWarning, lambda: model.fit(x, y, epochs=2, verbose=0, callbacks=[stopper]))
    assert [str(w.message)[:40] for w in found] == ["EarlyStopping monitors 'val_loss' but va"]
    assert {os.path.abspath(w.filename) for w in found} == {HERE}, [(w.filename, str(w.message)) for w in found]


class _NaNKernelAt(keras.callbacks.Callback):
    """Sets the Dense kernel to NaN before one chosen (epoch, batch): a diverged step, deterministically."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            kernel = self.model.layers[0].kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_checkpoint_restart_rollback_warning_points_at_the_users_fit_line(tmp_path):
    from kerafine.callbacks import CheckpointRestart

    x, y = _xy()
    model = _model()
    ckpt = CheckpointRestart(tmp_path / "ckpt")
    found = _caught(
        UserWarning,
        lambda: model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[ckpt, _NaNKernelAt(1, 1)]),
    )
    rollbacks = [w for w in found if "rolled back to" in str(w.message)]
    assert len(rollbacks) == 1 and ckpt.rollbacks == 1, [str(w.message) for w in found]
    assert {os.path.abspath(w.filename) for w in rollbacks} == {HERE}, [(w.filename, str(w.message)) for w in found]


def test_checkpoint_restart_corrupt_checkpoint_warning_points_at_the_users_fit_line(tmp_path):
    from kerafine.callbacks import CheckpointRestart

    x, y = _xy()
    model = _model()
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[CheckpointRestart(tmp_path / "ckpt")])
    newest = CheckpointRestart(tmp_path / "ckpt").checkpoints()[0]
    victim = max((p for p in newest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.write_bytes(b"\0" * victim.stat().st_size)  # same size, other bytes: the manifest's checksum fails
    ckpt = CheckpointRestart(tmp_path / "ckpt")
    found = _caught(UserWarning, lambda: _model().fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[ckpt]))
    corrupt = [w for w in found if "skipping corrupt checkpoint" in str(w.message)]
    assert len(corrupt) == 1, [str(w.message) for w in found]
    assert {os.path.abspath(w.filename) for w in corrupt} == {HERE}, [(w.filename, str(w.message)) for w in found]
