"""Load per-server metric CSVs into one regular, labelled time grid, and split it without leakage.

The typical monitoring export is one CSV per metric, each with a server id, a
timestamp and one or more value columns, sampled every few seconds with
jitter, dropped samples and outages. :func:`load_server_metrics` turns four of
them (CPU, memory, disk IO, uptime) plus an optional failures table into one
frame with a row per server per ``freq`` step:

1. every file is checked (required columns, parseable timestamps, strictly
   increasing per server) before anything else happens;
2. samples are put on the ``freq`` grid (mean of the samples of each bin) and
   the metrics are joined per server on time, sorted by server then time;
3. short gaps (up to ``max_gap`` steps) are interpolated; longer ones are
   dropped and reported in :attr:`ServerMetrics.gaps`, and each stretch of
   rows between long gaps gets its own ``segment`` id so that windows never
   bridge an outage;
4. restarts are detected where ``uptime`` goes down, and
5. with a failures table, ``label`` is 1 when the server fails within the next
   ``horizon`` steps (``NaN`` in the last ``horizon`` steps of a server's
   record, where the future is not observed).

:mod:`kerafine.data.splits` splits the result into train, validation and
test without leakage (:func:`split_by_time`, :func:`split_by_group`) and
normalises it with training statistics only (:class:`Normalizer`); those names
are re-exported here.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from kerafine._display import human_duration
from kerafine.data.splits import Normalizer, Splits, split_by_group, split_by_time
from kerafine.errors import DataError, check_int, invalid_argument

__all__ = [
    "ServerMetrics",
    "Splits",
    "Normalizer",
    "load_server_metrics",
    "read_metric_csv",
    "split_by_time",
    "split_by_group",
]


def _describe_source(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    return "the DataFrame"


def read_metric_csv(
    source, argument: str, server_col: str = "server", time_col: str = "timestamp", check_order: bool = True
):
    """Read and check one metric table: a CSV path or a DataFrame.

    Args:
        source: path of a CSV file, or a ``pandas.DataFrame``.
        argument: the argument name used in error messages (e.g. ``"cpu"``).
        server_col: name of the server id column. Defaults to ``"server"``.
        time_col: name of the timestamp column. Defaults to ``"timestamp"``.
        check_order: require strictly increasing timestamps per server. Defaults to ``True``.

    Returns:
        A DataFrame with ``server_col`` as string, ``time_col`` as
        ``datetime64`` and the numeric value columns, in file order.

    Raises:
        DataError: if the file cannot be read, a required column is missing,
            there is no numeric value column, a timestamp cannot be parsed, or
            timestamps do not strictly increase within a server.
    """
    import pandas as pd

    what = _describe_source(source)
    if isinstance(source, pd.DataFrame):
        df = source.copy()
    elif isinstance(source, (str, os.PathLike)):
        try:
            df = pd.read_csv(source)
        except FileNotFoundError:
            raise invalid_argument(
                argument, os.fspath(source), "the path of an existing CSV file", error=DataError
            ) from None
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"Invalid value for argument `{argument}`: cannot read {what} as CSV ({exc}).") from exc
    else:
        raise invalid_argument(argument, source, "a CSV path or a pandas DataFrame", error=DataError)
    found = [str(c) for c in df.columns]
    missing = [c for c in (server_col, time_col) if c not in df.columns]
    if missing:
        raise DataError(
            f"Invalid value for argument `{argument}`: {what} has no column {missing[0]!r}; found columns {found}. "
            f"Rename the column, or pass `server_col=` / `time_col=` to name it."
        )
    values = [c for c in df.columns if c not in (server_col, time_col)]
    if not values:
        raise DataError(
            f"Invalid value for argument `{argument}`: {what} has no value column besides {server_col!r} and "
            f"{time_col!r}; found columns {found}."
        )
    for c in values:
        if not pd.api.types.is_numeric_dtype(df[c]):
            converted = pd.to_numeric(df[c], errors="coerce")
            bad = converted.isna() & df[c].notna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"Invalid value for argument `{argument}`: column {c!r} of {what} is not numeric "
                    f"(row {i}: {df[c].iloc[i]!r})."
                )
            df[c] = converted
    if len(df) == 0:
        raise DataError(f"Invalid value for argument `{argument}`: {what} has no rows.")
    ts = df[time_col]
    if pd.api.types.is_datetime64_any_dtype(ts):
        parsed = ts
    elif pd.api.types.is_numeric_dtype(ts):
        parsed = pd.to_datetime(ts, unit="s", errors="coerce")
    else:
        parsed = pd.to_datetime(ts, errors="coerce", format="mixed")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"Invalid value for argument `{argument}`: {what} has an unparseable timestamp in column "
            f"{time_col!r} at row {i}: {ts.iloc[i]!r}; expected a date/time such as '2024-03-04 12:00:05' "
            "or seconds since the epoch."
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    df[time_col] = parsed.astype("datetime64[ns]")
    df[server_col] = df[server_col].astype(str)
    if not check_order:
        return df
    # Strictly increasing within each server, in file order.
    prev = df.groupby(server_col, sort=False)[time_col].shift()
    bad = (df[time_col] <= prev).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"Invalid value for argument `{argument}`: timestamps of server {df[server_col].iloc[i]!r} in {what} "
            f"are not increasing at row {i} ({df[time_col].iloc[i]} comes after {prev.iloc[i]}); expected strictly "
            "increasing timestamps per server. Sort the file by server and time and remove duplicate samples."
        )
    return df


@dataclasses.dataclass(frozen=True)
class ServerMetrics:
    """The joined, regular per-server grid built by :func:`load_server_metrics`.

    Attributes:
        frame: one row per server per step, sorted by ``server`` then
            ``timestamp``; columns ``server, timestamp, segment``, the metric
            columns, ``uptime``, ``restart`` (1 on the first sample after a
            reboot) and, with failures, ``label``.
        features: names of the metric columns (model inputs), in order.
        gaps: the long gaps that were dropped: ``server, start, end, steps``.
        freq: the grid step, a ``pandas.Timedelta``.
        horizon: steps ahead of the ``label`` ("fails within ``horizon`` steps").
    """

    frame: Any
    features: tuple
    gaps: Any
    freq: Any
    horizon: int

    @property
    def servers(self) -> list[str]:
        """Server ids, sorted."""
        return sorted(self.frame["server"].unique().tolist())

    @property
    def restarts(self):
        """Rows at which a server came back from a reboot: ``server, timestamp``."""
        f = self.frame
        return f.loc[f["restart"] == 1, ["server", "timestamp"]].reset_index(drop=True)

    def subset(self, mask) -> ServerMetrics:
        """The same grid restricted to the rows where ``mask`` is true."""
        return dataclasses.replace(self, frame=self.frame.loc[np.asarray(mask)].reset_index(drop=True))

    def summary(self) -> str:
        """One line: servers, rows, positives, restarts and long gaps."""
        f = self.frame
        pos = ""
        if "label" in f:
            pos = f", {int(np.nansum(f['label'].to_numpy()))} rows labelled 'fails within {self.horizon} steps'"
        return (
            f"{f['server'].nunique()} servers, {len(f)} rows every {human_duration(self.freq.total_seconds())}{pos}, "
            f"{int(f['restart'].sum())} restarts, {len(self.gaps)} long gaps dropped"
        )

    def _valid_starts(self, window: int, extra: int, stride: int) -> tuple[np.ndarray, int]:
        """Start rows of windows (plus ``extra`` target rows) inside one segment; short segments skipped."""
        seg = self.frame["segment"].to_numpy()
        n = len(seg)
        if n == 0:
            raise DataError("The metrics have no rows (an empty split?); nothing to cut windows from.")
        change = np.flatnonzero(seg[1:] != seg[:-1]) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [n]])
        need = window + extra
        lengths = ends - starts
        server = self.frame["server"].to_numpy()
        per_server = {}
        for s, l in zip(server[starts], lengths):
            per_server[s] = max(per_server.get(s, 0), l)
        short_servers = [s for s, l in per_server.items() if l < need]
        if short_servers:
            s = short_servers[0]
            raise DataError(
                f"Server {s!r} has {per_server[s]} consecutive samples, fewer than one window "
                f"(window={window}{f' + {extra} target rows' if extra else ''}); use a smaller `window` "
                "or drop that server."
            )
        ok = lengths >= need
        counts = np.where(ok, (lengths - need) // stride + 1, 0)
        group_of = np.repeat(np.arange(len(starts)), counts)
        first = np.cumsum(counts) - counts
        within = np.arange(int(counts.sum())) - np.repeat(first, counts)
        return (starts[group_of] + within * stride).astype(np.int64), int((~ok).sum())

    def windows(
        self,
        window: int,
        stride: int = 1,
        features: Sequence[str] | None = None,
        normalizer=None,
        return_servers: bool = False,
    ):
        """Labelled windows for "does the server fail within ``horizon`` steps after this window?".

        The label of a window is the ``label`` of its last row. Windows stay
        inside one segment (no server boundary, no long gap); segments shorter
        than ``window`` are skipped with a warning; windows whose label is
        unknown (``NaN``, end of the record) are dropped.

        Args:
            window: rows per window, a positive int.
            stride: rows between window starts. Defaults to 1.
            features: columns to use. Defaults to :attr:`features`.
            normalizer: a fitted :class:`Normalizer` applied first. Defaults to ``None``.
            return_servers: also return the server id of every window. Defaults to ``False``.

        Returns:
            ``(x, y)``: float32 ``(n, window, n_features)`` and float32 ``(n,)``
            (plus the ``(n,)`` server ids with ``return_servers``).

        Raises:
            DataError: if there is no ``label`` column or a server has fewer
                consecutive samples than ``window``.
        """
        window = check_int("window", window, minimum=1, expected="a positive int")
        stride = check_int("stride", stride, minimum=1, expected="a positive int")
        if "label" not in self.frame:
            raise DataError("These metrics have no `label` column: pass `failures=` to load_server_metrics.")
        x_all = self._matrix(features, normalizer)
        starts, skipped = self._valid_starts(window, 0, stride)
        self._warn_skipped(skipped, window)
        last = starts + window - 1
        y = self.frame["label"].to_numpy(dtype=np.float64)[last]
        keep = ~np.isnan(y)
        starts, last, y = starts[keep], last[keep], y[keep]
        x = self._gather(x_all, starts, window)
        out = (x, y.astype(np.float32))
        if return_servers:
            out = out + (self.frame["server"].to_numpy()[starts],)
        return out

    def forecast_windows(
        self, window: int, horizon: int = 1, stride: int = 1, features: Sequence[str] | None = None, normalizer=None
    ):
        """Unlabelled windows with the row ``horizon`` steps after each as target (self-supervised pretraining).

        Returns:
            ``(x, y)``: float32 ``(n, window, n_features)`` and ``(n, n_features)``.
        """
        window = check_int("window", window, minimum=1, expected="a positive int")
        horizon = check_int("horizon", horizon, minimum=1, expected="a positive int")
        stride = check_int("stride", stride, minimum=1, expected="a positive int")
        x_all = self._matrix(features, normalizer)
        starts, skipped = self._valid_starts(window, horizon, stride)
        self._warn_skipped(skipped, window + horizon)
        return self._gather(x_all, starts, window), x_all[starts + window - 1 + horizon]

    def _matrix(self, features, normalizer) -> np.ndarray:
        cols = list(self.features if features is None else features)
        missing = [c for c in cols if c not in self.frame.columns]
        if missing:
            raise invalid_argument(
                "features", cols, f"columns of the metrics, among {list(self.frame.columns)}", error=DataError
            )
        frame = self.frame if normalizer is None else normalizer.transform(self.frame)
        return frame[cols].to_numpy(dtype=np.float32)

    @staticmethod
    def _gather(x_all: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
        view = np.lib.stride_tricks.sliding_window_view(x_all, window, axis=0)
        return np.ascontiguousarray(view[starts].transpose(0, 2, 1))

    @staticmethod
    def _warn_skipped(skipped: int, need: int) -> None:
        if skipped:
            warnings.warn(
                f"{skipped} stretch(es) of samples between long gaps are shorter than {need} rows and give no "
                "window; they are skipped.",
                stacklevel=3,
            )


def _parse_freq(freq):
    import pandas as pd

    try:
        td = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    except (ValueError, TypeError):
        td = None
    if td is None or td <= pd.Timedelta(0):
        raise invalid_argument("freq", freq, 'a positive pandas frequency string such as "5s" or "1min"')
    return td


def load_server_metrics(
    cpu,
    memory,
    diskio,
    uptime,
    failures=None,
    freq: str = "5s",
    horizon: int = 12,
    max_gap: int = 3,
    server_col: str = "server",
    time_col: str = "timestamp",
) -> ServerMetrics:
    """Read per-metric CSVs, join them per server on a regular time grid and label failures.

    Each metric source is a CSV path (or DataFrame) with columns ``server``,
    ``timestamp`` and one or more numeric value columns (their names become
    the feature names; a name used by two files is prefixed with the
    argument, e.g. ``diskio_read``). The uptime file has exactly one value
    column (seconds since boot). The failures table has ``server`` and
    ``timestamp`` (other columns are ignored).

    Args:
        cpu: CPU metrics, a CSV path or DataFrame.
        memory: memory metrics.
        diskio: disk-IO metrics.
        uptime: uptime in seconds; a drop means the server rebooted.
        failures: failure events, or ``None`` for unlabelled data. Defaults to ``None``.
        freq: grid step, a pandas frequency string. Defaults to ``"5s"``.
        horizon: the label is 1 when a failure happens within the next
            ``horizon`` steps. Defaults to 12 (one minute at 5 s).
        max_gap: longest run of missing steps that is interpolated; longer
            gaps are dropped and reported. Defaults to 3.
        server_col: name of the server id column. Defaults to ``"server"``.
        time_col: name of the timestamp column. Defaults to ``"timestamp"``.

    Returns:
        A :class:`ServerMetrics`.

    Raises:
        DataError: a column is missing (the message lists the columns found),
            a timestamp is unparseable, timestamps are not increasing within a
            server, or a value column is not numeric.
        KerafineError: ``freq``, ``horizon`` or ``max_gap`` is invalid.

    Example:

    >>> import tempfile
    >>> from kerafine.data.demo import generate_fleet
    >>> paths = generate_fleet(tempfile.mkdtemp(), "A", n_servers=2, n_steps=400, seed=3)
    >>> m = load_server_metrics(**paths, freq="1min", horizon=30)
    >>> m.features, m.frame["server"].unique().tolist()
    (('cpu', 'memory', 'diskio'), ['a-000', 'a-001'])
    """
    import pandas as pd

    step = _parse_freq(freq)
    horizon = check_int("horizon", horizon, minimum=1, expected="a positive int")
    max_gap = check_int("max_gap", max_gap, minimum=0)
    sources = {"cpu": cpu, "memory": memory, "diskio": diskio, "uptime": uptime}
    tables = {name: read_metric_csv(src, name, server_col, time_col) for name, src in sources.items()}
    fail_table = None
    if failures is not None:
        fail_table = read_metric_csv_events(failures, server_col, time_col)
    up_values = [c for c in tables["uptime"].columns if c not in (server_col, time_col)]
    if len(up_values) != 1:
        raise DataError(
            f"Invalid value for argument `uptime`: {_describe_source(uptime)} must have exactly one value column "
            f"(seconds since boot); found {up_values}."
        )

    # Name clashes between files are resolved by prefixing with the argument name.
    seen: dict[str, int] = {}
    for df in tables.values():
        for c in df.columns:
            if c not in (server_col, time_col):
                seen[c] = seen.get(c, 0) + 1
    binned = {}
    features = []
    for name, df in tables.items():
        rename = {}
        for c in df.columns:
            if c in (server_col, time_col):
                continue
            new = c if seen[c] == 1 and c not in ("segment", "restart", "label") else f"{name}_{c}"
            if name == "uptime":
                new = "uptime"
            rename[c] = new
        df = df.rename(columns=rename)
        df["_t"] = df[time_col].dt.floor(step)
        binned[name] = df.drop(columns=[time_col]).groupby([server_col, "_t"], sort=False).mean()
        if name != "uptime":
            features.extend(rename.values())

    # The grid: for every server, every step from its first to its last sample.
    spans = pd.concat([b.reset_index()[[server_col, "_t"]] for b in binned.values()])
    span = spans.groupby(server_col)["_t"].agg(["min", "max"]).sort_index()
    n_steps = ((span["max"] - span["min"]) // step).astype(np.int64).to_numpy() + 1
    srv = np.repeat(span.index.to_numpy(), n_steps)
    first = np.cumsum(n_steps) - n_steps
    offs = np.arange(int(n_steps.sum())) - np.repeat(first, n_steps)
    times = np.repeat(span["min"].to_numpy(), n_steps) + offs * step.to_timedelta64()
    grid = pd.MultiIndex.from_arrays([srv, times], names=[server_col, "_t"])
    frame = pd.DataFrame(index=grid)
    for b in binned.values():
        frame = frame.join(b, how="left")
    frame = frame.reset_index().rename(columns={server_col: "server", "_t": "timestamp"})
    value_cols = list(features) + ["uptime"]

    # Restarts: uptime lower than at the previous observed sample of the same server.
    up = frame["uptime"]
    prev_up = up.groupby(frame["server"]).transform(lambda s: s.ffill().shift())
    restart = (up < prev_up).to_numpy()

    # Gaps: runs of missing steps per column; short ones interpolated, long ones dropped.
    server_codes = pd.factorize(frame["server"])[0]
    long_gap = np.zeros(len(frame), dtype=bool)
    for c in value_cols:
        na = frame[c].isna().to_numpy()
        if not na.any():
            continue
        run = np.cumsum(np.r_[True, (na[1:] != na[:-1]) | (server_codes[1:] != server_codes[:-1])])
        run_len = np.bincount(run)[run]
        long_gap |= na & (run_len > max_gap)
    filled = frame.groupby("server", sort=False)[value_cols].transform(
        lambda s: s.interpolate(method="linear", limit_direction="both")
    )
    frame[value_cols] = filled
    gaps = _gap_table(frame, long_gap, server_codes)
    frame["restart"] = restart.astype(np.int8)
    # A new segment starts at each server and after each long gap.
    boundary = np.r_[True, server_codes[1:] != server_codes[:-1]] | np.r_[False, long_gap[:-1] & ~long_gap[1:]]
    frame["segment"] = np.cumsum(boundary) - 1
    frame = frame.loc[~long_gap].reset_index(drop=True)
    frame["segment"] = pd.factorize(frame["segment"])[0]

    if fail_table is not None:
        frame["label"] = _failure_labels(frame, fail_table, step, horizon, server_col, time_col)
    cols = ["server", "timestamp", "segment", *features, "uptime", "restart"] + (["label"] if "label" in frame else [])
    frame = frame[cols]
    return ServerMetrics(frame=frame, features=tuple(features), gaps=gaps, freq=step, horizon=horizon)


def read_metric_csv_events(source, server_col: str = "server", time_col: str = "timestamp"):
    """Read the failures table: ``server``, ``timestamp`` (extra columns kept); increasing per server."""
    import pandas as pd

    what = _describe_source(source)
    if isinstance(source, pd.DataFrame):
        df = source.copy()
    else:
        try:
            df = pd.read_csv(source)
        except FileNotFoundError:
            raise invalid_argument(
                "failures", os.fspath(source), "the path of an existing CSV file", error=DataError
            ) from None
    found = [str(c) for c in df.columns]
    for c in (server_col, time_col):
        if c not in df.columns:
            raise DataError(
                f"Invalid value for argument `failures`: {what} has no column {c!r}; found columns {found}."
            )
    if len(df) == 0:
        return pd.DataFrame({server_col: pd.Series(dtype=str), time_col: pd.Series(dtype="datetime64[ns]")})
    df = df[[server_col, time_col]].copy()
    df["_value"] = 0.0
    df = read_metric_csv(df, "failures", server_col, time_col, check_order=False)
    return df.sort_values([server_col, time_col])[[server_col, time_col]].reset_index(drop=True)


def _gap_table(frame, long_gap: np.ndarray, server_codes: np.ndarray):
    import pandas as pd

    if not long_gap.any():
        return pd.DataFrame(
            {
                "server": pd.Series(dtype=str),
                "start": pd.Series(dtype="datetime64[ns]"),
                "end": pd.Series(dtype="datetime64[ns]"),
                "steps": pd.Series(dtype=np.int64),
            }
        )
    idx = np.flatnonzero(long_gap)
    new_run = np.r_[True, (np.diff(idx) != 1) | (server_codes[idx[1:]] != server_codes[idx[:-1]])]
    run = np.cumsum(new_run) - 1
    starts = idx[new_run]
    ends = idx[np.r_[new_run[1:], True]]
    return pd.DataFrame(
        {
            "server": frame["server"].to_numpy()[starts],
            "start": frame["timestamp"].to_numpy()[starts],
            "end": frame["timestamp"].to_numpy()[ends],
            "steps": np.bincount(run).astype(np.int64),
        }
    )


def _failure_labels(frame, failures, step, horizon: int, server_col: str, time_col: str) -> np.ndarray:
    """1 if the server fails in ``(t, t + horizon * step]``, 0 if not, NaN when that window is not observed."""
    known = set(frame["server"].unique())
    unknown = sorted(set(failures[server_col]) - known)
    if unknown:
        warnings.warn(
            f"The failures table names {len(unknown)} server(s) with no metrics, e.g. {unknown[0]!r}; "
            "their failures are ignored.",
            stacklevel=3,
        )
    label = np.zeros(len(frame), dtype=np.float64)
    t_all = frame["timestamp"].to_numpy()
    ahead = (step * horizon).to_timedelta64()
    by_server = {s: np.sort(g[time_col].to_numpy()) for s, g in failures.groupby(server_col)}
    server = frame["server"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, server[1:] != server[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        t = t_all[a:b]
        f = by_server.get(server[a])
        if f is not None and len(f):
            nxt = np.searchsorted(f, t, side="right")
            has = nxt < len(f)
            nxt_t = f[np.minimum(nxt, len(f) - 1)]
            label[a:b] = (has & (nxt_t - t <= ahead)).astype(np.float64)
        # The future past the last sample is unobserved: unknown unless a failure was seen.
        censored = (t + ahead > t_all[b - 1]) & (label[a:b] == 0)
        label[a:b][censored] = np.nan
    return label
