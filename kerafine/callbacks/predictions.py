"""The per-epoch prediction cache shared by kerafine callbacks.

Several callbacks need the model's outputs (or an inner layer's, such as the
backbone's embedding) on the same validation data at the end of an epoch:
``AUCTracker`` for the exact AUC, ``DriftMonitor`` for output and embedding
drift. Predicting once per callback would double or triple the cost of every
epoch. Instead each callback wraps its data in an :class:`EvalData` and asks
:func:`predict` for the outputs; the first call in an epoch runs the model,
later calls with the same data, layer and model state get the cached arrays.

Freshness is keyed on the optimizer's step counter (``optimizer.iterations``),
not the epoch number, so a cache entry can never outlive a weight update: a
rollback, an extra batch or a new ``fit`` all invalidate it.

Example:

>>> import numpy as np, keras
>>> from kerafine.callbacks import predictions
>>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
>>> data = predictions.EvalData((np.ones((8, 3), "float32"), np.zeros(8)))
>>> a = predictions.predict(model, data)
>>> b = predictions.predict(model, data)   # cached: no second forward pass
>>> a.y_pred is b.y_pred, a.y_pred.shape, a.y_true.shape
(True, (8, 1), (8,))
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Optional

import numpy as np

from kerafine.errors import DataError, invalid_argument

__all__ = ["EvalData", "Predictions", "predict", "clear"]


@dataclasses.dataclass(frozen=True)
class Predictions:
    """Outputs of one pass over an :class:`EvalData`.

    Attributes:
        y_pred: model (or layer) outputs, ``(n_samples, ...)``, float.
        y_true: labels, ``(n_samples, ...)``, or ``None`` if the data had none.
        sample_weight: ``(n_samples,)`` or ``None``.
    """

    y_pred: np.ndarray
    y_true: Optional[np.ndarray]
    sample_weight: Optional[np.ndarray]


def _n_rows(x) -> int:
    """Rows of ``x``: an array, a dict of arrays (multi-input) or a list/tuple of arrays."""
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    if isinstance(x, (list, tuple)):
        return len(x[0])
    return len(x)


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

    Raises:
        DataError: if the data is empty or not in a supported form.
    """

    def __init__(self, data: Any, batch_size: int = 256, steps: int | None = None, argument: str = "validation_data"):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise invalid_argument("batch_size", batch_size, "a positive int")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise invalid_argument("steps", steps, "None or a positive int")
        self.batch_size = batch_size
        self.steps = steps
        self.argument = argument
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

    @staticmethod
    def _is_array_like(x) -> bool:
        if isinstance(x, np.ndarray):
            return True
        if isinstance(x, dict):
            return all(isinstance(v, np.ndarray) or hasattr(v, "__array__") for v in x.values())
        # tf.Tensor and other array-likes, but not datasets or generators.
        return hasattr(x, "__array__") and hasattr(x, "shape")

    @property
    def token(self) -> tuple:
        """Identity of the underlying data: two EvalData over the same objects share a cache entry."""
        if self._arrays is not None:
            return ("arrays",) + tuple(id(a) for a in self._arrays)
        return ("iterable", id(self._source), self.steps)

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
            return Predictions(np.asarray(out), y, w)
        self._materialise_generator()
        outs, ys, ws = [], [], []
        source = self._iterable
        if hasattr(source, "__len__") and hasattr(source, "__getitem__") and not hasattr(source, "element_spec"):
            n_batches = len(source)
            if hasattr(source, "num_batches") and source.num_batches is not None:
                n_batches = source.num_batches
            iterator = (source[i] for i in range(n_batches))
        else:
            iterator = iter(source)
        for i, batch in enumerate(iterator):
            if self.steps is not None and i >= self.steps:
                break
            if isinstance(batch, (tuple, list)) and not isinstance(batch, dict):
                xb = batch[0]
                yb = batch[1] if len(batch) > 1 else None
                wb = batch[2] if len(batch) > 2 else None
            else:
                xb, yb, wb = batch, None, None
            outs.append(np.asarray(fn(xb, batch_size=None)))
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
        return Predictions(np.concatenate(outs), y, w)


# model -> {(data token, layer, step): Predictions}; weak so models can be freed.
_cache: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
_submodels: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _model_step(model) -> int | None:
    opt = getattr(model, "optimizer", None)
    if opt is None or not getattr(model, "compiled", True):
        return None
    try:
        return int(np.asarray(opt.iterations))
    except (AttributeError, TypeError, ValueError):
        return None


def _layer_model(model, layer: str):
    import keras

    per_model = _submodels.setdefault(model, {})
    if layer not in per_model:
        try:
            target = model.get_layer(layer)
        except ValueError:
            names = [l.name for l in model.layers]
            raise invalid_argument("layer", layer, f"the name of a layer of the model, one of {names}") from None
        per_model[layer] = keras.Model(model.inputs, _output_in(model, target))
    return per_model[layer]


def _output_in(model, target):
    """The output tensor of ``target`` as called inside ``model``'s graph.

    ``target.output`` is the output of the layer's first call; for a nested
    model (a backbone inside a transfer model) that is the backbone's own
    graph, disconnected from ``model.inputs``. The node of ``model``'s graph
    that calls ``target`` gives the right tensor.
    """
    for nodes in getattr(model, "_nodes_by_depth", {}).values():
        for node in nodes:
            if getattr(node, "operation", None) is target:
                out = node.output_tensors
                return out[0] if len(out) == 1 else out
    return target.output


def predict(model, data: EvalData, layer: str | None = None, epoch: int | None = None) -> Predictions:
    """Outputs of ``model`` (or of its layer ``layer``) on ``data``, computed once per model state.

    Args:
        model: a built ``keras.Model``.
        data: the :class:`EvalData` to predict on.
        layer: name of a layer whose output to return (e.g. the backbone, for
            embeddings). Defaults to ``None``: the model's own outputs.
        epoch: the epoch, used as the freshness key when the model has no
            optimizer yet.

    Returns:
        :class:`Predictions`; the same object for repeated calls while the
        model's weights have not been updated.
    """
    step = _model_step(model)
    fresh_key = step if step is not None else ("epoch", epoch)
    key = (data.token, layer)
    per_model = _cache.setdefault(model, {})
    hit = per_model.get(key)
    if hit is not None and hit[0] == fresh_key:
        return hit[1]
    target = model if layer is None else _layer_model(model, layer)

    def fn(x, batch_size=None):
        if batch_size is None:
            return target.predict_on_batch(x)
        return target.predict(x, batch_size=batch_size, verbose=0)

    result = data.run(fn)
    # Drop entries of older model states: only the current epoch is ever reused.
    for k in [k for k, v in per_model.items() if v[0] != fresh_key]:
        del per_model[k]
    per_model[key] = (fresh_key, result)
    return result


def clear(model=None) -> None:
    """Forget cached predictions (of ``model``, or of every model)."""
    if model is None:
        _cache.clear()
        _submodels.clear()
    else:
        _cache.pop(model, None)
        _submodels.pop(model, None)
