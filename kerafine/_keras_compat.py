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
import gc
import inspect
import os
import threading
from collections.abc import Callable
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
    "install_multi_worker_fixes",
    "multi_worker_fixes_installed",
    "uninstall_multi_worker_fixes",
    "running_callback_list",
    "wrap_callback_list",
    "after_next_on_train_begin",
    "cancel_after_on_train_begin",
    "get_initial_epoch",
    "set_initial_epoch",
    "replace_train_function",
    "symbolic_build",
    "layer_own_variables",
    "learning_rate_schedule",
    "metric_direction",
    "samples_seen",
    "print_msg",
    "is_default_hook",
    "global_seed_state",
    "set_global_seed_state",
    "tensorboard_callback_dirs",
    "reopen_csv_logger",
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


# =============================================================================
# Section: callbacks/ and finetune.py (issue 11 core, branch i11)
# =============================================================================


def running_callback_list(callback) -> Optional[Any]:
    """The ``keras.callbacks.CallbackList`` that holds ``callback`` in the running ``fit``, or ``None``.

    Why: Keras gives a callback no handle on its list (keras-team/keras#17012
    discusses callback state), yet ``CheckpointRestart`` must save and restore
    its siblings' state and run its epoch-end save after every one of them.
    Instead of walking stack frames, this follows references: the callback is
    an element of the list object ``CallbackList.callbacks`` (a documented
    attribute), which is referred to by the ``CallbackList`` (or its
    ``__dict__``). Run once per ``fit`` by the fit context. Among several
    candidates (a callback given to two fits at once), the newest-looking is
    not guessable: ``None`` is returned and the caller warns.
    """
    import keras

    # At most three heap scans (gc.get_referrers takes several targets in one scan).
    lists = [h for h in gc.get_referrers(callback) if isinstance(h, list) and any(c is callback for c in h)]
    if not lists:
        return None
    owners = gc.get_referrers(*lists)
    found = [o for o in owners if isinstance(o, keras.callbacks.CallbackList)]
    dicts = [o for o in owners if isinstance(o, dict) and any(o.get("callbacks") is h for h in lists)]
    if dicts:
        found += [o for o in gc.get_referrers(*dicts) if isinstance(o, keras.callbacks.CallbackList)]
    unique = []
    for cbl in found:
        if any(cbl.callbacks is h for h in lists) and all(cbl is not u for u in unique):
            unique.append(cbl)
    found = unique
    return found[0] if len(found) == 1 else None


def wrap_callback_list(cbl, **wrappers: Callable[[Callable], Callable]) -> Callable[[], None]:
    """Replace methods of one ``CallbackList`` instance; return a function that undoes it.

    ``wrappers`` maps a method name (``on_train_batch_end``...) to
    ``f(original) -> replacement``. Why: ``CheckpointRestart`` must hide the
    batches it skips on a mid-epoch resume and a diverged step from every other
    callback, and save after all of them at epoch end; a callback cannot do
    that from its own hooks. Only this instance's ``__dict__`` is touched (the
    class is not patched), and undo pops the entries.
    """
    names = []
    for name, make in wrappers.items():
        original = getattr(cbl, name)
        setattr(cbl, name, make(original))
        names.append(name)

    def undo():
        for name in names:
            cbl.__dict__.pop(name, None)

    return undo


def after_next_on_train_begin(callback, fn: Callable[[], None]) -> None:
    """Run ``fn()`` right after ``callback``'s next ``on_train_begin``, once (an instance attribute, undone after).

    Why: Keras's stateful callbacks (``EarlyStopping``, ``ReduceLROnPlateau``,
    ``ModelCheckpoint``) reset their counters in ``on_train_begin`` and have no
    state API (keras-team/keras#17012); a state restored into one that sits
    after ``CheckpointRestart`` in the list must be re-applied after that reset.
    Only this instance is touched, and only until its next ``on_train_begin``.
    """
    import functools

    cancel_after_on_train_begin(callback)
    original = callback.on_train_begin

    @functools.wraps(original)
    def on_train_begin(logs=None):
        original(logs)
        fn()
        callback.__dict__.pop("on_train_begin", None)  # one shot: the next fit starts clean, as in Keras

    on_train_begin._kerafine_after = True
    callback.on_train_begin = on_train_begin


def cancel_after_on_train_begin(callback) -> None:
    """Undo a pending :func:`after_next_on_train_begin`."""
    if getattr(callback.__dict__.get("on_train_begin"), "_kerafine_after", False):
        del callback.__dict__["on_train_begin"]


