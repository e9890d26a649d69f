"""Shared plumbing of the attacks: argument checks, the model's loss per row, the compiled step.

Everything here runs before any gradient is taken, so a bad argument fails
with a clear :class:`~kerafine.errors.KerafineError` before work starts.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from kerafine.errors import DataError, invalid_argument

# Raw 0-255 RGB: what kerafine's vision backbones take (preprocessing lives inside the model).
IMAGE_RANGE = (0.0, 255.0)


def check_epsilon(epsilon, name: str = "epsilon") -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not math.isfinite(epsilon) or epsilon <= 0:
        raise invalid_argument(
            name, epsilon, "a finite number > 0 (the L-infinity radius, in the units the model sees)"
        )
    return float(epsilon)


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise invalid_argument(name, value, "an int >= 1")
    return int(value)


def check_seed(seed) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise invalid_argument("seed", seed, "None or an int >= 0")


# ------------------------------------------------------------------ inputs


class Inputs:
    """The attack's view of ``x``: which arrays move, which stay, and their clipping ranges."""

    def __init__(self, x, perturb, clip, model):
        self.is_dict = isinstance(x, dict)
        if self.is_dict:
            if not x:
                raise invalid_argument("x", "an empty dict", "a dict of input arrays", error=DataError)
            arrays = {str(k): np.asarray(v) for k, v in x.items()}
        elif _is_unsupported_container(x):
            raise invalid_argument(
                "x",
                type(x).__name__,
                "a numpy array or a dict of arrays (one per model input)",
                "Attacks need the inputs in memory: take a sample of the dataset as arrays.",
                error=DataError,
            )
        else:
            if perturb is not None:
                raise invalid_argument("perturb", perturb, "None when x is a single array (the whole array moves)")
            arrays = {"x": np.asarray(x)}
        lengths = {k: (a.shape[0] if a.ndim else None) for k, a in arrays.items()}
        if any(n is None for n in lengths.values()) or len(set(lengths.values())) != 1:
            raise invalid_argument(
                "x", f"arrays of lengths {lengths}", "arrays with the same number of rows", error=DataError
            )
        self.n = next(iter(lengths.values()))
        if self.n == 0:
            raise invalid_argument("x", "0 rows", "at least one row", error=DataError)
        if self.is_dict:
            if perturb is None:
                moving = [k for k, a in arrays.items() if a.dtype.kind == "f"]
            else:
                moving = [perturb] if isinstance(perturb, str) else list(perturb)
                unknown = [k for k in moving if k not in arrays]
                if unknown or not moving:
                    raise invalid_argument("perturb", perturb, f"names of numeric inputs among {sorted(arrays)}")
            for k in moving:
                kind = arrays[k].dtype.kind
                if kind in "OSUbiu":
                    why = (
                        f"holds {arrays[k].dtype} values (strings or categories never move)."
                        if kind in "OSUb"
                        else "holds integers (category codes); cast it to float if it is truly continuous."
                    )
                    raise invalid_argument(
                        "perturb",
                        perturb if perturb is not None else k,
                        "names of continuous (float) inputs only",
                        f"Input {k!r} {why}",
                    )
            if not moving:
                raise invalid_argument(
                    "x", f"a dict with inputs {sorted(arrays)}", "at least one float input to perturb", error=DataError
                )
        else:
            kind = arrays["x"].dtype.kind
            if kind not in "fiu":
                raise invalid_argument(
                    "x",
                    f"an array of dtype {arrays['x'].dtype}",
                    "numeric inputs (strings and categories cannot be perturbed)",
                    error=DataError,
                )
            moving = ["x"]
        self.arrays = arrays
        self.moving = moving
        self.fixed = [k for k in arrays if k not in moving]
        for k in moving:
            a = arrays[k].astype(np.float32, copy=False)
            if not np.all(np.isfinite(a)):
                raise invalid_argument(
                    k if self.is_dict else "x", "values with NaN or infinity", "finite inputs", error=DataError
                )
            arrays[k] = a
        self.clip = self._resolve_clip(clip, model)

    def _resolve_clip(self, clip, model) -> dict:
        def one(value, name):
            if value is None:
                return None
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise invalid_argument("clip", clip, '"auto", None, a (low, high) pair or a dict of pairs') from None
            if not lo < hi:
                raise invalid_argument("clip", clip, "low < high")
            a = self.arrays[name]
            if a.min() < lo or a.max() > hi:
                raise invalid_argument(
                    "clip",
                    clip,
                    f"a range holding the inputs (input {name!r} spans [{a.min():g}, {a.max():g}])",
                    error=DataError,
                )
            return (lo, hi)

        if isinstance(clip, str):
            if clip != "auto":
                raise invalid_argument("clip", clip, '"auto", None, a (low, high) pair or a dict of pairs')
            auto = IMAGE_RANGE if _takes_raw_images(model) and len(self.moving) == 1 else None
            if auto is not None:
                a = self.arrays[self.moving[0]]
                if a.min() < auto[0] or a.max() > auto[1]:
                    auto = None  # not raw pixels after all: leave the range open
            return {k: auto for k in self.moving}
        if isinstance(clip, dict):
            unknown = [k for k in clip if k not in self.moving]
            if unknown:
                raise invalid_argument("clip", clip, f"a dict keyed by perturbed inputs among {self.moving}")
            return {k: one(clip.get(k), k) for k in self.moving}
        return {k: one(clip, k) for k in self.moving}

    def rebuild(self, moved: dict):
        """Same structure as the given ``x``, with the moved arrays replaced."""
        if not self.is_dict:
            return moved["x"]
        return {k: (moved[k] if k in moved else self.arrays[k]) for k in self.arrays}

    def batch(self, start: int, stop: int) -> dict:
        return {k: a[start:stop] for k, a in self.arrays.items()}


