"""Build a transfer model, freeze and unfreeze its backbone, and check BatchNorm.

A *transfer model* is a functional ``keras.Model`` made of two parts:

* the **backbone**, a ``keras.Model`` whose output is the feature tensor
  (``kerafine.backbones`` builds them; any functional Keras model works);
* the **head**, a small trainable model on top of the features (an unbuilt
  ``keras.Sequential(name="head")`` ending in ``Dense(name="predictions")``,
  as ``kerafine.heads`` builds them).

:func:`build_transfer_model` wires them as ``head(backbone(inputs, training=False))``.
:func:`freeze` and :func:`unfreeze` set which backbone layers train;
:func:`trainable_summary` shows the result; :func:`backbone_of` and :func:`head_of`
find the two parts again inside a built (or loaded, or hand-made) model.

**BatchNormalization stays frozen, always.** Fine-tuning a pretrained backbone
with its BatchNorm layers in training mode replaces their moving statistics
with those of a few small batches and wrecks the features
(keras-team/keras#11590, #20285, and the Keras transfer-learning guide).
Keras 3 runs a ``BatchNormalization`` whose ``trainable`` is ``False`` in
inference mode, so kerafine keeps every BatchNorm layer of the backbone
non-trainable, through :func:`freeze`, :func:`unfreeze` and ``freeze="none"``.

**``training=False`` alone is not enough in Keras 3.15.** Measured here: when a
functional model is called with ``training=True`` (as ``fit`` does), Keras
passes that value down to every nested layer, *overriding* a ``training=False``
recorded in the graph (``keras/src/models/functional.py``, ``operation_fn``).
So :func:`build_transfer_model` also *pins* the backbone's call: the backbone
stops inheriting the ``training`` flag of the outer call and keeps the
recorded ``training=False`` (its Dropout layers stay off as well). The pin is a
property of the in-memory backbone object; a model reloaded from a ``.keras``
file gets it back when :func:`kerafine.fine_tune` starts (its recorded
``training=False`` is still in the saved graph). Whether this Keras version
honours a recorded ``training=False`` on its own is probed once, so the
checks stay right if a later Keras changes the behaviour.

Example:

>>> import keras, kerafine
>>> inputs = keras.Input((8,))
>>> x = keras.layers.Dense(4, name="d1")(inputs)
>>> x = keras.layers.BatchNormalization(name="bn")(x)
>>> backbone = keras.Model(inputs, keras.layers.Dense(3, name="d2")(x), name="tiny")
>>> head = keras.Sequential([keras.layers.Dense(1, activation="sigmoid", name="predictions")], name="head")
>>> model = kerafine.build_transfer_model(backbone, head, freeze="all")
>>> len(model.trainable_weights)            # only the head's kernel and bias
2
>>> kerafine.unfreeze(model, top_layers=1)  # d2 trains too; bn never does
>>> len(model.trainable_weights)
4
>>> backbone_of(model).name, head_of(model).name
('tiny', 'head')
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Optional, Union

from kerafine import _keras_compat as _compat
from kerafine.errors import KerafineError, did_you_mean, invalid_argument

__all__ = [
    "build_transfer_model",
    "freeze",
    "unfreeze",
    "trainable_summary",
    "TrainableSummary",
    "LayerRow",
    "backbone_of",
    "head_of",
    "check_batchnorm",
    "BatchNormWarning",
]

FreezeSpec = Union[str, int]

_ISSUES = "keras-team/keras#11590, #20285"


class BatchNormWarning(UserWarning):
    """A BatchNormalization layer would update its moving statistics while fine-tuning."""


# ---------------------------------------------------------------------------
# layer walking


def _keras():
    import keras

    return keras


def _is_container(layer) -> bool:
    keras = _keras()
    return isinstance(layer, keras.Model)


def _is_input(layer) -> bool:
    keras = _keras()
    return isinstance(layer, keras.layers.InputLayer)


def _leaf_layers(model, prefix: str = "") -> list[tuple[str, Any]]:
    """``(path, layer)`` for the leaf layers of ``model``, nested models expanded, in order."""
    out = []
    for layer in model.layers:
        if _is_input(layer):
            continue
        path = f"{prefix}{layer.name}"
        if _is_container(layer):
            out.extend(_leaf_layers(layer, prefix=path + "/"))
        else:
            out.append((path, layer))
    return out


def _all_sublayers(layer) -> list:
    """Every layer inside ``layer`` (wrappers and RNN cells included), ``layer`` first."""
    return _compat.flatten_layers(layer)


def _batchnorm_layers(layer) -> list:
    keras = _keras()
    return [l for l in _all_sublayers(layer) if isinstance(l, keras.layers.BatchNormalization)]


def _name_index(backbone) -> dict[str, int]:
    """Layer name -> index of its last leaf (nested models map to their last leaf)."""
    index: dict[str, int] = {}

    def walk(model, start: int) -> int:
        i = start
        for layer in model.layers:
            if _is_input(layer):
                continue
            if _is_container(layer):
                i = walk(layer, i)
                if i > start:
                    index.setdefault(layer.name, i - 1)
            else:
                index.setdefault(layer.name, i)
                i += 1
        return i

    walk(backbone, 0)
    return index


# ---------------------------------------------------------------------------
# finding the parts


def _outer_nodes(model):
    """The call nodes of a functional model (not its inputs)."""
    nodes = []
    graph = _compat.nodes_by_depth(model)
    for depth in sorted(graph, reverse=True):
        for node in graph[depth]:
            if node.operation is not None and not getattr(node, "is_input", False):
                nodes.append(node)
    return nodes


def _check_model(model, argument: str = "model") -> None:
    keras = _keras()
    if not isinstance(model, keras.Model):
        raise invalid_argument(argument, model, "a keras.Model (for example from kerafine.build_transfer_model)")


def backbone_of(model):
    """Return the backbone (the nested ``keras.Model``) of a transfer model.

    Works on models from :func:`build_transfer_model`, on the same models
    reloaded from a ``.keras`` file, and on hand-made models that call one
    pretrained model as a layer (``x = base(inputs)``, the Keras guide's recipe).

    Args:
        model: a built ``keras.Model``.

    Returns:
        The backbone ``keras.Model`` (the object inside ``model``, not a copy).

    Raises:
        KerafineError: if ``model`` has no nested model other than a head, or
            several (name the one to use by building with
            :func:`build_transfer_model`).

    Example:

    >>> import keras
    >>> base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="base")
    >>> inputs = keras.Input((3,))
    >>> model = keras.Model(inputs, keras.layers.Dense(1)(base(inputs, training=False)))
    >>> backbone_of(model).name
    'base'
    """
    _check_model(model)
    candidates = [l for l in model.layers if _is_container(l) and l.name != "head"]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise KerafineError(
            f"Invalid value for argument `model`: the model {model.name!r} has no nested backbone model "
            "(its layers are " + str([l.name for l in model.layers][:12]) + "). Build it with "
            "kerafine.build_transfer_model(backbone, head), or call your pretrained model as one layer "
            "(`features = backbone(inputs, training=False)`) instead of inlining its layers."
        )
    raise KerafineError(
        f"Invalid value for argument `model`: the model {model.name!r} has several nested models "
        f"({[l.name for l in candidates]}) and kerafine cannot tell which is the backbone. "
        "Build it with kerafine.build_transfer_model(backbone, head)."
    )


def _feature_tensors(model, backbone):
    """The outer-graph output tensors of the backbone's call inside ``model`` (one call only)."""
    nodes = [n for n in _outer_nodes(model) if n.operation is backbone]
    if len(nodes) != 1:
        return None
    return nodes[0].outputs


