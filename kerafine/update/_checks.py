"""Validation shared by the update functions: one message format, raised before any work."""

from __future__ import annotations

import numpy as np

from kerafine.errors import DataError, KerafineError, invalid_argument


def check_xy(data, name: str, *, both_classes: bool = False, allow_none: bool = False):
    """``data`` as ``(x, y)`` numpy arrays of equal, non-zero length (``None`` passes when allowed)."""
    if data is None:
        if allow_none:
            return None
        raise invalid_argument(name, None, "a tuple (x, y) of arrays")
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise invalid_argument(name, data, "a tuple (x, y) of arrays", error=DataError)
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if x.ndim == 0 or len(x) == 0:
        raise invalid_argument(name, f"x of shape {x.shape}", "at least one row", error=DataError)
    if y.shape[:1] != x.shape[:1]:
        raise invalid_argument(
            name,
            f"x with {len(x)} rows and y with {y.shape[0] if y.ndim else 0}",
            "as many labels as rows",
            error=DataError,
        )
    if both_classes:
        labels = np.unique(y.reshape(len(y), -1)[:, 0] if y.ndim > 1 and y.shape[-1] == 1 else y)
        if labels.size < 2:
            raise invalid_argument(
                name,
                f"labels of a single class {labels.tolist()}",
                "labels with both classes (ROC-AUC is undefined otherwise)",
                error=DataError,
            )
    return x, y


def check_model(model, name: str):
    import keras

    if not isinstance(model, keras.Model):
        raise invalid_argument(name, model, "a keras.Model")
    if len(model.inputs or []) != 1 or len(model.outputs or []) != 1:
        raise invalid_argument(name, model.name, "a built functional model with one input and one output")
    return model


def input_signature(model) -> tuple:
    return tuple(model.inputs[0].shape[1:])


def output_signature(model) -> tuple:
    return tuple(model.outputs[0].shape[1:])


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise invalid_argument(name, value, f"an int >= {minimum}")
    return int(value)


def check_fraction(name: str, value, *, low_open=False, high_open=True) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (v > 0 if low_open else v >= 0) and (v < 1 if high_open else v <= 1)
    if not ok:
        lo = "(0" if low_open else "[0"
        hi = "1)" if high_open else "1]"
        raise invalid_argument(name, value, f"a float in {lo}, {hi}")
    return float(value)


def fail(message: str) -> KerafineError:
    return KerafineError(message)
