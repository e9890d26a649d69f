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
from collections.abc import Sequence

import numpy as np

from kerafine.errors import DataError, invalid_argument

__all__ = ["TabularData", "load_tabular", "check_numeric_columns"]

_MISSING = ("error", "keep")
# An object column is taken for a numeric one with a few bad cells (rather than
# a categorical one) when at least this share of its non-empty cells parse as numbers.
_NUMERIC_SHARE = 0.9


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

    def take(self, index) -> TabularData:
        """The rows at ``index`` (an int array or boolean mask)."""
        index = np.asarray(index)
        return TabularData(
            {k: v[index] for k, v in self.x.items()},
            None if self.y is None else self.y[index],
            self.numeric,
            self.categorical,
        )


def check_numeric_columns(df, numeric=None, *, source: str = "the table", first_line: int | None = None) -> list:
    """Refuse a numeric column that holds a non-numeric cell, naming it.

    The one check shared by :func:`load_tabular` (and so by ``kerafine fit``
    and ``kerafine evaluate``): a column declared numeric, or a column pandas
    read as text although nearly all its cells (at least 90 %) are numbers (a
    numeric column with a stray ``"n/a"`` or ``"12,5"``), is an error naming
    the column, the first bad row and its value. Empty cells are missing values,
    not bad cells. A text column with fewer numbers, or made only of digits
    (codes, ids), is left alone: categorical.

    Args:
        df: a ``pandas.DataFrame``.
        numeric: the declared numeric columns, or ``None`` to check only the
            inferred ones. Defaults to ``None``.
        source: how to name the table in messages. Defaults to ``"the table"``.
        first_line: the file line number of the first data row (2 for a CSV
            with a header, 1 without), to add the line to the message; ``None``
            for no line. Defaults to ``None``.

    Returns:
        The names of the columns that are numeric: the declared ones, or, if
        ``numeric`` is ``None``, those pandas read as numbers.

    Raises:
        DataError: ``Column 'x' of <source> is numeric (... values are
            numbers) but row 7 (line 9) holds 'abc'`` (row: 0-based data row).

    Example:

    >>> import pandas as pd
    >>> df = pd.DataFrame({"n": ["1", "2", "x"] + ["3"] * 20, "c": ["a", "b", "c"] + ["d"] * 20})
    >>> check_numeric_columns(df, source="t.csv", first_line=2)
    Traceback (most recent call last):
    ...
    kerafine.errors.DataError: Column 'n' of t.csv is numeric (22 of 23 values are numbers) but row 2 (line 4) holds 'x'; fix the cell, or list the column as categorical.
    """
    import pandas as pd

    declared = numeric is not None
    names = list(numeric) if declared else [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    candidates = names if declared else list(df.columns)
    for c in candidates:
        col = df[c]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue
        present = col.notna() & (col.astype(str).str.strip() != "")
        values = pd.to_numeric(col.where(present), errors="coerce")
        bad = present & values.isna()
        n_present = int(present.sum())
        n_ok = n_present - int(bad.sum())
        if not bad.any():
            continue  # declared: converted later; inferred: text of digits (codes, ids) stays categorical
        if not declared and n_ok < _NUMERIC_SHARE * n_present:
            continue  # a text column: categorical
        i = int(np.flatnonzero(bad.to_numpy())[0])
        where = f"row {i}" + ("" if first_line is None else f" (line {i + first_line})")
        share = f" ({n_ok} of {n_present} values are numbers)" if not declared else ""
        raise DataError(
            f"Column {str(c)!r} of {source} is {'listed as ' if declared else ''}numeric{share} "
            f"but {where} holds {col.iloc[i]!r}; fix the cell, or list the column as categorical."
        )
    return names


def load_tabular(
    csv,
    label: str | None,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    *,
    sep: str = ",",
    names: Sequence[str] | None = None,
    missing: str = "error",
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
        sep: the field separator of the CSV, e.g. ``"\\t"`` for
            tab-separated files. Defaults to ``","``.
        names: column names of a header-less CSV (Criteo-style click logs):
            the first line is then data. Defaults to ``None`` (the first line
            is the header).
        missing: what to do with empty numeric cells: ``"error"`` refuses
            them; ``"keep"`` keeps them as NaN for the encoder to impute
            (``tabular_encoder(..., impute="median")``, which also adds a
            missing-indicator feature). Defaults to ``"error"``.

    Returns:
        A :class:`TabularData`.

    Raises:
        DataError: a named column is missing (the message lists the columns
            found), a numeric column holds text (see
            :func:`check_numeric_columns`), a numeric value is missing and
            ``missing="error"``, the label has other than two classes, or the
            table is empty.
        KerafineError: a bad ``sep``, ``names`` or ``missing``.

    Example:

    >>> import pandas as pd
    >>> df = pd.DataFrame({"price": [1.0, 2.0], "country": ["fr", "de"], "clicked": [0, 1]})
    >>> t = load_tabular(df, "clicked")
    >>> t.numeric, t.categorical, t.y.tolist()
    (('price',), ('country',), [0.0, 1.0])
    """
    import pandas as pd

    if missing not in _MISSING:
        raise invalid_argument("missing", missing, '"error" or "keep"')
    if not isinstance(sep, str) or not sep:
        raise invalid_argument("sep", sep, 'a non-empty string, e.g. "," or "\\t"')
    if names is not None:
        if isinstance(names, str) or not all(isinstance(n, str) and n for n in names) or not len(names):
            raise invalid_argument("names", names, "a list of column names (non-empty strings)")
        if len(set(names)) != len(names):
            raise invalid_argument("names", names, "column names without duplicates")
        names = [str(n) for n in names]  # np.str_ -> str
    label = None if label is None else str(label)
    numeric = None if numeric is None else [str(c) for c in numeric]
    categorical = None if categorical is None else [str(c) for c in categorical]
    first_line = None
    if isinstance(csv, pd.DataFrame):
        df, what = csv, "the DataFrame"
    elif isinstance(csv, (str, os.PathLike)):
        what = repr(os.fspath(csv))
        first_line = 1 if names is not None else 2
        try:
            if names is None:
                df = pd.read_csv(csv, sep=sep)
            else:
                df = pd.read_csv(csv, sep=sep, header=None, names=names)
        except FileNotFoundError:
            raise invalid_argument("csv", os.fspath(csv), "the path of an existing CSV file", error=DataError) from None
        except (OSError, ValueError) as exc:
            raise DataError(f"Invalid value for argument `csv`: cannot read {what} ({exc}).") from exc
    else:
        raise invalid_argument("csv", csv, "a CSV path or a pandas DataFrame", error=DataError)
    found = [str(c) for c in df.columns]
    if len(df) == 0:
        raise DataError(f"Invalid value for argument `csv`: {what} has no rows.")
    for name, cols in (
        ("label", [label] if label is not None else []),
        ("numeric", numeric or []),
        ("categorical", categorical or []),
    ):
        absent = [c for c in cols if c not in df.columns]
        if absent:
            raise DataError(
                f"Invalid value for argument `{name}`: {what} has no column {absent[0]!r}; found columns {found}."
            )
    rest = [c for c in df.columns if c != label]
    if numeric is None:
        inferred = check_numeric_columns(
            df[[c for c in rest if c not in (categorical or [])]], source=what, first_line=first_line
        )
        numeric = [c for c in rest if c in inferred]
    else:
        check_numeric_columns(df, numeric, source=what, first_line=first_line)
    if categorical is None:
        categorical = [c for c in rest if c not in numeric]
    numeric, categorical = list(numeric), list(categorical)
    overlap = sorted(set(numeric) & set(categorical))
    if overlap:
        raise invalid_argument("categorical", overlap, "columns not also listed in `numeric`")
    if not numeric and not categorical:
        raise DataError(f"{what} has no input column besides the label {label!r}; found columns {found}.")
    x = {}
    for c in numeric:
        col = df[c]
        if not pd.api.types.is_numeric_dtype(col):
            col = col.where(col.astype(str).str.strip() != "")  # blank cells are missing values
        values = pd.to_numeric(col, errors="coerce")
        if values.isna().any() and missing == "error":
            first = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataError(
                f"Column {c!r} of {what} has {int(values.isna().sum())} missing values (first at row "
                f'{first}); fill or drop them, or pass missing="keep" and build the encoder with '
                'impute="median".'
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