def _is_unsupported_container(x) -> bool:
    name = type(x).__module__ + "." + type(x).__name__
    return (
        "tensorflow" in name
        and "data" in name
        or hasattr(x, "__next__")
        or type(x).__name__ in ("DataFrame", "PyDataset")
    )


def _iter_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _iter_layers(layer)


def _takes_raw_images(model) -> bool:
    """True for models that hold their own image preprocessing (kerafine vision backbones): inputs are 0-255 pixels."""
    for layer in _iter_layers(model):
        if type(layer).__name__ in ("ImagenetPreprocessing", "Rescaling"):
            return True
    return False


def check_labels(y, n: int, name: str = "y") -> np.ndarray:
    if y is None:
        raise invalid_argument(
            name, None, "the labels of x (the attacks move x to increase the loss on them)", error=DataError
        )
    y = np.asarray(y)
    if y.ndim == 0 or y.shape[0] != n:
        raise invalid_argument(name, f"labels of shape {y.shape}", f"{n} labels (one per row of x)", error=DataError)
    if y.dtype.kind not in "biuf":
        raise invalid_argument(
            name, f"labels of dtype {y.dtype}", "numeric labels (0/1, class indices or one-hot)", error=DataError
        )
    return y


# ------------------------------------------------------------------ loss


def per_sample_loss(model, loss=None):
    """``fn(y_true, y_pred) -> (n,)`` losses of the model's own (compiled) loss, or of ``loss``."""
    import keras

    given = loss
    loss = model.loss if loss is None else loss
    if loss is None:
        raise invalid_argument(
            "loss",
            None,
            "a compiled model or a loss (a keras.losses.Loss, its name or a function)",
            "The attacks follow the gradient of the model's own loss: compile the model or pass loss=.",
        )
    if isinstance(loss, dict) and len(loss) == 1:
        loss = next(iter(loss.values()))
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
    if isinstance(loss, (dict, list, tuple)):
        raise invalid_argument(
            "loss" if given is not None else "model",
            "a model with several losses",
            "a model with one output and one loss",
        )
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        # Loss.call is the public per-sample hook (Loss.__call__ adds the batch reduction).
        return loss.call
    if callable(loss):
        return loss
    raise invalid_argument("loss", loss, "a keras.losses.Loss, its name or a function (y_true, y_pred) -> losses")


def check_single_output(model) -> None:
    outputs = getattr(model, "outputs", None)
    if outputs is not None and len(outputs) != 1:
        raise invalid_argument("model", f"a model with {len(outputs)} outputs", "a model with one output")


class StepFunction:
    """One compiled attack step: ``x_adv <- clip(x_adv + step * sign(grad of the loss))``.

    The loss is summed over the batch, so a row's gradient depends on that row
    only (the model runs with ``training=False``): results do not depend on the
    batch size.
    """

    def __init__(self, model, loss, moving, fixed, is_dict: bool):
        import weakref

        import tensorflow as tf

        # A weak reference: the step is cached per model (see attacks.py) and must not keep it alive.
        model_ref = weakref.ref(model)
        self.moving = list(moving)
        self.fixed = list(fixed)
        fn = per_sample_loss(model, loss)

        def loss_of(moved, kept, y):
            inputs = dict(zip(self.moving, moved))
            inputs.update(kept)
            pred = model_ref()(inputs if is_dict else inputs["x"], training=False)
            if isinstance(pred, (list, tuple)):
                pred = pred[0]
            y = tf.cast(y, pred.dtype)
            if y.shape.rank == 1 and pred.shape.rank == 2 and pred.shape[-1] == 1:
                y = y[:, None]
            return tf.reduce_sum(fn(y, pred))

        def step(adv, origin, kept, y, step_size, eps, low, high):
            with tf.GradientTape() as tape:
                tape.watch(adv)
                value = loss_of(adv, kept, y)
            grads = tape.gradient(value, adv)
            out = []
            for a, o, g, lo, hi in zip(adv, origin, grads, low, high):
                if g is None:
                    g = tf.zeros_like(a)
                g = tf.where(tf.math.is_nan(g), tf.zeros_like(g), g)
                a = a + step_size * tf.sign(g)
                a = tf.clip_by_value(a, o - eps, o + eps)
                a = tf.clip_by_value(a, lo, hi)
                out.append(a)
            return out

        self.step = tf.function(step, reduce_retracing=True)

    def __call__(self, adv, origin, kept, y, step_size, eps, low, high):
        return self.step(adv, origin, kept, y, step_size, eps, low, high)
