"""Early stopping whose memory survives a restart.

Same arguments and decisions as ``keras.callbacks.EarlyStopping`` (Keras 3),
plus a relative ``min_delta`` (``"1%"``), an error instead of a silent fallback
for a bad ``mode`` or a monitor key that is not logged, and the callback state
protocol of :mod:`kerafine.callbacks.state`, so that ``CheckpointRestart``
saves and restores its best value, patience counter, best epoch and best
weights: a resumed run stops at the same epoch as an uninterrupted one.
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np

from kerafine import _keras_compat, _warn
from kerafine.callbacks.state import STATE_VERSION, KerafineCallback
from kerafine.errors import KerafineError, did_you_mean, invalid_argument

__all__ = ["EarlyStopping"]

_MODES = ("auto", "min", "max")


def _parse_min_delta(min_delta):
    """``(value, relative)``: ``"1%"`` -> ``(0.01, True)``, ``0.5`` -> ``(0.5, False)``."""
    expected = 'a number >= 0 or a percentage string such as "1%"'
    if isinstance(min_delta, str):
        text = min_delta.strip()
        if not text.endswith("%"):
            raise invalid_argument("min_delta", min_delta, expected)
        try:
            value = float(text[:-1])
        except ValueError:
            raise invalid_argument("min_delta", min_delta, expected) from None
        if not math.isfinite(value) or value < 0:
            raise invalid_argument("min_delta", min_delta, expected)
        return value / 100.0, True
    if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real):
        raise invalid_argument("min_delta", min_delta, expected)
    if not math.isfinite(float(min_delta)) or min_delta < 0:
        raise invalid_argument(
            "min_delta", min_delta, expected, "Keras takes abs(min_delta); kerafine asks for the magnitude."
        )
    return float(min_delta), False


def _check_int(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise invalid_argument(name, value, f"an int >= {minimum}")


class EarlyStopping(KerafineCallback):
    """Stop training when a monitored metric has stopped improving.

    The decisions are those of ``keras.callbacks.EarlyStopping`` epoch for
    epoch (same comparison, same ``baseline``, ``start_from_epoch`` and
    ``restore_best_weights`` rules). In addition:

    * ``min_delta`` may be relative: ``"1%"`` asks for an improvement of at
      least 1 % of the reference value (the best so far, or ``baseline``);
    * the whole state (best value, wait counter, best epoch, best weights) is
      saved and restored by :class:`kerafine.callbacks.CheckpointRestart`;
    * an unknown ``mode`` raises instead of falling back to ``"auto"``;
    * a monitor key missing from the epoch's logs raises, naming the keys that
      are logged. One exception: a ``"val_*"`` monitor at the end of an epoch
      without any ``val_*`` key (validation did not run this epoch, e.g.
      ``validation_freq > 1``) is skipped with a warning given once.

    Args:
        monitor: the logged quantity to watch. Defaults to ``"val_loss"``.
        min_delta: the smallest change counted as an improvement: a number
            ``>= 0`` (absolute) or a string ``"x%"`` (relative to the
            reference value). Defaults to ``0``.
        patience: epochs without improvement after which training stops.
            Defaults to ``0``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (``"min"`` for losses, the
            direction of a compiled Keras metric otherwise). Defaults to
            ``"auto"``.
        baseline: a value the monitored quantity must improve on; while it
            does not, the wait counter keeps running. Defaults to ``None``.
        start_from_epoch: epochs of warm-up before monitoring starts.
            Defaults to ``0``.
        restore_best_weights: restore the weights of the best epoch when
            training ends. Defaults to ``False``.
        verbose: ``1`` prints a line when stopping or restoring. Defaults to
            ``0``.
        name: tells two EarlyStoppings on the same ``monitor`` apart in a
            checkpoint (state key ``EarlyStopping[<monitor>]`` or
            ``EarlyStopping[<monitor>|<name>]``). Defaults to ``None``.

    Raises:
        KerafineError: for any invalid argument (before training), for an
            undecidable ``mode="auto"`` or a missing monitor key (at the first
            epoch end, when the logs are known).

    Example:

    >>> import numpy as np, keras
    >>> from kerafine.callbacks.early_stopping import EarlyStopping
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("sgd", loss="mse")
    >>> stop = EarlyStopping(monitor="loss", min_delta="50%", patience=1)
    >>> h = model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=20, verbose=0, callbacks=[stop])
    >>> len(h.history["loss"]) < 20
    True
    >>> stop.get_state()["wait"]
    1
    """

    def __init__(
        self,
        monitor="val_loss",
        *,
        min_delta=0,
        patience=0,
        mode="auto",
        baseline=None,
        start_from_epoch=0,
        restore_best_weights=False,
        verbose=0,
        name=None,
    ):
        super().__init__()
        if name is not None and (not isinstance(name, str) or not name):
            raise invalid_argument("name", name, "None or a non-empty str")
        self.name = name
        if not isinstance(monitor, str) or not monitor:
            raise invalid_argument("monitor", monitor, "a non-empty metric name such as 'val_loss'")
        _parse_min_delta(min_delta)
        _check_int("patience", patience)
        if mode not in _MODES:
            raise invalid_argument(
                "mode", mode, '"auto", "min" or "max"', did_you_mean(str(mode), _MODES).strip() or None
            )
        if baseline is not None and (
            isinstance(baseline, bool) or not isinstance(baseline, numbers.Real) or not math.isfinite(baseline)
        ):
            raise invalid_argument("baseline", baseline, "None or a finite number")
        _check_int("start_from_epoch", start_from_epoch)
        if not isinstance(restore_best_weights, (bool, np.bool_)):
            raise invalid_argument("restore_best_weights", restore_best_weights, "True or False")
        _check_int("verbose", verbose)
        self.monitor = monitor
        self.min_delta = min_delta
        self.patience = patience
        self.mode = mode
        self.baseline = baseline
        self.start_from_epoch = start_from_epoch
        self.restore_best_weights = restore_best_weights
        self.verbose = verbose
        self._delta, self._relative = _parse_min_delta(min_delta)
        self._restored = False
        self._reset()

    # -- state -----------------------------------------------------------
    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0
        self._direction = None  # "min" or "max", decided at the first epoch end
        self._warned_no_validation = False

    @property
    def state_key(self) -> str:
        return f"EarlyStopping[{self.monitor}]" if self.name is None else f"EarlyStopping[{self.monitor}|{self.name}]"

    def get_state(self) -> dict:
        """Best value, wait counter, best and stopped epoch, best weights (or ``None``)."""
        return {
            "version": STATE_VERSION,
            "wait": int(self.wait),
            "stopped_epoch": int(self.stopped_epoch),
            "best": None if self.best is None else float(self.best),
            "best_epoch": int(self.best_epoch),
            "best_weights": None if self.best_weights is None else [np.array(w, copy=True) for w in self.best_weights],
        }

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned; survives the next ``on_train_begin``."""
        self._reset()
        self.wait = int(state.get("wait", 0))
        self.stopped_epoch = int(state.get("stopped_epoch", 0))
        best = state.get("best")
        self.best = None if best is None else float(best)
        self.best_epoch = int(state.get("best_epoch", 0))
        weights = state.get("best_weights")
        self.best_weights = None if weights is None else [np.array(w, copy=True) for w in weights]
        self._restored = True

    # -- decisions -------------------------------------------------------
    def _resolve_direction(self):
        if self.mode != "auto":
            return self.mode
        name = self.monitor.removeprefix("val_")
        direction = "min" if name == "loss" else None
        # Same lookup as Keras's MonitorCallback: the compiled metric's direction.
        direction = _keras_compat.metric_direction(self.model, name) or direction
        if direction is None:
            raise invalid_argument(
                "mode",
                self.mode,
                '"min" or "max"',
                f"The direction of monitor={self.monitor!r} cannot be inferred; pass mode='min' or mode='max'.",
            )
        return direction

    @property
    def monitor_op(self):
        """The comparison in use, as Keras's ``EarlyStopping.monitor_op``.

        ``keras.ops.less`` when the monitored quantity should decrease,
        ``keras.ops.greater`` when it should increase, ``None`` until the
        direction is known (the first epoch end, as in Keras). Read-only: the
        decision itself is made by :meth:`_is_improvement`, which also applies
        ``min_delta`` (absolute or relative).
        """
        if self._direction is None:
            return None
        return keras.ops.less if self._direction == "min" else keras.ops.greater

    def _scalar(self, value) -> float:
        """The monitored value as a float; a one-element array (e.g. ``F1Score`` of one class) is accepted."""
        array = np.asarray(value)
        if array.size != 1:
            raise KerafineError(
                f"EarlyStopping monitors {self.monitor!r}, which is logged as an array of shape "
                f"{tuple(array.shape)}; expected a single number. Monitor a metric averaged to one "
                "value, e.g. keras.metrics.F1Score(average='macro')."
            )
        return float(array.reshape(()))

    def _is_improvement(self, value, reference) -> bool:
        if reference is None:
            return True
        delta = self._delta * abs(reference) if self._relative else self._delta
        # Keras compares with ops.less/ops.greater on Python floats, i.e. in
        # float32 after a float64 subtraction; do the same so that decisions
        # agree with keras.callbacks.EarlyStopping to the last bit.
        if self._direction == "min":
            return bool(np.float32(value + delta) < np.float32(reference))
        return bool(np.float32(value - delta) > np.float32(reference))

    def _monitor_value(self, logs):
        value = logs.get(self.monitor)
        if value is not None:
            return value
        if self.monitor.startswith("val_") and not any(k.startswith("val_") for k in logs):
            if not self._warned_no_validation:
                self._warned_no_validation = True
                _warn.warn(
                    f"EarlyStopping monitors {self.monitor!r} but validation did not run this epoch "
                    "(no val_* key in the logs): pass validation_data to fit(); with validation_freq > 1 "
                    "the epochs without validation are skipped.",
                    depth=1,  # _monitor_value <- on_epoch_end
                    hook=True,
                )
            return None
        available = sorted(logs)
        raise KerafineError(
            f"EarlyStopping cannot find monitor={self.monitor!r} in the epoch logs. "
            f"Available keys: {', '.join(available) if available else '(none)'}."
            + did_you_mean(self.monitor, available)
        )

    # -- Keras hooks ----------------------------------------------------
    def on_train_begin(self, logs=None):
        # One shot: keep what set_state put here, the next fit starts clean.
        self._restore_or_reset()

    def on_epoch_end(self, epoch, logs=None):
        if self._direction is None:
            self._direction = self._resolve_direction()
        current = self._monitor_value(logs or {})
        if current is None or epoch < self.start_from_epoch:
            return
        current = self._scalar(current)
        if self.restore_best_weights and self.best_weights is None:
            # Keras keeps the first monitored epoch's weights even if it is not
            # an improvement over `baseline`.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            _keras_compat.print_msg(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _keras_compat.print_msg(
                    f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}."
                )
            self.model.set_weights(self.best_weights)
