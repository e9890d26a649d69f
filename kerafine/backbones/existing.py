"""Your own pretrained Keras model as a backbone, cut below its old head."""

from __future__ import annotations

import os
from typing import Any

import keras

from kerafine._keras_compat import functional_graph, nodes_by_depth
from kerafine.errors import KerafineError, WeightsError, did_you_mean, invalid_argument

__all__ = ["from_model"]


def _load(path: str) -> keras.Model:
    if not path.endswith(".keras"):
        raise invalid_argument("model_or_path", path, "a keras.Model or the path of a .keras file", error=WeightsError)
    if not os.path.isfile(path):
        raise invalid_argument(
            "model_or_path",
            path,
            "a keras.Model or the path of an existing .keras file",
            hint="That file does not exist.",
            error=WeightsError,
        )
    try:
        # safe_mode refuses to deserialise Lambda layers (arbitrary code).
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:
        hint = f"Keras could not load it: {str(error)[:400]}"
        if "safe_mode" in str(error) or "Lambda" in str(error):
            hint += (
                " If you trust this file, load it yourself with "
                "keras.models.load_model(path, safe_mode=False) and pass the model."
            )
        elif "Could not locate" in str(error) or "custom" in str(error).lower():
            hint += (
                " Import the module that defines its custom layers (registered with "
                "keras.saving.register_keras_serializable) before calling from_model."
            )
        raise invalid_argument(
            "model_or_path", path, "a loadable .keras model file", hint=hint, error=WeightsError
        ) from error


def _graph_inputs(model: keras.Model) -> Any:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise invalid_argument(
            "model_or_path",
            model,
            "a functional or Sequential keras.Model with known inputs",
            hint="Subclassed models and Sequential models built without keras.Input have no "
            "layer graph to cut; rebuild it functionally or call it once on a keras.Input.",
        )
    if isinstance(model, keras.Sequential):
        return inputs[0]
    # Keeps a dict of named inputs a dict (e.g. a tabular model).
    return model.input


def _node_of(model: keras.Model, layer: keras.layers.Layer) -> Any:
    """The node where ``model``'s own graph calls ``layer``.

    ``layer.output`` / ``layer.input`` are not enough: a nested model answers with
    its inner graph's tensors, and a shared layer has several calls.
    """
    graph = functional_graph(model)  # a Sequential keeps its graph in an inner Functional
    nodes = [node for depth_nodes in nodes_by_depth(graph).values() for node in depth_nodes if node.operation is layer]
    if len(nodes) != 1:
        raise KerafineError(
            f"Layer {layer.name!r} is called {len(nodes)} times in model {model.name!r}, so "
            "its output is ambiguous; pass another `cut_at`."
        )
    return nodes[0]


def _nested_owner(model: keras.Model, name: str) -> str | None:
    """Name of the top-level nested model that holds a layer called ``name``."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            inner = [sub.name for sub in layer.layers]
            if name in inner or _nested_owner(layer, name) is not None:
                return layer.name
    return None


def from_model(model_or_path: keras.Model | str | os.PathLike, cut_at: str | None = None) -> keras.Model:
    """Use your own pretrained Keras model as a backbone, cut below its old head.

    The backbone shares layers, and therefore weights, with ``model_or_path`` when
    a model object is given: freezing or fine-tuning the backbone changes that
    model too.

    Args:
        model_or_path: a functional or ``Sequential`` ``keras.Model``, or the path
            of a ``.keras`` file, loaded with ``safe_mode=True`` (no Lambda layers)
            and without its optimizer.
        cut_at: name of the layer whose output becomes the backbone's output. With
            ``None`` the model's last layer (its old head) is dropped and the
            backbone outputs what that layer received. Defaults to ``None``.

    Returns:
        A functional ``keras.Model`` with the original inputs and the cut layer's
        output, named ``"<model name>_backbone"``.

    Raises:
        KerafineError: a subclassed model (no layer graph), ``cut_at`` not a layer
            of the model (the message lists close names), or a last layer that
            does not take exactly one tensor when ``cut_at=None``.
        WeightsError: the path does not exist, is not ``.keras`` or cannot be loaded.

    Example:

    >>> import keras
    >>> inputs = keras.Input((4,))
    >>> hidden = keras.layers.Dense(8, name="embedding")(inputs)
    >>> pretrained = keras.Model(inputs, keras.layers.Dense(3, name="old_head")(hidden))
    >>> from_model(pretrained).output.shape
    (None, 8)
    >>> from_model(pretrained, cut_at="embedding").output.shape
    (None, 8)
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        model = _load(os.fspath(model_or_path))
    elif isinstance(model_or_path, keras.Model):
        model = model_or_path
    else:
        raise invalid_argument("model_or_path", model_or_path, "a keras.Model or the path of a .keras file")
    inputs = _graph_inputs(model)
    names = [layer.name for layer in model.layers]
    if cut_at is None:
        last = model.layers[-1]
        tensors = _node_of(model, last).input_tensors
        if len(tensors) != 1:
            raise KerafineError(
                f"The last layer {last.name!r} of model {model.name!r} takes {len(tensors)} "
                f"tensors, so there is no single tensor below it; pass `cut_at`, one of: {names[-6:]}."
            )
        output = tensors[0]
    else:
        if not isinstance(cut_at, str) or cut_at not in names:
            owner = _nested_owner(model, cut_at) if isinstance(cut_at, str) else None
            if owner is not None:
                raise invalid_argument(
                    "cut_at",
                    cut_at,
                    f"the name of a top-level layer of model {model.name!r}",
                    hint=f"{cut_at!r} is inside the nested model {owner!r}: cut at {owner!r} "
                    f"itself, or use from_model(model.get_layer({owner!r}), cut_at={cut_at!r}).",
                )
            hint = did_you_mean(str(cut_at), names).strip()
            listing = names if len(names) <= 12 else names[:3] + ["..."] + names[-8:]
            raise invalid_argument(
                "cut_at",
                cut_at,
                f"the name of a layer of model {model.name!r}",
                hint=(hint + " " if hint else "") + f"Its layers: {listing}.",
            )
        outputs = _node_of(model, model.get_layer(cut_at)).output_tensors
        output = outputs[0] if len(outputs) == 1 else list(outputs)
    return keras.Model(inputs, output, name=f"{model.name}_backbone")
