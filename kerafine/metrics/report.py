"""The evaluation report: every number needed to judge a classifier and pick its threshold.

:func:`classification_report` returns a frozen :class:`ClassificationReport`
holding accuracy, precision, recall, F1 and the confusion matrix at a chosen
threshold, ROC-AUC with its DeLong interval, PR-AUC (average precision) and
calibration (reliability curve and expected calibration error). It prints as a
table, renders as HTML in Jupyter, serialises to JSON and draws one matplotlib
figure. Pure numpy; matplotlib is imported only by :meth:`ClassificationReport.plot`.

Supported: binary problems (scores of shape ``(n,)`` or ``(n, 1)``, or the
``(n, 2)`` probabilities of a softmax(2) head, read as the probability of the
second class) with a threshold rule, and multiclass problems (scores ``(n, k)``, one label per row)
where the prediction is the arg-max and the AUCs are one-vs-rest macro
averages. Multilabel targets are not supported by the report (use
:func:`kerafine.metrics.roc_auc` per label).

Example:

>>> import numpy as np
>>> from kerafine.metrics import classification_report
>>> rng = np.random.default_rng(0)
>>> y = rng.random(200) < 0.3
>>> p = np.clip(0.3 + 0.4 * (y - 0.3) + rng.normal(0, 0.2, 200), 0, 1)
>>> report = classification_report(y, p, threshold="youden")
>>> round(report.roc_auc, 3), report.confusion_matrix.shape
(0.943, (2, 2))
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import warnings
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from kerafine._display import displayable
from kerafine.errors import DataError, check_int, check_number, invalid_argument
from kerafine.metrics._validation import Targets, check_targets, warn_undefined
from kerafine.metrics.ranking import AUCInterval, _binary_summary, _check_level, _Groups

__all__ = ["ClassificationReport", "Calibration", "classification_report"]

_RULES = ("f1", "youden")


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Reliability curve and expected calibration error (ECE).

    Binary: the predicted probability of the positive class against the
    observed fraction of positives. Multiclass: the top-label confidence
    against the observed accuracy. Bins are ``n_bins`` equal-width intervals of
    [0, 1], binned as ``sklearn.calibration.calibration_curve`` does; empty bins
    are left out.

    Attributes:
        mean_predicted: mean predicted probability in each non-empty bin.
        fraction_positive: observed frequency in each non-empty bin.
        counts: (weighted) number of samples in each non-empty bin.
        ece: ``sum_b counts_b / N * |fraction_positive_b - mean_predicted_b|``.
        n_bins: number of bins.
    """

    mean_predicted: np.ndarray
    fraction_positive: np.ndarray
    counts: np.ndarray
    ece: float
    n_bins: int


