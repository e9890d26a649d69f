"""Recurrent encoders for metric windows, and their self-supervised pretraining.

There is no public hub of pretrained LSTMs for server metrics, so the way to get a
"pretrained" sequence backbone is to pretrain one on your own unlabeled windows
(plenty) before fine-tuning it on the few labeled ones (failures are rare).
"""

from __future__ import annotations

import numbers
from typing import Any

import keras
import numpy as np

from kerafine.backbones._checks import check_choice, check_positive_int, check_rate, check_units
from kerafine.errors import DataError, KerafineError, check_number, invalid_argument

__all__ = ["sequence_encoder", "pretrain_sequence_encoder"]

_KINDS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def _check_input_shape(input_shape: Any) -> tuple[int | None, int]:
    expected = (
        "(timesteps, features): timesteps a positive int or None (variable length), "
        "features a positive int; the batch dimension is not included"
    )
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 2:
        raise invalid_argument("input_shape", input_shape, expected, error=DataError)
    timesteps, features = input_shape
    ok_steps = timesteps is None or (
        isinstance(timesteps, numbers.Integral) and not isinstance(timesteps, bool) and timesteps >= 1
    )
    ok_features = isinstance(features, numbers.Integral) and not isinstance(features, bool) and features >= 1
    if not (ok_steps and ok_features):
        raise invalid_argument("input_shape", input_shape, expected, error=DataError)
    return (None if timesteps is None else int(timesteps)), int(features)


def sequence_encoder(
    input_shape: tuple[int | None, int],
    kind: str = "lstm",
    units: tuple[int, ...] = (64, 32),
    bidirectional: bool = False,
    dropout: float = 0.0,
    mask_value: float | None = 0.0,
) -> keras.Model:
    """Build a stacked LSTM/GRU encoder mapping a window of metrics to one embedding.

    Windows are ``(batch, timesteps, features)``, e.g. 60 minutes of CPU, memory,
    disk-IO and uptime. Shorter windows are padded: a timestep whose features
    **all** equal ``mask_value`` is skipped by every recurrent layer (a
    ``keras.layers.Masking`` layer), so padding does not change the embedding.

    Args:
        input_shape: ``(timesteps, features)``; ``timesteps`` may be ``None`` for
            variable-length windows.
        kind: ``"lstm"`` or ``"gru"``. Defaults to ``"lstm"``.
        units: widths of the stacked recurrent layers, first to last; the last
            one is the embedding size (doubled when bidirectional). Defaults to
            ``(64, 32)``.
        bidirectional: wrap each layer in ``keras.layers.Bidirectional``.
            Defaults to ``False``.
        dropout: input dropout rate of each recurrent layer, in [0, 1).
            Defaults to ``0.0``.
        mask_value: the padding value (standardise your metrics so that a real
            timestep is never all exactly this value), or ``None`` for no
            masking. Defaults to ``0.0``.

    Returns:
        A functional ``keras.Model`` named ``"sequence_encoder"`` with output
        ``(batch, units[-1])`` (``2 * units[-1]`` when bidirectional).

    Raises:
        DataError: ``input_shape`` is not ``(timesteps, features)``.
        KerafineError: bad ``kind``, ``units``, ``dropout`` or ``mask_value``.

    Example:

    >>> import numpy as np
    >>> encoder = sequence_encoder((10, 4), kind="gru", units=(8,))
    >>> encoder(np.zeros((2, 10, 4), "float32")).shape
    TensorShape([2, 8])
    """
    timesteps, features = _check_input_shape(input_shape)
    kind = kind.lower() if isinstance(kind, str) else kind
    check_choice("kind", kind, tuple(_KINDS))
    units = check_units("units", units, allow_empty=False)
    check_choice("bidirectional", bidirectional, (True, False))
    dropout = check_rate("dropout", dropout)
    if mask_value is not None:
        check_number("mask_value", mask_value, expected="a finite float or None")

    inputs = keras.Input(shape=(timesteps, features), name="window")
    x = inputs
    if mask_value is not None:
        x = keras.layers.Masking(mask_value=float(mask_value), name="masking")(x)
    for i, width in enumerate(units):
        last = i == len(units) - 1
        layer = _KINDS[kind](width, return_sequences=not last, dropout=dropout, name=f"{kind}_{i}")
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{kind}_{i}")
        x = layer(x)
    return keras.Model(inputs, x, name="sequence_encoder")


def _encoder_window_shape(encoder: Any) -> tuple[int | None, int, float | None]:
    if not isinstance(encoder, keras.Model):
        raise invalid_argument("encoder", encoder, "a keras.Model such as sequence_encoder(...)")
    try:
        shape = tuple(encoder.input.shape)
    except (AttributeError, ValueError):
        shape = ()
    if len(shape) != 3 or shape[-1] is None:
        raise invalid_argument(
            "encoder",
            encoder,
            "a model with one (batch, timesteps, features) input, such as sequence_encoder(...)",
        )
    mask_value = None
    for layer in encoder.layers:
        if isinstance(layer, keras.layers.Masking):
            mask_value = float(layer.mask_value)
            break
    return shape[1], int(shape[2]), mask_value


