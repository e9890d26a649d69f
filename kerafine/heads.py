"""Trainable heads to put on a backbone.

A head is an unbuilt ``keras.Sequential`` named ``"head"``: it builds on its first
call, on whatever feature width the backbone outputs. Its last layer is a
``Dense`` named ``"predictions"``; optional ``Dense(relu)`` layers (each followed
by ``Dropout`` when ``dropout > 0``) come before it.
"""

from __future__ import annotations

import keras

from kerafine.backbones._checks import check_choice, check_positive_int, check_rate, check_units
from kerafine.errors import check_int

__all__ = ["classification", "regression"]


def _hidden_layers(hidden: tuple[int, ...], dropout: float) -> list[keras.layers.Layer]:
    layers: list[keras.layers.Layer] = []
    if not hidden and dropout:
        # Dropout on the backbone's features, the Keras transfer-learning recipe.
        layers.append(keras.layers.Dropout(dropout, name="dropout"))
    for i, width in enumerate(hidden):
        layers.append(keras.layers.Dense(width, activation="relu", name=f"hidden_{i}"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout, name=f"dropout_{i}"))
    return layers


def classification(
    n_classes: int,
    multilabel: bool = False,
    hidden: tuple[int, ...] = (),
    dropout: float = 0.0,
) -> keras.Sequential:
    """A classification head.

    The output layer ``"predictions"`` is:

    - ``Dense(1, sigmoid)`` for two classes, single-label: the probability of
      class 1 (train with ``binary_crossentropy`` on 0/1 labels);
    - ``Dense(n_classes, sigmoid)`` when ``multilabel``: one independent
      probability per label (``binary_crossentropy`` on multi-hot labels);
    - ``Dense(n_classes, softmax)`` otherwise (``sparse_categorical_crossentropy``
      on int labels or ``categorical_crossentropy`` on one-hot labels).

    It computes in float32 even under a mixed-precision policy, so the
    probabilities and the loss keep full precision.

    Args:
        n_classes: number of classes (or labels when ``multilabel``), >= 2. For one
            yes/no target use ``n_classes=2``.
        multilabel: each sample may carry several labels at once. Defaults to ``False``.
        hidden: widths of ``Dense(relu)`` layers before the output. Defaults to ``()``.
        dropout: dropout rate in [0, 1) after each hidden layer, or on the input
            features when ``hidden=()``. Defaults to ``0.0``.

    Returns:
        An unbuilt ``keras.Sequential`` named ``"head"``.

    Raises:
        KerafineError: ``n_classes < 2``, bad ``hidden`` or ``dropout``.

    Example:

    >>> import numpy as np
    >>> head = classification(3, hidden=(16,), dropout=0.2)
    >>> head(np.zeros((2, 8))).shape
    TensorShape([2, 3])
    >>> head.layers[-1].name, classification(2).layers[-1].units
    ('predictions', 1)
    """
    check_int(
        "n_classes",
        n_classes,
        minimum=2,
        hint="A softmax over fewer than 2 classes always predicts 1; for a single yes/no "
        "target use n_classes=2 (one sigmoid unit).",
    )
    check_choice("multilabel", multilabel, (True, False))
    hidden = check_units("hidden", hidden)
    dropout = check_rate("dropout", dropout)
    if multilabel:
        units, activation = int(n_classes), "sigmoid"
    elif n_classes == 2:
        units, activation = 1, "sigmoid"
    else:
        units, activation = int(n_classes), "softmax"
    layers = _hidden_layers(hidden, dropout)
    layers.append(keras.layers.Dense(units, activation=activation, dtype="float32", name="predictions"))
    return keras.Sequential(layers, name="head")


def regression(n_outputs: int = 1, hidden: tuple[int, ...] = (), dropout: float = 0.0) -> keras.Sequential:
    """A regression head: a linear ``Dense(n_outputs)`` named ``"predictions"``.

    Args:
        n_outputs: number of targets. Defaults to ``1``.
        hidden: widths of ``Dense(relu)`` layers before the output. Defaults to ``()``.
        dropout: dropout rate in [0, 1) after each hidden layer, or on the input
            features when ``hidden=()``. Defaults to ``0.0``.

    Returns:
        An unbuilt ``keras.Sequential`` named ``"head"``.

    Raises:
        KerafineError: ``n_outputs < 1``, bad ``hidden`` or ``dropout``.

    Example:

    >>> import numpy as np
    >>> regression(2, hidden=(8,))(np.zeros((3, 5))).shape
    TensorShape([3, 2])
    """
    n_outputs = check_positive_int("n_outputs", n_outputs)
    hidden = check_units("hidden", hidden)
    dropout = check_rate("dropout", dropout)
    layers = _hidden_layers(hidden, dropout)
    layers.append(keras.layers.Dense(n_outputs, activation=None, dtype="float32", name="predictions"))
    return keras.Sequential(layers, name="head")