@displayable
@dataclasses.dataclass(frozen=True)
class ClassificationReport:
    """Result of :func:`classification_report` (frozen; see the module docstring).

    Attributes:
        kind: ``"binary"`` or ``"multiclass"``.
        classes: class labels (binary: ``[negative, positive]``).
        n_samples: number of samples.
        threshold: the decision threshold (binary; predictions are
            ``score >= threshold``), ``None`` for multiclass (arg-max).
        threshold_rule: ``"f1"``, ``"youden"``, ``"fixed"`` or ``"argmax"``.
        accuracy: (weighted) share of correct predictions.
        precision: of the positive class (binary) or macro average (multiclass).
        recall: likewise.
        f1: likewise.
        per_class: one dict per class: ``class``, ``precision``, ``recall``,
            ``f1``, ``support``.
        confusion_matrix: ``(n_classes, n_classes)``, rows are true classes,
            columns predicted (scikit-learn's layout); weighted if weights given.
        roc_auc: ROC-AUC (one-vs-rest macro for multiclass).
        roc_auc_interval: DeLong interval (binary), else ``None``.
        pr_auc: average precision (one-vs-rest macro for multiclass).
        calibration: :class:`Calibration`, or ``None`` when the scores are not
            probabilities (logits).
        roc_curve: ``(fpr, tpr, thresholds)`` (binary) or one such tuple per class.
        pr_curve: ``(precision, recall, thresholds)`` likewise.
        baseline_accuracy: (weighted) accuracy of always predicting the
            majority class; a model whose ``accuracy`` does not exceed it
            makes :func:`classification_report` warn.
        robustness: a robustness section (a
            :class:`kerafine.security.RobustnessCurve`, added by
            ``kerafine.evaluate(..., robustness=[...])``), else ``None``.
        membership: a membership-inference section (a
            :class:`kerafine.security.MembershipReport`), else ``None``.
        nonfinite_excluded: rows left out because their inputs held NaN/inf
            (``kerafine.evaluate(..., non_finite="exclude")``); not counted
            in ``n_samples``. Shown in the text, JSON and HTML when non-zero.
    """

    kind: str
    classes: list
    n_samples: int
    threshold: Optional[float]
    threshold_rule: str
    accuracy: float
    precision: float
    recall: float
    f1: float
    per_class: list
    confusion_matrix: np.ndarray
    roc_auc: float
    roc_auc_interval: Optional[AUCInterval]
    pr_auc: float
    calibration: Optional[Calibration]
    roc_curve: Any = dataclasses.field(repr=False, default=None)
    pr_curve: Any = dataclasses.field(repr=False, default=None)
    baseline_accuracy: Optional[float] = None
    # Optional sections (duck-typed: to_dict, __str__, _repr_html_, draw(ax)); built outside this
    # numpy-only module, by kerafine.security, so the metrics layer never imports Keras.
    robustness: Any = dataclasses.field(repr=False, default=None)
    membership: Any = dataclasses.field(repr=False, default=None)
    nonfinite_excluded: int = 0

    def _display(self):
        return f"ClassificationReport ({self.kind})", self._headline()

    def _sections(self) -> list:
        return [s for s in (self.robustness, self.membership) if s is not None]

    # ---------------------------------------------------------- export
    def to_dict(self, curves: bool = False) -> dict:
        """Plain Python values (lists, floats, ``None``); curves only if ``curves=True``.

        Args:
            curves: include the ROC and PR curve points (one per distinct score:
                large for big data sets). Defaults to ``False``.
        """
        out = {
            "kind": self.kind,
            "classes": [_plain(c) for c in self.classes],
            "n_samples": self.n_samples,
            "nonfinite_excluded": int(self.nonfinite_excluded),
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "accuracy": self.accuracy,
            "baseline_accuracy": self.baseline_accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "per_class": [{k: _plain(v) for k, v in row.items()} for row in self.per_class],
            "confusion_matrix": self.confusion_matrix.tolist(),
            "roc_auc": self.roc_auc,
            "roc_auc_interval": None if self.roc_auc_interval is None else self.roc_auc_interval.to_dict(),
            "pr_auc": self.pr_auc,
            "calibration": None
            if self.calibration is None
            else {
                "mean_predicted": self.calibration.mean_predicted.tolist(),
                "fraction_positive": self.calibration.fraction_positive.tolist(),
                "counts": self.calibration.counts.tolist(),
                "ece": self.calibration.ece,
                "n_bins": self.calibration.n_bins,
            },
        }
        if self.robustness is not None:
            out["robustness"] = self.robustness.to_dict()
        if self.membership is not None:
            out["membership"] = self.membership.to_dict()
        if curves:
            out["roc_curve"] = _curves_to_lists(self.roc_curve)
            out["pr_curve"] = _curves_to_lists(self.pr_curve)
        return out

    def to_json(self, path=None, curves: bool = False) -> str:
        """Strict JSON text (NaN and infinity become ``null``); also written atomically to ``path`` if given.

        Args:
            path: a file to write. Defaults to ``None`` (only return the text).
            curves: include the curve points. Defaults to ``False``.

        Returns:
            The JSON text.
        """
        text = json.dumps(_strict(self.to_dict(curves=curves)), indent=2, allow_nan=False)
        if path is not None:
            from kerafine._io import atomic_write_text

            atomic_write_text(path, text + "\n")
        return text

    # ---------------------------------------------------------- display
    def _headline(self) -> list[tuple[str, str]]:
        rows = [("samples", str(self.n_samples))]
        if self.nonfinite_excluded:
            rows.append(("excluded", f"{self.nonfinite_excluded} rows with NaN/inf inputs (not evaluated)"))
        if self.threshold is not None:
            rows.append(("threshold", f"{self.threshold:.6g} ({self.threshold_rule})"))
        else:
            rows.append(("prediction", "arg-max"))
        accuracy = _fmt(self.accuracy)
        if self.baseline_accuracy is not None:
            beats = self.accuracy > self.baseline_accuracy
            accuracy += f"  (majority-class baseline {_fmt(self.baseline_accuracy)}{'' if beats else ': NOT beaten'})"
        rows += [
            ("accuracy", accuracy),
            ("precision", _fmt(self.precision)),
            ("recall", _fmt(self.recall)),
            ("F1", _fmt(self.f1)),
        ]
        auc = _fmt(self.roc_auc)
        if self.roc_auc_interval is not None and math.isfinite(self.roc_auc_interval.lower):
            ci = self.roc_auc_interval
            auc += f"  [{_fmt(ci.lower)}, {_fmt(ci.upper)}] {ci.level:.0%} DeLong"
        rows.append(("ROC-AUC", auc))
        rows.append(("PR-AUC", _fmt(self.pr_auc)))
        if self.calibration is not None:
            rows.append(("ECE", f"{_fmt(self.calibration.ece)} ({self.calibration.n_bins} bins)"))
        else:
            rows.append(("ECE", "n/a (scores are not probabilities)"))
        return rows

    def __str__(self) -> str:
        rows = self._headline()
        width = max(len(k) for k, _ in rows)
        lines = [f"ClassificationReport ({self.kind})"]
        lines += [f"  {k:<{width}}  {v}" for k, v in rows]
        names = [str(c) for c in self.classes]
        cw = max(8, *(len(n) for n in names))
        lines.append("  confusion matrix (rows: true, columns: predicted)")
        lines.append("    " + " " * cw + "".join(f"{n:>{cw + 2}}" for n in names))
        for name, row in zip(names, self.confusion_matrix):
            lines.append("    " + f"{name:>{cw}}" + "".join(f"{_count(v):>{cw + 2}}" for v in row))
        if self.kind == "multiclass":
            lines.append("  per class: precision  recall  F1  support")
            for row in self.per_class:
                lines.append(
                    f"    {str(row['class']):>{cw}}  {_fmt(row['precision'])}  {_fmt(row['recall'])}  "
                    f"{_fmt(row['f1'])}  {_count(row['support'])}"
                )
        for section in self._sections():
            lines += ["  " + line for line in str(section).splitlines()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(
            f"<tr><th style='text-align:left'>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in self._headline()
        )
        names = [esc(str(c)) for c in self.classes]
        cm_head = "<tr><th>true \\ predicted</th>" + "".join(f"<th>{n}</th>" for n in names) + "</tr>"
        cm_rows = "".join(
            f"<tr><th>{n}</th>" + "".join(f"<td>{esc(_count(v))}</td>" for v in row) + "</tr>"
            for n, row in zip(names, self.confusion_matrix)
        )
        return (
            f"<div><b>ClassificationReport ({esc(self.kind)})</b>"
            f"<table>{head}</table><p>Confusion matrix</p><table>{cm_head}{cm_rows}</table>"
            + "".join(section._repr_html_() for section in self._sections())
            + "</div>"
        )

    def plot(self, figsize=(10, 8)):
        """One matplotlib figure: ROC curve, PR curve, reliability diagram, confusion matrix.

        With robustness or membership sections, a third row draws them.

        Args:
            figsize: figure size in inches. Defaults to ``(10, 8)``.

        Returns:
            The ``matplotlib.figure.Figure`` (not shown; call ``fig.savefig``
            or let Jupyter display it).
        """
        from matplotlib.figure import Figure

        sections = self._sections()
        if sections:  # one more row of panels: robustness curve, membership attacks' ROC
            figsize = (figsize[0], figsize[1] * 1.5)
        fig = Figure(figsize=figsize)
        axes = fig.subplots(3 if sections else 2, 2).ravel()
        ax_roc, ax_pr, ax_cal, ax_cm = axes[:4]
        for ax, section in zip(axes[4:], sections):
            section.draw(ax)
        for ax in axes[4 + len(sections) :]:
            ax.set_axis_off()
        _draw_roc(ax_roc, self.roc_curve, self.classes if self.kind == "multiclass" else None, self.roc_auc)
        prevalence = None
        if self.kind == "binary":
            cm = np.asarray(self.confusion_matrix, dtype=np.float64)
            prevalence = float(cm[1].sum() / cm.sum()) if cm.sum() > 0 else None
        _draw_pr(ax_pr, self.pr_curve, self.classes if self.kind == "multiclass" else None, self.pr_auc, prevalence)
        _draw_calibration(ax_cal, self.calibration)
        _draw_confusion(ax_cm, self.confusion_matrix, self.classes)
        fig.tight_layout()
        return fig


# ------------------------------------------------------------ drawing


def _draw_roc(ax, curve, classes=None, auc=None):
    curves = curve if classes is not None else [curve]
    labels = [str(c) for c in classes] if classes is not None else [None]
    for (fpr, tpr, _), label in zip(curves, labels):
        ax.plot(fpr, tpr, drawstyle="default", label=label)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    title = "ROC curve" if auc is None else f"ROC curve (AUC {_fmt(auc)})"
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    if classes is not None:
        ax.legend(fontsize="small")


def _draw_pr(ax, curve, classes=None, ap=None, prevalence=None):
    curves = curve if classes is not None else [curve]
    labels = [str(c) for c in classes] if classes is not None else [None]
    for (precision, recall, _), label in zip(curves, labels):
        ax.plot(recall, precision, drawstyle="steps-post", label=label)
    if prevalence is not None and np.isfinite(prevalence):
        # A classifier that ranks at random has precision equal to the positive rate.
        ax.axhline(prevalence, color="grey", linestyle=":", linewidth=1, label=f"no skill ({_fmt(prevalence)})")
    title = "Precision-recall" if ap is None else f"Precision-recall (AP {_fmt(ap)})"
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.01))
    if classes is not None or prevalence is not None:
        ax.legend(fontsize="small")


