"""Exact ranking metrics: ROC-AUC, PR-AUC (average precision), DeLong intervals, curves.

Pure numpy (no Keras, no TensorFlow): a service can import this module without
loading TensorFlow.

Results equal scikit-learn's ``roc_auc_score`` / ``average_precision_score`` /
``roc_curve`` / ``precision_recall_curve`` (ties grouped at distinct scores,
float64 accumulation), computed in O(n log n) without a Python loop over
samples. Two sort strategies are used, both exact:

* unweighted binary ROC-AUC and PR-AUC (the common case, and what
  :class:`~kerafine.callbacks.AUCTracker` computes every epoch) split the
  scores by class and sort each part by value (numpy's SIMD sort, about ten
  times faster than ``argsort``), then count, for each score of the smaller
  class, the scores of the other class below it (``searchsorted``). ROC-AUC is
  then the Mann-Whitney statistic with ties counted one half, in integer
  arithmetic until one final division.
* everything that needs the full descending order (sample weights, curves,
  DeLong variance) uses one argsort; for float32 scores it is a radix pass
  (32-bit order keys packed with the row index into ``uint64`` and sorted by
  value), stable and faster than ``np.argsort``.

Undefined cases (labels with a single class) warn with
:class:`~kerafine.metrics.UndefinedMetricWarning` and return ``nan``.

Example:

>>> from kerafine.metrics import roc_auc, pr_auc
>>> y = [0, 0, 1, 1]
>>> s = [0.1, 0.4, 0.35, 0.8]
>>> roc_auc(y, s), round(pr_auc(y, s), 4)
(0.75, 0.8333)
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from typing import Optional

import numpy as np

from kerafine.errors import check_choice, check_number, invalid_argument
from kerafine.metrics._validation import Targets, _error, check_targets, warn_undefined

__all__ = [
    "roc_auc",
    "pr_auc",
    "roc_auc_ci",
    "AUCInterval",
    "roc_curve",
    "precision_recall_curve",
]

_AVERAGES = ("macro", "weighted", None)
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
# Below this size np.argsort is as fast as the radix passes and allocates less.
_RADIX_MIN = 1 << 15


# ---------------------------------------------------------------- sorting


def _order_key(x: np.ndarray) -> np.ndarray:
    """uint32 keys whose order is the order of the float32 values ``x`` (finite, no -0.0)."""
    u = x.view(np.uint32)
    # Arithmetic shift: all ones for negative numbers (flip every bit), else flip the sign bit.
    flip = (x.view(np.int32) >> np.int32(31)).view(np.uint32) | np.uint32(0x80000000)
    return u ^ flip


def _argsort_desc(s: np.ndarray) -> np.ndarray:
    """Indices that sort ``s`` in decreasing order.

    float32 scores (what Keras models output) of a large array: one radix pass,
    a value sort of ``(32-bit order key << 32) | row index`` packed in uint64,
    which is stable (ties keep their row order, as scikit-learn's stable sort)
    and faster than ``np.argsort``. float64: numpy's default ``argsort``; a
    two-pass radix sort measured no faster on 1e6-1e7 samples (benchmarks/RESULTS.md). Inside a
    tie group the order then differs from scikit-learn's, which changes only
    the order of the float64 additions of that group's weights (about 1e-16
    relative), never which samples are tied.
    """
    n = s.size
    if s.dtype != np.float32 or n < _RADIX_MIN or n >= (1 << 32):
        return np.argsort(-s)
    neg = np.negative(s)
    neg += np.float32(0.0)  # -0.0 -> +0.0, so the two zeros tie as they compare equal
    packed = (_order_key(neg).astype(np.uint64) << _SHIFT32) | np.arange(n, dtype=np.uint64)
    packed.sort()
    return (packed & _LOW32).astype(np.intp)


@dataclasses.dataclass
class _Groups:
    """Cumulative weights at each distinct score, in decreasing score order (scikit-learn's layout)."""

    tps: np.ndarray  # weight of positives with score >= threshold
    fps: np.ndarray  # weight of negatives with score >= threshold
    thresholds: np.ndarray
    tps2: Optional[np.ndarray] = None  # cumulative squared weights (DeLong)
    fps2: Optional[np.ndarray] = None
    n_pos: int = 0  # positives / negatives with a non-zero weight
    n_neg: int = 0


def _groups(y: np.ndarray, s: np.ndarray, w: Optional[np.ndarray], squares: bool = False) -> _Groups:
    if w is not None:
        # Zero weights change nothing but scikit-learn drops them, and so do we,
        # so the curves have the same thresholds.
        keep = w != 0
        if not keep.all():
            y, s, w = y[keep], s[keep], w[keep]
    order = _argsort_desc(s)
    s_d = s[order]
    y_d = y[order]
    n = s_d.size
    thr = np.flatnonzero(np.diff(s_d))
    thr = np.append(thr, n - 1)
    if w is None:
        tps = np.cumsum(y_d, dtype=np.int64)[thr].astype(np.float64)
        fps = (thr + 1).astype(np.float64) - tps
        g = _Groups(tps, fps, s_d[thr])
        g.n_pos = int(tps[-1]) if n else 0
        g.n_neg = int(fps[-1]) if n else 0
        if squares:
            g.tps2, g.fps2 = tps, fps
        return g
    w_d = w[order]
    yw = np.where(y_d, w_d, 0.0)
    tps = np.cumsum(yw)[thr]
    fps = np.cumsum(w_d - yw)[thr]
    g = _Groups(tps, fps, s_d[thr])
    g.n_pos = int(np.count_nonzero(y_d))
    g.n_neg = int(n - g.n_pos)
    if squares:
        w2 = w_d * w_d
        yw2 = np.where(y_d, w2, 0.0)
        g.tps2 = np.cumsum(yw2)[thr]
        g.fps2 = np.cumsum(w2 - yw2)[thr]
    return g


def _prev(a: np.ndarray) -> np.ndarray:
    out = np.empty_like(a)
    out[0] = 0.0
    out[1:] = a[:-1]
    return out


def _auc_from_groups(g: _Groups) -> float:
    T, F = g.tps[-1], g.fps[-1]
    if T <= 0 or F <= 0:
        return float("nan")
    area2 = np.dot(g.fps - _prev(g.fps), g.tps + _prev(g.tps))
    return float(area2 / (2.0 * T * F))


def _ap_from_groups(g: _Groups) -> float:
    T = g.tps[-1]
    if T <= 0:
        return float("nan")
    ps = g.tps + g.fps
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(ps != 0, g.tps / np.where(ps != 0, ps, 1.0), 0.0)
    recall_step = (g.tps - _prev(g.tps)) / T
    return float(max(0.0, np.dot(recall_step, precision)))


# ---------------------------------------------- unweighted split-sort path


def _first_index(a: np.ndarray) -> np.ndarray:
    """For sorted ``a``, the index of the first element equal to ``a[i]`` (= count of smaller ones)."""
    n = a.size
    new = np.empty(n, dtype=bool)
    if n:
        new[0] = True
        np.not_equal(a[1:], a[:-1], out=new[1:])
    idx = np.where(new, np.arange(n), 0)
    np.maximum.accumulate(idx, out=idx)
    return idx


def _search(b: np.ndarray, a: np.ndarray):
    """For sorted ``a`` and ``b``: ``(#b < a[i], #b <= a[i])`` by binary search of ``a`` in ``b``."""
    lt = np.searchsorted(b, a, side="left")
    le = lt.copy()
    inside = lt < b.size
    tie = np.zeros(a.size, dtype=bool)
    tie[inside] = b[lt[inside]] == a[inside]
    # The right-side search is only needed where a value of `a` occurs in `b`.
    if tie.any():
        le[tie] = np.searchsorted(b, a[tie], side="right")
    return lt, le


def _invert_counts(lt_b: np.ndarray, le_b: np.ndarray, size_a: int):
    """From ``(#a < b[j], #a <= b[j])`` get ``(#b < a[i], #b <= a[i])`` in O(n)."""
    # b[j] < a[i]  <=>  i >= #a <= b[j];   b[j] <= a[i]  <=>  i >= #a < b[j]
    lt_a = np.cumsum(np.bincount(le_b, minlength=size_a + 1))[:size_a]
    le_a = np.cumsum(np.bincount(lt_b, minlength=size_a + 1))[:size_a]
    return lt_a, le_a


def _unweighted_binary(y: np.ndarray, s: np.ndarray, want_ap: bool = False):
    """(ROC-AUC, PR-AUC or None) of a binary problem with both classes present."""
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    m, n = pos.size, neg.size
    # Search the smaller class inside the larger one: m log n instead of n log m.
    if m <= n or want_ap:
        if m <= n:
            lt, le = _search(neg, pos)
        else:
            lt, le = _invert_counts(*_search(pos, neg), m)
        u2 = int(lt.sum()) + int(le.sum())
        ap = None
        if want_ap:
            tp = (m - _first_index(pos)).astype(np.float64)
            fp = (n - lt).astype(np.float64)
            ap = float(np.mean(tp / (tp + fp)))
    else:
        lt_n, le_n = _search(pos, neg)
        u2 = 2 * m * n - int(lt_n.sum()) - int(le_n.sum())
        ap = None
    return u2 / (2.0 * m * n), ap


# ------------------------------------------------------------ dispatching


def _binary_metric(metric: str, y: np.ndarray, s: np.ndarray, w, what: str) -> float:
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0 or n_pos == y.size:
        warn_undefined(metric, f"{what} has a single class ({'all positive' if n_pos else 'no positive'})", 4)
        return float("nan")
    if w is None:
        auc, ap = _unweighted_binary(y, s, want_ap=metric != "ROC-AUC")
        return auc if metric == "ROC-AUC" else ap
    g = _groups(y, s, w)
    if g.tps[-1] <= 0 or g.fps[-1] <= 0:
        warn_undefined(metric, f"{what} has a single class once zero weights are left out", 4)
        return float("nan")
    return _auc_from_groups(g) if metric == "ROC-AUC" else _ap_from_groups(g)


def _check_average(average) -> None:
    check_choice("average", average, _AVERAGES, expected='"macro", "weighted" or None')


def _check_classes_present(t: Targets, y_true, labels) -> None:
    """As scikit-learn: 1-d multiclass labels must hold every score column's class unless `labels` lists them."""
    if t.kind != "multiclass" or labels is not None or np.ndim(y_true) != 1:
        return
    absent = np.flatnonzero(~t.y.any(axis=0))
    if absent.size:
        k = t.score.shape[1]
        raise _error(
            "y_true",
            f"labels without class(es) {absent.tolist()} for {k} score columns",
            f"every class 0..{k - 1} present in y_true",
            hint="Pass `labels` (one label per score column) to score a class absent from y_true: its AUC is then NaN.",
        )


def _averaged(metric: str, t: Targets, average):
    if t.kind == "binary":
        return _binary_metric(metric, t.y, t.score, t.weight, "y_true")
    k = t.score.shape[1]
    per_class = np.array(
        [
            _binary_metric(metric, t.y[:, c], t.score[:, c], t.weight, f"y_true for class {t.classes[c]!r}")
            for c in range(k)
        ]
    )
    return _class_average(per_class, t.y, t.weight, average)


def _class_average(per_class, y: np.ndarray, weight, average: Optional[str]):
    """Average one-vs-rest values ``per_class`` (shape ``(k,)``) over the classes of ``y``.

    The one home of class averaging (``roc_auc``, ``pr_auc`` and ``AUCTracker``).
    ``y`` is the ``(n, k)`` indicator matrix, ``weight`` the sample weights or
    ``None``. ``"macro"``: the plain mean (NaN when a class is undefined);
    ``"weighted"``: weighted by support, as scikit-learn, classes without support
    weighing nothing (0.0 when no class has any); ``None``: ``per_class`` itself.
    """
    per_class = np.asarray(per_class, dtype=np.float64)
    if average is None:
        return per_class
    if average == "macro":
        return float(np.mean(per_class))
    if weight is None:
        support = np.count_nonzero(y, axis=0).astype(np.float64)
    else:
        support = y.T.astype(np.float64) @ weight
    if support.sum() == 0:
        return 0.0
    per_class = np.where(support == 0, 0.0, per_class)
    return float(np.average(per_class, weights=support))


def roc_auc(y_true, y_score, *, sample_weight=None, average: Optional[str] = "macro", labels: Sequence | None = None):
    """Exact area under the ROC curve (ties count one half), as scikit-learn's ``roc_auc_score``.

    Args:
        y_true: labels, shape ``(n_samples,)`` (binary: two distinct values, the
            larger or ``True`` is positive; multiclass: column indices
            ``0..n_classes-1``), or an indicator matrix ``(n_samples, n_classes)``
            (one-hot or multilabel).
        y_score: scores, shape ``(n_samples,)`` or ``(n_samples, 1)`` for binary,
            ``(n_samples, n_classes)`` otherwise. Probabilities or logits: only
            the order matters.
        sample_weight: ``(n_samples,)`` non-negative weights. Defaults to ``None``.
        average: for several classes (one-vs-rest): ``"macro"`` (mean over
            classes), ``"weighted"`` (mean weighted by class support) or ``None``
            (one value per class). Ignored for binary. Defaults to ``"macro"``.
        labels: the class of each score column for multiclass ``y_true``.
            Defaults to ``None`` (column indices).

    Returns:
        A float, or an array of shape ``(n_classes,)`` when ``average=None``.
        ``nan`` (with an :class:`UndefinedMetricWarning`) when the labels (of a
        class, for one-vs-rest) hold a single class.

    Raises:
        DataError: NaN or infinite scores (the message counts them), lengths that
            differ, labels that do not match the score columns, empty input,
            bytes labels, a single label other than 0, -1 (negative) or 1
            (positive), or 1-d multiclass labels missing a class of the score
            columns when ``labels`` is not given (as scikit-learn).
        KerafineError: an unknown ``average``.

    Example:

    >>> roc_auc([0, 1, 1, 0], [-2.0, 3.1, 0.5, 0.5])
    0.875
    >>> roc_auc([0, 1, 2, 1], [[.8, .1, .1], [.2, .7, .1], [.1, .2, .7], [.3, .4, .3]], average=None)
    array([1., 1., 1.])
    """
    _check_average(average)
    t = check_targets(y_true, y_score, sample_weight, labels)
    _check_classes_present(t, y_true, labels)
    return _averaged("ROC-AUC", t, average)


def pr_auc(y_true, y_score, *, sample_weight=None, average: Optional[str] = "macro", labels: Sequence | None = None):
    """Area under the precision-recall curve as average precision (scikit-learn's ``average_precision_score``).

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds, which
    is exact (no trapezoidal interpolation, which is optimistic for PR curves).

    Args:
        y_true: labels, as for :func:`roc_auc`.
        y_score: scores, as for :func:`roc_auc`.
        sample_weight: ``(n_samples,)`` non-negative weights. Defaults to ``None``.
        average: ``"macro"``, ``"weighted"`` or ``None``, as for :func:`roc_auc`.
            Defaults to ``"macro"``.
        labels: the class of each score column. Defaults to ``None``.

    Returns:
        A float, or an array of shape ``(n_classes,)`` when ``average=None``.
        ``nan`` with an :class:`UndefinedMetricWarning` when a class has no
        positive or no negative (scikit-learn returns 0.0 with no positive and
        1.0 with no negative; neither says anything about the model).

    Raises:
        DataError: as for :func:`roc_auc`.
        KerafineError: an unknown ``average``.

    Example:

    >>> round(pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.8333
    """
    _check_average(average)
    t = check_targets(y_true, y_score, sample_weight, labels)
    _check_classes_present(t, y_true, labels)
    return _averaged("PR-AUC", t, average)


# ---------------------------------------------------------------- DeLong


@dataclasses.dataclass(frozen=True)
class AUCInterval:
    """ROC-AUC with its DeLong standard error and confidence interval.

    Attributes:
        auc: the ROC-AUC.
        lower: lower bound of the interval (clipped to [0, 1]).
        upper: upper bound of the interval (clipped to [0, 1]).
        std_error: DeLong standard error of the AUC.
        level: confidence level, e.g. 0.95.
    """

    auc: float
    lower: float
    upper: float
    std_error: float
    level: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _delong(g: _Groups) -> tuple[float, float]:
    """(AUC, variance) from the grouped cumulative weights.

    DeLong's placement values are constant within a tie group, so the fast
    algorithm of Sun & Xu (2014) reduces to sums over groups: for a positive
    at threshold k, ``V10 = (F - (fps_k + fps_{k-1}) / 2) / F`` (the share of
    negatives below it, ties one half); for a negative,
    ``V01 = (tps_k + tps_{k-1}) / (2 T)``.

    With weights, the variance is the linearisation (influence function) of the
    weighted two-sample U-statistic, ``sum_i w_i^2 (V10_i - AUC)^2 / T^2 * m/(m-1)``
    plus the same for negatives, i.e. weights are treated as sampling
    (importance) weights. With equal weights it is exactly DeLong's
    ``S10 / m + S01 / n``.
    """
    T, F = g.tps[-1], g.fps[-1]
    if T <= 0 or F <= 0:
        return float("nan"), float("nan")
    auc = _auc_from_groups(g)
    if g.n_pos < 2 or g.n_neg < 2:
        return auc, float("nan")
    v10 = (F - 0.5 * (g.fps + _prev(g.fps))) / F
    v01 = 0.5 * (g.tps + _prev(g.tps)) / T
    q_pos = g.tps2 - _prev(g.tps2)  # sum of squared weights of the positives of each group
    q_neg = g.fps2 - _prev(g.fps2)
    var_pos = np.dot(q_pos, (v10 - auc) ** 2) / (T * T) * g.n_pos / (g.n_pos - 1)
    var_neg = np.dot(q_neg, (v01 - auc) ** 2) / (F * F) * g.n_neg / (g.n_neg - 1)
    return auc, float(var_pos + var_neg)


def _check_level(level) -> None:
    check_number(
        "level",
        level,
        minimum=0,
        maximum=1,
        min_inclusive=False,
        max_inclusive=False,
        expected="a float strictly between 0 and 1, e.g. 0.95",
    )


def _interval(auc: float, var: float, level: float) -> AUCInterval:
    se = float(np.sqrt(var)) if np.isfinite(var) else float("nan")
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2.0)
    if np.isfinite(se):
        lower, upper = max(0.0, auc - z * se), min(1.0, auc + z * se)
    else:
        lower = upper = float("nan")
    return AUCInterval(float(auc), float(lower), float(upper), se, float(level))


