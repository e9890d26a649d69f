"""The single TensorBoard writer of kerafine.

Every kerafine callback writes its events through this module, into
``<log_dir>/kerafine`` beside the ``train/`` and ``validation/`` folders that
Keras's own ``keras.callbacks.TensorBoard`` writes, so one
``tensorboard --logdir <log_dir>`` shows both. Callbacks never open their own
``tf.summary`` writers: one writer per directory per process avoids several
event files racing for the same run.

Steps: every scalar in ``<log_dir>/kerafine`` is per epoch (step = epoch).
Series whose step is the optimizer iteration (per-batch monitoring,
checkpoint saves) are written with :func:`batch_scalars` / :func:`batch_text`
into their own directory ``<log_dir>/kerafine/batch`` and their tags start
with ``batch/``, so the two step scales never share a chart, and a resume's
purge (:func:`purge_after`) drops each directory's orphaned points at its own
step (the resumed epoch, the resumed optimizer iteration).

Layout: the writer also writes one custom-scalars layout per run (the
``CUSTOM SCALARS`` tab): see :func:`layout_for`. It is written once the first
epoch is over (when the first scalar of a later epoch arrives, or at
:func:`flush` / :func:`close`), and again only if a chart appears later (a
callback checking every other epoch).

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
    "BATCH_SUBDIR",
    "batch_scalars",
    "batch_text",
    "layout_for",
    "write_layout",
    "read_layout",
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
BATCH_SUBDIR = SUBDIR + "/batch"
_BATCH_PREFIX = "batch/"

_lock = threading.Lock()
_writers: dict[str, Any] = {}


class _RunLayout:
    """What the layout of one run needs: the scalar tags this process wrote, the first epoch step, the last layout."""

    __slots__ = ("tags", "first_step", "written")

    def __init__(self, first_step: int | None = None):
        self.tags: set = set()
        self.first_step = first_step
        self.written: bytes | None = None


# Per log_dir (absolute path), as _writers is per directory.
_runs: dict[str, _RunLayout] = {}


def _run(key: str, step: int | None = None) -> _RunLayout:
    with _lock:
        run = _runs.get(key)
        if run is None:
            run = _runs[key] = _RunLayout(step)
        elif run.first_step is None:
            run.first_step = step
        return run


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
    """Write several scalars at one ``step``; NaN values are written as NaN.

    In the default ``subdir`` the step is the epoch; use :func:`batch_scalars`
    for a series stepped by optimizer iteration.
    """
    import tensorflow as tf

    key = os.path.abspath(os.fspath(log_dir))
    if subdir == SUBDIR:
        if int(step) != _run(key, int(step)).first_step:
            # The first epoch is over: every callback has written its tags once.
            write_layout(log_dir, only_if_changed=True)
    w = _writer(log_dir, subdir)
    with w.as_default():
        for tag, value in values.items():
            tf.summary.scalar(tag, float(value), step=int(step))
    w.flush()
    if subdir in (SUBDIR, BATCH_SUBDIR):
        _run(key).tags.update(values)


def batch_scalars(log_dir, values: dict, step: int) -> None:
    """Write scalars stepped by optimizer iteration: tag ``batch/<tag>`` in ``<log_dir>/kerafine/batch``.

    Example:

    >>> import tempfile
    >>> from kerafine import tensorboard
    >>> log_dir = tempfile.mkdtemp()
    >>> tensorboard.batch_scalars(log_dir, {"monitor/step_seconds": 0.01}, step=50)
    >>> sorted(tensorboard.read_scalars(log_dir, subdir=tensorboard.BATCH_SUBDIR))
    ['batch/monitor/step_seconds']
    """
    scalars(log_dir, {_BATCH_PREFIX + tag: v for tag, v in values.items()}, step, subdir=BATCH_SUBDIR)


def batch_text(log_dir, tag: str, message: str, step: int) -> None:
    """Write a text event stepped by optimizer iteration (tag ``batch/<tag>`` in ``<log_dir>/kerafine/batch``)."""
    text(log_dir, _BATCH_PREFIX + tag, message, step, subdir=BATCH_SUBDIR)


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
    """Write the layout if it is due, then flush the writer of ``log_dir`` (or all writers)."""
    _write_pending_layouts(log_dir)
    with _lock:
        targets = [w for p, w in _writers.items() if log_dir is None or p.startswith(os.fspath(log_dir))]
    for w in targets:
        w.flush()


def close(log_dir=None) -> None:
    """Flush and close the writer(s) of ``log_dir`` (or all); a later write reopens one."""
    _write_pending_layouts(log_dir)
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


# ---------------------------------------------------------------- layout
# The epoch/ series of TrainingMonitor, in the order the health charts show them.
_HEALTH = {
    "step_seconds": "seconds per step",
    "samples_per_second": "samples per second",
    "update_ratio": "update / weight ratio",
    "cpu_percent": "CPU % (100 = one core)",
    "rss_mb": "resident memory (MB)",
    "gpu_memory_mb": "GPU memory (MB)",
}
_BATCH_MONITOR = ("learning_rate", "step_seconds", "update_ratio")


def _exact(tag: str) -> str:
    # Chart tags are regular expressions (JavaScript's, in the browser); kerafine
    # tags hold only letters, digits and _ . - /, of which "." needs escaping.
    return "^" + tag.replace(".", r"\.") + "$"


def layout_for(tags, keras_loss: bool = False, keras_learning_rate: bool = False):
    """The custom-scalars layout of a run that writes the scalar ``tags``.

    Charts appear only for tags the run writes, in this order:

    1. The overview, in two categories titled by their charts (TensorBoard
       draws a category's line charts before its margin charts): loss
       (Keras's ``epoch_loss`` of the ``train`` and ``validation`` runs, when
       ``keras_loss``) and each AUC written with its confidence bounds
       (``val_auc``, ``val_auc_lower``, ``val_auc_upper``) as a margin chart
       (the band is the DeLong interval); then PR-AUC (``val_pr_auc``), the
       learning rate (TrainingMonitor's ``epoch/learning_rate``, else Keras's
       ``epoch_learning_rate`` when ``keras_learning_rate``) and the drift
       share (``drift/share``).
    2. **Training health**: TrainingMonitor's per-epoch speed, update ratio,
       CPU, memory.
    3. One category per remaining prefix (``drift``, ``security``, ...; the
       per-class AUCs under **AUC per class**), one chart each, or one chart
       per family for ``drift/effect/*`` and ``drift/p_value/*``.
    4. **Per batch** (closed): ``batch/monitor/*``, ``batch/update_ratio/*``,
       ``batch/weight_norm/*``, stepped by optimizer iteration.
    5. **Checkpoints** (closed, last): ``batch/checkpoint/*``, ``batch/rollback``.

    Args:
        tags: the scalar tags written under ``<log_dir>/kerafine`` (and
            ``kerafine/batch``).
        keras_loss: Keras's ``TensorBoard`` callback writes ``epoch_loss`` in
            the same ``log_dir``. Defaults to ``False``.
        keras_learning_rate: Keras's ``TensorBoard`` callback writes
            ``epoch_learning_rate``. Defaults to ``False``.

    Returns:
        A ``tensorboard.plugins.custom_scalar.layout_pb2.Layout``.

    Example:

    >>> from kerafine import tensorboard
    >>> layout = tensorboard.layout_for({"val_auc", "val_auc_lower", "val_auc_upper", "drift/share"}, keras_loss=True)
    >>> [(category.title, [chart.title for chart in category.chart]) for category in layout.category]
    [('loss, val_auc', ['loss (train, validation)', 'val_auc (band: DeLong interval)']), ('drift share', ['drift share'])]
    """
    from tensorboard.plugins.custom_scalar import layout_pb2

    tags = set(tags)
    used: set = set()
    categories: list = []

    def multiline(title, *regexes):
        return layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(tag=list(regexes)))

    def single(tag, title=None):
        used.add(tag)
        return multiline(title or tag, _exact(tag))

    # TensorBoard draws a category's line charts before its margin charts, so the
    # overview is two categories: loss and AUC band, then PR-AUC, rate, drift.
    quality, more = [], []
    if keras_loss:
        quality.append(multiline("loss (train, validation)", _exact("epoch_loss")))
    aucs = sorted(t for t in tags if f"{t}_lower" in tags and f"{t}_upper" in tags)
    for t in aucs:
        used.update({t, f"{t}_lower", f"{t}_upper"})
        series = layout_pb2.MarginChartContent.Series(value=t, lower=f"{t}_lower", upper=f"{t}_upper")
        quality.append(
            layout_pb2.Chart(
                title=f"{t} (band: DeLong interval)", margin=layout_pb2.MarginChartContent(series=[series])
            )
        )
    for t in sorted(t for t in tags if t.endswith("auc") and "/" not in t and t not in used):
        if not t.endswith("pr_auc"):
            quality.append(single(t))
    for t in sorted(t for t in tags if t.endswith("pr_auc") and "/" not in t and t not in used):
        more.append(single(t))
    if "epoch/learning_rate" in tags:
        more.append(single("epoch/learning_rate", "learning rate"))
    elif keras_learning_rate:
        more.append(multiline("learning rate", _exact("epoch_learning_rate")))
    if "drift/share" in tags:
        more.append(single("drift/share", "drift share"))
    for charts in (quality, more):
        if charts:
            title = ", ".join(c.title.split(" (")[0] for c in charts)
            categories.append(layout_pb2.Category(title=title, chart=charts))

    health = [single(f"epoch/{k}", title) for k, title in _HEALTH.items() if f"epoch/{k}" in tags]
    health += [single(t) for t in sorted(tags) if t.startswith("epoch/") and t not in used]
    if health:
        categories.append(layout_pb2.Category(title="Training health (per epoch)", chart=health))

    # What is left of the per-epoch tags: one category per prefix.
    groups: dict[str, list] = {}
    for t in sorted(t for t in tags if t not in used and not t.startswith(_BATCH_PREFIX)):
        if "/" in t:
            head = t.split("/", 1)[0]
        else:
            head = "AUC per class" if any(t.startswith(a + "_") for a in aucs) or "auc_" in t else "other"
        groups.setdefault(head, []).append(t)
    for head, members in groups.items():
        charts, seen_families = [], set()
        if "drift/largest_effect" in members:
            members.remove("drift/largest_effect")
            charts.append(single("drift/largest_effect", "drift: largest effect of a feature"))
        for t in members:
            parts = t.split("/")
            if head == "drift" and len(parts) == 3 and parts[1] in ("effect", "p_value"):
                family = parts[1]
                if family not in seen_families:
                    seen_families.add(family)
                    charts.append(multiline(f"drift {family.replace('_', ' ')} per feature", rf"^drift/{family}/"))
                used.add(t)
            else:
                charts.append(single(t))
        categories.append(layout_pb2.Category(title=head, chart=charts))

    batch = [
        single(f"batch/monitor/{k}", f"{k.replace('_', ' ')} (per batch)")
        for k in _BATCH_MONITOR
        if f"batch/monitor/{k}" in tags
    ]
    for family in ("update_ratio", "weight_norm"):
        if any(t.startswith(f"batch/{family}/") for t in tags):
            batch.append(multiline(f"{family.replace('_', ' ')} per layer group (per batch)", rf"^batch/{family}/"))
            used.update(t for t in tags if t.startswith(f"batch/{family}/"))
    checkpoints = [single(t) for t in sorted(tags) if t.startswith(("batch/checkpoint/", "batch/rollback"))]
    batch += [single(t) for t in sorted(tags) if t.startswith(_BATCH_PREFIX) and t not in used]
    if batch:
        categories.append(layout_pb2.Category(title="Per batch (step = optimizer iteration)", chart=batch, closed=True))
    if checkpoints:
        categories.append(
            layout_pb2.Category(title="Checkpoints (step = optimizer iteration)", chart=checkpoints, closed=True)
        )
    return layout_pb2.Layout(category=categories)


def write_layout(log_dir, only_if_changed: bool = False):
    """Write the custom-scalars layout of ``log_dir`` into ``<log_dir>/kerafine`` (at step 0).

    The layout (:func:`layout_for`) covers the scalar tags this process has
    written under ``log_dir``, and Keras's loss and learning rate when a
    Keras ``TensorBoard`` writes ``<log_dir>/train``. kerafine calls this
    itself once the first epoch is over and at :func:`flush`; call it to
    write the layout earlier.

    Args:
        log_dir: the run directory.
        only_if_changed: skip the write when this process already wrote the
            same layout for ``log_dir``. Defaults to ``False``.

    Returns:
        The layout (a ``layout_pb2.Layout``), or ``None`` when nothing was
        written under ``log_dir`` yet.
    """
    import tensorflow as tf
    from tensorboard.plugins.custom_scalar import summary as cs_summary

    key = os.path.abspath(os.fspath(log_dir))
    run = _runs.get(key)
    tags = set(run.tags) if run is not None else set()
    if not tags:
        return None
    keras_run = os.path.isdir(os.path.join(key, "train"))
    layout = layout_for(tags, keras_loss=keras_run, keras_learning_rate=keras_run)
    blob = layout.SerializeToString(deterministic=True)
    if only_if_changed and run.written == blob:
        return layout
    w = _writer(log_dir, SUBDIR)
    with w.as_default():
        tf.summary.experimental.write_raw_pb(cs_summary.pb(layout).SerializeToString(), step=0)
    w.flush()
    run.written = blob
    return layout


def _write_pending_layouts(log_dir=None) -> None:
    prefix = None if log_dir is None else os.path.abspath(os.fspath(log_dir))
    for key in list(_runs):
        # A run directory removed since (a temporary one) is not brought back.
        if (prefix is None or key == prefix or key.startswith(prefix + os.sep)) and os.path.isdir(key):
            write_layout(key, only_if_changed=True)


def read_layout(log_dir):
    """The last custom-scalars layout written under ``<log_dir>/kerafine``, or ``None``.

    Read with TensorBoard's own event loader, as the Custom Scalars tab reads it.

    Example:

    >>> import tempfile
    >>> from kerafine import tensorboard
    >>> log_dir = tempfile.mkdtemp()
    >>> tensorboard.scalar(log_dir, "val_auc", 0.9, step=0)
    >>> tensorboard.flush(log_dir)
    >>> [c.title for c in tensorboard.read_layout(log_dir).category]
    ['val_auc']
    """
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata
    from tensorboard.util import tensor_util

    found = None
    for _, value in _iter_values(log_dir, SUBDIR):
        if value.tag == metadata.CONFIG_SUMMARY_TAG:
            found = tensor_util.make_ndarray(value.tensor).item()
    if found is None:
        return None
    layout = layout_pb2.Layout()
    layout.ParseFromString(found)
    return layout
