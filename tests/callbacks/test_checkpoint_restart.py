"""CheckpointRestart: atomic checkpoints, exact resume, corruption, rollback, kills."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from kerafine import _io, tensorboard
from kerafine.callbacks import checkpoint_restart as cr
from kerafine.callbacks.checkpoint_restart import CheckpointRestart
from kerafine.callbacks.early_stopping import EarlyStopping
from kerafine.errors import CheckpointError, KerafineError, TrainingError

_RNG = np.random.default_rng(0)
X = _RNG.normal(size=(32, 3)).astype("float32")
Y = (X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * _RNG.normal(size=(32, 1))).astype("float32")


def _model(units=4, lr=0.01, dropout=True):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((3,)), keras.layers.Dense(units, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(0.25, seed=1))
    layers.append(keras.layers.Dense(1))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.Adam(lr), loss="mse")
    return model


def _fit(model, callbacks, epochs, **kwargs):
    return model.fit(X, Y, batch_size=4, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks, **kwargs)


def _variables(model):
    return [np.array(v.numpy()) for v in model.variables + model.optimizer.variables]


# -- bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(keep=0), r"`keep`: received 0; expected an int >= 1"),
        (dict(save_freq=0), r"`save_freq`: received 0; expected \"epoch\" or a positive int"),
        (dict(save_freq="batch"), r"`save_freq`: received 'batch'"),
        (dict(save_freq=True), r"`save_freq`: received True"),
        (dict(divergence_factor=1.0), r"`divergence_factor`: received 1.0; expected a finite number > 1"),
        (dict(lr_factor=0), r"`lr_factor`: received 0; expected a number in \(0, 1\]"),
        (dict(max_rollbacks=-1), r"`max_rollbacks`: received -1"),
        (dict(background_save="yes"), r"`background_save`: received 'yes'; expected True or False"),
        (dict(divergence_smoothing=0), r"`divergence_smoothing`: received 0; expected an int >= 1"),
        (dict(weight_check_freq=0), r"`weight_check_freq`: received 0; expected an int >= 1"),
    ],
)
def test_bad_arguments_raise_before_training(tmp_path, kwargs, match):
    with pytest.raises(KerafineError, match=match):
        CheckpointRestart(tmp_path / "ckpt", **kwargs)


def test_directory_that_is_a_file_raises(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(KerafineError, match=r"`directory`: received '.*file'; expected a directory path"):
        CheckpointRestart(f)


def test_directory_that_cannot_be_written_raises(tmp_path):
    # Tests may run as root, for whom chmod does not forbid writing: a path
    # under a regular file can never be created.
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(KerafineError, match=r"`directory`: .*expected a writable directory"):
        CheckpointRestart(f / "ckpt")


# -- saving and resuming ---------------------------------------------------------


def test_checkpoints_are_atomic_verified_and_only_the_newest_kept(tmp_path):
    ckpt = CheckpointRestart(tmp_path / "c", keep=2, log_dir=tmp_path / "logs")
    _fit(_model(), [ckpt], epochs=4)
    names = [p.name for p in ckpt.checkpoints()]
    assert names == ["ckpt-00000005", "ckpt-00000004"]  # 1 initial + 4 epochs, 2 kept
    for p in ckpt.checkpoints():
        assert _io.verify_manifest(p) == []
    assert _io.read_manifest_meta(ckpt.checkpoints()[0])["epoch"] == 4
    assert not [n for n in os.listdir(tmp_path / "c") if n.startswith(".")]
    resumed = CheckpointRestart(tmp_path / "c", keep=2, log_dir=tmp_path / "logs")
    _fit(_model(), [resumed], epochs=4)  # all 4 epochs done: restores, trains nothing
    tags = tensorboard.read_tags(tmp_path / "logs")
    # Stepped by optimizer iteration: in kerafine/batch, tagged batch/...
    assert "batch/checkpoint" in tags["text"] and "batch/checkpoint/save_seconds" in tags["scalars"]
    batch_scalars = tensorboard.read_scalars(tmp_path / "logs", subdir=tensorboard.BATCH_SUBDIR)
    assert batch_scalars["batch/checkpoint/restored_epoch"][0][1] == 4.0
    assert not any(
        t.startswith("checkpoint") for t in tensorboard.read_tags(tmp_path / "logs", subdir=None).get("scalars", ())
    )


@pytest.mark.parametrize("save_freq", ["epoch", 3])
def test_interrupted_run_resumes_bit_identical_in_process(tmp_path, save_freq):
    reference = _model()
    _fit(reference, [], epochs=3)

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 5:
                raise RuntimeError("simulated crash")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(_model(), [CheckpointRestart(tmp_path / "c", save_freq=save_freq), Crash()], epochs=3)

    seen = []

    class Recorder(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append((self.epoch, batch))

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    resumed = _model()
    ckpt = CheckpointRestart(tmp_path / "c", save_freq=save_freq)
    history = _fit(resumed, [ckpt, Recorder()], epochs=3)
    for a, b in zip(_variables(reference), _variables(resumed)):
        np.testing.assert_array_equal(a, b)
    if save_freq == "epoch":
        assert seen[0] == (1, 0) and len(history.history["loss"]) == 2
    else:
        # Saves every 3 batches across epochs (8 a epoch): after batches 3, 6 of
        # epoch 0 and 1, 4 of epoch 1; the crash comes after batch 6 of epoch 1.
        # Batches 0..3 of epoch 1 are read and skipped, unseen by any callback.
        assert seen[0] == (1, 4)
        assert len(history.history["loss"]) == 2
    assert resumed._initial_epoch is None  # the model is left as found for the next fit


@pytest.mark.parametrize("position", ["first", "last"])
def test_state_of_other_callbacks_is_restored_wherever_the_checkpoint_sits(tmp_path, position):
    def callbacks():
        es = EarlyStopping("loss", patience=50, restore_best_weights=True)
        kes = keras.callbacks.EarlyStopping("loss", patience=50)
        rlr = keras.callbacks.ReduceLROnPlateau("loss", patience=1, factor=0.5, min_delta=10.0)
        mc = keras.callbacks.ModelCheckpoint(
            str(tmp_path / "best.weights.h5"), "loss", save_best_only=True, save_weights_only=True
        )
        # Keras's stateless writers ride along unharmed.
        tb = keras.callbacks.TensorBoard(str(tmp_path / "tb"), write_graph=False, profile_batch=0)
        csv = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"), append=True)
        ckpt = CheckpointRestart(tmp_path / "c")
        others = [es, kes, rlr, mc, tb, csv]
        return ([ckpt] + others if position == "first" else others + [ckpt]), es, kes, rlr, mc

    cbs, es, kes, rlr, mc = callbacks()
    model = _model()
    _fit(model, cbs, epochs=3)
    before = (es.wait, es.best, es.best_epoch, kes.wait, kes.best, rlr.wait, rlr.best, mc.best)
    lr_before = float(model.optimizer.learning_rate)
    assert lr_before < 0.01  # ReduceLROnPlateau acted, so its state matters

    cbs2, es2, kes2, rlr2, mc2 = callbacks()
    model2 = _model()
    # The run finished all 3 epochs: resuming runs none and keeps every state.
    history = _fit(model2, cbs2, epochs=3)
    assert history.history == {}
    assert (es2.wait, es2.best, es2.best_epoch, kes2.wait, kes2.best, rlr2.wait, rlr2.best, mc2.best) == before
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 4  # header + 3 epochs
    assert float(model2.optimizer.learning_rate) == lr_before
    for a, b in zip(es.best_weights, es2.best_weights):
        np.testing.assert_array_equal(a, b)


def test_snapshots_for_background_saves_are_unchanged_by_later_training():
    model = _model(dropout=False)
    _fit(model, [], epochs=1)
    snapshots = [cr._snapshot(v) for v in model.variables + model.optimizer.variables]
    copies = [np.array(s, copy=True) for s in snapshots]
    _fit(model, [], epochs=1)  # Adam updates every variable in place
    changed = 0
    for s, c, v in zip(snapshots, copies, model.variables + model.optimizer.variables):
        np.testing.assert_array_equal(s, c)
        changed += not np.array_equal(c, v.numpy())
    assert changed >= len(model.variables)


@pytest.mark.parametrize("background_save", [True, False])
def test_foreground_and_background_saves_write_the_same_checkpoint(tmp_path, background_save):
    model = _model()
    ckpt = CheckpointRestart(tmp_path / "c", background_save=background_save)
    _fit(model, [ckpt], epochs=2)
    state, arrays = cr._read_checkpoint(ckpt.checkpoints()[0])
    assert state["position"] == {"epoch": 2, "batch": 0, "stopped": False}
    for a, v in zip(arrays["model"] + arrays["optimizer"], model.variables + model.optimizer.variables):
        np.testing.assert_array_equal(a, v.numpy())


def test_checkpoint_from_a_different_model_raises(tmp_path):
    _fit(_model(units=4), [CheckpointRestart(tmp_path / "c")], epochs=1)
    with pytest.raises(
        CheckpointError,
        match=r"different model \(variable #0: kernel \(3, 4\) float32 in the checkpoint, kernel \(3, 5\)",
    ):
        _fit(_model(units=5), [CheckpointRestart(tmp_path / "c")], epochs=2)


def test_delete_on_success_removes_the_checkpoints(tmp_path):
    ckpt = CheckpointRestart(tmp_path / "c", delete_on_success=True)
    _fit(_model(), [ckpt], epochs=2)
    assert not (tmp_path / "c").exists()


def test_works_under_mirrored_strategy_with_one_device(tmp_path):
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _model(dropout=False)
    _fit(model, [CheckpointRestart(tmp_path / "c")], epochs=2)
    with strategy.scope():
        model2 = _model(dropout=False)
    ckpt = CheckpointRestart(tmp_path / "c")
    history = _fit(model2, [ckpt], epochs=3)
    assert ckpt.resumed_from is not None and len(history.history["loss"]) == 1


# -- corruption and a full disk ----------------------------------------------------


@pytest.fixture(scope="module")
def three_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("three")
    _fit(_model(), [CheckpointRestart(root / "c", keep=3, rollback_on_divergence=False)], epochs=3)
    assert [p.name for p in CheckpointRestart(root / "c").checkpoints()] == [
        "ckpt-00000003",
        "ckpt-00000002",
        "ckpt-00000001",
    ]
    return root / "c"


def _flip_byte(path, at=100):
    data = bytearray(path.read_bytes())
    data[min(at, len(data) - 1)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, file",
    [
        ("truncate", "variables.bin"),
        ("bitflip", "variables.bin"),
        ("bitflip", "checkpoint.json"),
        ("delete", "checkpoint.json"),
        ("delete", "MANIFEST.json"),
    ],
)
def test_corrupt_newest_checkpoint_is_skipped_for_the_previous(tmp_path, three_checkpoints, damage, file):
    directory = tmp_path / "c"
    shutil.copytree(three_checkpoints, directory)
    target = directory / "ckpt-00000003" / file
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif damage == "bitflip":
        _flip_byte(target)
    else:
        target.unlink()
    ckpt = CheckpointRestart(directory, keep=3, rollback_on_divergence=False)
    with pytest.warns(UserWarning, match=r"skipping corrupt checkpoint .*ckpt-00000003"):
        history = _fit(_model(), [ckpt], epochs=4)
    assert ckpt.resumed_from.name == "ckpt-00000002"  # saved after epoch 2
    assert len(history.history["loss"]) == 2
    names = [p.name for p in ckpt.checkpoints()]
    assert "ckpt-00000003" not in names and names[0] == "ckpt-00000005"


def test_every_checkpoint_corrupt_raises_and_overwrites_nothing(tmp_path, three_checkpoints):
    directory = tmp_path / "c"
    shutil.copytree(three_checkpoints, directory)
    for p in directory.iterdir():
        _flip_byte(p / "variables.bin")
    before = {str(p): p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match=r"Every checkpoint .* is corrupt.*Nothing was overwritten"):
            _fit(_model(), [CheckpointRestart(directory)], epochs=4)
    after = {str(p): p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    assert before == after


def test_disk_full_during_save_reports_it_and_keeps_previous_checkpoints(tmp_path, monkeypatch):
    original = cr._write_checkpoint
    calls = [0]

    def write_until_full(directory, groups, state, checksums=None):
        calls[0] += 1
        if calls[0] == 3:
            # Half a file reaches the disk, then no space is left.
            (directory / "variables.bin").write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        original(directory, groups, state, checksums)

    monkeypatch.setattr(cr, "_write_checkpoint", write_until_full)
    with pytest.raises(
        CheckpointError,
        match=r"failed: the disk is full.*previous checkpoints are intact \(ckpt-00000002, ckpt-00000001\)",
    ):
        _fit(_model(), [CheckpointRestart(tmp_path / "c")], epochs=4)
    monkeypatch.setattr(cr, "_write_checkpoint", original)
    assert sorted(os.listdir(tmp_path / "c")) == ["ckpt-00000001", "ckpt-00000002"]  # no temp dir left
    for p in (tmp_path / "c").iterdir():
        assert _io.verify_manifest(p) == []
    ckpt = CheckpointRestart(tmp_path / "c")
    history = _fit(_model(), [ckpt], epochs=4)
    assert ckpt.resumed_from.name == "ckpt-00000002" and len(history.history["loss"]) == 3


# -- divergence rollback ------------------------------------------------------------------


class _Poison(keras.callbacks.Callback):
    """Damages the first kernel before chosen steps, as a blow-up would."""

    def __init__(self, when, kind):
        super().__init__()
        self.when, self.kind, self.epoch, self.fired = when, kind, 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.when(self.epoch, batch):
            kernel = self.model.layers[0].kernel
            value = kernel.numpy()
            kernel.assign(value * np.nan if self.kind == "nan" else value * 1e4)
            self.fired += 1


@pytest.mark.parametrize("kind", ["nan", "blowup"])
def test_divergence_rolls_back_lowers_lr_and_finishes(tmp_path, kind):
    model = _model(lr=0.01)
    poison = _Poison(lambda e, b: (e, b) == (1, 2), kind)
    ckpt = CheckpointRestart(tmp_path / "c", log_dir=tmp_path / "logs")
    with pytest.warns(UserWarning, match=r"diverged at epoch 2, batch 3 .*rolled back to ckpt-00000002.*0.005"):
        history = _fit(model, [ckpt, poison], epochs=3)
    assert poison.fired == 1 and ckpt.rollbacks == 1
    assert float(model.optimizer.learning_rate) == pytest.approx(0.005)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert np.isfinite(history.history["loss"]).all() and len(history.history["loss"]) == 3
    newest, _ = cr._read_checkpoint(ckpt.checkpoints()[0])
    assert newest["rollbacks"] == 1  # the count survives a restart
    events = tensorboard.read_scalars(tmp_path / "logs", subdir=tensorboard.BATCH_SUBDIR)["batch/rollback"]
    assert len(events) == 1 and events[0][1] == 1.0 and events[0][0] > 8  # at the global step of the rollback
    assert "batch/rollback" in tensorboard.read_tags(tmp_path / "logs")["text"]


def test_too_many_rollbacks_stop_training_with_a_clear_error(tmp_path):
    poison = _Poison(lambda e, b: e >= 1, "nan")
    ckpt = CheckpointRestart(tmp_path / "c", max_rollbacks=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TrainingError, match=r"diverged .* after 2 rollback\(s\); max_rollbacks=2 reached"):
            _fit(_model(), [ckpt, poison], epochs=3)
    assert poison.fired == 3
    for p in ckpt.checkpoints():  # the good checkpoints are still there to resume from
        assert _io.verify_manifest(p) == []


# -- real kills ---------------------------------------------------------------------

_SCRIPT = str(Path(__file__).with_name("_train_script.py"))


def _run_script(configs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, _SCRIPT, json.dumps(configs)], capture_output=True, text=True, env=env, timeout=600
    )
    return proc


def _chain(directory, out, common, kills, log):
    """Run the script again and again, killed at each point of `kills`, then to the end."""
    for kill in list(kills) + [None]:
        proc = _run_script([dict(common, directory=str(directory), out=str(out), kill=kill)])
        log.append((kill, proc.returncode, proc.stderr[-2000:]))
        expected = -9 if kill else 0
        if proc.returncode != expected:
            return


@pytest.mark.slow
def test_killed_runs_finish_bit_identical_to_an_uninterrupted_run(tmp_path):
    epoch_level = dict(save_freq="epoch", data="arrays")
    batch_level = dict(save_freq=3, data="resumable")
    logs = {"A": [], "B": []}
    # Chain A: epoch checkpoints, arrays: killed inside epoch 3 (last checkpoint
    # after epoch 2), then between epochs (at the start of epoch 5), then while
    # writing its 2nd checkpoint. Chain B: every 3 batches, shuffled
    # ResumableSequence: killed inside epoch 2 (resumes mid-epoch), then while
    # writing a checkpoint.
    threads = [
        threading.Thread(
            target=_chain,
            args=(
                tmp_path / "A",
                tmp_path / "A.npz",
                epoch_level,
                [["batch", 2, 3], ["epoch_begin", 5], ["write", 2]],
                logs["A"],
            ),
        ),
        threading.Thread(
            target=_chain,
            args=(tmp_path / "B", tmp_path / "B.npz", batch_level, [["batch", 1, 4], ["write", 3]], logs["B"]),
        ),
    ]
    for t in threads:
        t.start()
    reference = _run_script(
        [
            dict(epoch_level, directory=None, out=str(tmp_path / "refA.npz")),
            dict(batch_level, directory=None, out=str(tmp_path / "refB.npz")),
        ]
    )
    for t in threads:
        t.join()
    assert reference.returncode == 0, reference.stderr[-2000:]
    for name, n_kills in (("A", 3), ("B", 2)):
        codes = [rc for _, rc, _ in logs[name]]
        assert codes == [-9] * n_kills + [0], logs[name]
        ref, got = np.load(tmp_path / f"ref{name}.npz"), np.load(tmp_path / f"{name}.npz")
        assert int(ref["stopped_epoch"]) > 2  # EarlyStopping really stopped the run
        assert int(got["stopped_epoch"]) == int(ref["stopped_epoch"])
        assert int(got["last_epoch"]) == int(ref["last_epoch"])
        assert sorted(ref.files) == sorted(got.files)
        for key in ref.files:
            np.testing.assert_array_equal(ref[key], got[key], err_msg=f"chain {name}: {key}")


def _imbalanced():
    # 2% positives that the features cannot tell apart: the model learns to
    # predict "negative" confidently, so a batch holding one positive has a
    # cross-entropy many times the median batch.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 4)).astype("float32")
    y = np.zeros((600, 1), "float32")
    y[rng.choice(600, 12, replace=False)] = 1.0
    return x, y


def _imbalanced_fit(tmp_path, **kwargs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    x, y = _imbalanced()
    ckpt = CheckpointRestart(tmp_path / "c", max_rollbacks=0, **kwargs)
    return model.fit(x, y, batch_size=10, epochs=4, shuffle=False, verbose=0, callbacks=[ckpt]), ckpt


def test_rare_positives_in_imbalanced_data_do_not_count_as_divergence(tmp_path):
    # The single-batch rule (smoothing 1) does fire here: the data really has
    # batches above 10 x the median batch loss.
    with pytest.raises(TrainingError, match=r"mean loss of the last 1 batches, .* exceeds 10.0 x the recent median"):
        _imbalanced_fit(tmp_path / "single", divergence_smoothing=1)
    history, ckpt = _imbalanced_fit(tmp_path / "default")
    assert ckpt.rollbacks == 0 and len(history.history["loss"]) == 4
    assert np.isfinite(history.history["loss"]).all()


# -- successive fits (fine_tune's two phases) -------------------------------------------


def _two_phases(callbacks, crash_in_phase2=None):
    """Head first, then the first layer unfrozen with a fresh optimizer, as fine_tune does."""
    model = _model()
    model.layers[0].trainable = False
    model.compile(keras.optimizers.Adam(0.01), loss="mse")
    _fit(model, callbacks, epochs=2)
    model.layers[0].trainable = True
    model.compile(keras.optimizers.Adam(0.002), loss="mse")
    _fit(model, callbacks + ([crash_in_phase2] if crash_in_phase2 else []), epochs=4, initial_epoch=2)
    return model


def test_one_callback_checkpoints_each_fit_phase_and_a_rerun_resumes_the_interrupted_one(tmp_path):
    reference = _two_phases([])

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 3 and batch == 5:
                raise RuntimeError("simulated crash")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    with pytest.raises(RuntimeError, match="simulated crash"):
        _two_phases([CheckpointRestart(tmp_path / "c")], Crash())
    phase_dirs = [p for p in (tmp_path / "c").iterdir() if p.name.startswith("phase-")]
    assert len(phase_dirs) == 1  # phase 2 keeps its own checkpoints

    trained = []

    class Recorder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            trained.append(epoch)

    ckpt = CheckpointRestart(tmp_path / "c")
    resumed = _two_phases([ckpt, Recorder()])
    assert trained == [3]  # phase 1 restored its final state, phase 2 resumed after epoch 3
    assert ckpt.resumed_from.parent == phase_dirs[0]
    for a, b in zip(_variables(reference), _variables(resumed)):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_from_a_model_with_other_trainable_variables_still_raises(tmp_path):
    # Without Dropout the trainable variables sit at other positions (another
    # phase key): the architecture check must still come first.
    _fit(_model(dropout=False), [CheckpointRestart(tmp_path / "c")], epochs=1)
    with pytest.raises(
        CheckpointError, match=r"different model \(layer #\d+: Dense in the checkpoint, Dropout in the model\)"
    ):
        _fit(_model(), [CheckpointRestart(tmp_path / "c")], epochs=2)


# -- non-finite weights: judged on the weights themselves, never saved ----------------


class _PoisonBeforeSave(keras.callbacks.Callback):
    """Sets the first kernel to NaN at the end of chosen epochs: right before CheckpointRestart saves."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs, self.fired = set(epochs), 0

    def on_epoch_end(self, epoch, logs=None):
        if epoch in self.epochs:
            kernel = self.model.layers[0].kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))
            self.fired += 1


