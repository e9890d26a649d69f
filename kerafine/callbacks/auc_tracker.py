"""Exact ROC-AUC / PR-AUC on the whole validation set at the end of every epoch.

``keras.metrics.AUC`` approximates the curve with a fixed grid of thresholds
(200 by default), which is biased on rare-positive problems. ``AUCTracker``
predicts once per epoch on its validation data (through the shared prediction
cache :mod:`kerafine.callbacks.predictions`, so other kerafine callbacks reuse
the same forward pass), computes the exact values with
:mod:`kerafine.metrics` and writes them into the epoch's ``logs``. Callbacks
placed after it in the list (``History``, ``CSVLogger``, Keras's
``TensorBoard``, ``ReduceLROnPlateau``, ``EarlyStopping``, ``ModelCheckpoint``,
kerafine's ``EarlyStopping`` and ``CheckpointRestart``) see the new keys.

How the order check works: Keras passes no reference to the callback list to
its callbacks (``CallbackList.set_model`` only hands each one the model). At
``on_train_begin`` the tracker walks up the Python call stack to the
``CallbackList`` whose loop is calling it (any object with a ``callbacks``
list that contains this tracker) and inspects its siblings. If no such list is
found (a custom loop calling the hooks directly) the check is skipped.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Optional

import keras
import numpy as np

from kerafine import _keras_compat, _warn
from kerafine.callbacks import predictions
from kerafine.callbacks.state import STATE_VERSION, KerafineCallback
from kerafine.errors import DataError, invalid_argument
from kerafine.metrics import ranking
from kerafine.metrics._validation import UndefinedMetricWarning, check_targets

__all__ = ["AUCTracker"]

_CURVES = ("roc", "pr", "both")
_AVERAGES = ("macro", "weighted")


def _pr_key(name: str) -> str:
    # "val_auc" -> "val_pr_auc"; any other name gets a "_pr" suffix.
    if name.endswith("auc"):
        return name[: -len("auc")] + "pr_auc"
    return name + "_pr"


class AUCTracker(KerafineCallback):
    """Write the exact validation ROC-AUC (and/or PR-AUC) into the logs of every epoch.

    Put it BEFORE the callbacks that read its keys::

        model.fit(x, y, epochs=20, callbacks=[
            AUCTracker((x_val, y_val)),
            keras.callbacks.ReduceLROnPlateau(monitor="val_auc", mode="max"),
            keras.callbacks.CSVLogger("log.csv"),
        ])

    Keys written (with the default ``name="val_auc"``):

    * ``val_auc`` (ROC-AUC, ``curve`` "roc" or "both") and ``val_pr_auc``
      (average precision, ``curve`` "pr" or "both");
    * binary with ``ci_level``: ``val_auc_lower`` and ``val_auc_upper``, the
      DeLong confidence interval of the ROC-AUC;
    * multiclass: the ``average`` over classes under the keys above, and one
      key per class, ``val_auc_<class>`` (and ``val_pr_auc_<class>``).

    Behaviour worth knowing:

    * Validation labels with a single class (AUC undefined): a warning once per
      run and ``NaN`` in the logs; the fit goes on.
    * ``every_n_epochs=n`` evaluates at the end of epochs ``n, 2n, ...`` (as
      Keras's ``validation_freq``). On the other epochs the keys are left OUT of
      the logs rather than repeating a stale value or writing NaN: Keras's
      ``EarlyStopping`` and ``ReduceLROnPlateau`` then skip the epoch with a
      warning (NaN would count as "no improvement" and stop training early);
      kerafine's ``EarlyStopping`` skips it only when ``fit`` has no
      ``validation_data`` of its own, and otherwise raises (a monitored key
      should use ``every_n_epochs=1``). ``History`` lists then hold one value
      per evaluated epoch.
    * A callback earlier in the list that monitors one of these keys never
      sees them: a warning at the start of training names it and the fix.
    * Scores may be probabilities or logits; sample weights in
      ``validation_data`` weight the AUCs.

    Args:
        validation_data: ``(x, y)``, ``(x, y, sample_weight)``, a
            ``tf.data.Dataset``, a ``keras.utils.PyDataset`` or a generator
            yielding such batches (a generator is read once and kept).
        name: key of the ROC-AUC; the PR-AUC key is derived from it
            (``"val_auc"`` -> ``"val_pr_auc"``). Defaults to ``"val_auc"``.
        curve: ``"roc"``, ``"pr"`` or ``"both"``. Defaults to ``"roc"``.
        average: how classes are averaged for multiclass / multilabel outputs:
            ``"macro"`` or ``"weighted"`` (by support). Defaults to ``"macro"``.
        batch_size: batch size for array inputs. Defaults to 256.
        steps: batches to draw from a dataset or generator (needed if it repeats
            forever). Defaults to ``None`` (until exhausted).
        log_dir: if given, also write the scalars, ROC / PR curve images and
            TensorBoard PR-curve summaries under ``<log_dir>/kerafine`` (beside
            Keras's ``TensorBoard(log_dir)`` folders). TensorBoard always gets
            the PR-AUC (``val_pr_auc``), also with ``curve="roc"``, which
            leaves it out of the logs. Defaults to ``None``.
        every_n_epochs: evaluate every n-th epoch. Defaults to 1.
        ci_level: level of the DeLong interval written as ``<name>_lower`` /
            ``<name>_upper`` (binary ROC only), or ``None`` for no interval.
            Defaults to 0.95.
        class_names: names used in the per-class keys. Defaults to ``None``
            (class indices).
        verbose: 1 prints the values at each evaluated epoch. Defaults to 0.

    Raises:
        KerafineError: an unknown ``curve`` or ``average``, a bad ``name``,
            ``every_n_epochs``, ``ci_level`` or ``log_dir``.
        DataError: empty ``validation_data``, or arrays without labels.

    Example:

    >>> import numpy as np, keras
    >>> from kerafine.callbacks import AUCTracker
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 3)).astype("float32"); y = (x[:, 0] > 0).astype("float32")
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    >>> model.compile("adam", "binary_crossentropy")
    >>> tracker = AUCTracker((x, y))
    >>> h = model.fit(x, y, epochs=2, verbose=0, callbacks=[tracker])
    >>> sorted(k for k in h.history if k.startswith("val_"))
    ['val_auc', 'val_auc_lower', 'val_auc_upper']
    >>> tracker.best_epoch in (0, 1)
    True
    """

    def __init__(
        self,
        validation_data,
        name: str = "val_auc",
        curve: str = "roc",
        average: str = "macro",
        batch_size: int = 256,
        steps: Optional[int] = None,
        log_dir=None,
        every_n_epochs: int = 1,
        ci_level: Optional[float] = 0.95,
        class_names: Optional[Sequence] = None,
        verbose: int = 0,
    ):
        super().__init__()
        if not isinstance(name, str) or not name.strip():
            raise invalid_argument("name", name, "a non-empty string such as 'val_auc'")
        if curve not in _CURVES:
            raise invalid_argument("curve", curve, '"roc", "pr" or "both"')
        if average not in _AVERAGES:
            raise invalid_argument("average", average, '"macro" or "weighted"')
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, numbers.Integral) or every_n_epochs < 1:
            raise invalid_argument("every_n_epochs", every_n_epochs, "a positive int")
        if ci_level is not None and (
            isinstance(ci_level, bool) or not isinstance(ci_level, numbers.Real) or not 0 < ci_level < 1
        ):
            raise invalid_argument("ci_level", ci_level, "None or a float strictly between 0 and 1")
        if isinstance(verbose, bool) or not isinstance(verbose, numbers.Integral) or verbose < 0:
            raise invalid_argument("verbose", verbose, "0 or 1")
        if log_dir is not None:
            from kerafine._io import check_writable_directory

            check_writable_directory(log_dir, "log_dir")
        # EvalData validates the data now (empty, lengths), before fit starts.
        data = predictions.EvalData(validation_data, batch_size=batch_size, steps=steps)
        if data._arrays is not None and data._arrays[1] is None:
            raise DataError(
                "Invalid value for argument `validation_data`: received inputs without labels; "
                "expected (x, y) or (x, y, sample_weight)."
            )
        self.validation_data = validation_data
        self.name = name
        self.curve = curve
        self.average = average
        self.batch_size = batch_size
        self.steps = steps
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.every_n_epochs = int(every_n_epochs)
        self.ci_level = ci_level
        self.class_names = None if class_names is None else list(class_names)
        self.verbose = verbose
        self._data = data
        self._restored = False
        self._reset()

    # ------------------------------------------------------------ state
    def _reset(self) -> None:
        self._best = None
        self._best_epoch = None
        self._last = {}
        self._warned_single_class = False

    @property
    def best(self) -> Optional[float]:
        """Best (highest) value of the monitored AUC so far (ROC-AUC unless ``curve="pr"``), or ``None``."""
        return self._best

    @property
    def best_epoch(self) -> Optional[int]:
        """Epoch (0-based, as in Keras logs) of :attr:`best`, or ``None``."""
        return self._best_epoch

    @property
    def last_values(self) -> dict:
        """The keys and values written at the last evaluated epoch."""
        return dict(self._last)

    @property
    def monitor_key(self) -> str:
        """The key whose best value is tracked."""
        return _pr_key(self.name) if self.curve == "pr" else self.name

    @property
    def state_key(self) -> str:
        return f"AUCTracker[{self.name}]"

    def get_state(self) -> dict:
        """Best value and epoch (JSON-native)."""
        return {
            "version": STATE_VERSION,
            "best": self._best,
            "best_epoch": self._best_epoch,
        }

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state`'s output; survives the next ``on_train_begin``."""
        self._reset()
        best = state.get("best")
        self._best = None if best is None else float(best)
        epoch = state.get("best_epoch")
        self._best_epoch = None if epoch is None else int(epoch)
        self._restored = True

    # ------------------------------------------------------------ keys
    def _base_keys(self) -> list[str]:
        keys = []
        if self.curve in ("roc", "both"):
            keys.append(self.name)
            if self.ci_level is not None:
                keys += [f"{self.name}_lower", f"{self.name}_upper"]
        if self.curve in ("pr", "both"):
            keys.append(_pr_key(self.name))
        return keys

    def _produces(self, key) -> bool:
        if not isinstance(key, str):
            return False
        prefixes = [self.name] if self.curve in ("roc", "both") else []
        if self.curve in ("pr", "both"):
            prefixes.append(_pr_key(self.name))
        return key in self._base_keys() or any(key.startswith(p + "_") for p in prefixes)

    # ------------------------------------------------------------ order check
    def _callback_list(self):
        """The callbacks of the running fit, from the fit context (``None`` if it found no list)."""
        ctx = self.context
        return ctx.callbacks if ctx.callback_list is not None else None

    def _check_order(self) -> None:
        callbacks = self._callback_list()
        if callbacks is None:
            return
        position = next(i for i, cb in enumerate(callbacks) if cb is self)
        loggers = (keras.callbacks.CSVLogger, keras.callbacks.TensorBoard, keras.callbacks.History)
        for cb in callbacks[:position]:
            monitor = getattr(cb, "monitor", None)
            kind = type(cb).__name__
            if self._produces(monitor):
                _warn.warn(
                    f"{kind}(monitor={monitor!r}) comes before AUCTracker in the callback list, so it runs "
                    f"before {monitor!r} is written and never sees it. Put AUCTracker first: "
                    f"callbacks=[AUCTracker(...), {kind}(...), ...].",
                    depth=1,
                    hook=True,
                )
            elif isinstance(cb, loggers):
                _warn.warn(
                    f"{kind} comes before AUCTracker in the callback list, so it will not record "
                    f"{self._base_keys()}. Put AUCTracker first: callbacks=[AUCTracker(...), {kind}(...), ...].",
                    depth=1,
                    hook=True,
                )
        if self.every_n_epochs > 1:
            for cb in callbacks[position + 1 :]:
                monitor = getattr(cb, "monitor", None)
                if self._produces(monitor):
                    _warn.warn(
                        f"{type(cb).__name__} monitors {monitor!r}, which AUCTracker writes only every "
                        f"{self.every_n_epochs} epochs; on the other epochs the key is absent (Keras's monitors "
                        "skip those epochs with a warning; kerafine's EarlyStopping raises when fit() has "
                        "validation_data of its own). Use every_n_epochs=1 for a monitored key.",
                        depth=1,
                        hook=True,
                    )

    # ------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None):
        # One shot: keep a restored best, the next fit starts clean.
        self._restore_or_reset()
        self._check_order()

    def on_train_end(self, logs=None):
        if self.log_dir is not None:
            from kerafine import tensorboard

            tensorboard.flush(self.log_dir)  # also writes the run's layout if it is due

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs != 0:
            return
        values, curves, pr_values = self._evaluate(epoch)
        self._write_logs(logs, values)
        self._last = values
        tracked = values.get(self.monitor_key)
        if tracked is not None and math.isfinite(tracked) and (self._best is None or tracked > self._best):
            self._best = float(tracked)
            self._best_epoch = int(epoch)
        if self.verbose:
            text = " - ".join(f"{k}: {v:.4f}" for k, v in values.items())
            _keras_compat.print_msg(f"Epoch {epoch + 1}: {text}")
        if self.log_dir is not None:
            # TensorBoard always gets the PR-AUC (cheap: same sorted scores), whatever `curve` puts in the logs.
            self._write_tensorboard({**values, **pr_values}, curves, epoch)

    # ------------------------------------------------------------ computing
    def _evaluate(self, epoch: int):
        """(logs values, curves, PR-AUC values for TensorBoard)."""
        pred = self.context.predictions.predict(self.watched_model, self._data)
        if pred.y_true is None:
            raise DataError(
                "Invalid value for argument `validation_data`: its batches carry no labels; "
                "expected batches of (x, y) or (x, y, sample_weight)."
            )
        y_pred = np.asarray(pred.y_pred)
        if y_pred.dtype.kind != "f":
            y_pred = y_pred.astype(np.float64)
        t = check_targets(pred.y_true, y_pred, pred.sample_weight, None)
        values: dict[str, float] = {}
        curves = []
        want_roc = self.curve in ("roc", "both")
        want_pr = self.curve in ("pr", "both")
        if t.kind == "binary":
            summary = ranking._binary_summary(t.y, t.score, t.weight, self.ci_level if want_roc else None)
            if summary.groups is None or not math.isfinite(summary.roc_auc):
                self._warn_single_class("the validation labels have a single class")
            if want_roc:
                values[self.name] = summary.roc_auc
                if self.ci_level is not None:
                    values[f"{self.name}_lower"] = summary.interval.lower
                    values[f"{self.name}_upper"] = summary.interval.upper
            pr_values = {_pr_key(self.name): summary.pr_auc}
            if want_pr:
                values.update(pr_values)
            if math.isfinite(summary.roc_auc):
                curves.append((None, t.y, t.score, summary.groups))
            return values, curves, pr_values
        k = t.score.shape[1]
        names = self.class_names if self.class_names is not None and len(self.class_names) == k else list(range(k))
        per_roc, per_pr, missing = [], [], []
        for c in range(k):
            summary = ranking._binary_summary(t.y[:, c], t.score[:, c], t.weight, None)
            per_roc.append(summary.roc_auc)
            per_pr.append(summary.pr_auc)
            if math.isfinite(summary.roc_auc):
                curves.append((names[c], t.y[:, c], t.score[:, c], summary.groups))
            else:
                missing.append(names[c])
        if missing:
            self._warn_single_class(f"classes {missing} are absent from (or are all of) the validation labels")

        def avg(v):
            return ranking._class_average(v, t.y, t.weight, self.average)

        if want_roc:
            values[self.name] = avg(per_roc)
            values.update({f"{self.name}_{n}": float(v) for n, v in zip(names, per_roc)})
        key = _pr_key(self.name)
        pr_values = {key: avg(per_pr), **{f"{key}_{n}": float(v) for n, v in zip(names, per_pr)}}
        if want_pr:
            values.update(pr_values)
        return values, curves, pr_values

    def _warn_single_class(self, detail: str) -> None:
        if self._warned_single_class:
            return
        self._warned_single_class = True
        _warn.warn(
            f"AUCTracker: the AUC is undefined because {detail}; writing NaN (this warning is shown once). "
            "Use a validation set that holds every class.",
            UndefinedMetricWarning,
            depth=2,  # on_epoch_end -> _evaluate -> _warn_single_class
            hook=True,
        )

    # ------------------------------------------------------------ TensorBoard
    def _write_tensorboard(self, values: dict, curves: list, epoch: int) -> None:
        from matplotlib.figure import Figure

        from kerafine import tensorboard
        from kerafine.metrics.ranking import _ap_from_groups
        from kerafine.metrics.report import _draw_pr, _draw_roc, _pr_points, _roc_points

        tensorboard.scalars(self.log_dir, values, step=epoch)
        if not curves:
            return
        multi = curves[0][0] is not None
        labels = [c[0] for c in curves] if multi else None
        if self.curve in ("roc", "both"):
            fig = Figure(figsize=(4.5, 4))
            roc_pts = [_roc_points(g) for *_, g in curves]
            _draw_roc(fig.add_subplot(), roc_pts if multi else roc_pts[0], labels, values.get(self.name))
            tensorboard.figure(self.log_dir, f"{self.name}/roc_curve", fig, step=epoch, close_figure=False)
        fig = Figure(figsize=(4.5, 4))
        pr_pts = [_pr_points(g) for *_, g in curves]
        ap = values.get(_pr_key(self.name))
        prevalence = None
        if not multi:
            g = curves[0][-1]
            # The title always shows the exact AP, also when curve="roc" does not log it.
            ap = _ap_from_groups(g) if ap is None else ap
            total = g.tps[-1] + g.fps[-1]
            prevalence = float(g.tps[-1] / total) if total > 0 else None
        _draw_pr(fig.add_subplot(), pr_pts if multi else pr_pts[0], labels, ap, prevalence)
        tensorboard.figure(self.log_dir, f"{self.name}/pr_curve", fig, step=epoch, close_figure=False)
        for label, y, s, _ in curves:
            tag = f"{self.name}/pr" if label is None else f"{self.name}/pr_{label}"
            tensorboard.pr_curve(self.log_dir, tag, y, s, step=epoch)