def _draw_calibration(ax, calibration):
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    if calibration is None:
        ax.text(0.5, 0.5, "scores are not probabilities", ha="center", va="center")
        ax.set(title="Calibration")
        return
    ax.plot(calibration.mean_predicted, calibration.fraction_positive, marker="o")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed frequency",
        title=f"Calibration (ECE {_fmt(calibration.ece)})",
        xlim=(0, 1),
        ylim=(0, 1),
    )


def _draw_confusion(ax, matrix, classes):
    ax.imshow(matrix, cmap="Blues")
    names = [str(c) for c in classes]
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    top = matrix.max() if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j,
                i,
                _count(matrix[i, j]),
                ha="center",
                va="center",
                color="white" if matrix[i, j] > top / 2 else "black",
            )
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")


# ------------------------------------------------------------ helpers


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.4f}"


def _count(value) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.4g}"


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def _strict(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, np.generic):
        return _strict(value.item())
    return value


def _curves_to_lists(curves):
    if curves is None:
        return None
    if isinstance(curves, tuple):
        return [np.asarray(a).tolist() for a in curves]
    return [[np.asarray(a).tolist() for a in c] for c in curves]


def _roc_points(g: _Groups):
    fps = np.concatenate([[0.0], g.fps])
    tps = np.concatenate([[0.0], g.tps])
    return fps / fps[-1], tps / tps[-1], np.concatenate([[np.inf], g.thresholds.astype(np.float64)])