def head_of(model):
    """Return the head of a transfer model: what maps the backbone's features to the outputs.

    The layer named ``"head"`` when there is one (models from
    :func:`build_transfer_model`); otherwise a functional ``keras.Model`` over
    the model's own layers from the backbone's output to the model's outputs
    (hand-made models). Either way its layers are the model's layers: training
    the head trains the model.

    Args:
        model: a built functional ``keras.Model``.

    Returns:
        A ``keras.Layer`` (usually a ``keras.Sequential``) taking the features.

    Raises:
        KerafineError: if the backbone cannot be found, or the layers after it
            do not depend on the backbone's features alone.

    Example:

    >>> import keras
    >>> base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="base")
    >>> inputs = keras.Input((3,))
    >>> model = keras.Model(inputs, keras.layers.Dense(1, name="predictions")(base(inputs)))
    >>> [l.name for l in head_of(model).layers][1:]
    ['predictions']
    """
    _check_model(model)
    for layer in model.layers:
        if layer.name == "head" and not _is_input(layer):
            return layer
    backbone = backbone_of(model)
    features = _feature_tensors(model, backbone)
    if not features or len(features) != 1:
        raise KerafineError(
            f"Invalid value for argument `model`: the backbone {backbone.name!r} is called "
            f"{'more than once' if features is None else 'with several outputs'} in {model.name!r}, "
            "so its head cannot be separated. Build the model with kerafine.build_transfer_model."
        )
    keras = _keras()
    try:
        return keras.Model(features[0], model.outputs, name="head")
    except Exception as exc:  # Keras raises ValueError for a disconnected graph
        raise KerafineError(
            f"Invalid value for argument `model`: the layers after the backbone {backbone.name!r} do not "
            f"depend on its features alone ({exc}). Build the model with kerafine.build_transfer_model."
        ) from None


