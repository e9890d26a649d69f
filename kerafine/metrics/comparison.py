"""Paired comparison of two ROC-AUCs on the same rows: DeLong's test.

Pure numpy (no Keras, no TensorFlow).

Two models scored on the same test rows give correlated AUC estimates; a test
that treats them as independent is far too conservative. DeLong, DeLong and
Clarke-Pearson (1988) estimate the covariance of the two AUCs from the
*placement values* of each row (the share of the other class ranked below it,
ties one half); the difference is then approximately normal. The placement
values come from mid-ranks, so the whole test is one sort per model (the fast
algorithm of Sun & Xu, 2014), O(n log n).

Example:

>>> from kerafine.metrics import roc_auc_compare
>>> y = [0, 0, 0, 0, 1, 1, 1, 1]
>>> a = [0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.8, 0.9]
>>> b = [0.3, 0.1, 0.6, 0.2, 0.4, 0.5, 0.7, 0.9]
>>> r = roc_auc_compare(y, a, b)
>>> round(r.auc_a, 4), round(r.auc_b, 4), round(r.p_value, 3)
(0.9375, 0.875, 0.712)
"""

from __future__ import annotations

import dataclasses
import math
import statistics

import numpy as np

from kerafine._display import displayable
from kerafine.errors import DataError, invalid_argument
from kerafine.metrics._validation import check_scores, check_targets, warn_undefined

__all__ = ["AUCComparison", "roc_auc_compare"]