def _pr_points(g: _Groups):
    ps = g.tps + g.fps
    precision = np.where(ps != 0, g.tps / np.where(ps != 0, ps, 1.0), 0.0)
    recall = g.tps / g.tps[-1]
    return (
        np.concatenate([precision[::-1], [1.0]]),
        np.concatenate([recall[::-1], [0.0]]),
        g.thresholds[::-1].astype(np.float64),
    )


def _calibration(prob: np.ndarray, outcome: np.ndarray, w, n_bins: int) -> Calibration:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Same binning as sklearn.calibration.calibration_curve(strategy="uniform").
    ids = np.searchsorted(edges[1:-1], prob)
    weight = np.ones(prob.size) if w is None else w
    counts = np.bincount(ids, weights=weight, minlength=n_bins)
    sum_prob = np.bincount(ids, weights=weight * prob, minlength=n_bins)
    sum_true = np.bincount(ids, weights=weight * outcome, minlength=n_bins)
    keep = counts > 0
    mean_pred = sum_prob[keep] / counts[keep]
    frac = sum_true[keep] / counts[keep]
    ece = float(np.sum(counts[keep] * np.abs(frac - mean_pred)) / counts.sum())
    return Calibration(mean_pred, frac, counts[keep], ece, n_bins)


def _safe_div(a: float, b: float) -> float:
    return float(a / b) if b > 0 else 0.0


