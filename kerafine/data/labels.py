"""Label checks shared by ``kerafine fit`` (an error) and :func:`kerafine.fine_tune` (a warning)."""

from __future__ import annotations

import warnings

import numpy as np

from kerafine.errors import DataError

__all__ = ["check_label_classes"]


def check_label_classes(y, split: str, *, error: bool = True) -> dict:
    """Check that the labels ``y`` of ``split`` hold at least two classes.

    A training split with one class teaches the model a constant; a validation
    or test split with one class has no ROC-AUC. The message names the split
    and the count of each class.

    Args:
        y: labels, ``(n,)`` or ``(n, 1)`` (class indices or 0/1), or
            ``(n, k)`` one-hot.
        split: the split's name in the message, e.g. ``"training"``.
        error: raise :class:`~kerafine.errors.DataError` (``True``) or warn
            with a ``UserWarning`` (``False``). Defaults to ``True``.

    Returns:
        ``{class: count}`` of the labels.

    Example:

    >>> check_label_classes([0, 1, 1, 0], "training")
    {0: 2, 1: 2}
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] > 1:
        arr = arr.argmax(axis=1)
    arr = arr.reshape(-1)
    values, counts = np.unique(arr, return_counts=True)
    found = {_plain(v): int(c) for v, c in zip(values, counts)}
    if len(found) < 2:
        shown = ", ".join(f"{k!r}: {v}" for k, v in found.items()) or "no rows"
        message = (f"The {split} split holds a single class ({shown}; {len(arr)} rows): a model trained or judged "
                   "on it learns or shows nothing. Use more rows, another split, or check the labels.")
        if error:
            raise DataError(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    return found


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    # Labels read as floats (0.0/1.0) are shown as the class indices they are.
    return int(value) if isinstance(value, float) and value.is_integer() else value
