"""sequence_encoder() and pretrain_sequence_encoder()."""

import keras
import numpy as np
import pytest

from kerafine.backbones import pretrain_sequence_encoder, sequence_encoder
from kerafine.errors import DataError, KerafineError


def _sine_windows(n=256, steps=12, seed=0):
    """Learnable series: offset sines with random phase and period (never all 0)."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[None, :]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    period = rng.uniform(6, 10, size=(n, 1))
    series = 2.0 + np.sin(2 * np.pi * t / period + phase)
    return series[..., None].astype("float32")


class _LossAtStart(keras.callbacks.Callback):
    """Record the pretraining model's loss on (x, y) before any weight update."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y, self.loss = x, y, None

    def on_train_begin(self, logs=None):
        self.loss = float(np.mean((np.asarray(self.model(self.x)) - self.y) ** 2))


def _mse(model, x, y):
    return float(np.mean((np.asarray(model(x)) - y) ** 2))


def test_stacked_bidirectional_gru_builds_a_fixed_size_embedding(seeded):
    encoder = sequence_encoder((12, 3), kind="GRU", units=(8, 4), bidirectional=True, dropout=0.1)
    assert encoder.output.shape == (None, 8)
    assert [layer.name for layer in encoder.layers[1:]] == [
        "masking",
        "bidirectional_gru_0",
        "bidirectional_gru_1",
    ]
    x = np.random.default_rng(0).normal(size=(5, 12, 3)).astype("float32")
    assert np.asarray(encoder(x)).shape == (5, 8)


def test_padded_steps_do_not_change_the_embedding(seeded):
    encoder = sequence_encoder((None, 2), units=(6, 5))
    window = np.random.default_rng(1).normal(size=(1, 5, 2)).astype("float32")
    padded = np.concatenate([window, np.zeros((1, 3, 2), "float32")], axis=1)
    np.testing.assert_allclose(np.asarray(encoder(padded)), np.asarray(encoder(window)), atol=1e-6)
    # Without masking the zeros are read as data.
    unmasked = sequence_encoder((None, 2), units=(6, 5), mask_value=None)
    unmasked.set_weights(encoder.get_weights())
    assert not np.allclose(np.asarray(unmasked(padded)), np.asarray(unmasked(window)), atol=1e-4)


