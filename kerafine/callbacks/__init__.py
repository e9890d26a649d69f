"""Callbacks for ``model.fit``: drop any of them into a callback list beside Keras's own.

Order matters only for callbacks that read values another writes into
``logs``: put ``AUCTracker`` (which writes ``val_auc``) before the callbacks
that monitor it.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "CheckpointRestart": "kerafine.callbacks.checkpoint_restart",
    "EarlyStopping": "kerafine.callbacks.early_stopping",
    "AUCTracker": "kerafine.callbacks.auc_tracker",
    "DriftMonitor": "kerafine.callbacks.drift_monitor",
    "TrainingMonitor": "kerafine.callbacks.training_monitor",
    "TrainingProblem": "kerafine.callbacks.training_monitor",
    "SecurityMonitor": "kerafine.callbacks.security_monitor",
    "SecurityWarning": "kerafine.callbacks.security_monitor",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kerafine.callbacks' has no attribute {name!r}")


def __dir__():
    return __all__
