"""``kerafine.evaluate``: predict on a data set and return the classification report.

This module uses Keras (through the prediction cache), which is why it lives
outside :mod:`kerafine.metrics`, whose numeric core never imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from kerafine.errors import DataError

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

    Returns:
        :class:`kerafine.metrics.ClassificationReport`.

    Raises:
        DataError: empty data, data without labels, or any error of
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
    if robustness is not None or membership is not None:
        from kerafine.security.report import check_options

        check_options(data, robustness, membership)
    eval_data = predictions.EvalData(data, batch_size=batch_size, steps=steps, argument="data")
    pred = predictions.predict(model, eval_data)  # no cache: always these weights
    if pred.y_true is None:
        raise DataError(
            "Invalid value for argument `data`: received inputs without labels; "
            "expected (x, y), (x, y, sample_weight) or batches of them."
        )
    report = classification_report(
        pred.y_true,
        pred.y_pred,
        threshold=threshold,
        sample_weight=pred.sample_weight,
        level=level,
        n_bins=n_bins,
        labels=labels,
    )
    if robustness is not None or membership is not None:
        from kerafine.security.report import add_sections

        report = add_sections(
            report, model, data, robustness=robustness, membership=membership, batch_size=batch_size, level=level
        )
    return report
