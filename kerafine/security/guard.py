"""Rule-based input checks for serving: refuse rows unlike anything the model was trained on.

An :class:`InputGuard` is built from a :class:`kerafine.drift.ReferenceProfile`
of the training data (the profile already holds each feature's range, missing
count and categorical levels) and checks every row of a batch against four
rules:

* ``out_of_range``: a continuous value outside the training range
  ``[min, max]`` widened by ``margin`` times its width on each side;
* ``unseen_category``: a categorical level never seen in training;
* ``missing``: a missing value (NaN, None) in a feature that had none in training;
* ``dtype``: a continuous feature holding a value that is not a number.

A batch whose columns differ from the profile's (missing or extra columns) is
refused as a whole with a :class:`~kerafine.errors.DataError`: that is a wiring
bug, not a bad row. numpy and pandas only: no TensorFlow import.

Example:

>>> import numpy as np, pandas as pd
>>> from kerafine.drift import ReferenceProfile
>>> train = pd.DataFrame({"cpu": np.linspace(0, 100, 50), "region": ["eu", "us"] * 25})
>>> guard = InputGuard(ReferenceProfile.from_data(train), margin=0.1)
>>> result = guard.filter(pd.DataFrame({"cpu": [50.0, 250.0, None], "region": ["eu", "us", "mars"]}))
>>> len(result.accepted), result.reasons.tolist()
(1, ['cpu: out_of_range (250 outside [-10, 110])', 'cpu: missing; region: unseen_category (mars)'])
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np
import pandas as pd

from kerafine._display import displayable
from kerafine.drift.profile import _level_key
from kerafine.errors import DataError, invalid_argument

__all__ = ["InputGuard", "GuardReport", "FilterResult", "RULES"]

RULES = ("out_of_range", "unseen_category", "missing", "dtype")


@displayable
@dataclasses.dataclass(frozen=True)
class GuardReport:
    """Result of :meth:`InputGuard.check` (frozen).

    Attributes:
        n_rows: rows checked.
        violations: a DataFrame, one row per violation: ``row`` (position in
            the batch), ``column``, ``rule`` (one of :data:`RULES`), ``value``
            and ``detail``.
    """

    n_rows: int
    violations: pd.DataFrame

    @property
    def rejected_rows(self) -> np.ndarray:
        """Sorted positions of the rows with at least one violation."""
        return np.unique(self.violations["row"].to_numpy(dtype=np.int64))

    @property
    def ok(self) -> bool:
        """True when no row violates a rule."""
        return self.violations.empty

    def reasons(self) -> pd.Series:
        """One string per rejected row (indexed by position): ``"column: rule (detail); ..."``."""
        if self.violations.empty:
            return pd.Series([], dtype=object)
        text = (
            self.violations["column"]
            + ": "
            + self.violations["rule"]
            + self.violations["detail"].map(lambda d: f" ({d})" if d else "")
        )
        return text.groupby(self.violations["row"].to_numpy()).agg("; ".join)

    def counts(self) -> dict:
        """Violations per rule."""
        return {r: int((self.violations["rule"] == r).sum()) for r in RULES}

    def to_dict(self) -> dict:
        return {
            "n_rows": self.n_rows,
            "n_rejected": int(self.rejected_rows.size),
            "counts": self.counts(),
            "violations": [
                {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
                for row in self.violations.astype({"value": object}).to_dict("records")
            ],
        }

    def __str__(self) -> str:
        head = f"GuardReport: {self.rejected_rows.size} of {self.n_rows} rows violate a rule"
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items() if v)
        return head + (f" ({counts})" if counts else "")


@displayable
@dataclasses.dataclass(frozen=True)
class FilterResult:
    """Result of :meth:`InputGuard.filter`.

    Attributes:
        accepted: the rows that pass every rule (same type as the batch).
        rejected: the rows that do not.
        reasons: one string per rejected row, aligned with ``rejected``.
        report: the :class:`GuardReport` behind the split.
    """

    accepted: object
    rejected: object
    reasons: pd.Series
    report: GuardReport

    def _display(self):
        return "FilterResult", [
            ("accepted", f"{len(self.accepted)} rows"),
            ("rejected", f"{len(self.rejected)} rows"),
            ("report", str(self.report)),
        ]


class InputGuard:
    """Check batches against what the model was trained on (see the module docstring).

    Args:
        profile: a :class:`kerafine.drift.ReferenceProfile` of the training data.
        margin: widening of each continuous training range, as a fraction of
            its width (``max - min``) on each side; a constant feature is widened
            by ``margin * max(|value|, 1)``. Defaults to 0.05.
        rules: the rules to apply, a subset of :data:`RULES`. Defaults to all.

    Raises:
        KerafineError: ``profile`` is not a ReferenceProfile, ``margin`` < 0 or
            not finite, an unknown rule.

    Example:

    >>> import numpy as np
    >>> from kerafine.drift import ReferenceProfile
    >>> guard = InputGuard(ReferenceProfile.from_data(np.arange(20.0)[:, None]), margin=0.0)
    >>> guard.check(np.array([[5.0], [25.0]])).rejected_rows.tolist()
    [1]
    """

    def __init__(self, profile, margin: float = 0.05, rules=RULES):
        from kerafine.drift import ReferenceProfile

        if not isinstance(profile, ReferenceProfile):
            raise invalid_argument(
                "profile",
                type(profile).__name__,
                "a kerafine.drift.ReferenceProfile",
                "Build one with ReferenceProfile.from_data(train).",
            )
        if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not math.isfinite(margin) or margin < 0:
            raise invalid_argument("margin", margin, "a finite number >= 0 (a fraction of each training range)")
        rules = (rules,) if isinstance(rules, str) else tuple(rules)
        bad = [r for r in rules if r not in RULES]
        if bad or not rules:
            raise invalid_argument("rules", rules, f"a non-empty subset of {list(RULES)}")
        self.profile = profile
        self.margin = margin
        self.rules = rules
        self._reset()

    def _reset(self) -> None:
        p = self.profile
        self._bounds = {}
        for name in p.continuous:
            s = p.continuous_summary(name)
            lo, hi = float(s["min"]), float(s["max"])
            width = hi - lo if hi > lo else max(abs(lo), 1.0)
            self._bounds[name] = (lo - self.margin * width, hi + self.margin * width, int(s["n_missing"]))
        self._levels = {}
        for name in p.categorical:
            s = p.categorical_summary(name)
            self._levels[name] = (set(str(v) for v in s["levels"]), int(s["n_missing"]))

    def range_of(self, name: str) -> tuple[float, float]:
        """The accepted ``(low, high)`` of a continuous feature (training range widened by the margin)."""
        if name not in self._bounds:
            raise invalid_argument("name", name, f"a continuous feature among {list(self._bounds)}")
        lo, hi, _ = self._bounds[name]
        return lo, hi

    def _frame(self, batch) -> pd.DataFrame:
        names = list(self.profile.feature_names)
        if isinstance(batch, pd.DataFrame):
            frame = batch
            cols = [str(c) for c in frame.columns]
        else:
            if isinstance(batch, dict):
                frame = pd.DataFrame(batch)
                cols = [str(c) for c in frame.columns]
            else:
                arr = np.asarray(batch)
                if arr.ndim == 1 and len(names) == 1:
                    arr = arr[:, None]
                if arr.ndim != 2 or arr.shape[1] != len(names):
                    raise invalid_argument(
                        "batch",
                        f"an array of shape {arr.shape}",
                        f"a DataFrame with columns {names[:20]} or an array of shape (n, {len(names)})",
                        error=DataError,
                    )
                frame = pd.DataFrame(arr, columns=names)
                cols = names
        missing = [c for c in names if c not in cols]
        extra = [c for c in cols if c not in names]
        if missing or extra:
            detail = "; ".join(
                part
                for part in (f"missing {missing}" if missing else "", f"not in training {extra}" if extra else "")
                if part
            )
            raise invalid_argument(
                "batch",
                f"columns {cols[:20]}",
                f"the training columns {names[:20]}",
                f"The batch has other columns than the model was trained on ({detail}).",
                error=DataError,
            )
        if len(set(cols)) != len(cols):
            raise invalid_argument("batch", f"columns {cols[:20]}", "unique column names", error=DataError)
        frame = frame.set_axis(cols, axis=1)
        return frame

    def check(self, batch) -> GuardReport:
        """Every violation of every row of ``batch``.

        Args:
            batch: a DataFrame (or dict of columns) with the training columns in
                any order, or an array ``(n, n_features)`` in the profile's order.

        Returns:
            :class:`GuardReport`.

        Raises:
            DataError: the batch's columns differ from the training columns.
        """
        frame = self._frame(batch)
        rows, cols, rules, values, details = [], [], [], [], []

        def add(idx, name, rule, vals, detail_fn):
            for i, v in zip(idx.tolist(), vals):
                rows.append(i)
                cols.append(name)
                rules.append(rule)
                values.append(v)
                details.append(detail_fn(v))

        for name, (lo, hi, n_missing) in self._bounds.items():
            col = frame[name]
            raw = col.to_numpy()
            numeric = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            absent = pd.isna(col).to_numpy()
            wrong_type = np.isnan(numeric) & ~absent
            if col.dtype.kind == "O":
                # Booleans and numeric strings are not numbers the model was trained on.
                wrong_type |= np.array([isinstance(v, (str, bytes, bool, np.bool_)) for v in raw])
                numeric = np.where(wrong_type, np.nan, numeric)
            elif col.dtype.kind == "b":
                wrong_type = np.ones(len(col), bool)
                numeric = np.full(len(col), np.nan)
            if "dtype" in self.rules and wrong_type.any():
                idx = np.flatnonzero(wrong_type)
                add(idx, name, "dtype", raw[idx], lambda v: f"{type(v).__name__} in a numeric column")
            if "missing" in self.rules and n_missing == 0 and absent.any():
                idx = np.flatnonzero(absent)
                add(idx, name, "missing", [None] * idx.size, lambda v: "")
            outside = ~np.isnan(numeric) & ((numeric < lo) | (numeric > hi))
            if "out_of_range" in self.rules and outside.any():
                idx = np.flatnonzero(outside)
                add(
                    idx,
                    name,
                    "out_of_range",
                    numeric[idx],
                    lambda v, lo=lo, hi=hi: f"{v:.6g} outside [{lo:.6g}, {hi:.6g}]",
                )
        for name, (levels, n_missing) in self._levels.items():
            col = frame[name]
            absent = pd.isna(col).to_numpy()
            keys = np.array([None if a else _level_key(v) for v, a in zip(col.to_numpy(), absent)], dtype=object)
            unseen = np.array([k is not None and k not in levels for k in keys])
            if "missing" in self.rules and n_missing == 0 and absent.any():
                idx = np.flatnonzero(absent)
                add(idx, name, "missing", [None] * idx.size, lambda v: "")
            if "unseen_category" in self.rules and unseen.any():
                idx = np.flatnonzero(unseen)
                add(idx, name, "unseen_category", col.to_numpy()[idx], lambda v: f"{v}")
        order = (
            np.lexsort(
                (
                    np.array([self.profile.feature_names.index(c) for c in cols], dtype=np.int64),
                    np.array(rows, dtype=np.int64),
                )
            )
            if rows
            else []
        )
        violations = pd.DataFrame(
            {
                "row": np.array(rows, dtype=np.int64)[order] if rows else np.array([], dtype=np.int64),
                "column": pd.Series(cols, dtype=object).iloc[order].to_numpy() if rows else np.array([], dtype=object),
                "rule": pd.Series(rules, dtype=object).iloc[order].to_numpy() if rows else np.array([], dtype=object),
                "value": pd.Series(values, dtype=object).iloc[order].to_numpy() if rows else np.array([], dtype=object),
                "detail": pd.Series(details, dtype=object).iloc[order].to_numpy()
                if rows
                else np.array([], dtype=object),
            }
        )
        return GuardReport(int(len(frame)), violations)

    def filter(self, batch) -> FilterResult:
        """Split ``batch`` into accepted and rejected rows, with a reason per rejected row.

        Args:
            batch: as :meth:`check`.

        Returns:
            :class:`FilterResult`; ``accepted`` and ``rejected`` keep the
            batch's type (DataFrame, dict of arrays or array) and row order.

        Raises:
            DataError: as :meth:`check`.
        """
        report = self.check(batch)
        bad = np.zeros(report.n_rows, bool)
        bad[report.rejected_rows] = True

        def take(mask):
            if isinstance(batch, pd.DataFrame):
                return batch.iloc[np.flatnonzero(mask)]
            if isinstance(batch, dict):
                return {k: np.asarray(v)[mask] for k, v in batch.items()}
            return np.asarray(batch)[mask]

        reasons = report.reasons()
        if isinstance(batch, pd.DataFrame):
            reasons = pd.Series(
                reasons.to_numpy(), index=batch.index[reasons.index.to_numpy(dtype=np.int64)], dtype=object
            )
        return FilterResult(take(~bad), take(bad), reasons, report)

    def __repr__(self) -> str:
        return f"InputGuard(profile={self.profile!r}, margin={self.margin!r}, rules={list(self.rules)!r})"
