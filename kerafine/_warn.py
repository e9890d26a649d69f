"""Warnings that point at the user's line, not at kerafine's, Keras's or TensorFlow's.

A warning's location is the frame ``warnings.warn`` attributes it to. For a
warning raised inside a callback during ``fit``, the user's line is their
``model.fit(...)`` (or ``kerafine.fine_tune(...)``) call, several Keras frames
up. kerafine never walks the stack itself (tests/test_no_internals.py forbids
frame inspection); it lets the ``warnings`` module do it:

* Python >= 3.12: ``warnings.warn(..., skip_file_prefixes=...)`` skips every
  frame in kerafine's, Keras's and TensorFlow's directories, so the warning
  lands on the first frame outside them, whatever the call path.
* Python 3.10 / 3.11 (no ``skip_file_prefixes``): a fixed ``stacklevel``
  computed from the call path kerafine knows: the frames from the warning to
  the kerafine function (or the callback hook) the user's code or Keras
  called (``depth``), plus, for callback hooks, the frames Keras 3 puts
  between a hook and the user's ``fit`` call (:data:`KERAS_HOOK_FRAMES`:
  ``CallbackList``, the backend trainer's ``fit``, its traceback filter). It
  points at the user's ``model.fit`` line when they call ``fit`` directly;
  under ``kerafine.fine_tune`` it points at the ``fit`` call inside
  ``kerafine/finetune.py`` (use Python >= 3.12 to get your own line there).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings

__all__ = ["warn", "KERAS_HOOK_FRAMES", "skip_prefixes"]

#: Frames between a callback hook and the user's ``fit`` call in Keras 3
#: (``CallbackList.on_epoch_end``, ``trainer.fit``, ``traceback_utils.error_handler``).
KERAS_HOOK_FRAMES = 3


def _package_dir(name: str):
    # find_spec locates a top-level package without importing it (kerafine.drift never loads Keras).
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return [os.path.join(os.path.realpath(p), "") for p in spec.submodule_search_locations] + [
        os.path.join(os.path.abspath(p), "") for p in spec.submodule_search_locations
    ]


def skip_prefixes() -> tuple:
    """The directories whose frames a kerafine warning skips: kerafine's, Keras's and TensorFlow's."""
    out = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "")]
    for name in ("keras", "tensorflow"):
        out += _package_dir(name) or []
    return tuple(dict.fromkeys(out))


def warn(message, category=UserWarning, *, depth: int = 0, hook: bool = False) -> None:
    """Issue ``warnings.warn(message, category)`` located at the user's line.

    Args:
        message: the warning text.
        category: the warning class. Defaults to ``UserWarning``.
        depth: kerafine frames between the function that calls :func:`warn`
            and the kerafine function the user (or Keras) called: 0 when that
            function calls :func:`warn` itself. Used on Python < 3.12 only.
            Defaults to 0.
        hook: the kerafine function is a callback hook run by ``fit``, so
            the user's line is :data:`KERAS_HOOK_FRAMES` further up. Used on
            Python < 3.12 only. Defaults to ``False``.
    """
    if sys.version_info >= (3, 12):
        warnings.warn(message, category, stacklevel=2, skip_file_prefixes=skip_prefixes())
    else:
        # 1: this function, 2: its caller, + depth: the entry point, + 1: who called the entry point.
        warnings.warn(message, category, stacklevel=3 + depth + (KERAS_HOOK_FRAMES if hook else 0))
