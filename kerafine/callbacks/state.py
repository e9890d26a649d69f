"""The callback state protocol: how a callback's memory survives a restart.

A *stateful* kerafine callback implements three things:

* ``state_key`` (property): a string built from the arguments that identify the
  instance, e.g. ``"EarlyStopping[val_auc]"``, so two EarlyStoppings on
  different metrics do not collide;
* ``get_state() -> dict``: JSON-native values and numpy arrays only (lists of
  arrays are fine, e.g. best weights), with a ``"version"`` field;
* ``set_state(state: dict)``: tolerant of missing keys (use ``.get`` with
  defaults) and of older versions. A restored callback must not wipe what was
  restored in its own ``on_train_begin``: set a ``_restored`` flag in
  ``set_state`` and skip the reset when it is set.

Keras's own stateful callbacks (``EarlyStopping``, ``ReduceLROnPlateau``,
``ModelCheckpoint``) reset themselves in ``on_train_begin`` and know nothing of
this protocol (keras-team/keras#17012). The adapters here read and write their
attributes, and re-apply a restored state right after their own
``on_train_begin`` runs, so the order of the callback list does not matter.

``CheckpointRestart`` calls :func:`collect_states` when saving and
:func:`restore_states` when resuming. A new callback joins by implementing the
two methods and the key; nothing here needs to change.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "KerafineCallback",
    "LogKeyConflictWarning",
    "STATE_VERSION",
    "is_stateful",
    "state_key",
    "get_state",
    "set_state",
    "collect_states",
    "restore_states",
]

STATE_VERSION = 1


def _keras_callback():
    import keras

    return keras.callbacks.Callback


class LogKeyConflictWarning(UserWarning):
    """Two writers (two callbacks, or a compiled metric and a callback) put the same key into ``logs``."""


def _metric_log_names(model) -> set:
    """The log keys Keras writes for ``model``'s compiled metrics and loss (``name`` and ``val_name``)."""
    try:
        names = set(model.get_metrics_result())
    except Exception:  # an uncompiled model, or metrics that cannot report yet: none known
        return set()
    return names | {f"val_{n}" for n in names}


class KerafineCallback(_keras_callback()):
    """Base of kerafine's callbacks: the state protocol and the per-fit context.

    A subclass that keeps memory across epochs implements ``_reset()`` (build
    the mutable state), ``get_state()`` (with a ``"version"`` field) and
    ``set_state(state)``, and identifies itself with ``state_key``: its class
    and the arguments that identify the instance (never list positions or
    paths a user may change between runs), plus ``name`` when given. In its
    ``on_train_begin`` it calls :meth:`_restore_or_reset`, which keeps a state
    restored by ``CheckpointRestart`` for this one ``fit`` and otherwise starts
    clean.

    The fit's shared :class:`~kerafine.callbacks._context.FitContext` is
    :attr:`context`.
    """

    #: Version written into ``get_state()``; ``set_state`` accepts older ones.
    state_version = STATE_VERSION
    #: Log keys this callback shares on purpose with Keras's own callbacks (not warned about; see _write_logs).
    _shared_log_keys: tuple = ()

    def __init__(self):
        super().__init__()
        self._restored = False
        self._context = None
        self._binding = None

    def set_model(self, model):
        # Keras calls set_model while it builds a new CallbackList, i.e. once per fit:
        # a context of an earlier fit must not leak into this one.
        super().set_model(model)
        self._context = None

    @property
    def context(self):
        """The :class:`~kerafine.callbacks._context.FitContext` of the running ``fit`` (created on first use)."""
        if self._context is None:
            from kerafine.callbacks._context import FitContext

            FitContext.create(self)
        return self._context

    @property
    def watched_model(self):
        """The model this callback evaluates: the fit's model, or the one ``fine_tune`` bound."""
        return self.context.watched_model or self.model

    def _writer_name(self) -> str:
        name = getattr(self, "name", None)
        return f"{type(self).__name__}" + (f"(name={name!r})" if isinstance(name, str) and name else "")

    def _write_logs(self, logs, values: dict) -> None:
        """Put ``values`` into ``logs``, warning (once per key and fit) when a key is already there.

        Keras passes one ``logs`` dict through the callback list at each epoch
        end, after it has put the compiled metrics' values (``val_auc`` from
        ``keras.metrics.AUC(name="auc")``) into it. A key already present
        when this callback writes was written by an earlier callback or by
        Keras; the second write would hide the first value silently. The
        warning names both writers: the kerafine callback that wrote the key
        in this fit (from the fit context), else the compiled metric of that
        name (``model.get_metrics_result()``), else "a callback earlier in the
        list". Only key membership is compared, so the check costs nothing.
        """
        if logs is None:
            return
        ctx = self.context
        me = self._writer_name()
        clashes: dict[str, list] = {}  # other writer -> keys
        for key in values:
            if key not in logs or key in ctx.warned_keys:
                continue
            writer = ctx.log_writers.get(key)
            if writer is not None and writer[0] is self:
                continue
            other = None if writer is None else writer[1]
            if other is None and key in self._shared_log_keys:
                continue
            if other is None:
                model = ctx.trained_model or self.model
                names = _metric_log_names(model)
                if key in names:
                    base = key[4:] if key.startswith("val_") and key[4:] in names else key
                    other = f"the compiled metric {base!r}"
                else:
                    other = "a callback earlier in the list (not a kerafine one)"
            if other == me:
                other = f"another {me}"
            ctx.warned_keys.add(key)
            clashes.setdefault(other, []).append(key)
        for other, keys in clashes.items():
            shown = ", ".join(repr(k) for k in keys)
            changes = ", ".join(f"{logs[k]!r} -> {values[k]!r}" for k in keys)
            warnings.warn(
                f"Two writers of the log key(s) {shown}: {other} and {me}. {me} overwrites the earlier value(s) "
                f"({changes}), so History, CSVLogger, EarlyStopping and TensorBoard see only its value. Rename "
                "one of them (the metric's name=..., or the callback's name=...).",
                LogKeyConflictWarning,
                stacklevel=3,
            )
        logs.update(values)
        for key in values:
            ctx.log_writers[key] = (self, me)

    def _mark_restored(self) -> None:
        """Call at the end of ``set_state``: the next ``on_train_begin`` keeps the state."""
        self._restored = True

    def _restore_or_reset(self) -> bool:
        """In ``on_train_begin``: keep a just-restored state (returns True) or reset (returns False)."""
        if self._restored:
            self._restored = False
            return True
        self._reset()
        return False

    def _reset(self) -> None:
        """Build the callback's mutable state from scratch (a stateless callback keeps none)."""


