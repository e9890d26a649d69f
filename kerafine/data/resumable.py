"""A shuffled input whose order can be replayed after a restart.

With ``model.fit(x_array, y_array, shuffle=True)`` the order of every epoch is
drawn inside TensorFlow (``tf.data`` shuffling) and a resumed process cannot
draw the same order again. :class:`ResumableSequence` is a
``keras.utils.PyDataset`` whose order is a pure function of ``(seed, epoch)``
and whose per-batch augmentation randomness is a pure function of
``(seed, epoch, batch index)``; ``CheckpointRestart`` tells it which epoch is
being trained (bind it: ``CheckpointRestart(..., data=seq)``), so a resumed run (from an epoch boundary or from the middle of
an epoch) sees exactly the batches the uninterrupted run saw.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from kerafine.errors import DataError, invalid_argument

__all__ = ["ResumableSequence"]


def _num_rows(structure) -> int:
    leaves = keras.tree.flatten(structure)
    if not leaves:
        raise DataError("ResumableSequence got empty inputs (no arrays in `x`).")
    sizes = {int(np.shape(a)[0]) if np.ndim(a) else -1 for a in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise DataError(
            f"All arrays given to ResumableSequence must share their first dimension; got sizes {sorted(sizes)}."
        )
    return sizes.pop()


class ResumableSequence(keras.utils.PyDataset):
    """Batches of in-memory arrays in an order fixed by ``(seed, epoch)``.

    Epoch ``e`` visits the rows in ``numpy.random.default_rng([seed, e])``
    permutation order (or in order when ``shuffle=False``). Nothing depends on
    global random state, on worker timing or on how many epochs this process
    has run, so a run restarted by ``CheckpointRestart`` replays its epoch
    exactly, also from the middle of an epoch.

    Pass it to ``fit`` with ``shuffle=False`` (the sequence shuffles itself;
    ``fit``'s own ``shuffle=True`` would reorder the batches with Python's
    global ``random`` on top, which a resume cannot replay; a warning says so
    if it is detected).

    Args:
        x: an array, or a list/tuple/dict of arrays, with rows on axis 0.
        y: targets with the same number of rows, or ``None``. Defaults to
            ``None``.
        sample_weight: per-row weights, or ``None``. Defaults to ``None``.
        batch_size: rows per batch. Defaults to ``32``.
        shuffle: permute the rows every epoch. Defaults to ``True``.
        seed: the seed of the permutations and of ``transform``'s generator.
            Defaults to ``0``.
        drop_remainder: drop the last, smaller batch. Defaults to ``False``.
        transform: optional ``f(x_batch, y_batch, rng) -> (x_batch, y_batch)``
            applied to every batch, for augmentation; ``rng`` is a
            ``numpy.random.Generator`` seeded by ``(seed, epoch, index)``, so
            the augmentation is replayed exactly too. Defaults to ``None``.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size`` as
            for ``keras.utils.PyDataset``.

    Raises:
        KerafineError: for a bad ``batch_size`` or ``seed``; ``DataError`` for
            arrays of different lengths or no rows.

    Example:

    >>> import numpy as np
    >>> from kerafine.data.resumable import ResumableSequence
    >>> seq = ResumableSequence(np.arange(10.0)[:, None], np.arange(10.0), batch_size=4, seed=7)
    >>> len(seq)
    3
    >>> seq.set_epoch(2)
    >>> a = seq[0][1]
    >>> seq.set_epoch(2)
    >>> bool((seq[0][1] == a).all())
    True
    """

    def __init__(
        self,
        x,
        y=None,
        sample_weight=None,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int = 0,
        drop_remainder: bool = False,
        transform: Callable[[Any, Any, np.random.Generator], tuple] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise invalid_argument("batch_size", batch_size, "an int >= 1")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise invalid_argument("seed", seed, "an int >= 0")
        if transform is not None and not callable(transform):
            raise invalid_argument("transform", transform, "None or a callable f(x, y, rng) -> (x, y)")
        self.x = x
        self.y = y
        self.sample_weight = sample_weight
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_remainder = bool(drop_remainder)
        self.transform = transform
        parts = [p for p in (x, y, sample_weight) if p is not None]
        self._n = _num_rows(parts)
        if self._n == 0 or len(self) == 0:
            raise DataError(f"ResumableSequence has no complete batch: {self._n} rows, batch_size={batch_size}.")
        self._epoch = 0
        self._pinned = False
        self._begun = False
        self._in_epoch = False  # direct indexing outside fit is free to jump around
        self._order_cache: tuple[int, np.ndarray] | None = None
        self._last_index = None
        self._warned_order = False

    # -- order -----------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The epoch whose order ``__getitem__`` serves."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Serve epoch ``epoch``'s order from now on (also across the next ``on_epoch_begin``)."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise invalid_argument("epoch", epoch, "an int >= 0")
        self._epoch = int(epoch)
        self._pinned = True
        self._last_index = None

    def order(self, epoch: int) -> np.ndarray:
        """Row indices of epoch ``epoch`` in visiting order (int64, length = rows)."""
        cached = self._order_cache
        if cached is not None and cached[0] == epoch:
            return cached[1]
        if self.shuffle:
            perm = np.random.default_rng([self.seed, int(epoch)]).permutation(self._n)
        else:
            perm = np.arange(self._n)
        self._order_cache = (epoch, perm)
        return perm

    def __len__(self) -> int:
        if self.drop_remainder:
            return self._n // self.batch_size
        return math.ceil(self._n / self.batch_size)

    def __getitem__(self, index):
        if index < 0 or index >= len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        self._check_sequential(index)
        epoch = self._epoch
        rows = self.order(epoch)[index * self.batch_size : (index + 1) * self.batch_size]

        def take(a):
            return np.asarray(a)[rows]

        xb = keras.tree.map_structure(take, self.x)
        yb = None if self.y is None else keras.tree.map_structure(take, self.y)
        if self.transform is not None:
            rng = np.random.default_rng([self.seed, epoch, int(index), 1])
            xb, yb = self.transform(xb, yb, rng)
        if self.y is None:
            return (xb,)
        if self.sample_weight is None:
            return xb, yb
        return xb, yb, take(self.sample_weight)

    def _check_sequential(self, index):
        # fit(shuffle=True) makes Keras request the batches in a random order
        # drawn from Python's global `random`; detect it (only possible with
        # a single in-process worker, as parallel workers also ask out of order).
        if not self._in_epoch or self.workers > 1 or self.use_multiprocessing:
            return
        last = self._last_index
        self._last_index = index
        if last is None or index == 0 or index == last + 1 or self._warned_order:
            return
        self._warned_order = True
        warnings.warn(
            "ResumableSequence received batch requests out of order: pass shuffle=False to fit() "
            "(the sequence shuffles itself); with fit(shuffle=True) a resumed run cannot replay the order.",
            stacklevel=2,
        )

    # -- epoch hooks (called by Keras's data adapter) ---------------------
    def on_epoch_begin(self):
        if self._pinned:
            self._pinned = False
        elif self._begun:
            self._epoch += 1
        self._begun = True
        self._in_epoch = True
        self._last_index = None

    def on_epoch_end(self):
        self._in_epoch = False
        self._last_index = None
