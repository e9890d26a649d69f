"""Crash-safe checkpoints, exact resume and rollback on divergence for ``model.fit``.

``CheckpointRestart`` goes beyond ``keras.callbacks.BackupAndRestore``:

* every checkpoint is a directory built under a temporary name, fsynced,
  described by a ``MANIFEST.json`` with a CRC32 per file, and renamed into
  place (:func:`kerafine._io.atomic_directory`); a kill at any moment leaves
  the previous checkpoints intact, and the ``keep`` newest are retained;
* a checkpoint holds the model's variables (weights, non-trainable state and
  the random-seed state of layers such as ``Dropout``), the optimizer's
  variables (slots, iteration count, learning rate), the epoch and batch
  position, the state of every stateful callback of the same ``fit``
  (kerafine's own and Keras's ``EarlyStopping``, ``ReduceLROnPlateau``,
  ``ModelCheckpoint``, see :mod:`kerafine.callbacks.state`), the running
  metric values of a partly trained epoch, and the Python, NumPy and Keras
  global random states;
* a restarted ``fit`` resumes from the newest checkpoint that verifies, at the
  right epoch and, with a batch-level ``save_freq``, at the right batch, so
  that the finished run is bit for bit the one that was never interrupted
  (given deterministic input, see below);
* a loss that turns NaN/inf, or whose smoothed value jumps above
  ``divergence_factor`` times its recent median, or a trainable weight that
  turns NaN/inf, rolls training back to the last checkpoint with a lower
  learning rate; a checkpoint holding a non-finite value is never written.

The divergence rule, exactly: every ``weight_check_freq`` batches and
before every save, one fused ``all(isfinite)`` runs over the trainable
weights (the model's and optimizer's variables before a save); a NaN/inf
there is divergence, whatever the loss says (on CPUs whose ``max(NaN, 0)``
is 0, a ReLU network with NaN weights reports a finite loss). After every batch, the batch's own loss is
recovered from Keras's running epoch mean. If it (or the running mean) is NaN
or inf, training has diverged at once. Otherwise the *smoothed loss* is the
mean of the last ``divergence_smoothing`` batch losses (fewer at the very
start); training has diverged when the smoothed loss exceeds
``divergence_factor`` times the median of the previous ``divergence_window``
smoothed losses (tested once at least 8 are known). Smoothing is what keeps
imbalanced data from tripping the rule: a batch that holds a rare positive
can have a cross-entropy many times the median, but it moves a mean of 10
batches only by a tenth of that; a real blow-up (losses thousands of times
larger, or growing batch after batch) still exceeds it at once or within a
few batches.

Successive ``fit`` calls on the same model with another trainable set (as
:func:`kerafine.fine_tune` does: head first, then part of the backbone with a
new optimizer) can share one ``CheckpointRestart``. Each *phase*, keyed on
the optimizer class and on which of the model's variables are trainable, has
its own checkpoints: the first phase in ``directory`` itself, every later one
in ``directory/phase-<key>``. Run the whole script again after a crash and a
finished phase restores its final state and trains nothing, while the phase
that was interrupted resumes from its newest checkpoint. Two successive
``fit`` calls with the same trainable set and optimizer class count as one
phase: the second continues from the first one's checkpoints (its epochs
must come after them). The architecture is checked whatever the phase: a
checkpoint written by another model raises ``CheckpointError``.

What an exact resume needs from the input pipeline: the resumed run must see
the same batches in the same order. That holds for arrays with
``shuffle=False``, for a deterministic ``tf.data`` pipeline without
shuffling, and for :class:`kerafine.data.resumable.ResumableSequence` (shuffled
by ``(seed, epoch)``; pass ``shuffle=False`` to ``fit``). It does not hold for
``fit(x_array, y_array, shuffle=True)``: ``tf.data`` draws that order inside
TensorFlow and a new process cannot draw it again (training still resumes
correctly, with a different order). Mid-epoch resumes read and discard the
batches already trained in that epoch (they are hidden from every callback).
"""

from __future__ import annotations

import errno
import json
import numbers
import os
import random
import shutil
import threading
import time
import zlib
from pathlib import Path

import keras
import numpy as np

from kerafine import _io, _keras_compat, _warn
from kerafine.callbacks import _probes
from kerafine.callbacks import state as _state
from kerafine.callbacks._loss_watch import DEFAULT_FACTOR, DEFAULT_SMOOTHING, DEFAULT_WINDOW, MIN_HISTORY, LossWatch
from kerafine.callbacks.state import KerafineCallback
from kerafine.errors import CheckpointError, TrainingError, check_int, check_number, invalid_argument

__all__ = ["CheckpointRestart"]

from kerafine.callbacks._checkpoint_format import (  # noqa: F401 - tests and the kill script patch these here
    _ARRAY_TAG,
    _CKPT_RE,
    _LEFTOVER_RE,
    _META,
    _VARIABLES,
    FORMAT_VERSION,
    _fingerprint,
    _fingerprint_difference,
    _list_checkpoints,
    _pid_alive,
    _read_checkpoint,
    _remove_tree_atomically,
    _write_checkpoint,
)

_MIN_HISTORY = MIN_HISTORY


# -- pure helpers ---------------------------------------------------------


