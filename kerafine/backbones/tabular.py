"""An encoder for tabular records built from Keras preprocessing layers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Sequence

import keras
import numpy as np

from kerafine.backbones._checks import check_positive_int, check_rate, check_units
from kerafine.errors import DataError, KerafineError, did_you_mean, invalid_argument

__all__ = ["tabular_encoder"]


def _check_names(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise invalid_argument(name, value, "a list of column names (non-empty strings)")
    if len(set(value)) != len(value):
        raise invalid_argument(name, value, "column names without duplicates")
    bad = [v for v in value if "/" in v]
    if bad:
        raise invalid_argument(name, value, 'column names without "/" (Keras layer names)')
    return list(value)


def _columns(data: Any, wanted: list[str]) -> dict[str, np.ndarray]:
    """Pick the wanted columns of a DataFrame or dict of arrays as 1-d arrays."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        found = [str(c) for c in data.columns]
        getter = lambda c: data[c].to_numpy()  # noqa: E731
    elif isinstance(data, Mapping):
        found = [str(c) for c in data]
        getter = lambda c: np.asarray(data[c])  # noqa: E731
    else:
        raise invalid_argument(
            "data",
            type(data).__name__,
            "a pandas DataFrame or a dict of column name -> array (the training data)",
            error=DataError,
        )
    missing = [c for c in wanted if c not in found]
    if missing:
        hints = "".join(
            f" For {c!r}:{did_you_mean(c, found)}" for c in missing if did_you_mean(c, found)
        )
        raise DataError(
            f"Missing columns in `data`: {missing}; found columns: {found}.{hints}"
        )
    columns: dict[str, np.ndarray] = {}
    lengths = set()
    for c in wanted:
        array = getter(c)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise DataError(
                f"Column {c!r} of `data` must be 1-d (one value per row); got shape {array.shape}."
            )
        columns[c] = array
        lengths.add(len(array))
    if len(lengths) > 1:
        raise DataError(
            f"Columns of `data` have different lengths: "
            f"{ {c: len(a) for c, a in columns.items()} }."
        )
    if lengths == {0}:
        raise DataError("`data` has no rows: the preprocessing layers need training data to adapt on.")
    return columns


def _n_missing(array: np.ndarray) -> int:
    import pandas as pd

    return int(np.count_nonzero(pd.isna(array)))