class _AlertHistoryCallback(KerafineCallback):
    """A :class:`KerafineCallback` whose state is its per-check ``history`` and its alert count.

    Shared by the monitors that check something every few epochs and alert
    (``DriftMonitor``, ``SecurityMonitor``); a subclass adds its own transient
    attributes in ``_reset`` after calling this one.
    """

    def _reset(self) -> None:
        self.history: list[dict] = []
        self.n_alerts = 0

    def get_state(self) -> dict:
        return {
            "version": self.state_version,
            "history": [dict(h) for h in self.history],
            "n_alerts": int(self.n_alerts),
        }

    def set_state(self, state: dict) -> None:
        self.history = [dict(h) for h in state.get("history", [])]
        self.n_alerts = int(state.get("n_alerts", 0))
        self._mark_restored()


def _keras_adapters():
    import keras

    def monitor_key(cb):
        return f"keras.{type(cb).__name__}[{getattr(cb, 'monitor', '')}]"

    return [
        (
            keras.callbacks.EarlyStopping,
            monitor_key,
            ("wait", "stopped_epoch", "best", "best_weights", "best_epoch"),
        ),
        (
            keras.callbacks.ReduceLROnPlateau,
            monitor_key,
            ("wait", "cooldown_counter", "best"),
        ),
        (
            keras.callbacks.ModelCheckpoint,
            lambda cb: f"keras.ModelCheckpoint[{cb.monitor}|{cb.filepath}]",
            ("best",),
        ),
    ]


def _adapter_for(callback):
    # Subclasses of kerafine's protocol take precedence over the Keras adapters.
    if _implements_protocol(callback):
        return None
    for cls, key_fn, attrs in _keras_adapters():
        if isinstance(callback, cls):
            return key_fn, attrs
    return None


def _implements_protocol(callback) -> bool:
    return all(callable(getattr(callback, m, None)) for m in ("get_state", "set_state")) and hasattr(
        callback, "state_key"
    )


def is_stateful(callback) -> bool:
    """True if ``callback`` implements the protocol or is a supported Keras built-in."""
    return _implements_protocol(callback) or _adapter_for(callback) is not None


def state_key(callback) -> str:
    """The key under which ``callback``'s state is stored."""
    if _implements_protocol(callback):
        return str(callback.state_key)
    adapter = _adapter_for(callback)
    if adapter is None:
        raise TypeError(f"{type(callback).__name__} does not take part in the state protocol")
    return adapter[0](callback)


