"""TrainingMonitor: watch a fine-tuning run and say in words what is going wrong.

One callback in the ``model.fit`` list that

* logs, every epoch, into ``logs`` (so ``History``, ``CSVLogger`` and
  ``EarlyStopping`` see them) the keys of :data:`LOG_KEYS`: the learning rate
  actually used by the optimizer, the time per step, samples per second, the
  process CPU % and resident memory, and the update-to-weight ratio;
* writes the same, plus per-layer-group weight norms and update-to-weight
  ratios every ``every_n_batches`` batches (and weight histograms if asked),
  to TensorBoard under ``<log_dir>/kerafine`` through :mod:`kerafine.tensorboard`;
* names ten problems (:data:`PROBLEM_KINDS`) in a one-line warning with what
  to try, a TensorBoard text event and a :class:`TrainingProblem` record.

Everything is computed from what a callback can see: ``logs``, the optimizer and
copies of the weights taken at logging points. There is no custom training loop.

Example:

>>> import numpy as np, keras
>>> from kerafine.callbacks.training_monitor import TrainingMonitor, PROBLEM_KINDS
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
>>> model.compile(keras.optimizers.SGD(0.01), loss="mse")
>>> x, y = np.ones((64, 4), "float32"), np.ones((64, 1), "float32")
>>> problems = []
>>> monitor = TrainingMonitor(every_n_batches=2, on_problem=problems.append)
>>> history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor])
>>> round(history.history["learning_rate"][-1], 4)
0.01
>>> sorted(k for k in history.history if k != "loss")
['cpu_percent', 'learning_rate', 'rss_mb', 'samples_per_second', 'step_seconds', 'update_ratio']
>>> all(p.kind in PROBLEM_KINDS for p in problems)  # each a TrainingProblem record
True
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any, Optional

import keras
import numpy as np

from kerafine import _health, _keras_compat, _warn, tensorboard
from kerafine.callbacks import _probes, predictions
from kerafine.callbacks._loss_watch import DEFAULT_FACTOR, DEFAULT_SMOOTHING, DEFAULT_WINDOW, MIN_HISTORY, LossWatch
from kerafine.callbacks.state import KerafineCallback
from kerafine.errors import check_int, did_you_mean, invalid_argument

__all__ = [
    "TrainingMonitor",
    "TrainingProblem",
    "TrainingProblemWarning",
    "LOG_KEYS",
    "PROBLEM_KINDS",
]

#: Keys written into ``logs`` at every epoch end (``gpu_memory_mb`` is added
#: when a GPU is visible). A value that cannot be measured is NaN, so the set of
#: keys, hence a CSVLogger's columns, never changes within a run.
LOG_KEYS = (
    "learning_rate",
    "step_seconds",
    "samples_per_second",
    "cpu_percent",
    "rss_mb",
    "update_ratio",
)

#: The problems TrainingMonitor names.
PROBLEM_KINDS = (
    "nonfinite_loss",
    "nonfinite_weights",
    "loss_exploding",
    "lr_too_high",
    "lr_too_low",
    "overfitting",
    "frozen_weights_changed",
    "weights_not_changing",
    "constant_features",
    "one_class_predictions",
)

_STATE_VERSION = 1
_MIN_LOSSES_FOR_MEDIAN = MIN_HISTORY
_PROBE_MAX_ROWS = 8192
# Epochs in a row a model must predict one class before it is reported (or the fit's last epoch).
_ONE_CLASS_EPOCHS = 2


class TrainingProblemWarning(UserWarning):
    """Category of the one-line warnings TrainingMonitor emits."""


@dataclasses.dataclass(frozen=True)
class TrainingProblem:
    """One problem found by :class:`TrainingMonitor`.

    Attributes:
        kind: one of :data:`PROBLEM_KINDS`.
        epoch: 0-based epoch index, as Keras passes it to callbacks (messages
            say "epoch N" with Keras's 1-based numbering of the progress bar).
        batch: 0-based batch index within the epoch for batch-level problems
            (non-finite loss, explosion), ``None`` for epoch-level ones.
        message: the one-line explanation with what to try.
        values: the figures behind the diagnosis (JSON-native values).
    """

    kind: str
    epoch: int
    batch: Optional[int]
    message: str
    values: dict

    def to_dict(self) -> dict:
        """The record as a JSON-native dict."""
        return dataclasses.asdict(self)


def _scalar(value) -> float:
    """A Python float from a Keras variable, a tensor or a number."""
    # KerasVariable.__array__ lacks numpy 2's `copy` keyword (a DeprecationWarning
    # through np.asarray); .numpy() reads the value directly.
    if hasattr(value, "numpy"):
        value = value.numpy()
    return float(np.asarray(value))


class TrainingMonitor(KerafineCallback):
    """Watch a training run: learning rate, speed, machine, weights, and problems.

    Logged into ``logs`` at each epoch end (put this callback **before**
    ``CSVLogger``/``EarlyStopping`` in the list so they see the keys; ``History``
    always does):

    * ``learning_rate``: the rate the optimizer applied on the epoch's last
      step: a ``LearningRateSchedule`` is evaluated at that step, and a change
      made by ``ReduceLROnPlateau`` at this epoch's end shows from the next
      epoch on, whatever the order of the callbacks. NaN if the optimizer
      exposes no learning rate (said once in a warning).
    * ``step_seconds``: mean wall time per training step (validation excluded);
      ``samples_per_second``: training samples per second (NaN when the model
      the callback sees is not the one being trained, as in ``fine_tune``'s
      cached-feature phase).
    * ``cpu_percent``: CPU use of this process over the epoch (100 = one core);
      ``rss_mb``: resident memory; ``gpu_memory_mb`` when a GPU is visible.
    * ``update_ratio``: median over the epoch's logging points of
      ``||w_t - w_{t-1}|| / ||w_{t-1}||`` over all trainable weights, one step
      apart (NaN if no logging point fell in the epoch).

    TensorBoard (when ``log_dir`` is given): under ``<log_dir>/kerafine``,
    ``epoch/<key>`` for the epoch values (step = epoch) and ``weights/<variable>``
    histograms every ``histograms_every_n_epochs`` epochs; under
    ``<log_dir>/kerafine/batch`` (step = optimizer iteration, see
    :mod:`kerafine.tensorboard`), ``batch/monitor/*`` scalars at each logging
    point, ``batch/weight_norm/<group>`` and ``batch/update_ratio/<group>`` per
    layer group and ``batch/problems/<kind>`` text events. Weight histograms every
    ``histograms_every_n_epochs`` epochs. A layer group is a top-level layer of
    the model; its frozen weights form a separate ``<layer>/frozen`` group.

    Problems (kind: what is checked):

    * ``nonfinite_loss``: the loss became NaN/inf. A probe finds the first
      layer whose weights are non-finite and, if ``probe_data`` is given, the
      rows of it with non-finite inputs and the first layer whose outputs go
      non-finite on finite inputs (run with the last finite weights). The batch
      itself is not visible to a callback, and with shuffling its rows cannot
      be recovered, hence ``probe_data``.
    * ``nonfinite_weights``: a weight became NaN/inf, checked after every
      ``weight_check_freq`` batches (default every batch; one compiled
      reduction) whatever the loss says: on CPUs whose
      ReLU maps NaN to 0 a network poisoned by NaN inputs keeps a finite loss.
      Also raised when an update-to-weight ratio is NaN/inf. Reported at the
      first poisoned batch with the first layer holding non-finite weights
      and, with ``probe_data``, its rows with non-finite inputs.
    * ``loss_exploding``: the smoothed loss (mean of the last
      ``loss_smoothing`` batch losses) above ``explode_factor`` times the
      running median of the earlier smoothed losses: the one rule
      ``CheckpointRestart`` also rolls back on (:mod:`kerafine.callbacks._loss_watch`,
      same defaults), so the two never disagree on a batch. Smoothing keeps a single
      batch that holds a rare positive of imbalanced data, whose loss can be
      20x the median, from being called an explosion; a real blow-up lifts
      every batch and still crosses the line within a few batches.
    * ``lr_too_high`` / ``lr_too_low``: the epoch's update-to-weight ratio is
      above / below ``update_ratio_band``.
    * ``overfitting``: ``val_loss`` has not improved on its best for
      ``overfit_patience`` epochs and is above it, while the training loss kept
      falling below its value at the best epoch.
    * ``frozen_weights_changed``: weights of a frozen layer changed (a freezing
      bug: a layer unfrozen by mistake, BatchNorm statistics updating).
    * ``weights_not_changing``: a trainable group did not change at all over an
      epoch (dead units, zero gradients, or a layer wrongly left out).
    * ``constant_features`` (with ``probe_data``, for a model with a backbone):
      at the first epoch's start (and at every epoch end while the backbone has
      trainable weights: a frozen one cannot change), the backbone runs in
      inference mode on the first 256 rows of ``probe_data``; when at least 90%
      of its features have a standard deviation at most ``1e-4`` x their RMS
      (a scale-free rule, see :mod:`kerafine._health`) while the inputs
      differ, the message names the likely cause (BatchNorm moving statistics
      that do not fit the data, and the first BatchNorm layer whose output is
      constant) and the fix.
    * ``one_class_predictions`` (with ``validation_data``): every validation
      row gets the same predicted class (arg-max, or 0.5 on a single output, 0
      for a ``from_logits`` loss) while the labels hold several classes, at
      the end of two epochs in a row (a model often starts with the majority
      class), or at the end of the last epoch of the fit; the message says
      whether the scores are all equal (a dead model) or only on one side of
      the threshold.

    Log keys: when a key this callback writes is already in ``logs`` (a
    compiled metric or an earlier callback wrote it), a
    ``LogKeyConflictWarning`` names both writers, once per key and fit.
    ``learning_rate``, which Keras's ``ReduceLROnPlateau`` and
    ``LearningRateScheduler`` also write, is overwritten on purpose with the
    rate the epoch applied, without a warning.

    A problem is reported once when it appears, and again only after it has
    cleared and come back.

    Args:
        log_dir: TensorBoard run directory (the one given to Keras's
            ``TensorBoard``), or ``None`` for no TensorBoard output.
            Defaults to ``None``.
        every_n_batches: logging interval in batches for the per-step figures
            and weight snapshots. Defaults to 50.
        histograms_every_n_epochs: write weight histograms every this many
            epochs; 0 disables them. Defaults to 0.
        overfit_patience: epochs without a new best ``val_loss`` before
            over-fitting is reported. Defaults to 3.
        on_problem: ``"warn"`` (a ``TrainingProblemWarning``), ``"stop"`` (warn
            and stop training), or a callable receiving each
            :class:`TrainingProblem` (no warning then). Defaults to ``"warn"``.
        probe_data: inputs to probe when the loss goes non-finite: an array,
            a dict of arrays, ``(x, y[, w])``, or a ``tf.data.Dataset``
            (its first batches). Also the probe batch of the
            ``constant_features`` check. Defaults to ``None`` (probe weights
            only, no feature check).
        validation_data: ``(x, y)`` (or ``(x, y, sample_weight)``, a
            ``tf.data.Dataset``) to check for ``one_class_predictions`` at
            each epoch end; the forward pass is shared with ``AUCTracker`` on
            the same inputs. Defaults to ``None`` (no check).
        explode_factor: how many times the running median the smoothed loss
            must exceed to be called exploding. Defaults to 10.
        loss_smoothing: number of recent batch losses averaged into the
            smoothed loss; 1 judges every batch on its own. Defaults to 10.
        update_ratio_band: ``(low, high)`` per-step update-to-weight ratio
            considered healthy. Defaults to ``(1e-4, 1e-2)``.
        loss_window: number of recent smoothed losses in the running median
            (``>= 8``). Defaults to 50, as ``CheckpointRestart``'s
            ``divergence_window``.
        name: tells two monitors of one ``fit`` apart in a checkpoint (the
            state key is ``kerafine.TrainingMonitor[<name>]``; it does not
            depend on ``log_dir``, which may move between runs). Defaults to
            ``None``.
        weight_check_freq: batches between two checks that every trained
            weight (and trained BatchNorm statistic) is finite, for
            ``nonfinite_weights``. 1 flags a NaN weight at the first poisoned
            batch; a check is one compiled reduction (about one ``tf.function``
            call, see ``benchmarks/RESULTS.md``), so on a very small model a
            larger value trades how soon for speed. Defaults to 1.

    Raises:
        KerafineError: for an invalid argument (e.g. ``every_n_batches < 1``,
            an unknown ``on_problem``).

    Example:

    >>> from kerafine.callbacks.training_monitor import TrainingMonitor
    >>> found = []
    >>> monitor = TrainingMonitor(on_problem=found.append, overfit_patience=2)
    >>> monitor.state_key
    'kerafine.TrainingMonitor[]'
    """

    _shared_log_keys = ("learning_rate",)

    def __init__(
        self,
        log_dir: str | os.PathLike | None = None,
        every_n_batches: int = 50,
        histograms_every_n_epochs: int = 0,
        overfit_patience: int = 3,
        on_problem: str | Callable[[TrainingProblem], Any] = "warn",
        *,
        probe_data: Any = None,
        explode_factor: float = DEFAULT_FACTOR,
        loss_smoothing: int = DEFAULT_SMOOTHING,
        update_ratio_band: tuple[float, float] = (1e-4, 1e-2),
        loss_window: int = DEFAULT_WINDOW,
        name: Optional[str] = None,
        validation_data: Any = None,
        weight_check_freq: int = 1,
    ):
        super().__init__()
        for argument, value, minimum in (
            ("every_n_batches", every_n_batches, 1),
            ("weight_check_freq", weight_check_freq, 1),
            ("histograms_every_n_epochs", histograms_every_n_epochs, 0),
            ("overfit_patience", overfit_patience, 1),
            ("loss_window", loss_window, _MIN_LOSSES_FOR_MEDIAN),
            ("loss_smoothing", loss_smoothing, 1),
        ):
            check_int(argument, value, minimum=minimum, expected=f"an int >= {minimum}")
        if not callable(on_problem) and on_problem not in ("warn", "stop"):
            raise invalid_argument(
                "on_problem",
                on_problem,
                '"warn", "stop" or a callable taking a TrainingProblem',
                hint=did_you_mean(on_problem, ["warn", "stop"]).strip() or None,
            )
        if (
            isinstance(explode_factor, bool)
            or not isinstance(explode_factor, (int, float))
            or not math.isfinite(explode_factor)
            or explode_factor <= 1
        ):
            raise invalid_argument("explode_factor", explode_factor, "a finite float > 1")
        band_ok = (
            isinstance(update_ratio_band, (tuple, list))
            and len(update_ratio_band) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in update_ratio_band)
            and 0 < update_ratio_band[0] < update_ratio_band[1]
        )
        if not band_ok:
            raise invalid_argument("update_ratio_band", update_ratio_band, "a pair (low, high) with 0 < low < high")
        if log_dir is not None:
            from kerafine._io import check_writable_directory

            check_writable_directory(log_dir, "log_dir")
        self.log_dir = log_dir
        self.every_n_batches = every_n_batches
        self.histograms_every_n_epochs = histograms_every_n_epochs
        self.overfit_patience = overfit_patience
        self.on_problem = on_problem
        self.probe_data = probe_data
        self.explode_factor = explode_factor
        self.loss_smoothing = loss_smoothing
        self.update_ratio_band = tuple(update_ratio_band)
        self.loss_window = loss_window
        self.weight_check_freq = weight_check_freq
        if name is not None and (not isinstance(name, str) or not name):
            raise invalid_argument("name", name, "None or a non-empty str")
        self.name = name
        self.validation_data = validation_data
        # Checked now (empty, lengths), before fit starts.
        self._val = None if validation_data is None else predictions.EvalData(validation_data)
        self._restored = False
        # Per instance, not per fit: "no learning rate" is said once.
        self._lr_missing_warned = False
        self._reset()

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        """Memory that spans epochs and survives a restart (see get_state)."""
        self.problems: list[TrainingProblem] = []
        self._watch = LossWatch(self.explode_factor, self.loss_window, self.loss_smoothing)
        self._best_val = None
        self._best_epoch = None
        self._train_at_best = None
        self._active: set[str] = set()
        self._one_class_epochs = 0
        self._one_class_found = None

    @property
    def state_key(self) -> str:
        """Key of this monitor's state in a checkpoint."""
        # Not the log_dir: a user may move logs between runs of one script.
        return f"kerafine.TrainingMonitor[{self.name or ''}]"

    def get_state(self) -> dict:
        """What must survive a restart: the loss median window, the over-fitting
        memory, the problems already reported (and still active), the one-time
        learning-rate note."""
        return {
            "version": _STATE_VERSION,
            "loss_window": np.asarray(self._watch.smoothed, dtype=np.float64),
            "recent_losses": np.asarray(self._watch.recent, dtype=np.float64),
            "best_val_loss": self._best_val,
            "best_epoch": self._best_epoch,
            "train_loss_at_best": self._train_at_best,
            "active": sorted(self._active),
            "lr_missing_warned": self._lr_missing_warned,
            "one_class_epochs": self._one_class_epochs,
            "problems": [p.to_dict() for p in self.problems],
        }

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state`'s output; the next ``on_train_begin`` keeps it."""
        self._reset()
        losses = np.asarray(state.get("loss_window", []), dtype=np.float64).ravel()
        recent = np.asarray(state.get("recent_losses", []), dtype=np.float64).ravel()
        self._watch.set_state(
            {
                "recent_smoothed": losses[-self.loss_window :].tolist(),
                "recent_losses": recent[-self.loss_smoothing :].tolist(),
            },
            running_mean=False,
        )
        self._best_val = state.get("best_val_loss")
        self._best_epoch = state.get("best_epoch")
        self._train_at_best = state.get("train_loss_at_best")
        self._active = set(state.get("active", []))
        self._lr_missing_warned = bool(state.get("lr_missing_warned", False))
        self._one_class_epochs = int(state.get("one_class_epochs", 0))
        self.problems = [TrainingProblem(**p) for p in state.get("problems", [])]
        self._restored = True

    # ------------------------------------------------------------ reporting
    def _iterations(self) -> int:
        opt = getattr(self.model, "optimizer", None)
        try:
            return int(_scalar(opt.iterations))
        except (AttributeError, TypeError, ValueError):
            return int(self._global_batches)

    def _report(self, kind, epoch, batch, message, values, subject=None) -> None:
        key = kind if subject is None else f"{kind}:{subject}"
        if key in self._active:
            return
        self._active.add(key)
        problem = TrainingProblem(kind, int(epoch), None if batch is None else int(batch), message, dict(values))
        self.problems.append(problem)
        if self.log_dir is not None:
            tensorboard.batch_text(self.log_dir, f"problems/{kind}", message, step=self._iterations())
        if callable(self.on_problem):
            self.on_problem(problem)
            return
        _warn.warn(message, TrainingProblemWarning, depth=2, hook=True)  # hook -> _check_* -> _report
        if self.on_problem == "stop":
            self.model.stop_training = True

    def _clear(self, kind, subject=None) -> None:
        self._active.discard(kind if subject is None else f"{kind}:{subject}")

    # --------------------------------------------------------- measurements
    def _read_lr(self) -> Optional[float]:
        opt = getattr(self.model, "optimizer", None)
        opt = getattr(opt, "inner_optimizer", opt)
        if opt is None:
            return None
        raw = _keras_compat.learning_rate_schedule(opt)
        try:
            if raw is not None:
                # optimizer.learning_rate is the rate of the *next* step;
                # the last step applied was iteration - 1.
                step = max(int(_scalar(opt.iterations)) - 1, 0)
                return _scalar(raw(step))
            lr = opt.learning_rate
            if lr is None:
                return None
            value = _scalar(lr)
        except (AttributeError, TypeError, ValueError, NotImplementedError):
            return None
        return value

    def _snapshot(self):
        return [v.numpy() for v in self._tracked]

    def _is_measure_point(self, batch: int) -> bool:
        # A logging point is a batch whose call crosses a multiple of
        # every_n_batches, or the epoch's last batch when the length is known.
        n, spe = self.every_n_batches, self._spe
        if (batch + 1) // n > (batch + 1 - spe) // n:
            return True
        return self._steps is not None and batch == self._steps - 1

    def _measure(self, batch: int) -> None:
        snap = self._snapshot()
        iters = self._iterations()
        now = time.perf_counter()
        if all(np.isfinite(a).all() for a in snap):
            self._last_good = (snap, iters)
        values = {}
        lr = self._read_lr()
        values["monitor/learning_rate"] = math.nan if lr is None else lr
        n_calls = max(1, self._calls_since_measure)
        values["monitor/step_seconds"] = (now - self._t_measure) / (n_calls * self._spe)
        self._t_measure, self._calls_since_measure = now, 0
        before = self._before
        if before is not None and before[1] < iters:
            d_iter = iters - before[1]
            tot_d2 = tot_w2 = 0.0
            for g, idx in zip(self._groups, self._group_index):
                if not g.trainable:
                    continue
                d2 = sum(float(np.sum(np.square(snap[i] - before[0][i], dtype=np.float64))) for i in idx)
                w2 = sum(float(np.sum(np.square(before[0][i], dtype=np.float64))) for i in idx)
                tot_d2 += d2
                tot_w2 += w2
                ratio = math.sqrt(d2) / math.sqrt(w2) / d_iter if w2 > 0 else math.nan
                values[f"update_ratio/{g.name}"] = ratio
                values[f"weight_norm/{g.name}"] = math.sqrt(w2)
            # NaN > 0 is False: test "not zero" so that NaN weights give a NaN ratio, not no ratio.
            if not tot_w2 == 0:
                ratio = math.sqrt(tot_d2) / math.sqrt(tot_w2) / d_iter
                values["monitor/update_ratio"] = ratio
                if math.isfinite(ratio):
                    self._epoch_ratios.append(ratio)
                else:
                    self._check_weights(batch, ratio=ratio)
        self._before = None
        if self.log_dir is not None:
            tensorboard.batch_scalars(self.log_dir, values, step=iters)

    # ------------------------------------------------------------- probing
    def _probe_inputs(self):
        """Batches of inputs from ``probe_data`` (at most _PROBE_MAX_ROWS rows)."""
        data = self.probe_data
        if isinstance(data, tuple) and data and not hasattr(data, "element_spec"):
            data = data[0]
        if isinstance(data, dict) or hasattr(data, "__array__"):
            first = next(iter(data.values())) if isinstance(data, dict) else data
            n = min(len(first), _PROBE_MAX_ROWS)
            for start in range(0, n, 256):
                if isinstance(data, dict):
                    yield {k: np.asarray(v[start : start + 256]) for k, v in data.items()}
                else:
                    yield np.asarray(data[start : start + 256])
            return
        rows = 0
        for batch in data:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            x = {k: np.asarray(v) for k, v in x.items()} if isinstance(x, dict) else np.asarray(x)
            yield x
            first = next(iter(x.values())) if isinstance(x, dict) else x
            rows += len(first)
            if rows >= _PROBE_MAX_ROWS:
                return

    def _probe(self) -> tuple[dict, str]:
        values: dict = {}
        bad_weights = _probes.nonfinite_layers(_probes.leaf_layers(self.model))
        values["first_nonfinite_weights"] = bad_weights[0] if bad_weights else None
        values["layers_with_nonfinite_weights"] = len(bad_weights)
        parts = []
        if bad_weights:
            parts.append(
                f"weights non-finite in {len(bad_weights)} layer(s), first {bad_weights[0]!r} "
                "(one bad step spreads NaN to every trained layer)"
            )
        else:
            parts.append("all weights still finite")
        if self.probe_data is None:
            values["probed"] = "weights"
            parts.append(
                "probed weights only: the batch is not visible to a callback; pass probe_data=x_train to locate NaN inputs and the layer producing them"
            )
            return values, "; ".join(parts)
        values["probed"] = "weights+outputs"
        try:
            outputs_probe = self._probe_outputs()
        except Exception as exc:  # a probe must never hide the original problem
            values["probed"] = "weights"
            parts.append(f"output probe failed ({type(exc).__name__}: {exc})")
            return values, "; ".join(parts)
        values.update(outputs_probe[0])
        parts.append(outputs_probe[1])
        return values, "; ".join(parts)

    def _probe_outputs(self) -> tuple[dict, str]:
        model = self.model
        layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
        probe_model = keras.Model(model.inputs, [l.output for l in layers])
        current = self._snapshot()
        restore = None
        if not all(np.isfinite(a).all() for a in current) and self._last_good is not None:
            restore = current
            for v, a in zip(self._tracked, self._last_good[0]):
                v.assign(a)
        try:
            bad_input_rows, first_row, first_bad_layer, row0 = 0, None, None, 0
            for x in self._probe_inputs():
                flat = list(x.values()) if isinstance(x, dict) else [x]
                n = len(flat[0])
                finite_in = np.ones(n, bool)
                for arr in flat:
                    if np.issubdtype(arr.dtype, np.floating):
                        finite_in &= np.isfinite(arr.reshape(n, -1)).all(axis=1)
                if not finite_in.all():
                    bad_input_rows += int((~finite_in).sum())
                    if first_row is None:
                        first_row = row0 + int(np.argmin(finite_in))
                if first_bad_layer is None and finite_in.any():
                    outs = probe_model(x, training=False)
                    outs = outs if isinstance(outs, (list, tuple)) else [outs]
                    for layer, out in zip(layers, outs):
                        out = keras.ops.convert_to_numpy(out)
                        if out.ndim and np.issubdtype(out.dtype, np.floating):
                            if not np.isfinite(out.reshape(n, -1)[finite_in]).all():
                                first_bad_layer = layer.name
                                break
                row0 += n
        finally:
            if restore is not None:
                for v, a in zip(self._tracked, restore):
                    v.assign(a)
        weights_used = "current weights" if restore is None else f"the last finite weights (step {self._last_good[1]})"
        values = {
            "nonfinite_input_rows": bad_input_rows,
            "first_nonfinite_input_row": first_row,
            "first_nonfinite_output": first_bad_layer,
        }
        if bad_input_rows:
            text = f"probe_data has {bad_input_rows} row(s) with non-finite inputs (first row {first_row})"
        else:
            text = f"probe_data inputs are finite ({row0} rows checked)"
        if first_bad_layer is not None:
            text += f"; first layer with non-finite outputs on finite inputs, with {weights_used}: {first_bad_layer!r}"
        else:
            text += f"; no layer produced non-finite outputs on finite inputs with {weights_used}"
        return values, text

    # -------------------------------------------------------------- hooks
    def on_train_begin(self, logs=None):
        self._restore_or_reset()  # keep what set_state restored, this once
        import psutil

        self._process = psutil.Process()
        self._process.cpu_percent(None)
        self._gpu = None
        try:
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            self._gpu = "GPU:0" if gpus else None
        except Exception:  # no TensorFlow device query: no GPU figure
            self._gpu = None
        self._steps = (self.params or {}).get("steps")
        self._spe = max(1, int(np.asarray(getattr(self.model, "steps_per_execution", 1) or 1)))
        self._groups, state_vars = _probes.build_groups(self.model)
        self._tracked, self._group_index = [], []
        for g in self._groups:
            if g.trainable:
                self._group_index.append(list(range(len(self._tracked), len(self._tracked) + len(g.variables))))
                self._tracked.extend(g.variables)
            else:
                self._group_index.append([])
        self._tracked.extend(state_vars)
        self._frozen_prints = {g.name: _probes.crc_fingerprint(g.variables) for g in self._groups if not g.trainable}
        # What training can change: the trained weights and trained BatchNorm statistics
        # (frozen ones cannot go NaN unnoticed: frozen_weights_changed watches them).
        self._finite_check = _probes.FiniteCheck(self._tracked)
        self._global_batches = 0
        self._before = None
        self._features_checked = False
        # A finite baseline, so that a loss that is NaN on the very first
        # batch can still be probed with weights from before the bad step.
        first = self._snapshot()
        self._last_good = (first, self._iterations()) if all(np.isfinite(a).all() for a in first) else None
        if self._read_lr() is None and not self._lr_missing_warned:
            self._lr_missing_warned = True
            _warn.warn(
                f"TrainingMonitor: the optimizer {type(getattr(self.model, 'optimizer', None)).__name__} exposes no "
                "learning rate; `learning_rate` is logged as NaN and everything else is monitored.",
                TrainingProblemWarning,
                hook=True,
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = int(epoch)
        self._t_epoch = self._t_measure = self._t_last = time.perf_counter()
        self._calls_since_measure = 0
        self._process.cpu_percent(None)
        self._epoch_ratios = []
        self._batches = 0
        self._prev_batch = -1
        self._watch.new_epoch()
        self._last_lr = None
        self._trainable_prints = {g.name: _probes.crc_fingerprint(g.variables) for g in self._groups if g.trainable}
        if self._is_measure_point(self._spe - 1):
            self._before = (self._snapshot(), self._iterations())
        if not self._features_checked:
            self._features_checked = True
            self._check_features(epoch)

    def on_train_batch_end(self, batch, logs=None):
        self._t_last = time.perf_counter()
        self._global_batches += 1
        self._calls_since_measure += 1
        self._batches = batch + 1
        mean = None if logs is None else logs.get("loss")
        if mean is not None:
            self._check_loss(batch, float(mean))
        if self._global_batches % self.weight_check_freq == 0:
            self._check_weights(batch, mean)
        if self._steps is None or batch >= self._steps - 1:
            self._last_lr = self._read_lr()
        if self._is_measure_point(batch):
            self._measure(batch)
        if self._is_measure_point(batch + self._spe) and (self._steps is None or batch + 1 < self._steps):
            self._before = (self._snapshot(), self._iterations())

    def _check_loss(self, batch: int, mean: float) -> None:
        # Keras passes the running mean of the epoch's loss; the one loss-watch rule
        # (shared with CheckpointRestart) recovers each step's loss and judges it.
        steps = max(1, batch - self._prev_batch)
        self._prev_batch = batch
        verdict = self._watch.observe(mean, steps)
        epoch = self._epoch_index()
        if verdict.kind == "nonfinite":
            self._watch.skip(mean, steps)
            if "nonfinite_loss" in self._active:
                return
            values, probe_text = self._probe()
            values["loss"] = mean
            self._report(
                "nonfinite_loss",
                epoch,
                batch,
                f"TrainingMonitor: loss became {mean} at epoch {epoch + 1}, batch {batch}; {probe_text}. "
                "Try: check the data for NaN/inf (np.isfinite), lower the learning rate, clip gradients "
                "(clipnorm=1.0), use a numerically stable loss (from_logits=True).",
                values,
            )
            return
        self._clear("nonfinite_loss")
        smoothed, med = verdict.smoothed, verdict.median
        if verdict.kind == "exploding":
            self._watch.skip(mean, steps)
            over = f"the last {verdict.window} batches" if verdict.window > 1 else "this batch"
            self._report(
                "loss_exploding",
                epoch,
                batch,
                f"TrainingMonitor: loss {smoothed:.4g} (mean of {over}) at epoch {epoch + 1}, batch {batch} "
                f"is {smoothed / med:.1f}x its running median {med:.4g}: the run is diverging. "
                "Try: lower the learning rate 10x (kerafine.lr_find), clip gradients (clipnorm=1.0), "
                "check the recent batches for outliers.",
                {"loss": smoothed, "batch_loss": verdict.batch_loss, "running_median": med, "factor": smoothed / med},
            )
        elif med is not None and smoothed < 0.5 * self.explode_factor * med:
            self._clear("loss_exploding")

    def _check_weights(self, batch: int, loss=None, ratio=None) -> None:
        # Judged on the weights, not the loss: a NaN input gives a NaN gradient
        # (NaN * 0 is NaN) and one step makes the weights NaN, while a ReLU that
        # maps NaN to 0 (some CPUs) can keep the loss finite.
        if ratio is None and self._weights_finite():
            self._clear("nonfinite_weights")
            return
        if "nonfinite_weights" in self._active:
            return
        epoch = self._epoch_index()
        values, probe_text = self._probe()
        values["loss"] = None if loss is None else float(loss)
        what = "weights became NaN/inf" if ratio is None else f"the update-to-weight ratio is {ratio}"
        loss_text = (
            ""
            if loss is None
            else f" (loss {float(loss):.4g}{': finite, yet the model is dead' if math.isfinite(float(loss)) else ''})"
        )
        if ratio is not None:
            values["update_ratio"] = float(ratio)
        self._report(
            "nonfinite_weights",
            epoch,
            batch,
            f"TrainingMonitor: {what} at epoch {epoch + 1}, batch {batch}{loss_text}; {probe_text}. "
            "Try: check the training data for NaN/inf (np.isfinite; fine_tune refuses them), then lower the "
            "learning rate or clip gradients (clipnorm=1.0); restore the last good checkpoint.",
            values,
        )

    def _weights_finite(self) -> bool:
        check = getattr(self, "_finite_check", None)
        return True if check is None else check()

    def _epoch_index(self) -> int:
        return getattr(self, "_current_epoch", 0)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        train_seconds = max(self._t_last - self._t_epoch, 1e-12)
        steps = max(self._batches, 1)
        samples = math.nan
        # Keras weights the loss mean by the batch size: its count is the number
        # of samples seen this epoch, by the model fit trains (which the fit
        # context names: fine_tune's head phase trains a head-only model).
        count = _keras_compat.samples_seen(self.context.trained_model or self.model)
        if count is not None and count > 0:
            samples = count
        lr = self._last_lr if self._last_lr is not None else self._read_lr()
        ratio = float(np.median(self._epoch_ratios)) if self._epoch_ratios else math.nan
        epoch_values = {
            "learning_rate": math.nan if lr is None else lr,
            "step_seconds": train_seconds / steps,
            "samples_per_second": samples / train_seconds,
            "cpu_percent": float(self._process.cpu_percent(None)),
            "rss_mb": self._process.memory_info().rss / 2**20,
            "update_ratio": ratio,
        }
        if self._gpu is not None:
            try:
                import tensorflow as tf

                epoch_values["gpu_memory_mb"] = tf.config.experimental.get_memory_info(self._gpu)["current"] / 2**20
            except Exception:  # the device does not report memory
                epoch_values["gpu_memory_mb"] = math.nan
        self._write_logs(logs, epoch_values)
        self._check_update_ratio(epoch, ratio, lr)
        self._check_overfitting(epoch, logs)
        self._check_frozen(epoch)
        self._check_unchanged(epoch)
        if self._backbone_may_change():
            self._check_features(epoch)
        self._check_one_class(epoch)
        if self.log_dir is not None:
            tensorboard.scalars(self.log_dir, {f"epoch/{k}": v for k, v in epoch_values.items()}, step=epoch)
            h = self.histograms_every_n_epochs
            if h and epoch % h == 0:
                for g in self._groups:
                    if g.trainable:
                        for v in g.variables:
                            tensorboard.histogram(self.log_dir, f"weights/{v.path}", v.numpy(), step=epoch)

    def _check_update_ratio(self, epoch, ratio, lr) -> None:
        low, high = self.update_ratio_band
        if not math.isfinite(ratio) or "nonfinite_loss" in self._active:
            return
        phase = "head-only phase (frozen layers present)" if self._frozen_prints else "full fine-tuning phase"
        lr_text = "" if lr is None else f" (learning rate {lr:.3g})"
        values = {"update_ratio": ratio, "low": low, "high": high, "learning_rate": lr}
        if ratio > high:
            self._report(
                "lr_too_high",
                epoch,
                None,
                f"TrainingMonitor: learning rate looks too high for the {phase}{lr_text}: each step moves the "
                f"trainable weights by {ratio:.2g} of their norm at epoch {epoch + 1} (healthy {low:g}..{high:g}). "
                "Try: a 3-10x lower learning rate, kerafine.lr_find, or a warm-up schedule.",
                values,
            )
        else:
            self._clear("lr_too_high")
        if ratio < low:
            self._report(
                "lr_too_low",
                epoch,
                None,
                f"TrainingMonitor: learning rate looks too low for the {phase}{lr_text}: each step moves the "
                f"trainable weights by {ratio:.2g} of their norm at epoch {epoch + 1} (healthy {low:g}..{high:g}). "
                "Try: a 3-10x higher learning rate or kerafine.lr_find.",
                values,
            )
        else:
            self._clear("lr_too_low")

    def _check_overfitting(self, epoch, logs) -> None:
        loss, val = logs.get("loss"), logs.get("val_loss")
        if loss is None or val is None or not (math.isfinite(loss) and math.isfinite(val)):
            return
        loss, val = float(loss), float(val)
        if self._best_val is None or val < self._best_val:
            self._best_val, self._best_epoch, self._train_at_best = val, int(epoch), loss
            self._clear("overfitting")
            return
        waited = epoch - self._best_epoch
        if waited >= self.overfit_patience and loss < self._train_at_best:
            gap = val - loss
            self._report(
                "overfitting",
                epoch,
                None,
                f"TrainingMonitor: over-fitting at epoch {epoch + 1}: val_loss {val:.4g} is above its best "
                f"{self._best_val:.4g} (epoch {self._best_epoch + 1}) for {waited} epochs while the training loss "
                f"fell to {loss:.4g}; gap val-train {gap:.4g}. Try: restore the best epoch "
                "(EarlyStopping(restore_best_weights=True)), more augmentation or dropout, weight decay, "
                "fewer unfrozen layers, a lower learning rate.",
                {
                    "val_loss": val,
                    "loss": loss,
                    "gap": gap,
                    "best_epoch": self._best_epoch,
                    "best_val_loss": self._best_val,
                    "epochs_since_best": waited,
                },
            )

    def _check_frozen(self, epoch) -> None:
        for g in self._groups:
            if g.trainable:
                continue
            now = _probes.crc_fingerprint(g.variables)
            ref = self._frozen_prints[g.name]
            changed = [v.path for v, a, b in zip(g.variables, now, ref) if a != b]
            self._frozen_prints[g.name] = now
            if not changed:
                self._clear("frozen_weights_changed", g.name)
                continue
            self._report(
                "frozen_weights_changed",
                epoch,
                None,
                f"TrainingMonitor: frozen layer group {g.name!r} changed during epoch {epoch + 1} "
                f"({len(changed)} of {len(g.variables)} weights, first {changed[0]!r}): a freezing bug. "
                "Try: set trainable=False before compile() and re-compile after changing it; keep BatchNorm "
                "frozen (call the backbone with training=False); check nothing assigns to these weights.",
                {"group": g.name, "changed": len(changed), "weights": len(g.variables), "first": changed[0]},
                subject=g.name,
            )

    def _check_unchanged(self, epoch) -> None:
        if self._batches == 0:
            return
        for g in self._groups:
            if not g.trainable:
                continue
            if _probes.crc_fingerprint(g.variables) != self._trainable_prints[g.name]:
                self._clear("weights_not_changing", g.name)
                continue
            self._report(
                "weights_not_changing",
                epoch,
                None,
                f"TrainingMonitor: trainable layer group {g.name!r} did not change at all during epoch "
                f"{epoch + 1}: its gradients are zero (dead ReLUs, a zero multiplier, saturated activations) "
                "or it is cut off from the loss. Try: check its activations and initialisation, or freeze it "
                "on purpose (trainable=False) if it should not learn.",
                {"group": g.name, "weights": len(g.variables)},
                subject=g.name,
            )

    def _backbone_may_change(self) -> bool:
        """Whether the backbone has trainable weights: a frozen one gives the features found at the start."""
        if self.probe_data is None:
            return False
        from kerafine import transfer
        from kerafine.errors import KerafineError

        try:
            return bool(transfer.backbone_of(self.watched_model).trainable_weights)
        except KerafineError:
            return False

    def _check_features(self, epoch) -> None:
        if self.probe_data is None:
            return
        x = next(iter(self._probe_inputs()), None)
        if x is None:
            return
        try:
            found = _health.check_backbone(self.watched_model, x, "probe_data")
        except Exception:  # noqa: BLE001 - a probe the model cannot take (e.g. string inputs) judges nothing
            found = None
        if found is None:
            self._clear("constant_features")
            return
        values, text = found
        self._report("constant_features", epoch, None, f"TrainingMonitor: at epoch {epoch + 1}, {text}", values)

    def _check_one_class(self, epoch) -> None:
        if self._val is None:
            return
        model = self.watched_model
        if not _health.is_classification_loss(getattr(model, "loss", None)):
            return
        pred = predictions.predict(model, self._val, cache=self.context.predictions)
        if isinstance(pred.y_pred, (list, tuple, dict)):
            return  # several outputs: not judged
        found = _health.one_class(
            np.asarray(pred.y_pred), pred.y_true, from_logits=_health.from_logits_of(model.loss), where="validation"
        )
        if found is None:
            self._one_class_epochs, self._one_class_found = 0, None
            self._clear("one_class_predictions")
            return
        self._one_class_epochs += 1
        self._one_class_found = (epoch, found)
        if self._one_class_epochs >= _ONE_CLASS_EPOCHS:
            self._report_one_class()

    def _report_one_class(self) -> None:
        epoch, (values, text) = self._one_class_found
        values = dict(values, epochs_in_a_row=self._one_class_epochs)
        self._report(
            "one_class_predictions",
            epoch,
            None,
            f"TrainingMonitor: at epoch {epoch + 1} ({self._one_class_epochs} epoch(s) in a row), {text}",
            values,
        )

    def on_train_end(self, logs=None):
        if self._one_class_found is not None:
            # The fit ends on a one-class model: said even if it held for a single epoch.
            self._report_one_class()
        if self.log_dir is not None:
            tensorboard.flush(self.log_dir)
