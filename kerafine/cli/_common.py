"""Helpers shared by the ``kerafine`` commands: console, model building, training phases, scores."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path


class _Console:
    """Progress messages on stdout, flushed at once (the demo is watched live)."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.t0 = time.monotonic()
        self._notes = set()

    def step(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {message}", file=self.stream, flush=True)

    def print(self, message: str = "") -> None:
        print(message, file=self.stream, flush=True)

    def note(self, text: str, kind: str = "", width: int = 110) -> bool:
        """Print ``text`` whole (wrapped at words) unless a note of the same kind and wording was printed.

        Numbers are ignored when comparing ("at epoch 1" and "at epoch 3" are one
        note). Returns whether it printed.
        """
        from kerafine._display import wrap_note

        text = " ".join(str(text).split())
        key = (kind, re.sub(r"[\d.]+", "#", text))
        if key in self._notes:
            return False
        self._notes.add(key)
        self.print(wrap_note(text, width=width, first=f"note ({kind}): " if kind else "note: "))
        return True


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ start-up chatter drowns the demo's progress lines (main() already did this
    # when the command came from the command line; a direct call of a command function needs it here).
    from kerafine._startup import quiet_tensorflow

    quiet_tensorflow()


def _scores(y_true, y_score) -> dict:
    """ROC-AUC and PR-AUC (average precision) with kerafine.metrics."""
    import numpy as np

    from kerafine.metrics import pr_auc as pr
    from kerafine.metrics import roc_auc as roc

    y_true = np.asarray(y_true).ravel()
    y_score = np.asarray(y_score, dtype=np.float64).ravel()
    return {
        "roc_auc": float(roc(y_true, y_score)),
        "pr_auc": float(pr(y_true, y_score)),
        "n": int(len(y_true)),
        "positives": int(y_true.sum()),
    }


def _load_model(path):
    """``kerafine.load_model``: custom layers registered, backbone pinned to inference."""
    from kerafine.saving import load_model

    return load_model(path)


def _predict(model, x, batch_size: int = 1024):
    import numpy as np

    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0)).reshape(-1)


def _save_model_atomically(model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, path)
    from kerafine._io import fsync_dir

    fsync_dir(path.parent)


def _drift_frame(x, features=None, n: int = 1500):
    """Inputs as the DataFrame DriftMonitor compares: tabular columns as they are, windows as per-window means.

    A window ``(n, steps, features)`` becomes one row of feature means, named
    after the metrics, so a drift alert names ``cpu`` rather than ``x0``. A
    random subsample of ``n`` rows keeps the per-epoch check cheap.
    """
    import numpy as np
    import pandas as pd

    if isinstance(x, dict):
        frame = pd.DataFrame(x)
    else:
        arr = np.asarray(x, dtype=np.float64)
        arr = arr.mean(axis=tuple(range(1, arr.ndim - 1))) if arr.ndim > 2 else arr.reshape(len(arr), -1)
        names = list(features) if features is not None and len(features) == arr.shape[1] else None
        frame = pd.DataFrame(arr, columns=names)
    if len(frame) > n:
        frame = frame.iloc[np.sort(np.random.default_rng(0).choice(len(frame), n, replace=False))]
    return frame.reset_index(drop=True)


# Rows of the training inputs the CLI's TrainingMonitor probes (its feature check looks at 256 rows).
_PROBE_ROWS = 256


def _first_rows(x, n: int):
    """The first ``n`` rows of inputs: an array, or a dict of columns (tabular data)."""
    if isinstance(x, dict):
        return {k: v[:n] for k, v in x.items()}
    return x[:n]


