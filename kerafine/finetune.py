"""Two-phase fine-tuning with frozen-feature caching.

:func:`fine_tune` runs the recipe of the Keras transfer-learning guide on a
transfer model (see :mod:`kerafine.transfer`):

1. **head phase**: the backbone is frozen, the head trains at ``head_lr``;
2. **fine-tuning phase**: the top ``unfreeze_top`` backbone layers are
   unfrozen (BatchNormalization stays frozen and in inference mode), the model
   is recompiled at the lower ``finetune_lr`` and training continues the epoch
   count (``initial_epoch=head_epochs``), so callbacks and TensorBoard see one
   run.

**Frozen-feature caching.** While the backbone is frozen and runs in
inference mode, its output for a given input never changes, so running it
every epoch of the head phase is wasted work. With ``cache_features="auto"``
(the default) phase 1 computes the backbone's features once (batched,
``training=False``, with a progress bar when it takes more than a moment),
fits a head-only model ``features -> outputs`` built from the model's own
head layers, and the full model therefore holds the trained head weights
afterwards. Validation data is featurised once too. The result equals the
slow path (fitting the full model) to float tolerance: see the tests.

"auto" caches when the inputs are arrays or a ``tf.data.Dataset`` and the
backbone's forward pass in ``fit`` equals its inference pass (it runs with
``training=False``, or it holds no Dropout, noise, random-augmentation or
unknown custom layers). Augmentation done in a ``tf.data`` map *before* the
model cannot be detected: pass ``cache_features=False`` when your dataset
augments (cached features would freeze one augmented draw), or
``cache_features=True`` to force caching.

**Callbacks during the cached head phase.** ``fit`` then runs on the head-only
model, but kerafine points every callback you pass at the *full* model
(``self.model``), compiled with the very optimizer that is training: learning
rate changes (``ReduceLROnPlateau``, schedules), ``self.model.stop_training``
(``EarlyStopping``, ``TerminateOnNaN``), saving (``ModelCheckpoint`` saves the
full model with the current head weights) and ``get_weights``/``set_weights``
(``restore_best_weights``) behave as without caching. Limitations: a callback
that predicts on raw inputs through ``self.model`` (an AUC tracker on raw
validation data) runs the backbone each epoch, as the slow path would; batch
hooks see batches of features rather than raw inputs; and anything tied to the
model object ``fit`` is stepping (``self.model.train_function``, profiling,
TensorBoard's graph) refers to the full model, which is not the one running.
kerafine's own callbacks are told explicitly (through their fit context) which
model trains and which they watch: ``CheckpointRestart`` checkpoints and
resumes the cached head phase (the head's variables and the optimizer are
shared by both models) and keeps the features on disk beside its checkpoints
(``<directory>/features-<key>``, checksummed), so a resumed run loads them
instead of running the backbone again; the run looks like one run to every
callback. Keras's ``BackupAndRestore``, which resumes the model it is pointed
at, turns "auto" caching off.

Example:

>>> import numpy as np, keras, kerafine
>>> keras.utils.set_random_seed(0)
>>> inputs = keras.Input((4,))
>>> backbone = keras.Model(inputs, keras.layers.Dense(8, activation="relu")(inputs), name="enc")
>>> head = keras.Sequential([keras.layers.Dense(1, activation="sigmoid", name="predictions")], name="head")
>>> model = kerafine.build_transfer_model(backbone, head)
>>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
>>> y = (x[:, 0] > 0).astype("float32")
>>> result = fine_tune(model, (x, y), head_epochs=2, finetune_epochs=0, verbose=0)
>>> result.features_cached, result.epochs, sorted(result.history)
(True, 2, ['loss'])
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from typing import Any, Optional

import numpy as np

from kerafine import _batches, _finite, _health, _keras_compat, transfer
from kerafine._batches import n_rows as _n_rows
from kerafine._display import displayable, fmt, human_duration
from kerafine.callbacks import _context
from kerafine.errors import DataError, KerafineError, check_choice, invalid_argument

__all__ = ["fine_tune", "FineTuneResult"]

logger = logging.getLogger(__name__)

_VERBOSE = ("auto", 0, 1, 2)


@displayable
@dataclasses.dataclass(frozen=True)
class FineTuneResult:
    """What :func:`fine_tune` did.

    Attributes:
        head_history: the ``keras.callbacks.History`` of phase 1, or ``None``
            when ``head_epochs=0``.
        finetune_history: the ``History`` of phase 2, or ``None`` when
            ``finetune_epochs=0``. Its epochs continue after phase 1's.
        head_lr: the learning rate (float or schedule) phase 1 used; the
            suggestion of ``lr_find`` when ``head_lr="find"``.
        finetune_lr: the same for phase 2.
        unfreeze_top: the ``unfreeze_top`` of phase 2, as given.
        features_cached: whether phase 1 trained on cached backbone features.
        cache_reason: why features were or were not cached.
        feature_seconds: time spent computing the cached features (0 if none).
        head_seconds: time spent in phase 1's ``fit``.
        finetune_seconds: time spent in phase 2's ``fit``.
        features_loaded: whether the cached features were read from a
            ``CheckpointRestart`` directory (a resumed run) instead of computed.
        lr_found: ``{"head": (lr, rule), "finetune": (lr, rule)}`` for the
            phases whose learning rate ``lr_find`` chose.
        problems: the dead-model alarms raised (each also a
            ``TrainingProblemWarning``), as
            :class:`~kerafine.callbacks.training_monitor.TrainingProblem`
            records: ``"constant_features"`` (found on a probe batch before
            phase 1, ``epoch`` 0) and ``"one_class_predictions"`` (found on the
            validation data after the last phase, ``epoch`` the last one).
        class_weight: the ``{class: weight}`` both phases used (``"balanced"``
            resolved), or ``None``.
    """

    head_history: Any
    finetune_history: Any
    head_lr: Any
    finetune_lr: Any
    unfreeze_top: Any
    features_cached: bool
    cache_reason: str
    feature_seconds: float
    head_seconds: float
    finetune_seconds: float
    lr_found: dict = dataclasses.field(default_factory=dict)
    features_loaded: bool = False
    problems: tuple = ()
    class_weight: Optional[dict] = None

    def _display(self):
        rows = []
        for phase, lr, history, seconds in (
            ("head", self.head_lr, self.head_history, self.head_seconds),
            ("finetune", self.finetune_lr, self.finetune_history, self.finetune_seconds),
        ):
            if history is None:
                continue
            h = history.history
            last = {k: v[-1] for k, v in h.items() if v and k in ("loss", "val_loss", "val_auc")}
            found = " (lr_find)" if phase in self.lr_found else ""
            figures = "  ".join(f"{k} {fmt(float(v))}" for k, v in last.items())
            rows.append(
                (
                    phase,
                    f"{len(history.epoch)} epochs at lr {fmt(lr)}{found} in "
                    f"{human_duration(seconds)}" + (f"; last {figures}" if figures else ""),
                )
            )
        rows.append(("unfreeze_top", str(self.unfreeze_top)))
        rows.append(("features cached", ("yes" if self.features_cached else "no") + f" ({self.cache_reason})"))
        return "FineTuneResult", rows

    @property
    def history(self) -> dict[str, list[float]]:
        """Both phases' logs joined per key, one value per epoch (``nan`` where a phase lacks a key)."""
        phases = [h.history for h in (self.head_history, self.finetune_history) if h is not None]
        lengths = [len(next(iter(p.values()))) if p else 0 for p in phases]
        keys = sorted({k for p in phases for k in p})
        return {k: [float(v) for p, n in zip(phases, lengths) for v in p.get(k, [math.nan] * n)] for k in keys}

    @property
    def epochs(self) -> int:
        """Number of epochs run in the two phases together."""
        return sum(len(h.epoch) for h in (self.head_history, self.finetune_history) if h is not None)

    @property
    def total_seconds(self) -> float:
        """Feature caching plus both phases."""
        return self.feature_seconds + self.head_seconds + self.finetune_seconds

    def to_dict(self) -> dict:
        """A JSON-able summary (histories as lists, learning rates as floats or their config)."""

        def lr(value):
            if isinstance(value, (int, float)):
                return float(value)
            return None if value is None else {"class_name": type(value).__name__, "config": value.get_config()}

        return {
            "history": self.history,
            "epochs": self.epochs,
            "head_lr": lr(self.head_lr),
            "finetune_lr": lr(self.finetune_lr),
            "unfreeze_top": self.unfreeze_top,
            "features_cached": self.features_cached,
            "cache_reason": self.cache_reason,
            "feature_seconds": self.feature_seconds,
            "head_seconds": self.head_seconds,
            "finetune_seconds": self.finetune_seconds,
            "lr_found": {k: [float(v[0]), v[1]] for k, v in self.lr_found.items()},
            "problems": [p.to_dict() for p in self.problems],
            "class_weight": None if self.class_weight is None else {str(k): v for k, v in self.class_weight.items()},
        }


