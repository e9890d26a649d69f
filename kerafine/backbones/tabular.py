"""An encoder for tabular records built from Keras preprocessing layers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from kerafine.backbones._checks import check_positive_int, check_rate, check_units
from kerafine.errors import DataError, did_you_mean, invalid_argument

__all__ = ["tabular_encoder", "NumericPreparation", "MissingIndicator"]

_IMPUTE = (None, "median")


@keras.saving.register_keras_serializable(package="kerafine")
class NumericPreparation(keras.layers.Layer):
    """Fill missing values and apply ``log1p`` column by column, inside the model.

    Input ``(batch, k)`` float32 numeric columns; column ``j`` has its NaN
    replaced by ``fill_values[j]`` (left as NaN when that is ``None``), then is
    mapped through ``log1p`` when ``log1p[j]``. Part of the saved model, so
    prediction prepares the columns exactly as training did. Registered as
    ``"kerafine>NumericPreparation"``.

    Args:
        fill_values: one float (the training median) or ``None`` per column.
        log1p: one bool per column.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> layer = NumericPreparation([2.0, None], [False, True])
    >>> np.asarray(layer(np.array([[np.nan, 0.0]], "float32"))).tolist()
    [[2.0, 0.0]]
    """

    def __init__(self, fill_values, log1p, **kwargs: Any):
        super().__init__(**kwargs)
        self.fill_values = [None if v is None else float(v) for v in fill_values]
        self.log1p = [bool(v) for v in log1p]
        if len(self.log1p) != len(self.fill_values):
            raise invalid_argument("log1p", log1p, f"{len(self.fill_values)} flags, one per column")

    def call(self, inputs):
        x = keras.ops.cast(inputs, "float32")
        if any(v is not None for v in self.fill_values):
            mask = np.array([v is not None for v in self.fill_values])
            fill = np.array([0.0 if v is None else v for v in self.fill_values], np.float32)
            x = keras.ops.where(keras.ops.logical_and(keras.ops.isnan(x), mask), fill, x)
        if any(self.log1p):
            x = keras.ops.where(np.array(self.log1p), keras.ops.log1p(x), x)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "fill_values": self.fill_values, "log1p": self.log1p}


@keras.saving.register_keras_serializable(package="kerafine")
class MissingIndicator(keras.layers.Layer):
    """1.0 where the selected input columns are NaN, else 0.0: ``(batch, len(columns))``.

    Registered as ``"kerafine>MissingIndicator"``.

    Args:
        columns: indices of the input columns to flag.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> np.asarray(MissingIndicator([1])(np.array([[1.0, np.nan]], "float32"))).tolist()
    [[1.0]]
    """

    def __init__(self, columns, **kwargs: Any):
        super().__init__(**kwargs)
        self.columns = [int(c) for c in columns]

    def call(self, inputs):
        picked = keras.ops.take(keras.ops.cast(inputs, "float32"), self.columns, axis=1)
        return keras.ops.cast(keras.ops.isnan(picked), "float32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.columns))

    def get_config(self):
        return {**super().get_config(), "columns": self.columns}


def _check_names(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise invalid_argument(name, value, "a list of column names (non-empty strings)")
    # np.str_ is a str subclass that Keras cannot serialise as an input name.
    value = [str(v) for v in value]
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
        hints = "".join(f" For {c!r}:{did_you_mean(c, found)}" for c in missing if did_you_mean(c, found))
        raise DataError(f"Missing columns in `data`: {missing}; found columns: {found}.{hints}")
    columns: dict[str, np.ndarray] = {}
    lengths = set()
    for c in wanted:
        array = getter(c)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise DataError(f"Column {c!r} of `data` must be 1-d (one value per row); got shape {array.shape}.")
        columns[c] = array
        lengths.add(len(array))
    if len(lengths) > 1:
        raise DataError(f"Columns of `data` have different lengths: { {c: len(a) for c, a in columns.items()} }.")
    if lengths == {0}:
        raise DataError("`data` has no rows: the preprocessing layers need training data to adapt on.")
    return columns


def imputes_missing(model) -> bool:
    """True if ``model`` (or a model nested in it) fills NaN inputs itself (``impute="median"``).

    Such a model is trained and evaluated on NaN cells on purpose, so kerafine's
    NaN/inf input checks then refuse only infinities.
    """
    for layer in getattr(model, "layers", []):
        if isinstance(layer, NumericPreparation) and any(v is not None for v in layer.fill_values):
            return True
        if isinstance(layer, keras.Model) and imputes_missing(layer):
            return True
    return False


def _n_missing(array: np.ndarray) -> int:
    import pandas as pd

    return int(np.count_nonzero(pd.isna(array)))


def _numeric(name: str, array: np.ndarray, impute: str | None) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise DataError(
            f"Numeric column {name!r} of `data` has dtype {array.dtype}; expected numbers. "
            "List it in `categorical_features` if it holds categories."
        )
    array = array.astype("float32")
    n_inf = int(np.count_nonzero(np.isinf(array)))
    n_nan = int(np.count_nonzero(np.isnan(array)))
    if n_inf or (n_nan and impute is None):
        raise DataError(
            f"Numeric column {name!r} of `data` holds {n_nan + n_inf} NaN/inf values out of {array.size}; "
            + (
                "replace the inf values first."
                if n_inf
                else 'pass impute="median" (median fill plus a missing-indicator feature) or fill them first.'
            )
        )
    if n_nan == array.size:
        raise DataError(f"Numeric column {name!r} of `data` is missing in every row; drop it.")
    return array


def _categorical(name: str, array: np.ndarray) -> tuple[np.ndarray, str]:
    """Return the column as int64 or str values, and the Keras input dtype."""
    n_missing = _n_missing(array)
    if n_missing:
        raise DataError(
            f"Categorical column {name!r} of `data` holds {n_missing} missing values (NaN/None) "
            f'out of {len(array)}; fill them with an explicit category (e.g. "missing") first. '
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


def _prepare_numeric(numeric, raw, joined, impute, log1p):
    """Imputation, log1p and missing indicators as layers; also their training output."""
    missing = np.isnan(raw)
    fill = [float(np.nanmedian(raw[:, j])) if impute else None for j in range(raw.shape[1])]
    flags = [c in log1p for c in numeric]
    filled = np.where(missing, np.array([0.0 if v is None else v for v in fill], np.float32), raw)
    for j, c in enumerate(numeric):
        if flags[j] and filled[:, j].min() <= -1.0:
            raise DataError(
                f"Column {c!r} is listed in `log1p` but holds {filled[:, j].min():.6g} in the training data; "
                "log1p needs values > -1."
            )
    prepared = np.where(flags, np.log1p(np.where(flags, filled, 0.0)), filled).astype("float32")
    features = joined
    if impute or any(flags):
        features = NumericPreparation(fill, flags, name="numeric__preparation")(joined)
    flagged = [j for j in range(raw.shape[1]) if missing[:, j].any()]
    if flagged:
        indicators = MissingIndicator(flagged, name="numeric__missing_indicator")(joined)
        features = keras.layers.Concatenate(name="numeric__with_indicators")([features, indicators])
        prepared = np.concatenate([prepared, missing[:, flagged].astype("float32")], axis=1)
    names = list(numeric) + [f"{numeric[j]} (missing)" for j in flagged]
    constant = [names[j] for j in range(prepared.shape[1]) if np.ptp(prepared[:, j]) == 0]
    if constant:
        raise DataError(
            f"Numeric features {constant} are constant on the training rows, so they cannot be normalised "
            "(any other value at prediction time would be scaled by 1/epsilon); drop them or give more rows."
        )
    return features, prepared


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
    impute: str | None = None,
    log1p: Sequence[str] = (),
) -> keras.Model:
    """Build an encoder for numeric and categorical columns, adapted on training data.

    One named ``keras.Input`` per column (shape ``(1,)``; the input name is the
    column name), then:

    - numeric columns: with ``impute="median"`` missing values (NaN) filled with
      the training median and, for each column that had missing training
      values, a 0/1 missing-indicator feature; ``log1p`` on the listed
      (heavy-tailed count) columns; then a ``Normalization`` layer holding the
      training mean and variance of every one of these features, so every
      numeric feature the model reads is standardised (a column constant on the
      training rows cannot be, and is refused);
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
        impute: ``None`` (NaN in a numeric column is an error) or ``"median"``
            (fill with the training median, add a missing indicator; done by
            layers of the model, so prediction fills the same way).
            Defaults to ``None``.
        log1p: numeric columns to map through ``log(1 + x)`` before
            normalising (counts with a heavy right tail); their training values
            must be > -1. Defaults to ``()``.

    Returns:
        A functional ``keras.Model`` named ``"tabular_encoder"`` whose inputs are a
        dict keyed by column name and whose output is ``(batch, hidden[-1])``. Feed
        it ``{column: values}``, e.g. ``{c: df[c].to_numpy() for c in columns}``.

    Raises:
        DataError: columns missing from ``data`` (the message lists those found),
            NaN/None in a categorical column or NaN/inf in a numeric one (with the
            count; NaN allowed with ``impute="median"``), non-numeric values in
            a numeric column, a numeric column constant on the training rows,
            a ``log1p`` column with values <= -1, no rows.
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
    if impute not in _IMPUTE:
        raise invalid_argument("impute", impute, 'None or "median"')
    log1p = _check_names("log1p", list(log1p))
    strays = [c for c in log1p if c not in numeric]
    if strays:
        raise invalid_argument("log1p", log1p, f"columns of numeric_features {numeric}")

    columns = _columns(data, numeric + categorical)
    numeric_values = {c: _numeric(c, columns[c], impute) for c in numeric}
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
        raw = np.stack([numeric_values[c] for c in numeric], axis=1)
        features, prepared = _prepare_numeric(numeric, raw, joined, impute, log1p)
        normalization = keras.layers.Normalization(axis=-1, name="numeric__normalization")
        normalization.adapt(prepared)
        parts.append(normalization(features))
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
        embedded = keras.layers.Embedding(n_tokens, _embedding_dim(n_tokens, embedding_dim), name=f"{c}__embedding")(
            indices
        )
        parts.append(keras.layers.Flatten(name=f"{c}__flatten")(embedded))
    x = keras.layers.Concatenate(name="features__concat")(parts) if len(parts) > 1 else parts[0]
    for i, width in enumerate(hidden):
        x = keras.layers.Dense(width, activation="relu", name=f"encoder__dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"encoder__dropout_{i}")(x)
    return keras.Model(inputs, x, name="tabular_encoder")
