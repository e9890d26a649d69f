"""The single TensorBoard writer of kerafine.

Every kerafine callback writes its events through this module, into
``<log_dir>/kerafine`` beside the ``train/`` and ``validation/`` folders that
Keras's own ``keras.callbacks.TensorBoard`` writes, so one
``tensorboard --logdir <log_dir>`` shows both. Callbacks never open their own
``tf.summary`` writers: one writer per directory per process avoids several
event files racing for the same run.

Under ``tf.distribute`` multi-worker training only the chief writes; the other
workers get a writer that drops everything.

Example:

>>> import tempfile
>>> from kerafine import tensorboard
>>> log_dir = tempfile.mkdtemp()
>>> tensorboard.scalar(log_dir, "val_auc", 0.91, step=0)
>>> tensorboard.read_scalars(log_dir)["val_auc"]
[(0, 0.91...)]
"""

from __future__ import annotations

import io
import os
import threading
from typing import Any

import numpy as np

__all__ = [
    "SUBDIR",
    "scalar",
    "scalars",
    "text",
    "figure",
    "histogram",
    "pr_curve",
    "flush",
    "close",
    "read_scalars",
    "read_tags",
    "purge_after",
]

SUBDIR = "kerafine"

_lock = threading.Lock()
_writers: dict[str, Any] = {}