def _check_windows(windows: Any, timesteps: int | None, features: int) -> np.ndarray:
    try:
        array = np.asarray(windows, dtype="float32")
    except (TypeError, ValueError) as error:
        raise invalid_argument("windows", type(windows).__name__, "a numeric array", error=DataError) from error
    expected = f"an array of shape (n_windows, timesteps, {features})"
    if array.ndim != 3:
        raise invalid_argument(
            "windows",
            f"an array of rank {array.ndim} with shape {array.shape}",
            expected,
            hint="Cut a series into windows first, e.g. with kerafine.data; a single window "
            "needs a leading batch axis (window[None]).",
            error=DataError,
        )
    if array.shape[-1] != features or (timesteps is not None and array.shape[1] != timesteps):
        raise invalid_argument(
            "windows",
            f"an array of shape {array.shape}",
            f"(n_windows, {timesteps if timesteps is not None else 'timesteps'}, {features}) "
            "to match the encoder's input",
            error=DataError,
        )
    if array.shape[0] == 0:
        raise invalid_argument("windows", "an empty array", expected, error=DataError)
    n_bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if n_bad:
        raise invalid_argument(
            "windows",
            f"an array with {n_bad} NaN/inf values",
            "finite values",
            hint="Fill gaps (e.g. forward-fill) or pad with the encoder's mask value.",
            error=DataError,
        )
    return array


def _hidden_steps(n_windows: int, n_steps: int, mask_rate: float, seed: int | None) -> np.ndarray:
    """A boolean (n_windows, n_steps) array: which steps the masked objective hides.

    Each step is hidden with probability ``mask_rate``; a window that drew no
    hidden step gets one at a random position, so every window contributes to
    the loss.
    """
    rng = np.random.default_rng(seed)
    hidden = rng.random((n_windows, n_steps)) < mask_rate
    empty = np.flatnonzero(~hidden.any(axis=1))
    hidden[empty, rng.integers(0, n_steps, size=len(empty))] = True
    return hidden


def _pretraining_setup(
    encoder: keras.Model,
    array: np.ndarray,
    objective: str,
    timesteps: int | None,
    features: int,
    mask_value: float | None,
    horizon: int = 1,
    mask_rate: float = 0.15,
    seed: int | None = None,
) -> tuple[keras.Model, np.ndarray, np.ndarray, np.ndarray | None]:
    """The self-supervised model around ``encoder``, its (inputs, targets) and per-step loss weights."""
    n_steps = array.shape[1]

    if objective == "forecast":
        if n_steps < horizon + 1:
            raise invalid_argument(
                "windows",
                f"windows of {n_steps} timestep{'s' if n_steps != 1 else ''}",
                f'at least {horizon + 1} timesteps (horizon + 1) for objective="forecast"',
                error=DataError,
            )
        target = array[:, -horizon:, :].reshape(len(array), horizon * features)
        if timesteps is None:
            x = array[:, :-horizon, :]
        elif mask_value is not None:
            x = array.copy()
            x[:, -horizon:, :] = mask_value
        else:
            raise KerafineError(
                'objective="forecast" needs to hide the last timesteps of each window: build '
                "the encoder with timesteps=None or with masking (mask_value), or use "
                'objective="reconstruct" or "masked".'
            )
        inputs = keras.Input(shape=(timesteps, features), name="window")
        # "next_step" as before for horizon=1, so checkpoints of earlier pretraining runs still match.
        name = "next_step" if horizon == 1 else "next_steps"
        outputs = keras.layers.Dense(horizon * features, name=name)(encoder(inputs))
        return keras.Model(inputs, outputs, name="pretrain_forecast"), x, target, None

    weights = None
    if objective == "masked":
        hidden = _hidden_steps(len(array), n_steps, mask_rate, seed)
        x = array.copy()
        # Behind the Masking layer when there is one (the encoder skips the step);
        # otherwise 0.0, the mean of standardised windows.
        x[hidden] = 0.0 if mask_value is None else mask_value
        weights = hidden.astype("float32")
        target = array
    else:
        x = array
        target = array
    inputs = keras.Input(shape=(n_steps, features), name="window")
    embedding = encoder(inputs)
    width = int(embedding.shape[-1])
    recurrent = keras.layers.GRU
    for layer in encoder.layers:
        inner = getattr(layer, "forward_layer", layer)
        if isinstance(inner, keras.layers.LSTM):
            recurrent = keras.layers.LSTM
            break
    x_dec = keras.layers.RepeatVector(n_steps, name="repeat")(embedding)
    x_dec = recurrent(width, return_sequences=True, name="decoder")(x_dec)
    outputs = keras.layers.TimeDistributed(keras.layers.Dense(features), name="reconstruction")(x_dec)

    return keras.Model(inputs, outputs, name=f"pretrain_{objective}"), x, target, weights