def _copy_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return [_copy_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return copy.deepcopy(value)


def get_state(callback) -> dict:
    """The state of one stateful callback (see module docstring)."""
    if _implements_protocol(callback):
        return callback.get_state()
    key_fn, attrs = _adapter_for(callback)
    state = {"version": STATE_VERSION}
    for attr in attrs:
        value = getattr(callback, attr, None)
        if attr == "best_weights" and value is not None:
            value = [np.asarray(w) for w in value]
        state[attr] = _copy_value(value)
    return state


def _apply_attrs(callback, attrs, state) -> None:
    for attr in attrs:
        if attr in state:
            value = state[attr]
            if attr == "best_weights" and value is not None:
                value = [np.asarray(w) for w in value]
            setattr(callback, attr, _copy_value(value))


def set_state(callback, state: dict, begun: bool = False) -> None:
    """Restore one callback's state.

    Args:
        callback: a stateful callback (see :func:`is_stateful`).
        state: what :func:`get_state` returned for it.
        begun: ``True`` when the callback's ``on_train_begin`` has already run
            in the current ``fit`` (it sits before the restoring callback in
            the list, or training is under way, e.g. a rollback). Then nothing
            is deferred to the next ``on_train_begin``, which belongs to a later
            ``fit``. Defaults to ``False``.

    For Keras built-ins the attributes are set now and, unless ``begun``, set
    again right after the callback's next ``on_train_begin`` (which would
    otherwise reset them). For protocol callbacks ``set_state`` is called and,
    when ``begun``, their ``_restored`` flag is cleared again so that their
    next ``fit`` starts clean.
    """
    if _implements_protocol(callback):
        callback.set_state(state)
        if begun and isinstance(callback, KerafineCallback):
            callback._restored = False
        return
    _, attrs = _adapter_for(callback)
    _apply_attrs(callback, attrs, state)
    from kerafine import _keras_compat

    _keras_compat.cancel_after_on_train_begin(callback)
    if begun:
        return
    # Keras's callbacks reset these attributes in their next on_train_begin: re-apply right after it.
    _keras_compat.after_next_on_train_begin(callback, lambda: _apply_attrs(callback, attrs, state))


def _unique_keys(callbacks: Iterable) -> list[tuple[str, Any]]:
    """``(key, callback)`` of the stateful callbacks; two callbacks with one key are an error.

    A key never depends on the position in the list, so reordering the list
    between runs restores the same states; two instances that would share a
    key must be told apart by the user (``name=`` on kerafine callbacks).
    """
    from kerafine.errors import KerafineError

    seen: dict[str, Any] = {}
    out = []
    for cb in callbacks:
        if not is_stateful(cb):
            continue
        key = state_key(cb)
        if key in seen and seen[key] is not cb:
            raise KerafineError(
                f"Two callbacks of this fit share the state key {key!r} ({type(seen[key]).__name__} and "
                f"{type(cb).__name__}), so a checkpoint could not tell their states apart. Give one a distinct "
                "`name=` (kerafine callbacks) or a different `monitor`."
            )
        seen[key] = cb
        out.append((key, cb))
    return out


def collect_states(callbacks: Iterable, exclude: Iterable = ()) -> dict[str, dict]:
    """``{key: state}`` for every stateful callback in ``callbacks``.

    ``exclude`` lists callbacks to leave out (the checkpointing callback itself).
    """
    excluded = {id(c) for c in exclude}
    return {key: get_state(cb) for key, cb in _unique_keys(callbacks) if id(cb) not in excluded}


def restore_states(
    callbacks: Iterable,
    states: dict[str, dict],
    exclude: Iterable = (),
    begun: Iterable = (),
) -> tuple[list[str], list[str]]:
    """Restore each stateful callback whose key is in ``states``.

    Args:
        callbacks: the callbacks of the ``fit`` (any order).
        states: ``{key: state}`` as :func:`collect_states` returned it.
        exclude: callbacks to leave alone (the restoring callback itself).
        begun: callbacks whose ``on_train_begin`` already ran in this ``fit``
            (see :func:`set_state`). Defaults to none.

    Returns:
        ``(restored_keys, missing_keys)``: keys restored, and keys of stateful
        callbacks in the list for which the checkpoint held no state (a callback
        added since the checkpoint was written).
    """
    excluded = {id(c) for c in exclude}
    begun_ids = {id(c) for c in begun}
    restored, missing = [], []
    for key, cb in _unique_keys(callbacks):
        if id(cb) in excluded:
            continue
        if key in states:
            set_state(cb, states[key], begun=id(cb) in begun_ids)
            restored.append(key)
        else:
            missing.append(key)
    return restored, missing


def warn_partial_restore(
    states: dict, restored: list[str], missing: list[str], callbacks: Iterable, source: str
) -> None:
    """Warn, naming each callback and key, about states nobody claimed and callbacks that found none."""
    by_key = {key: cb for key, cb in _unique_keys(callbacks)}
    for key in missing:
        warnings.warn(
            f"{type(by_key[key]).__name__} (state key {key!r}) found no state in {source}; it starts fresh. "
            "(Was it added since the checkpoint was written, or were its identifying arguments changed?)",
            stacklevel=3,
        )
    for key in sorted(set(states) - set(restored)):
        warnings.warn(
            f"{source} holds the state of a callback with key {key!r} that no callback of this fit claimed; "
            "it is ignored. (Was the callback removed, renamed with `name=`, or were its identifying arguments "
            "changed?)",
            stacklevel=3,
        )