# ---------------------------------------------------------------------------
# the inference-mode pin


def _pin_recorded_inference(model) -> list[str]:
    """Pin every nested model that ``model``'s graph calls with ``training=False``; return their names."""
    pinned = []
    for node in _outer_nodes(model):
        op = node.operation
        if _is_container(op) and node.arguments.kwargs.get("training") is False and not _compat.is_pinned(op):
            _compat.pin_inference(op)
            pinned.append(op.name)
    return pinned


def _effective_training(model, outer: Optional[bool] = True) -> dict[int, Optional[bool]]:
    """id(layer) -> the ``training`` value each layer of ``model`` receives when ``model`` gets ``outer``."""
    keras = _keras()
    result: dict[int, Optional[bool]] = {}

    def visit(layer, training):
        result[id(layer)] = training
        if not isinstance(layer, keras.layers.Layer):
            return  # a bare op in the graph (keras.ops.*): no sublayers, no training flag
        if isinstance(layer, keras.Sequential):
            for sub in layer.layers:
                visit(sub, training)
        elif _is_container(layer) and _compat.nodes_by_depth(layer):
            for node in _outer_nodes(layer):
                op = node.operation
                recorded = node.arguments.kwargs.get("training")
                if recorded is not None and (_compat.is_pinned(op) or _compat.recorded_training_honoured()):
                    eff = recorded
                elif training is not None:
                    eff = training
                else:
                    eff = recorded
                visit(op, eff)
        else:
            for sub in _compat.flatten_layers(layer, include_self=False, recursive=False):
                visit(sub, training)

    visit(model, outer)
    return result


def _runs_in_inference(model, backbone) -> bool:
    """True when ``model.fit`` calls ``backbone`` with ``training=False``."""
    return _effective_training(model).get(id(backbone)) is False


