"""Load a CSV of numeric and categorical columns for the tabular encoder.

:func:`load_tabular` reads the file with pandas, checks the columns, and
returns a :class:`TabularData` whose ``x`` is the ``{column: array}`` dict
that :func:`kerafine.backbones.tabular_encoder` takes both as ``data=`` (to
adapt its normalisation and vocabularies on the training rows) and as model
input.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from kerafine.errors import DataError, invalid_argument

__all__ = ["TabularData", "load_tabular"]


@dataclasses.dataclass(frozen=True)
class TabularData:
    """Columns of a table split into model inputs and label.

    Attributes:
        x: ``{column: (n,) array}``; numeric columns float32, categorical
            columns as strings.
        y: ``(n,)`` float32 labels, or ``None`` without a label column.
        numeric: names of the numeric columns.
        categorical: names of the categorical columns.
    """

    x: dict
    y: np.ndarray | None
    numeric: tuple
    categorical: tuple

    def __len__(self) -> int:
        return len(next(iter(self.x.values())))

    def take(self, index) -> "TabularData":
        """The rows at ``index`` (an int array or boolean mask)."""
        index = np.asarray(index)
        return TabularData(
            {k: v[index] for k, v in self.x.items()},
            None if self.y is None else self.y[index],
            self.numeric,
            self.categorical,
        )


def load_tabular(
    csv,
    label: str | None,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
) -> TabularData:
    """Read a table for the tabular encoder.

    Args:
        csv: a CSV path or a ``pandas.DataFrame``.
        label: the label column (0/1, or two distinct values mapped to 0/1 in
            sorted order), or ``None`` to load inputs only (for prediction).
        numeric: the numeric input columns. Defaults to ``None``: every
            numeric column except the label.
        categorical: the categorical input columns. Defaults to ``None``:
            every non-numeric column except the label.

    Returns:
        A :class:`TabularData`.

    Raises:
        DataError: a named column is missing (the message lists the columns
            found), a numeric column holds text, a numeric value is missing,
            the label has other than two classes, or the table is empty.

    Example:

    >>> import pandas as pd
    >>> df = pd.DataFrame({"price": [1.0, 2.0], "country": ["fr", "de"], "clicked": [0, 1]})
    >>> t = load_tabular(df, "clicked")
    >>> t.numeric, t.categorical, t.y.tolist()
    (('price',), ('country',), [0.0, 1.0])
    """
    import pandas as pd

    if isinstance(csv, pd.DataFrame):
        df, what = csv, "the DataFrame"
    elif isinstance(csv, (str, os.PathLike)):
        what = repr(os.fspath(csv))
        try:
            df = pd.read_csv(csv)
        except FileNotFoundError:
            raise invalid_argument("csv", os.fspath(csv), "the path of an existing CSV file", error=DataError) from None
        except (OSError, ValueError) as exc:
            raise DataError(f"Invalid value for argument `csv`: cannot read {what} ({exc}).") from exc
    else:
        raise invalid_argument("csv", csv, "a CSV path or a pandas DataFrame", error=DataError)
    found = [str(c) for c in df.columns]
    if len(df) == 0:
        raise DataError(f"Invalid value for argument `csv`: {what} has no rows.")
    for name, cols in (("label", [label] if label is not None else []), ("numeric", numeric or []),
                       ("categorical", categorical or [])):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataError(
                f"Invalid value for argument `{name}`: {what} has no column {missing[0]!r}; found columns {found}."
            )
    rest = [c for c in df.columns if c != label]
    if numeric is None:
        numeric = [c for c in rest if pd.api.types.is_numeric_dtype(df[c]) and c not in (categorical or [])]
    if categorical is None:
        categorical = [c for c in rest if not pd.api.types.is_numeric_dtype(df[c]) and c not in numeric]
    numeric, categorical = list(numeric), list(categorical)
    overlap = sorted(set(numeric) & set(categorical))
    if overlap:
        raise invalid_argument("categorical", overlap, "columns not also listed in `numeric`")
    if not numeric and not categorical:
        raise DataError(f"{what} has no input column besides the label {label!r}; found columns {found}.")
    x = {}
    for c in numeric:
        values = pd.to_numeric(df[c], errors="coerce")
        bad = values.isna() & df[c].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"Column {c!r} of {what} is listed as numeric but row {i} holds {df[c].iloc[i]!r}.")
        if values.isna().any():
            raise DataError(
                f"Column {c!r} of {what} has {int(values.isna().sum())} missing values; fill or drop them first."
            )
        x[c] = values.to_numpy(dtype=np.float32)
    for c in categorical:
        col = df[c]
        if col.isna().any():
            # A missing category is a category of its own rather than an error.
            col = col.astype(object).where(col.notna(), "<missing>")
        x[c] = col.astype(str).to_numpy()
    y = None
    if label is not None:
        raw = df[label]
        classes = sorted(pd.unique(raw.dropna()).tolist(), key=str)
        if raw.isna().any():
            raise DataError(f"Label column {label!r} of {what} has {int(raw.isna().sum())} missing values.")
        if len(classes) != 2:
            raise DataError(
                f"Label column {label!r} of {what} has {len(classes)} distinct value(s) {classes[:5]}; "
                "binary classification needs exactly 2."
            )
        if set(classes) <= {0, 1}:
            y = raw.to_numpy(dtype=np.float32)
        else:
            y = (raw.astype(str) == str(classes[1])).to_numpy(dtype=np.float32)
    return TabularData(x=x, y=y, numeric=tuple(numeric), categorical=tuple(categorical))
