"""The one validation layer for the numeric inputs of :mod:`kerafine.metrics`.

Every metric goes through :func:`check_targets` (labels, scores, weights) so
that a bad input gets the same message everywhere, raised before any sorting
starts. Messages use :func:`kerafine.errors.invalid_argument`'s format:
``Invalid value for argument `y_score`: received ...; expected ....``

The checks avoid the extra passes scikit-learn makes (``type_of_target``,
``np.unique`` on 10 million labels, ...): binary numeric labels are checked
with a min, a max and two counts.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Optional

import numpy as np

from kerafine.errors import DataError, invalid_argument

__all__ = ["UndefinedMetricWarning", "LabelTypeError", "Targets", "check_targets", "check_scores", "warn_undefined"]


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for the data given (e.g. one class only); the value is NaN."""


class LabelTypeError(DataError, TypeError):
    """Labels of a type no metric accepts (bytes); a ``TypeError`` too, as scikit-learn raises one."""


class _Described(str):
    """A description used in place of a value in an error message (no quotes added)."""

    def __repr__(self) -> str:
        return str(self)


def _error(name: str, description: str, expected: str, hint: str | None = None) -> DataError:
    return invalid_argument(name, _Described(description), expected, hint=hint, error=DataError)


def _shape_text(a: np.ndarray) -> str:
    return f"an array of shape {tuple(a.shape)}"


def check_scores(y_score, name: str = "y_score") -> np.ndarray:
    """Scores as a float array (float32 kept as is), all finite.

    Args:
        y_score: scores of any real dtype; logits and probabilities are both fine.
        name: argument name used in error messages. Defaults to ``"y_score"``.

    Returns:
        ``np.ndarray`` of dtype float32 or float64 (other dtypes become float64).

    Raises:
        DataError: if the scores are not numeric, or contain NaN or infinity
            (the message says how many of each).

    Example:

    >>> check_scores([0.2, -3.0, 7]).dtype
    dtype('float64')
    """
    s = np.asarray(y_score)
    if s.dtype.kind not in "biuf":
        raise _error(name, f"an array of dtype {s.dtype}", "real-valued scores (probabilities or logits)")
    if s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float64)
    finite = np.isfinite(s)
    if not finite.all():
        n_nan = int(np.count_nonzero(np.isnan(s)))
        n_inf = int(s.size - np.count_nonzero(finite) - n_nan)
        parts = []
        if n_nan:
            parts.append(f"{n_nan} NaN")
        if n_inf:
            parts.append(f"{n_inf} infinite")
        raise _error(
            name,
            f"{' and '.join(parts)} value(s) among {s.size}",
            "finite scores",
            hint="Check the model for divergence, or drop those rows before computing the metric.",
        )
    return s