def check_batchnorm(model, *, warn: bool = True) -> dict[str, list[str]]:
    """Find backbone BatchNormalization layers that would update their moving statistics.

    Checks the model as ``model.fit`` would run it. A BatchNorm layer updates
    its moving mean and variance when it is both ``trainable`` and called with
    ``training=True``. Two lists come back:

    * ``"updating"``: layers that would update them in the next ``fit``
      (trainable and not in inference mode): fine-tuning would overwrite the
      pretrained statistics with those of a few small batches.
    * ``"at_risk"``: layers frozen now but not run in inference mode (the
      model calls its backbone without ``training=False``, or this Keras does
      not honour it): they would start updating as soon as they are made
      trainable, e.g. by ``backbone.trainable = True`` for phase two.

    :func:`kerafine.fine_tune` calls this at its start and keeps every
    backbone BatchNorm frozen whatever it finds.

    Args:
        model: a transfer model (see :func:`backbone_of`).
        warn: emit one :class:`BatchNormWarning` naming the layers when a list
            is not empty. Defaults to ``True``.

    Returns:
        ``{"updating": [...], "at_risk": [...]}``, layer paths like
        ``"backbone/bn1"``.

    Example:

    >>> import keras
    >>> inputs = keras.Input((4,))
    >>> base = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(inputs), name="base")
    >>> x = keras.Input((4,))
    >>> model = keras.Model(x, keras.layers.Dense(1)(base(x)))  # no training=False
    >>> check_batchnorm(model, warn=False)
    {'updating': ['base/bn'], 'at_risk': []}
    """
    _check_model(model)
    backbone = backbone_of(model)
    training = _effective_training(model)
    updating, at_risk = [], []
    for path, layer in _leaf_paths_with_bn(backbone):
        if training.get(id(layer)) is not True:
            continue
        (updating if layer.trainable else at_risk).append(path)
    if warn and (updating or at_risk):
        parts = []
        if updating:
            parts.append(
                f"{len(updating)} BatchNormalization layer(s) of the backbone {backbone.name!r} are trainable "
                f"and run in training mode, so model.fit would overwrite their pretrained moving statistics: "
                f"{_short_list(updating)}"
            )
        if at_risk:
            parts.append(
                f"{len(at_risk)} BatchNormalization layer(s) of the backbone {backbone.name!r} are frozen but "
                f"not run in inference mode (the backbone is called without training=False), so they would "
                f"update their moving statistics as soon as they are made trainable: {_short_list(at_risk)}"
            )
        warnings.warn(
            "; ".join(parts) + f" ({_ISSUES}). Build the model with kerafine.build_transfer_model and change "
            "what trains with kerafine.freeze / kerafine.unfreeze, which keep BatchNormalization frozen.",
            BatchNormWarning,
            stacklevel=2,
        )
    return {"updating": updating, "at_risk": at_risk}


def _leaf_paths_with_bn(backbone):
    keras = _keras()
    out = []
    for path, layer in _leaf_layers(backbone, prefix=backbone.name + "/"):
        for sub in _all_sublayers(layer):
            if isinstance(sub, keras.layers.BatchNormalization):
                out.append((path if sub is layer else f"{path}/{sub.name}", sub))
    return out


def _short_list(names: list[str], limit: int = 6) -> str:
    if len(names) <= limit:
        return str(names)
    return str(names[:limit])[:-1] + f", ... ({len(names) - limit} more)]"


# ---------------------------------------------------------------------------
# freezing


def _n_trainable_top(backbone, spec: Any, argument: str) -> int:
    """Validate a freeze spec against ``backbone``; return how many top leaf layers train."""
    n_layers = len(_leaf_layers(backbone))
    expected = (
        f'"all", "none", an int between 0 and {n_layers} (the number of top layers of the backbone '
        f"{backbone.name!r} left trainable; it has {n_layers} layers) or the name of a backbone layer "
        "(freeze up to and including it)"
    )
    if isinstance(spec, bool):
        raise invalid_argument(argument, spec, expected)
    if isinstance(spec, str):
        if spec == "all":
            return 0
        if spec == "none":
            return n_layers
        names = _name_index(backbone)
        if spec not in names:
            hint = did_you_mean(spec, names) or (
                f" The backbone's layers are {_short_list(list(names), 8)}; see kerafine.trainable_summary(model)."
            )
            raise invalid_argument(argument, spec, expected, hint=hint.strip())
        return n_layers - (names[spec] + 1)
    if isinstance(spec, int):
        if not 0 <= spec <= n_layers:
            raise invalid_argument(argument, spec, expected)
        return spec
    raise invalid_argument(argument, spec, expected)


def _apply(backbone, n_top: int) -> None:
    # Every flag is set explicitly: in Keras 3.15 `model.trainable = True` does not
    # reach sublayers that were frozen one by one.
    if n_top == 0:
        for layer in _all_sublayers(backbone):
            layer.trainable = False
        return
    for layer in _all_sublayers(backbone):
        layer.trainable = True
    leaves = [layer for _, layer in _leaf_layers(backbone)]
    for leaf in leaves[: len(leaves) - n_top]:
        for layer in _all_sublayers(leaf):
            layer.trainable = False
    for bn in _batchnorm_layers(backbone):
        bn.trainable = False