def _phase_key(model) -> str | None:
    """Names a training phase: the optimizer class and the positions of the trainable variables."""
    if not model.built:
        return None
    trainable = {id(v) for v in model.trainable_variables}
    mask = [i for i, v in enumerate(model.variables) if id(v) in trainable]
    opt = getattr(model, "optimizer", None)
    text = json.dumps({"optimizer": type(opt).__name__ if opt is not None else None, "trainable": mask})
    return f"{zlib.crc32(text.encode()) & 0xFFFFFFFF:08x}"


def _rng_state() -> dict:
    py = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    out = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {
            "name": name,
            "keys": np.asarray(keys),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "keras_global": _keras_compat.global_seed_state(),
    }
    return out


def _set_rng_state(rng: dict) -> None:
    py = rng.get("python")
    if py:
        random.setstate((py[0], tuple(py[1]), py[2]))
    npy = rng.get("numpy")
    if npy:
        np.random.set_state(
            (npy["name"], np.asarray(npy["keys"], dtype=np.uint32), npy["pos"], npy["has_gauss"], npy["cached"])
        )
    if rng.get("keras_global") is not None:
        _keras_compat.set_global_seed_state(rng["keras_global"])


def _snapshot(variable) -> np.ndarray:
    """The variable's current value as a read-only array, without a copy where possible.

    A TensorFlow read is a snapshot (later assignments do not change it), and
    skipping NumPy's copy saves a pass over hundreds of MB per checkpoint.
    """
    try:
        return np.asarray(variable.value.read_value())
    except (AttributeError, TypeError, ValueError):
        return np.asarray(variable.numpy())


def _to_float(value) -> float:
    # .numpy() rather than np.asarray: Keras variables warn under NumPy 2 otherwise.
    return float(value.numpy() if hasattr(value, "numpy") else value)


def _is_chief() -> bool:
    from kerafine.tensorboard import is_chief

    return is_chief()


def _num_workers() -> int:
    from kerafine._cluster import cluster_info

    return cluster_info().num_workers


# -- the callback -----------------------------------------------------------


def _trim_csv(path, epoch: int, sep: str = ",") -> bool:
    """Keep the header and the rows of epochs ``< epoch`` of a CSVLogger file (atomic rewrite).

    Kept lines are copied byte for byte. Returns whether rows were dropped.
    """
    import csv

    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    if not lines:
        return False
    header = next(csv.reader([lines[0]], delimiter=sep))
    col = header.index("epoch") if "epoch" in header else 0

    def keep(line):
        try:
            return int(float(next(csv.reader([line], delimiter=sep))[col])) < epoch
        except (ValueError, IndexError, StopIteration):
            return False

    kept = [line for line in lines[1:] if keep(line)]
    if len(kept) == len(lines) - 1:
        return False
    tmp = f"{path}.kerafine-tmp"
    with open(tmp, "w", newline="") as f:
        f.write("".join([lines[0]] + kept))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return True


