"""Where this process stands in a multi-worker cluster, read from ``TF_CONFIG``.

Plumbing without TensorFlow: :mod:`kerafine.tensorboard` and the callbacks use it
to write from the chief only; :mod:`kerafine.distributed` re-exports it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from kerafine.errors import KerafineError

__all__ = ["ClusterInfo", "cluster_info", "is_chief"]


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
    cluster_has_chief: bool = field(default=False, repr=False)

    @property
    def rank(self) -> int:
        """This task's place among the ``num_workers`` training tasks (the chief's is 0).

        Use it to pick this worker's shard of data: ``rows[info.rank :: info.num_workers]``.
        It is the order in which the strategy numbers its workers' replicas.

        >>> from kerafine.distributed import cluster_info
        >>> cfg = '{"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}'
        >>> info = cluster_info({"TF_CONFIG": cfg})
        >>> info.task_index, info.rank, info.num_workers
        (0, 1, 2)
        """
        if self.task_type == "chief":
            return 0
        return self.task_index + (1 if self.cluster_has_chief else 0)


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
    if (
        not isinstance(tasks, list)
        or isinstance(index, bool)
        or not isinstance(index, int)
        or not 0 <= index < len(tasks)
    ):
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
    return ClusterInfo(task_type, index, num, chief, bool(cluster.get("chief")))


def is_chief(environ=None) -> bool:
    """True unless ``TF_CONFIG`` makes this process a non-chief worker.

    >>> from kerafine.distributed import is_chief
    >>> is_chief({})
    True
    """
    return cluster_info(environ).is_chief
