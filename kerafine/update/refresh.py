"""Refresh a trained transfer model on new labels, with a replay sample of the old data."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from kerafine._display import displayable
from kerafine.update._checks import check_fraction, check_model, check_positive_int, check_xy, input_signature

__all__ = ["refresh", "replay_mix", "RefreshResult"]


@displayable
@dataclasses.dataclass(frozen=True)
class RefreshResult:
    """What :func:`refresh` did.

    Attributes:
        model: the refreshed model (the same object, trained in place).
        fine_tune: the :class:`kerafine.FineTuneResult` of the training.
        n_new: new rows trained on.
        n_replayed: old rows mixed in.
    """

    model: Any
    fine_tune: Any
    n_new: int
    n_replayed: int

    def _display(self):
        name = getattr(self.model, "name", type(self.model).__name__)
        return "RefreshResult", [("model", str(name)), ("rows", f"{self.n_new} new + {self.n_replayed} replayed")]


def replay_mix(new_data, replay=None, replay_fraction: float = 0.3, seed: int = 0):
    """The training set of :func:`refresh`: the new rows plus a random sample of the old ones.

    The replay sample makes ``replay_fraction`` of the mixed set (as far as
    the old data allows: its rows are drawn without replacement). Rows are
    shuffled together.

    Args:
        new_data: ``(x, y)`` arrays of the new, labelled data.
        replay: ``(x, y)`` arrays of the old training data, or ``None`` (no replay).
        replay_fraction: share of the mixed set drawn from ``replay``, in [0, 1).
            Defaults to 0.3.
        seed: seed of the sample and the shuffle. Defaults to 0.

    Returns:
        ``(x, y, n_replayed)``.

    Example:

    >>> import numpy as np
    >>> new = (np.zeros((70, 2)), np.zeros(70)); old = (np.ones((500, 2)), np.ones(500))
    >>> x, y, n = replay_mix(new, old, replay_fraction=0.3)
    >>> x.shape, n
    ((100, 2), 30)
    """
    x_new, y_new = check_xy(new_data, "new_data")
    replay = check_xy(replay, "replay", allow_none=True)
    replay_fraction = check_fraction("replay_fraction", replay_fraction)
    rng = np.random.default_rng(seed)
    if replay is None or replay_fraction == 0:
        order = rng.permutation(len(x_new))
        return x_new[order], y_new[order], 0
    x_old, y_old = replay
    if x_old.shape[1:] != x_new.shape[1:]:
        from kerafine.errors import DataError, invalid_argument

        raise invalid_argument(
            "replay",
            f"rows of shape {x_old.shape[1:]}",
            f"rows of the shape of new_data's, {x_new.shape[1:]}",
            error=DataError,
        )
    want = int(round(len(x_new) * replay_fraction / (1.0 - replay_fraction)))
    n = min(want, len(x_old))
    pick = rng.choice(len(x_old), n, replace=False)
    x = np.concatenate([x_new, x_old[pick].astype(x_new.dtype, copy=False)])
    y = np.concatenate([y_new, y_old[pick].astype(y_new.dtype, copy=False)])
    order = rng.permutation(len(x))
    return x[order], y[order], n


def refresh(
    model,
    new_data,
    replay=None,
    replay_fraction: float = 0.3,
    *,
    validation_data=None,
    epochs: int = 5,
    learning_rate: float = 1e-4,
    unfreeze_top="all",
    callbacks=None,
    batch_size: int = 32,
    seed: int = 0,
    verbose="auto",
):
    """Continue fine-tuning a trained transfer model on new labels mixed with replayed old rows.

    Training on the new rows alone adapts the model to them and makes it
    forget the old ones; mixing in a sample of the old training data
    (*replay*) keeps both. Training goes through :func:`kerafine.fine_tune`'s
    fine-tuning phase, so its rules hold: BatchNormalization layers of the
    backbone stay frozen in inference mode, the optimizer is fresh (none of
    the old Adam moments), and kerafine callbacks (``CheckpointRestart``,
    ``EarlyStopping``, ``AUCTracker``) work as in any fit. The model is
    trained in place and returned.

    Args:
        model: a trained transfer model (from :func:`kerafine.build_transfer_model`
            or :func:`kerafine.load_model` of one).
        new_data: ``(x, y)`` arrays of the new labelled data.
        replay: ``(x, y)`` arrays of the old training data, or ``None`` to
            train on the new data alone. Defaults to ``None``.
        replay_fraction: share of each epoch's rows drawn from ``replay``, in
            [0, 1). Defaults to 0.3.
        validation_data: ``(x, y)`` for the callbacks, or ``None``. Defaults to ``None``.
        epochs: epochs of training, >= 1. Defaults to 5.
        learning_rate: learning rate of the fresh optimizer (small: the model
            is already trained). Defaults to ``1e-4``.
        unfreeze_top: backbone layers trained, as in :func:`kerafine.unfreeze`.
            Defaults to ``"all"``.
        callbacks: Keras callbacks. Defaults to ``None``.
        batch_size: batch size. Defaults to 32.
        seed: seed of the replay sample. Defaults to 0.
        verbose: Keras's ``verbose``. Defaults to ``"auto"``.

    Returns:
        :class:`RefreshResult` (``.model`` is ``model``, trained).

    Raises:
        KerafineError: a bad argument (named in the message), before training.
        DataError: unusable ``new_data`` / ``replay``, or rows of another shape
            than the model's input.

    Example:

    >>> import numpy as np, keras, kerafine
    >>> from kerafine.update import refresh
    >>> inputs = keras.Input((3,))
    >>> enc = keras.Model(inputs, keras.layers.Dense(4, name="enc")(inputs), name="encoder")
    >>> model = kerafine.build_transfer_model(enc, keras.layers.Dense(1, activation="sigmoid", name="predictions"))
    >>> rng = np.random.default_rng(0)
    >>> new = (rng.normal(size=(40, 3)).astype("float32"), rng.integers(0, 2, 40).astype("float32"))
    >>> old = (rng.normal(size=(80, 3)).astype("float32"), rng.integers(0, 2, 80).astype("float32"))
    >>> r = refresh(model, new, replay=old, epochs=1, verbose=0)
    >>> r.n_new, r.n_replayed, r.model is model
    (40, 17, True)
    """
    import kerafine

    check_model(model, "model")
    epochs = check_positive_int("epochs", epochs)
    x, y, n_replayed = replay_mix(new_data, replay, replay_fraction, seed)
    if tuple(x.shape[1:]) != input_signature(model):
        from kerafine.errors import DataError, invalid_argument

        raise invalid_argument(
            "new_data",
            f"rows of shape {tuple(x.shape[1:])}",
            f"rows of the model's input shape {input_signature(model)}",
            error=DataError,
        )
    result = kerafine.fine_tune(
        model,
        (x, y),
        validation_data=validation_data,
        head_epochs=0,
        finetune_epochs=epochs,
        finetune_lr=learning_rate,
        unfreeze_top=unfreeze_top,
        callbacks=callbacks,
        batch_size=batch_size,
        verbose=verbose,
    )
    return RefreshResult(model, result, int(len(x) - n_replayed), int(n_replayed))