def _callbacks(
    *,
    x_train,
    x_val,
    y_val,
    log_dir: Path,
    ckpt_dir: Path | None,
    patience: int | None,
    auc: bool = True,
    drift: bool = False,
    features=None,
    categorical=None,
    monitor: bool = True,
    tensorboard: bool = True,
) -> tuple[list, list]:
    """The callback list of one training run and the names of the kerafine callbacks in it.

    ``drift`` attaches a :class:`~kerafine.callbacks.DriftMonitor` comparing
    the validation inputs with the training inputs (tabular columns, or the
    per-window mean of each metric; ``features`` names them, ``categorical``
    lists the categorical columns). Order matters: AUCTracker writes
    ``val_auc`` into the logs before EarlyStopping reads it, and
    CheckpointRestart comes last so that it saves the other callbacks' state
    after they have updated it for the epoch.
    """
    import keras

    from kerafine.callbacks.auc_tracker import AUCTracker
    from kerafine.callbacks.checkpoint_restart import CheckpointRestart
    from kerafine.callbacks.drift_monitor import DriftMonitor
    from kerafine.callbacks.early_stopping import EarlyStopping
    from kerafine.callbacks.training_monitor import TrainingMonitor

    cbs, used = [], []
    monitor_key = "val_loss"
    if auc:
        cbs.append(AUCTracker((x_val, y_val), name="val_auc", log_dir=os.fspath(log_dir)))
        used.append("AUCTracker")
        monitor_key = "val_auc"
    if drift:
        cbs.append(
            DriftMonitor(
                _drift_frame(x_train, features),
                _drift_frame(x_val, features),
                on="inputs",
                categorical=list(categorical) if categorical else None,
                log_dir=os.fspath(log_dir),
            )
        )
        used.append("DriftMonitor")
    if monitor:
        # A probe batch of the training inputs and the validation split: the monitor then checks, each epoch,
        # the backbone's features (constant_features), the validation predictions (one_class_predictions) and,
        # when the loss goes non-finite, which inputs and layers are non-finite (issue 16/19 follow-up).
        cbs.append(
            TrainingMonitor(
                log_dir=os.fspath(log_dir),
                probe_data=None if x_train is None else _first_rows(x_train, _PROBE_ROWS),
                validation_data=None if x_val is None or y_val is None else (x_val, y_val),
            )
        )
        used.append("TrainingMonitor")
    if patience:
        cbs.append(
            EarlyStopping(
                monitor=monitor_key,
                mode="max" if monitor_key == "val_auc" else "min",
                patience=patience,
                restore_best_weights=True,
            )
        )
        used.append("EarlyStopping")
    if tensorboard:
        cbs.append(keras.callbacks.TensorBoard(log_dir=os.fspath(log_dir), write_graph=False, profile_batch=0))
    if ckpt_dir is not None:
        cbs.append(CheckpointRestart(os.fspath(ckpt_dir), log_dir=os.fspath(log_dir)))
        used.append("CheckpointRestart")
    return cbs, used


def _train(
    model,
    train,
    val,
    *,
    head_epochs: int,
    finetune_epochs: int,
    head_lr: float,
    finetune_lr: float,
    unfreeze="all",
    batch_size: int,
    callbacks: list,
    verbose: int = 2,
    class_weight=None,
) -> dict:
    """Train ``model`` with :func:`kerafine.fine_tune`, the one training path of ``fit`` and ``demo``.

    Phase 1 trains the head on the frozen backbone, phase 2 the top
    ``unfreeze`` backbone layers; one callback list serves both, so
    TensorBoard and ``CheckpointRestart`` see one run whose phase-2 epochs
    continue phase 1's (a model trained from scratch is ``head_epochs=0`` with
    ``unfreeze="all"``). ``class_weight`` (a resolved ``{class: weight}``)
    weighs the loss in both phases. Returns ``{phase: {"epoch": [...], metric: [...]}}``
    for the phases that ran, epochs numbered as one run.
    """
    from kerafine.finetune import fine_tune

    result = fine_tune(
        model,
        train,
        validation_data=val,
        head_epochs=head_epochs,
        finetune_epochs=finetune_epochs,
        head_lr=head_lr,
        finetune_lr=finetune_lr,
        unfreeze_top=unfreeze,
        batch_size=batch_size,
        callbacks=callbacks,
        loss="binary_crossentropy",
        verbose=verbose,
        class_weight=class_weight,
    )
    histories = {}
    for phase, h in (("head", result.head_history), ("finetune", result.finetune_history)):
        if h is not None and h.epoch:
            histories[phase] = {
                "epoch": [int(e) for e in h.epoch],
                **{k: [float(v) for v in vals] for k, vals in h.history.items()},
            }
    return histories


class _collect_warnings:
    """Gather the warnings of a training phase and print each distinct one once, whole.

    The monitors warn every epoch they see a problem; the full text is also in
    TensorBoard (Text tab). The console prints each note once per command
    (the console remembers them across phases and models), wrapped at word
    boundaries and never cut.
    """

    def __init__(self, con: _Console, width: int = 110):
        import warnings

        self.con, self.width = con, width
        self._cm = warnings.catch_warnings(record=True)

    def __enter__(self):
        import warnings

        self.records = self._cm.__enter__()
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*are constant in the reference.*")
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        for w in self.records:
            self.con.note(str(w.message), w.category.__name__, width=self.width)
        return False