def _prf(tp: float, fp: float, fn: float):
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    return precision, recall, f1


def _check_threshold(threshold):
    if isinstance(threshold, str):
        if threshold not in _RULES:
            raise invalid_argument("threshold", threshold, '"f1", "youden" or a finite number')
        return
    check_number("threshold", threshold, expected='"f1", "youden" or a finite number')


def _choose_threshold(g: _Groups, rule) -> float:
    T, F = g.tps[-1], g.fps[-1]
    if rule == "f1":
        # F1 = 2 TP / (TP + FP + P) at each distinct score taken as threshold.
        score = 2.0 * g.tps / (g.tps + g.fps + T)
    else:
        score = g.tps / T - g.fps / F
    # argmax keeps the first, i.e. the highest, threshold among equals.
    return float(g.thresholds[int(np.argmax(score))])


# ------------------------------------------------------------ main entry


def classification_report(
    y_true,
    y_score,
    *,
    threshold="f1",
    sample_weight=None,
    level: float = 0.95,
    n_bins: int = 10,
    labels: Sequence | None = None,
) -> ClassificationReport:
    """Evaluate scores against labels: threshold metrics, AUCs with CI, calibration.

    Args:
        y_true: labels, shape ``(n_samples,)`` (binary: two values, the larger
            or ``True`` positive; multiclass: column indices or ``labels``), or a
            one-hot matrix ``(n_samples, n_classes)``.
        y_score: binary: scores ``(n_samples,)`` or ``(n_samples, 1)``
            (probabilities or logits), or softmax probabilities
            ``(n_samples, 2)`` (evaluated as binary on column 1, with the DeLong
            interval); multiclass: ``(n_samples, n_classes)``.
        threshold: binary only: ``"f1"`` (the score threshold maximising F1),
            ``"youden"`` (maximising sensitivity + specificity - 1) or a number
            (predict positive when ``score >= threshold``). Ignored for
            multiclass (arg-max). Defaults to ``"f1"``.
        sample_weight: ``(n_samples,)`` non-negative weights. Defaults to ``None``.
        level: confidence level of the DeLong interval. Defaults to 0.95.
        n_bins: number of equal-width calibration bins. Defaults to 10.
        labels: class of each score column (multiclass). Defaults to ``None``.

    Returns:
        :class:`ClassificationReport`. Warns (``UserWarning``) when the
        accuracy does not beat the majority-class baseline.

    Raises:
        DataError: as :func:`kerafine.metrics.roc_auc` (NaN scores, lengths,
            columns that do not match the classes, empty input), or a multilabel
            target.
        KerafineError: an unknown ``threshold`` rule, ``level`` outside (0, 1),
            ``n_bins`` < 1.

    Example:

    >>> r = classification_report([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], threshold=0.5)
    >>> r.accuracy, r.confusion_matrix.tolist()
    (0.75, [[2, 0], [1, 1]])
    """
    _check_threshold(threshold)
    _check_level(level)
    check_int("n_bins", n_bins, minimum=1)
    y_true, y_score, classes = _softmax_binary(y_true, y_score, labels)
    if classes is not None:
        labels = None
    t = check_targets(y_true, y_score, sample_weight, labels)
    if t.kind == "multilabel":
        raise invalid_argument(
            "y_true",
            "a multilabel indicator matrix",
            "binary labels or one label per row (multiclass)",
            hint="For multilabel targets use kerafine.metrics.roc_auc / pr_auc with average=None.",
            error=DataError,
        )
    if t.kind == "binary":
        report = _binary_report(t, y_true, threshold, float(level), int(n_bins))
        if classes is not None:
            per_class = [dict(row, **{"class": classes[int(bool(row["class"]))]}) for row in report.per_class]
            report = dataclasses.replace(
                report, classes=[classes[int(bool(c))] for c in report.classes], per_class=per_class
            )
    else:
        report = _multiclass_report(t, float(level), int(n_bins))
    report = dataclasses.replace(report, baseline_accuracy=_majority_share(report.confusion_matrix))
    if report.confusion_matrix.shape[0] > 1 and not report.accuracy > report.baseline_accuracy:
        warnings.warn(
            f"Accuracy {_fmt(report.accuracy)} does not beat the majority-class baseline "
            f"{_fmt(report.baseline_accuracy)} (always predicting the most frequent class)"
            + (
                f" at threshold {report.threshold:.6g} ({report.threshold_rule})"
                if report.threshold is not None
                else ""
            )
            + "; look at ROC-AUC / PR-AUC, or choose another threshold.",
            UserWarning,
            stacklevel=2,
        )
    return report


