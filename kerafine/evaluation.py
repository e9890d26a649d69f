"""``kerafine.evaluate``: predict on a data set and return the classification report.

This module uses Keras (through the prediction cache), which is why it lives
outside :mod:`kerafine.metrics`, whose numeric core never imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Optional

import numpy as np

from kerafine import _finite
from kerafine.errors import DataError, check_choice

__all__ = ["evaluate"]


def evaluate(
    model,
    data,
    *,
    threshold="f1",
    batch_size: int = 256,
    steps: Optional[int] = None,
    level: float = 0.95,
    n_bins: int = 10,
    labels: Sequence | None = None,
    robustness: Sequence[float] | None = None,
    membership=None,
    non_finite: str = "raise",
):
    """Predict with ``model`` on ``data`` and return a :class:`~kerafine.metrics.ClassificationReport`.

    The model predicts on ``data`` with its current weights: nothing cached
    by a ``fit`` is reused (a cached pass could belong to other weights, e.g.
    before ``EarlyStopping(restore_best_weights=True)`` restored the best).

    Args:
        model: a built ``keras.Model`` with one output: ``(n, 1)`` or ``(n,)``
            scores for binary problems (probabilities or logits), ``(n, k)`` for
            multiclass.
        data: ``(x, y)``, ``(x, y, sample_weight)``, a ``tf.data.Dataset``, a
            ``keras.utils.PyDataset`` or a generator of such batches.
        threshold: ``"f1"``, ``"youden"`` or a number (binary). Defaults to ``"f1"``.
        batch_size: batch size for array inputs. Defaults to 256.
        steps: batches to draw from a dataset or generator. Defaults to ``None``.
        level: level of the DeLong interval of the ROC-AUC. Defaults to 0.95.
        n_bins: calibration bins. Defaults to 10.
        labels: class of each output column (multiclass). Defaults to ``None``.
        robustness: attack radii (model input units, e.g. ``[1, 2, 4]`` pixels):
            adds a PGD-10 robustness section
            (:func:`kerafine.security.robustness_curve`, at the report's
            threshold) to the report. ``data`` must then be ``(x, y)`` arrays.
            Defaults to ``None``.
        membership: ``(train_data, holdout_data)``, each ``(x, y)``: adds a
            membership-inference section
            (:func:`kerafine.security.membership_inference`). Defaults to ``None``.
        non_finite: rows whose inputs hold NaN or inf get outputs that mean
            nothing (a ReLU network may give them all the same finite score),
            so they are never counted silently (a model that imputes NaN
            itself, ``tabular_encoder(..., impute="median")``, may get NaN;
            only infinities count then): ``"raise"`` refuses them with a
            ``DataError`` naming the count and the first rows (before
            predicting, for arrays); ``"exclude"`` evaluates the other rows
            and the report says how many were left out
            (``report.nonfinite_excluded``, in its text, JSON and HTML).
            Defaults to ``"raise"``.

    Returns:
        :class:`kerafine.metrics.ClassificationReport`.

    Raises:
        DataError: empty data, data without labels, inputs with NaN/inf
            (``non_finite="raise"``, or every row with ``"exclude"``), or any error of
            :func:`kerafine.metrics.classification_report` (NaN outputs, output
            columns that do not match the classes, ...).
        KerafineError: a bad ``threshold``, ``level``, ``n_bins`` or ``batch_size``.

    Example:

    >>> import numpy as np, keras, kerafine
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 3)).astype("float32"); y = (x[:, 0] > 0).astype("float32")
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    >>> report = kerafine.evaluate(model, (x, y), threshold=0.5)
    >>> report.kind, report.n_samples, report.threshold
    ('binary', 64, 0.5)
    """
    from kerafine.callbacks import predictions
    from kerafine.metrics.report import _check_threshold, classification_report

    _check_threshold(threshold)
    check_choice("non_finite", non_finite, ("raise", "exclude"))
    if robustness is not None or membership is not None:
        from kerafine.security.report import check_options

        check_options(data, robustness, membership)
    from kerafine.backbones.tabular import imputes_missing

    # A model that fills NaN itself (tabular impute="median") is evaluated on NaN cells on purpose.
    eval_data = predictions.EvalData(
        data, batch_size=batch_size, steps=steps, argument="data", nan_ok=imputes_missing(model)
    )
    if non_finite == "raise" and eval_data.is_arrays:
        _refuse_nonfinite(eval_data.nonfinite_inputs())  # before any prediction
    pred = predictions.predict(model, eval_data)  # no cache: always these weights
    if pred.y_true is None:
        raise DataError(
            "Invalid value for argument `data`: received inputs without labels; "
            "expected (x, y), (x, y, sample_weight) or batches of them."
        )
    y_true, y_pred, weight, excluded = pred.y_true, pred.y_pred, pred.sample_weight, 0
    bad = pred.nonfinite
    if bad is not None and bad.any():
        if non_finite == "raise":
            _refuse_nonfinite(bad)
        if bad.all():
            raise DataError(
                f"Invalid value for argument `data`: every one of its {bad.size} rows has NaN or inf inputs; "
                "there is nothing to evaluate. Clean the data."
            )
        keep = ~bad
        excluded = int(bad.sum())
        y_true, y_pred = np.asarray(y_true)[keep], np.asarray(y_pred)[keep]
        weight = None if weight is None else np.asarray(weight)[keep]
    report = classification_report(
        y_true,
        y_pred,
        threshold=threshold,
        sample_weight=weight,
        level=level,
        n_bins=n_bins,
        labels=labels,
    )
    report = dataclasses.replace(report, nonfinite_excluded=excluded)
    if robustness is not None or membership is not None:
        from kerafine.security.report import add_sections

        report = add_sections(
            report, model, data, robustness=robustness, membership=membership, batch_size=batch_size, level=level
        )
    return report


def _refuse_nonfinite(mask) -> None:
    if mask is None or not mask.any():
        return
    found = _finite.NonFinite(mask, {"inputs": int(mask.sum())})
    raise DataError(
        f"Invalid value for argument `data`: {_finite.describe(found)}. A model's output for such a row means "
        'nothing (a ReLU may map NaN to 0 and give every one the same score). Pass non_finite="exclude" to '
        "evaluate the other rows (the report says how many were left out), or clean the data."
    )