def roc_auc_ci(y_true, y_score, *, sample_weight=None, level: float = 0.95) -> AUCInterval:
    """Binary ROC-AUC with a DeLong confidence interval (fast algorithm of Sun & Xu, 2014).

    The interval is ``auc +/- z * se`` with DeLong's (1988) nonparametric
    standard error, clipped to [0, 1], as pROC's ``ci.auc(method="delong")``.
    Cost: one sort, O(n log n).

    Args:
        y_true: binary labels, shape ``(n_samples,)``.
        y_score: scores, shape ``(n_samples,)`` or ``(n_samples, 1)``.
        sample_weight: ``(n_samples,)`` non-negative weights, treated as
            sampling weights (see Notes). Defaults to ``None``.
        level: confidence level. Defaults to 0.95.

    Returns:
        :class:`AUCInterval`. Single-class labels: all fields ``nan`` (with a
        warning). Fewer than two samples of a class: ``auc`` set, the rest ``nan``.

    Raises:
        DataError: as for :func:`roc_auc`, or scores for several classes.
        KerafineError: ``level`` not in (0, 1).

    Notes:
        DeLong's variance is defined for unweighted samples. With weights, the
        variance used is the influence-function (linearisation) variance of the
        weighted AUC, ``sum_i w_i^2 (V10_i - AUC)^2 / W_pos^2`` (and likewise
        for negatives) with the small-sample factor ``m / (m - 1)``: weights are
        sampling weights (a row of weight 2 is one observation that counts
        twice, not two independent observations). It reduces exactly to
        DeLong's formula for equal weights, is unchanged when all weights are
        scaled, and agrees with a weighted bootstrap (see the tests).

    Example:

    >>> ci = roc_auc_ci([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.7])
    >>> round(ci.auc, 4), round(ci.lower, 4), round(ci.upper, 4)
    (0.8889, 0.5809, 1.0)
    """
    _check_level(level)
    t = check_targets(y_true, y_score, sample_weight)
    if t.kind != "binary":
        raise invalid_argument(
            "y_score",
            f"scores of shape {tuple(np.shape(y_score))}",
            "1-d scores of a binary problem",
            hint="For several classes, compute an interval per class from its column.",
        )
    n_pos = int(np.count_nonzero(t.y))
    if n_pos in (0, t.y.size):
        warn_undefined("ROC-AUC", "y_true has a single class", 3)
        nan = float("nan")
        return AUCInterval(nan, nan, nan, nan, float(level))
    g = _groups(t.y, t.score, t.weight, squares=True)
    auc, var = _delong(g)
    return _interval(auc, var, float(level))


