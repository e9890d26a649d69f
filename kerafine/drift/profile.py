"""What a drift check needs to remember of the reference data.

A :class:`ReferenceProfile` is built once from the training (reference) data
and is then all a :class:`~kerafine.drift.DriftDetector` needs: the training set
itself can be dropped. Per continuous feature it keeps the count of missing
values, mean, standard deviation, range, quantile bin edges with the exact bin
counts of the full data, and a bounded uniform sample of rows (kept sorted in
memory, so a KS check only sorts the current data). Per categorical feature it
keeps the exact count of every level. Memory is bounded by ``max_samples``
rows, whatever the size of the reference.

``save(path)`` writes a directory (``profile.json`` + ``profile.npz`` and a
``MANIFEST.json`` of CRC32 checksums) atomically through :mod:`kerafine._io`:
no pickle, and a truncated or corrupted file, or one written by a newer
kerafine, is refused with a clear :class:`~kerafine.errors.CheckpointError`.

Example:

>>> import numpy as np, pandas as pd, tempfile, os
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"cpu": rng.normal(size=500), "region": rng.choice(["eu", "us"], 500)})
>>> profile = ReferenceProfile.from_data(df)
>>> profile.feature_names, profile.categorical
(('cpu', 'region'), ('region',))
>>> path = os.path.join(tempfile.mkdtemp(), "ref-profile")
>>> profile.save(path)
>>> ReferenceProfile.load(path).n_rows
500
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kerafine import _io
from kerafine.errors import CheckpointError, DataError, check_int, invalid_argument

__all__ = ["ReferenceProfile", "FORMAT_VERSION", "MIN_ROWS"]

FORMAT_VERSION = 1
_KIND = "kerafine.drift.ReferenceProfile"
_STATE_NAME = "profile"

# Fewest non-missing rows per side below which a test is refused: the KS test
# cannot reach a Bonferroni-corrected significance with fewer than about 8
# current rows, and the chi-squared approximation needs two cells of expected
# count >= 5.
MIN_ROWS = {"ks": 10, "chi2": 10}


def _is_categorical_dtype(series) -> bool:
    dtype = getattr(series, "dtype", series)
    if isinstance(dtype, np.dtype):  # fast path: no pandas dispatch
        return dtype.kind not in "iuf"
    return not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def level_counts(values) -> tuple[dict[str, int], int]:
    """Counts of the non-missing levels of a categorical column, and the missing count.

    Levels are keyed by their string form; integer-valued floats become
    ``"3"`` rather than ``"3.0"``, so a column read as int in one CSV and as
    float (because of a NaN) in another still matches. Counting happens on the
    raw values first, so only the distinct values are converted.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        v = values.astype(np.float64, copy=False)
        v = v[np.isfinite(v)]
        uniq, cnt = np.unique(v, return_counts=True)
        pairs = zip(uniq.tolist(), cnt.tolist())
    else:
        vc = pd.Series(values).value_counts(dropna=True, sort=False)
        pairs = zip(vc.index, vc.to_numpy())
    counts: dict[str, int] = {}
    for v, c in pairs:
        if isinstance(v, float) and not np.isfinite(v):
            continue
        key = _level_key(v)
        counts[key] = counts.get(key, 0) + int(c)
    return counts, int(len(values) - sum(counts.values()))


def _level_key(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, np.generic):
        return str(v.item())
    return str(v)


