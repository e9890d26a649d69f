"""Every use of a Keras, TensorFlow (or SciPy) internal in kerafine, in one audited place.

kerafine otherwise uses public API only; ``tests/test_no_internals.py`` fails on
any ``keras.src``/``tensorflow.python`` import or private attribute of a
Keras/TensorFlow object in another file. Each function here says why the
internal is needed (no public API does the job) and links the upstream issue
when it works around a bug; ``tests/test_keras_compat.py`` has a test per
internal that fails, naming it, when a Keras release changes it.

Rules for this module:

* **Nothing happens at import.** No Keras object is patched; importing
  kerafine changes nothing in Keras. Functions act only on the objects they
  are given.
* **No module-level import of keras, tensorflow or scipy.** ``kerafine.drift``
  and ``kerafine.metrics`` import this module and must work in a process that
  never loads TensorFlow (``tests/drift/test_import.py``); import inside each
  function.

Supported range: see ``install_requires`` in ``setup.cfg`` (the oldest
versions run in CI, ``.ci/run``).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Optional

__all__ = [
    "flatten_layers",
    "nodes_by_depth",
    "functional_graph",
    "inputs_structure",
    "pin_inference",
    "is_pinned",
    "recorded_training_honoured",
    "keras_home",
    "in_multi_worker_mode",
    "ks_2samp_exact_pvalue",
]


# --- models, layers and graphs ---


def flatten_layers(layer, include_self: bool = True, recursive: bool = True) -> list:
    """Every layer inside ``layer``, in Keras's tracking order (``layer`` first if ``include_self``).

    Why the internal (``Layer._flatten_layers``): ``model.layers`` lists direct
    children only and skips layers a wrapper owns (``Bidirectional``'s RNNs,
    ``TimeDistributed``'s layer, an RNN's cell). Freezing, the BatchNorm check,
    the lr finder's model copy and the weight statistics need all of them, in the
    same order for two models of one architecture. Keras has no public walker.
    """
    return list(layer._flatten_layers(include_self=include_self, recursive=recursive))


def nodes_by_depth(model) -> dict[int, list]:
    """``{depth: [node, ...]}`` of a functional model's graph; ``{}`` for a model without one.

    Why the internal (``Functional._nodes_by_depth``): the public graph API stops at
    ``model.layers``/``layer.output``, which cannot tell *how* a nested model is
    called (a shared layer has several calls; a nested model's ``output`` is its
    inner tensor) nor with which recorded ``training`` argument. The nodes give
    ``node.operation``, ``node.outputs``, ``node.is_input`` and
    ``node.arguments.kwargs`` (public attributes of an internal class).
    """
    return getattr(model, "_nodes_by_depth", None) or {}


def functional_graph(model):
    """The functional model holding ``model``'s graph: a built ``Sequential``'s inner one, else ``model``.

    Why the internal (``Sequential._functional``): a ``Sequential`` keeps its
    graph in a private ``Functional`` it builds for itself; nothing public returns it.
    """
    return getattr(model, "_functional", None) or model


def inputs_structure(model) -> Any:
    """The structure (dict, list or one tensor) ``model`` was built with, or ``None`` if unknown.

    Why the internal (``Functional._inputs_struct``): ``model.inputs`` is always a
    flat list, which loses the names of a dict of inputs (tabular models); a
    transfer model built around a backbone must take the same structure.
    """
    return getattr(model, "_inputs_struct", None)


def pin_inference(layer) -> None:
    """Stop ``layer`` inheriting the ``training`` flag of the call around it.

    Why the internal (``Layer._call_context_args``): Keras 3 passes an outer
    ``training=True`` (``fit``) down to every nested layer, overriding a
    ``training=False`` recorded in the functional graph
    (``keras/src/models/functional.py``, ``operation_fn``; keras-team/keras#20285).
    A layer whose ``_call_context_args`` lacks ``"training"`` does not take it from
    the call context, so the recorded ``training=False`` holds. Acts on this one
    layer object only (not on its class), when kerafine builds or loads the model.
    """
    args = getattr(layer, "_call_context_args", None)
    if args is not None and "training" in args:
        layer._call_context_args = set(args) - {"training"}


def is_pinned(layer) -> bool:
    """True when :func:`pin_inference` (or Keras itself) keeps ``layer`` out of the ``training`` context."""
    return "training" not in getattr(layer, "_call_context_args", {"training"})


@functools.lru_cache(maxsize=1)
def recorded_training_honoured() -> bool:
    """Does this Keras keep a nested call's recorded ``training=False`` under an outer ``training=True``?

    A behaviour probe, not an internal: keras-team/keras#20285 says Keras 3
    overrides it; if a release fixes that, kerafine's checks follow the probe
    instead of assuming. Cached: the answer is a property of the installed Keras.
    """
    import keras
    import numpy as np

    # Explicit names: the probe must not advance Keras's automatic layer numbering.
    inner_in = keras.Input((2,), name="kerafine_probe_in")
    bn = keras.layers.BatchNormalization(momentum=0.0, name="kerafine_probe_bn")
    inner = keras.Model(inner_in, bn(inner_in), name="kerafine_probe_inner")
    outer_in = keras.Input((2,), name="kerafine_probe_outer_in")
    outer = keras.Model(outer_in, inner(outer_in, training=False), name="kerafine_probe_outer")
    x = np.array([[10.0, -10.0], [30.0, 10.0]], dtype="float32")
    # Inference mode normalises with the initial moving statistics (mean 0, var 1): x
    # comes back almost unchanged; training mode centres each column on its batch mean.
    y = np.asarray(outer(x, training=True))
    return bool(np.allclose(y, x, rtol=1e-2, atol=1e-2))


# --- configuration and files ---


def keras_home() -> str:
    """The Keras home directory (``$KERAS_HOME`` or ``~/.keras``, as Keras resolved it), expanded.

    Why the internal (``keras.src.backend.config.keras_home``): ``keras.utils.get_file``
    caches pretrained weights under ``<keras home>/models``; an offline user must
    be told that exact folder, and Keras exports no accessor for it.
    """
    from keras.src.backend.config import keras_home as _home

    return os.path.expanduser(_home())


# --- distribution ---


def in_multi_worker_mode(strategy) -> bool:
    """True when ``strategy`` (a ``tf.distribute.Strategy``) runs over several workers.

    Why the internal (``strategy.extended._in_multi_worker_mode()``): the public
    ``cluster_resolver`` is set on a ``MultiWorkerMirroredStrategy`` even when it
    runs on a single worker, and Keras's own TensorFlow trainer asks this same
    private method (``keras/src/backend/tensorflow/trainer.py``). A strategy
    without it (the default strategy) is single-worker.
    """
    method = getattr(strategy.extended, "_in_multi_worker_mode", None)
    return bool(method()) if method is not None else False


# --- scipy ---


def ks_2samp_exact_pvalue(n1: int, n2: int, g: int, d: float) -> Optional[float]:
    """SciPy's exact two-sided two-sample KS p-value for sizes ``n1``, ``n2`` (gcd ``g``), statistic ``d``.

    Returns ``None`` when SciPy's exact routine does not converge or is missing.

    Why the internal (``scipy.stats._stats_py._attempt_exact_2kssamp``):
    ``scipy.stats.ks_2samp`` needs the samples; kerafine's drift detector has
    only the statistic of many features at once and must return p-values equal to
    ``ks_2samp(method="auto")``'s, which only the routine behind it gives.
    """
    from scipy.stats import _stats_py

    helper = getattr(_stats_py, "_attempt_exact_2kssamp", None)
    if helper is None:
        return None
    try:
        success, _, prob = helper(n1, n2, g, d, "two-sided")
    except TypeError:  # a scipy whose helper takes other arguments
        return None
    return float(prob) if success else None
