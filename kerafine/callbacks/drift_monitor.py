"""Drift alerts during ``fit``: is the fresh data still like the training data?

:class:`DriftMonitor` compares ``current_data`` (fresh or validation data) with
a reference (usually the training data) at the end of every
``every_n_epochs``-th epoch, on the raw inputs, on the embedding of a named
layer (typically the backbone's output), or on the model's outputs, using
:class:`kerafine.drift.DriftDetector`. Model outputs and embeddings are read
through :mod:`kerafine.callbacks.predictions`, so a model pass over the same
data is shared with ``AUCTracker`` and other callbacks in the same epoch.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from kerafine import _warn
from kerafine.callbacks.state import _AlertHistoryCallback
from kerafine.errors import DataError, invalid_argument

__all__ = ["DriftMonitor"]

_ON = ("inputs", "embeddings", "outputs")
# Beyond this many features (an embedding of 1,280 dims) only the most shifted
# get per-feature TensorBoard scalars, so the event file stays readable.
_MAX_SCALAR_FEATURES = 100
_TOP_LOGGED = 20


def _tag(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/]", "_", str(name))


def _inputs_only(data):
    """``x`` of ``(x, y[, w])`` tuples; the data itself otherwise."""
    if isinstance(data, tuple) and 1 <= len(data) <= 3:
        return data[0]
    return data


def _as_features(arr, prefix: str):
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim > 2:
        # Feature maps (n, h, w, c) or sequences (n, t, c): one value per channel.
        arr = arr.mean(axis=tuple(range(1, arr.ndim - 1)))
    return arr, [f"{prefix}{i}" for i in range(arr.shape[1])]


class DriftMonitor(_AlertHistoryCallback):
    """Check for distribution shift at epoch end and raise an alert.

    Every check writes ``drift_share`` (share of drifted features) and
    ``drift_detected`` (1.0 or 0.0) into the epoch's ``logs`` (so ``History``,
    ``CSVLogger`` and a following ``EarlyStopping`` see them). When drift is
    detected it warns with a :class:`kerafine.drift.DriftWarning` naming the
    most shifted features, then calls the handler or stops training as
    ``on_drift`` asks. With ``log_dir`` it writes to TensorBoard (under
    ``<log_dir>/kerafine``, step = epoch): ``drift/share`` (the share of
    drifted features; the verdict is share above the detector's threshold),
    ``drift/largest_effect`` (the largest effect size of any feature),
    per-feature ``drift/effect/<feature>`` and ``drift/p_value/<feature>``
    scalars for inputs and outputs (all features up to 100, else the 20 most
    shifted), the alert as text (``drift/alert``, only when drift is detected)
    and reference vs current histograms of the drifted continuous features
    (``drift/<feature>/reference`` and ``.../current``). Embedding dimensions
    (``emb0``, ``emb1``, ...) are anonymous: only the summary is written
    unless ``per_dimension=True``. The 0/1 verdict is not a TensorBoard
    scalar (smoothing would draw it as fractions): it is ``drift_detected``
    in the logs, and the ``drift/alert`` text in TensorBoard.

    With ``on="embeddings"`` or ``"outputs"`` the reference data is passed
    through the model again at each check: embeddings move as the weights
    train, and comparing today's embedding of the current data with the
    epoch-0 embedding of the reference would report the training itself as
    drift. Keep the reference to a few thousand rows for that reason.

    Current rows holding NaN or inf (in the inputs, or in the outputs of a
    model whose weights went NaN) are left out of the statistics, never
    silently: every check that meets them warns with a ``DriftWarning``
    naming the count and the first rows, and the history entry records it.

    Args:
        reference: the reference data. For ``on="inputs"``: a DataFrame, an
            array ``(n_samples, n_features)``, an ``(x, y)`` tuple (``x`` is
            used) or a :class:`kerafine.drift.ReferenceProfile`. For
            embeddings/outputs: anything ``model.predict`` takes (arrays,
            ``(x, y)``, a ``tf.data.Dataset``...).
        current_data: the data to check, in the same form as ``reference``
            (not a profile).
        on: ``"inputs"``, ``"embeddings"`` (the output of ``layer``) or
            ``"outputs"`` (the model's predictions). Defaults to ``"inputs"``.
        layer: name of the layer whose output is the embedding; required
            with ``on="embeddings"`` only. Feature maps and sequences are
            averaged to one value per channel. Defaults to ``None``.
        every_n_epochs: check at the end of every n-th epoch. Defaults to 1.
        on_drift: ``"warn"`` (warn only), ``"stop"`` (warn and stop
            training) or a callable taking the
            :class:`kerafine.drift.DriftReport` (called after the warning;
            for a webhook, a pager, a file). Defaults to ``"warn"``.
        log_dir: TensorBoard run directory, the same as Keras's
            ``TensorBoard(log_dir)``. Defaults to ``None`` (no events).
        categorical: categorical input columns (``on="inputs"`` with raw data).
            Defaults to ``None``.
        p_value: significance level of the detector. Defaults to 0.05.
        correction: ``"bonferroni"`` or ``"fdr"``. Defaults to ``"bonferroni"``.
        min_effect: the detector's effect-size floor. Defaults to 0.05.
        batch_size: prediction batch size for array data. Defaults to 256.
        steps: batches to draw from a dataset or generator. Defaults to ``None``.
        name: prefix of the logs keys (``"<name>_drift_share"``) and part of
            the state key, for several monitors in one ``fit``. Defaults to ``None``.
        reference_is_shard: ``True`` when ``reference`` holds only this
            worker's share of the reference rows, in a multi-worker job
            (``kerafine.distributed.multi_worker_strategy``; each worker passes
            its own rows, e.g. the shard its input pipeline reads). Every worker
            then profiles its shard (for embeddings/outputs: of its own forward
            pass, run on this worker alone), the profiles are exchanged through
            the strategy's collectives and merged with
            :meth:`kerafine.drift.ReferenceProfile.merge`, and every worker
            checks ``current_data`` against the same merged profile, so all
            decide alike. ``current_data`` must be the same on every worker,
            and a check is then a collective operation: every worker must run
            it (``fit`` does; a :meth:`check` called on one worker alone waits
            for the others). Outside a multi-worker cluster the shard is the
            whole reference.
            Defaults to ``False`` (``reference`` is the whole reference on
            every worker).
        per_dimension: with ``on="embeddings"``, also write one
            ``drift/effect/emb<i>`` and ``drift/p_value/emb<i>`` scalar per
            embedding dimension to TensorBoard (up to 100 dimensions, else the
            20 most shifted). Defaults to ``False`` (``drift/share`` and
            ``drift/largest_effect`` only).

    Raises:
        KerafineError: for a bad argument (before ``fit`` starts), including
            current inputs whose columns differ from the reference's.

    Example:

    >>> import numpy as np, keras
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(256, 4)).astype("float32"), rng.integers(0, 2, 256)
    >>> shifted = x[:128] + np.array([0, 0, 0, 1.0], "float32")
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    >>> model.compile("sgd", "binary_crossentropy")
    >>> monitor = DriftMonitor(reference=x, current_data=shifted, on_drift=lambda report: None)
    >>> with warnings.catch_warnings(record=True):
    ...     history = model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])
    >>> history.history["drift_detected"], monitor.last_report.drifted_features
    ([1.0], ['f3'])
    """

    def __init__(
        self,
        reference,
        current_data,
        on: str = "inputs",
        layer: str | None = None,
        every_n_epochs: int = 1,
        on_drift: str | Callable[[Any], Any] = "warn",
        log_dir=None,
        categorical=None,
        p_value: float = 0.05,
        correction: str = "bonferroni",
        min_effect: float = 0.05,
        batch_size: int = 256,
        steps: int | None = None,
        name: str | None = None,
        reference_is_shard: bool = False,
        per_dimension: bool = False,
    ):
        super().__init__()
        from kerafine.drift import DriftDetector, ReferenceProfile

        if on not in _ON:
            raise invalid_argument("on", on, '"inputs", "embeddings" or "outputs"')
        if on == "embeddings" and not (isinstance(layer, str) and layer):
            raise invalid_argument("layer", layer, 'the name of a layer of the model when on="embeddings"')
        if on != "embeddings" and layer is not None:
            raise invalid_argument("layer", layer, f'None when on="{on}" (a layer is only used with on="embeddings")')
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise invalid_argument("every_n_epochs", every_n_epochs, "a positive int")
        if not (on_drift in ("warn", "stop") or callable(on_drift)):
            raise invalid_argument("on_drift", on_drift, '"warn", "stop" or a callable taking a DriftReport')
        if name is not None and not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_.\-]+", name)):
            raise invalid_argument("name", name, "None or a non-empty identifier (letters, digits, _ . -)")
        if not isinstance(reference_is_shard, bool):
            raise invalid_argument("reference_is_shard", reference_is_shard, "True or False")
        if not isinstance(per_dimension, bool):
            raise invalid_argument("per_dimension", per_dimension, "True or False")
        if per_dimension and on != "embeddings":
            raise invalid_argument(
                "per_dimension",
                per_dimension,
                f'False when on="{on}" (it applies to on="embeddings" only)',
                hint="Inputs and outputs always get one scalar per feature.",
            )
        if log_dir is not None:
            from kerafine import _io

            _io.check_writable_directory(log_dir, "log_dir")
        self.reference = reference
        self.current_data = current_data
        self.on = on
        self.layer = layer
        self.every_n_epochs = every_n_epochs
        self.on_drift = on_drift
        self.log_dir = log_dir
        self.categorical = categorical
        self.p_value = p_value
        self.correction = correction
        self.min_effect = min_effect
        self.batch_size = batch_size
        self.steps = steps
        self.name = name
        self.reference_is_shard = reference_is_shard
        self.per_dimension = per_dimension
        self._detector_kwargs = {"p_value": p_value, "correction": correction, "min_effect": min_effect}
        if on == "inputs":
            if isinstance(current_data, ReferenceProfile):
                raise invalid_argument("current_data", "a ReferenceProfile", "data (a DataFrame, an array or (x, y))")
            if isinstance(reference, ReferenceProfile):
                self._detector = DriftDetector(reference, **self._detector_kwargs)
            else:
                self._detector = DriftDetector(
                    _inputs_only(reference), categorical=categorical, **self._detector_kwargs
                )
            # This worker's own detector; on_train_begin swaps in the merged one in a cluster.
            self._shard_detector = self._detector
            self._current_x = _inputs_only(current_data)
            # Fail before fit, not at the end of the first epoch.
            self._detector._align(self._current_x)
        else:
            from kerafine.callbacks import predictions

            if isinstance(reference, ReferenceProfile):
                raise invalid_argument(
                    "reference",
                    "a ReferenceProfile",
                    f'data the model can predict on when on="{on}"',
                    "A profile holds summaries of inputs, not data to embed.",
                )
            if categorical is not None:
                raise invalid_argument("categorical", categorical, f'None when on="{on}" (embeddings are continuous)')
            # Validates the data forms and batch_size/steps now.
            self._ref_data = predictions.EvalData(reference, batch_size=batch_size, steps=steps, argument="reference")
            self._cur_data = predictions.EvalData(
                current_data, batch_size=batch_size, steps=steps, argument="current_data"
            )
            DriftDetector(np.arange(16.0)[:, None], **self._detector_kwargs)  # validates the detector arguments
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self.last_report = None

    # ---------------------------------------------------------- state protocol
    @property
    def state_key(self) -> str:
        return f"DriftMonitor[{self.on}|{self.layer or ''}|{self.name or ''}]"

    # --------------------------------------------------------------- keras
    def on_train_begin(self, logs=None):
        self._restore_or_reset()
        if self.on == "inputs" and self.reference_is_shard:
            from kerafine.drift import DriftDetector

            merged = self._merged_profile(self._shard_detector.profile)
            self._detector = self._shard_detector if merged is None else DriftDetector(merged, **self._detector_kwargs)

    def _strategy(self):
        return getattr(self.model, "distribute_strategy", None)

    def _merged_profile(self, profile):
        """The merge of every worker's ``profile`` (ReferenceProfile.merge, in worker order);
        ``None`` outside a multi-worker cluster. Every worker must call it at the same point."""
        from kerafine.distributed._collectives import all_gather_bytes, num_workers_of
        from kerafine.drift import ReferenceProfile

        strategy = self._strategy()
        if num_workers_of(strategy) == 1:
            return None
        shards = [ReferenceProfile.from_bytes(b) for b in all_gather_bytes(profile.to_bytes(), strategy)]
        return ReferenceProfile.merge(shards)

    def _local_forward(self, data, layer):
        """Outputs of the watched model (or of ``layer``) on ``data``, computed on this worker
        alone (a distributed ``predict`` would mix the workers' different shards)."""
        from kerafine.callbacks import predictions

        target = self.watched_model if layer is None else predictions._layer_model(self.watched_model, layer)

        def fn(x, batch_size=None):
            if batch_size is None:
                return keras.ops.convert_to_numpy(target(x, training=False))
            n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
            parts = []
            for start in range(0, n, batch_size):
                if isinstance(x, dict):
                    xb = {k: np.asarray(v[start : start + batch_size]) for k, v in x.items()}
                else:
                    xb = np.asarray(x[start : start + batch_size])
                parts.append(keras.ops.convert_to_numpy(target(xb, training=False)))
            return np.concatenate(parts, axis=0)

        return data.run(fn).y_pred

    def on_train_end(self, logs=None):
        if self.log_dir is not None:
            from kerafine import tensorboard

            tensorboard.flush(self.log_dir)  # also writes the run's layout if it is due

    def _key(self, key: str) -> str:
        return f"{self.name}_{key}" if self.name else key

    def _features(self, epoch: int):
        """(reference features, current features, names) for embeddings/outputs."""

        layer = self.layer if self.on == "embeddings" else None
        cache = self.context.predictions
        if self.reference_is_shard and self._sharded():
            ref = self._local_forward(self._ref_data, layer)
        else:
            ref = cache.predict(self.watched_model, self._ref_data, layer=layer).y_pred
        cur = cache.predict(self.watched_model, self._cur_data, layer=layer).y_pred
        prefix = "emb" if self.on == "embeddings" else "out"
        ref, names = _as_features(ref, prefix)
        cur, _ = _as_features(cur, prefix)
        return ref, cur, names

    def check(self, epoch: int = 0):
        """Run one check now (also usable outside ``fit``); returns the ``DriftReport``."""
        from kerafine.drift import DriftDetector

        if self.on == "inputs":
            report = self._detector.check(self._current_x)
            self._values = None
        else:
            if self.model is None:
                raise DataError("DriftMonitor.check needs a model: call it from fit or after set_model(model).")
            ref, cur, names = self._features(epoch)
            with warnings.catch_warnings():
                # A dead ReLU unit gives a constant embedding dimension: normal, and
                # the report's note for that feature already says so.
                warnings.filterwarnings("ignore", message=r"Feature\(s\) .* are constant in the reference")
                detector = DriftDetector(ref, feature_names=names, **self._detector_kwargs)
                if self.reference_is_shard and self._sharded():
                    merged = self._merged_profile(detector.profile)
                    detector = DriftDetector(merged, **self._detector_kwargs)
                    # Histograms show the merged sample (rows of every worker's shard).
                    ref = np.asarray(merged.sample)
            report = detector.check(cur)
            self._values = (ref, cur, names)
        return report

    def _sharded(self) -> bool:
        from kerafine.distributed._collectives import num_workers_of

        return self.model is not None and num_workers_of(self._strategy()) > 1

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        report = self.check(epoch)
        self.last_report = report
        self._write_logs(
            logs,
            {self._key("drift_share"): float(report.drift_share), self._key("drift_detected"): float(report.is_drift)},
        )
        self.history.append(
            {
                "epoch": int(epoch),
                "drift_share": float(report.drift_share),
                "is_drift": bool(report.is_drift),
                "drifted": report.drifted_features[:_TOP_LOGGED],
                "nonfinite_current_rows": int(report.nonfinite_current_rows),
            }
        )
        if self.log_dir is not None:
            self._write_tensorboard(report, epoch)
        if report.nonfinite_current_rows:
            # Never silent: NaN/inf are left out of the statistics, and said here.
            warnings.warn(
                f"DriftMonitor[{self.on}] at epoch {epoch + 1}: {report.nonfinite_current_rows} of "
                f"{report.n_current_rows} current rows of the {self.on} hold NaN or inf (first rows "
                f"{list(report.nonfinite_first_rows)}); they are left out of the drift statistics (counted as "
                "missing). Check the data (np.isfinite) and, for outputs/embeddings, the weights (TrainingMonitor).",
                _drift_warning(),
                stacklevel=2,
            )
        if not report.is_drift:
            return
        self.n_alerts += 1
        _warn.warn(f"DriftMonitor[{self.on}] at epoch {epoch + 1}: {report.summary(k=5)}", _drift_warning(), hook=True)
        if callable(self.on_drift):
            self.on_drift(report)
        elif self.on_drift == "stop":
            self.model.stop_training = True

    def _write_tensorboard(self, report, epoch: int) -> None:
        from kerafine import tensorboard

        effects = [f.effect for f in report.features if math.isfinite(f.effect)]
        values = {"drift/share": report.drift_share, "drift/largest_effect": max(effects, default=float("nan"))}
        feats = report.features
        if self.on == "embeddings" and not self.per_dimension:
            feats = []
        elif len(feats) > _MAX_SCALAR_FEATURES:
            feats = report.top(_TOP_LOGGED)
        for f in feats:
            values[f"drift/effect/{_tag(f.name)}"] = f.effect if math.isfinite(f.effect) else float("nan")
            values[f"drift/p_value/{_tag(f.name)}"] = f.p_value_adjusted
        tensorboard.scalars(self.log_dir, values, step=epoch)
        if not report.is_drift:
            return
        tensorboard.text(self.log_dir, "drift/alert", report.summary(k=10), step=epoch)
        for f in report.top(5):
            if not f.drifted or f.kind != "continuous":
                continue
            ref_vals, cur_vals = self._histogram_values(f.name)
            if ref_vals is None:
                continue
            tensorboard.histogram(self.log_dir, f"drift/{_tag(f.name)}/reference", ref_vals, step=epoch)
            tensorboard.histogram(self.log_dir, f"drift/{_tag(f.name)}/current", cur_vals, step=epoch)

    def _histogram_values(self, name: str):
        if self.on != "inputs":
            ref, cur, names = self._values
            j = names.index(name)
            return ref[:, j], cur[:, j]
        prof = self._detector.profile
        ref = prof.continuous_summary(name)["sorted_sample"]
        cur = self._detector._align(self._current_x).numeric([name], "current_data")[0]
        return ref, cur


def _drift_warning():
    from kerafine.drift import DriftWarning

    return DriftWarning