def freeze(model, layers: FreezeSpec = "all") -> None:
    """Freeze the backbone of a transfer model, wholly or up to a layer.

    Only the backbone changes; the head keeps its ``trainable`` flags.
    BatchNormalization layers of the backbone are left frozen in every case
    (see the module docstring). Recompile the model afterwards (``fit``
    only sees the change after ``compile``; :func:`kerafine.fine_tune` does it).

    Args:
        model: a transfer model (see :func:`backbone_of`).
        layers: what to freeze. ``"all"``: the whole backbone; ``"none"``:
            nothing (every backbone layer but BatchNorm trains); an int ``n``:
            everything but the top ``n`` backbone layers; a layer name: the
            backbone up to and including that layer. Layers of nested models
            count one by one. Defaults to ``"all"``.

    Raises:
        KerafineError: for an unknown layer name (with the closest names) or
            an int beyond the number of backbone layers (naming it).

    Example:

    >>> import keras
    >>> inputs = keras.Input((4,))
    >>> x = keras.layers.Dense(4, name="a")(inputs)
    >>> base = keras.Model(inputs, keras.layers.Dense(4, name="b")(x), name="base")
    >>> model = build_transfer_model(base, keras.layers.Dense(1, name="predictions"), freeze="none")
    >>> freeze(model, "a")
    >>> [w.path for w in model.trainable_weights]
    ['b/kernel', 'b/bias', 'predictions/kernel', 'predictions/bias']
    """
    _check_model(model)
    backbone = backbone_of(model)
    _apply(backbone, _n_trainable_top(backbone, layers, "layers"))


def unfreeze(model, top_layers: Optional[FreezeSpec] = None) -> None:
    """Make the top of the backbone trainable again, for the second phase of fine-tuning.

    BatchNormalization layers stay frozen and in inference mode. Recompile the
    model afterwards, with a low learning rate.

    Args:
        model: a transfer model (see :func:`backbone_of`).
        top_layers: how many top backbone layers train (the others are frozen),
            ``"all"`` (or ``None``) for the whole backbone, ``"none"`` to keep
            it frozen, or a layer name: the layers *after* it train. Defaults
            to ``None`` (all).

    Raises:
        KerafineError: as :func:`freeze`, for an unknown name or a count beyond
            the number of backbone layers.

    Example:

    >>> import keras
    >>> inputs = keras.Input((4,))
    >>> x = keras.layers.Dense(4, name="a")(inputs)
    >>> base = keras.Model(inputs, keras.layers.Dense(4, name="b")(x), name="base")
    >>> model = build_transfer_model(base, keras.layers.Dense(1, name="predictions"))
    >>> unfreeze(model, top_layers=1)
    >>> [w.path for w in model.trainable_weights]
    ['b/kernel', 'b/bias', 'predictions/kernel', 'predictions/bias']
    """
    _check_model(model)
    backbone = backbone_of(model)
    _apply(backbone, _n_unfrozen_top(backbone, top_layers, "top_layers"))


def _n_unfrozen_top(backbone, spec: Any, argument: str) -> int:
    """Like :func:`_n_trainable_top`, read from the unfreezing side: "all"/None unfreeze all, "none" nothing."""
    if spec is None or (isinstance(spec, str) and spec == "all"):
        return len(_leaf_layers(backbone))
    if isinstance(spec, str) and spec == "none":
        return 0
    # An int counts the top layers that train; a name unfreezes what comes after it.
    return _n_trainable_top(backbone, spec, argument)


# ---------------------------------------------------------------------------
# building


