"""Exact classification metrics in pure numpy: no Keras or TensorFlow import.

``roc_auc`` and ``pr_auc`` equal scikit-learn's ``roc_auc_score`` and
``average_precision_score`` (ties, weights, one-vs-rest multiclass,
multilabel) and are faster; ``roc_auc_ci`` adds a DeLong confidence interval;
``roc_auc_compare`` is the paired DeLong test of two models on the same rows;
``classification_report`` gathers everything needed to pick a threshold.

Example:

>>> from kerafine import metrics
>>> metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
0.75
"""

from kerafine.metrics._validation import UndefinedMetricWarning
from kerafine.metrics.comparison import AUCComparison, roc_auc_compare
from kerafine.metrics.ranking import (
    AUCInterval,
    pr_auc,
    precision_recall_curve,
    roc_auc,
    roc_auc_ci,
    roc_curve,
)
from kerafine.metrics.report import Calibration, ClassificationReport, classification_report

__all__ = [
    "AUCComparison",
    "AUCInterval",
    "Calibration",
    "ClassificationReport",
    "classification_report",
    "UndefinedMetricWarning",
    "pr_auc",
    "precision_recall_curve",
    "roc_auc",
    "roc_auc_ci",
    "roc_auc_compare",
    "roc_curve",
]
