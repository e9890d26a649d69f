"""Input batching shared by the prediction cache, ``fine_tune`` and ``lr_find`` (numpy only).

One place knows how kerafine walks the inputs ``model.fit`` accepts: arrays
(a single array, a dict or a list of arrays with rows on axis 0), and
iterables of batches (a ``tf.data.Dataset``, a ``keras.utils.PyDataset`` read
by index, a generator), each batch ``x``, ``(x,)``, ``(x, y)`` or
``(x, y, sample_weight)``.

Example:

>>> import numpy as np
>>> from kerafine import _batches
>>> x = {"a": np.arange(6).reshape(3, 2), "b": np.arange(3)}
>>> _batches.n_rows(x), _batches.take(x, [2])["b"].tolist()
(3, [2])
>>> [_batches.split_batch(b)[1] for b in _batches.iterate([(1, 10), (2, 20), (3, 30)], steps=2)]
[10, 20]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional

import numpy as np

__all__ = ["n_rows", "take", "is_array_like", "iterate", "split_batch"]


def n_rows(x) -> int:
    """Rows of ``x``: an array, a dict of arrays (multi-input) or a list/tuple of arrays."""
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    if isinstance(x, (list, tuple)):
        return len(x[0])
    return len(x)


def take(x, index):
    """Rows ``index`` (an index array or a slice) of an array, a dict or a list of arrays."""
    if isinstance(x, dict):
        return {k: np.asarray(v)[index] for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [np.asarray(v)[index] for v in x]
    return np.asarray(x)[index]


def is_array_like(x) -> bool:
    """True for in-memory arrays (numpy, tensors) and dicts of them; False for datasets and generators."""
    if isinstance(x, np.ndarray):
        return True
    if isinstance(x, dict):
        return bool(x) and all(isinstance(v, np.ndarray) or hasattr(v, "__array__") for v in x.values())
    return hasattr(x, "__array__") and hasattr(x, "shape")


def iterate(source, steps: Optional[int] = None) -> Iterator[Any]:
    """The batches of ``source``, at most ``steps`` of them.

    A ``keras.utils.PyDataset`` (or any sized, indexable sequence that is not
    a ``tf.data.Dataset``) is read by index, ``num_batches`` of them when it
    says so; anything else is iterated.
    """
    if hasattr(source, "__len__") and hasattr(source, "__getitem__") and not hasattr(source, "element_spec"):
        n = len(source)
        if getattr(source, "num_batches", None) is not None:
            n = source.num_batches
        batches: Iterator = (source[i] for i in range(n))
    else:
        batches = iter(source)
    for i, batch in enumerate(batches):
        if steps is not None and i >= steps:
            return
        yield batch


def split_batch(batch) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` of one batch (``None`` for what it lacks)."""
    if isinstance(batch, (tuple, list)):
        x = batch[0]
        y = batch[1] if len(batch) > 1 else None
        w = batch[2] if len(batch) > 2 else None
        return x, y, w
    return batch, None, None
