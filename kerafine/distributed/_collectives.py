"""Exchanging small Python payloads between the workers of a multi-worker strategy.

Callbacks that must decide alike on every worker from data each worker holds
only a part of (``DriftMonitor`` with a sharded reference) exchange that part
here: every worker calls :func:`all_gather_bytes` at the same point with its
own payload and gets every worker's payload back, in worker order. It uses
the strategy's own collectives (``experimental_distribute_values_from_function``
and ``gather``, public TensorFlow API), so it works wherever the strategy's
gradient all-reduce works, with no shared file system.

Every worker must make the same calls in the same order (a collective that
one worker skips waits for it forever), as for any collective operation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["all_gather_bytes", "num_workers_of"]


def num_workers_of(strategy) -> int:
    """How many workers ``strategy`` spans: 1 for anything but a multi-worker strategy in a cluster."""
    from kerafine import _keras_compat

    if strategy is None or not _keras_compat.in_multi_worker_mode(strategy):
        return 1
    return int(strategy.cluster_resolver.cluster_spec().num_tasks("worker")) + _chief_tasks(strategy)


def _chief_tasks(strategy) -> int:
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return len(spec.get("chief", []))


def _gather(strategy, array: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    local = tf.constant(array)
    value = strategy.experimental_distribute_values_from_function(lambda ctx: local)
    return strategy.gather(value, axis=0).numpy()


def all_gather_bytes(payload: bytes, strategy) -> list[bytes]:
    """Every worker's ``payload``, in worker order (this worker's own included).

    Args:
        payload: this worker's bytes (any length; workers may differ).
        strategy: the ``tf.distribute`` strategy the model trains under.

    Returns:
        ``[payload of rank 0, payload of rank 1, ...]`` (the strategy's replica
        order: ``kerafine.distributed.cluster_info().rank``); just ``[payload]``
        outside a multi-worker cluster (no collective then).
    """
    if num_workers_of(strategy) == 1:
        return [bytes(payload)]
    if strategy.num_replicas_in_sync != num_workers_of(strategy):
        # One replica per worker (CPU workers, or one GPU each) is what the
        # gather below assumes; with several local replicas each would send
        # the payload once.
        from kerafine.errors import KerafineError

        raise KerafineError(
            f"kerafine exchanges callback data with one replica per worker; this strategy has "
            f"{strategy.num_replicas_in_sync} replicas on {num_workers_of(strategy)} workers."
        )
    raw = np.frombuffer(bytes(payload), dtype=np.uint8)
    words = np.zeros(-(-len(raw) // 8), dtype=np.uint8).repeat(8)
    words[: len(raw)] = raw
    # Lengths first (one int64 each), then the payloads as int64 words
    # (collective gather has no uint8 kernel), split by those lengths.
    lengths = _gather(strategy, np.array([len(raw)], dtype=np.int64))
    data = _gather(strategy, words.view(np.int64))
    out, start = [], 0
    for n in lengths.tolist():
        n_words = -(-n // 8)
        out.append(data[start : start + n_words].view(np.uint8)[:n].tobytes())
        start += n_words
    return out