# ---------------------------------------------------------------- curves


def _binary_targets(y_true, y_score, sample_weight, function: str) -> Targets:
    t = check_targets(y_true, y_score, sample_weight)
    if t.kind != "binary":
        raise invalid_argument(
            "y_score",
            f"scores of shape {tuple(np.shape(y_score))}",
            f"1-d scores of a binary problem for {function}",
            hint="Pass one column and the matching one-vs-rest labels.",
        )
    return t


def roc_curve(y_true, y_score, *, sample_weight=None, drop_intermediate: bool = True):
    """ROC curve points, identical to ``sklearn.metrics.roc_curve``.

    Args:
        y_true: binary labels, shape ``(n_samples,)``.
        y_score: scores, shape ``(n_samples,)``.
        sample_weight: ``(n_samples,)`` weights. Defaults to ``None``.
        drop_intermediate: drop collinear points (the area is unchanged).
            Defaults to ``True``.

    Returns:
        ``(fpr, tpr, thresholds)``, increasing rates and decreasing thresholds
        (the first threshold is ``inf``). With a single class the undefined
        rate is ``nan`` (with a warning).

    Example:

    >>> fpr, tpr, thr = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    t = _binary_targets(y_true, y_score, sample_weight, "roc_curve")
    g = _groups(t.y, t.score, t.weight)
    fps, tps, thresholds = g.fps, g.tps, g.thresholds
    if drop_intermediate and fps.size > 2:
        keep = np.concatenate([[True], np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), [True]])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps = np.concatenate([[0.0], fps])
    tps = np.concatenate([[0.0], tps])
    thresholds = np.concatenate([[np.inf], thresholds.astype(np.float64)])
    if fps[-1] <= 0:
        warn_undefined("The false positive rate", "y_true has no negative", 3)
        fpr = np.full(fps.shape, np.nan)
    else:
        fpr = fps / fps[-1]
    if tps[-1] <= 0:
        warn_undefined("The true positive rate", "y_true has no positive", 3)
        tpr = np.full(tps.shape, np.nan)
    else:
        tpr = tps / tps[-1]
    return fpr, tpr, thresholds


def precision_recall_curve(y_true, y_score, *, sample_weight=None):
    """Precision-recall curve, identical to ``sklearn.metrics.precision_recall_curve``.

    Args:
        y_true: binary labels, shape ``(n_samples,)``.
        y_score: scores, shape ``(n_samples,)``.
        sample_weight: ``(n_samples,)`` weights. Defaults to ``None``.

    Returns:
        ``(precision, recall, thresholds)``: precision and recall have one more
        entry than thresholds (the final point ``(recall 0, precision 1)``);
        thresholds increase. With no positive, recall is ``nan`` (with a warning).

    Example:

    >>> p, r, t = precision_recall_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> p.round(3).tolist(), r.tolist(), t.tolist()
    ([0.5, 0.667, 0.5, 1.0, 1.0], [1.0, 1.0, 0.5, 0.5, 0.0], [0.1, 0.35, 0.4, 0.8])
    """
    t = _binary_targets(y_true, y_score, sample_weight, "precision_recall_curve")
    g = _groups(t.y, t.score, t.weight)
    ps = g.tps + g.fps
    precision = np.where(ps != 0, g.tps / np.where(ps != 0, ps, 1.0), 0.0)
    if g.tps[-1] <= 0:
        warn_undefined("Recall", "y_true has no positive", 3)
        recall = np.full(g.tps.shape, np.nan)
    else:
        recall = g.tps / g.tps[-1]
    return (
        np.concatenate([precision[::-1], [1.0]]),
        np.concatenate([recall[::-1], [0.0]]),
        g.thresholds[::-1].astype(np.float64),
    )


# ------------------------------------------------- shared by report/tracker


@dataclasses.dataclass(frozen=True)
class _BinarySummary:
    """Everything one sort of a binary problem gives: AUCs, DeLong interval, curve counts."""

    roc_auc: float
    pr_auc: float
    interval: Optional[AUCInterval]
    groups: Optional[_Groups]


def _binary_summary(y: np.ndarray, s: np.ndarray, w, level: Optional[float] = 0.95) -> _BinarySummary:
    """ROC-AUC, PR-AUC and (if ``level``) the DeLong interval from a single sort.

    ``y`` is a bool vector; a single class gives NaN everywhere (the caller warns).
    """
    nan = float("nan")
    n_pos = int(np.count_nonzero(y))
    if n_pos in (0, y.size):
        interval = None if level is None else AUCInterval(nan, nan, nan, nan, float(level))
        return _BinarySummary(nan, nan, interval, None)
    g = _groups(y, s, w, squares=level is not None)
    if g.tps[-1] <= 0 or g.fps[-1] <= 0:
        interval = None if level is None else AUCInterval(nan, nan, nan, nan, float(level))
        return _BinarySummary(nan, nan, interval, g)
    ap = _ap_from_groups(g)
    if level is None:
        return _BinarySummary(_auc_from_groups(g), ap, None, g)
    auc, var = _delong(g)
    return _BinarySummary(auc, ap, _interval(auc, var, float(level)), g)
