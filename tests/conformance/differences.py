"""Every deliberate difference between kerafine and the anchors' own tests, listed once with its reason.

Each entry names the upstream tests it explains (``fnmatch`` patterns on the
test id) and the exception those tests must fail with. The conformance
conftest marks them ``xfail(strict=True, raises=...)``: a listed test that
starts passing, or fails for another reason, fails the run; an upstream test
that fails without being listed fails the run too. So a new difference cannot
hide, and a fixed one must leave this list.

Message-only differences (``MESSAGE``) are checked twice: verbatim (expected to
fail on the ``match=`` pattern) and once more with only the ``match=`` patterns
of ``pytest.raises``/``pytest.warns`` dropped, where they must pass: proof that
the exception or warning class and every value assertion agree.

``docs/differences.md`` (linked from the README) lists the same entries, by key;
``test_differences_documented.py`` keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import fnmatch

import pytest

from kerafine.errors import KerafineError
from tests.conformance._anchors import OptionNotOffered


@dataclasses.dataclass(frozen=True)
class Difference:
    key: str
    anchor: str  # "keras", "scikit-learn" or "river"
    summary: str
    reason: str
    tests: tuple  # fnmatch patterns on the test id, e.g. "test_roc_curve_toydata[[]True]"
    raises: tuple  # what the listed tests fail with
    # Tests that first fail on a message (MESSAGE) and, re-run without `match=`, on this difference.
    tests_after_message: tuple = ()


_NOT_RAISED = (pytest.fail.Exception,)  # pytest.raises: "DID NOT RAISE"
_MISMATCH = (AssertionError, pytest.fail.Exception)  # pytest.raises / pytest.warns: pattern did not match

MESSAGE = Difference(
    key="messages",
    anchor="scikit-learn",
    summary="Error and warning messages are kerafine's own; the exception classes are the same "
    "(ValueError, TypeError) and the warnings are kerafine's UndefinedMetricWarning (see below).",
    reason="kerafine's one message format names the argument, the value received and what is allowed "
    "(`Invalid value for argument ...`); matching scikit-learn's wording would break that for every user.",
    tests=(
        "test_roc_curve_one_label",
        "test_auc_score_non_binary_class",
        "test_roc_auc_score_multiclass_error[[]*-kwargs1]",  # average="samples"
        "test_roc_auc_score_multiclass_labels_error[[]ovr-Parameter 'labels' must be unique*]",
        "test_roc_auc_score_multiclass_labels_error[[]ovr-Number of classes*]",
        "test_roc_auc_score_multiclass_labels_error[[]ovr-Number of given labels*]",
        "test_roc_auc_score_multiclass_labels_error[[]ovr-'y_true' contains labels not in parameter*]",
        "test_confusion_matrix_at_thresholds_multiclass_error[[]*]",
        "test_confusion_matrix_at_thresholds_implicit_bytes_pos_label[[]*]",
        "test_multiclass_ranking_metrics_raise_for_incorrect_shape_of_y_score",
    ),
    raises=_MISMATCH,
)

DIFFERENCES: tuple[Difference, ...] = (
    MESSAGE,
    Difference(
        key="ovo",
        anchor="scikit-learn",
        summary="No one-vs-one multiclass AUC (`roc_auc_score(multi_class='ovo')`); kerafine's multiclass AUC is one-vs-rest.",
        reason="One-vs-rest is what a per-class monitor of a classifier needs (one curve per class, "
        "written to TensorBoard); one-vs-one is quadratic in the number of classes and has no per-class reading.",
        tests=(
            "test_multiclass_ovo_roc_auc_toydata[[]*]",
            "test_multiclass_ovo_roc_auc_toydata_binary[[]*]",
            "test_perfect_imperfect_chance_multiclass_roc_auc[[]ovo-*]",
            "test_roc_auc_score_multiclass_labels_error[[]ovo-*]",
            "test_roc_auc_score_multiclass_error[[]*-kwargs0]",
            "test_roc_auc_score_multiclass_error[[]msg2-kwargs2]",
            "test_roc_auc_score_multiclass_error[[]msg3-kwargs3]",
        ),
        raises=(OptionNotOffered,),
    ),
    Difference(
        key="ovr-by-default",
        anchor="scikit-learn",
        summary="Scores of shape (n, k) are averaged one-vs-rest without asking; scikit-learn's "
        "`roc_auc_score` raises unless `multi_class='ovr'` (or 'ovo') is given.",
        reason="kerafine has a single multiclass strategy, so there is nothing to choose; "
        "`AUCTracker` computes the same value every epoch with no extra argument.",
        tests=("test_roc_auc_score_multiclass_error[[]*-kwargs4]",),
        raises=_NOT_RAISED,
    ),
    Difference(
        key="no-micro-average",
        anchor="scikit-learn",
        summary='`average` is "macro", "weighted" or None; no "micro" or "samples" average.',
        reason="The micro average pools all classes into one ranking, which mixes scores that are not "
        "comparable across classes, and a per-sample average is for multilabel ranking, not for monitoring "
        "a classifier; kerafine raises (KerafineError) rather than compute them.",
        tests=("test_perfect_imperfect_chance_multiclass_roc_auc[[]ovr-micro]", "test_micro_averaged_ovr_roc_auc"),
        raises=(KerafineError,),
        tests_after_message=("test_roc_curve_toydata",),
    ),
    Difference(
        key="undefined-is-nan",
        anchor="scikit-learn",
        summary="An undefined value is NaN (with UndefinedMetricWarning): recall of the precision-recall curve "
        "and average precision without positives, ROC-AUC with one class; scikit-learn returns "
        "recall 1 and AP 0 (no positive) or AP 1 (no negative).",
        reason="A number there says nothing about the model and averages silently into a macro mean or an "
        "epoch history; NaN cannot be mistaken for a score.",
        tests=(),
        raises=(AssertionError,),
        tests_after_message=("test_precision_recall_curve_toydata[[]False]",),
    ),
    Difference(
        key="no-partial-auc",
        anchor="scikit-learn",
        summary="No partial AUC (`roc_auc_score(max_fpr=...)`).",
        reason="Not offered: kerafine's AUC and its DeLong interval are for the whole curve.",
        tests=("test_partial_roc_auc_score",),
        raises=(OptionNotOffered,),
    ),
    Difference(
        key="no-pos-label",
        anchor="scikit-learn",
        summary="No `pos_label`: with two labels the larger one (or True) is positive, with strings too; "
        "scikit-learn's curves raise for labels other than {0, 1} / {-1, 1} without `pos_label`.",
        reason="Keras labels are 0/1 (or booleans); one fixed rule, the one scikit-learn's `roc_auc_score` "
        "uses for two labels, keeps the metrics and `AUCTracker` free of a per-call choice.",
        tests=(
            "test_ranking_metric_pos_label_types[[]*-roc_curve]",
            "test_ranking_metric_pos_label_types[[]*-precision_recall_curve]",
            "test_ranking_metric_pos_label_types[[]classes3-average_precision_score]",
            "test_average_precision_score_binary_pos_label_errors",
            "test_average_precision_score_multilabel_pos_label_errors",
            "test_average_precision_score_multiclass_pos_label_errors",
        ),
        raises=(OptionNotOffered,),
    ),
    Difference(
        key="larger-label-positive",
        anchor="scikit-learn",
        summary="`roc_curve` / `precision_recall_curve` accept two string labels (the larger is positive) "
        "where scikit-learn asks for `pos_label`.",
        reason="The same rule as `roc_auc` and `pr_auc` (see `no-pos-label`), so a curve and its area never "
        "disagree on the positive class.",
        tests=("test_confusion_matrix_at_thresholds_implicit_pos_label[[]*]",),
        raises=_NOT_RAISED,
    ),
    Difference(
        key="labels-any-order",
        anchor="scikit-learn",
        summary="`labels` may be given in any order (it names the class of each score column); "
        "scikit-learn requires it sorted.",
        reason="`labels` is the column order of the model's output, which need not be sorted.",
        tests=("test_roc_auc_score_multiclass_labels_error[[]ovr-Parameter 'labels' must be ordered*]",),
        raises=_NOT_RAISED,
    ),
    Difference(
        key="multiclass-labels-are-columns",
        anchor="scikit-learn",
        summary="Without `labels`, 1-d multiclass labels are column indices 0..k-1; string labels need `labels` "
        "(scikit-learn sorts the labels found in y_true).",
        reason="A Keras model's output column j is class j; guessing the column of a string label from "
        "y_true's sorted values silently mislabels a model whose classes were encoded in another order.",
        tests=("test_multiclass_ovr_roc_auc_toydata[[]y_true1-None]",),
        raises=(KerafineError,),
    ),
    Difference(
        key="pr-curve-no-drop-intermediate",
        anchor="scikit-learn",
        summary="`precision_recall_curve` has no `drop_intermediate` (it always returns every threshold).",
        reason="Not offered: TensorBoard's PR curve and the report use all thresholds.",
        tests=(
            "test_precision_recall_curve[[]True]",
            "test_precision_recall_curve_toydata[[]True]",
            "test_precision_recall_curve_drop_intermediate",
        ),
        raises=(OptionNotOffered,),
    ),
    Difference(
        key="adwin-exact-window",
        anchor="river",
        summary="ADWIN keeps its window exactly (at most `max_window` values) and tests every split point; "
        "there is no `max_buckets` (river's bucket compression). At a large `delta` (0.1) this raises more "
        "false alarms than river (`benchmarks/adwin_river.py`: 9 against 2 over 20 stationary N(0, 1) streams of "
        "5,000 values; none for either at the default 0.002, and the same median detection delay).",
        reason="Exact cut points and bounded memory, with one fewer parameter to tune; the first detection "
        "matches river's on river's own streams.",
        tests=("test_max_buckets_variation",),
        raises=(OptionNotOffered,),
    ),
    Difference(
        key="adwin-no-total-variance",
        anchor="river",
        summary="No `total` and `variance` properties on the detector (river's sum and sum of squared "
        "deviations of the window); kerafine has `estimation` (the window mean) and `width`.",
        reason="Not offered: the mean and the width are what a monitor reports.",
        tests=("test_total_and_estimation", "test_variance_correctness", "test_single_element", "test_two_elements"),
        raises=(OptionNotOffered,),
    ),
    Difference(
        key="empty-estimation-nan",
        anchor="river",
        summary="`estimation` of an empty detector is NaN; river's is 0.0.",
        reason="An empty window has no mean; 0.0 would read as a measured level.",
        tests=("test_width_zero_estimation",),
        raises=(AssertionError,),
    ),
)


def _lookup(name: str):
    """``(difference, after_message)`` listing test ``name``, or ``(None, False)``; listed twice is a bug here."""
    found = []
    for d in DIFFERENCES:
        if any(fnmatch.fnmatchcase(name, p) for p in d.tests):
            found.append((d, False))
        if any(fnmatch.fnmatchcase(name, p) for p in d.tests_after_message):
            found.append((d, True))
    if len(found) > 1:
        raise AssertionError(f"{name} is listed by several differences: {[d.key for d, _ in found]}")
    return found[0] if found else (None, False)


def without_match_bases() -> set:
    """Test functions to re-run without `match=`: the message-only ones and those listed after a message."""
    patterns = list(MESSAGE.tests) + [p for d in DIFFERENCES for p in d.tests_after_message]
    return {p.partition("[")[0] for p in patterns}


def _xfail(raises, reason):
    return "xfail", pytest.mark.xfail(strict=True, raises=raises, reason=reason)


def mark_for(item):
    """``(action, mark)`` for a collected conformance test: ``("xfail", mark)``, ``("deselect", None)`` or ``(None, None)``.

    A ``<test>__without_match`` case (the re-run with `match=` dropped) must
    pass for a message-only difference, must fail with the listed difference's
    exception for a test listed after a message, and is deselected otherwise.
    """
    name = item.name
    base, bracket, params = name.partition("[")
    without_match = base.endswith("__without_match")
    if without_match:
        name = base[: -len("__without_match")] + bracket + params
    difference, after_message = _lookup(name)
    if without_match:
        if difference is MESSAGE:
            return None, None
        if after_message:
            return _xfail(difference.raises, f"{difference.key}: {difference.summary}")
        return "deselect", None
    if difference is None:
        return None, None
    if after_message:
        return _xfail(_MISMATCH, f"{MESSAGE.key}, then {difference.key}: {difference.summary}")
    return _xfail(difference.raises, f"{difference.key}: {difference.summary}")


_ANCHORS = {
    "keras": "Keras 3.15.1 (`keras/src/callbacks/early_stopping_test.py`)",
    "scikit-learn": "scikit-learn 1.9.1 (`sklearn/metrics/tests/test_ranking.py`)",
    "river": "river 0.26.1 (`tests/drift/`)",
}

# Deliberate differences that no upstream test reaches (documented, not marked).
NOT_REACHED = {
    "keras": (
        '`EarlyStopping(mode=...)` with an unknown mode raises `KerafineError`; Keras warns and falls back to "auto".',
        "A monitor key missing from the epoch logs raises, naming the keys that are logged; Keras warns and "
        "skips the epoch (a `val_*` monitor on an epoch without validation is still skipped, with one warning).",
        '`min_delta` must be >= 0 (Keras takes its absolute value) and may be relative ("1%").',
        "A monitored array of several values (e.g. `F1Score(average=None)` over several classes) raises, "
        "asking for an averaged metric; one value in an array is used as a number, as Keras does.",
    ),
    "scikit-learn": (
        "Undefined values warn with `kerafine.metrics.UndefinedMetricWarning`, a `UserWarning` like "
        "scikit-learn's `UndefinedMetricWarning` but not the same class (`kerafine.metrics` does not import "
        "scikit-learn): filter kerafine's class, or `UserWarning` for both. The conformance suite binds the "
        "test file's `UndefinedMetricWarning` to kerafine's.",
    ),
    "river": (
        "`n_detections` counts every detection since the detector was created; river's restarts from 0 "
        "with the window after each detection.",
    ),
}


def render_markdown() -> str:
    """docs/differences.md, from this list (``python -m tests.conformance.differences > docs/differences.md``)."""
    lines = [
        "# Differences from Keras / scikit-learn / river",
        "",
        "kerafine's `EarlyStopping`, ranking metrics and stream drift detectors are checked against the",
        "anchors' own test suites: `tests/conformance/` loads each anchor's test file from the installed",
        "package (river's from its sdist), binds kerafine in place of the function or class under test and",
        "runs the assertions unchanged. Every upstream test that fails on purpose is listed below, once,",
        "with its reason; the suite marks exactly these as expected failures (`xfail(strict=True)`, with the",
        "exception they must fail with), so a new difference fails CI instead of hiding.",
        "",
        "This page is generated from `tests/conformance/differences.py`",
        "(`python -m tests.conformance.differences > docs/differences.md`); a test checks they agree.",
        "",
    ]
    for anchor, title in _ANCHORS.items():
        lines += [f"## {title}", ""]
        entries = [d for d in DIFFERENCES if d.anchor == anchor]
        if not entries:
            lines += ["Every test of the file that reaches kerafine passes.", ""]
        for d in entries:
            tests = [*d.tests, *(f"{t} (after a message difference)" for t in d.tests_after_message)]
            shown = ", ".join(f"`{t.replace('[[]', '[')}`" for t in tests)
            lines += [f"### `{d.key}`", "", d.summary, "", f"Why: {d.reason}", "", f"Upstream tests: {shown}.", ""]
        if NOT_REACHED[anchor]:
            lines += ["Also deliberate, though no upstream test reaches it:", ""]
            lines += [f"- {text}" for text in NOT_REACHED[anchor]]
            lines += [""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_markdown(), end="")
