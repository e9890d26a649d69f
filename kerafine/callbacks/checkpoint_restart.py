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
  ``divergence_factor`` times its recent median, rolls training back to the
  last checkpoint with a lower learning rate.

The divergence rule, exactly: after every batch, the batch's own loss is
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
import inspect
import json
import math
import numbers
import os
import random
import re
import shutil
import statistics
import threading
import time
import zlib
import warnings
from collections import deque
from pathlib import Path

import keras
import numpy as np

from kerafine import _io
from kerafine.callbacks import state as _state
from kerafine.errors import CheckpointError, TrainingError, invalid_argument

__all__ = ["CheckpointRestart"]

FORMAT_VERSION = 1
_CKPT_RE = re.compile(r"^ckpt-(\d{8})$")
_LEFTOVER_RE = re.compile(r"^\.ckpt-\d{8}\.(?:tmp|del)-(\d+)-[0-9a-f]+$")
_VARIABLES = "variables.bin"
_META = "checkpoint.json"
_ARRAY_TAG = "__array__"
# A ratio test on fewer smoothed losses than this would fire on the first noisy batches.
_MIN_HISTORY = 8


# -- pure helpers ---------------------------------------------------------


def _list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``(sequence number, path)`` of complete-looking checkpoints, newest first."""
    out = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        m = _CKPT_RE.match(entry.name)
        if m and entry.is_dir():
            out.append((int(m.group(1)), Path(entry.path)))
    out.sort(reverse=True)
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_tree_atomically(path: Path, background: bool = False) -> threading.Thread | None:
    # Rename first: a kill during rmtree then leaves a dot-name that readers
    # ignore (and the next run removes), never a half-deleted checkpoint that
    # looks like a corrupt one. Freeing 100s of MB can then happen beside training.
    doomed = path.with_name(f".{path.name}.del-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        os.rename(path, doomed)
    except OSError:
        return None
    if background:
        thread = threading.Thread(target=shutil.rmtree, args=(doomed, True), name="kerafine-rm", daemon=True)
        thread.start()
        return thread
    shutil.rmtree(doomed, ignore_errors=True)
    return None


def _split_arrays(value, arrays: list):
    """Replace every array in a nested state by a placeholder; collect the arrays."""
    if isinstance(value, np.ndarray):
        arrays.append(value)
        return {_ARRAY_TAG: len(arrays) - 1}
    if isinstance(value, dict):
        return {str(k): _split_arrays(v, arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split_arrays(v, arrays) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _join_arrays(value, arrays: list):
    if isinstance(value, dict):
        if set(value) == {_ARRAY_TAG}:
            return np.array(arrays[value[_ARRAY_TAG]])
        return {k: _join_arrays(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_join_arrays(v, arrays) for v in value]
    return value


def _write_checkpoint(directory: Path, groups: dict[str, list[np.ndarray]], state: dict, checksums: dict | None = None) -> None:
    """Write every array into one raw file, and the index plus the state into one JSON file.

    Two files and one sequential write keep the fsyncs few; no pickle. The
    CRC32 of the raw file is computed from memory in a second thread while
    the file is written (zlib and file writes release the GIL) and put in
    ``checksums`` for the manifest, instead of reading 100s of MB back.
    """
    state_arrays: list = []
    skeleton = _split_arrays(state, state_arrays)
    groups = dict(groups, state=state_arrays)
    index, buffers = {}, []
    offset = 0
    for group, arrays in groups.items():
        entries = []
        for a in arrays:
            # asarray(order="C"), not ascontiguousarray, which turns scalars into shape (1,).
            a = np.asarray(a, order="C")
            buffers.append(a.tobytes() if a.ndim == 0 else memoryview(a).cast("B"))
            entries.append({"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset, "nbytes": a.nbytes})
            offset += a.nbytes
        index[group] = entries
    crc = [0]

    def checksum():
        value = 0
        for b in buffers:
            value = zlib.crc32(b, value)
        crc[0] = value

    worker = threading.Thread(target=checksum, name="kerafine-crc32")
    worker.start()
    try:
        with open(directory / _VARIABLES, "wb") as f:
            for b in buffers:
                f.write(b)
    finally:
        worker.join()
    if checksums is not None:
        checksums[_VARIABLES] = {"size": offset, "crc32": f"{crc[0] & 0xFFFFFFFF:08x}"}
    # Inside the temporary directory a plain write suffices: atomic_directory
    # fsyncs every file before the rename.
    with open(directory / _META, "w", encoding="utf-8") as f:
        f.write(_io.dumps_json({"format": FORMAT_VERSION, "groups": index, "state": skeleton}))


def _read_checkpoint(directory: Path) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """``(state, {group: arrays})`` of a checkpoint directory (not verified here)."""
    meta = _io.read_json(directory / _META)
    with open(directory / _VARIABLES, "rb") as f:
        blob = f.read()
    arrays = {}
    for group, entries in meta["groups"].items():
        arrays[group] = [
            np.frombuffer(blob, dtype=np.dtype(e["dtype"]), count=int(np.prod(e["shape"], dtype=np.int64)), offset=e["offset"]).reshape(
                e["shape"]
            )
            for e in entries
        ]
    state = _join_arrays(meta["state"], arrays.pop("state", []))
    return state, arrays


def _fingerprint(model) -> dict:
    """Architecture summary: layer classes and (name, shape, dtype) of every variable.

    Variable *paths* are left out on purpose: Keras numbers them per process
    (``dense_3``), so the same architecture built after another model would
    not match.
    """
    layers = [type(layer).__name__ for layer in model._flatten_layers(include_self=False)]
    variables = [[v.name, [int(d) for d in v.shape], str(v.dtype)] for v in model.variables]
    return {"model_class": type(model).__name__, "layers": layers, "variables": variables}


def _fingerprint_difference(saved: dict, current: dict) -> str | None:
    if saved == current:
        return None
    if saved.get("model_class") != current.get("model_class"):
        return f"model class {saved.get('model_class')} vs {current.get('model_class')}"
    if saved.get("layers") != current.get("layers"):
        a, b = saved.get("layers", []), current.get("layers", [])
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return f"layer #{i}: {x} in the checkpoint, {y} in the model"
        return f"{len(a)} layers in the checkpoint, {len(b)} in the model"
    a, b = saved.get("variables", []), current.get("variables", [])

    def show(v):
        return f"{v[0]} {tuple(v[1])} {v[2]}"

    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"variable #{i}: {show(x)} in the checkpoint, {show(y)} in the model"
    return f"{len(a)} variables in the checkpoint, {len(b)} in the model"


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
        "numpy": {"name": name, "keys": np.asarray(keys), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "keras_global": None,
    }
    from keras.src.backend.common import global_state

    gen = global_state.get_global_attribute("global_seed_generator")
    if gen is not None:
        out["keras_global"] = np.asarray(gen.state.numpy())
    return out


def _set_rng_state(rng: dict) -> None:
    py = rng.get("python")
    if py:
        random.setstate((py[0], tuple(py[1]), py[2]))
    npy = rng.get("numpy")
    if npy:
        np.random.set_state((npy["name"], np.asarray(npy["keys"], dtype=np.uint32), npy["pos"], npy["has_gauss"], npy["cached"]))
    if rng.get("keras_global") is not None:
        from keras.src.random.seed_generator import global_seed_generator

        global_seed_generator().state.assign(np.asarray(rng["keras_global"]))


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


def _find_callback_list(me):
    """The ``CallbackList`` currently calling ``me`` (Keras gives callbacks no handle on it)."""
    frame = inspect.currentframe()
    try:
        frame = frame.f_back if frame is not None else None
        depth = 0
        while frame is not None and depth < 12:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, keras.callbacks.CallbackList) and any(cb is me for cb in candidate.callbacks):
                return candidate
            frame = frame.f_back
            depth += 1
    finally:
        del frame
    return None


# -- the callback -----------------------------------------------------------


class CheckpointRestart(keras.callbacks.Callback):
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
            are written under ``<log_dir>/kerafine``. Defaults to ``None``.
        divergence_window: how many recent smoothed losses make the median.
            Defaults to ``50``.
        divergence_smoothing: how many batch losses the smoothed loss
            averages (``>= 1``; ``1`` compares single batch losses, which
            fires on imbalanced data whenever a batch holds a rare class).
            Defaults to ``10``.
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
        divergence_factor=10.0,
        lr_factor=0.5,
        max_rollbacks=3,
        delete_on_success=False,
        log_dir=None,
        divergence_window=50,
        background_save=True,
        divergence_smoothing=10,
    ):
        super().__init__()
        if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
            raise invalid_argument("directory", directory, "a directory path (str or os.PathLike)")
        if save_freq != "epoch" and (
            isinstance(save_freq, bool) or not isinstance(save_freq, numbers.Integral) or save_freq < 1
        ):
            raise invalid_argument("save_freq", save_freq, '"epoch" or a positive int')
        if isinstance(keep, bool) or not isinstance(keep, numbers.Integral) or keep < 1:
            raise invalid_argument("keep", keep, "an int >= 1")
        if not isinstance(rollback_on_divergence, (bool, np.bool_)):
            raise invalid_argument("rollback_on_divergence", rollback_on_divergence, "True or False")
        if (
            isinstance(divergence_factor, bool)
            or not isinstance(divergence_factor, numbers.Real)
            or not math.isfinite(divergence_factor)
            or divergence_factor <= 1
        ):
            raise invalid_argument("divergence_factor", divergence_factor, "a finite number > 1")
        if isinstance(lr_factor, bool) or not isinstance(lr_factor, numbers.Real) or not 0 < lr_factor <= 1:
            raise invalid_argument("lr_factor", lr_factor, "a number in (0, 1]")
        if isinstance(max_rollbacks, bool) or not isinstance(max_rollbacks, numbers.Integral) or max_rollbacks < 0:
            raise invalid_argument("max_rollbacks", max_rollbacks, "an int >= 0")
        if not isinstance(delete_on_success, (bool, np.bool_)):
            raise invalid_argument("delete_on_success", delete_on_success, "True or False")
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            raise invalid_argument("log_dir", log_dir, "None or a directory path")
        if isinstance(divergence_window, bool) or not isinstance(divergence_window, numbers.Integral) or divergence_window < _MIN_HISTORY:
            raise invalid_argument("divergence_window", divergence_window, f"an int >= {_MIN_HISTORY}")
        if not isinstance(background_save, (bool, np.bool_)):
            raise invalid_argument("background_save", background_save, "True or False")
        if isinstance(divergence_smoothing, bool) or not isinstance(divergence_smoothing, numbers.Integral) or divergence_smoothing < 1:
            raise invalid_argument("divergence_smoothing", divergence_smoothing, "an int >= 1")
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
        self._unwrap = []
        self._others: list = []
        self._rollbacks = 0
        self._epoch = 0
        self._last_end = -1  # last batch index trained in the current epoch
        self._batches_since_save = 0
        self._recent: deque = deque(maxlen=self.divergence_smoothing)  # batch losses
        self._smoothed: deque = deque(maxlen=self.divergence_window)  # means of self._recent
        self._mean_prev = 0.0
        self._mean_count = 0
        self._skip_epoch = None
        self._skip_until = 0
        self._skip_remaining = 0
        self._pending_metrics = None
        self._orig_train_function = None
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
        self._cblist = _find_callback_list(self)
        if self._cblist is None:
            warnings.warn(
                "CheckpointRestart could not find the callback list of this fit (a custom training loop?); "
                "only the model, optimizer and random state are checkpointed, not other callbacks' state.",
                stacklevel=2,
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
                warnings.warn(
                    f"CheckpointRestart: skipping corrupt checkpoint {path} ({'; '.join(problems)}); "
                    "trying the next older one. It is deleted after the next successful save.",
                    stacklevel=2,
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
            self.model._initial_epoch = self._prev_initial_epoch
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
            self._mean_prev, self._mean_count = 0.0, 0
        from kerafine.data.resumable import _live_sequences

        for seq in _live_sequences():
            seq.set_epoch(epoch)

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
            self.model._initial_epoch = self._prev_initial_epoch
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

        cbl.on_train_batch_begin = on_train_batch_begin
        cbl.on_train_batch_end = on_train_batch_end
        cbl.on_epoch_end = on_epoch_end
        self._unwrap = ["on_train_batch_begin", "on_train_batch_end", "on_epoch_end"]

    def _uninstall(self):
        if self._cblist is not None:
            for name in self._unwrap:
                self._cblist.__dict__.pop(name, None)
        self._unwrap = []
        if self._orig_train_function is not None and self.model.train_function is not self._orig_train_function:
            self.model.train_function = self._orig_train_function
        self._orig_train_function = None

    # -- resume inside an epoch ------------------------------------------------
    def _skipping(self, batch) -> bool:
        return self._epoch == self._skip_epoch and batch < self._skip_until

    def _install_skipper(self):
        model = self.model
        if model.train_function is None:
            model.make_train_function()
        original = model.train_function
        self._orig_train_function = original
        spe = int(getattr(model, "steps_per_execution", 1) or 1)

        def skip_then_train(iterator):
            if self._skip_remaining <= 0:
                model.train_function = original
                return original(iterator)
            n = min(spe, self._skip_remaining)
            data = None
            for _ in range(n):
                data = iterator.get_next() if hasattr(iterator, "get_next") else next(iterator)
            self._skip_remaining -= n
            if self._pending_metrics is not None:
                self._apply_metrics(data)
            return model.get_metrics_result()

        model.train_function = skip_then_train

    def _apply_metrics(self, data):
        values, self._pending_metrics = self._pending_metrics, None
        model = self.model
        if len(model.metrics_variables) != len(values):
            try:
                with model.distribute_strategy.scope():
                    model._symbolic_build(data_batch=data)
            except Exception as exc:  # pragma: no cover - depends on exotic models
                warnings.warn(f"CheckpointRestart could not rebuild the metrics ({exc}); this epoch's running metrics restart.")
                return
        if len(model.metrics_variables) != len(values):
            warnings.warn(
                f"CheckpointRestart: the checkpoint holds {len(values)} metric variables, the model "
                f"{len(model.metrics_variables)}; this epoch's running metrics restart from zero.",
                stacklevel=2,
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
        count = self._mean_count + steps
        # Keras logs the epoch's running mean; recover this step's own loss.
        batch_loss = (running * count - self._mean_prev * self._mean_count) / steps
        diverged = None
        smoothed = None
        if not math.isfinite(running) or not math.isfinite(batch_loss):
            diverged = f"the loss is {running}"
        else:
            window = list(self._recent)[-(self.divergence_smoothing - 1) :] if self.divergence_smoothing > 1 else []
            smoothed = math.fsum(window + [batch_loss]) / (len(window) + 1)
            if len(self._smoothed) >= _MIN_HISTORY:
                median = statistics.median(self._smoothed)
                if median > 0 and smoothed > self.divergence_factor * median:
                    diverged = (
                        f"the mean loss of the last {len(window) + 1} batches, {smoothed:.6g}, exceeds "
                        f"{self.divergence_factor} x the recent median {median:.6g}"
                    )
        if diverged is not None and self.rollback_on_divergence:
            self._rollback(diverged, batch)
            return True
        self._mean_prev, self._mean_count = running, count
        if diverged is None:
            self._recent.append(batch_loss)
            self._smoothed.append(smoothed)
        return False

    def _rollback(self, reason: str, batch: int) -> None:
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
            warnings.warn(
                "CheckpointRestart rolled back but cannot lower a learning-rate schedule; the schedule is unchanged.",
                stacklevel=2,
            )
        self.model.reset_metrics()
        self._mean_prev, self._mean_count = 0.0, 0
        message = (
            f"Training diverged at {where} ({reason}); rolled back to {target.name}"
            + (f" and lowered the learning rate to {new_lr:.6g}" if new_lr is not None else "")
            + f" (rollback {self._rollbacks} of at most {self.max_rollbacks})."
        )
        warnings.warn(message, stacklevel=2)
        if self.log_dir is not None:
            from kerafine import tensorboard

            tensorboard.scalar(self.log_dir, "rollback", self._rollbacks, step)
            tensorboard.text(self.log_dir, "rollback", message, step)

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
            "recent_losses": [float(x) for x in self._recent],
            "recent_smoothed": [float(x) for x in self._smoothed],
            "running_mean": [float(self._mean_prev), int(self._mean_count)],
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
        groups["metrics"] = [_snapshot(v) for v in model.metrics_variables] if batch > 0 else []
        return groups

    def _save(self, epoch: int, batch: int, stopped: bool) -> None:
        self._batches_since_save = 0
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

        tensorboard.scalars(self.log_dir, {"checkpoint/save_seconds": seconds, "checkpoint/epoch": epoch}, step)
        tensorboard.text(self.log_dir, "checkpoint", f"saved {final.name} (epoch {epoch}, batch {batch})", step)

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
        _state.restore_states(self._others, state.get("callbacks", {}), begun=begun)
        if not resume:
            return
        position = state["position"]
        epoch, batch = int(position["epoch"]), int(position["batch"])
        self._rollbacks = int(state.get("rollbacks", 0))
        self.rollbacks = self._rollbacks
        self._recent.extend(float(x) for x in state.get("recent_losses", []))
        self._smoothed.extend(float(x) for x in state.get("recent_smoothed", []))
        _set_rng_state(state.get("rng", {}))
        epochs = int((self.params or {}).get("epochs", epoch))
        self._prev_initial_epoch = model._initial_epoch
        self._initial_epoch_set = True
        if position.get("stopped"):
            # The run had already stopped (EarlyStopping): run no more epochs.
            model._initial_epoch = max(epochs, epoch)
        else:
            model._initial_epoch = epoch
        if batch > 0 and not position.get("stopped"):
            self._skip_epoch, self._skip_until, self._skip_remaining = epoch, batch, batch
            self._mean_prev, self._mean_count = (float(x) for x in state.get("running_mean", [0.0, 0]))
            self._mean_count = int(self._mean_count)
            self._pending_metrics = arrays.get("metrics") or None
            self._install_skipper()
        if self.log_dir is not None:
            from kerafine import tensorboard

            step = self._global_step()
            tensorboard.scalar(self.log_dir, "checkpoint/restored_epoch", epoch, step)
            tensorboard.text(self.log_dir, "checkpoint", f"resumed from {path.name} (epoch {epoch}, batch {batch})", step)
