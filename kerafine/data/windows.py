"""Sliding windows over multivariate time series, never crossing a group boundary.

A model that reads the last ``window`` samples of a server and predicts what
happens next is trained on windows cut from long per-server series. Cutting
them with a Python loop over rows is slow on fleet-sized data and easy to get
subtly wrong at the seams between servers; :func:`sliding_windows` cuts them
with :func:`numpy.lib.stride_tricks.sliding_window_view` (a strided view, no
copy until the selected windows are gathered) and only ever starts a window
where all of its rows, and its target rows, belong to one group.
"""

from __future__ import annotations

import numpy as np

from kerafine.errors import DataError, check_int, invalid_argument

__all__ = ["sliding_windows", "window_starts"]

_CLIP = 10.0


def _as_2d(series, argument: str = "series") -> np.ndarray:
    if hasattr(series, "to_numpy"):  # pandas DataFrame / Series
        series = series.to_numpy()
    arr = np.asarray(series)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise invalid_argument(
            argument,
            f"an array of shape {arr.shape}",
            "a 1-d array (n_steps,) or a 2-d array (n_steps, n_features)",
            error=DataError,
        )
    if arr.shape[0] == 0:
        raise DataError(f"Invalid value for argument `{argument}`: it has 0 rows; pass at least one window of samples.")
    return arr


def _plain(value):
    """A numpy scalar as the Python value it holds, so messages read 'b', not np.str_('b')."""
    return value.item() if isinstance(value, np.generic) else value


def _group_bounds(groups, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, labels) of the contiguous runs of ``groups``; each group must be one run."""
    if groups is None:
        return np.array([0]), np.array([n]), np.array([None], dtype=object)
    g = groups.to_numpy() if hasattr(groups, "to_numpy") else np.asarray(groups)
    if g.ndim != 1 or len(g) != n:
        raise DataError(
            f"Invalid value for argument `groups`: it has shape {g.shape}; expected one group id per row of "
            f"`series`, shape ({n},)."
        )
    change = np.flatnonzero(g[1:] != g[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]])
    labels = g[starts]
    # A group that shows up in two separate runs means the rows are not sorted by
    # group: windows would silently be cut from two unrelated stretches.
    uniq, counts = np.unique(labels.astype(str), return_counts=True)
    if np.any(counts > 1):
        raise DataError(
            f"Invalid value for argument `groups`: group {_plain(uniq[counts > 1][0])!r} appears in "
            f"{counts[counts > 1][0]} separate runs of rows; sort the rows by group (then time) first."
        )
    return starts, ends, labels


def _robust_by_group(arr: np.ndarray, bounds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Each group's features as robust z-scores of that group, clipped to +-10.

    Centre: the median; scale: the interquartile range / 1.349 (the standard
    deviation for normal data), the standard deviation when the IQR is 0 (a
    mostly constant metric), 1 when both are 0. NaNs are ignored by the
    statistics and stay NaN.
    """
    out = np.empty(arr.shape, dtype=np.float64)
    for start, end in zip(*bounds):
        part = arr[start:end].astype(np.float64)
        centre = np.nanmedian(part, axis=0)
        q1, q3 = np.nanpercentile(part, [25, 75], axis=0)
        scale = (q3 - q1) / 1.349
        std = np.nanstd(part, axis=0)
        scale = np.where(scale > 0, scale, np.where(std > 0, std, 1.0))
        out[start:end] = np.clip((part - centre) / scale, -_CLIP, _CLIP)
    return out


def window_starts(n_rows: int, window: int, horizon: int = 1, stride: int = 1, groups=None) -> np.ndarray:
    """Row index of the first row of every window :func:`sliding_windows` would cut.

    Args:
        n_rows: number of rows of the series.
        window: rows per window.
        horizon: rows after the window reserved for the target. Defaults to 1.
        stride: rows between the starts of consecutive windows of a group. Defaults to 1.
        groups: one group id per row (rows sorted by group), or ``None``. Defaults to ``None``.

    Returns:
        ``int64`` array of start rows, in row order.

    Raises:
        DataError: if a group has fewer rows than ``window + horizon``.

    Example:

    >>> window_starts(6, window=2, horizon=1, stride=2).tolist()
    [0, 2]
    >>> window_starts(6, window=2, groups=["a", "a", "a", "b", "b", "b"]).tolist()
    [0, 3]
    """
    window = check_int("window", window, minimum=1, expected="a positive int")
    horizon = check_int("horizon", horizon, minimum=1, expected="a positive int")
    stride = check_int("stride", stride, minimum=1, expected="a positive int")
    starts, ends, labels = _group_bounds(groups, n_rows)
    lengths = ends - starts
    need = window + horizon
    short = lengths < need
    if np.any(short):
        i = int(np.flatnonzero(short)[0])
        who = "The series" if labels[i] is None else f"Group {_plain(labels[i])!r}"
        raise DataError(
            f"{who} has {int(lengths[i])} samples, fewer than one window plus its target "
            f"(window={window} + horizon={horizon} = {need}); use a smaller `window`, or drop groups "
            "that are too short."
        )
    counts = (lengths - need) // stride + 1
    # Vectorised "arange per group": offsets within each group, shifted by the group start.
    group_of = np.repeat(np.arange(len(starts)), counts)
    first = np.cumsum(counts) - counts
    within = np.arange(int(counts.sum())) - np.repeat(first, counts)
    return (starts[group_of] + within * stride).astype(np.int64)