def _all_checkpoint_values_finite(ckpt):
    for path in ckpt.checkpoints():
        _, groups = cr._read_checkpoint(path)
        for arrays in groups.values():
            for a in arrays:
                if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
                    return False
    return True


def test_weights_poisoned_right_before_a_save_are_rolled_back_and_never_written(tmp_path):
    poison = _PoisonBeforeSave({1})
    # Last in the list: its epoch-end save still runs after the poison (CheckpointRestart saves last).
    ckpt = CheckpointRestart(tmp_path / "c", keep=10, background_save=False)
    with pytest.warns(UserWarning, match=r"diverged at epoch 2.*kernel holds NaN/inf.*rolled back"):
        _fit(_model(), [poison, ckpt], epochs=3)
    assert poison.fired == 1 and ckpt.rollbacks == 1
    assert _all_checkpoint_values_finite(ckpt)
    assert len(ckpt.checkpoints()) == 3  # initial, after epoch 1, after epoch 3: not after the poisoned epoch 2


def test_nonfinite_weights_without_rollback_raise_instead_of_saving(tmp_path):
    ckpt = CheckpointRestart(tmp_path / "c", rollback_on_divergence=False, background_save=False)
    with pytest.raises(
        TrainingError, match=r"Refusing to save a checkpoint after epoch 2: the weight .*kernel holds NaN/inf"
    ):
        _fit(_model(), [_PoisonBeforeSave({1}), ckpt], epochs=3)
    assert len(ckpt.checkpoints()) == 1 and _all_checkpoint_values_finite(ckpt)