# ---------------------------------------------------------------------------
# data


@dataclasses.dataclass
class _Data:
    """Arrays ``(x, y, w)`` or a dataset, with what fine_tune needs to know of them."""

    x: Any = None
    y: Any = None
    w: Any = None
    dataset: Any = None

    @property
    def is_dataset(self) -> bool:
        return self.dataset is not None

    def fit_kwargs(self, batch_size: int) -> dict:
        if self.is_dataset:
            return {"x": self.dataset}
        return {"x": self.x, "y": self.y, "sample_weight": self.w, "batch_size": batch_size}

    def as_validation(self):
        if self.is_dataset:
            return self.dataset
        return (self.x, self.y) if self.w is None else (self.x, self.y, self.w)

    def label_shape(self) -> tuple:
        if self.is_dataset:
            return tuple(self.dataset.element_spec[1].shape)
        return tuple(np.shape(self.y))


def _is_array(x) -> bool:
    if isinstance(x, dict):
        return bool(x) and all(_is_array(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return bool(x) and all(_is_array(v) for v in x)
    return hasattr(x, "__array__") and hasattr(x, "shape")


def _check_data(data, argument: str, required: bool = True) -> Optional[_Data]:
    import tensorflow as tf

    expected = "(x, y) or (x, y, sample_weight) arrays (x may be a dict of arrays), or a finite tf.data.Dataset"
    if data is None:
        if required:
            raise invalid_argument(argument, data, expected, error=DataError)
        return None
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not isinstance(spec, tuple) or len(spec) not in (2, 3):
            raise invalid_argument(
                argument,
                data,
                "a tf.data.Dataset yielding (x, y) or (x, y, sample_weight) batches",
                hint="Batch it and map it to (inputs, labels).",
                error=DataError,
            )
        if int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise invalid_argument(
                argument,
                data,
                "a finite dataset (fine_tune runs whole epochs)",
                hint="Remove .repeat() from the pipeline.",
                error=DataError,
            )
        if int(data.cardinality()) == 0:
            raise invalid_argument(argument, data, "a dataset with at least one batch", error=DataError)
        if len(spec[1].shape) == 0:
            raise invalid_argument(argument, data, "batched data (call .batch(n) on the dataset)", error=DataError)
        return _Data(dataset=data)
    if not isinstance(data, tuple) or len(data) not in (2, 3) or not _is_array(data[0]):
        raise invalid_argument(argument, data, expected, error=DataError)
    x, y = data[0], data[1]
    w = data[2] if len(data) == 3 else None
    if y is None or not _is_array(y):
        raise invalid_argument(argument, data, expected, hint="The labels y are missing.", error=DataError)
    n = _n_rows(x)
    if n == 0:
        raise DataError(f"Invalid value for argument `{argument}`: it has 0 rows; pass at least one sample.")
    if isinstance(x, dict):
        sizes = {k: len(v) for k, v in x.items()}
        if len(set(sizes.values())) > 1:
            raise DataError(
                f"Invalid value for argument `{argument}`: its input columns have different lengths {sizes}."
            )
    for name, arr in (("labels", y), ("sample weights", w)):
        if arr is not None and len(arr) != n:
            raise DataError(
                f"Invalid value for argument `{argument}`: the inputs have {n} rows but the {name} have "
                f"{len(arr)}; they must have the same length."
            )
    return _Data(x=x, y=np.asarray(y), w=None if w is None else np.asarray(w))


def _finite_rows(data: Optional[_Data], argument: str, non_finite: str, nan_ok: tuple = ()) -> Optional[_Data]:
    """``data`` without rows holding NaN/inf (``non_finite="drop"``), or a DataError naming them."""
    if data is None or data.is_dataset:
        return data
    parts = {"inputs": data.x, "labels": data.y, "sample weights": data.w}
    if non_finite == "raise":
        _finite.check(
            argument,
            parts,
            nan_ok=nan_ok,
            hint="Training on them would poison the weights (one NaN gradient spreads to every weight). "
            'Clean the data (np.isfinite; tables: tabular_encoder(impute="median")) or pass non_finite="drop" to train without '
            "these rows.",
        )
        return data
    found = _finite.scan(parts, nan_ok)
    if not found.count:
        return data
    if found.count == found.n_rows:
        raise DataError(
            f"Invalid value for argument `{argument}`: {_finite.describe(found)}; "
            'non_finite="drop" would leave no row to train on. Clean the data.'
        )
    warnings.warn(
        f'fine_tune(non_finite="drop"): dropped the rows of `{argument}` holding NaN or inf: '
        f"{_finite.describe(found)}.",
        UserWarning,
        stacklevel=3,
    )
    keep = ~found.mask
    return _Data(x=_finite.take(data.x, keep), y=data.y[keep], w=None if data.w is None else data.w[keep])


# ---------------------------------------------------------------------------
# argument checks


def _check_epochs(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise invalid_argument(name, value, "an int >= 0")
    return int(value)


def _check_lr(name: str, value):
    import keras

    if isinstance(value, str) and value == "find":
        return value
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return value
    if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
        if math.isfinite(float(value)) and float(value) > 0:
            return float(value)
    raise invalid_argument(
        name, value, 'a positive finite float, a keras.optimizers.schedules.LearningRateSchedule or "find"'
    )


def _check_optimizer(optimizer):
    import keras

    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        try:
            return keras.optimizers.get(optimizer)
        except ValueError:
            pass
    raise invalid_argument(
        "optimizer", optimizer, 'the name of a Keras optimizer (e.g. "adam", "sgd") or a keras.optimizers.Optimizer'
    )


def _make_optimizer(template, learning_rate):
    # A fresh optimizer per phase: phase 2 must not inherit phase 1's moments or step count.
    config = template.get_config()
    config["learning_rate"] = learning_rate
    return type(template).from_config(config)


def _clone_metrics(metrics):
    """Fresh metric objects, so two compiled models never share metric state."""
    import keras

    if metrics is None:
        return None
    if isinstance(metrics, (list, tuple)):
        return [m.__class__.from_config(m.get_config()) if isinstance(m, keras.metrics.Metric) else m for m in metrics]
    return metrics


def _predictions_layer(model, backbone):
    inside = {id(l) for l in transfer._all_sublayers(backbone)}
    for layer in _keras_compat.flatten_layers(model, include_self=False, recursive=True):
        if layer.name == "predictions" and id(layer) not in inside:
            return layer
    return None


def _infer_loss(model, backbone, data: _Data) -> str:
    layer = _predictions_layer(model, backbone)
    if layer is None or not hasattr(layer, "activation"):
        raise invalid_argument(
            "loss",
            None,
            'a Keras loss (a name such as "binary_crossentropy", or a keras.losses.Loss): it cannot be inferred '
            'because the model has no Dense layer named "predictions"',
            hint="kerafine.heads name their output layer so; otherwise pass `loss=` explicitly.",
        )
    activation = getattr(layer.activation, "__name__", str(layer.activation))
    units = getattr(layer, "units", None)
    if activation == "sigmoid":
        return "binary_crossentropy"
    if activation == "linear":
        return "mean_squared_error"
    if activation == "softmax":
        shape = data.label_shape()
        if len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1):
            return "sparse_categorical_crossentropy"
        if len(shape) == 2 and shape[-1] == units:
            return "categorical_crossentropy"
        raise invalid_argument(
            "loss",
            None,
            f"a Keras loss: labels of shape {shape} fit neither sparse (n,) nor one-hot (n, {units}) labels "
            'of the softmax "predictions" layer',
        )
    raise invalid_argument(
        "loss",
        None,
        f'a Keras loss: the "predictions" layer\'s activation {activation!r} has no default loss '
        "(sigmoid, softmax and linear do)",
    )


# ---------------------------------------------------------------------------
# caching


_DROPOUT_LIKE = (
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianDropout",
    "GaussianNoise",
    "AlphaDropout",
)


def _training_dependent_layers(backbone) -> list[str]:
    """Backbone layers whose output depends on ``training`` (so cached features may differ from fit's)."""
    import keras

    found = []
    for layer in transfer._all_sublayers(backbone)[1:]:
        cls = type(layer)
        if isinstance(layer, keras.layers.BatchNormalization):
            if layer.trainable:
                found.append(layer.name)
        elif cls.__name__ in _DROPOUT_LIKE:
            if float(getattr(layer, "rate", getattr(layer, "stddev", 1.0)) or 0.0) > 0:
                found.append(layer.name)
        elif hasattr(layer, "recurrent_dropout") and hasattr(layer, "dropout"):
            if float(layer.dropout or 0) > 0 or float(layer.recurrent_dropout or 0) > 0:
                found.append(layer.name)
        elif cls.__name__.startswith("Random") and cls.__module__.startswith("keras"):
            found.append(layer.name)
        elif not cls.__module__.startswith("keras") and not isinstance(layer, keras.Model):
            # A custom layer: it may behave differently in training, kerafine cannot tell.
            found.append(layer.name)
    return found


def _head_model(model, backbone):
    """A model from the backbone's features to ``model``'s outputs, sharing ``model``'s head layers."""
    import keras

    # Built anew by each fine_tune call (no process-wide cache): a build is cheap, and
    # within one call the same head model serves the whole head phase.
    features = transfer._feature_tensors(model, backbone)
    if not features or len(features) != 1:
        return None, "the backbone is called more than once or has several outputs"
    try:
        head_model = keras.Model(features[0], model.outputs, name=f"{model.name}_head_only")
    except Exception as exc:  # noqa: BLE001 - any graph error means "not separable"
        return None, f"the layers after the backbone do not depend on its features alone ({exc})"
    return head_model, ""


def _cache_decision(model, backbone, cache_features, head_epochs: int, callbacks=()):
    """``(head_model or None, reason)``."""
    if cache_features is False:
        return None, "cache_features=False"
    if head_epochs == 0:
        return None, "no head epochs"
    import keras

    # Keras's BackupAndRestore resumes the model it is pointed at (the full model), not
    # the head-only model fit steps. kerafine's CheckpointRestart is told which is which.
    resuming = [type(cb).__name__ for cb in callbacks if isinstance(cb, keras.callbacks.BackupAndRestore)]
    if resuming and cache_features == "auto":
        return None, f"callback {resuming[0]} resumes the model fit is running, which must be the full model"
    head_model, why = _head_model(model, backbone)
    if head_model is None:
        if cache_features is True:
            raise KerafineError(f"Invalid value for argument `cache_features`: received True, but {why}.")
        return None, why
    if not transfer._runs_in_inference(model, backbone):
        dependent = _training_dependent_layers(backbone)
        if dependent and cache_features == "auto":
            return None, (
                f"the backbone is not called with training=False and its layers {transfer._short_list(dependent)} "
                "behave differently in training"
            )
    return head_model, "frozen backbone: features computed once" + (
        " (forced by cache_features=True)" if cache_features is True else ""
    )


def _featurise(backbone, data: _Data, batch_size: int, progress: bool, what: str):
    """Backbone outputs (``training=False``) over ``data``: ``(features, y, w, batch_size)``."""
    from tqdm.auto import tqdm

    feats, ys, ws = [], [], []
    if data.is_dataset:
        total = int(data.dataset.cardinality())
        bar = tqdm(
            total=total if total > 0 else None,
            unit="batch",
            desc=f"features ({what})",
            delay=1.0,
            disable=None if progress else True,
            leave=False,
        )
        seen_batch = None
        for batch in _batches.iterate(data.dataset):
            xb, yb, wb = _batches.split_batch(batch)
            feats.append(np.asarray(backbone.predict_on_batch(xb)))
            ys.append(np.asarray(yb))
            if wb is not None:
                ws.append(np.asarray(wb))
            seen_batch = seen_batch or len(ys[-1])
            bar.update(1)
        bar.close()
        return np.concatenate(feats), np.concatenate(ys), (np.concatenate(ws) if ws else None), seen_batch
    import keras

    n_batches = -(-_n_rows(data.x) // batch_size)
    # disable=None: no bar when stderr is not a terminal (logs, CI, pytest); verbose=0 hides it everywhere.
    bar = tqdm(
        total=n_batches,
        unit="batch",
        desc=f"features ({what})",
        delay=1.0,
        disable=None if progress else True,
        leave=False,
    )

    class _Progress(keras.callbacks.Callback):
        def on_predict_batch_end(self, batch, logs=None):
            bar.update(1)

    # Keras's own predict loop (prefetching, compiled step): as fast as a plain backbone.predict.
    features = backbone.predict(data.x, batch_size=batch_size, verbose=0, callbacks=[_Progress()] if progress else None)
    bar.close()
    return np.asarray(features), data.y, data.w, batch_size


def _cached_features(backbone, train: _Data, val: Optional[_Data], batch_size: int, progress: bool, callbacks):
    """``({"f_train", "y_train", "w_train", "bs", "f_val", ...}, loaded)``.

    With a ``CheckpointRestart`` among the callbacks and array data, the
    features live on disk beside its checkpoints (:mod:`kerafine._feature_cache`)
    and a resumed run loads them instead of running the backbone again.
    """
    from kerafine import _feature_cache
    from kerafine.callbacks.checkpoint_restart import CheckpointRestart
    from kerafine.tensorboard import is_chief

    def compute():
        f_train, y_train, w_train, bs = _featurise(backbone, train, batch_size, progress, "train_data")
        out = {"f_train": f_train, "y_train": y_train, "w_train": w_train, "bs": np.int64(bs)}
        if val is not None:
            f_val, y_val, w_val, _ = _featurise(backbone, val, batch_size, progress, "validation_data")
            out.update(f_val=f_val, y_val=y_val, w_val=w_val)
        return {k: v for k, v in out.items() if v is not None}

    checkpointers = [cb for cb in callbacks if isinstance(cb, CheckpointRestart)]
    arrays_only = not train.is_dataset and (val is None or not val.is_dataset)
    if not checkpointers or not arrays_only:
        return compute(), False
    data_key = _feature_cache.data_digest(
        train.x,
        train.y,
        train.w,
        None if val is None else val.x,
        None if val is None else val.y,
        None if val is None else val.w,
    )
    key = _feature_cache.features_key(backbone, data_key, batch_size)
    return _feature_cache.load_or_compute(checkpointers[0].directory, key, compute, chief=is_chief())


# ---------------------------------------------------------------------------
# callbacks during the cached phase


def _keras_callback_base():
    import keras

    return keras.callbacks.Callback


def _retarget_callbacks(user_callbacks, full_model, head_model):
    """The callbacks to give ``head_model.fit`` so that ``user_callbacks`` see ``full_model``."""
    from kerafine import _keras_compat

    base = _keras_callback_base()

    class _Retarget(base):
        # First in the list: runs before the user's on_train_begin.
        def on_train_begin(self, logs=None):
            full_model.stop_training = False
            for cb in user_callbacks:
                cb.set_model(full_model)

    class _SyncStop(base):
        # Last in the list: forwards a stop requested on the full model to the model fit is running.
        def on_epoch_end(self, epoch, logs=None):
            if full_model.stop_training:
                head_model.stop_training = True

    class _SyncStopBatch(_SyncStop):
        def on_train_batch_end(self, batch, logs=None):
            if full_model.stop_training:
                head_model.stop_training = True

    batch_hooks = any(
        not _keras_compat.is_default_hook(cb.on_train_batch_end) or not _keras_compat.is_default_hook(cb.on_batch_end)
        for cb in user_callbacks
    )
    return [_Retarget()] + list(user_callbacks) + [(_SyncStopBatch if batch_hooks else _SyncStop)()]


# ---------------------------------------------------------------------------
# learning-rate finder


def _n_batches(data: _Data, batch_size: int) -> Optional[int]:
    if data.is_dataset:
        n = int(data.dataset.cardinality())
        return n if n > 0 else None
    return -(-_n_rows(data.x) // batch_size)


_LR_FIND_MIN_STEPS = 10


def _lr_find(phase_model, data: _Data, batch_size: int) -> tuple[float, str]:
    from kerafine.lr_finder import lr_find

    n = _n_batches(data, batch_size)
    num_steps = 100 if n is None else max(_LR_FIND_MIN_STEPS, min(100, n))
    train = data.dataset if data.is_dataset else ((data.x, data.y) if data.w is None else (data.x, data.y, data.w))
    result = lr_find(phase_model, train, num_steps=num_steps, batch_size=batch_size)
    return float(result.suggestion), str(result.rule)


def _say(verbose, message: str) -> None:
    logger.info(message)
    if verbose not in (0, None):
        print(f"kerafine.fine_tune: {message}")


# ---------------------------------------------------------------------------
# fine_tune


def _compile_phase(model, phase, lr, probe_lr, template, loss, metrics, train, batch_size, result, verbose):
    """Compile ``model`` for one phase at ``lr``, first resolving ``lr="find"`` with :func:`lr_find`.

    ``probe_lr`` is only the rate the model is compiled with while ``lr_find``
    runs on its copy; the found rate is recorded in ``result["lr_found"][phase]``.
    """
    if lr == "find":
        model.compile(optimizer=_make_optimizer(template, probe_lr), loss=loss, metrics=_clone_metrics(metrics))
        lr, rule = _lr_find(model, train, batch_size)
        result["lr_found"][phase] = (lr, rule)
        _say(verbose, f'{phase}_lr="find": lr_find suggested {lr:.3g} (rule: {rule})')
    model.compile(optimizer=_make_optimizer(template, lr), loss=loss, metrics=_clone_metrics(metrics))
    return lr


def fine_tune(
    model,
    train_data,
    validation_data=None,
    head_epochs: int = 5,
    finetune_epochs: int = 5,
    head_lr=1e-3,
    finetune_lr=1e-5,
    unfreeze_top="all",
    callbacks=None,
    loss=None,
    metrics=None,
    optimizer="adam",
    batch_size: int = 32,
    cache_features="auto",
    verbose="auto",
    shuffle: bool = True,
    class_weight=None,
    non_finite: str = "raise",
) -> FineTuneResult:
    """Train a transfer model in two phases: the head on a frozen backbone, then the top of the backbone.

    Phase 1 freezes the whole backbone and trains for ``head_epochs`` at
    ``head_lr`` (on cached backbone features when possible, see the module
    docstring). Phase 2 unfreezes the top ``unfreeze_top`` backbone layers,
    recompiles at ``finetune_lr`` with a fresh optimizer and trains for
    ``finetune_epochs`` more, numbering epochs from ``head_epochs``.
    BatchNormalization layers of the backbone stay frozen and in inference
    mode in both phases (keras-team/keras#11590, #20285); a warning at the
    start says when the model as given would have updated their statistics.
    A backbone the model calls with ``training=False`` is kept in inference
    mode during ``fit`` (Keras 3.15 would otherwise override it).

    The model is left compiled (phase 2's optimizer, or phase 1's when
    ``finetune_epochs=0``) with the phase-2 freezing, ready for ``evaluate``.

    Args:
        model: a transfer model, from :func:`kerafine.build_transfer_model` or
            a functional model calling one pretrained model as a layer.
        train_data: ``(x, y)`` or ``(x, y, sample_weight)`` arrays (``x`` may
            be a dict of arrays for named inputs), or a finite, batched
            ``tf.data.Dataset`` of such tuples.
        validation_data: the same forms, or ``None``. Defaults to ``None``.
        head_epochs: epochs of phase 1, >= 0. Defaults to 5.
        finetune_epochs: epochs of phase 2, >= 0. Defaults to 5.
        head_lr: learning rate of phase 1: a float, a
            ``keras.optimizers.schedules.LearningRateSchedule``, or ``"find"``
            to run ``kerafine.lr_find`` first and use its suggestion (on the
            cached features when they apply). Defaults to ``1e-3``.
        finetune_lr: the same for phase 2. Defaults to ``1e-5``.
        unfreeze_top: backbone layers phase 2 trains: an int (the top ``n``
            layers), ``"all"``, or a layer name (the layers after it). See
            :func:`kerafine.unfreeze`. Defaults to ``"all"``.
        callbacks: Keras callbacks for both phases. Defaults to ``None``.
        loss: a Keras loss. Defaults to ``None``: inferred from the activation
            of the layer named ``"predictions"``: sigmoid -> binary
            cross-entropy, softmax -> sparse or categorical cross-entropy by the
            labels' shape, linear -> mean squared error.
        metrics: Keras metrics (names or objects; objects are copied per phase).
            Defaults to ``None``.
        optimizer: an optimizer name or instance, used as a template: each
            phase gets a fresh copy with its learning rate. Defaults to ``"adam"``.
        batch_size: batch size for arrays (training and feature extraction).
            Defaults to 32.
        cache_features: ``"auto"``, ``True`` (force) or ``False`` (never).
            Defaults to ``"auto"``.
        verbose: ``"auto"``, 0, 1 or 2. Anything but 0 prints one line per
            epoch of at most 120 characters (:class:`kerafine.callbacks.ConsoleProgress`;
            1 and ``"auto"`` also count batches in place on a terminal) instead of
            Keras's output; 0 prints nothing and also hides the feature progress
            bar and kerafine's messages. Defaults to ``"auto"``.
        shuffle: shuffle array data (and cached features) each epoch. Defaults to ``True``.
        class_weight: weights of the classes in the loss, for both phases:
            ``None``, a mapping ``{class index: weight >= 0}`` (Keras's
            ``class_weight``; classes left out weigh 1), or ``"balanced"``:
            ``n_samples / (n_classes * count)`` per class from the training
            labels, as scikit-learn's ``compute_class_weight``. Defaults to ``None``.
        non_finite: what to do with rows of array data holding NaN or inf
            (in the inputs, labels or sample weights; a model that imputes
            NaN itself, ``tabular_encoder(..., impute="median")``, may get
            NaN inputs, and only infinities count): ``"raise"`` refuses
            them with a ``DataError`` naming the data, the count and the
            first rows, before any training; ``"drop"`` trains and validates
            without them and says how many it dropped (a warning). A
            ``tf.data.Dataset`` is not scanned (that would cost a pass over
            it): add ``TrainingMonitor`` to see NaN weights at the first
            poisoned batch. Defaults to ``"raise"``.

    **Dead-model alarms.** Before phase 1, the backbone runs (inference mode)
    on a probe batch of at most 256 training rows; when at least 90% of its
    features are near-constant (std at most ``1e-4`` x their RMS over the
    rows: see :mod:`kerafine._health`), a ``TrainingProblemWarning`` names the
    likely cause (BatchNorm moving statistics that do not fit the data, when
    the backbone has BatchNorm layers) and the fix. After the last phase, a
    model that predicts one class for every validation row while the labels
    hold several is flagged too (one prediction pass over
    ``validation_data``). Both are in ``result.problems``; training is not
    stopped.

    Returns:
        A :class:`FineTuneResult`.

    Raises:
        KerafineError: before any training, for bad epochs, learning rates,
            ``unfreeze_top``, ``cache_features``, ``verbose``, ``batch_size``,
            optimizer or callbacks, or when ``loss=None`` cannot be inferred.
        DataError: for unusable ``train_data`` / ``validation_data``, or a
            ``class_weight`` key that is not a class of the training labels,
            and for NaN/inf in their arrays unless ``non_finite="drop"``.

    Example:

    >>> import numpy as np, keras, kerafine
    >>> inputs = keras.Input((3,))
    >>> enc = keras.Model(inputs, keras.layers.Dense(4, name="enc")(inputs), name="encoder")
    >>> model = kerafine.build_transfer_model(enc, keras.layers.Dense(1, name="predictions"))
    >>> x, y = np.ones((16, 3), "float32"), np.zeros(16, "float32")
    >>> r = fine_tune(model, (x, y), head_epochs=1, finetune_epochs=1, unfreeze_top=1, verbose=0)
    >>> r.head_history.epoch, r.finetune_history.epoch
    ([0], [1])
    """
    import keras

    # ---- validate everything before any work
    if not isinstance(model, keras.Model):
        raise invalid_argument("model", model, "a keras.Model (for example from kerafine.build_transfer_model)")
    backbone = transfer.backbone_of(model)
    head_epochs = _check_epochs("head_epochs", head_epochs)
    finetune_epochs = _check_epochs("finetune_epochs", finetune_epochs)
    if head_epochs + finetune_epochs == 0:
        raise invalid_argument(
            "finetune_epochs", finetune_epochs, "an int >= 1 when head_epochs is 0 (there is nothing to train)"
        )
    head_lr = _check_lr("head_lr", head_lr)
    finetune_lr = _check_lr("finetune_lr", finetune_lr)
    if unfreeze_top is None:
        raise invalid_argument("unfreeze_top", None, '"all", an int or a backbone layer name')
    n_top = transfer._n_unfrozen_top(backbone, unfreeze_top, "unfreeze_top")
    if isinstance(cache_features, bool):
        pass
    elif not (isinstance(cache_features, str) and cache_features == "auto"):
        raise invalid_argument("cache_features", cache_features, '"auto", True or False')
    if isinstance(verbose, bool) or verbose not in _VERBOSE:
        raise invalid_argument("verbose", verbose, '"auto", 0, 1 or 2')
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise invalid_argument("batch_size", batch_size, "a positive int")
    batch_size = int(batch_size)
    if not isinstance(shuffle, bool):
        raise invalid_argument("shuffle", shuffle, "True or False")
    template = _check_optimizer(optimizer)
    callbacks = [] if callbacks is None else callbacks
    if isinstance(callbacks, keras.callbacks.Callback):
        callbacks = [callbacks]
    if not isinstance(callbacks, (list, tuple)) or not all(
        isinstance(cb, keras.callbacks.Callback) for cb in callbacks
    ):
        raise invalid_argument("callbacks", callbacks, "None or a list of keras.callbacks.Callback")
    callbacks = list(callbacks)
    check_choice("non_finite", non_finite, ("raise", "drop"))
    train = _check_data(train_data, "train_data")
    val = _check_data(validation_data, "validation_data", required=False)
    from kerafine.backbones.tabular import imputes_missing

    # A model that fills NaN itself (tabular impute="median") trains on NaN cells on purpose.
    nan_ok = ("inputs",) if imputes_missing(model) else ()
    train = _finite_rows(train, "train_data", non_finite, nan_ok)
    val = _finite_rows(val, "validation_data", non_finite, nan_ok)
    class_weight = _check_class_weight(class_weight, train)
    if loss is None:
        loss = _infer_loss(model, backbone, train)
    if train.y is not None and isinstance(loss, str) and "crossentropy" in loss:
        from kerafine.data.labels import check_label_classes

        # Loud but not fatal here (a caller may know better); `kerafine fit` makes it an error.
        check_label_classes(train.y, "training", error=False)
    if "find" in (head_lr, finetune_lr):
        n = _n_batches(train, batch_size)
        if n is not None and n < _LR_FIND_MIN_STEPS:
            name = "head_lr" if head_lr == "find" else "finetune_lr"
            raise invalid_argument(
                name,
                "find",
                f"a float: lr_find needs at least {_LR_FIND_MIN_STEPS} batches of train_data and there are {n}",
                hint="Pass more data, a smaller batch_size, or a learning rate.",
            )

    # ---- BatchNorm: restore recorded inference calls, then say what the model as given would do
    transfer._pin_recorded_inference(model)
    transfer.check_batchnorm(model)

    if verbose != 0:
        # kerafine's one-line-per-epoch console instead of Keras's dump of every logs key (appended last,
        # so it prints what the other callbacks wrote into logs); Keras itself stays silent.
        from kerafine.callbacks.console import ConsoleProgress

        if not any(isinstance(cb, ConsoleProgress) for cb in callbacks):  # the user's own one wins
            callbacks = callbacks + [ConsoleProgress(verbose=1 if verbose in (1, "auto") else 2)]
    fit_common = dict(verbose=0, class_weight=class_weight)
    result = dict(
        head_history=None,
        finetune_history=None,
        head_lr=head_lr if head_epochs else None,
        finetune_lr=finetune_lr if finetune_epochs else None,
        unfreeze_top=unfreeze_top,
        features_cached=False,
        cache_reason="",
        feature_seconds=0.0,
        head_seconds=0.0,
        finetune_seconds=0.0,
        lr_found={},
        class_weight=class_weight,
    )
    progress = verbose != 0
    problems = []
    # A cheap look at the features before any training: constant features make the whole run pointless.
    try:
        found = _health.check_backbone(model, _probe_inputs(train), "train_data")
    except Exception as exc:  # noqa: BLE001 - a diagnostic must never stop a run it cannot judge
        logger.info("constant-feature check skipped: %s: %s", type(exc).__name__, exc)
        found = None
    if found is not None:
        problems.append(_problem("constant_features", 0, found))

    # ---- phase 1: frozen backbone
    transfer.freeze(model, "all")
    head_model, reason = _cache_decision(model, backbone, cache_features, head_epochs, callbacks)
    result["cache_reason"] = reason
    if head_epochs:
        if head_model is not None:
            t0 = time.perf_counter()
            arrays, result["features_loaded"] = _cached_features(backbone, train, val, batch_size, progress, callbacks)
            f_train, y_train, w_train, bs = (
                arrays["f_train"],
                arrays["y_train"],
                arrays.get("w_train"),
                int(arrays["bs"]),
            )
            val_cached = None
            if "f_val" in arrays:
                f_val, y_val, w_val = arrays["f_val"], arrays["y_val"], arrays.get("w_val")
                val_cached = (f_val, y_val) if w_val is None else (f_val, y_val, w_val)
            result["feature_seconds"] = time.perf_counter() - t0
            result["features_cached"] = True
            cached = _Data(x=f_train, y=y_train, w=w_train)
            _say(
                verbose,
                f"phase 1: cached backbone features {f_train.shape[1:]} of {len(f_train)} samples"
                + (" loaded from the checkpoint directory" if result["features_loaded"] else "")
                + f" in {human_duration(result['feature_seconds'])}",
            )
            lr = head_lr
            if lr == "find":
                head_model.compile(
                    optimizer=_make_optimizer(template, 1e-3), loss=loss, metrics=_clone_metrics(metrics)
                )
                lr, rule = _lr_find(head_model, cached, bs)
                result["lr_found"]["head"] = (lr, rule)
                _say(verbose, f'head_lr="find": lr_find suggested {lr:.3g} (rule: {rule})')
            opt = _make_optimizer(template, lr)
            head_model.compile(optimizer=opt, loss=loss, metrics=_clone_metrics(metrics))
            # The full model shares the optimizer, so callbacks pointed at it see the real one.
            model.compile(optimizer=opt, loss=loss, metrics=_clone_metrics(metrics))
            t0 = time.perf_counter()
            # kerafine callbacks are told explicitly: fit steps head_model, they watch model.
            _context.bind(callbacks, trained_model=head_model, watched_model=model)
            try:
                history = head_model.fit(
                    f_train,
                    y_train,
                    sample_weight=w_train,
                    batch_size=bs,
                    epochs=head_epochs,
                    validation_data=val_cached,
                    shuffle=shuffle,
                    callbacks=_retarget_callbacks(callbacks, model, head_model),
                    **fit_common,
                )
            finally:
                _context.unbind(callbacks)
            result["head_seconds"] = time.perf_counter() - t0
            model.history = history
        else:
            _say(verbose, f"phase 1: not caching features ({reason})")
            lr = _compile_phase(
                model, "head", head_lr, 1e-3, template, loss, metrics, train, batch_size, result, verbose
            )
            t0 = time.perf_counter()
            history = model.fit(
                **train.fit_kwargs(batch_size),
                epochs=head_epochs,
                validation_data=None if val is None else val.as_validation(),
                shuffle=shuffle,
                callbacks=callbacks,
                **fit_common,
            )
            result["head_seconds"] = time.perf_counter() - t0
        result["head_history"] = history
        result["head_lr"] = lr

    # ---- phase 2: unfreeze the top of the backbone
    if finetune_epochs:
        transfer._apply(backbone, n_top)
        lr = _compile_phase(
            model, "finetune", finetune_lr, 1e-5, template, loss, metrics, train, batch_size, result, verbose
        )
        t0 = time.perf_counter()
        history = model.fit(
            **train.fit_kwargs(batch_size),
            initial_epoch=head_epochs,
            epochs=head_epochs + finetune_epochs,
            validation_data=None if val is None else val.as_validation(),
            shuffle=shuffle,
            callbacks=callbacks,
            **fit_common,
        )
        result["finetune_seconds"] = time.perf_counter() - t0
        result["finetune_history"] = history
        result["finetune_lr"] = lr
    if val is not None and _health.is_classification_loss(loss):
        found = _one_class_on(model, val, batch_size, _health.from_logits_of(loss))
        if found is not None:
            problems.append(_problem("one_class_predictions", head_epochs + finetune_epochs - 1, found))
    result["problems"] = tuple(problems)
    return FineTuneResult(**result)


# ---------------------------------------------------------------------------
# dead-model alarms and class weights


def _check_class_weight(class_weight, train: _Data):
    """``class_weight`` checked against the training labels (``"balanced"`` resolved), before any work."""
    from kerafine.data.labels import resolve_class_weight

    if class_weight is None:
        return None
    if train.is_dataset:
        # The labels are needed once, to check the keys or to count classes; a dataset is read for them.
        y = np.concatenate([np.asarray(_batches.split_batch(b)[1]) for b in _batches.iterate(train.dataset)])
    else:
        y = train.y
    return resolve_class_weight(class_weight, y)


def _probe_inputs(data: _Data):
    """The inputs of at most ``_health.PROBE_ROWS`` rows of ``data`` (the first batch of a dataset)."""
    if data.is_dataset:
        for batch in _batches.iterate(data.dataset.take(1)):
            return _batches.split_batch(batch)[0]
    x = data.x
    n = _health.PROBE_ROWS
    return {k: v[:n] for k, v in x.items()} if isinstance(x, dict) else x[:n]


def _one_class_on(model, val: _Data, batch_size: int, from_logits: bool):
    if val.is_dataset:
        scores, ys = [], []
        for batch in _batches.iterate(val.dataset):
            xb, yb, _ = _batches.split_batch(batch)
            scores.append(np.asarray(model.predict_on_batch(xb)))
            ys.append(np.asarray(yb))
        if not scores or isinstance(scores[0], (list, tuple, dict)):
            return None
        scores, y = np.concatenate(scores), np.concatenate(ys)
    else:
        scores, y = model.predict(val.x, batch_size=batch_size, verbose=0), val.y
    if isinstance(scores, (list, tuple, dict)):
        return None  # several outputs: not judged
    return _health.one_class(np.asarray(scores), y, from_logits=from_logits, where="validation")


def _problem(kind: str, epoch: int, found):
    import warnings

    from kerafine.callbacks.training_monitor import TrainingProblem, TrainingProblemWarning

    values, text = found
    message = f"kerafine.fine_tune: {text}"
    warnings.warn(message, TrainingProblemWarning, stacklevel=3)
    return TrainingProblem(kind, int(epoch), None, message, values)