def build_transfer_model(backbone, head, freeze: FreezeSpec = "all", name: Optional[str] = None):
    """Put a head on a backbone and freeze what should be frozen.

    The new model has its own ``keras.Input``\\ s mirroring the backbone's
    (names, shapes and dtypes; a dict of named inputs stays a dict), calls
    ``features = backbone(inputs, training=False)`` and ``outputs = head(features)``.
    The backbone runs in inference mode during ``fit`` even after it is
    unfrozen (see the module docstring), and its BatchNormalization layers
    never train.

    Args:
        backbone: a ``keras.Model`` whose output is the feature tensor (from
            ``kerafine.backbones`` or your own).
        head: a layer mapping the features to the predictions, usually an
            unbuilt ``keras.Sequential(name="head")`` from ``kerafine.heads``
            whose last layer is ``Dense(name="predictions")``.
        freeze: which backbone layers to freeze: ``"all"``, ``"none"``, an int
            (the number of TOP backbone layers left trainable) or a layer name
            (freeze up to and including it). See :func:`freeze`. Defaults to
            ``"all"``.
        name: name of the model. Defaults to ``"<backbone name>_transfer"``.

    Returns:
        An uncompiled functional ``keras.Model``, ready for ``compile`` or
        :func:`kerafine.fine_tune`.

    Raises:
        KerafineError: if ``backbone`` is not a built Keras model, ``head`` is
            not a layer, or ``freeze`` names no backbone layer / counts more
            layers than the backbone has (checked before anything is built).

    Example:

    >>> import keras, numpy as np
    >>> inputs = keras.Input((6,), name="metrics")
    >>> base = keras.Model(inputs, keras.layers.Dense(4, name="enc")(inputs), name="encoder")
    >>> head = keras.Sequential([keras.layers.Dense(1, activation="sigmoid", name="predictions")], name="head")
    >>> model = build_transfer_model(base, head)
    >>> model.input_names if hasattr(model, "input_names") else [t.name for t in model.inputs]
    ['metrics']
    >>> model.predict(np.zeros((2, 6), "float32"), verbose=0).shape
    (2, 1)
    """
    keras = _keras()
    if not isinstance(backbone, keras.Model) or not getattr(backbone, "inputs", None):
        raise invalid_argument(
            "backbone",
            backbone,
            "a built keras.Model with Inputs (functional, or Sequential starting with keras.Input)",
            hint="kerafine.backbones builds them; kerafine.backbones.from_model wraps your own.",
        )
    if not isinstance(head, keras.layers.Layer):
        raise invalid_argument("head", head, "a keras layer or model, e.g. kerafine.heads.classification(2)")
    if head is backbone:
        raise invalid_argument("head", head, "a layer other than the backbone")
    n_top = _n_trainable_top(backbone, freeze, "freeze")
    if name is not None and not isinstance(name, str):
        raise invalid_argument("name", name, "None or a str")

    def mirror(t, key=None):
        label = key if key is not None else getattr(t, "name", None)
        return keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, sparse=getattr(t, "sparse", False), name=label)

    structure = _compat.inputs_structure(backbone)
    if isinstance(structure, dict):
        inputs = {key: mirror(t, key) for key, t in structure.items()}
    elif isinstance(structure, (list, tuple)) and len(backbone.inputs) > 1:
        inputs = [mirror(t) for t in backbone.inputs]
    else:
        inputs = mirror(backbone.inputs[0])
    # Keras 3.15 overrides this recorded value with fit's training=True unless pinned.
    features = backbone(inputs, training=False)
    _compat.pin_inference(backbone)
    outputs = head(features)
    model = keras.Model(inputs, outputs, name=name or f"{backbone.name}_transfer")
    _apply(backbone, n_top)
    return model


