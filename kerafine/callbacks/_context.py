"""The per-fit context: what kerafine callbacks of one ``fit`` share, created once per ``fit``.

Keras gives a callback its model and ``params`` and nothing else. kerafine's
callbacks need more, and get it from one :class:`FitContext` per ``fit``,
never from module-level registries or stack frames:

* the running ``keras.callbacks.CallbackList`` and so the sibling callbacks
  (looked up once, by :func:`kerafine._keras_compat.running_callback_list`);
* which model ``fit`` trains and which model the callbacks watch (the same
  model, except when :func:`kerafine.fine_tune` trains a head-only model on
  cached features: it says so explicitly with :func:`bind`);
* the data binding for exact resume (a
  :class:`~kerafine.data.resumable.ResumableSequence` given as
  ``CheckpointRestart(data=...)`` or bound by ``fine_tune``);
* the :class:`~kerafine.callbacks.predictions.PredictionCache`, so that
  ``AUCTracker`` and ``DriftMonitor`` share forward passes on the same inputs
  and weights.

How a context is made: Keras builds a new ``CallbackList`` for every ``fit``
and calls ``set_model`` on each callback; a :class:`KerafineCallback` forgets its
context there. The first kerafine callback whose ``on_train_begin`` runs
creates the context and hands it to every kerafine callback of the list; the
others find it already set.
"""

from __future__ import annotations

from kerafine.callbacks.predictions import PredictionCache

__all__ = ["FitContext", "bind", "unbind"]


class FitContext:
    """What the kerafine callbacks of one ``fit`` share.

    Attributes:
        callback_list: the running ``CallbackList`` (``None`` when it could not
            be found, e.g. a custom training loop calling hooks directly).
        callbacks: every callback of the ``fit``, in list order.
        trained_model: the model ``fit`` steps.
        watched_model: the model the callbacks evaluate and report on.
        data: the bound resumable data (``set_epoch(epoch)`` is called on it by
            ``CheckpointRestart``), or ``None``.
        predictions: the fit's :class:`PredictionCache`.
        log_writers: ``{log key: writer}`` of the keys kerafine callbacks wrote
            into ``logs`` during this fit (see ``KerafineCallback._write_logs``).
        warned_keys: the log keys already reported as written twice.
    """

    def __init__(self, callback_list=None, callbacks=(), trained_model=None, watched_model=None, data=None):
        self.callback_list = callback_list
        self.callbacks = list(callbacks)
        self.trained_model = trained_model
        self.watched_model = watched_model if watched_model is not None else trained_model
        self.data = data
        self.predictions = PredictionCache()
        self.log_writers: dict = {}
        self.warned_keys: set = set()

    @classmethod
    def create(cls, callback) -> FitContext:
        """Build the context of the ``fit`` that is calling ``callback`` and give it to its kerafine siblings."""
        from kerafine import _keras_compat
        from kerafine.callbacks.state import KerafineCallback

        cbl = _keras_compat.running_callback_list(callback)
        callbacks = list(cbl.callbacks) if cbl is not None else [callback]
        binding: dict = {}
        for cb in callbacks:
            if isinstance(cb, KerafineCallback) and cb._binding:
                binding = cb._binding
                break
        data = binding.get("data")
        if data is None:
            for cb in callbacks:
                bound = getattr(cb, "data", None) if isinstance(cb, KerafineCallback) else None
                if bound is not None and hasattr(bound, "set_epoch"):
                    data = bound
                    break
        ctx = cls(
            callback_list=cbl,
            callbacks=callbacks,
            trained_model=binding.get("trained_model", callback.model),
            watched_model=binding.get("watched_model", callback.model),
            data=data,
        )
        for cb in callbacks:
            if isinstance(cb, KerafineCallback):
                cb._context = ctx
        return ctx

    @property
    def trains_another_model(self) -> bool:
        """True when ``fit`` steps a model other than the watched one (``fine_tune``'s cached head phase)."""
        return self.trained_model is not None and self.trained_model is not self.watched_model


def bind(callbacks, *, trained_model=None, watched_model=None, data=None) -> None:
    """Tell the kerafine callbacks in ``callbacks`` what their next ``fit`` trains, watches and reads.

    Used by :func:`kerafine.fine_tune`: in the cached head phase ``fit`` trains
    a head-only model while the callbacks watch the full model. Stays in force
    until :func:`unbind`.
    """
    from kerafine.callbacks.state import KerafineCallback

    binding = {
        k: v
        for k, v in dict(trained_model=trained_model, watched_model=watched_model, data=data).items()
        if v is not None
    }
    for cb in callbacks:
        if isinstance(cb, KerafineCallback):
            cb._binding = binding


def unbind(callbacks) -> None:
    """Undo :func:`bind`."""
    from kerafine.callbacks.state import KerafineCallback

    for cb in callbacks:
        if isinstance(cb, KerafineCallback):
            cb._binding = None