def get_initial_epoch(model) -> Optional[int]:
    """``model._initial_epoch``: the epoch ``fit`` starts counting from, or ``None``.

    Why: Keras's ``fit`` starts at ``self._initial_epoch or initial_epoch``, read
    after ``on_train_begin`` (``None`` unless a callback set it); ``BackupAndRestore`` resumes by writing it, and
    ``CheckpointRestart`` does the same to start a resumed ``fit`` at the
    checkpoint's epoch. There is no public setter.
    """
    return getattr(model, "_initial_epoch", None)


def set_initial_epoch(model, epoch: Optional[int]) -> None:
    """Set ``model._initial_epoch`` (see :func:`get_initial_epoch`)."""
    model._initial_epoch = epoch


def replace_train_function(model, make: Callable[[Callable], Callable]) -> Callable[[], None]:
    """Install ``make(original)`` as ``model.train_function``; return an undo function.

    Why: resuming inside an epoch must read and discard the batches already
    trained without training on them; ``fit`` pulls batches only through
    ``model.train_function`` (an attribute ``make_train_function`` sets), so
    the first calls are served by a function that skips, then the original
    comes back.
    """
    if model.train_function is None:
        model.make_train_function()
    original = model.train_function
    model.train_function = make(original)

    def undo():
        if model.train_function is not original:
            model.train_function = original

    return undo


def symbolic_build(model, data_batch) -> None:
    """``model._symbolic_build(data_batch=...)``: create the compiled metrics' variables.

    Why: restoring the running metric values of a half-trained epoch needs the
    metric variables to exist before the first training step, and Keras only
    creates them in this private method (called by its first ``train_step``).
    """
    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=data_batch)


def layer_own_variables(layer) -> tuple[list, list]:
    """``(layer._trainable_variables, layer._non_trainable_variables)``: the variables a layer itself owns.

    Why: ``layer.trainable_weights`` includes sublayers' and is empty for a
    frozen layer; telling a frozen *weight* from a BatchNormalization moving
    statistic (which legitimately changes in training) needs the per-layer
    lists Keras keeps privately.
    """
    return list(getattr(layer, "_trainable_variables", [])), list(getattr(layer, "_non_trainable_variables", []))


def learning_rate_schedule(optimizer):
    """The ``LearningRateSchedule`` an optimizer was built with (``optimizer._learning_rate``), or ``None``.

    Why: ``optimizer.learning_rate`` evaluates a schedule at the *next*
    iteration; reporting the rate the last step used needs the schedule object.
    """
    import keras

    raw = getattr(optimizer, "_learning_rate", None)
    return raw if isinstance(raw, keras.optimizers.schedules.LearningRateSchedule) else None


def metric_direction(model, name: str) -> Optional[str]:
    """``"max"``/``"min"`` for the compiled metric ``name`` (Keras's ``MonitorCallback`` lookup), or ``None``.

    Why: Keras's own ``EarlyStopping(mode="auto")`` reads the private
    ``metric._direction`` through ``keras.src.trainers.compile_utils``;
    kerafine's ``EarlyStopping`` must agree with it.
    """
    from keras.src.trainers import compile_utils

    direction = None
    for m in getattr(model, "metrics", []) or []:
        inner = m.metrics if isinstance(m, (compile_utils.CompileMetrics, compile_utils.MetricsList)) else []
        for metric in inner:
            if metric.name == name and hasattr(metric, "_direction"):
                direction = "max" if metric._direction == "up" else "min"
    return direction


def samples_seen(model) -> Optional[float]:
    """Samples ``model`` trained on in the current epoch (``model._loss_tracker.count``), or ``None``.

    Why: Keras logs only the running mean loss; its ``Mean`` tracker weights by
    batch size, so its count is the number of samples, which Keras exposes
    nowhere else (throughput in samples/second needs it).
    """
    tracker = getattr(model, "_loss_tracker", None)
    try:
        return float(tracker.count.numpy())
    except (AttributeError, TypeError, ValueError):
        return None


def print_msg(message: str) -> None:
    """Print as Keras's callbacks do (``keras.src.utils.io_utils.print_msg``).

    Why: it routes to absl logging when Keras's interactive logging is off, so
    kerafine's "Epoch 3: early stopping" lines go where Keras's own go.
    """
    from keras.src.utils import io_utils

    io_utils.print_msg(message)


def is_default_hook(method) -> bool:
    """True if a callback hook is ``keras.callbacks.Callback``'s no-op (``keras.src.utils.is_default``).

    Why: Keras dispatches batch hooks asynchronously unless a callback
    overrides one; a forwarding callback must override exactly when a wrapped
    one does.
    """
    from keras.src import utils

    return bool(utils.is_default(method))