def check_weights(sample_weight, n: int) -> Optional[np.ndarray]:
    """Sample weights as float64, 1-d, length ``n``, finite and non-negative (or ``None``)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise _error("sample_weight", f"an array of dtype {w.dtype}", "non-negative real weights")
    w = w.astype(np.float64, copy=False)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.ndim != 1:
        raise _error("sample_weight", _shape_text(w), "a 1-d array of shape (n_samples,)")
    if w.shape[0] != n:
        raise _error(
            "sample_weight",
            f"{w.shape[0]} weights",
            f"one weight per sample ({n})",
        )
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        raise _error(
            "sample_weight",
            f"{int(np.count_nonzero(bad))} negative or non-finite weight(s) among {n}",
            "finite weights >= 0",
        )
    return w


@dataclasses.dataclass(frozen=True)
class Targets:
    """Validated inputs of a ranking metric.

    Attributes:
        kind: ``"binary"``, ``"multiclass"`` (one label per row, one score column
            per class) or ``"multilabel"`` (an indicator matrix).
        y: for binary, a bool vector (True = positive class); otherwise a bool
            matrix ``(n_samples, n_classes)``.
        score: float vector (binary) or matrix ``(n_samples, n_classes)``.
        weight: float64 vector or ``None``.
        classes: class labels, one per column (binary: ``[negative, positive]``;
            ``None`` when binary labels hold a single class).
    """

    kind: str
    y: np.ndarray
    score: np.ndarray
    weight: Optional[np.ndarray]
    classes: Optional[list]

    @property
    def n_samples(self) -> int:
        return int(self.score.shape[0])


def _binary_labels(y: np.ndarray):
    """(positive mask, [negative label, positive label] or None if one class)."""
    n = y.shape[0]
    if y.dtype == bool:
        n_pos = int(np.count_nonzero(y))
        return y, (None if n_pos in (0, n) else [False, True])
    if y.dtype.kind in "iuf":
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            bad = int(np.count_nonzero(~np.isfinite(y)))
            raise _error("y_true", f"{bad} NaN or infinite label(s) among {n}", "class labels")
        lo, hi = y.min(), y.max()
        if lo == hi:
            return _single_class(y, hi.item()), None
        pos = y == hi
        n_two = int(np.count_nonzero(pos)) + int(np.count_nonzero(y == lo))
        if n_two != n:
            values = np.unique(y)
            raise _error(
                "y_true",
                f"{values.size} distinct labels {_preview(values)} with 1-d scores",
                "two classes for 1-d scores",
                hint="For a multiclass problem pass scores of shape (n_samples, n_classes).",
            )
        return pos, [lo.item(), hi.item()]
    values = np.unique(y)
    if values.size == 1:
        return _single_class(y, values[0].item()), None
    if values.size != 2:
        raise _error(
            "y_true",
            f"{values.size} distinct labels {_preview(values)} with 1-d scores",
            "two classes for 1-d scores",
            hint="For a multiclass problem pass scores of shape (n_samples, n_classes).",
        )
    return y == values[1], [values[0].item(), values[1].item()]


def _single_class(y: np.ndarray, value) -> np.ndarray:
    """Positive mask of labels that hold one value only, by scikit-learn's convention.

    With two classes the larger label is the positive one; with a single class
    there is no larger one, so, as scikit-learn (``pos_label=None``), ``1`` is
    positive, ``0`` and ``-1`` are negative, and any other value is ambiguous.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == 1:
            return np.ones(y.shape[0], dtype=bool)
        if value in (0, -1):
            return np.zeros(y.shape[0], dtype=bool)
    raise _error(
        "y_true",
        f"a single label {value!r}",
        "labels with both classes, or a single class written 1 (positive), 0 or -1 (negative)",
        hint="With one class only, kerafine cannot tell whether it is the positive or the negative one.",
    )


def _preview(values: np.ndarray, limit: int = 6) -> str:
    items = [v.item() if hasattr(v, "item") else v for v in values[:limit]]
    text = ", ".join(repr(v) for v in items)
    return f"[{text}{', ...' if values.size > limit else ''}]"


