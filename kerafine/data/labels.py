"""Label checks shared by ``kerafine fit`` (an error) and :func:`kerafine.fine_tune` (a warning)."""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from kerafine.errors import DataError, invalid_argument

__all__ = ["check_label_classes", "resolve_class_weight"]


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
        message = (
            f"The {split} split holds a single class ({shown}; {len(arr)} rows): a model trained or judged "
            "on it learns or shows nothing. Use more rows, another split, or check the labels."
        )
        if error:
            raise DataError(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    return found


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    # Labels read as floats (0.0/1.0) are shown as the class indices they are.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _label_indices(y) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] > 1:
        arr = arr.argmax(axis=1)
    return arr.reshape(-1)


def resolve_class_weight(class_weight, y, argument: str = "class_weight"):
    """Check ``class_weight`` against the training labels ``y`` and return Keras's ``{class: weight}``.

    ``"balanced"`` gives each class ``n_samples / (n_classes * count)``, the rule
    of scikit-learn's ``compute_class_weight("balanced", ...)``, so that every
    class carries the same total weight. A mapping is checked: every key a
    class index present in ``y``, every weight a finite number >= 0, not all 0.
    Classes a mapping leaves out keep weight 1 (as in Keras).

    Args:
        class_weight: ``None``, ``"balanced"`` or a mapping ``{class index: weight}``.
        y: training labels: ``(n,)`` or ``(n, 1)`` class indices (0/1 for
            binary) or ``(n, k)`` one-hot.
        argument: the argument's name in error messages. Defaults to ``"class_weight"``.

    Returns:
        ``None`` or a ``{int: float}`` dict for ``fit(class_weight=...)``.

    Raises:
        KerafineError: an unknown string, a key that is not a class of ``y``, a
            negative or non-finite weight, or labels that are not integers.

    Example:

    >>> resolve_class_weight("balanced", [0, 0, 0, 1])
    {0: 0.6666666666666666, 1: 2.0}
    """
    if class_weight is None:
        return None
    labels = _label_indices(y)
    if labels.size and not np.all(np.isfinite(labels.astype(np.float64))):
        raise invalid_argument(
            argument,
            class_weight,
            "weights for finite integer labels",
            hint="The labels hold NaN or inf.",
            error=DataError,
        )
    if labels.size and not np.all(np.equal(np.mod(labels.astype(np.float64), 1), 0)):
        raise invalid_argument(
            argument,
            class_weight,
            "None: class weights need integer class labels (class indices, 0/1 for binary, or one-hot)",
            error=DataError,
        )
    classes, counts = np.unique(labels.astype(np.int64), return_counts=True)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise invalid_argument(argument, class_weight, '"balanced", None or a mapping {class index: weight >= 0}')
        n, k = int(counts.sum()), len(classes)
        return {int(c): n / (k * int(m)) for c, m in zip(classes, counts)}
    if not isinstance(class_weight, dict) or not class_weight:
        raise invalid_argument(
            argument, class_weight, '"balanced", None or a non-empty mapping {class index: weight >= 0}'
        )
    present = {int(c) for c in classes}
    out = {}
    for key, weight in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, numbers.Integral):
            raise invalid_argument(argument, class_weight, f"integer class indices as keys (got the key {key!r})")
        if int(key) not in present:
            raise invalid_argument(
                argument,
                class_weight,
                f"keys among the classes of the training labels {sorted(present)} (got the key {key!r})",
                error=DataError,
            )
        if (
            isinstance(weight, bool)
            or not isinstance(weight, numbers.Real)
            or not math.isfinite(float(weight))
            or float(weight) < 0
        ):
            raise invalid_argument(argument, class_weight, f"finite weights >= 0 (class {key!r} has {weight!r})")
        out[int(key)] = float(weight)
    if not any(out.values()) and set(out) == present:
        raise invalid_argument(argument, class_weight, "at least one weight > 0 (every class weighs 0)")
    return out
