"""Non-finite data (NaN, +inf, -inf): which rows hold it, and one message for all of kerafine.

Training, evaluation, prediction and drift checks all ask the same question
of their inputs: "which rows hold a NaN or an infinity?". This module answers
it for every input form kerafine takes in memory (an array, a dict or a list
of arrays, a pandas DataFrame or Series) with numpy only, so the numeric
layers (:mod:`kerafine.metrics`, :mod:`kerafine.drift`) may use it without
importing TensorFlow. Integer, boolean and text columns cannot hold NaN/inf
and are skipped.

Why refuse rather than train on: one NaN input gives a NaN gradient (``NaN * 0``
is NaN), and one optimizer step spreads it to every weight it touches. On a
CPU whose ReLU maps NaN to 0 the loss can even stay finite while the model is
already dead.

Example:

>>> import numpy as np
>>> from kerafine import _finite
>>> x = np.zeros((6, 2)); x[1, 0] = np.nan; x[4, 1] = np.inf
>>> found = _finite.scan({"x": x, "y": np.arange(6)})
>>> found.count, found.first_rows(), found.parts
(2, [1, 4], {'x': 2})
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from kerafine.errors import DataError, check_choice

__all__ = ["NonFinite", "row_mask", "scan", "check", "take", "describe", "SHOWN_ROWS"]

#: How many row indices a message lists.
SHOWN_ROWS = 5


def _bad(values: np.ndarray, nan_ok: bool) -> np.ndarray:
    return np.isinf(values) if nan_ok else ~np.isfinite(values)


def _float_mask(a: np.ndarray, nan_ok: bool = False) -> Optional[np.ndarray]:
    """``(n,)`` True where a row of ``a`` (rows on axis 0) holds NaN/inf; ``None`` if it cannot."""
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating)):
        return None
    if a.ndim == 0:
        return None
    bad = _bad(a, nan_ok)
    return bad.reshape(len(a), -1).any(axis=1) if a.ndim > 1 else bad


def _frame_mask(frame, nan_ok: bool = False) -> Optional[np.ndarray]:
    numeric = frame.select_dtypes(include=[np.number])
    if numeric.shape[1] == 0:
        return None
    values = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    return _bad(values, nan_ok).any(axis=1)


def row_mask(x: Any, nan_ok: bool = False) -> Optional[np.ndarray]:
    """``(n,)`` bool, True for the rows of ``x`` holding NaN/inf; ``None`` when ``x`` cannot hold them.

    Args:
        x: an array (rows on axis 0), a dict or list/tuple of arrays (rows
            aligned), a pandas DataFrame (its numeric columns) or Series.
        nan_ok: count only infinities (for a model that imputes NaN itself,
            such as ``tabular_encoder(..., impute="median")``). Defaults to ``False``.

    Returns:
        The mask, or ``None`` for integer/boolean/text data.
    """
    if isinstance(x, dict):
        masks = [m for m in (row_mask(v, nan_ok) for v in x.values()) if m is not None]
        return np.logical_or.reduce(masks) if masks else None
    if isinstance(x, (list, tuple)):
        masks = [m for m in (row_mask(v, nan_ok) for v in x) if m is not None]
        return np.logical_or.reduce(masks) if masks else None
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(x, pd.DataFrame):
        return _frame_mask(x, nan_ok)
    if pd is not None and isinstance(x, pd.Series):
        if not pd.api.types.is_numeric_dtype(x.dtype):
            return None
        return _bad(x.to_numpy(dtype=np.float64, na_value=np.nan), nan_ok)
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):  # a tensor
        x = x.numpy()
    return _float_mask(np.asarray(x), nan_ok)


@dataclasses.dataclass(frozen=True)
class NonFinite:
    """Rows holding NaN/inf in one data set.

    Attributes:
        mask: ``(n,)`` bool, True for a row with a NaN/inf in any part.
        parts: ``{part name: rows with NaN/inf in that part}`` for the parts
            that have any (e.g. ``{"inputs": 2}``; dict inputs are named by key).
    """

    mask: np.ndarray
    parts: dict

    @property
    def count(self) -> int:
        """Rows holding NaN/inf."""
        return int(self.mask.sum())

    @property
    def n_rows(self) -> int:
        """Rows examined."""
        return int(self.mask.size)

    def first_rows(self, k: int = SHOWN_ROWS) -> list[int]:
        """Indices of the first ``k`` rows holding NaN/inf."""
        return [int(i) for i in np.flatnonzero(self.mask)[:k]]

    def to_dict(self) -> dict:
        """JSON-native summary: count, rows examined, first rows, parts."""
        return {"rows": self.count, "of": self.n_rows, "first_rows": self.first_rows(), "parts": dict(self.parts)}


def scan(parts: dict, nan_ok: tuple = ()) -> NonFinite:
    """Find the rows with NaN/inf over named, row-aligned parts.

    A dict-valued part (named inputs) is reported per key as ``"part['key']"``.

    Args:
        parts: ``{name: data}`` (``None`` values are skipped); all parts have
            the same number of rows.
        nan_ok: names of the parts in which NaN is allowed (only infinities
            count). Defaults to ``()``.

    Returns:
        A :class:`NonFinite`.
    """
    n = None
    masks, counts = [], {}
    for name, data in parts.items():
        if data is None:
            continue
        sub = {f"{name}[{k!r}]": v for k, v in data.items()} if isinstance(data, dict) else {name: data}
        for sub_name, value in sub.items():
            m = row_mask(value, name in nan_ok)
            if m is None:
                if n is None:
                    n = len(value)
                continue
            n = m.size
            masks.append(m)
            if m.any():
                counts[sub_name] = int(m.sum())
    if not masks:
        return NonFinite(np.zeros(n or 0, dtype=bool), {})
    return NonFinite(np.logical_or.reduce(masks), counts)


def describe(found: NonFinite) -> str:
    """``"2 of 64 rows hold NaN or inf (inputs: 2; first rows [3, 17])"``."""
    where = ", ".join(f"{k}: {v}" for k, v in found.parts.items())
    first = found.first_rows()
    more = ", ..." if found.count > len(first) else ""
    return f"{found.count} of {found.n_rows} rows hold NaN or inf ({where}; first rows {str(first)[:-1]}{more}])"


def check(argument: str, parts: dict, *, hint: str, nan_ok: tuple = ()) -> NonFinite:
    """Raise a :class:`~kerafine.errors.DataError` if any row of ``parts`` holds NaN/inf.

    Args:
        argument: the argument the data came in (named in the message).
        parts: as :func:`scan`.
        nan_ok: as :func:`scan`.
        hint: the sentence saying what to do (the option that handles them).

    Returns:
        The (clean) :class:`NonFinite` scan.

    Raises:
        DataError: naming the argument, the count, the parts and the first rows.

    Example:

    >>> import numpy as np
    >>> from kerafine import _finite
    >>> _finite.check("x", {"inputs": np.array([1.0, np.nan])}, hint="Clean it.")
    Traceback (most recent call last):
    ...
    kerafine.errors.DataError: Invalid value for argument `x`: 1 of 2 rows hold NaN or inf (inputs: 1; first rows [1]). Clean it.
    """
    found = scan(parts, nan_ok)
    if found.count:
        raise DataError(f"Invalid value for argument `{argument}`: {describe(found)}. {hint}")
    return found


def check_option(name: str, value: Any, choices: tuple) -> str:
    """Validate a ``non_finite=`` option (one message format)."""
    return check_choice(name, value, choices)


def take(data: Any, keep: np.ndarray) -> Any:
    """Rows ``keep`` (bool mask or indices) of an array, a dict/list of arrays, a DataFrame or Series."""
    if data is None:
        return None
    if isinstance(data, dict):
        return {k: take(v, keep) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(take(v, keep) for v in data)
    if hasattr(data, "iloc"):
        return data.iloc[np.flatnonzero(keep) if np.asarray(keep).dtype == bool else keep]
    if hasattr(data, "numpy") and not isinstance(data, np.ndarray):
        data = data.numpy()
    return np.asarray(data)[keep]
