"""One test per internal that ``kerafine/_keras_compat.py`` relies on.

Each test checks the internal's existence, its signature and the behaviour
kerafine depends on, and fails with a message naming the internal, so a Keras
(or TensorFlow, SciPy) release that changes it shows up here first instead of
as a silently wrong freeze, BatchNorm check or p-value elsewhere.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from kerafine import _keras_compat as compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def changed(internal: str, what: str) -> str:
    return f"Keras internal `{internal}` changed: {what}. Update kerafine/_keras_compat.py."


def _run(code: str, env: dict | None = None) -> str:
    full_env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    full_env.pop("TF_CONFIG", None)  # one worker, whatever the calling shell says
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, env=full_env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# --- models, layers and graphs ---------------------------------------------------


def _rnn_model():
    inputs = keras.Input((4, 3), name="seq")
    x = keras.layers.Bidirectional(keras.layers.LSTM(2, name="lstm"), name="bi")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="out")(x), name="rnn_model")


def test_flatten_layers_reaches_layers_owned_by_wrappers():
    internal = "Layer._flatten_layers"
    assert hasattr(keras.layers.Layer, "_flatten_layers"), changed(internal, "the method is gone")
    params = inspect.signature(keras.layers.Layer._flatten_layers).parameters
    assert {"include_self", "recursive"} <= set(params), changed(internal, f"signature is now {list(params)}")
    model = _rnn_model()
    everything = compat.flatten_layers(model)
    assert everything[0] is model, changed(internal, "include_self=True no longer lists the layer first")
    types = {type(l).__name__ for l in everything}
    # model.layers stops at the Bidirectional wrapper; freezing needs its RNNs and their cells.
    assert {"Bidirectional", "LSTM", "LSTMCell", "Dense"} <= types, changed(internal, f"it now yields {sorted(types)}")
    assert "LSTM" not in {type(l).__name__ for l in model.layers}
    direct = compat.flatten_layers(model, include_self=False, recursive=False)
    assert model not in direct and {l.name for l in direct} == {l.name for l in model.layers}, changed(
        internal, "recursive=False no longer gives the direct children"
    )
    # Two models of one architecture list their layers in the same order (lr_find copies flags by position).
    clone = keras.models.clone_model(model)
    assert [type(l) for l in compat.flatten_layers(clone)] == [type(l) for l in everything], changed(
        internal, "a clone lists its layers in another order"
    )


def _nested(training=False):
    inner_in = keras.Input((3,), name="inner_in")
    inner = keras.Model(inner_in, keras.layers.Dense(2, name="inner_dense")(inner_in), name="inner")
    outer_in = keras.Input((3,), name="outer_in")
    features = inner(outer_in, training=training)
    return keras.Model(outer_in, keras.layers.Dense(1, name="top")(features), name="outer"), inner


def test_nodes_by_depth_records_each_call_with_its_training_argument():
    internal = "Functional._nodes_by_depth"
    outer, inner = _nested(training=False)
    assert isinstance(getattr(outer, "_nodes_by_depth", None), dict), changed(internal, "not a dict attribute any more")
    graph = compat.nodes_by_depth(outer)
    assert graph and all(isinstance(k, int) and isinstance(v, list) for k, v in graph.items()), changed(
        internal, f"expected {{int: [Node]}}, got {graph!r}"
    )
    nodes = [n for depth in graph.values() for n in depth]
    for attribute in ("operation", "outputs", "is_input", "arguments"):
        assert all(hasattr(n, attribute) for n in nodes), changed(internal, f"a Node has no `{attribute}`")
    calls = [n for n in nodes if n.operation is inner]
    assert len(calls) == 1, changed(internal, "the call of a nested model is not one node")
    assert calls[0].arguments.kwargs.get("training") is False, changed(
        internal, "the node no longer records the call's `training` keyword (Node.arguments.kwargs)"
    )
    assert calls[0].outputs[0] is outer.get_layer("top").input, changed(
        internal, "node.outputs is not the call's output"
    )
    assert any(n.is_input for n in nodes), changed(internal, "input nodes are no longer marked is_input")
    assert compat.nodes_by_depth(keras.layers.Dense(1)) == {}


def test_sequential_keeps_its_graph_in_functional():
    internal = "Sequential._functional"
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a"), keras.layers.Dense(1, name="b")])
    graph = compat.functional_graph(model)
    assert graph is not model and isinstance(graph, keras.Model), changed(
        internal, "a built Sequential has no inner Functional"
    )
    called = {n.operation.name for depth in compat.nodes_by_depth(graph).values() for n in depth if not n.is_input}
    assert called == {"a", "b"}, changed(internal, f"its graph calls {sorted(called)}")
    functional, _ = _nested()
    assert compat.functional_graph(functional) is functional


def test_inputs_structure_keeps_dicts_and_lists():
    internal = "Functional._inputs_struct"
    a, b = keras.Input((1,), name="age"), keras.Input((2,), name="income")
    joined = keras.layers.Concatenate()([a, b])
    as_dict = keras.Model({"age": a, "income": b}, joined)
    as_list = keras.Model([a, b], joined)
    structure = compat.inputs_structure(as_dict)
    assert isinstance(structure, dict) and set(structure) == {"age", "income"}, changed(
        internal, f"a dict of inputs comes back as {structure!r}"
    )
    assert structure["age"] is a
    assert isinstance(compat.inputs_structure(as_list), (list, tuple)), changed(
        internal, "a list of inputs is not a list"
    )


def _bn_pair():
    """An outer model calling an inner BatchNorm model with a recorded training=False."""
    inner_in = keras.Input((2,))
    inner = keras.Model(inner_in, keras.layers.BatchNormalization(momentum=0.0)(inner_in), name="bn_inner")
    outer_in = keras.Input((2,))
    return keras.Model(outer_in, inner(outer_in, training=False)), inner


X = np.array([[10.0, -10.0], [30.0, 10.0]], dtype="float32")


def test_pin_inference_keeps_the_recorded_training_false_under_fit():
    internal = "Layer._call_context_args"
    outer, inner = _bn_pair()
    args = getattr(inner, "_call_context_args", None)
    # pin_inference is a silent no-op without the attribute: this is where it must show.
    assert isinstance(args, (set, frozenset)) and "training" in args, changed(
        internal, f"expected a set containing 'training', got {args!r}"
    )
    assert not compat.is_pinned(inner)
    compat.pin_inference(inner)
    assert compat.is_pinned(inner)
    # Inference mode uses the initial moving statistics (mean 0, variance 1): x comes back
    # almost unchanged; training mode would centre each column on its batch mean.
    y = np.asarray(outer(X, training=True))
    np.testing.assert_allclose(
        y, X, rtol=1e-2, atol=1e-2, err_msg=changed(internal, "a pinned layer takes fit's training=True")
    )
    # The pin is per object: another instance of the class is untouched.
    _, other = _bn_pair()
    assert not compat.is_pinned(other)


def test_recorded_training_probe_agrees_with_a_direct_measurement():
    # keras-team/keras#20285: Keras 3 lets an outer training=True override a recorded training=False.
    # Measured again here with a Dropout layer, independent of the probe's BatchNorm.
    inner_in = keras.Input((1000,))
    inner = keras.Model(inner_in, keras.layers.Dropout(0.5, seed=1)(inner_in))
    outer_in = keras.Input((1000,))
    outer = keras.Model(outer_in, inner(outer_in, training=False))
    x = np.ones((1, 1000), dtype="float32")
    honoured = bool(np.array_equal(np.asarray(outer(x, training=True)), x))
    assert compat.recorded_training_honoured() is honoured, (
        "Keras changed how a recorded training=False meets an outer training=True "
        f"(keras-team/keras#20285): the probe says {compat.recorded_training_honoured()}, Dropout says {honoured}"
    )


# --- configuration and files -----------------------------------------------------


def test_keras_home_is_where_get_file_caches(tmp_path):
    internal = "keras.src.backend.config.keras_home"
    source = tmp_path / "weights.bin"
    source.write_bytes(b"kerafine")
    home = tmp_path / "home"
    out = _run(
        f"""
        import json, keras
        from kerafine._keras_compat import keras_home
        path = keras.utils.get_file("weights.bin", origin={source.as_uri()!r}, cache_subdir="models")
        print(json.dumps([keras_home(), path]))
        """,
        env={"KERAS_HOME": str(home)},
    )
    reported, cached = json.loads(out.strip().splitlines()[-1])
    assert reported == str(home), changed(internal, f"it returns {reported!r} with KERAS_HOME={home}")
    assert os.path.dirname(cached) == os.path.join(reported, "models"), changed(
        internal, f"get_file cached into {cached!r}, not under keras_home()/models"
    )


# --- distribution ----------------------------------------------------------------


def test_in_multi_worker_mode_on_single_worker_strategies():
    internal = "tf.distribute.StrategyExtended._in_multi_worker_mode"
    out = _run(
        """
        import json, tensorflow as tf
        from kerafine._keras_compat import in_multi_worker_mode
        default = tf.distribute.get_strategy()
        mwms = tf.distribute.MultiWorkerMirroredStrategy()  # no TF_CONFIG: one worker
        print(json.dumps({
            "has_method": [hasattr(s.extended, "_in_multi_worker_mode") for s in (default, mwms)],
            "resolver": mwms.cluster_resolver is not None,
            "answer": [in_multi_worker_mode(s) for s in (default, mwms)],
        }))
        """
    )
    got = json.loads(out.strip().splitlines()[-1])
    assert got["has_method"] == [True, True], changed(internal, "the method is gone")
    # Why the public cluster_resolver is not enough: it is set on a one-worker strategy too.
    assert got["resolver"] is True
    assert got["answer"] == [False, False], changed(internal, "a single-worker strategy reports multi-worker")


# --- scipy -----------------------------------------------------------------------


def test_ks_exact_pvalue_equals_scipy_ks_2samp_exact():
    from scipy import stats
    from scipy.stats import _stats_py

    internal = "scipy.stats._stats_py._attempt_exact_2kssamp"
    assert hasattr(_stats_py, "_attempt_exact_2kssamp"), changed(internal, "the helper is gone")
    params = list(inspect.signature(_stats_py._attempt_exact_2kssamp).parameters)
    assert params == ["n1", "n2", "g", "d", "alternative"], changed(internal, f"signature is now {params}")
    rng = np.random.default_rng(0)
    for n1, n2 in [(7, 12), (30, 45), (50, 50)]:
        x, y = rng.normal(size=n1), rng.normal(0.4, 1.0, size=n2)
        expected = stats.ks_2samp(x, y, method="exact")
        got = compat.ks_2samp_exact_pvalue(n1, n2, np.gcd(n1, n2), float(expected.statistic))
        assert got is not None and got == pytest.approx(expected.pvalue, rel=1e-12), changed(
            internal, f"p-value {got} vs ks_2samp's {expected.pvalue} for sizes {n1}, {n2}"
        )


# --- the module itself -----------------------------------------------------------


def test_compat_module_loads_no_framework_at_import():
    out = _run(
        """
        import sys
        import kerafine._keras_compat
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow", "scipy")))
        """
    )
    assert out.strip().splitlines()[-1] == "[]", (
        "kerafine._keras_compat imported a framework at module level; kerafine.drift uses it and must not "
        "load TensorFlow: " + out
    )


def test_importing_kerafine_changes_nothing_in_keras():
    out = _run(
        """
        import importlib, json, pkgutil, keras, tensorflow as tf

        def snapshot():
            owners = {
                "keras": keras, "keras.callbacks": keras.callbacks, "keras.layers": keras.layers,
                "keras.models": keras.models, "keras.utils": keras.utils, "keras.ops": keras.ops,
                "Layer": keras.layers.Layer, "Model": keras.Model, "Sequential": keras.Sequential,
                "Callback": keras.callbacks.Callback, "Optimizer": keras.optimizers.Optimizer,
                "tf.summary": tf.summary,
            }
            try:
                from keras.src.callbacks.callback_list import CallbackList
                from keras.src.models.functional import Functional
                from keras.src.trainers.trainer import Trainer
                owners.update(CallbackList=CallbackList, Functional=Functional, Trainer=Trainer)
            except ImportError:
                pass
            return {
                f"{name}.{attr}": repr(id(value))
                for name, owner in owners.items()
                for attr, value in list(vars(owner).items())
            }

        before = snapshot()
        import kerafine
        for info in pkgutil.walk_packages(kerafine.__path__, "kerafine."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
        after = snapshot()
        print(json.dumps(sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))))
        """
    )
    diff = json.loads(out.strip().splitlines()[-1])
    assert diff == [], f"importing kerafine changed these Keras/TensorFlow attributes: {diff}"
