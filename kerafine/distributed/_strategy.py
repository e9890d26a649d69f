"""``multi_worker_strategy``: TensorFlow's MultiWorkerMirroredStrategy, with Keras 3 fixed to run under it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from kerafine.errors import KerafineError, invalid_argument

_COMMUNICATIONS = ("auto", "ring", "nccl")


@dataclass(frozen=True)
class ClusterInfo:
    """This process's place in the cluster described by ``TF_CONFIG``.

    Attributes:
        task_type: ``"worker"`` or ``"chief"`` (``None`` without ``TF_CONFIG``).
        task_index: index of this task among those of its type.
        num_workers: number of training tasks (chief plus workers); 1 without ``TF_CONFIG``.
        is_chief: whether this task writes checkpoints, TensorBoard events and reports.
    """

    task_type: str | None
    task_index: int
    num_workers: int
    is_chief: bool


def _read_tf_config(environ=None) -> dict | None:
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG")
    if raw is None or not raw.strip():
        return None
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise KerafineError(
            f"Invalid value for the environment variable `TF_CONFIG`: received {raw[:200]!r}, which is not "
            f"JSON ({exc}); expected e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}.'
        ) from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise KerafineError(
            f"Invalid value for the environment variable `TF_CONFIG`: received {raw[:200]!r}; expected a JSON "
            'object with a "cluster" (task type -> list of "host:port") and a "task" ({"type": ..., "index": ...}).'
        )
    task_type, index = task.get("type"), task.get("index", 0)
    tasks = cluster.get(task_type)
    if not isinstance(tasks, list) or isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(tasks):
        raise KerafineError(
            f"Invalid value for the environment variable `TF_CONFIG`: its task {task!r} is not in its cluster "
            f"{cluster!r}; expected the task type to be a key of the cluster and the index within its list."
        )
    return config


def cluster_info(environ=None) -> ClusterInfo:
    """Where this process stands in the cluster described by ``TF_CONFIG``.

    Args:
        environ: the environment to read. Defaults to ``None`` (``os.environ``).

    Returns:
        A :class:`ClusterInfo`. Without ``TF_CONFIG`` this process is a single chief worker.

    Raises:
        KerafineError: if ``TF_CONFIG`` is set but malformed.

    Example:

    >>> from kerafine.distributed import cluster_info
    >>> cfg = '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}'
    >>> cluster_info({"TF_CONFIG": cfg})
    ClusterInfo(task_type='worker', task_index=1, num_workers=2, is_chief=False)
    """
    config = _read_tf_config(environ)
    if config is None:
        return ClusterInfo(None, 0, 1, True)
    cluster, task = config["cluster"], config["task"]
    task_type, index = task["type"], int(task.get("index", 0))
    num = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    chief = task_type == "chief" or (task_type == "worker" and index == 0 and not cluster.get("chief"))
    return ClusterInfo(task_type, index, num, chief)


def is_chief(environ=None) -> bool:
    """True unless ``TF_CONFIG`` makes this process a non-chief worker.

    >>> from kerafine.distributed import is_chief
    >>> is_chief({})
    True
    """
    return cluster_info(environ).is_chief


def multi_worker_strategy(communication: str = "auto", timeout_seconds: float | None = None):
    """A ``tf.distribute.MultiWorkerMirroredStrategy`` under which Keras 3's ``fit`` works.

    Keras 3 cannot ``fit`` under TensorFlow's multi-worker strategy
    (keras-team/keras#20585). This call applies kerafine's fix for it (see
    :mod:`kerafine._keras_compat`: the fix changes nothing outside
    multi-worker collectives) and creates the strategy. Create it at the start
    of the program, before other TensorFlow work, and build and compile the
    model under ``strategy.scope()``; ``fit`` then shards the data across
    workers, all-reduces the gradients and averages the logged loss and
    metrics across workers, so every worker logs the same values.

    The cluster is read from ``TF_CONFIG`` (set by ``python -m
    kerafine.distributed`` locally, or by your scheduler). Without it the
    strategy trains in this process alone.

    Args:
        communication: the collective implementation, ``"auto"``, ``"ring"``
            (gRPC, works everywhere) or ``"nccl"`` (GPUs). Defaults to ``"auto"``.
        timeout_seconds: give up a collective operation (e.g. waiting for a
            dead worker) after this many seconds, raising an error instead of
            hanging. Defaults to ``None`` (TensorFlow's default: wait).

    Returns:
        The ``tf.distribute.MultiWorkerMirroredStrategy``.

    Raises:
        KerafineError: for a bad argument or a malformed ``TF_CONFIG``, before
            any TensorFlow work; or if this Keras release is one kerafine's fix
            does not recognise.

    Example:

    ```python
    import keras, numpy as np
    from kerafine.distributed import multi_worker_strategy

    strategy = multi_worker_strategy()
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    model.fit(x, (x[:, 0] > 0).astype("float32"), batch_size=16, epochs=1, verbose=0)
    ```
    """
    if communication not in _COMMUNICATIONS:
        raise invalid_argument("communication", communication, f"one of {list(_COMMUNICATIONS)}")
    if timeout_seconds is not None and (
        isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) or not timeout_seconds > 0
    ):
        raise invalid_argument("timeout_seconds", timeout_seconds, "None or a positive number of seconds")
    _read_tf_config()  # a malformed TF_CONFIG fails here, with a clear message
    from kerafine import _keras_compat

    _keras_compat.install_multi_worker_fixes()
    import tensorflow as tf

    impl = {
        "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
        "ring": tf.distribute.experimental.CommunicationImplementation.RING,
        "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
    }[communication]
    options = tf.distribute.experimental.CommunicationOptions(implementation=impl, timeout_seconds=timeout_seconds)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