def global_seed_state():
    """The state of Keras's global ``SeedGenerator`` as an array, or ``None`` if none exists yet.

    Why: Keras keeps the generator behind ``keras.random`` calls without a seed
    (``keras.src.random.seed_generator.global_seed_generator``) in private global
    state; an exact resume must save and restore it.
    """
    import numpy as np
    from keras.src.backend.common import global_state

    gen = global_state.get_global_attribute("global_seed_generator")
    return None if gen is None else np.asarray(gen.state.numpy())


def set_global_seed_state(value) -> None:
    """Restore what :func:`global_seed_state` returned (creating the generator if needed)."""
    import numpy as np
    from keras.src.random.seed_generator import global_seed_generator

    global_seed_generator().state.assign(np.asarray(value))


# --- exactly-once history on resume (issue 16) ---


def tensorboard_callback_dirs(callback) -> list[str]:
    """The event directories a ``keras.callbacks.TensorBoard`` writes (train, validation).

    Why: ``CheckpointRestart`` writes TensorBoard's purge event into them on a
    resume; Keras keeps them only in the private ``_train_dir``/``_val_dir``
    (``<log_dir>/train``, ``<log_dir>/validation`` in Keras 3), with no public
    accessor.
    """
    dirs = [getattr(callback, name, None) for name in ("_train_dir", "_val_dir")]
    if all(isinstance(d, str) for d in dirs):
        return [os.fspath(d) for d in dirs]
    log_dir = os.fspath(callback.log_dir)
    return [os.path.join(log_dir, "train"), os.path.join(log_dir, "validation")]


def reopen_csv_logger(callback) -> bool:
    """Close a ``keras.callbacks.CSVLogger``'s open file and let it open it again.

    Why: on a resume ``CheckpointRestart`` cuts the CSV back to the restored
    epoch with an atomic rewrite (a new file); a CSVLogger whose
    ``on_train_begin`` already ran holds the old file open in its ``csv_file``
    attribute (no public API closes it) and would keep appending to the
    replaced file. Its ``on_train_begin`` re-reads the header state and opens
    the path again. Returns whether the file was open.
    """
    handle = getattr(callback, "csv_file", None)
    if handle is None or getattr(handle, "closed", False):
        return False
    handle.close()
    callback.on_train_begin()
    return True


# =============================================================================
# Section: multi-worker training (issue 15)
# =============================================================================

# --- multi-worker fit (keras-team/keras#20585) ---
#
# Keras 3's TensorFlow trainer cannot run `fit`/`evaluate` under
# `tf.distribute.MultiWorkerMirroredStrategy` (keras-team/keras#20585,
# tensorflow/tensorflow#72388): two functions of
# `keras.src.backend.tensorflow.trainer` call `strategy.reduce` in ways the
# collective (multi-worker) strategy rejects.
#
# 1. `TensorFlowTrainer._maybe_symbolic_build` takes a sample batch to build the
#    model by reducing the first distributed batch with
#    `strategy.reduce("MEAN", batch, axis=None)` eagerly; the collective
#    strategy raises "Attempt to convert a value (PerReplica...) to a Tensor".
#    The build only needs shapes and dtypes, so the local replica's batch does.
# 2. `reduce_per_replica` reduces every step output with
#    `strategy.reduce("MEAN", v, axis=0)` under multi-worker collectives, also
#    the rank-0 loss and metric values, where axis 0 does not exist ("Invalid
#    reduction dimension 0 for input with 0 dimensions"). Rank-0 values are
#    averaged across replicas with `axis=None` instead.
#
# Both replacements delegate to the original for every other strategy and
# case, so installing them changes nothing outside multi-worker collectives.
# They are installed by `kerafine.distributed.multi_worker_strategy()` only.
# DROP THIS SECTION when Keras fixes keras-team/keras#20585:
# `test_keras_compat.py::test_multi_worker_*_still_broken` fails then.

_MW_LOCK = threading.Lock()
_MW_ORIGINALS: dict = {}


def _mw_trainer_module():
    from keras.src.backend.tensorflow import trainer

    return trainer