# -- partial restores are not silent --------------------------------------------------


def test_a_restore_warns_about_unclaimed_states_and_callbacks_without_state(tmp_path):
    ckpt = CheckpointRestart(tmp_path / "c")
    _fit(_model(), [ckpt, EarlyStopping("loss", patience=9)], epochs=2)
    renamed = EarlyStopping("loss", patience=9, name="renamed")
    with pytest.warns(UserWarning) as record:
        _fit(_model(), [CheckpointRestart(tmp_path / "c"), renamed], epochs=3)
    messages = [str(w.message) for w in record]
    assert any(
        re.search(r"EarlyStopping \(state key 'EarlyStopping\[loss\|renamed\]'\) found no state in checkpoint ckpt-", m)
        for m in messages
    )
    assert any(
        re.search(r"holds the state of a callback with key 'EarlyStopping\[loss\]' that no callback", m)
        for m in messages
    )


def test_a_full_restore_is_silent_and_keys_do_not_depend_on_log_dir_or_order(tmp_path):
    from kerafine.callbacks.training_monitor import TrainingMonitor

    ckpt = CheckpointRestart(tmp_path / "c")
    first = [EarlyStopping("loss", patience=9), TrainingMonitor(log_dir=tmp_path / "logs-a", on_problem=lambda p: None)]
    _fit(_model(), [ckpt] + first, epochs=2)
    # Same script run again with the logs moved and the list reordered: every state is claimed.
    again = [TrainingMonitor(log_dir=tmp_path / "logs-b", on_problem=lambda p: None), EarlyStopping("loss", patience=9)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _fit(_model(), again + [CheckpointRestart(tmp_path / "c")], epochs=3)
    assert not [w for w in record if "state" in str(w.message)], [str(w.message) for w in record]


def _scalar_steps(event_dir):
    """{scalar tag: [steps]} as TensorBoard shows them.

    Read with the loader the TensorBoard server uses (plugin_event_accumulator),
    which honours purge events for TF2 summaries; the legacy
    event_accumulator.EventAccumulator purges only legacy (TF1 simple_value)
    scalars, not the tensor summaries tf.summary.scalar writes.
    """
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    acc = EventAccumulator(str(event_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return {
        tag: [e.step for e in acc.Tensors(tag)]
        for tag in acc.Tags()["tensors"]
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
    }


@pytest.mark.slow
def test_history_is_written_exactly_once_across_kills(tmp_path):
    # Killed while writing its 3rd checkpoint (the one after epoch 2: the CSV
    # and TensorBoard, earlier in the callback list, have already logged epoch
    # 2, but the run resumes at epoch 2 from the epoch-1 checkpoint), then at
    # the start of epoch 5 (resumes at 4 or 5, depending on whether the
    # background save of epoch 4 finished). Each resume must cut the CSV back
    # and purge the orphaned TensorBoard points.
    common = dict(save_freq="epoch", data="arrays", history=str(tmp_path / "logs"))
    log = []
    (tmp_path / "logs").mkdir()
    _chain(tmp_path / "ckpt", tmp_path / "out.npz", common, [["write", 3], ["epoch_begin", 5]], log)
    ref_logs = tmp_path / "ref_logs"
    ref_logs.mkdir()
    ref = _run_script([dict(common, directory=None, history=str(ref_logs), out=str(tmp_path / "ref.npz"))])
    assert [rc for _, rc, _ in log] == [-9, -9, 0], log
    assert ref.returncode == 0, ref.stderr[-2000:]
    last = int(np.load(tmp_path / "out.npz")["last_epoch"])
    assert last == int(np.load(tmp_path / "ref.npz")["last_epoch"]) > 5

    rows = (tmp_path / "logs" / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,")
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(last + 1))  # one row per epoch, in order
    # The resumed run is bit-identical, so its history is the uninterrupted run's.
    assert rows == (ref_logs / "history.csv").read_text().splitlines()

    for sub in ("train", "validation"):
        steps = _scalar_steps(tmp_path / "logs" / sub)
        assert steps["epoch_loss"] == list(range(last + 1)), (sub, steps)
        for tag, tag_steps in steps.items():
            assert len(tag_steps) == len(set(tag_steps)), (sub, tag, tag_steps)
    kerafine_steps = _scalar_steps(tmp_path / "logs" / "kerafine")
    assert not any(t.startswith("batch/") for t in kerafine_steps), kerafine_steps  # per epoch only
    for tag, tag_steps in kerafine_steps.items():
        assert len(tag_steps) == len(set(tag_steps)), (tag, tag_steps)
    # CheckpointRestart's bookkeeping is stepped by optimizer iteration (8 batches
    # an epoch) in its own directory, purged at the resumed iteration: both
    # resumes' points stay (at the restored iterations: an epoch boundary, then
    # 32 or 40), each save once.
    batch_steps = _scalar_steps(tmp_path / "logs" / "kerafine" / "batch")
    restored = batch_steps["batch/checkpoint/restored_epoch"]
    assert len(restored) == 2 and restored[0] % 8 == 0 and restored[0] < restored[1] in (4 * 8, 5 * 8), restored
    saves = batch_steps["batch/checkpoint/save_seconds"]
    assert saves == sorted(set(saves)) and saves[-1] == (last + 1) * 8, saves
    # Without the purge marker the interrupted runs' points would be there twice:
    # the raw event files hold more epoch_loss points than TensorBoard shows.
    from kerafine import tensorboard

    raw = [step for step, _ in tensorboard.read_scalars(tmp_path / "logs", subdir="validation")["epoch_loss"]]
    assert len(raw) > last + 1