def is_chief() -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster (strategy or ``TF_CONFIG``)."""
    import tensorflow as tf

    from kerafine._keras_compat import in_multi_worker_mode

    strategy = tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not in_multi_worker_mode(strategy):
        # Keras runs callbacks outside the strategy's scope, so the current
        # strategy is the default one even in a multi-worker fit: TF_CONFIG says
        # who the chief is (the convention TensorFlow's own tools follow).
        from kerafine._cluster import is_chief as tf_config_is_chief

        return tf_config_is_chief()
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    # With no explicit chief in the cluster spec, worker 0 acts as chief.
    cluster = resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def _writer(log_dir: str | os.PathLike, subdir: str = SUBDIR):
    import tensorflow as tf

    path = os.path.join(os.fspath(log_dir), subdir)
    with _lock:
        w = _writers.get(path)
        if w is None:
            w = tf.summary.create_file_writer(path) if is_chief() else tf.summary.create_noop_writer()
            _writers[path] = w
        return w


def scalar(log_dir, tag: str, value: float, step: int, subdir: str = SUBDIR) -> None:
    """Write one scalar ``tag`` at ``step`` (epoch or global batch) under ``log_dir``."""
    scalars(log_dir, {tag: value}, step, subdir=subdir)


def scalars(log_dir, values: dict, step: int, subdir: str = SUBDIR) -> None:
    """Write several scalars at one ``step``; NaN values are written as NaN."""
    import tensorflow as tf

    w = _writer(log_dir, subdir)
    with w.as_default():
        for tag, value in values.items():
            tf.summary.scalar(tag, float(value), step=int(step))
    w.flush()


def text(log_dir, tag: str, message: str, step: int, subdir: str = SUBDIR) -> None:
    """Write a text event (shown in TensorBoard's Text tab), e.g. an alert."""
    import tensorflow as tf

    w = _writer(log_dir, subdir)
    with w.as_default():
        tf.summary.text(tag, str(message), step=int(step))
    w.flush()


def figure(log_dir, tag: str, fig, step: int, subdir: str = SUBDIR, close_figure: bool = True) -> None:
    """Write a matplotlib figure as an image event (rendered to PNG first)."""
    import tensorflow as tf

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    if close_figure:
        import matplotlib.pyplot as plt

        plt.close(fig)
    image = tf.image.decode_png(buf.getvalue(), channels=4)[tf.newaxis]
    w = _writer(log_dir, subdir)
    with w.as_default():
        tf.summary.image(tag, image, step=int(step))
    w.flush()


def histogram(log_dir, tag: str, values, step: int, buckets: int | None = None, subdir: str = SUBDIR) -> None:
    """Write a histogram of ``values`` (any array-like; NaN are dropped)."""
    import tensorflow as tf

    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    w = _writer(log_dir, subdir)
    with w.as_default():
        tf.summary.histogram(tag, values, step=int(step), buckets=buckets)
    w.flush()


def pr_curve(
    log_dir,
    tag: str,
    y_true,
    y_score,
    step: int,
    num_thresholds: int = 201,
    subdir: str = SUBDIR,
) -> None:
    """Write a TensorBoard PR-curve summary (PR Curves tab) from labels and scores.

    Scores are min-max scaled into [0, 1] first when they are logits, since the
    plugin's thresholds live in [0, 1]; the ranking, hence the curve, is unchanged.
    """
    import tensorflow as tf
    from tensorboard.plugins.pr_curve import summary as pr_summary

    y_true = np.asarray(y_true).ravel().astype(bool)
    s = np.asarray(y_score, dtype=np.float64).ravel()
    lo, hi = float(np.min(s)), float(np.max(s))
    if lo < 0.0 or hi > 1.0:
        s = (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
    thresholds = np.linspace(0.0, 1.0, num_thresholds)
    # Count, for each threshold t, the positives and negatives scoring >= t.
    pos_sorted = np.sort(s[y_true])
    neg_sorted = np.sort(s[~y_true])
    tp = pos_sorted.size - np.searchsorted(pos_sorted, thresholds, side="left")
    fp = neg_sorted.size - np.searchsorted(neg_sorted, thresholds, side="left")
    fn = pos_sorted.size - tp
    tn = neg_sorted.size - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
        recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
    pb = pr_summary.raw_data_pb(
        tag,
        true_positive_counts=tp.astype(np.float64),
        false_positive_counts=fp.astype(np.float64),
        true_negative_counts=tn.astype(np.float64),
        false_negative_counts=fn.astype(np.float64),
        precision=precision,
        recall=recall,
        num_thresholds=num_thresholds,
    )
    w = _writer(log_dir, subdir)
    with w.as_default():
        tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=int(step))
    w.flush()


def flush(log_dir=None) -> None:
    """Flush the writer of ``log_dir`` (or all writers)."""
    with _lock:
        targets = [w for p, w in _writers.items() if log_dir is None or p.startswith(os.fspath(log_dir))]
    for w in targets:
        w.flush()


def close(log_dir=None) -> None:
    """Flush and close the writer(s) of ``log_dir`` (or all); a later write reopens one."""
    with _lock:
        keys = [p for p in _writers if log_dir is None or p.startswith(os.fspath(log_dir))]
        writers = [_writers.pop(p) for p in keys]
    for w in writers:
        w.flush()
        w.close()


def _event_files(log_dir, subdir: str | None):
    root = os.path.join(os.fspath(log_dir), subdir) if subdir else os.fspath(log_dir)
    for dirpath, _, filenames in os.walk(root):
        for name in sorted(filenames):
            if "tfevents" in name:
                yield os.path.join(dirpath, name)


def _iter_values(log_dir, subdir):
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.compat.proto import event_pb2  # noqa: F401  (ensures protos load)

    for path in _event_files(log_dir, subdir):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                yield event.step, value


def read_scalars(log_dir, subdir: str | None = SUBDIR) -> dict[str, list[tuple[int, float]]]:
    """Read back the scalars written under ``log_dir/subdir`` as ``{tag: [(step, value)]}``.

    Uses TensorBoard's own event reader, so what it returns is what TensorBoard
    shows. Pass ``subdir="validation"`` to read Keras's own validation scalars.
    """
    from tensorboard.util import tensor_util

    out: dict[str, list[tuple[int, float]]] = {}
    for step, value in _iter_values(log_dir, subdir):
        plugin = value.metadata.plugin_data.plugin_name
        if value.HasField("simple_value"):
            out.setdefault(value.tag, []).append((step, float(value.simple_value)))
        elif plugin == "scalars" and value.HasField("tensor"):
            out.setdefault(value.tag, []).append((step, float(tensor_util.make_ndarray(value.tensor))))
    for series in out.values():
        series.sort(key=lambda sv: sv[0])
    return out


def read_tags(log_dir, subdir: str | None = SUBDIR) -> dict[str, set[str]]:
    """Tags found under ``log_dir/subdir`` grouped by plugin (``scalars``, ``images``, ``text``, ...)."""
    out: dict[str, set[str]] = {}
    for _, value in _iter_values(log_dir, subdir):
        plugin = value.metadata.plugin_data.plugin_name or ("scalars" if value.HasField("simple_value") else "")
        out.setdefault(plugin, set()).add(value.tag)
    return out



def purge_after(event_dir, step: int) -> str | None:
    """Tell TensorBoard to drop the points at ``step`` and later already in ``event_dir``.

    Writes TensorBoard's own purge marker, a ``SessionLog(status=START)`` event
    at ``step`` (twice, see the code), in a new event file of ``event_dir`` (atomically: written under
    another name, then renamed). TensorBoard's loader, reading the directory's
    files in name order, then discards every earlier-read point with a step
    ``>= step`` (of every tag of that directory), so a resumed run's new points
    replace, rather than duplicate, those of the interrupted run. The file's
    name sorts after the interrupted run's files (other processes: a resume
    after a kill is a new process) and before the files this process has
    opened or opens later in the same second. Nothing is written
    when ``event_dir`` does not exist (nothing to purge) or on a non-chief
    worker.

    Args:
        event_dir: an event directory, e.g. ``<log_dir>/kerafine`` or Keras's
            ``<log_dir>/train``.
        step: the first step whose old points are dropped (for per-epoch
            scalars: the epoch the run resumes at).

    Returns:
        The path of the event file written, or ``None``.

    Example:

    >>> import tempfile, os
    >>> from kerafine import tensorboard
    >>> log_dir = tempfile.mkdtemp()
    >>> for epoch in range(3):
    ...     tensorboard.scalar(log_dir, "loss", 1.0 / (epoch + 1), step=epoch)
    >>> tensorboard.close(log_dir)
    >>> os.path.basename(tensorboard.purge_after(os.path.join(log_dir, "kerafine"), 1))[:20]
    'events.out.tfevents.'
    """
    import re
    import time

    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    event_dir = os.fspath(event_dir)
    if not os.path.isdir(event_dir) or not is_chief():
        return None
    stamps = re.compile(r"tfevents\.(\d+)\.")
    mine_tag = re.compile(r"\." + str(os.getpid()) + r"\.")
    others, mine = [], []
    for name in os.listdir(event_dir):
        m = stamps.search(name)
        if m and "tfevents" in name and not name.startswith("."):
            (mine if mine_tag.search(name) else others).append(int(m.group(1)))
    # The marker's second must come after every file of the interrupted run(s):
    # wait for the next second if one was written in this one.
    latest = max(others, default=-1)
    deadline = time.time() + 1.5
    while int(time.time()) == latest and time.time() < deadline:
        time.sleep(0.05)
    now = time.time()
    stamp = max(int(now), latest + 1)
    if mine:  # files this process opened before (a Keras TensorBoard earlier in the list) come after it
        stamp = max(min(stamp, min(mine)), max(others, default=0) + 1)
    # "-" sorts before any host name character, so the marker comes first within its second.
    final = os.path.join(event_dir, f"events.out.tfevents.{stamp:010d}.-kerafine-purge.{os.getpid()}.{step}")
    tmp = os.path.join(event_dir, f".kerafine-purge-{os.getpid()}-{step}.tmp")
    with tf.io.TFRecordWriter(tmp) as w:
        w.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
        start = event_pb2.Event(wall_time=now, step=int(step))
        start.session_log.status = event_pb2.SessionLog.START
        # Twice: the loader of the TensorBoard server (plugin_event_accumulator)
        # takes the first START of a directory for the run's initial start and
        # purges only from the second on; TF2 writers never write one, so a
        # single marker would be ignored on the first resume. A second purge
        # at the same step drops nothing more.
        w.write(start.SerializeToString())
        w.write(start.SerializeToString())
    os.replace(tmp, final)
    return final