def sliding_windows(
    series,
    window: int,
    horizon: int = 1,
    stride: int = 1,
    labels=None,
    groups=None,
    as_dataset: bool = False,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
    dtype="float32",
    normalize: str | None = None,
):
    """Cut ``series`` into overlapping windows with their targets.

    A window covers rows ``[s, s + window)``. Its target looks ``horizon`` rows
    past the window's last row ``e = s + window - 1``:

    * without ``labels`` (self-supervised forecasting) the target is the row
      ``series[e + horizon]``;
    * with ``labels`` (one value per row, e.g. 1 where a failure happened) the
      target is ``max(labels[e + 1 : e + horizon + 1])``: "an event within the
      next ``horizon`` steps". This equals the ``label`` column that
      :func:`kerafine.data.load_server_metrics` builds with the same horizon, at
      the window's last row.

    A window is only cut where the window and its target rows all belong to one
    group, so windows never mix two servers.

    With ``normalize="robust"`` every group (the whole series without
    ``groups``) is first standardised **by its own statistics**: minus its
    median, divided by its interquartile range / 1.349, clipped to +-10. On real
    metrics whose level and spread differ from server to server this is what
    lets a model trained on some servers score unseen ones (see the README,
    "When does pretraining help?"). It uses no labels, but it does use the whole
    of each group's rows: for a live server, compute it over a warm-up period.
    Steps at a group's median become exactly 0.0, the default ``mask_value`` of
    :func:`kerafine.backbones.sequence_encoder` (on NAB's road-speed series, up
    to 13% of the steps): build the encoder with ``mask_value=None``.

    Args:
        series: ``(n_steps,)`` or ``(n_steps, n_features)`` array or DataFrame,
            rows in time order (sorted by group first when ``groups`` is given).
        window: rows per window, a positive int.
        horizon: how far ahead the target lies, a positive int. Defaults to 1.
        stride: rows between consecutive window starts within a group.
            Defaults to 1.
        labels: ``(n_steps,)`` per-row labels, or ``None``. Defaults to ``None``.
        groups: ``(n_steps,)`` group ids (e.g. server names), or ``None`` for
            one series. Defaults to ``None``.
        as_dataset: return a batched ``tf.data.Dataset`` instead of arrays.
            Defaults to ``False``.
        batch_size: batch size of the dataset. Defaults to 32.
        shuffle: shuffle the dataset's windows (seeded by ``seed``). Defaults to ``False``.
        seed: shuffle seed. Defaults to ``None``.
        dtype: dtype of the returned windows. Defaults to ``"float32"``.
        normalize: ``None`` (values as given) or ``"robust"`` (per-group robust
            z-scores, see above; the targets without ``labels`` are normalised
            too). Defaults to ``None``.

    Returns:
        ``(x, y)`` with ``x`` of shape ``(n_windows, window, n_features)`` and
        ``y`` of shape ``(n_windows,)`` with ``labels`` or
        ``(n_windows, n_features)`` without; or a ``tf.data.Dataset`` of such batches.

    Raises:
        KerafineError: if ``window``, ``horizon`` or ``stride`` is not a positive
            int, or ``normalize`` is not ``None`` or ``"robust"``.
        DataError: if a group has fewer rows than ``window + horizon``, or the
            shapes of ``series``, ``labels`` and ``groups`` disagree.

    Example:

    >>> import numpy as np
    >>> x, y = sliding_windows(np.arange(6.0), window=3)
    >>> x[:, :, 0].tolist(), y[:, 0].tolist()
    ([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [2.0, 3.0, 4.0]], [3.0, 4.0, 5.0])
    >>> x, y = sliding_windows(np.arange(6.0), window=2, horizon=2, labels=[0, 0, 0, 0, 1, 0])
    >>> y.tolist()
    [0.0, 1.0, 1.0]
    >>> servers = [10.0, 11.0, 12.0, 13.0, 14.0, 1000.0, 1010.0, 1020.0, 1030.0, 1040.0]
    >>> x, _ = sliding_windows(servers, window=3, groups=[0] * 5 + [1] * 5, normalize="robust")
    >>> np.allclose(x[:2], x[2:])  # both servers' windows now read alike
    True
    """
    window = check_int("window", window, minimum=1, expected="a positive int")
    horizon = check_int("horizon", horizon, minimum=1, expected="a positive int")
    stride = check_int("stride", stride, minimum=1, expected="a positive int")
    batch_size = check_int("batch_size", batch_size, minimum=1, expected="a positive int")
    if normalize is not None and not (isinstance(normalize, str) and normalize == "robust"):
        raise invalid_argument("normalize", normalize, 'None or "robust"')
    arr = _as_2d(series)
    n = arr.shape[0]
    lab = None
    if labels is not None:
        lab = labels.to_numpy() if hasattr(labels, "to_numpy") else np.asarray(labels)
        if lab.ndim != 1 or len(lab) != n:
            raise DataError(
                f"Invalid value for argument `labels`: it has shape {lab.shape}; expected one label per row "
                f"of `series`, shape ({n},)."
            )
    starts = window_starts(n, window, horizon, stride, groups)
    if normalize == "robust":
        arr = _robust_by_group(arr, _group_bounds(groups, n)[:2])
    view = np.lib.stride_tricks.sliding_window_view(arr, window, axis=0)  # (n-window+1, F, window)
    x = np.ascontiguousarray(view[starts].transpose(0, 2, 1), dtype=dtype)
    last = starts + window - 1
    if lab is None:
        y = np.asarray(arr[last + horizon], dtype=dtype)
    else:
        # The maximum of the `horizon` labels after each window's last row.
        ahead = np.lib.stride_tricks.sliding_window_view(lab.astype(np.float64), horizon)
        y = np.asarray(ahead[last + 1].max(axis=1), dtype=dtype)
    if not as_dataset:
        return x, y
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