def _numeric(name: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise DataError(
            f"Numeric column {name!r} of `data` has dtype {array.dtype}; expected numbers. "
            "List it in `categorical_features` if it holds categories."
        )
    array = array.astype("float32")
    n_bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if n_bad:
        raise DataError(
            f"Numeric column {name!r} of `data` holds {n_bad} NaN/inf values out of {array.size}; "
            "impute them (e.g. with the training median) before building the encoder."
        )
    return array


def _categorical(name: str, array: np.ndarray) -> tuple[np.ndarray, str]:
    """Return the column as int64 or str values, and the Keras input dtype."""
    n_missing = _n_missing(array)
    if n_missing:
        raise DataError(
            f"Categorical column {name!r} of `data` holds {n_missing} missing values (NaN/None) "
            f"out of {len(array)}; fill them with an explicit category (e.g. \"missing\") first. "
            "Out-of-vocabulary handling covers unseen categories, not missing ones."
        )
    if array.dtype.kind in "biu":
        return array.astype("int64"), "int64"
    if array.dtype.kind == "f":
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise DataError(
                f"Categorical column {name!r} of `data` holds non-integer floats; convert it "
                "to strings or ints, or list it in `numeric_features`."
            )
        return array.astype("int64"), "int64"
    return array.astype(str), "string"


def _embedding_dim(n_tokens: int, embedding_dim: int | None) -> int:
    if embedding_dim is not None:
        return embedding_dim
    # Grows slowly with the vocabulary and stays small: 2 for a binary column, 16 max.
    return int(min(16, max(2, math.ceil(math.sqrt(n_tokens)))))


def tabular_encoder(
    numeric_features: Sequence[str],
    categorical_features: Sequence[str],
    hidden: tuple[int, ...] = (64, 32),
    *,
    data: Any,
    max_vocabulary: int = 1000,
    hash_bins: int = 1024,
    embedding_dim: int | None = None,
    dropout: float = 0.0,
) -> keras.Model:
    """Build an encoder for numeric and categorical columns, adapted on training data.

    One named ``keras.Input`` per column (shape ``(1,)``; the input name is the
    column name), then:

    - numeric columns: a ``Normalization`` layer holding the training mean and
      variance;
    - categorical columns with at most ``max_vocabulary`` distinct training values:
      ``StringLookup`` (strings) or ``IntegerLookup`` (ints) with one
      out-of-vocabulary index, so categories unseen in training map to a shared
      learned vector, followed by an ``Embedding``;
    - categorical columns with more distinct values: ``Hashing`` into
      ``hash_bins`` buckets followed by an ``Embedding`` (no vocabulary to store;
      collisions are the price);
    - everything concatenated and passed through ``Dense(relu)`` layers.

    Adapt on the training split only: statistics computed on validation or test
    rows leak them into the model.

    Args:
        numeric_features: names of the numeric columns.
        categorical_features: names of the categorical columns (strings, ints or
            integral floats).
        hidden: widths of the ``Dense(relu)`` stack; the last is the embedding
            size. ``()`` outputs the concatenated features. Defaults to ``(64, 32)``.
        data: the training data, a pandas ``DataFrame`` or a dict of column name ->
            1-d array. Other columns are ignored.
        max_vocabulary: above this many distinct values a categorical column is
            hashed instead of looked up. Defaults to ``1000``.
        hash_bins: buckets of a hashed column. Defaults to ``1024``.
        embedding_dim: embedding width of every categorical column, or ``None``
            for ``min(16, max(2, ceil(sqrt(n_tokens))))``. Defaults to ``None``.
        dropout: dropout rate after each hidden layer, in [0, 1). Defaults to ``0.0``.

    Returns:
        A functional ``keras.Model`` named ``"tabular_encoder"`` whose inputs are a
        dict keyed by column name and whose output is ``(batch, hidden[-1])``. Feed
        it ``{column: values}``, e.g. ``{c: df[c].to_numpy() for c in columns}``.

    Raises:
        DataError: columns missing from ``data`` (the message lists those found),
            NaN/None in a categorical column or NaN/inf in a numeric one (with the
            count), non-numeric values in a numeric column, no rows.
        KerafineError: bad column lists or sizes.

    Example:

    >>> import numpy as np
    >>> data = {"latency": np.array([1.0, 2.0, 3.0]), "browser": np.array(["a", "b", "a"])}
    >>> encoder = tabular_encoder(["latency"], ["browser"], hidden=(4,), data=data)
    >>> sorted(encoder.input)
    ['browser', 'latency']
    >>> encoder(data).shape
    TensorShape([3, 4])
    """
    numeric = _check_names("numeric_features", numeric_features)
    categorical = _check_names("categorical_features", categorical_features)
    if not numeric and not categorical:
        raise invalid_argument(
            "numeric_features",
            numeric_features,
            "at least one column in numeric_features or categorical_features",
        )
    overlap = sorted(set(numeric) & set(categorical))
    if overlap:
        raise invalid_argument(
            "categorical_features", categorical_features, f"no column also in numeric_features {overlap}"
        )
    hidden = check_units("hidden", hidden)
    max_vocabulary = check_positive_int("max_vocabulary", max_vocabulary)
    hash_bins = check_positive_int("hash_bins", hash_bins, minimum=2)
    if embedding_dim is not None:
        embedding_dim = check_positive_int("embedding_dim", embedding_dim)
    dropout = check_rate("dropout", dropout)

    columns = _columns(data, numeric + categorical)
    numeric_values = {c: _numeric(c, columns[c]) for c in numeric}
    categorical_values = {c: _categorical(c, columns[c]) for c in categorical}

    inputs: dict[str, keras.KerasTensor] = {}
    parts = []
    if numeric:
        for c in numeric:
            inputs[c] = keras.Input(shape=(1,), name=c, dtype="float32")
        joined = (
            keras.layers.Concatenate(name="numeric__concat")([inputs[c] for c in numeric])
            if len(numeric) > 1
            else inputs[numeric[0]]
        )
        normalization = keras.layers.Normalization(axis=-1, name="numeric__normalization")
        normalization.adapt(np.stack([numeric_values[c] for c in numeric], axis=1))
        parts.append(normalization(joined))
    for c in categorical:
        values, dtype = categorical_values[c]
        inputs[c] = keras.Input(shape=(1,), name=c, dtype=dtype)
        n_distinct = len(np.unique(values))
        if n_distinct <= max_vocabulary:
            lookup_cls = keras.layers.StringLookup if dtype == "string" else keras.layers.IntegerLookup
            lookup = lookup_cls(num_oov_indices=1, name=f"{c}__lookup")
            lookup.adapt(values)
            indices = lookup(inputs[c])
            n_tokens = lookup.vocabulary_size()
        else:
            indices = keras.layers.Hashing(num_bins=hash_bins, name=f"{c}__hashing")(inputs[c])
            n_tokens = hash_bins
        embedded = keras.layers.Embedding(
            n_tokens, _embedding_dim(n_tokens, embedding_dim), name=f"{c}__embedding"
        )(indices)
        parts.append(keras.layers.Flatten(name=f"{c}__flatten")(embedded))
    x = keras.layers.Concatenate(name="features__concat")(parts) if len(parts) > 1 else parts[0]
    for i, width in enumerate(hidden):
        x = keras.layers.Dense(width, activation="relu", name=f"encoder__dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"encoder__dropout_{i}")(x)
    return keras.Model(inputs, x, name="tabular_encoder")
