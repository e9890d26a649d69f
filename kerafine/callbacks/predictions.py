"""The per-epoch prediction cache shared by kerafine callbacks.

Several callbacks need the model's outputs (or an inner layer's, such as the
backbone's embedding) on the same validation data at the end of an epoch:
``AUCTracker`` for the exact AUC, ``DriftMonitor`` for output and embedding
drift. Predicting once per callback would double or triple the cost of every
epoch. Instead each callback wraps its data in an :class:`EvalData` and asks
the :class:`PredictionCache` of its fit context (one per ``fit``, no global
state) for the outputs; the first call runs the model, later calls on the
same inputs and layer with the same weights get the cached arrays.

Freshness is keyed on a digest of the weights themselves
(:func:`weights_digest`), not on the optimizer's step counter, so a cached
prediction never belongs to other weights: a training step, a rollback,
``set_weights`` (``restore_best_weights``) or ``load_weights`` all invalidate
it.

Example:

>>> import numpy as np, keras
>>> from kerafine.callbacks import predictions
>>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
>>> data = predictions.EvalData((np.ones((8, 3), "float32"), np.zeros(8)))
>>> cache = predictions.PredictionCache()
>>> a = cache.predict(model, data)
>>> b = cache.predict(model, predictions.EvalData(data.inputs))  # x alone: same pass
>>> a.y_pred is b.y_pred, cache.passes, a.y_true.shape, b.y_true
(True, 1, (8,), None)
>>> model.set_weights([w + 1 for w in model.get_weights()])
>>> c = cache.predict(model, data)   # new weights: predicted again
>>> cache.passes, bool((c.y_pred != a.y_pred).any())
(2, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Optional

import numpy as np

from kerafine import _batches, _finite
from kerafine.errors import DataError, invalid_argument

__all__ = ["EvalData", "Predictions", "PredictionCache", "predict", "weights_digest"]


@dataclasses.dataclass(frozen=True)
class Predictions:
    """Outputs of one pass over an :class:`EvalData`.

    Attributes:
        y_pred: model (or layer) outputs, ``(n_samples, ...)``, float.
        y_true: labels, ``(n_samples, ...)``, or ``None`` if the data had none.
        sample_weight: ``(n_samples,)`` or ``None``.
        nonfinite: ``(n_samples,)`` bool, True for the rows whose inputs hold
            NaN/inf (their outputs mean nothing: a ReLU may turn NaN into a
            finite score), or ``None`` when not known.
    """

    y_pred: np.ndarray
    y_true: Optional[np.ndarray]
    sample_weight: Optional[np.ndarray]
    nonfinite: Optional[np.ndarray] = None


_n_rows = _batches.n_rows  # kept for importers


class EvalData:
    """Validation data in any form ``model.fit`` accepts, normalised for prediction.

    Args:
        data: ``(x, y)``, ``(x, y, sample_weight)``, or ``x`` alone (numpy arrays,
            dicts of arrays for multi-input models); a ``tf.data.Dataset``
            yielding ``(x, y[, w])`` batches; a ``keras.utils.PyDataset``; or a
            Python generator/iterable of such batches (consumed once and then
            materialised, since a generator cannot be replayed).
        batch_size: batch size for array inputs. Defaults to 256.
        steps: number of batches to draw from a dataset or generator; needed
            when it repeats forever. Defaults to ``None`` (until exhausted).
        argument: the argument name used in error messages.
        nan_ok: count only infinities in :attr:`Predictions.nonfinite` (for a
            model that imputes NaN inputs itself). Defaults to ``False``.

    Raises:
        DataError: if the data is empty or not in a supported form.
    """

    def __init__(
        self,
        data: Any,
        batch_size: int = 256,
        steps: int | None = None,
        argument: str = "validation_data",
        nan_ok: bool = False,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise invalid_argument("batch_size", batch_size, "a positive int")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise invalid_argument("steps", steps, "None or a positive int")
        self.batch_size = batch_size
        self.steps = steps
        self.argument = argument
        self.nan_ok = nan_ok
        self._arrays = None  # (x, y, w) when array-like
        self._iterable = None
        self._source = data
        if isinstance(data, EvalData):
            self._arrays, self._iterable, self._source = data._arrays, data._iterable, data._source
            return
        if self._is_array_like(data):
            self._arrays = (data, None, None)
        elif isinstance(data, tuple) and 1 <= len(data) <= 3 and self._is_array_like(data[0]):
            x = data[0]
            y = None if len(data) < 2 or data[1] is None else np.asarray(data[1])
            w = None if len(data) < 3 or data[2] is None else np.asarray(data[2], dtype=np.float64)
            n = _n_rows(x)
            for name, arr in (("labels", y), ("sample weights", w)):
                if arr is not None and len(arr) != n:
                    raise DataError(
                        f"Invalid value for argument `{argument}`: the inputs have {n} rows but the "
                        f"{name} have {len(arr)}; they must have the same length."
                    )
            self._arrays = (x, y, w)
        elif hasattr(data, "__iter__") or hasattr(data, "__getitem__"):
            self._iterable = data
        else:
            raise invalid_argument(
                argument,
                data,
                "arrays (x, y[, sample_weight]), a tf.data.Dataset, a keras.utils.PyDataset or a generator",
                error=DataError,
            )
        if self._arrays is not None and _n_rows(self._arrays[0]) == 0:
            raise DataError(f"Invalid value for argument `{argument}`: it has 0 rows; pass at least one sample.")

    _is_array_like = staticmethod(_batches.is_array_like)

    @property
    def input_token(self) -> tuple:
        """Identity of the inputs only: ``x`` and ``(x, y)`` over one ``x`` array share a cache entry."""
        if self._arrays is not None:
            return ("arrays", id(self._arrays[0]))
        return ("iterable", id(self._source), self.steps)

    @property
    def inputs(self):
        """The object :attr:`input_token` identifies (kept alive by cache entries)."""
        return self._arrays[0] if self._arrays is not None else self._source

    @property
    def is_arrays(self) -> bool:
        """True for in-memory arrays (labels known without a pass)."""
        return self._arrays is not None

    @property
    def labels(self):
        """The labels of array data, or ``None``."""
        return None if self._arrays is None else self._arrays[1]

    @property
    def weights(self):
        """The sample weights of array data, or ``None``."""
        return None if self._arrays is None else self._arrays[2]

    def _materialise_generator(self) -> None:
        # Python generators and plain iterators can be read once only; keep the
        # batches so every epoch sees the same data.
        import types

        if isinstance(self._iterable, types.GeneratorType) or (
            hasattr(self._iterable, "__next__") and not hasattr(self._iterable, "element_spec")
        ):
            batches = []
            for i, batch in enumerate(self._iterable):
                if self.steps is not None and i >= self.steps:
                    break
                batches.append(batch)
            self._iterable = batches

    def run(self, fn) -> Predictions:
        """Apply ``fn(x_batch) -> outputs`` to every batch; return stacked outputs with labels."""
        if self._arrays is not None:
            x, y, w = self._arrays
            out = fn(x, batch_size=self.batch_size)
            return Predictions(np.asarray(out), y, w, self.nonfinite_inputs())
        self._materialise_generator()
        outs, ys, ws, bad = [], [], [], []
        for batch in _batches.iterate(self._iterable, self.steps):
            xb, yb, wb = _batches.split_batch(batch)
            outs.append(np.asarray(fn(xb, batch_size=None)))
            mask = _finite.row_mask(xb, self.nan_ok)
            bad.append(np.zeros(len(outs[-1]), bool) if mask is None else mask)
            if yb is not None:
                ys.append(np.asarray(yb))
            if wb is not None:
                ws.append(np.asarray(wb, dtype=np.float64))
        if not outs:
            raise DataError(
                f"Invalid value for argument `{self.argument}`: it yielded no batches; pass non-empty data "
                "(or a larger `steps`)."
            )
        y = np.concatenate(ys) if ys else None
        w = np.concatenate(ws) if ws else None
        return Predictions(np.concatenate(outs), y, w, np.concatenate(bad))

    def nonfinite_inputs(self) -> Optional[np.ndarray]:
        """``(n,)`` bool mask of the array rows whose inputs hold NaN/inf (no pass needed); ``None`` for batches."""
        if self._arrays is None:
            return None
        mask = _finite.row_mask(self._arrays[0], self.nan_ok)
        return np.zeros(_n_rows(self._arrays[0]), bool) if mask is None else mask


def weights_digest(model) -> bytes:
    """A digest of every weight of ``model`` (trainable and not, e.g. BatchNorm statistics).

    Two calls return the same digest exactly when no weight changed in between
    (up to a 128-bit hash collision): a training step, a rollback,
    ``set_weights`` or ``load_weights`` all change it, whatever the
    optimizer's step counter says.
    """
    h = hashlib.blake2b(digest_size=16)
    for v in model.weights:
        a = np.ascontiguousarray(v.numpy())
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(memoryview(a).cast("B") if a.ndim else a.tobytes())
    return h.digest()


def _layer_model(model, layer: str):
    import keras

    try:
        target = model.get_layer(layer)
    except ValueError:
        names = [l.name for l in model.layers]
        raise invalid_argument("layer", layer, f"the name of a layer of the model, one of {names}") from None
    return keras.Model(model.inputs, _output_in(model, target))


def _output_in(model, target):
    """The output tensor of ``target`` as called inside ``model``'s graph.

    ``target.output`` is the output of the layer's first call; for a nested
    model (a backbone inside a transfer model) that is the backbone's own
    graph, disconnected from ``model.inputs``. The node of ``model``'s graph
    that calls ``target`` gives the right tensor.
    """
    from kerafine import _keras_compat

    for nodes in _keras_compat.nodes_by_depth(model).values():
        for node in nodes:
            if getattr(node, "operation", None) is target:
                out = node.output_tensors
                return out[0] if len(out) == 1 else out
    return target.output


class PredictionCache:
    """Predictions of one ``fit`` (owned by its fit context), shared by its callbacks.

    An entry is keyed on the *inputs* only (the ``x`` array object, or the
    dataset/generator object and ``steps``) and the layer, so ``x`` alone and
    ``(x, y)`` share one forward pass; it is valid while the weights digest
    (:func:`weights_digest`) is unchanged, so no entry ever answers for other
    weights. Entries of older weights are dropped.
    """

    def __init__(self):
        self._entries: dict = {}  # (id(model), input token, layer) -> (digest, inputs, y_pred, y, w, nonfinite)
        self._submodels: dict = {}  # (id(model), layer) -> (model, sub-model)
        self.passes = 0  # forward passes run (for tests and benchmarks)

    def predict(self, model, data: EvalData, layer: str | None = None) -> Predictions:
        """Outputs of ``model`` (or of its layer ``layer``) on ``data``: cached while the weights are unchanged."""
        digest = weights_digest(model)
        key = (id(model), data.input_token, layer)
        hit = self._entries.get(key)
        if hit is not None and hit[0] == digest:
            y_pred, y, w, bad = hit[2], hit[3], hit[4], hit[5]
        else:
            target = model
            if layer is not None:
                sub = self._submodels.get((id(model), layer))
                if sub is None or sub[0] is not model:
                    sub = (model, _layer_model(model, layer))
                    self._submodels[(id(model), layer)] = sub
                target = sub[1]

            def fn(x, batch_size=None):
                if batch_size is None:
                    return target.predict_on_batch(x)
                return target.predict(x, batch_size=batch_size, verbose=0)

            result = data.run(fn)
            self.passes += 1
            for k in [k for k, v in self._entries.items() if k[0] == id(model) and v[0] != digest]:
                del self._entries[k]
            # The inputs are kept in the entry so that their id cannot be reused while it lives.
            self._entries[key] = (
                digest,
                data.inputs,
                result.y_pred,
                result.y_true,
                result.sample_weight,
                result.nonfinite,
            )
            y_pred, y, w, bad = result.y_pred, result.y_true, result.sample_weight, result.nonfinite
        if data.is_arrays:
            # Labels and weights belong to the caller's data, not to whoever predicted first.
            y, w = data.labels, data.weights
        return Predictions(y_pred, y, w, bad)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self._submodels.clear()


def predict(model, data: EvalData, layer: str | None = None, cache: PredictionCache | None = None) -> Predictions:
    """Outputs of ``model`` (or of its layer ``layer``) on ``data``.

    Args:
        model: a built ``keras.Model``.
        data: the :class:`EvalData` to predict on.
        layer: name of a layer whose output to return (e.g. the backbone, for
            embeddings). Defaults to ``None``: the model's own outputs.
        cache: a :class:`PredictionCache` (a fit context's) to reuse a pass of
            the same weights on the same inputs. Defaults to ``None``: predict.

    Returns:
        :class:`Predictions`.
    """
    return (cache if cache is not None else PredictionCache()).predict(model, data, layer)