def _transfer_model(backbone, hidden, dropout: float = 0.0):
    """Backbone + binary classification head, backbone frozen (kerafine.heads, kerafine.transfer)."""
    from kerafine.heads import classification
    from kerafine.transfer import build_transfer_model

    return build_transfer_model(backbone, classification(2, hidden=tuple(hidden), dropout=dropout), freeze="all")


def _sequence_encoder(window: int, n_features: int, kind: str, units):
    from kerafine.backbones import sequence_encoder

    return sequence_encoder((window, n_features), kind=kind, units=tuple(units))


def _pretrain(encoder, windows, epochs: int, batch_size: int, callbacks, verbose: int):
    import keras

    from kerafine.backbones import pretrain_sequence_encoder

    return pretrain_sequence_encoder(
        encoder,
        windows,
        objective="forecast",
        epochs=epochs,
        batch_size=batch_size,
        optimizer=keras.optimizers.Adam(3e-3),
        callbacks=_console(callbacks, verbose),
        verbose=0,
        shuffle=True,
    )


def _console(callbacks, verbose) -> list:
    """``callbacks`` plus kerafine's one-line-per-epoch console when ``verbose``; pass ``verbose=0`` to ``fit``."""
    if not verbose:
        return list(callbacks or [])
    from kerafine.callbacks.console import ConsoleProgress

    return [*(callbacks or []), ConsoleProgress(verbose=1 if verbose in (1, "auto") else 2)]


def _sidecar(model_path: Path) -> Path:
    """``model.keras`` -> ``model.kerafine.json``: what evaluate needs to rebuild the inputs."""
    return model_path.with_name(model_path.name.removesuffix(".keras") + ".kerafine.json")


# --------------------------------------------------------------------------- run directory


RUN_RECORD = "run.json"


def _flatten(value, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    if isinstance(value, dict):
        flat = {}
        for k, v in value.items():
            flat.update(_flatten(v, f"{prefix}{k}."))
        return flat
    return {prefix.rstrip("."): value}


def _config_hash(settings: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_run_dir(
    out: Path, settings: dict, *, owned: tuple, ignored: tuple = (), fresh: bool, command: str, where: str
) -> bool:
    """Remember ``settings`` (the resolved config) in ``out/run.json``; refuse a run directory made with others.

    Returns ``True`` when ``out`` holds a run of the same settings (resume it),
    ``False`` for a new run (the record is written). Settings that differ
    raise :class:`~kerafine.errors.KerafineError` (exit 2) before any work,
    listing each changed field as ``name: old -> new`` and the two ways on:
    ``--fresh`` or another ``where`` (the output directory). Keys in
    ``ignored`` cannot change the result and are left out of the comparison.
    ``fresh`` deletes what a run writes (the names in ``owned`` and the
    record) and starts a new run; other files in ``out`` are kept.
    """
    from kerafine._io import atomic_write_json, read_json
    from kerafine.errors import KerafineError

    compared = {k: v for k, v in _flatten(settings).items() if k not in ignored}
    record = out / RUN_RECORD
    if fresh:
        import shutil

        for name in (*owned, RUN_RECORD):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    elif record.is_file():
        previous = read_json(record)
        if previous.get("hash") == _config_hash(compared):
            return True
        old = previous.get("settings", {})
        changed = [
            f"  {k}: {_show(old.get(k, '(absent)'))} -> {_show(compared.get(k, '(absent)'))}"
            for k in sorted(set(old) | set(compared))
            if old.get(k, "(absent)") != compared.get(k, "(absent)")
        ]
        note = f" ({', '.join(ignored)} may differ: they cannot change the result)" if ignored else ""
        raise KerafineError(
            f"{os.fspath(out)} holds a run made with other settings; changed:\n"
            + "\n".join(changed)
            + f"\nRe-running it would mix the two. Either start over in that directory: {command} --fresh\n"
            f"or keep it and set another {where}{note}."
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record, {"hash": _config_hash(compared), "settings": compared, "ignored": list(ignored)})
    return False


def _show(value) -> str:
    return value if isinstance(value, str) else __import__("json").dumps(value)