def _majority_share(confusion: np.ndarray) -> float:
    support = np.asarray(confusion, dtype=np.float64).sum(axis=1)
    return float(support.max() / support.sum()) if support.sum() > 0 else math.nan


def _softmax_binary(y_true, y_score, labels):
    """A softmax(2) head on binary labels: the probability of class 1 and 0/1 labels.

    Returns ``(y_true, y_score, classes)``; ``classes`` is ``None`` when the
    input is not that case and is passed on unchanged.
    """
    s = np.asarray(y_score)
    if s.ndim != 2 or s.shape[1] != 2 or s.dtype.kind not in "fiu" or not np.all(np.isfinite(s)):
        return y_true, y_score, None
    if s.min() < 0.0 or s.max() > 1.0 or not np.allclose(s.sum(axis=1), 1.0, atol=1e-3):
        return y_true, y_score, None  # two logits or two independent scores: left as they are
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] == 2:
        if not (np.isin(y, (0, 1)).all() and np.all(y.sum(axis=1) == 1)):
            return y_true, y_score, None  # multilabel: refused downstream
        y = y[:, 1]
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != s.shape[0]:
        return y_true, y_score, None
    classes = [0, 1] if labels is None else list(labels)
    if len(classes) != 2:
        return y_true, y_score, None
    values = set(np.unique(y).tolist())
    if not values <= set(classes):
        return y_true, y_score, None  # labels outside the columns: the multiclass checks say so
    return (y == classes[1]), s[:, 1], classes


def _binary_report(t: Targets, y_true, threshold, level: float, n_bins: int) -> ClassificationReport:
    y, s, w = t.y, t.score, t.weight
    classes = t.classes
    if classes is None:
        value = np.asarray(y_true).ravel()[0]
        classes = [_plain(value)]
    summary = _binary_summary(y, s, w, level)
    g = summary.groups
    single = g is None or g.tps[-1] <= 0 or g.fps[-1] <= 0
    if single:
        warn_undefined("ROC-AUC and PR-AUC", "y_true has a single class", 4)
    if isinstance(threshold, str):
        if single:
            raise invalid_argument(
                "threshold",
                threshold,
                "a number when y_true has a single class",
                hint=f'The "{threshold}" rule needs both classes to choose a threshold.',
            )
        chosen, rule = _choose_threshold(g, threshold), threshold
    else:
        chosen, rule = float(threshold), "fixed"
    pred = s >= chosen
    weight = np.ones(s.size) if w is None else w
    tp = float(np.sum(weight[y & pred]))
    fp = float(np.sum(weight[~y & pred]))
    fn = float(np.sum(weight[y & ~pred]))
    tn = float(np.sum(weight[~y & ~pred]))
    cm = np.array([[tn, fp], [fn, tp]])
    if w is None:
        cm = cm.astype(np.int64)
    precision, recall, f1 = _prf(tp, fp, fn)
    neg_p, neg_r, neg_f = _prf(tn, fn, fp)
    per_class = [
        {"class": classes[0], "precision": neg_p, "recall": neg_r, "f1": neg_f, "support": tn + fp},
        {"class": classes[-1], "precision": precision, "recall": recall, "f1": f1, "support": tp + fn},
    ]
    if len(classes) == 1:
        per_class = per_class[:1] if not bool(y[0]) else per_class[1:]
        cm = cm[:1, :1] if not bool(y[0]) else cm[1:, 1:]
    probabilities = bool(s.min() >= 0.0 and s.max() <= 1.0)
    calibration = _calibration(s.astype(np.float64), y.astype(np.float64), w, n_bins) if probabilities else None
    roc_pts = None if single else _roc_points(g)
    pr_pts = None if single else _pr_points(g)
    return ClassificationReport(
        kind="binary",
        classes=list(classes),
        n_samples=int(s.size),
        threshold=chosen,
        threshold_rule=rule,
        accuracy=_safe_div(tp + tn, tp + tn + fp + fn),
        precision=precision,
        recall=recall,
        f1=f1,
        per_class=per_class,
        confusion_matrix=cm,
        roc_auc=summary.roc_auc,
        roc_auc_interval=summary.interval,
        pr_auc=summary.pr_auc,
        calibration=calibration,
        roc_curve=roc_pts,
        pr_curve=pr_pts,
    )