# ---------------------------------------------------------------------------
# summary


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One row of :class:`TrainableSummary`.

    Attributes:
        name: the layer's path, e.g. ``"vgg16/block5_conv3"`` or ``"head/predictions"``.
        type: the layer's class name.
        trainable: whether ``fit`` updates its weights (its own flag and every
            enclosing model's).
        params: number of weights (trainable or not).
        trainable_params: number of weights ``fit`` updates.
        part: ``"backbone"``, ``"head"`` or ``"model"``.
    """

    name: str
    type: str
    trainable: bool
    params: int
    trainable_params: int
    part: str


@dataclasses.dataclass(frozen=True)
class TrainableSummary:
    """Which layers of a model train, as returned by :func:`trainable_summary`.

    Attributes:
        rows: one :class:`LayerRow` per leaf layer, backbone first.
        total_params: every weight of the model.
        trainable_params: the weights ``fit`` updates.
        non_trainable_params: the others (frozen weights, BatchNorm statistics).
    """

    rows: tuple
    total_params: int
    trainable_params: int
    non_trainable_params: int

    @property
    def trainable_layers(self) -> list[str]:
        """Names of the layers with weights that train."""
        return [r.name for r in self.rows if r.trainable and r.params]

    def to_dict(self) -> dict:
        """A JSON-able dict."""
        return dataclasses.asdict(self) | {"rows": [dataclasses.asdict(r) for r in self.rows]}

    def to_frame(self):
        """The rows as a ``pandas.DataFrame``."""
        import pandas as pd

        return pd.DataFrame([dataclasses.asdict(r) for r in self.rows])

    def __str__(self) -> str:
        header = ("layer", "type", "trainable", "params")
        body = [(r.name, r.type, "yes" if r.trainable else "no", f"{r.params:,}") for r in self.rows]
        widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths[:3]) + f"  {{:>{widths[3]}}}"
        lines = [fmt.format(*header), "-" * (sum(widths) + 6)]
        lines += [fmt.format(*row) for row in body]
        lines.append("-" * (sum(widths) + 6))
        lines.append(
            f"total params: {self.total_params:,}   trainable: {self.trainable_params:,}   "
            f"non-trainable: {self.non_trainable_params:,}"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"TrainableSummary({len(self.rows)} layers, {len(self.trainable_layers)} trainable; "
            f"params total={self.total_params:,} trainable={self.trainable_params:,})"
        )

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(r.type)}</td>"
            f"<td>{'yes' if r.trainable else 'no'}</td><td style='text-align:right'>{r.params:,}</td></tr>"
            for r in self.rows
        )
        return (
            "<table><thead><tr><th>layer</th><th>type</th><th>trainable</th><th>params</th></tr></thead>"
            f"<tbody>{rows}</tbody><tfoot><tr><td colspan='4'>total {self.total_params:,}, trainable "
            f"{self.trainable_params:,}, non-trainable {self.non_trainable_params:,}</td></tr></tfoot></table>"
        )


def _count(weights) -> int:
    import math

    return int(sum(math.prod(w.shape) for w in weights))


def trainable_summary(model) -> TrainableSummary:
    """Tabulate which layers of a model train: name, type, trainable, parameter counts.

    Nested models (the backbone, a Sequential head) are expanded, so every
    backbone layer has its own row. ``print()`` it for a table; in Jupyter it
    renders as HTML; ``.to_frame()`` gives a DataFrame.

    Args:
        model: any built ``keras.Model`` (a transfer model or not).

    Returns:
        A :class:`TrainableSummary`.

    Example:

    >>> import keras
    >>> inputs = keras.Input((3,))
    >>> base = keras.Model(inputs, keras.layers.Dense(2, name="enc")(inputs), name="base")
    >>> model = build_transfer_model(base, keras.layers.Dense(1, name="predictions"))
    >>> print(trainable_summary(model))
    layer        type   trainable  params
    -------------------------------------
    base/enc     Dense  no              8
    predictions  Dense  yes             3
    -------------------------------------
    total params: 11   trainable: 3   non-trainable: 8
    """
    _check_model(model)
    try:
        backbone_ids = {id(l) for _, l in _leaf_layers(backbone_of(model))}
    except KerafineError:
        backbone_ids = set()
    rows = []

    def walk(container, prefix: str, enclosing_trainable: bool, part: str):
        for layer in container.layers:
            if _is_input(layer):
                continue
            trainable = enclosing_trainable and layer.trainable
            if _is_container(layer):
                sub_part = part if part != "model" else ("head" if layer.name == "head" else "model")
                walk(layer, f"{prefix}{layer.name}/", trainable, sub_part)
                continue
            kind = "backbone" if id(layer) in backbone_ids else part
            rows.append(
                LayerRow(
                    name=f"{prefix}{layer.name}",
                    type=type(layer).__name__,
                    trainable=bool(trainable and _count(layer.trainable_weights) > 0)
                    if layer.weights
                    else bool(trainable),
                    params=_count(layer.weights),
                    trainable_params=_count(layer.trainable_weights) if trainable else 0,
                    part=kind,
                )
            )

    walk(model, "", model.trainable, "model")
    total = _count(model.weights)
    trainable_params = _count(model.trainable_weights)
    return TrainableSummary(tuple(rows), total, trainable_params, total - trainable_params)