def _mw_collective(strategy) -> bool:
    """True under a MultiWorkerMirroredStrategy that really spans several workers."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    # Private: the public API has no "is this strategy multi-worker" query;
    # Keras's own trainer asks the same (`_collective_all_reduce_multi_worker`).
    return bool(strategy.extended._in_multi_worker_mode())


def _mw_local_value(strategy, value):
    import tensorflow as tf

    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _mw_maybe_symbolic_build(self, iterator=None, data_batch=None):
    original = _MW_ORIGINALS["_maybe_symbolic_build"]
    strategy = self._distribute_strategy
    if strategy is None or iterator is None or not _mw_collective(strategy):
        return original(self, iterator=iterator, data_batch=data_batch)
    from keras import tree

    for _, _, it in iterator:
        # Shapes and dtypes are all the build needs: this worker's first replica's batch.
        data_batch = tree.map_structure(lambda v: _mw_local_value(strategy, v), next(it))
        break
    # With `iterator=None` the original only builds from `data_batch` under the strategy's scope.
    return original(self, iterator=None, data_batch=data_batch)


def _mw_reduce_per_replica(values, strategy, reduction):
    original = _MW_ORIGINALS["reduce_per_replica"]
    if reduction not in ("auto", "mean") or not _mw_collective(strategy):
        return original(values, strategy, reduction)
    from keras import tree

    def reduce_one(v):
        rank = _mw_local_value(strategy, v).shape.rank
        if rank == 0:
            return strategy.reduce("MEAN", v, axis=None)
        return original(v, strategy, reduction)

    return tree.map_structure(reduce_one, values)


def _mw_check_internals() -> None:
    """Raise a clear error if the Keras internals the fixes replace have moved."""
    from kerafine.errors import KerafineError

    try:
        trainer = _mw_trainer_module()
        cls = trainer.TensorFlowTrainer
        names = {
            "keras.src.backend.tensorflow.trainer.TensorFlowTrainer._maybe_symbolic_build": (
                _MW_ORIGINALS.get("_maybe_symbolic_build", cls.__dict__.get("_maybe_symbolic_build")),
                ["self", "iterator", "data_batch"],
            ),
            "keras.src.backend.tensorflow.trainer.reduce_per_replica": (
                _MW_ORIGINALS.get("reduce_per_replica", getattr(trainer, "reduce_per_replica", None)),
                ["values", "strategy", "reduction"],
            ),
        }
    except (ImportError, AttributeError) as exc:  # pragma: no cover - depends on the Keras release
        raise KerafineError(
            f"kerafine's multi-worker fix cannot find Keras's TensorFlow trainer ({exc}); this Keras release "
            "is not supported by kerafine.distributed (see keras-team/keras#20585)."
        ) from exc
    for name, (fn, params) in names.items():
        if fn is None or list(inspect.signature(fn).parameters) != params:
            raise KerafineError(
                f"kerafine's multi-worker fix (keras-team/keras#20585) does not recognise `{name}` in this "
                f"Keras release (expected a function with parameters {params}); upgrade kerafine or check "
                "whether Keras fixed the issue."
            )
    if not hasattr(cls, "_symbolic_build"):  # pragma: no cover - depends on the Keras release
        raise KerafineError(
            "kerafine's multi-worker fix (keras-team/keras#20585) needs "
            "`keras.src.trainers.trainer.Trainer._symbolic_build`, which this Keras release lacks."
        )


def install_multi_worker_fixes() -> None:
    """Make Keras 3's TensorFlow ``fit``/``evaluate``/``predict`` work under
    ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585). Idempotent.

    Called by :func:`kerafine.distributed.multi_worker_strategy`; importing
    kerafine does not call it.
    """
    with _MW_LOCK:
        if _MW_ORIGINALS:
            return
        _mw_check_internals()
        trainer = _mw_trainer_module()
        _MW_ORIGINALS["_maybe_symbolic_build"] = trainer.TensorFlowTrainer.__dict__["_maybe_symbolic_build"]
        _MW_ORIGINALS["reduce_per_replica"] = trainer.reduce_per_replica
        trainer.TensorFlowTrainer._maybe_symbolic_build = _mw_maybe_symbolic_build
        # `_make_function` looks the module-level name up at call time.
        trainer.reduce_per_replica = _mw_reduce_per_replica


def multi_worker_fixes_installed() -> bool:
    """True once :func:`install_multi_worker_fixes` has patched this process's Keras."""
    trainer = _mw_trainer_module()
    return (
        trainer.reduce_per_replica is _mw_reduce_per_replica
        and trainer.TensorFlowTrainer.__dict__.get("_maybe_symbolic_build") is _mw_maybe_symbolic_build
    )


def uninstall_multi_worker_fixes() -> None:
    """Put Keras's own functions back (for tests)."""
    with _MW_LOCK:
        if not _MW_ORIGINALS:
            return
        trainer = _mw_trainer_module()
        trainer.TensorFlowTrainer._maybe_symbolic_build = _MW_ORIGINALS.pop("_maybe_symbolic_build")
        trainer.reduce_per_replica = _MW_ORIGINALS.pop("reduce_per_replica")