def _multiclass_report(t: Targets, level: float, n_bins: int) -> ClassificationReport:
    Y, S, w = t.y, t.score, t.weight
    n, k = S.shape
    true_idx = np.argmax(Y, axis=1)
    pred_idx = np.argmax(S, axis=1)
    weight = np.ones(n) if w is None else w
    cm = np.zeros((k, k))
    np.add.at(cm, (true_idx, pred_idx), weight)
    if w is None:
        cm = cm.astype(np.int64)
    per_class = []
    aucs, aps, roc_curves, pr_curves = [], [], [], []
    undefined = []
    for c in range(k):
        tp = float(cm[c, c])
        fp = float(cm[:, c].sum() - tp)
        fn = float(cm[c, :].sum() - tp)
        p, r, f = _prf(tp, fp, fn)
        per_class.append(
            {"class": t.classes[c], "precision": p, "recall": r, "f1": f, "support": float(cm[c, :].sum())}
        )
        summary = _binary_summary(Y[:, c], S[:, c], w, None)
        aucs.append(summary.roc_auc)
        aps.append(summary.pr_auc)
        g = summary.groups
        if g is None or g.tps[-1] <= 0 or g.fps[-1] <= 0:
            undefined.append(t.classes[c])
            roc_curves.append((np.array([np.nan]), np.array([np.nan]), np.array([np.inf])))
            pr_curves.append((np.array([np.nan]), np.array([np.nan]), np.array([])))
        else:
            roc_curves.append(_roc_points(g))
            pr_curves.append(_pr_points(g))
    if undefined:
        warn_undefined("The one-vs-rest ROC-AUC and PR-AUC", f"classes {undefined} have a single class in y_true", 4)
    conf = S.max(axis=1)
    probabilities = bool(S.min() >= 0.0 and S.max() <= 1.0 and np.allclose(S.sum(axis=1), 1.0, atol=1e-3))
    calibration = (
        _calibration(conf.astype(np.float64), (true_idx == pred_idx).astype(np.float64), w, n_bins)
        if probabilities
        else None
    )
    return ClassificationReport(
        kind="multiclass",
        classes=list(t.classes),
        n_samples=int(n),
        threshold=None,
        threshold_rule="argmax",
        accuracy=float(np.trace(cm) / cm.sum()),
        precision=float(np.mean([row["precision"] for row in per_class])),
        recall=float(np.mean([row["recall"] for row in per_class])),
        f1=float(np.mean([row["f1"] for row in per_class])),
        per_class=per_class,
        confusion_matrix=cm,
        roc_auc=float(np.mean(aucs)),
        roc_auc_interval=None,
        pr_auc=float(np.mean(aps)),
        calibration=calibration,
        roc_curve=roc_curves,
        pr_curve=pr_curves,
    )
