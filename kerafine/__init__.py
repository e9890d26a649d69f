"""kerafine: transfer learning and fine-tuning monitoring for Keras 3.

The public API is what ``__all__`` lists. Names load lazily, so
``import kerafine.metrics`` or ``import kerafine.drift`` never imports
TensorFlow (a production service can check drift without loading it).

Example:

>>> import kerafine
>>> sorted(kerafine.backbones.list_backbones())[:2]  # doctest: +SKIP
['convnext_base', 'convnext_large']
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "build_transfer_model": "kerafine.transfer",
    "freeze": "kerafine.transfer",
    "unfreeze": "kerafine.transfer",
    "trainable_summary": "kerafine.transfer",
    "fine_tune": "kerafine.finetune",
    "FineTuneResult": "kerafine.finetune",
    "evaluate": "kerafine.evaluation",
    "calibrate": "kerafine.calibration",
    "CalibrationResult": "kerafine.calibration",
    "load_model": "kerafine.saving",
    "lr_find": "kerafine.lr_finder",
    "KerafineError": "kerafine.errors",
    "quiet_tensorflow": "kerafine._startup",
}
_SUBMODULES = (
    "backbones",
    "heads",
    "callbacks",
    "metrics",
    "drift",
    "distributed",
    "data",
    "schedules",
    "errors",
    "tensorboard",
    "update",
    "security",
)

__all__ = sorted(list(_LAZY) + list(_SUBMODULES) + ["__version__"])


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"kerafine.{name}")
    else:
        raise AttributeError(f"module 'kerafine' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