def pretrain_sequence_encoder(
    encoder: keras.Model,
    windows: Any,
    objective: str = "forecast",
    epochs: int = 10,
    optimizer: Any = "adam",
    *,
    horizon: int = 1,
    mask_rate: float = 0.15,
    seed: int | None = None,
    **fit_kwargs: Any,
) -> keras.Model:
    """Pretrain a sequence encoder self-supervised on unlabeled windows.

    Three objectives, all with a mean-squared-error loss:

    - ``"forecast"``: the encoder reads each window with its **last**
      ``horizon`` timesteps hidden and a linear layer predicts them from the
      embedding. The steps are hidden by cutting them off when the encoder
      accepts variable-length windows (``timesteps=None``), otherwise by setting
      them to the encoder's mask value so its ``Masking`` layer skips them.
    - ``"reconstruct"``: an autoencoder. The embedding is repeated over the
      timesteps (``RepeatVector``) and a recurrent decoder of the same kind
      reconstructs the whole window.
    - ``"masked"``: masked reconstruction. A random share ``mask_rate`` of the
      timesteps of each window (at least one) is hidden (set to the encoder's
      mask value, so its ``Masking`` layer skips them, or to 0.0 without
      masking) and the same decoder as ``"reconstruct"`` rebuilds the window;
      the loss counts the hidden steps only. The hidden steps are drawn once,
      with ``seed``.

    The decoder/forecast layers are discarded afterwards; only the encoder's
    weights are kept. Standardise the windows first (per feature, with statistics
    of the training windows; on real metrics, per series: see the README section
    "When does pretraining help?"): on raw offsets such as "CPU around 60 %" the
    autoencoder spends its first epochs learning the mean level and little else.

    Args:
        encoder: a model from :func:`sequence_encoder` (or any model with one
            ``(batch, timesteps, features)`` input and a rank-2 output). Trained in
            place.
        windows: unlabeled windows, ``(n_windows, timesteps, features)``, finite.
        objective: ``"forecast"``, ``"reconstruct"`` or ``"masked"``. Defaults to
            ``"forecast"``.
        epochs: training epochs. Defaults to ``10``.
        optimizer: the Keras optimizer (name or instance). Defaults to ``"adam"``.
        horizon: ``"forecast"`` only: how many last timesteps to hide and
            predict, >= 1 and smaller than the window. Defaults to ``1``.
        mask_rate: ``"masked"`` only: the share of timesteps hidden, in (0, 1).
            Defaults to ``0.15``.
        seed: ``"masked"`` only: seed of the hidden steps. Defaults to ``None``.
        **fit_kwargs: passed to ``keras.Model.fit`` (``batch_size``,
            ``validation_split``, ``callbacks``, ``verbose``, ...).

    Returns:
        ``encoder`` itself with updated weights. The pretraining
        ``keras.callbacks.History`` is attached as ``encoder.pretraining_history``
        (``encoder.pretraining_history.history["loss"]`` per epoch).

    Raises:
        DataError: ``windows`` not rank 3, not matching the encoder's
            ``(timesteps, features)``, empty, or holding NaN/inf.
        KerafineError: bad ``objective``, ``epochs``, ``horizon``, ``mask_rate``
            or ``seed``; ``"forecast"`` on windows of at most ``horizon``
            timesteps, or on a fixed-length encoder without a ``Masking`` layer;
            ``sample_weight`` in ``fit_kwargs`` with ``"masked"`` (it sets its own).

    Example:

    >>> import numpy as np
    >>> windows = np.sin(0.1 + np.arange(64 * 8).reshape(64, 8, 1) / 5.0).astype("float32")
    >>> encoder = sequence_encoder((8, 1), units=(4,))
    >>> encoder = pretrain_sequence_encoder(encoder, windows, epochs=1, verbose=0)
    >>> len(encoder.pretraining_history.history["loss"])
    1
    >>> encoder = pretrain_sequence_encoder(encoder, windows, "masked", epochs=1, seed=0, verbose=0)
    >>> len(encoder.pretraining_history.history["loss"])
    1
    """
    timesteps, features, mask_value = _encoder_window_shape(encoder)
    check_choice("objective", objective, ("forecast", "reconstruct", "masked"))
    epochs = check_positive_int("epochs", epochs)
    horizon = check_positive_int("horizon", horizon)
    if isinstance(mask_rate, bool) or not isinstance(mask_rate, numbers.Real) or not 0.0 < float(mask_rate) < 1.0:
        raise invalid_argument("mask_rate", mask_rate, "a float strictly between 0 and 1, e.g. 0.15")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise invalid_argument("seed", seed, "None or an int >= 0")
    if objective == "masked" and "sample_weight" in fit_kwargs:
        raise invalid_argument(
            "sample_weight",
            "an array",
            'nothing with objective="masked" (it weights the hidden timesteps itself)',
        )
    array = _check_windows(windows, timesteps, features)
    pretrainer, x, target, weights = _pretraining_setup(
        encoder, array, objective, timesteps, features, mask_value, horizon, float(mask_rate), seed
    )
    pretrainer.compile(optimizer=optimizer, loss="mse")
    if weights is not None:
        fit_kwargs["sample_weight"] = weights
    history = pretrainer.fit(x, target, epochs=epochs, **fit_kwargs)
    encoder.pretraining_history = history
    return encoder