class Table:
    """Named columns of a DataFrame or of a numeric 2-d array, read column-block-wise.

    Numeric arrays are never turned into a DataFrame: a drift check of a
    ``(250, 55)`` array then costs microseconds of bookkeeping, not milliseconds.
    """

    def __init__(self, names, n_rows, frame=None, array=None):
        self.names = list(names)
        self.n_rows = int(n_rows)
        self._frame = frame
        self._array = array
        self._index = {n: i for i, n in enumerate(self.names)}

    @classmethod
    def of(cls, x, feature_names=None, argument: str = "x") -> Table:
        """Wrap a DataFrame, a Series, a dict of columns or a 1-d/2-d array."""
        if isinstance(x, (pd.DataFrame, pd.Series, dict)):
            if feature_names is not None and isinstance(x, pd.DataFrame):
                raise invalid_argument(
                    "feature_names", feature_names, "None when the data is a DataFrame (its column names are used)"
                )
            df = x.to_frame() if isinstance(x, pd.Series) else (pd.DataFrame(x) if isinstance(x, dict) else x)
            names = [str(c) for c in df.columns]
            if names != list(df.columns):
                df = df.set_axis(names, axis=1)
            table = cls(names, len(df), frame=df)
        else:
            try:
                arr = np.asarray(x)
            except Exception as exc:  # noqa: BLE001 - any unconvertible object
                raise invalid_argument(argument, type(x).__name__, "a pandas DataFrame or a 1-d/2-d array") from exc
            if arr.ndim == 1:
                arr = arr[:, None]
            if arr.ndim != 2:
                raise invalid_argument(
                    argument,
                    f"array of shape {arr.shape}",
                    "a pandas DataFrame or a 1-d/2-d array (n_samples, n_features)",
                    "Flatten images first, or monitor embeddings instead.",
                    error=DataError,
                )
            if feature_names is None:
                names = [f"f{i}" for i in range(arr.shape[1])]
            else:
                names = [str(n) for n in feature_names]
                if len(names) != arr.shape[1]:
                    raise invalid_argument(
                        "feature_names", feature_names, f"{arr.shape[1]} names (one per column of `{argument}`)"
                    )
            if arr.dtype.kind in "iuf":
                table = cls(names, arr.shape[0], array=arr)
            else:  # strings, objects, booleans: let pandas hold them
                table = cls(names, arr.shape[0], frame=pd.DataFrame(arr, columns=names))
        if len(set(table.names)) != len(table.names):
            dup = sorted({c for c in table.names if table.names.count(c) > 1})
            raise invalid_argument(argument, f"columns {dup} repeated", "unique column names", error=DataError)
        if not table.names:
            raise invalid_argument(argument, "no columns", "at least one feature", error=DataError)
        return table

    def renamed(self, names) -> Table:
        """The same columns under new names (positional), for arrays matched to a reference."""
        if self._array is not None:
            return Table(names, self.n_rows, array=self._array)
        return Table(names, self.n_rows, frame=self._frame.set_axis(list(names), axis=1))

    def is_categorical(self, name: str) -> bool:
        if self._array is not None:
            return False
        return _is_categorical_dtype(self._frame.dtypes.iloc[self._index[name]])

    def column(self, name: str):
        if self._array is not None:
            return self._array[:, self._index[name]]
        return self._frame.iloc[:, self._index[name]]

    def level_counts(self, name: str) -> tuple[dict[str, int], int]:
        return level_counts(self.column(name))

    def numeric(self, names: Sequence[str], argument: str) -> np.ndarray:
        """``(p, n)`` float64 matrix of the named columns, one feature a row; non-finite -> NaN."""
        if not names:
            return np.empty((0, self.n_rows), dtype=np.float64)
        idx = [self._index[n] for n in names]
        if self._array is not None:
            block = self._array if idx == list(range(self._array.shape[1])) else self._array[:, idx]
            out = np.array(block.T, dtype=np.float64, order="C")
        elif not any(self.is_categorical(n) for n in names):
            sub = self._frame if idx == list(range(self._frame.shape[1])) else self._frame.iloc[:, idx]
            # One block conversion; transposed so each feature is a contiguous row.
            out = np.array(sub.to_numpy(dtype=np.float64, na_value=np.nan).T, order="C")
        else:
            out = np.empty((len(names), self.n_rows), dtype=np.float64)
            for i, name in enumerate(names):
                col = self.column(name)
                try:
                    out[i] = pd.to_numeric(col, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
                except (TypeError, ValueError):
                    raise DataError(
                        f"Invalid value for argument `{argument}`: column {name!r} is continuous in the reference "
                        f"but holds non-numeric values (dtype {col.dtype}); convert it or declare it categorical."
                    ) from None
        out[~np.isfinite(out)] = np.nan
        return out


class ReferenceProfile:
    """Summary of the reference data that later drift checks compare against.

    Build it with :meth:`from_data` or :meth:`load`; it is immutable afterwards.

    Attributes:
        feature_names: all feature names, in order.
        categorical: names of the categorical features.
        continuous: names of the continuous features.
        n_rows: rows in the reference data.
        max_samples: bound on the rows kept for the KS and MMD tests.
    """

    def __init__(
        self, *, feature_names, categorical, n_rows, max_samples, n_bins, cont, cat, sample, seed, _sorted=None
    ):
        self.feature_names = tuple(feature_names)
        self.categorical = tuple(categorical)
        self.continuous = tuple(n for n in self.feature_names if n not in set(self.categorical))
        self.n_rows = int(n_rows)
        self.max_samples = int(max_samples)
        self.n_bins = int(n_bins)
        self.seed = seed
        # Continuous summaries: arrays with one row per continuous feature.
        self._cont = {k: np.asarray(v) for k, v in cont.items()}
        # Categorical summaries: {name: {"levels": [...], "counts": [...], "n_missing": int}}.
        self._cat = {k: dict(v) for k, v in cat.items()}
        self.sample = np.asarray(sample, dtype=np.float64)  # (k, p_cont), rows kept together for MMD
        self.sample.setflags(write=False)
        # Sorted once here; every check then only sorts the current data.
        sorted_t = np.sort(self.sample.T, axis=1) if _sorted is None else _sorted  # NaN sort last
        self._sample_valid = np.sum(~np.isnan(sorted_t), axis=1)
        self._sorted = sorted_t
        self._sorted.setflags(write=False)

    # ------------------------------------------------------------------ build
    @classmethod
    def from_data(
        cls,
        x,
        feature_names: Sequence[str] | None = None,
        categorical: Sequence[str | int] | None = None,
        max_samples: int = 50_000,
        n_bins: int = 20,
        seed: int | None = 0,
    ) -> ReferenceProfile:
        """Profile reference data.

        Args:
            x: a pandas DataFrame, or an array of shape ``(n_samples, n_features)``
                (or ``(n_samples,)`` for one feature).
            feature_names: names for the columns of an array. Defaults to
                ``None``: ``"f0", "f1", ...`` (DataFrames keep their own names).
            categorical: names (or column positions) of categorical features.
                Non-numeric and boolean columns are categorical anyway.
                Defaults to ``None``.
            max_samples: rows kept (uniformly at random, the same rows for every
                feature) for the KS and MMD tests. Defaults to 50,000.
            n_bins: quantile bins for PSI and Jensen-Shannon. Defaults to 20.
            seed: seed of the subsample. Defaults to 0.

        Returns:
            The :class:`ReferenceProfile`.

        Raises:
            DataError: if ``x`` is not 1-d/2-d, has fewer than 10 rows, or a
                column is entirely missing.
            KerafineError: if ``categorical`` names an unknown column.

        Warns:
            UserWarning: for a constant continuous feature (any later change of
                it will be reported, since the reference has no spread).
        """
        check_int("max_samples", max_samples, minimum=MIN_ROWS["ks"])
        check_int("n_bins", n_bins, minimum=2)
        table = Table.of(x, feature_names, argument="x")
        names = table.names
        cats = _resolve_categorical(categorical, names)
        cats |= {n for n in names if table.is_categorical(n)}
        if table.n_rows < max(MIN_ROWS.values()):
            raise DataError(
                f"Invalid value for argument `x`: the reference has {table.n_rows} rows; the drift tests "
                f"(Kolmogorov-Smirnov, chi-squared) need at least {max(MIN_ROWS.values())}."
            )
        cat_names = [n for n in names if n in cats]
        cont_names = [n for n in names if n not in cats]
        mat = table.numeric(cont_names, "x")  # (p, n)
        valid = ~np.isnan(mat)
        n_valid = valid.sum(axis=1)
        empty = [n for n, k in zip(cont_names, n_valid) if k == 0]
        cat_counts = {name: table.level_counts(name) for name in cat_names}
        empty += [n for n in cat_names if cat_counts[n][1] == table.n_rows]
        if empty:
            raise DataError(
                f"Invalid value for argument `x`: column(s) {empty} hold no value in the reference "
                "(all missing); drop them or give a reference where they are observed."
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(mat, axis=1) if cont_names else np.zeros(0)
            std = np.nanstd(mat, axis=1) if cont_names else np.zeros(0)
        lo = np.nanmin(mat, axis=1) if cont_names else np.zeros(0)
        hi = np.nanmax(mat, axis=1) if cont_names else np.zeros(0)
        constant = [n for n, a, b in zip(cont_names, lo, hi) if a == b]
        if constant:
            warnings.warn(
                f"Feature(s) {constant} are constant in the reference: any other value in the current data "
                "will be reported as drift (the effect is the share of rows that differ).",
                UserWarning,
                stacklevel=2,
            )
        probs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
        inner = np.empty((len(cont_names), n_bins - 1))
        counts = np.zeros((len(cont_names), n_bins), dtype=np.int64)
        sorted_full = np.sort(mat, axis=1)
        for k in np.unique(n_valid):
            rows_k = np.flatnonzero(n_valid == k)
            # numpy's default (linear) quantiles of every feature with k values at once.
            pos = probs * (k - 1)
            lo_i = np.floor(pos).astype(np.int64)
            hi_i = np.minimum(lo_i + 1, k - 1)
            frac = pos - lo_i
            block = sorted_full[rows_k]
            inner[rows_k] = block[:, lo_i] + (block[:, hi_i] - block[:, lo_i]) * frac
        for i in range(len(cont_names)):
            v = sorted_full[i, : n_valid[i]]
            cuts = np.searchsorted(v, inner[i], side="left")
            counts[i] = np.diff(np.concatenate([[0], cuts, [v.size]]))
        rng = np.random.default_rng(seed)
        n = table.n_rows
        if n > max_samples:
            rows = np.sort(rng.choice(n, max_samples, replace=False))
            sample, presorted = mat[:, rows].T.copy(), None
        else:  # the whole reference is the sample: reuse its sort
            sample, presorted = mat.T, sorted_full
        del mat
        cat = {}
        for name in cat_names:
            counts_map, n_missing = cat_counts[name]
            levels = sorted(counts_map)
            cat[name] = {"levels": levels, "counts": [counts_map[k] for k in levels], "n_missing": n_missing}
        cont = {
            "n_valid": n_valid.astype(np.int64),
            "mean": mean,
            "std": std,
            "min": lo,
            "max": hi,
            "inner_edges": inner,
            "bin_counts": counts,
        }
        return cls(
            feature_names=names,
            categorical=cat_names,
            n_rows=n,
            max_samples=max_samples,
            n_bins=n_bins,
            cont=cont,
            cat=cat,
            sample=sample,
            seed=seed,
            _sorted=presorted,
        )

    @classmethod
    def from_batches(
        cls,
        batches,
        feature_names: Sequence[str] | None = None,
        categorical: Sequence[str | int] | None = None,
        max_samples: int = 50_000,
        n_bins: int = 20,
        seed: int | None = 0,
    ) -> ReferenceProfile:
        """Profile reference data too large for memory, one batch at a time.

        Counts, missing values, means, standard deviations, ranges and
        categorical level counts are exact over all batches; the KS/MMD sample
        is a uniform reservoir sample of ``max_samples`` rows (Vitter's
        algorithm R, so each row is kept with the same probability whatever
        its batch). The quantile bins of PSI/Jensen-Shannon, which would need
        a second pass to count exactly, are taken from the reservoir.

        Args:
            batches: an iterable of DataFrames or 2-d arrays with the same columns.
            feature_names: column names for arrays. Defaults to ``None``.
            categorical: as in :meth:`from_data`. Defaults to ``None``.
            max_samples: reservoir size. Defaults to 50,000.
            n_bins: quantile bins. Defaults to 20.
            seed: seed of the reservoir. Defaults to 0.

        Returns:
            The :class:`ReferenceProfile`.

        Raises:
            DataError: if a batch's columns differ from the first batch's, or
                the batches hold fewer than 10 rows in all.

        Example:

        >>> rng = np.random.default_rng(0)
        >>> chunks = (rng.normal(size=(1000, 3)) for _ in range(5))
        >>> p = ReferenceProfile.from_batches(chunks, max_samples=2000)
        >>> p.n_rows, p.sample.shape
        (5000, (2000, 3))
        """
        check_int("max_samples", max_samples, minimum=MIN_ROWS["ks"])
        rng = np.random.default_rng(seed)
        names = cont_names = cat_names = None
        reservoir = None
        seen = 0
        n_valid = total = m2 = lo = hi = None
        cat_counts: dict[str, dict[str, int]] = {}
        cat_missing: dict[str, int] = {}
        for b, batch in enumerate(batches):
            table = Table.of(batch, feature_names, argument=f"batches[{b}]")
            if names is None:
                names = table.names
                cats = _resolve_categorical(categorical, names) | {n for n in names if table.is_categorical(n)}
                cat_names = [n for n in names if n in cats]
                cont_names = [n for n in names if n not in cats]
                p = len(cont_names)
                reservoir = np.empty((max_samples, p))
                n_valid, total, m2 = np.zeros(p, np.int64), np.zeros(p), np.zeros(p)
                lo, hi = np.full(p, np.inf), np.full(p, -np.inf)
                cat_counts = {n: {} for n in cat_names}
                cat_missing = {n: 0 for n in cat_names}
            elif table.names != names:
                raise DataError(
                    f"Invalid value for argument `batches`: batch {b} has columns {table.names[:10]}, "
                    f"the first batch had {names[:10]}; every batch needs the same columns in the same order."
                )
            mat = table.numeric(cont_names, f"batches[{b}]")
            k = table.n_rows
            # Exact moments: Chan et al.'s pairwise merge of (count, mean, M2).
            valid = ~np.isnan(mat)
            kb = valid.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_b = np.where(kb > 0, np.nansum(mat, axis=1) / np.maximum(kb, 1), 0.0)
                m2_b = np.nansum((mat - mean_b[:, None]) ** 2, axis=1)
                mean_a = np.where(n_valid > 0, total / np.maximum(n_valid, 1), 0.0)
                n_ab = n_valid + kb
                delta = mean_b - mean_a
                m2 = m2 + m2_b + delta**2 * n_valid * kb / np.maximum(n_ab, 1)
            total = total + np.nansum(mat, axis=1)
            n_valid = n_ab
            if k:
                lo = np.fmin(lo, np.nanmin(np.where(valid, mat, np.inf), axis=1))
                hi = np.fmax(hi, np.nanmax(np.where(valid, mat, -np.inf), axis=1))
            # Reservoir (algorithm R), vectorised over the batch's rows.
            rows = mat.T
            fill = min(max(max_samples - seen, 0), k)
            reservoir[seen : seen + fill] = rows[:fill]
            if k > fill:
                positions = seen + np.arange(fill, k)
                slots = (rng.random(positions.size) * (positions + 1)).astype(np.int64)
                keep = slots < max_samples
                # Later rows overwrite earlier ones in the same slot, as in sequential order.
                reservoir[slots[keep]] = rows[fill:][keep]
            seen += k
            for name in cat_names:
                counts, missing = table.level_counts(name)
                acc = cat_counts[name]
                for key, c in counts.items():
                    acc[key] = acc.get(key, 0) + c
                cat_missing[name] += missing
        if names is None or seen < max(MIN_ROWS.values()):
            raise DataError(
                f"Invalid value for argument `batches`: they hold {seen} rows in all; the drift tests need at least "
                f"{max(MIN_ROWS.values())}."
            )
        empty = [n for n, c in zip(cont_names, n_valid) if c == 0] + [n for n in cat_names if not cat_counts[n]]
        if empty:
            raise DataError(f"Invalid value for argument `batches`: column(s) {empty} hold no value (all missing).")
        sample = reservoir[: min(seen, max_samples)]
        sorted_t = np.sort(sample.T, axis=1)
        s_valid = np.sum(~np.isnan(sorted_t), axis=1)
        probs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
        inner = np.empty((len(cont_names), n_bins - 1))
        bin_counts = np.zeros((len(cont_names), n_bins), dtype=np.int64)
        for i in range(len(cont_names)):
            v = sorted_t[i, : s_valid[i]]
            if v.size == 0:  # all of this column's sampled rows were missing
                inner[i] = lo[i]
                continue
            inner[i] = np.quantile(v, probs)
            cuts = np.searchsorted(v, inner[i], side="left")
            bin_counts[i] = np.diff(np.concatenate([[0], cuts, [v.size]]))
        constant = [n for n, a, b in zip(cont_names, lo, hi) if a == b]
        if constant:
            warnings.warn(
                f"Feature(s) {constant} are constant in the reference: any other value in the current data "
                "will be reported as drift (the effect is the share of rows that differ).",
                UserWarning,
                stacklevel=2,
            )
        cont = {
            "n_valid": n_valid,
            "mean": total / np.maximum(n_valid, 1),
            "std": np.sqrt(m2 / np.maximum(n_valid, 1)),
            "min": lo,
            "max": hi,
            "inner_edges": inner,
            "bin_counts": bin_counts,
        }
        cat = {}
        for name in cat_names:
            levels = sorted(cat_counts[name])
            cat[name] = {
                "levels": levels,
                "counts": [cat_counts[name][k] for k in levels],
                "n_missing": cat_missing[name],
            }
        return cls(
            feature_names=names,
            categorical=cat_names,
            n_rows=seen,
            max_samples=max_samples,
            n_bins=n_bins,
            cont=cont,
            cat=cat,
            sample=sample,
            seed=seed,
            _sorted=sorted_t,
        )

    @classmethod
    def merge(cls, profiles, max_samples: int | None = None, seed: int | None = 0) -> ReferenceProfile:
        """Combine profiles of disjoint shards of the reference data into one.

        What a fleet (or each worker of a multi-worker job) profiles shard by
        shard merges here into the profile of all the rows: row and missing
        counts, level counts, ranges, means and standard deviations are exact
        (pooled moments, Chan et al.); the KS/MMD sample is a uniform sample
        of all rows: how many rows come from each shard is drawn from the
        multivariate hypergeometric law of a uniform sample of the whole (so a
        shard with 3 times the rows gives about 3 times the sample rows), then
        that many rows are drawn uniformly from the shard's own sample. The
        quantile bins of PSI/Jensen-Shannon are taken from the merged sample,
        as :meth:`from_batches` does.

        Args:
            profiles: a non-empty sequence of :class:`ReferenceProfile` with the
                same features, categorical features and ``n_bins``.
            max_samples: rows of the merged sample. Defaults to ``None``: the
                smallest ``max_samples`` of ``profiles`` (no larger value can be
                drawn uniformly from their samples).
            seed: seed of the merged sample. Defaults to 0.

        Returns:
            The merged :class:`ReferenceProfile`.

        Raises:
            KerafineError: if ``profiles`` is empty or holds something else than
                profiles, the profiles do not describe the same features, or
                ``max_samples`` exceeds a profile's own ``max_samples``.

        Example:

        >>> rng = np.random.default_rng(0)
        >>> a = ReferenceProfile.from_data(rng.normal(size=(300, 2)), max_samples=100)
        >>> b = ReferenceProfile.from_data(rng.normal(size=(100, 2)), max_samples=100)
        >>> merged = ReferenceProfile.merge([a, b])
        >>> merged.n_rows, merged.sample.shape
        (400, (100, 2))
        """
        if isinstance(profiles, ReferenceProfile) or not isinstance(profiles, Sequence) or not profiles:
            raise invalid_argument("profiles", profiles, "a non-empty list of ReferenceProfile")
        bad = [i for i, p in enumerate(profiles) if not isinstance(p, ReferenceProfile)]
        if bad:
            raise invalid_argument(
                "profiles", profiles, f"a list of ReferenceProfile only (items {bad} are of another type)"
            )
        first = profiles[0]
        for i, p in enumerate(profiles[1:], start=1):
            for attr in ("feature_names", "categorical", "n_bins"):
                if getattr(p, attr) != getattr(first, attr):
                    raise invalid_argument(
                        "profiles",
                        f"profiles[{i}].{attr} = {getattr(p, attr)!r}",
                        f"profiles of the same features: profiles[0].{attr} = {getattr(first, attr)!r}",
                    )
        smallest = min(p.max_samples for p in profiles)
        if max_samples is None:
            max_samples = smallest
        elif (
            isinstance(max_samples, bool)
            or not isinstance(max_samples, (int, np.integer))
            or not (MIN_ROWS["ks"] <= max_samples <= smallest)
        ):
            raise invalid_argument(
                "max_samples",
                max_samples,
                f"None or an int from {MIN_ROWS['ks']} to {smallest} (the smallest max_samples of the profiles)",
            )
        rng = np.random.default_rng(seed)
        n_rows = np.array([p.n_rows for p in profiles], dtype=np.int64)
        m = int(min(max_samples, n_rows.sum()))
        # Shard shares of a uniform sample of m rows out of all rows.
        share = rng.multivariate_hypergeometric(n_rows, m)
        parts = []
        for p, c in zip(profiles, share):
            # c <= len(p.sample): c <= n_rows and c <= m <= p.max_samples.
            parts.append(p.sample[rng.choice(len(p.sample), int(c), replace=False)])
        sample = np.concatenate(parts, axis=0)[rng.permutation(m)]
        # Exact pooled moments, per continuous feature.
        cont = [p._cont for p in profiles]
        n_valid = np.sum([c["n_valid"] for c in cont], axis=0).astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            weights = np.array([c["n_valid"] for c in cont], dtype=np.float64)
            means = np.array([c["mean"] for c in cont], dtype=np.float64)
            mean = np.sum(weights * means, axis=0) / np.maximum(n_valid, 1)
            m2 = np.sum(weights * np.array([c["std"] for c in cont], dtype=np.float64) ** 2, axis=0)
            m2 = m2 + np.sum(weights * (means - mean) ** 2, axis=0)
            std = np.sqrt(m2 / np.maximum(n_valid, 1))
        lo = np.min([c["min"] for c in cont], axis=0)
        hi = np.max([c["max"] for c in cont], axis=0)
        sorted_t = np.sort(sample.T, axis=1)
        s_valid = np.sum(~np.isnan(sorted_t), axis=1)
        n_bins = first.n_bins
        probs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
        inner = np.empty((len(first.continuous), n_bins - 1))
        bin_counts = np.zeros((len(first.continuous), n_bins), dtype=np.int64)
        for i in range(len(first.continuous)):
            v = sorted_t[i, : s_valid[i]]
            if v.size == 0:
                inner[i] = lo[i]
                continue
            inner[i] = np.quantile(v, probs)
            cuts = np.searchsorted(v, inner[i], side="left")
            bin_counts[i] = np.diff(np.concatenate([[0], cuts, [v.size]]))
        cat = {}
        for name in first.categorical:
            acc: dict[str, int] = {}
            for p in profiles:
                for level, count in zip(p._cat[name]["levels"], p._cat[name]["counts"]):
                    acc[level] = acc.get(level, 0) + int(count)
            levels = sorted(acc)
            cat[name] = {
                "levels": levels,
                "counts": [acc[k] for k in levels],
                "n_missing": sum(int(p._cat[name]["n_missing"]) for p in profiles),
            }
        return cls(
            feature_names=first.feature_names,
            categorical=first.categorical,
            n_rows=int(n_rows.sum()),
            max_samples=int(max_samples),
            n_bins=n_bins,
            cont={
                "n_valid": n_valid,
                "mean": mean,
                "std": std,
                "min": lo,
                "max": hi,
                "inner_edges": inner,
                "bin_counts": bin_counts,
            },
            cat=cat,
            sample=sample,
            seed=seed,
            _sorted=sorted_t,
        )

    # ------------------------------------------------------------ accessors
    def is_categorical(self, name: str) -> bool:
        return name in self._cat

    def continuous_summary(self, name: str) -> dict[str, Any]:
        """Summary of one continuous feature: counts, moments, bins and the sorted sample."""
        i = self.continuous.index(name)
        out = {k: v[i] for k, v in self._cont.items()}
        out["n_missing"] = self.n_rows - int(out["n_valid"])
        out["sorted_sample"] = self._sorted[i, : self._sample_valid[i]]
        return out

    def categorical_summary(self, name: str) -> dict[str, Any]:
        """``{"levels": [...], "counts": [...], "n_missing": int}`` of one categorical feature."""
        return dict(self._cat[name])

    @property
    def sorted_sample(self) -> np.ndarray:
        """``(p_cont, k)`` sorted reference sample, one continuous feature a row, NaN last (read-only)."""
        return self._sorted

    @property
    def sample_valid(self) -> np.ndarray:
        """Non-missing values per row of :attr:`sorted_sample`."""
        return self._sample_valid

    @property
    def cont_arrays(self) -> dict[str, np.ndarray]:
        """Per-continuous-feature arrays (``n_valid``, ``mean``, ``std``, ``inner_edges``, ``bin_counts``...)."""
        return self._cont

    def __repr__(self) -> str:
        return (
            f"ReferenceProfile(n_rows={self.n_rows}, continuous={len(self.continuous)}, "
            f"categorical={len(self.categorical)}, sample_rows={self.sample.shape[0]})"
        )

    # ----------------------------------------------------------------- I/O
    def _state(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "kind": _KIND,
            "feature_names": list(self.feature_names),
            "categorical": list(self.categorical),
            "n_rows": self.n_rows,
            "max_samples": self.max_samples,
            "n_bins": self.n_bins,
            "seed": self.seed,
            "cont": dict(self._cont),
            "cat": self._cat,
            "sample": np.asarray(self.sample),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the profile to the directory ``path`` atomically.

        The directory is built under a temporary name, checksummed and renamed
        into place; an existing profile at ``path`` is replaced only once the
        new one is complete.

        Raises:
            KerafineError: if ``path`` exists and is not a saved profile.
        """
        path = Path(path)
        if path.exists() and not _is_profile_dir(path):
            raise invalid_argument(
                "path",
                os.fspath(path),
                "a new path or an existing profile directory",
                "It exists and is not a profile.",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.new-{uuid.uuid4().hex[:8]}")
        with _io.atomic_directory(staging, manifest_meta={"kind": _KIND, "format_version": FORMAT_VERSION}) as tmp:
            _io.save_state(tmp, _STATE_NAME, self._state())
        if path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(path, old)
            os.rename(staging, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, path)
        _io.fsync_dir(path.parent)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReferenceProfile:
        """Read a profile written by :meth:`save`.

        Raises:
            CheckpointError: if ``path`` is missing, fails its checksums, is not
                a profile, or was written by a newer kerafine (format version).
        """
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"No saved reference profile at {os.fspath(path)!r} (expected a directory).")
        problems = _io.verify_manifest(path)
        if problems:
            raise CheckpointError(
                f"The reference profile at {os.fspath(path)!r} is corrupted or incomplete: "
                + "; ".join(problems)
                + ". Rebuild it with ReferenceProfile.from_data(...).save(path)."
            )
        meta = _io.read_manifest_meta(path)
        version = meta.get("format_version", None)
        if meta.get("kind") != _KIND:
            raise CheckpointError(
                f"{os.fspath(path)!r} is not a kerafine reference profile (kind {meta.get('kind')!r})."
            )
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"The reference profile at {os.fspath(path)!r} has format version {version!r}, newer than this "
                f"kerafine reads (up to {FORMAT_VERSION}); upgrade kerafine to read it."
            )
        try:
            state = _io.load_state(path, _STATE_NAME)
            return cls(
                feature_names=state["feature_names"],
                categorical=state["categorical"],
                n_rows=state["n_rows"],
                max_samples=state["max_samples"],
                n_bins=state["n_bins"],
                cont={k: np.asarray(v) for k, v in state["cont"].items()},
                cat=state["cat"],
                sample=np.asarray(state["sample"], dtype=np.float64),
                seed=state.get("seed"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"The reference profile at {os.fspath(path)!r} is malformed: {exc!r}.") from exc

    def to_bytes(self) -> bytes:
        """The profile as bytes, for sending to another process (see :meth:`from_bytes`).

        A NumPy ``.npz`` archive of plain arrays and one JSON document, read
        back without pickle. Used to exchange per-worker profiles in a
        multi-worker job (``DriftMonitor(reference_is_shard=True)``).

        Example:

        >>> p = ReferenceProfile.from_data(np.arange(40.0).reshape(20, 2))
        >>> q = ReferenceProfile.from_bytes(p.to_bytes())
        >>> q.n_rows, bool(np.array_equal(q.sample, p.sample))
        (20, True)
        """
        import io
        import json

        meta = {
            "kind": _KIND,
            "format_version": FORMAT_VERSION,
            "feature_names": list(self.feature_names),
            "categorical": list(self.categorical),
            "n_rows": self.n_rows,
            "max_samples": self.max_samples,
            "n_bins": self.n_bins,
            "seed": None if self.seed is None else int(self.seed),
            "cont_keys": sorted(self._cont),
            "cat": {
                name: {
                    "levels": [str(level) for level in c["levels"]],
                    "counts": [int(k) for k in c["counts"]],
                    "n_missing": int(c["n_missing"]),
                }
                for name, c in self._cat.items()
            },
        }
        arrays = {f"cont_{k}": np.asarray(v) for k, v in self._cont.items()}
        arrays["sample"] = np.asarray(self.sample)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferenceProfile:
        """Read a profile written by :meth:`to_bytes`.

        Raises:
            CheckpointError: if ``data`` is not a profile's bytes, or was
                written by a newer kerafine.
        """
        import io
        import json

        try:
            with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode("utf-8"))
                if meta.get("kind") != _KIND:
                    raise ValueError(f"kind {meta.get('kind')!r}")
                if not isinstance(meta.get("format_version"), int) or meta["format_version"] > FORMAT_VERSION:
                    raise CheckpointError(
                        f"These profile bytes have format version {meta.get('format_version')!r}, newer than this "
                        f"kerafine reads (up to {FORMAT_VERSION}); upgrade kerafine to read them."
                    )
                cont = {k: np.asarray(z[f"cont_{k}"]) for k in meta["cont_keys"]}
                sample = np.asarray(z["sample"], dtype=np.float64)
        except CheckpointError:
            raise
        except Exception as exc:  # any malformed input: one clear error
            raise CheckpointError(f"Not the bytes of a kerafine ReferenceProfile: {exc!r}.") from None
        return cls(
            feature_names=meta["feature_names"],
            categorical=meta["categorical"],
            n_rows=meta["n_rows"],
            max_samples=meta["max_samples"],
            n_bins=meta["n_bins"],
            cont=cont,
            cat=meta["cat"],
            sample=sample,
            seed=meta["seed"],
        )


def _is_profile_dir(path: Path) -> bool:
    try:
        return path.is_dir() and _io.read_manifest_meta(path).get("kind") == _KIND
    except CheckpointError:
        return False


def _resolve_categorical(categorical, names: list[str]) -> set[str]:
    if categorical is None:
        return set()
    if isinstance(categorical, (str, int)):
        categorical = [categorical]
    out = set()
    for c in categorical:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= c < len(names):
                raise invalid_argument("categorical", c, f"a column name or a position in [0, {len(names) - 1}]")
            out.add(names[c])
        elif str(c) in names:
            out.add(str(c))
        else:
            from kerafine.errors import did_you_mean

            raise invalid_argument(
                "categorical",
                c,
                f"names of columns of the data, among {names[:20]}",
                did_you_mean(str(c), names).strip() or None,
            )
    return out
