"""Every use of a Keras or TensorFlow internal in kerafine, in one audited place.

Each function says why the internal is needed (no public API does the job);
``tests/test_keras_compat.py`` has a test per internal that fails, naming it,
when a Keras release changes it. Nothing happens at import: no Keras object is
patched, and keras/tensorflow are imported inside the functions, so
``kerafine.metrics`` and ``kerafine.drift`` may import this module without
loading TensorFlow.
"""

from __future__ import annotations

import gc
from typing import Any, Callable, Optional


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


def flatten_layers(layer, include_self: bool = True, recursive: bool = True) -> list:
    """Every layer inside ``layer`` in Keras's tracking order (``Layer._flatten_layers``).

    Why: ``model.layers`` lists direct children only and skips layers a wrapper
    owns (``Bidirectional``'s RNNs, an RNN's cell); the architecture fingerprint
    of a checkpoint and the weight statistics need all of them, in the same
    order for two models of one architecture. Keras has no public walker.
    """
    return list(layer._flatten_layers(include_self=include_self, recursive=recursive))


def nodes_by_depth(model) -> dict:
    """``{depth: [node, ...]}`` of a functional model (``Functional._nodes_by_depth``), ``{}`` otherwise.

    Why: the output of a nested model (a backbone) *as called inside* the outer
    model's graph is only reachable through the outer graph's nodes;
    ``layer.output`` is the first call's output, disconnected from the outer
    inputs.
    """
    return dict(getattr(model, "_nodes_by_depth", None) or {})


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