def test_keras_round_trip_keeps_predictions(tmp_path, seeded):
    encoder = sequence_encoder((12, 3), kind="lstm", units=(8, 4), bidirectional=True)
    path = tmp_path / "encoder.keras"
    encoder.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).normal(size=(4, 12, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(restored(x)), np.asarray(encoder(x)))


def test_forecast_pretraining_lowers_its_loss_on_a_learnable_series(seeded):
    windows = _sine_windows()
    encoder = sequence_encoder((12, 1), kind="gru", units=(16,))
    # The documented scheme: last step hidden behind the mask value, predict it.
    hidden_last = windows.copy()
    hidden_last[:, -1, :] = 0.0
    start = _LossAtStart(hidden_last, windows[:, -1, :])
    returned = pretrain_sequence_encoder(
        encoder,
        windows,
        objective="forecast",
        epochs=12,
        optimizer=keras.optimizers.Adam(0.02),
        batch_size=32,
        callbacks=[start],
        verbose=0,
    )
    assert returned is encoder
    losses = encoder.pretraining_history.history["loss"]
    assert len(losses) == 12
    final = _mse(start.model, hidden_last, windows[:, -1, :])
    assert final < 0.2 * start.loss, (start.loss, final)
    # The target variance is 0.5: the model must beat predicting the mean.
    assert final < 0.25


def test_reconstruct_pretraining_beats_the_mean_and_updates_the_encoder(tmp_path, seeded):
    # Standardised windows, as the docs ask (an offset series first learns only the mean).
    windows = _sine_windows(n=128, steps=8) - 2.0
    encoder = sequence_encoder((8, 1), kind="lstm", units=(16,), mask_value=None)
    before = [w.copy() for w in encoder.get_weights()]
    start = _LossAtStart(windows, windows)
    pretrain_sequence_encoder(
        encoder,
        windows,
        objective="reconstruct",
        epochs=10,
        optimizer=keras.optimizers.Adam(0.01),
        batch_size=16,
        callbacks=[start],
        verbose=0,
    )
    final = _mse(start.model, windows, windows)
    assert final < 0.5 * start.loss, (start.loss, final)
    # Predicting the overall mean scores the variance (~0.5): beat it clearly.
    assert final < 0.35 * windows.var(), (final, windows.var())
    assert any(not np.array_equal(a, b) for a, b in zip(before, encoder.get_weights()))
    # The pretrained encoder saves alone (the decoder is not part of it).
    path = tmp_path / "pretrained.keras"
    encoder.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    assert [layer.name for layer in restored.layers] == [layer.name for layer in encoder.layers]
    np.testing.assert_array_equal(np.asarray(restored(windows)), np.asarray(encoder(windows)))


def test_forecast_with_variable_length_encoder_cuts_the_last_step():
    from kerafine.backbones.sequence import _pretraining_setup

    windows = _sine_windows(n=8, steps=6)
    encoder = sequence_encoder((None, 1), units=(4,))
    model, x, y, weights = _pretraining_setup(encoder, windows, "forecast", None, 1, 0.0)
    assert weights is None
    np.testing.assert_array_equal(x, windows[:, :-1, :])
    np.testing.assert_array_equal(y, windows[:, -1, :])
    assert model.output.shape == (None, 1)
    assert encoder in model.layers  # trained in place: the same layer object


def test_bad_input_shape_is_a_data_error():
    with pytest.raises(
        DataError, match=r"argument `input_shape`: received \(32, 12, 3\); expected \(timesteps, features\)"
    ):
        sequence_encoder((32, 12, 3))
    with pytest.raises(DataError, match=r"`input_shape`"):
        sequence_encoder((12, 0))


def test_bad_encoder_arguments_are_rejected():
    with pytest.raises(KerafineError, match=r"argument `kind`: received 'rnn'; expected 'lstm' or 'gru'"):
        sequence_encoder((12, 3), kind="rnn")
    with pytest.raises(KerafineError, match=r"argument `units`: received \(\)"):
        sequence_encoder((12, 3), units=())
    with pytest.raises(KerafineError, match=r"argument `dropout`: received 1.0"):
        sequence_encoder((12, 3), dropout=1.0)
    with pytest.raises(KerafineError, match=r"argument `mask_value`"):
        sequence_encoder((12, 3), mask_value=float("nan"))


def test_windows_of_the_wrong_rank_are_a_data_error():
    encoder = sequence_encoder((12, 3), units=(4,))
    with pytest.raises(
        DataError,
        match=r"argument `windows`: received 'an array of rank 2 with shape \(12, 3\)'; expected an array of shape \(n_windows, timesteps, 3\)",
    ):
        pretrain_sequence_encoder(encoder, np.zeros((12, 3)))
    with pytest.raises(DataError, match=r"rank 4"):
        pretrain_sequence_encoder(encoder, np.zeros((2, 2, 12, 3)))


def test_windows_not_matching_the_encoder_or_not_finite_are_data_errors():
    encoder = sequence_encoder((12, 3), units=(4,))
    with pytest.raises(DataError, match=r"shape \(5, 12, 2\).*\(n_windows, 12, 3\) to match the encoder"):
        pretrain_sequence_encoder(encoder, np.ones((5, 12, 2)))
    with pytest.raises(DataError, match=r"shape \(5, 10, 3\)"):
        pretrain_sequence_encoder(encoder, np.ones((5, 10, 3)))
    bad = np.ones((5, 12, 3))
    bad[0, 0, 0] = np.nan
    bad[1, 1, 1] = np.inf
    with pytest.raises(DataError, match=r"2 NaN/inf values"):
        pretrain_sequence_encoder(encoder, bad)
    with pytest.raises(DataError, match=r"empty"):
        pretrain_sequence_encoder(encoder, np.ones((0, 12, 3)))


def test_bad_pretraining_arguments_are_rejected():
    encoder = sequence_encoder((12, 3), units=(4,))
    windows = np.ones((4, 12, 3))
    with pytest.raises(KerafineError, match=r"argument `objective`: received 'denoise'"):
        pretrain_sequence_encoder(encoder, windows, objective="denoise")
    with pytest.raises(KerafineError, match=r"argument `epochs`: received 0"):
        pretrain_sequence_encoder(encoder, windows, epochs=0)
    with pytest.raises(KerafineError, match=r"argument `encoder`"):
        pretrain_sequence_encoder("lstm", windows)
    no_mask = sequence_encoder((12, 3), units=(4,), mask_value=None)
    with pytest.raises(KerafineError, match=r'objective="reconstruct"'):
        pretrain_sequence_encoder(no_mask, windows, objective="forecast")
    one_step = sequence_encoder((1, 3), units=(4,))
    with pytest.raises(DataError, match=r"at least 2 timesteps"):
        pretrain_sequence_encoder(one_step, np.ones((4, 1, 3)))


def test_forecast_horizon_hides_and_predicts_the_last_steps():
    from kerafine.backbones.sequence import _pretraining_setup

    windows = _sine_windows(n=8, steps=10)
    variable = sequence_encoder((None, 1), units=(4,))
    model, x, y, _ = _pretraining_setup(variable, windows, "forecast", None, 1, 0.0, horizon=3)
    np.testing.assert_array_equal(x, windows[:, :-3, :])
    np.testing.assert_array_equal(y, windows[:, -3:, 0])
    assert model.output.shape == (None, 3)
    fixed = sequence_encoder((10, 1), units=(4,), mask_value=-5.0)
    model, x, y, _ = _pretraining_setup(fixed, windows, "forecast", 10, 1, -5.0, horizon=3)
    assert np.all(x[:, -3:, :] == -5.0)
    np.testing.assert_array_equal(x[:, :-3, :], windows[:, :-3, :])


def test_forecast_horizon_pretraining_lowers_its_loss(seeded):
    windows = _sine_windows()
    encoder = sequence_encoder((None, 1), kind="gru", units=(16,))
    pretrain_sequence_encoder(
        encoder, windows, horizon=4, epochs=15, optimizer=keras.optimizers.Adam(0.02), batch_size=32, verbose=0
    )
    losses = encoder.pretraining_history.history["loss"]
    # Predicting the window mean for the 4 hidden steps scores their variance
    # around it; a learnt forecast of a sine must do far better.
    future = windows[:, -4:, 0]
    baseline = float(np.mean((future - windows[:, :-4, 0].mean(axis=1, keepdims=True)) ** 2))
    assert losses[-1] < 0.3 * baseline


def test_masked_objective_hides_a_seeded_share_of_steps_behind_the_mask():
    from kerafine.backbones.sequence import _pretraining_setup

    windows = _sine_windows(n=400, steps=20)
    encoder = sequence_encoder((20, 1), units=(4,))
    model, x, y, w = _pretraining_setup(encoder, windows, "masked", 20, 1, 0.0, mask_rate=0.25, seed=3)
    hidden = w.astype(bool)
    assert w.shape == (400, 20)
    np.testing.assert_array_equal(y, windows)
    assert np.all(x[hidden] == 0.0)  # the mask value: the encoder skips these steps
    np.testing.assert_array_equal(x[~hidden], windows[~hidden])
    assert hidden.any(axis=1).all()  # every window has at least one hidden step
    # 8000 Bernoulli(0.25) draws: the share is within 5 standard errors of 0.25.
    assert abs(hidden.mean() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / hidden.size)
    again = _pretraining_setup(encoder, windows, "masked", 20, 1, 0.0, mask_rate=0.25, seed=3)[3]
    np.testing.assert_array_equal(again, w)
    other = _pretraining_setup(encoder, windows, "masked", 20, 1, 0.0, mask_rate=0.25, seed=4)[3]
    assert not np.array_equal(other, w)
    assert model.output.shape == (None, 20, 1)
    # Without masking the hidden steps read 0.0 (the mean of standardised data).
    plain = sequence_encoder((20, 1), units=(4,), mask_value=None)
    x, _, w = _pretraining_setup(plain, windows, "masked", 20, 1, None, mask_rate=0.25, seed=3)[1:]
    assert np.all(x[w.astype(bool)] == 0.0)


def test_masked_pretraining_fills_in_hidden_steps_better_than_the_mean(seeded):
    windows = _sine_windows() - 2.0  # centred, as the docstring asks
    encoder = sequence_encoder((12, 1), kind="gru", units=(16,), mask_value=None)
    before = [w.copy() for w in encoder.get_weights()]
    pretrain_sequence_encoder(
        encoder,
        windows,
        "masked",
        epochs=20,
        optimizer=keras.optimizers.Adam(0.02),
        mask_rate=0.2,
        seed=0,
        batch_size=32,
        verbose=0,
    )
    losses = encoder.pretraining_history.history["loss"]
    # The first epoch's loss is close to that of predicting the mean (0) for the
    # hidden steps; filling them in from their neighbours must halve it.
    assert losses[-1] < 0.5 * losses[0]
    assert any(not np.allclose(a, b) for a, b in zip(before, encoder.get_weights()))


def test_bad_horizon_mask_rate_and_seed_are_rejected():
    encoder = sequence_encoder((12, 1), units=(4,))
    windows = np.ones((4, 12, 1))
    with pytest.raises(KerafineError, match=r"argument `horizon`: received 0; expected an int >= 1"):
        pretrain_sequence_encoder(encoder, windows, horizon=0)
    with pytest.raises(DataError, match=r"windows of 12 timesteps'; expected at least 13 timesteps"):
        pretrain_sequence_encoder(encoder, windows, horizon=12)
    for bad in (0.0, 1.0, True, "0.1"):
        with pytest.raises(KerafineError, match=r"argument `mask_rate`: received .*strictly between 0 and 1"):
            pretrain_sequence_encoder(encoder, windows, "masked", mask_rate=bad)
    with pytest.raises(KerafineError, match=r"argument `seed`: received -1; expected None or an int >= 0"):
        pretrain_sequence_encoder(encoder, windows, "masked", seed=-1)
    with pytest.raises(KerafineError, match=r"argument `sample_weight`.*hidden timesteps itself"):
        pretrain_sequence_encoder(encoder, windows, "masked", sample_weight=np.ones(4))