class CheckpointRestart(KerafineCallback):
    """Crash-safe checkpoints, exact resume and rollback on divergence.

    Put it anywhere in the callback list of ``fit``; run the same script again
    after a crash or a pre-emption and training continues from the newest
    valid checkpoint as if it had never stopped.

    Args:
        directory: where checkpoints live (created if needed). One training
            run per directory.
        save_freq: ``"epoch"`` to save after every epoch, or an int ``n`` to
            save every ``n`` batches (and after the last epoch); a batch-level
            save lets a restart resume inside the epoch. Defaults to
            ``"epoch"``.
        keep: how many of the newest checkpoints to retain (``>= 1``).
            Defaults to ``3``.
        rollback_on_divergence: when the training loss becomes NaN/inf or
            the smoothed loss (mean of the last ``divergence_smoothing`` batch
            losses) exceeds ``divergence_factor`` times the median of the
            previous ``divergence_window`` smoothed losses, restore the last
            checkpoint, multiply the learning rate by ``lr_factor`` and
            continue (the exact rule is in the module docstring). Defaults to
            ``True``.
        divergence_factor: the ratio of the smoothed loss to the median of
            the recent smoothed losses counted as divergence (``> 1``).
            Defaults to ``10.0``.
        lr_factor: learning-rate multiplier applied at each rollback, in
            ``(0, 1]``. Defaults to ``0.5``.
        max_rollbacks: rollbacks allowed in the whole run (the count is saved
            in the checkpoints); one more divergence raises
            ``TrainingError``. Defaults to ``3``.
        delete_on_success: delete the checkpoints when ``fit`` completes.
            Defaults to ``False``.
        log_dir: a TensorBoard log directory; saves, restores and rollbacks
            are written under ``<log_dir>/kerafine/batch`` (tags
            ``batch/checkpoint/*``, ``batch/rollback``; step = optimizer
            iteration). Defaults to ``None``.
        divergence_window: how many recent smoothed losses make the median.
            Defaults to ``50``.
        divergence_smoothing: how many batch losses the smoothed loss
            averages (``>= 1``; ``1`` compares single batch losses, which
            fires on imbalanced data whenever a batch holds a rare class).
            Defaults to ``10``.
        weight_check_freq: check that every trainable weight is finite
            every this many batches (one fused reduction on the device; a
            save always checks the model and optimizer first). Defaults to
            ``1``.
        data: the ``ResumableSequence`` this ``fit`` reads; on a resume it is
            told the epoch it restarts at, so the batch order is replayed
            exactly. Nothing else is touched (``fine_tune`` binds its own
            data). Defaults to ``None``.
        background_save: write each checkpoint in a background thread:
            training pauses only to take a snapshot of the variables
            (TensorFlow keeps it intact while training updates them, at the
            cost of one extra copy of the model and optimizer in memory until
            the write ends). At most one save is in flight; a failed save is
            raised at the next save or at the end of ``fit``. ``False`` writes
            before training continues. In a multi-worker cluster (``TF_CONFIG``
            names several workers) saves are always written before training
            continues, so that every worker restores the same checkpoint.
            Defaults to ``True``.

    Raises:
        KerafineError: for a bad argument, before training.
        CheckpointError: when every checkpoint in ``directory`` is corrupt
            (nothing is overwritten), when the newest valid one was written
            by another model architecture, or when a save fails (disk full:
            the previous checkpoints stay valid).
        TrainingError: when training diverges more than ``max_rollbacks``
            times, or before any checkpoint exists to roll back to.

    Example:

    >>> import tempfile, numpy as np, keras
    >>> from kerafine.callbacks.checkpoint_restart import CheckpointRestart
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("sgd", loss="mse")
    >>> ckpt = CheckpointRestart(tempfile.mkdtemp(), keep=2)
    >>> _ = model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=3, verbose=0, callbacks=[ckpt])
    >>> [p.name for p in ckpt.checkpoints()]
    ['ckpt-00000004', 'ckpt-00000003']
    >>> _ = model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=3, verbose=0, callbacks=[ckpt])
    >>> ckpt.resumed_from.name  # a second run continues where the first stopped
    'ckpt-00000004'
    """

    def __init__(
        self,
        directory,
        save_freq="epoch",
        keep=3,
        rollback_on_divergence=True,
        divergence_factor=DEFAULT_FACTOR,
        lr_factor=0.5,
        max_rollbacks=3,
        delete_on_success=False,
        log_dir=None,
        divergence_window=DEFAULT_WINDOW,
        background_save=True,
        divergence_smoothing=DEFAULT_SMOOTHING,
        weight_check_freq=1,
        data=None,
    ):
        super().__init__()
        if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
            raise invalid_argument("directory", directory, "a directory path (str or os.PathLike)")
        if save_freq != "epoch" and (
            isinstance(save_freq, bool) or not isinstance(save_freq, numbers.Integral) or save_freq < 1
        ):
            raise invalid_argument("save_freq", save_freq, '"epoch" or a positive int')
        check_int("keep", keep, minimum=1, expected="an int >= 1")
        if not isinstance(rollback_on_divergence, (bool, np.bool_)):
            raise invalid_argument("rollback_on_divergence", rollback_on_divergence, "True or False")
        check_number(
            "divergence_factor", divergence_factor, minimum=1, min_inclusive=False, expected="a finite number > 1"
        )
        check_number("lr_factor", lr_factor, minimum=0, maximum=1, min_inclusive=False, expected="a number in (0, 1]")
        check_int("max_rollbacks", max_rollbacks, minimum=0, expected="an int >= 0")
        if not isinstance(delete_on_success, (bool, np.bool_)):
            raise invalid_argument("delete_on_success", delete_on_success, "True or False")
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            raise invalid_argument("log_dir", log_dir, "None or a directory path")
        check_int("divergence_window", divergence_window, minimum=_MIN_HISTORY, expected=f"an int >= {_MIN_HISTORY}")
        if not isinstance(background_save, (bool, np.bool_)):
            raise invalid_argument("background_save", background_save, "True or False")
        check_int("divergence_smoothing", divergence_smoothing, minimum=1, expected="an int >= 1")
        check_int("weight_check_freq", weight_check_freq, minimum=1, expected="an int >= 1")
        _io.check_writable_directory(directory, "directory")
        self.directory = directory
        self.save_freq = save_freq
        self.keep = keep
        self.rollback_on_divergence = rollback_on_divergence
        self.divergence_factor = divergence_factor
        self.lr_factor = lr_factor
        self.max_rollbacks = max_rollbacks
        self.delete_on_success = delete_on_success
        self.log_dir = log_dir
        self.divergence_window = divergence_window
        self.background_save = background_save
        self.divergence_smoothing = int(divergence_smoothing)
        self.weight_check_freq = int(weight_check_freq)
        if data is not None and not callable(getattr(data, "set_epoch", None)):
            raise invalid_argument(
                "data", data, "None or a kerafine.data.ResumableSequence (an object with set_epoch(epoch))"
            )
        self.data = data
        # Outlive _reset(): a save may still be in flight from a fit that raised.
        self._pending: threading.Thread | None = None
        self._pending_done = None
        self._pending_error: BaseException | None = None
        self._reset()

    # -- bookkeeping ---------------------------------------------------------
    def _reset(self):
        self._path = Path(self.directory)
        self._chief = True
        self._synchronous = not self.background_save
        self._cblist = None
        self._trained = None
        self._unwrap = None
        self._others: list = []
        self._rollbacks = 0
        self._epoch = 0
        self._last_end = -1  # last batch index trained in the current epoch
        self._batches_since_save = 0
        self._batches_since_check = 0
        self._finite_check = None
        self._save_check = None
        self._watch = LossWatch(self.divergence_factor, self.divergence_window, self.divergence_smoothing)
        self._skip_epoch = None
        self._skip_until = 0
        self._skip_remaining = 0
        self._pending_metrics = None
        self._undo_train_function = None
        self._prev_initial_epoch = None
        self._initial_epoch_set = False
        self._bad: list[Path] = []
        self._deleters: list[threading.Thread] = []
        self._seq = 0
        self._need_initial = False
        self._phase = None
        self.resumed_from: Path | None = None
        self.rollbacks = 0

    def checkpoints(self) -> list[Path]:
        """Paths of the checkpoints of the current phase, newest first (not verified).

        The current phase is the one of the last ``fit`` (``directory`` itself
        before any ``fit`` and for the first phase).
        """
        return [p for _, p in _list_checkpoints(self._path)]

    # -- Keras hooks -----------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._wait_for_pending()
        self._reset()
        self._chief = _is_chief()
        # Several workers: the chief writes before training goes on, so that any
        # worker that rolls back or restarts finds the same newest checkpoint
        # (the next step's all-reduce waits for the chief, hence for its write).
        self._synchronous = not self.background_save or _num_workers() > 1
        self._cblist = self.context.callback_list
        self._trained = self.context.trained_model or self.model
        if self._cblist is None:
            _warn.warn(
                "CheckpointRestart could not find the callback list of this fit (a custom training loop?); "
                "only the model, optimizer and random state are checkpointed, not other callbacks' state.",
                hook=True,
            )
            callbacks, begun = [], []
        else:
            callbacks = [cb for cb in self._cblist.callbacks if cb is not self]
            mine = next(i for i, cb in enumerate(self._cblist.callbacks) if cb is self)
            begun = self._cblist.callbacks[:mine]
        self._others = callbacks
        if self._chief:
            self._remove_leftovers()
        found = _list_checkpoints(self._path)
        verified: dict = {}
        self._phase = _phase_key(self.model)
        if found and self._phase is not None:
            found = self._choose_phase(found, verified)
        self._seq = found[0][0] if found else 0
        restored = None
        problems_all = []
        for _, path in found:
            problems = verified[path] if path in verified else _io.verify_manifest(path)
            if problems:
                self._bad.append(path)
                problems_all.append(f"{path.name}: " + "; ".join(problems))
                _warn.warn(
                    f"CheckpointRestart: skipping corrupt checkpoint {path} ({'; '.join(problems)}); "
                    "trying the next older one. It is deleted after the next successful save.",
                    hook=True,
                )
                continue
            self._restore(path, begun=begun, resume=True)
            restored = path
            break
        if found and restored is None:
            raise CheckpointError(
                f"Every checkpoint in {os.fspath(self._path)!r} is corrupt, so training cannot resume: "
                + " | ".join(problems_all)
                + ". Nothing was overwritten or deleted. Move the directory away to start from scratch, "
                "or pass another `directory`."
            )
        self.resumed_from = restored
        self._install()
        self._need_initial = restored is None and self.rollback_on_divergence

    def _choose_phase(self, found, verified):
        """Check the architecture against ``directory``'s newest valid checkpoint and
        move to this phase's sub-directory if that checkpoint is of another phase."""
        for _, path in found:
            problems = verified[path] = _io.verify_manifest(path)
            if problems:
                continue
            try:
                saved = _io.read_json(path / _META)["state"]
            except (OSError, ValueError, KeyError, TypeError):
                return found  # _restore reports it
            diff = _fingerprint_difference(saved.get("fingerprint", {}), _fingerprint(self.model))
            if diff is not None:
                raise CheckpointError(
                    f"Checkpoint {os.fspath(path)!r} was written by a different model ({diff}). "
                    "Pass another `directory`, or delete this one to start from scratch."
                )
            if saved.get("phase") in (None, self._phase):  # None: written before phases existed
                return found
            self._path = Path(self.directory) / f"phase-{self._phase}"
            if self._chief:
                self._path.mkdir(exist_ok=True)
                self._remove_leftovers()
            verified.clear()
            return _list_checkpoints(self._path)
        return found

    def on_epoch_begin(self, epoch, logs=None):
        if self._initial_epoch_set:
            # fit() has read it by now; leave the model as we found it for the next fit().
            _keras_compat.set_initial_epoch(self._trained, self._prev_initial_epoch)
            self._initial_epoch_set = False
        self._epoch = epoch
        if self._need_initial:
            self._need_initial = False
            if self.model.built:
                # A first checkpoint (at the fit's initial epoch, known only now), so
                # that a divergence in the first epoch has somewhere to roll back to.
                self._save(epoch=epoch, batch=0, stopped=False)
        self._last_end = (self._skip_until - 1) if epoch == self._skip_epoch else -1
        if epoch != self._skip_epoch:
            self._watch.new_epoch()
        data = self.context.data
        if data is not None:
            data.set_epoch(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        pass  # the work happens in the callback-list wrappers (see _install)

    def on_train_batch_end(self, batch, logs=None):
        # Defined (even when the wrappers do the work) so that Keras dispatches
        # batch hooks synchronously: the divergence check must see each step.
        if self._cblist is None and not self._skipping(batch):
            steps = self._advance(batch)
            if not self._check_divergence(batch, logs, steps):
                self._after_batch(batch, steps)

    def on_epoch_end(self, epoch, logs=None):
        if self._cblist is None:
            self._after_epoch(epoch, logs)

    def on_train_end(self, logs=None):
        self._wait_for_pending()
        for thread in self._deleters:
            thread.join()
        self._deleters = []
        if self._initial_epoch_set:
            _keras_compat.set_initial_epoch(self._trained, self._prev_initial_epoch)
            self._initial_epoch_set = False
        self._uninstall()
        if self.delete_on_success and self._chief:
            for path in self.checkpoints():
                _remove_tree_atomically(path)
            self._remove_leftovers()
            try:
                os.rmdir(self._path)
            except OSError:
                pass  # other files live there too: leave them
        if self.log_dir is not None:
            from kerafine import tensorboard

            tensorboard.flush(self.log_dir)

    # -- wrapping the callback list --------------------------------------------
    def _install(self):
        cbl = self._cblist
        if cbl is None:
            return
        orig_begin, orig_end, orig_epoch_end = cbl.on_train_batch_begin, cbl.on_train_batch_end, cbl.on_epoch_end

        def on_train_batch_begin(batch, logs=None):
            if not self._skipping(batch):
                orig_begin(batch, logs)

        def on_train_batch_end(batch, logs=None):
            if self._skipping(batch):
                return
            steps = self._advance(batch)
            if self._check_divergence(batch, logs, steps):
                return  # rolled back: the diverged step is not shown to other callbacks
            orig_end(batch, logs)
            self._after_batch(batch, steps)

        def on_epoch_end(epoch, logs=None):
            orig_epoch_end(epoch, logs)
            # After every other callback, so that their state for this epoch is saved.
            self._after_epoch(epoch, logs)

        self._unwrap = _keras_compat.wrap_callback_list(
            cbl,
            on_train_batch_begin=lambda _: on_train_batch_begin,
            on_train_batch_end=lambda _: on_train_batch_end,
            on_epoch_end=lambda _: on_epoch_end,
        )

    def _uninstall(self):
        if self._unwrap is not None:
            self._unwrap()
        self._unwrap = None
        if self._undo_train_function is not None:
            self._undo_train_function()  # the undo of replace_train_function
        self._undo_train_function = None

    # -- resume inside an epoch ------------------------------------------------
    def _skipping(self, batch) -> bool:
        return self._epoch == self._skip_epoch and batch < self._skip_until

    def _install_skipper(self):
        model = self._trained
        spe = int(getattr(model, "steps_per_execution", 1) or 1)
        originals = []

        def skip_then_train(iterator):
            original = originals[0]
            if self._skip_remaining <= 0:
                undo()
                return original(iterator)
            n = min(spe, self._skip_remaining)
            data = None
            for _ in range(n):
                data = iterator.get_next() if hasattr(iterator, "get_next") else next(iterator)
            self._skip_remaining -= n
            if self._pending_metrics is not None:
                self._apply_metrics(data)
            return model.get_metrics_result()

        def make(original):
            originals.append(original)
            return skip_then_train

        undo = self._undo_train_function = _keras_compat.replace_train_function(model, make)

    def _apply_metrics(self, data):
        values, self._pending_metrics = self._pending_metrics, None
        model = self._trained
        if len(model.metrics_variables) != len(values):
            try:
                _keras_compat.symbolic_build(model, data)
            except Exception as exc:  # pragma: no cover - depends on exotic models
                _warn.warn(
                    f"CheckpointRestart could not rebuild the metrics ({exc}); this epoch's running metrics restart.",
                    hook=True,  # <- the replaced train function, which trainer.fit calls
                )
                return
        if len(model.metrics_variables) != len(values):
            _warn.warn(
                f"CheckpointRestart: the checkpoint holds {len(values)} metric variables, the model "
                f"{len(model.metrics_variables)}; this epoch's running metrics restart from zero.",
                hook=True,  # <- the replaced train function, which trainer.fit calls
            )
            return
        for v, a in zip(model.metrics_variables, values):
            v.assign(a)

    # -- divergence --------------------------------------------------------------
    def _advance(self, batch) -> int:
        """Batches trained since the previous batch hook (> 1 with steps_per_execution)."""
        steps = max(1, batch - self._last_end)
        self._last_end = batch
        return steps

    def _check_divergence(self, batch, logs, steps) -> bool:
        """Track the batch loss; on divergence roll back and return True."""
        loss = (logs or {}).get("loss")
        if loss is None:
            return False
        try:
            running = float(loss)
        except (TypeError, ValueError):
            return False
        # The one loss-watch rule (shared with TrainingMonitor, kerafine.callbacks._loss_watch).
        verdict = self._watch.observe(running, steps)
        diverged = None if verdict.kind is None else verdict.describe(self.divergence_factor)
        self._batches_since_check += steps
        save_due = self.save_freq != "epoch" and self._batches_since_save + steps >= self.save_freq
        if diverged is None and (self._batches_since_check >= self.weight_check_freq or save_due):
            self._batches_since_check = 0
            diverged = self._nonfinite_weights(self._trainable_check())
        if diverged is not None and self.rollback_on_divergence:
            self._rollback(diverged, batch, depth=1)  # <- _check_divergence <- the batch-end hook
            return True
        if verdict.kind is not None:
            self._watch.skip(running, steps)
        return False

    def _trainable_check(self):
        if self._finite_check is None:
            self._finite_check = _probes.FiniteCheck(self.model.trainable_variables)
        return self._finite_check

    def _nonfinite_weights(self, check) -> str | None:
        """``None`` if every variable ``check`` covers is finite, else the reason."""
        if check():
            return None
        return f"the weight {check.first_nonfinite()} holds NaN/inf"

    def _refuse_nonfinite_save(self, epoch: int, batch: int) -> bool:
        """Before a save: True (and rolled back, or raised) if a variable is non-finite."""
        if self._save_check is None:
            opt = getattr(self.model, "optimizer", None)
            opt_vars = list(opt.variables) if opt is not None and opt.built else []
            self._save_check = _probes.FiniteCheck(list(self.model.variables) + opt_vars)
        reason = self._nonfinite_weights(self._save_check)
        if reason is None:
            return False
        if not self.rollback_on_divergence:
            raise TrainingError(
                "Refusing to save a checkpoint "
                + (f"at epoch {epoch + 1}, batch {batch}" if batch > 0 else f"after epoch {epoch}")
                + f": {reason}. "
                f"Training diverged; the last good checkpoints are in {os.fspath(self._path)!r}."
            )
        self._rollback(reason, max(batch - 1, 0), depth=3)  # <- here <- _save <- _after_* or on_epoch_begin
        return True

    def _rollback(self, reason: str, batch: int, depth: int) -> None:
        where = f"epoch {self._epoch + 1}, batch {batch + 1}"
        if self._rollbacks >= self.max_rollbacks:
            raise TrainingError(
                f"Training diverged at {where} ({reason}) after {self._rollbacks} rollback(s); "
                f"max_rollbacks={self.max_rollbacks} reached. Lower the learning rate or check the data; "
                f"the last good checkpoints are in {os.fspath(self._path)!r}."
            )
        self._wait_for_pending()
        target = None
        for _, path in _list_checkpoints(self._path):
            if path not in self._bad and not _io.verify_manifest(path):
                target = path
                break
        if target is None:
            raise TrainingError(
                f"Training diverged at {where} ({reason}) before any valid checkpoint existed in "
                f"{os.fspath(self._path)!r}, so there is nothing to roll back to."
            )
        step = self._global_step()  # of the diverged step, before the restore rewinds it
        self._restore(target, begun=self._others, resume=False)
        self._rollbacks += 1
        self.rollbacks = self._rollbacks
        optimizer = self.model.optimizer
        new_lr = None
        try:
            old_lr = _to_float(optimizer.learning_rate)
            new_lr = old_lr * self.lr_factor
            optimizer.learning_rate = new_lr
        except (TypeError, AttributeError):
            _warn.warn(
                "CheckpointRestart rolled back but cannot lower a learning-rate schedule; the schedule is unchanged.",
                depth=depth,
                hook=True,
            )
        self._trained.reset_metrics()
        self._watch.new_epoch()
        self._batches_since_check = 0
        message = (
            f"Training diverged at {where} ({reason}); rolled back to {target.name}"
            + (f" and lowered the learning rate to {new_lr:.6g}" if new_lr is not None else "")
            + f" (rollback {self._rollbacks} of at most {self.max_rollbacks})."
        )
        _warn.warn(message, depth=depth, hook=True)
        if self.log_dir is not None:
            from kerafine import tensorboard

            tensorboard.batch_scalars(self.log_dir, {"rollback": self._rollbacks}, step)
            tensorboard.batch_text(self.log_dir, "rollback", message, step)

    # -- saving -----------------------------------------------------------------
    def _after_batch(self, batch, steps):
        self._batches_since_save += steps
        if self.save_freq != "epoch" and self._batches_since_save >= self.save_freq:
            self._save(epoch=self._epoch, batch=batch + 1, stopped=False)

    def _after_epoch(self, epoch, logs):
        last = epoch + 1 >= int((self.params or {}).get("epochs", epoch + 1))
        if self.save_freq == "epoch" or self.model.stop_training or last:
            self._save(epoch=epoch + 1, batch=0, stopped=bool(self.model.stop_training))

    def _global_step(self) -> int:
        opt = getattr(self.model, "optimizer", None)
        try:
            return int(_to_float(opt.iterations))
        except Exception:
            return 0

    def _state(self, epoch, batch, stopped) -> dict:
        return {
            "format": FORMAT_VERSION,
            "position": {"epoch": int(epoch), "batch": int(batch), "stopped": bool(stopped)},
            "rollbacks": int(self._rollbacks),
            **self._watch.get_state(),
            "batches_since_save": 0,
            "fingerprint": _fingerprint(self.model),
            "phase": self._phase,
            "optimizer": self._optimizer_fingerprint(),
            "callbacks": _state.collect_states(self._others),
            "rng": _rng_state(),
            "keras_version": keras.__version__,
            "saved_at": time.time(),
        }

    def _optimizer_fingerprint(self) -> dict | None:
        opt = getattr(self.model, "optimizer", None)
        if opt is None or not opt.built:
            return None
        return {"class": type(opt).__name__, "variables": [[int(d) for d in v.shape] for v in opt.variables]}

    def _snapshot_groups(self, batch: int) -> dict:
        model = self.model
        groups = {"model": [_snapshot(v) for v in model.variables]}
        opt = getattr(model, "optimizer", None)
        groups["optimizer"] = [_snapshot(v) for v in opt.variables] if opt is not None and opt.built else []
        groups["metrics"] = [_snapshot(v) for v in self._trained.metrics_variables] if batch > 0 else []
        return groups

    def _save(self, epoch: int, batch: int, stopped: bool) -> None:
        self._batches_since_save = 0
        # Every worker checks (they hold the same weights and must take the same decision).
        if self._refuse_nonfinite_save(epoch, batch):
            return
        if not self._chief:
            if self._synchronous and _num_workers() > 1:
                # Under a multi-worker strategy, reading a sync-on-read variable
                # (the metrics' running totals) all-reduces it across workers:
                # every worker must read what the chief reads, or the chief's read
                # meets another worker's next training step in the all-reduce.
                self._snapshot_groups(batch)
            return
        # One save in flight at most, and the newest always renamed last.
        self._wait_for_pending()
        started = time.perf_counter()
        groups = self._snapshot_groups(batch)
        state = self._state(epoch, batch, stopped)
        self._seq += 1
        final = self._path / f"ckpt-{self._seq:08d}"
        step = self._global_step()
        if self._synchronous:
            self._write(final, groups, state, epoch, batch)
            self._report_save(final, epoch, batch, step, time.perf_counter() - started)
            return

        def job():
            try:
                self._write(final, groups, state, epoch, batch)
                self._pending_done = (final, epoch, batch, step, time.perf_counter() - started)
            except BaseException as exc:  # handed to the training thread by _wait_for_pending
                self._pending_error = exc

        # Not a daemon: if the script ends (or fails) while a checkpoint is being
        # written, the interpreter waits for it instead of dropping it.
        self._pending = threading.Thread(target=job, name="kerafine-checkpoint")
        self._pending.start()

    def _wait_for_pending(self) -> None:
        """Wait for the background save, report it, re-raise its failure in this thread."""
        thread, self._pending = self._pending, None
        if thread is not None:
            thread.join()
        done, self._pending_done = self._pending_done, None
        error, self._pending_error = self._pending_error, None
        if error is not None:
            raise error
        if done is not None:
            self._report_save(*done)

    def _write(self, final: Path, groups, state, epoch: int, batch: int) -> None:
        checksums: dict = {}
        meta = {"epoch": epoch, "batch": batch, "sequence": int(final.name.split("-")[1])}
        try:
            with _io.atomic_directory(final, manifest_meta=meta, checksums=checksums) as tmp:
                _write_checkpoint(tmp, groups, state, checksums)
        except OSError as exc:
            intact = [p.name for p in self.checkpoints() if p not in self._bad]
            reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            raise CheckpointError(
                f"Saving checkpoint {os.fspath(final)!r} failed: {reason} ({exc}). "
                f"The previous checkpoints are intact ({', '.join(intact) or 'none'}); free space and run "
                "the same script again to resume from the newest."
            ) from exc
        self._prune()

    def _report_save(self, final: Path, epoch: int, batch: int, step: int, seconds: float) -> None:
        if self.log_dir is None:
            return
        from kerafine import tensorboard

        tensorboard.batch_scalars(self.log_dir, {"checkpoint/save_seconds": seconds, "checkpoint/epoch": epoch}, step)
        tensorboard.batch_text(self.log_dir, "checkpoint", f"saved {final.name} (epoch {epoch}, batch {batch})", step)

    def _prune(self):
        found = _list_checkpoints(self._path)
        kept = 0
        for _, path in found:
            if path in self._bad:
                # A newer valid checkpoint exists now: the corrupt one is useless.
                _remove_tree_atomically(path)
                continue
            kept += 1
            if kept > self.keep:
                thread = _remove_tree_atomically(path, background=True)
                if thread is not None:
                    self._deleters.append(thread)
        self._bad = []

    def _remove_leftovers(self):
        try:
            entries = list(os.scandir(self._path))
        except OSError:
            return
        for entry in entries:
            m = _LEFTOVER_RE.match(entry.name)
            if m and (int(m.group(1)) == os.getpid() or not _pid_alive(int(m.group(1)))):
                shutil.rmtree(entry.path, ignore_errors=True)

    # -- restoring ---------------------------------------------------------------
    def _trim_history(self, epoch: int, global_step: int) -> None:
        """Exactly-once history: drop what the interrupted run logged from ``epoch`` on.

        A ``keras.callbacks.CSVLogger(append=True)`` of this fit has its file cut
        back to the rows of epochs ``< epoch`` (header kept, atomic rewrite);
        TensorBoard gets its purge marker at step ``epoch`` in the event
        directories of a Keras ``TensorBoard`` callback (``train``,
        ``validation``: epoch scalars use the epoch as step) and in
        ``<log_dir>/kerafine`` of every kerafine callback with a ``log_dir``;
        ``<log_dir>/kerafine/batch``, whose series are stepped by optimizer
        iteration, gets its marker just after the restored iteration
        ``global_step``: the points of iterations up to it (the checkpoint's
        own save among them) are history, the later ones are redone.
        """
        import keras

        from kerafine import tensorboard

        event_dirs: list[str] = []
        log_dirs: list[str] = []
        for cb in self.context.callbacks:
            if isinstance(cb, keras.callbacks.CSVLogger) and cb.append and os.path.exists(cb.filename):
                if _trim_csv(cb.filename, epoch, cb.sep):
                    _keras_compat.reopen_csv_logger(cb)
            elif isinstance(cb, keras.callbacks.TensorBoard):
                event_dirs.extend(_keras_compat.tensorboard_callback_dirs(cb))
            elif getattr(cb, "log_dir", None) is not None and isinstance(cb, KerafineCallback):
                log_dirs.append(os.fspath(cb.log_dir))
        if self.log_dir is not None:
            log_dirs.append(os.fspath(self.log_dir))
        event_dirs.extend(os.path.join(d, tensorboard.SUBDIR) for d in log_dirs)
        for d in dict.fromkeys(os.path.abspath(d) for d in event_dirs):
            tensorboard.purge_after(d, epoch)
        for d in dict.fromkeys(os.path.abspath(os.path.join(d, tensorboard.BATCH_SUBDIR)) for d in log_dirs):
            tensorboard.purge_after(d, global_step + 1)

    def _restore(self, path: Path, begun, resume: bool) -> None:
        model = self.model
        try:
            state, arrays = _read_checkpoint(path)
        except (CheckpointError, OSError, KeyError, ValueError) as exc:
            raise CheckpointError(f"Checkpoint {os.fspath(path)!r} verifies but cannot be read: {exc}") from exc
        if not model.built:
            raise CheckpointError(
                f"Cannot restore {os.fspath(path)!r} into an unbuilt model: build it before fit() "
                "(give it an Input or call it on a batch)."
            )
        diff = _fingerprint_difference(state.get("fingerprint", {}), _fingerprint(model))
        if diff is not None:
            raise CheckpointError(
                f"Checkpoint {os.fspath(path)!r} was written by a different model ({diff}). "
                "Pass another `directory`, or delete this one to start from scratch."
            )
        opt = getattr(model, "optimizer", None)
        if opt is not None and arrays.get("optimizer"):
            if not opt.built:
                opt.build(model.trainable_variables)
            saved = state.get("optimizer") or {}
            current = self._optimizer_fingerprint()
            if saved and (saved.get("class") != current["class"] or saved.get("variables") != current["variables"]):
                raise CheckpointError(
                    f"Checkpoint {os.fspath(path)!r} holds the state of a {saved.get('class')} optimizer with "
                    f"{len(saved.get('variables', []))} variables; the model is compiled with a {current['class']} "
                    f"with {len(current['variables'])}. Compile with the same optimizer, or pass another `directory`."
                )
            for v, a in zip(opt.variables, arrays["optimizer"]):
                v.assign(a)
        for v, a in zip(model.variables, arrays["model"]):
            v.assign(a)
        saved_states = state.get("callbacks", {})
        restored_keys, missing_keys = _state.restore_states(self._others, saved_states, begun=begun)
        if not resume:
            return
        _state.warn_partial_restore(saved_states, restored_keys, missing_keys, self._others, f"checkpoint {path.name}")
        position = state["position"]
        epoch, batch = int(position["epoch"]), int(position["batch"])
        self._rollbacks = int(state.get("rollbacks", 0))
        self.rollbacks = self._rollbacks
        self._watch.set_state(state, running_mean=False)
        _set_rng_state(state.get("rng", {}))
        epochs = int((self.params or {}).get("epochs", epoch))
        # The model fit steps: fine_tune's cached head phase trains a head-only
        # model that shares the watched model's head variables and optimizer.
        trained = self._trained or model
        self._prev_initial_epoch = _keras_compat.get_initial_epoch(trained)
        self._initial_epoch_set = True
        if position.get("stopped"):
            # The run had already stopped (EarlyStopping): run no more epochs.
            _keras_compat.set_initial_epoch(trained, max(epochs, epoch))
        else:
            _keras_compat.set_initial_epoch(trained, epoch)
        if batch > 0 and not position.get("stopped"):
            self._skip_epoch, self._skip_until, self._skip_remaining = epoch, batch, batch
            self._watch.set_state(state, running_mean=True)
            self._pending_metrics = arrays.get("metrics") or None
            self._install_skipper()
        if self._chief:
            self._trim_history(epoch, self._global_step())
        if self.log_dir is not None:
            from kerafine import tensorboard

            step = self._global_step()
            tensorboard.batch_scalars(self.log_dir, {"checkpoint/restored_epoch": epoch}, step)
            tensorboard.batch_text(
                self.log_dir, "checkpoint", f"resumed from {path.name} (epoch {epoch}, batch {batch})", step
            )
