"""One functional ``keras.Model`` combining several models that take the same inputs."""

from __future__ import annotations

import dataclasses

import numpy as np

from kerafine.errors import invalid_argument
from kerafine.update._checks import check_model, check_xy, input_signature, output_signature

__all__ = ["ensemble", "stacking_combiner", "StackingCombiner"]

_METHODS = ("mean", "weighted", "stacking")


@dataclasses.dataclass(frozen=True)
class StackingCombiner:
    """A logistic regression over the members' probabilities, and its honest validation scores.

    Attributes:
        coef: one coefficient per member.
        intercept: the intercept.
        oof_scores: the combiner's score of each validation row, from a
            combiner fitted on the *other* folds (never on the row itself).
        folds: number of folds.
    """

    coef: np.ndarray
    intercept: float
    oof_scores: np.ndarray
    folds: int


def stacking_combiner(member_scores, y, folds: int = 5, seed: int = 0) -> StackingCombiner:
    """Fit the stacking combiner of :func:`ensemble` on validation predictions.

    The final combiner is fitted on all rows; its out-of-fold scores
    (scikit-learn's ``cross_val_predict`` with stratified folds) are what a
    validation metric of the stacked model may be computed on, since each
    comes from a combiner that never saw that row.

    Args:
        member_scores: ``(n_rows, n_members)`` probabilities of the members.
        y: ``(n_rows,)`` binary labels.
        folds: stratified folds for the out-of-fold scores. Defaults to 5.
        seed: seed of the fold assignment. Defaults to 0.

    Returns:
        :class:`StackingCombiner`.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200)
    >>> p = np.column_stack([y + rng.normal(size=200), y + rng.normal(scale=3, size=200)])
    >>> c = stacking_combiner(p, y)
    >>> bool(c.coef[0] > c.coef[1]), c.oof_scores.shape
    (True, (200,))
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    s = np.asarray(member_scores, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    lr = LogisticRegression(C=1.0, max_iter=1000)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    oof = cross_val_predict(lr, s, y, cv=cv, method="predict_proba")[:, 1]
    lr.fit(s, y)
    return StackingCombiner(lr.coef_[0].copy(), float(lr.intercept_[0]), oof, folds)


def _predict(model, x) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=1024, verbose=0), dtype=np.float64).reshape(len(x), -1)


def ensemble(
    models, method: str = "mean", validation_data=None, *, name: str = "ensemble", folds: int = 5, seed: int = 0
):
    """Combine models that take the same inputs into one functional ``keras.Model``.

    The ensemble feeds its input to every member and combines their outputs:

    * ``"mean"``: the average of the members' outputs;
    * ``"weighted"``: a weighted average of the probabilities, member ``i``'s
      weight proportional to its skill above chance on ``validation_data``,
      ``max(AUC_i - 0.5, 0.001)`` (weights sum to one);
    * ``"stacking"``: a logistic regression over the members' probabilities,
      fitted on their predictions for ``validation_data`` (rows the members
      were not trained on); see :func:`stacking_combiner` for its out-of-fold
      validation scores.

    The combiner is made of standard Keras layers (``Concatenate``, a frozen
    ``Dense``), so the model saves to ``.keras`` and loads with
    :func:`kerafine.load_model` without custom objects.

    Args:
        models: two or more ``keras.Model``, each with one input of the same
            shape and one output of the same shape (``(1,)`` sigmoid
            probabilities for ``"weighted"`` and ``"stacking"``).
        method: ``"mean"``, ``"weighted"`` or ``"stacking"``. Defaults to ``"mean"``.
        validation_data: ``(x, y)`` with both classes; required for
            ``"weighted"`` and ``"stacking"``. Defaults to ``None``.
        name: the model's name. Defaults to ``"ensemble"``.
        folds: folds of the stacking combiner's out-of-fold scores. Defaults to 5.
        seed: seed of the folds. Defaults to 0.

    Returns:
        A ``keras.Model``.

    Raises:
        KerafineError: an empty or one-model list, the same model twice,
            members with different input or output shapes, an unknown
            ``method``, or no ``validation_data`` when it is needed.
        DataError: ``validation_data`` of a single class.

    Example:

    >>> import keras
    >>> from kerafine.update import ensemble
    >>> members = [keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    ...            for _ in range(3)]
    >>> model = ensemble(members)
    >>> model.output.shape
    (None, 1)
    """
    import keras

    if method not in _METHODS:
        raise invalid_argument("method", method, '"mean", "weighted" or "stacking"')
    if isinstance(models, keras.Model) or not isinstance(models, (list, tuple)):
        raise invalid_argument("models", models, "a list of two or more keras.Model")
    if len(models) < 2:
        raise invalid_argument("models", f"a list of {len(models)} model(s)", "a list of two or more keras.Model")
    for i, m in enumerate(models):
        check_model(m, f"models[{i}]")
    if len({id(m) for m in models}) < len(models):
        raise invalid_argument("models", [m.name for m in models], "distinct models (the same object appears twice)")
    shapes = [input_signature(m) for m in models]
    if len(set(shapes)) > 1:
        raise invalid_argument("models", f"models with input shapes {shapes}", "models taking the same input shape")
    outs = [output_signature(m) for m in models]
    if len(set(outs)) > 1:
        raise invalid_argument("models", f"models with output shapes {outs}", "models with the same output shape")
    if method != "mean" and outs[0] != (1,):
        raise invalid_argument(
            "method",
            method,
            '"mean" for models with several outputs',
            "'weighted' and 'stacking' combine binary (one-unit) probabilities.",
        )
    weights = intercept = None
    if method != "mean":
        if validation_data is None:
            raise invalid_argument("validation_data", None, f"(x, y) with both classes for method={method!r}")
        xv, yv = check_xy(validation_data, "validation_data", both_classes=True)
        scores = np.column_stack([_predict(m, xv)[:, 0] for m in models])
        yv = yv.reshape(-1)
        if method == "weighted":
            from kerafine.metrics import roc_auc

            skill = np.array([max(roc_auc(yv, scores[:, i]) - 0.5, 1e-3) for i in range(len(models))])
            weights = skill / skill.sum()
        else:
            c = stacking_combiner(scores, yv, folds=folds, seed=seed)
            weights, intercept = c.coef, c.intercept

    inputs = keras.Input(models[0].inputs[0].shape[1:], dtype=models[0].inputs[0].dtype, name="inputs")
    # Each member gets a wrapper with a unique name: models loaded from files often share one.
    members = [keras.Model(m.inputs[0], m.outputs[0], name=f"member_{i}")(inputs) for i, m in enumerate(models)]
    if method == "mean":
        out = keras.layers.Average(name="mean")(members)
    else:
        stacked = keras.layers.Concatenate(name="member_scores")(members)
        dense = keras.layers.Dense(
            1,
            activation="linear" if method == "weighted" else "sigmoid",
            use_bias=method == "stacking",
            trainable=False,
            name="combiner",
        )
        out = dense(stacked)
        values = [np.asarray(weights, dtype="float32").reshape(-1, 1)]
        if method == "stacking":
            values.append(np.array([intercept], dtype="float32"))
        dense.set_weights(values)
    return keras.Model(inputs, out, name=name)