def check_targets(y_true, y_score, sample_weight=None, labels: Sequence | None = None) -> Targets:
    """Validate labels, scores and weights of a ranking metric; return :class:`Targets`.

    Shapes accepted:

    * binary: ``y_score`` of shape ``(n,)`` or ``(n, 1)`` and ``y_true`` with
      two distinct values (the larger one, or ``True``, is the positive class),
      or a single class written ``1``/``True`` (all positive) or ``0``/``-1``/
      ``False`` (all negative), scikit-learn's convention; any other single
      label is ambiguous and raises;
    * multiclass: ``y_score`` of shape ``(n, k)`` and ``y_true`` of shape ``(n,)``
      holding column indices ``0 .. k-1`` (or the labels listed in ``labels``);
    * multilabel / one-hot: ``y_score`` and ``y_true`` both ``(n, k)``, ``y_true``
      of 0/1 values.

    Args:
        y_true: labels.
        y_score: scores (probabilities or logits).
        sample_weight: optional weights, shape ``(n,)``. Defaults to ``None``.
        labels: for multiclass, the label of each score column. Defaults to
            ``None`` (labels are column indices).

    Returns:
        :class:`Targets`.

    Raises:
        DataError: empty input, lengths that differ, non-finite scores, labels
            that do not match the score columns, bytes labels (decode them, as
            scikit-learn asks), an ambiguous single label, bad weights.

    Example:

    >>> t = check_targets([0, 1, 1], [0.1, 0.4, 0.9])
    >>> t.kind, t.y.tolist(), t.classes
    ('binary', [False, True, True], [0, 1])
    """
    y = np.asarray(y_true)
    s = np.asarray(y_score)
    if y.dtype.kind == "S":
        raise invalid_argument(
            "y_true",
            _Described(f"labels of dtype {y.dtype} (bytes)"),
            "numeric, boolean or string labels",
            hint="Decode them first, e.g. y_true.astype(str), as scikit-learn asks too.",
            error=LabelTypeError,
        )
    if s.ndim == 0 or y.ndim == 0:
        raise _error("y_score" if s.ndim == 0 else "y_true", "a scalar", "an array with one entry per sample")
    if s.shape[0] != y.shape[0]:
        raise _error(
            "y_score",
            f"{s.shape[0]} scores for {y.shape[0]} labels",
            "y_true and y_score of the same length",
        )
    if s.shape[0] == 0:
        raise _error("y_true", "0 samples", "at least one sample")
    if s.ndim > 2:
        raise _error("y_score", _shape_text(s), "shape (n_samples,) or (n_samples, n_classes)")
    if y.ndim > 2:
        raise _error("y_true", _shape_text(y), "shape (n_samples,) or (n_samples, n_classes)")
    s = check_scores(s)
    n = s.shape[0]
    w = check_weights(sample_weight, n)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim == 1:
        if y.ndim == 2:
            if y.shape[1] != 1:
                raise _error(
                    "y_true",
                    _shape_text(y),
                    "shape (n_samples,) or (n_samples, 1) for 1-d scores",
                    hint=f"y_score has shape {tuple(np.shape(y_score))}.",
                )
            y = y[:, 0]
        pos, classes = _binary_labels(y)
        return Targets("binary", pos, s, w, classes)

    k = s.shape[1]
    if y.ndim == 2 and not (y.shape[1] == 1 and k > 1):
        if y.shape[1] != k:
            raise _error(
                "y_true",
                _shape_text(y),
                f"one column per score column ({k}), or one label per row",
            )
        if y.dtype == bool:
            Y = y
        else:
            if y.dtype.kind not in "biuf":
                raise _error("y_true", f"an indicator matrix of dtype {y.dtype}", "0/1 values")
            Y = y == 1
            if np.count_nonzero(Y) + np.count_nonzero(y == 0) != y.size:
                raise _error("y_true", "an indicator matrix with values other than 0 and 1", "0/1 values")
        one_hot = bool(np.all(np.count_nonzero(Y, axis=1) == 1))
        names = list(labels) if labels is not None else list(range(k))
        if len(names) != k:
            raise _error("labels", f"{len(names)} labels", f"one label per score column ({k})")
        return Targets("multiclass" if one_hot else "multilabel", Y, s, w, names)

    if y.ndim == 2:
        y = y[:, 0]
    if labels is None:
        names = list(range(k))
        if y.dtype.kind == "b":
            codes = y.astype(np.int64)
        elif y.dtype.kind in "iu":
            codes = y.astype(np.int64, copy=False)
        elif y.dtype.kind == "f" and np.isfinite(y).all() and np.all(y == np.round(y)):
            codes = y.astype(np.int64)
        else:
            raise _error(
                "y_true",
                f"labels of dtype {y.dtype}",
                f"integer class indices 0..{k - 1} (one per score column)",
                hint="Pass `labels` to name the class of each score column.",
            )
        bad = (codes < 0) | (codes >= k)
        if bad.any():
            found = np.unique(codes[bad])
            raise _error(
                "y_true",
                f"labels {_preview(found)} with {k} score columns",
                f"class indices in 0..{k - 1}, one per column of y_score",
                hint="The score columns do not match the classes: check the model's output size, or pass `labels`.",
            )
    else:
        names = list(labels)
        if len(names) != k:
            raise _error("labels", f"{len(names)} labels", f"one label per score column ({k})")
        lab = np.asarray(names)
        order = np.argsort(lab, kind="stable")
        sorted_lab = lab[order]
        if np.unique(lab).size != lab.size:
            raise _error("labels", f"duplicated labels {_preview(lab)}", "distinct labels")
        try:
            pos_in = np.clip(np.searchsorted(sorted_lab, y), 0, k - 1)
            ok = np.asarray(sorted_lab[pos_in] == y, dtype=bool)
        except (TypeError, ValueError):  # e.g. integer labels against string names
            ok = np.zeros(n, dtype=bool)
            pos_in = np.zeros(n, dtype=np.intp)
        if not np.all(ok):
            found = np.unique(y[~ok])
            raise _error(
                "y_true",
                f"labels {_preview(found)} that are not in `labels`",
                f"labels among {_preview(lab)}",
            )
        codes = order[pos_in]
    Y = np.zeros((n, k), dtype=bool)
    Y[np.arange(n), codes] = True
    return Targets("multiclass", Y, s, w, names)


def warn_undefined(metric: str, detail: str, stacklevel: int = 3) -> None:
    """Warn that ``metric`` is undefined (its value is NaN) because of ``detail``."""
    warnings.warn(
        f"{metric} is undefined when {detail}; returning NaN.",
        UndefinedMetricWarning,
        stacklevel=stacklevel,
    )
