"""Weight probes shared by kerafine callbacks: is every weight finite, and weight statistics.

Divergence cannot be judged on the loss alone: on some CPUs ``max(NaN, 0)`` is
0, so a ReLU network whose weights went NaN still reports a finite loss and
trains on. :class:`FiniteCheck` answers "is every value of these variables
finite?" with one compiled reduction (one kernel launch, one boolean copied
back), cheap enough to run after every batch.

Example:

>>> import numpy as np, keras
>>> from kerafine.callbacks._probes import FiniteCheck
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> check = FiniteCheck(model.trainable_variables)
>>> check()
True
>>> _ = model.layers[0].kernel.assign(np.full((2, 1), np.nan, "float32"))
>>> check(), check.first_nonfinite().endswith("/kernel")
(False, True)
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from kerafine import _keras_compat

__all__ = [
    "FiniteCheck",
    "Group",
    "all_layers",
    "arrays_finite",
    "build_groups",
    "crc_fingerprint",
    "is_float_variable",
    "leaf_layers",
    "nonfinite_layers",
]


def is_float_variable(v) -> bool:
    """True for floating-point variables (weights), False for counters and seeds."""
    return "float" in str(getattr(v, "dtype", ""))


class FiniteCheck:
    """``all(isfinite)`` over a fixed list of variables, as one compiled TensorFlow reduction.

    Args:
        variables: the variables to check (non-float ones are ignored).
    """

    def __init__(self, variables):
        import tensorflow as tf

        self.variables = [v for v in variables if is_float_variable(v)]
        values = self.variables

        @tf.function(autograph=False, reduce_retracing=True)
        def all_finite():
            if not values:
                return tf.constant(True)
            # One reduction per variable, fused into one graph: no per-variable
            # round trip to Python, one boolean copied back.
            return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v))) for v in values]))

        self._fn = all_finite

    def __call__(self) -> bool:
        """True if every value of every variable is finite."""
        return bool(self._fn())

    def first_nonfinite(self) -> str | None:
        """Path of the first variable holding NaN/inf (slow path, for messages), or ``None``."""
        for v in self.variables:
            if not np.isfinite(v.numpy()).all():
                return str(getattr(v, "path", v.name))
        return None


def arrays_finite(arrays) -> bool:
    """True if every floating-point array of ``arrays`` is all finite (integer arrays pass)."""
    for a in arrays:
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            return False
    return True


def crc_fingerprint(variables) -> list[int]:
    """CRC32 of each variable's bytes: tells whether a weight changed at all."""
    return [zlib.crc32(np.ascontiguousarray(v.numpy()).view(np.uint8)) for v in variables]


def nonfinite_layers(layers) -> list[str]:
    """Names of the layers of ``layers`` holding a non-finite float weight."""
    return [
        layer.name
        for layer in layers
        if any(is_float_variable(w) and not np.isfinite(w.numpy()).all() for w in layer.weights)
    ]


# -- weight groups (TrainingMonitor's statistics) ---------------------------------


def all_layers(model):
    """Every layer inside ``model``, parents before their children."""
    try:
        return _keras_compat.flatten_layers(model, include_self=False, recursive=True)
    except AttributeError:  # not a Keras 3 layer tree: top level only
        return list(getattr(model, "layers", []))


def leaf_layers(model):
    """The layers of ``model``, with nested models replaced by their own leaf layers."""
    import keras

    out = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            out.extend(leaf_layers(layer))
        else:
            out.append(layer)
    return out


@dataclasses.dataclass
class Group:
    """The trainable (or the frozen) weights of one top-level layer."""

    name: str
    trainable: bool
    variables: list


def build_groups(model):
    """Split the weights into per-top-level-layer groups.

    A group holds either the trainable weights of a top-level layer or its
    frozen ones (weights the optimizer would train if the layer were trainable,
    and every weight of a frozen layer). The running statistics of a trainable
    BatchNormalization change legitimately and belong to neither; they are
    returned separately so a probe can restore them.
    """
    trainable_ids = {id(v) for v in model.trainable_variables}
    owner = {}
    for layer in all_layers(model):
        own_trainable, own_non_trainable = _keras_compat.layer_own_variables(layer)
        for v in own_trainable:
            owner[id(v)] = (layer, True)
        for v in own_non_trainable:
            owner[id(v)] = (layer, False)
    groups, state_vars = [], []
    for top in model.layers:
        trained, frozen = [], []
        for v in top.weights:
            if not is_float_variable(v):
                continue
            if id(v) in trainable_ids:
                trained.append(v)
                continue
            layer, is_weight = owner.get(id(v), (top, True))
            if is_weight or not layer.trainable:
                frozen.append(v)
            else:
                state_vars.append(v)
        if trained:
            groups.append(Group(top.name, True, trained))
        if frozen:
            groups.append(Group(f"{top.name}/frozen" if trained else top.name, False, frozen))
    return groups, state_vars
