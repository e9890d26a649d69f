"""Callbacks for ``model.fit``: drop any of them into a callback list beside Keras's own.

Order matters only for callbacks that read values another writes into
``logs``: put ``AUCTracker`` (which writes ``val_auc``) before the callbacks
that monitor it.
"""

from __future__ import annotations

from kerafine._lazy import attach

_LAZY = {
    "CheckpointRestart": "kerafine.callbacks.checkpoint_restart",
    "EarlyStopping": "kerafine.callbacks.early_stopping",
    "AUCTracker": "kerafine.callbacks.auc_tracker",
    "DriftMonitor": "kerafine.callbacks.drift_monitor",
    "TrainingMonitor": "kerafine.callbacks.training_monitor",
    "TrainingProblem": "kerafine.callbacks.training_monitor",
    "SecurityMonitor": "kerafine.callbacks.security_monitor",
    "SecurityWarning": "kerafine.callbacks.security_monitor",
    "LogKeyConflictWarning": "kerafine.callbacks.state",
    "ConsoleProgress": "kerafine.callbacks.console",
}

__getattr__, __dir__, __all__ = attach(__name__, _LAZY)