@displayable
@dataclasses.dataclass(frozen=True)
class AUCComparison:
    """Result of :func:`roc_auc_compare`: model B against model A on the same rows.

    Attributes:
        auc_a: ROC-AUC of model A.
        auc_b: ROC-AUC of model B.
        difference: ``auc_b - auc_a``.
        std_error: DeLong standard error of the difference (accounts for the
            correlation of the two models on the same rows).
        z: ``difference / std_error``.
        p_value: p-value of the test of ``auc_a == auc_b`` (two-sided, or
            one-sided as asked).
        lower: lower bound of the confidence interval of the difference.
        upper: upper bound of the confidence interval of the difference.
        level: confidence level of the interval.
        alternative: ``"two-sided"``, ``"greater"`` (B better) or ``"less"``.
        n_pos: positive rows.
        n_neg: negative rows.
    """

    auc_a: float
    auc_b: float
    difference: float
    std_error: float
    z: float
    p_value: float
    lower: float
    upper: float
    level: float
    alternative: str
    n_pos: int
    n_neg: int

    def _display(self):
        return "AUCComparison (paired DeLong)", [
            ("ROC-AUC", f"a {self.auc_a:.4f}  b {self.auc_b:.4f}  difference {self.difference:+.4f}"),
            (f"{self.level:.0%} interval", f"[{self.lower:.4f}, {self.upper:.4f}]"),
            ("p-value", f"{self.p_value:.3g} ({self.alternative}), z {self.z:.3f}"),
            ("samples", f"{self.n_pos} positive, {self.n_neg} negative"),
        ]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` in increasing order, tied values sharing their mean rank."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    # Start and end (exclusive) of each run of equal values in the sorted array.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], xs.size]
    mean_rank = 0.5 * (starts + 1 + ends)  # mean of ranks starts+1 .. ends
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(AUC, V10 per positive, V01 per negative) from mid-ranks (Sun & Xu, 2014)."""
    m, n = pos.size, neg.size
    r_all = _midranks(np.concatenate([pos, neg]))
    r_pos, r_neg = _midranks(pos), _midranks(neg)
    # Rank among all minus rank among its own class = negatives below it (ties one half).
    v10 = (r_all[:m] - r_pos) / n
    v01 = 1.0 - (r_all[m:] - r_neg) / m
    return float(v10.mean()), v10, v01


def _check_alternative(alternative) -> None:
    if alternative not in ("two-sided", "greater", "less"):
        raise invalid_argument("alternative", alternative, '"two-sided", "greater" or "less"')


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def roc_auc_compare(y_true, score_a, score_b, *, level: float = 0.95, alternative: str = "two-sided") -> AUCComparison:
    """Paired DeLong test of two ROC-AUCs measured on the same rows.

    Tests whether model B (``score_b``) ranks the rows better than model A
    (``score_a``), with DeLong's (1988) nonparametric covariance of the two
    AUCs, computed by the fast mid-rank algorithm of Sun & Xu (2014). Ties
    count one half, as in :func:`kerafine.metrics.roc_auc`. This is pROC's
    ``roc.test(method="delong", paired=TRUE)``.

    Args:
        y_true: binary labels, shape ``(n_samples,)``.
        score_a: scores of model A (e.g. the current model), shape
            ``(n_samples,)`` or ``(n_samples, 1)``.
        score_b: scores of model B (e.g. a challenger), same shape.
        level: confidence level of the interval of ``auc_b - auc_a``.
            Defaults to 0.95.
        alternative: ``"two-sided"`` (the AUCs differ), ``"greater"`` (B's AUC
            is larger) or ``"less"``. Defaults to ``"two-sided"``.

    Returns:
        :class:`AUCComparison`. When the two score vectors rank the rows
        identically the difference and its standard error are 0 and the
        p-value is 1. Labels of a single class: every number ``nan`` (with a
        warning).

    Raises:
        DataError: scores of other lengths or shapes than the labels, NaN or
            infinite scores, or fewer than two rows of a class.
        KerafineError: ``level`` not in (0, 1), an unknown ``alternative``.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 500)
    >>> good, weak = y + rng.normal(size=500), y + rng.normal(scale=3, size=500)
    >>> r = roc_auc_compare(y, weak, good)
    >>> r.difference > 0, r.p_value < 0.001
    (True, True)
    """
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise invalid_argument("level", level, "a float strictly between 0 and 1, e.g. 0.95")
    _check_alternative(alternative)
    # Scores checked under their own names first, so a NaN says which model produced it.
    ta = check_targets(y_true, check_scores(score_a, "score_a"))
    tb = check_targets(y_true, check_scores(score_b, "score_b"))
    for name, t, raw in (("score_a", ta, score_a), ("score_b", tb, score_b)):
        if t.kind != "binary":
            raise invalid_argument(
                name, f"scores of shape {tuple(np.shape(raw))}", "1-d scores of a binary problem", error=DataError
            )
    y = ta.y
    m = int(np.count_nonzero(y))
    n = int(y.size - m)
    nan = float("nan")
    if m == 0 or n == 0:
        warn_undefined("The paired ROC-AUC test", "y_true has a single class", 3)
        return AUCComparison(nan, nan, nan, nan, nan, nan, nan, nan, float(level), alternative, m, n)
    if m < 2 or n < 2:
        raise DataError(
            f"Invalid value for argument `y_true`: received {m} positive and {n} negative rows; "
            "expected at least 2 of each (DeLong's variance needs them)."
        )
    a = ta.score.astype(np.float64)
    b = tb.score.astype(np.float64)
    auc_a, v10_a, v01_a = _placements(a[y], a[~y])
    auc_b, v10_b, v01_b = _placements(b[y], b[~y])
    s10 = np.cov(np.vstack([v10_a, v10_b]))  # ddof=1, as DeLong
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    var = max(float(var), 0.0)  # rounding can leave -1e-18 for identical rankings
    diff = auc_b - auc_a
    se = math.sqrt(var)
    zq = statistics.NormalDist().inv_cdf(0.5 + level / 2.0)
    if se == 0.0:
        # No spread of the placements: equal AUCs are no evidence of a difference; unequal ones
        # (e.g. a perfect model against a constant one) are certain.
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0 else float({"two-sided": 0.0, "greater": diff < 0, "less": diff > 0}[alternative])
    else:
        z = diff / se
        p = {"two-sided": min(1.0, 2.0 * _normal_sf(abs(z))), "greater": _normal_sf(z), "less": _normal_sf(-z)}[
            alternative
        ]
    return AUCComparison(
        float(auc_a),
        float(auc_b),
        float(diff),
        se,
        float(z),
        float(p),
        float(diff - zq * se),
        float(diff + zq * se),
        float(level),
        alternative,
        m,
        n,
    )
