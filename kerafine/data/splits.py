"""Split tabular or server-metric data into train, validation and test without leakage, and normalise.

:func:`split_by_time` cuts the time span (the same cut points for every
server, with a ``gap`` before each cut so labels that look ahead do not leak);
:func:`split_by_group` keeps every group (server) in one part;
:class:`Normalizer` takes its statistics from the training part only.

Each takes a ``pandas.DataFrame`` or a :class:`~kerafine.data.ServerMetrics`
(from :func:`~kerafine.data.load_server_metrics`) and returns the same type.

Example:

>>> import pandas as pd
>>> from kerafine.data import split_by_group
>>> df = pd.DataFrame({"server": list("aabbccdd"), "v": [0.0, 1, 2, 3, 4, 5, 6, 7]})
>>> splits, norm = split_by_group(df, val=["b"], test=["c"]).normalized(["v"])
>>> round(float(splits.train["v"].mean()), 6), norm.columns
(0.0, ('v',))
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from kerafine.errors import DataError, KerafineError, check_number, invalid_argument

__all__ = ["Splits", "Normalizer", "split_by_time", "split_by_group"]


# Columns of a ServerMetrics frame that describe rows rather than measure the server.
_BOOKKEEPING = ("segment", "restart", "label")


def _is_server_metrics(data) -> bool:
    # Imported here: server_metrics re-exports this module's names at its top.
    from kerafine.data.server_metrics import ServerMetrics

    return isinstance(data, ServerMetrics)


@dataclasses.dataclass(frozen=True)
class Splits:
    """Train, validation and test parts of the same data (DataFrames or :class:`~kerafine.data.ServerMetrics`)."""

    train: Any
    val: Any
    test: Any

    def __iter__(self) -> Iterator[Any]:
        return iter((self.train, self.val, self.test))

    def normalized(self, columns: Sequence[str] | None = None) -> tuple[Splits, Normalizer]:
        """Standardise every part with statistics computed on ``train`` only.

        No column a model may read is left raw: by default the columns are, for
        :class:`~kerafine.data.ServerMetrics`, every numeric column except the
        bookkeeping ones (``segment``, ``restart``, ``label``): the features and
        ``uptime``, so ``windows(features=(*m.features, "uptime"))`` reads
        standardised uptime; for a DataFrame every numeric column.

        Args:
            columns: the columns to standardise. Defaults to ``None`` (see
                above). Given explicitly for a ServerMetrics, it must include
                every one of its ``features``.

        Returns:
            ``(splits, normalizer)``; apply ``normalizer`` to any later data too.

        Raises:
            DataError: ``columns`` leaves features of a ServerMetrics raw (the
                message names them).
        """
        if _is_server_metrics(self.train):
            frame = self.train.frame
            if columns is None:
                extra = [
                    c
                    for c in frame.columns
                    if c not in ("server", "timestamp", *_BOOKKEEPING)
                    and c not in self.train.features
                    and np.issubdtype(frame[c].dtype, np.number)
                ]
                columns = (*self.train.features, *extra)
            else:
                raw = [c for c in self.train.features if c not in list(columns)]
                if raw:
                    raise DataError(
                        f"Invalid value for argument `columns`: {list(columns)!r} leaves the features {raw} raw "
                        "(unscaled); include them, or drop them from the model's inputs with "
                        "dataclasses.replace(metrics, features=...) before splitting."
                    )
        norm = Normalizer.fit(self.train, columns)
        parts = [norm.apply(p) for p in self]
        return Splits(*parts), norm


def _frame_of(data):
    return data.frame if _is_server_metrics(data) else data


def _with_frame(data, frame):
    return dataclasses.replace(data, frame=frame) if _is_server_metrics(data) else frame


def _check_fraction(name, value):
    return check_number(
        name,
        value,
        minimum=0,
        maximum=1,
        min_inclusive=False,
        max_inclusive=False,
        expected="a fraction strictly between 0 and 1",
    )


def split_by_time(data, val: float = 0.2, test: float = 0.2, gap=None, time_col: str = "timestamp") -> Splits:
    """Split by time: the earliest rows train, the next validate, the latest test.

    The cut points are the same for every server (fractions of the overall time
    span), so no validation or test moment is seen during training. Labels look
    ahead, so the last ``gap`` steps before each cut point are dropped: a
    training row's label never depends on an event in the validation period.

    Args:
        data: a :class:`~kerafine.data.ServerMetrics` or a DataFrame with ``time_col``.
        val: fraction of the time span for validation. Defaults to 0.2.
        test: fraction of the time span for test (the end). Defaults to 0.2.
        gap: steps (int, needs a ServerMetrics) or a ``pandas.Timedelta``
            dropped before each cut. Defaults to ``None``: the label horizon
            of a ServerMetrics, 0 for a DataFrame.
        time_col: the timestamp column. Defaults to ``"timestamp"``.

    Returns:
        :class:`Splits` of the same type as ``data``.

    Raises:
        KerafineError: if the fractions are not in (0, 1) or leave no training time.

    Example:

    >>> import pandas as pd
    >>> df = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=10, freq="1h"), "v": range(10)})
    >>> s = split_by_time(df, val=0.2, test=0.2)
    >>> len(s.train), len(s.val), len(s.test), s.train["timestamp"].max() < s.val["timestamp"].min()
    (6, 2, 2, True)
    """
    import pandas as pd

    val = _check_fraction("val", val)
    test = _check_fraction("test", test)
    if val + test >= 1.0:
        raise invalid_argument(
            "val", val, f"a fraction with val + test < 1 (test={test})", "Leave some of the time span for training."
        )
    frame = _frame_of(data)
    if time_col not in frame.columns:
        raise DataError(
            f"Invalid value for argument `data`: it has no column {time_col!r}; found {list(frame.columns)}."
        )
    t = pd.to_datetime(frame[time_col])
    t0, t1 = t.min(), t.max()
    span = t1 - t0
    val_start = t0 + span * (1.0 - val - test)
    test_start = t0 + span * (1.0 - test)
    if gap is None:
        gap_td = data.freq * data.horizon if _is_server_metrics(data) else pd.Timedelta(0)
    elif isinstance(gap, numbers.Integral) and not isinstance(gap, bool):
        if not _is_server_metrics(data) or gap < 0:
            raise invalid_argument("gap", gap, "an int >= 0 with ServerMetrics data, or a pandas.Timedelta")
        gap_td = data.freq * int(gap)
    else:
        gap_td = pd.Timedelta(gap)
    # Rows within `gap` before a cut are dropped; the cut itself belongs to the later part.
    train = frame.loc[(t < val_start - gap_td).to_numpy()]
    valid = frame.loc[((t >= val_start) & (t < test_start - gap_td)).to_numpy()]
    tst = frame.loc[(t >= test_start).to_numpy()]
    for name, part in (("train", train), ("val", valid), ("test", tst)):
        if len(part) == 0:
            raise DataError(f"The {name} split is empty; use larger fractions or a smaller `gap`.")
    return Splits(*(_with_frame(data, p.reset_index(drop=True)) for p in (train, valid, tst)))


def _resolve_groups(name, value, all_groups, rng_order):
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        frac = _check_fraction(name, value)
        return max(1, int(round(frac * len(all_groups))))
    groups = [str(g) for g in value]
    unknown = [g for g in groups if g not in all_groups]
    if unknown:
        raise invalid_argument(
            name, unknown[0], f"a group id present in the data, one of {sorted(all_groups)[:10]}", error=DataError
        )
    return groups


def split_by_group(data, val=0.2, test=0.2, group_col: str = "server", seed: int = 0) -> Splits:
    """Split by group (server): every group's rows go entirely to one part.

    Args:
        data: a :class:`~kerafine.data.ServerMetrics` or a DataFrame with ``group_col``.
        val: fraction of the groups for validation, or a list of group ids.
            Defaults to 0.2.
        test: fraction of the groups for test, or a list of group ids.
            Defaults to 0.2.
        group_col: the group column. Defaults to ``"server"``.
        seed: seed of the shuffle of groups (fractions only). Defaults to 0.

    Returns:
        :class:`Splits` of the same type as ``data``; the remaining groups train.

    Raises:
        KerafineError / DataError: fractions outside (0, 1), unknown or
            overlapping group ids, or a part left without groups.

    Example:

    >>> import pandas as pd
    >>> df = pd.DataFrame({"server": list("aabbccdd"), "v": range(8)})
    >>> s = split_by_group(df, val=["b"], test=["c"])
    >>> sorted(s.train["server"].unique()), s.val["v"].tolist()
    (['a', 'd'], [2, 3])
    """
    frame = _frame_of(data)
    if group_col not in frame.columns:
        raise DataError(
            f"Invalid value for argument `data`: it has no column {group_col!r}; found {list(frame.columns)}."
        )
    g = frame[group_col].astype(str)
    all_groups = sorted(g.unique().tolist())
    rng = np.random.default_rng(seed)
    order = [all_groups[i] for i in rng.permutation(len(all_groups))]
    chosen: dict[str, list[str]] = {}
    remaining = list(order)
    for name, value in (("test", test), ("val", val)):
        r = _resolve_groups(name, value, set(all_groups), order)
        if isinstance(r, int):
            chosen[name] = remaining[:r]
            remaining = remaining[r:]
        else:
            clash = [x for x in r if x not in remaining]
            if clash:
                raise invalid_argument(name, clash[0], "a group id not already in another split", error=DataError)
            chosen[name] = r
            remaining = [x for x in remaining if x not in r]
    if not remaining:
        raise DataError(f"No group is left for training out of {len(all_groups)}; use smaller `val` / `test`.")
    parts = []
    for groups in (remaining, chosen["val"], chosen["test"]):
        if not groups:
            raise DataError("A split got no group; use larger fractions or more groups.")
        parts.append(_with_frame(data, frame.loc[g.isin(groups).to_numpy()].reset_index(drop=True)))
    return Splits(*parts)


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Per-column standardisation ``(x - mean) / std`` with statistics from training data.

    Attributes:
        columns: the standardised columns.
        mean: their training means, float64.
        std: their training standard deviations (1.0 where a column is constant).

    Example:

    >>> import pandas as pd
    >>> n = Normalizer.fit(pd.DataFrame({"a": [1.0, 3.0]}))
    >>> n.transform(pd.DataFrame({"a": [2.0, 5.0]}))["a"].tolist()
    [0.0, 3.0]
    """

    columns: tuple
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, data, columns: Sequence[str] | None = None) -> Normalizer:
        """Statistics of ``columns`` of ``data`` (a DataFrame or :class:`~kerafine.data.ServerMetrics`).

        ``columns`` defaults to the features of a ServerMetrics, or every
        numeric column of a DataFrame. NaN are ignored.
        """
        frame = _frame_of(data)
        if columns is None:
            if _is_server_metrics(data):
                columns = data.features
            else:
                columns = [c for c in frame.columns if np.issubdtype(frame[c].dtype, np.number)]
        columns = tuple(columns)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"Cannot normalise column {missing[0]!r}: not found; columns are {list(frame.columns)}.")
        values = frame[list(columns)].to_numpy(dtype=np.float64)
        if len(values) == 0:
            raise DataError("Cannot fit a Normalizer on 0 rows.")
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        return cls(columns=columns, mean=mean, std=std)

    def transform(self, frame):
        """A copy of ``frame`` with the columns standardised."""
        out = frame.copy()
        cols = list(self.columns)
        out[cols] = (frame[cols].to_numpy(dtype=np.float64) - self.mean) / self.std
        return out

    def apply(self, data):
        """:meth:`transform` for a DataFrame or a :class:`~kerafine.data.ServerMetrics`."""
        return _with_frame(data, self.transform(_frame_of(data)))

    def to_dict(self) -> dict:
        """JSON-able form (for ``report.json`` / reloading beside a saved model)."""
        return {"columns": list(self.columns), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(tuple(d["columns"]), np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64))
        except (KeyError, TypeError) as exc:
            raise KerafineError(f"Cannot read normalisation statistics {d!r}: {exc}") from exc
