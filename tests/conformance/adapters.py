"""kerafine under the anchors' names and signatures, and nothing more.

An adapter only renames: it forwards the arguments kerafine has, and raises
:class:`OptionNotOffered` for an option kerafine does not have when the test
sets it to anything but the anchor's default (so such a test fails for that
reason, which ``differences.py`` then lists). It never computes a result
itself. ``kerafine.callbacks.EarlyStopping`` takes Keras's arguments as they are
and needs no adapter; it is imported only by the Keras loader (this module does
not import TensorFlow).
"""

from __future__ import annotations

from kerafine.drift import StreamDriftDetector
from kerafine.metrics import (
    UndefinedMetricWarning,
    pr_auc,
    roc_auc,
)
from kerafine.metrics import (
    precision_recall_curve as _precision_recall_curve,
)
from kerafine.metrics import (
    roc_curve as _roc_curve,
)
from tests.conformance._anchors import OptionNotOffered

__all__ = ["UndefinedMetricWarning", "SKLEARN", "ADWIN", "PageHinkley"]


def _only_default(api: str, **options) -> None:
    """``options`` maps a name to ``(value, default)``."""
    for name, (value, default) in options.items():
        if not (value is default or (isinstance(value, str) and value == default)):
            raise OptionNotOffered(api, name, value)


# ------------------------------------------------------------ scikit-learn


def roc_auc_score(
    y_true, y_score, *, average="macro", sample_weight=None, max_fpr=None, multi_class="raise", labels=None
):
    # kerafine's only multiclass strategy is one-vs-rest: "ovr" names it, "raise" (the default) gets it too.
    if multi_class not in ("raise", "ovr"):
        raise OptionNotOffered("roc_auc_score", "multi_class", multi_class)
    _only_default("roc_auc_score", max_fpr=(max_fpr, None))
    return roc_auc(y_true, y_score, sample_weight=sample_weight, average=average, labels=labels)


def average_precision_score(y_true, y_score, *, average="macro", pos_label=1, sample_weight=None):
    if pos_label != 1:
        raise OptionNotOffered("average_precision_score", "pos_label", pos_label)
    return pr_auc(y_true, y_score, sample_weight=sample_weight, average=average)


def roc_curve(y_true, y_score, *, pos_label=None, sample_weight=None, drop_intermediate=True):
    _only_default("roc_curve", pos_label=(pos_label, None))
    return _roc_curve(y_true, y_score, sample_weight=sample_weight, drop_intermediate=drop_intermediate)


def precision_recall_curve(y_true, y_score, *, pos_label=None, sample_weight=None, drop_intermediate=False):
    _only_default("precision_recall_curve", pos_label=(pos_label, None), drop_intermediate=(drop_intermediate, False))
    return _precision_recall_curve(y_true, y_score, sample_weight=sample_weight)


SKLEARN = {
    "roc_auc_score": roc_auc_score,
    "average_precision_score": average_precision_score,
    "roc_curve": roc_curve,
    "precision_recall_curve": precision_recall_curve,
}


# ------------------------------------------------------------------- river


class _RiverDetector:
    """river's ``DriftDetector`` surface over :class:`StreamDriftDetector`."""

    def update(self, x):
        self._detector.update(x)

    @property
    def drift_detected(self) -> bool:
        return self._detector.drift_detected

    @property
    def n_detections(self) -> int:
        return self._detector.n_detections

    @property
    def width(self) -> int:
        return self._detector.width

    @property
    def estimation(self) -> float:
        return self._detector.estimation


class ADWIN(_RiverDetector):
    def __init__(self, delta=0.002, clock=32, max_buckets=5, min_window_length=5, grace_period=10):
        # max_buckets tunes river's bucket compression; kerafine keeps the exact window.
        _only_default("ADWIN", max_buckets=(max_buckets, 5))
        self._detector = StreamDriftDetector(
            "adwin", delta=delta, clock=clock, min_window_length=min_window_length, grace_period=grace_period
        )

    @property
    def total(self):
        raise OptionNotOffered("ADWIN", "total", "property")

    @property
    def variance(self):
        raise OptionNotOffered("ADWIN", "variance", "property")


class PageHinkley(_RiverDetector):
    def __init__(self, min_instances=30, delta=0.005, threshold=50.0, alpha=1 - 0.0001, mode="both"):
        self._detector = StreamDriftDetector(
            "page_hinkley", min_instances=min_instances, delta=delta, threshold=threshold, alpha=alpha, mode=mode
        )
