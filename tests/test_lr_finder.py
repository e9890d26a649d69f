"""Tests for kerafine.lr_finder."""

import json

import keras
import numpy as np
import pytest

from kerafine.errors import DataError, KerafineError
from kerafine.lr_finder import LRFindResult, lr_find


def _linear_problem(sigma, n, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = (sigma * rng.normal(size=(n, d))).astype("float32")
    y = (x @ rng.normal(size=(d, 1))).astype("float32")
    return x, y


@pytest.mark.parametrize("sigma", [1.0, 3.0])
def test_suggestion_falls_in_the_analytic_good_range_of_a_quadratic(seeded, sigma):
    # Mean squared error of a linear model on inputs with covariance sigma^2 I has
    # Hessian 2 sigma^2 I: plain gradient descent contracts the error by
    # |1 - lr * lam| per step, lam = 2 sigma^2. "Good" means stable and at least
    # 10% progress per step: |1 - lr * lam| <= 0.9, i.e. lr in [0.1/lam, 1.9/lam].
    lam = 2 * sigma**2
    low, high = 0.1 / lam, 1.9 / lam
    x, y = _linear_problem(sigma, n=100 * 64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    result = lr_find(model, (x, y), batch_size=64, end_lr=10.0)
    assert low <= result.suggestion <= high, (result, low, high)
    assert result.diverged and len(result.learning_rates) < 100  # stopped once the loss blew up
    assert result.learning_rates[-1] > 2 / lam  # ... beyond the stability limit, not before
    # The loss turned up at the edge of stability: a tenth of its minimum is used.
    assert result.rule == "min/10" and "then rose" in result.reason
    assert result.suggestion == pytest.approx(result.min_loss_lr / 10)


def test_a_loss_still_falling_at_end_lr_uses_the_steepest_descent(seeded):
    # Curvature 2: stable up to lr = 1, so a ramp ending at 0.3 never turns up.
    x, y = _linear_problem(1.0, n=40 * 32)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(keras.optimizers.SGD(), loss="mse")
    result = lr_find(model, (x, y), start_lr=1e-4, end_lr=0.3, num_steps=40)
    assert not result.diverged
    assert result.rule == "steepest" and "still falling" in result.reason
    assert result.suggestion == result.steepest_lr
    assert result.learning_rates[0] < result.suggestion < result.min_loss_lr


def _transfer_model(frozen):
    backbone = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(8, activation="relu"),
        ],
        name="backbone",
    )
    backbone.trainable = not frozen
    inp = keras.Input((6,))
    h = backbone(inp, training=False)
    h = keras.layers.Dropout(0.2)(h)
    out = keras.layers.Dense(3, activation="softmax", name="head")(h)
    model = keras.Model(inp, out)
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=10, decay_rate=0.9)
    model.compile(keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("frozen", [True, False], ids=["frozen_backbone", "unfrozen"])
def test_model_weights_optimizer_state_and_iteration_count_are_left_bit_identical(seeded, frozen):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(640, 6)).astype("float32")
    y = rng.integers(0, 3, size=640)
    model = _transfer_model(frozen)
    model.fit(x[:64], y[:64], batch_size=16, epochs=1, verbose=0)  # non-trivial optimizer state
    weights = [w.copy() for w in model.get_weights()]
    opt = model.optimizer
    opt_vars = [np.array(v.numpy(), copy=True) for v in opt.variables]
    iterations = int(opt.iterations)
    trainable = [w.path for w in model.trainable_weights]

    result = lr_find(model, (x, y), num_steps=20, batch_size=32, start_lr=1e-5, end_lr=10.0)

    assert model.optimizer is opt
    assert int(opt.iterations) == iterations == 4
    assert len(opt.variables) == len(opt_vars)
    for before, v in zip(opt_vars, opt.variables):
        np.testing.assert_array_equal(v.numpy(), before)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(after, before)
    assert [w.path for w in model.trainable_weights] == trainable
    assert np.isfinite(result.suggestion) and result.suggestion > 0
    assert len(result.learning_rates) >= 10
    # The original still trains normally afterwards, from its own state.
    model.fit(x[:32], y[:32], batch_size=16, epochs=1, verbose=0)
    assert int(opt.iterations) == 6


def test_a_flat_curve_falls_back_to_min_over_10_and_says_why(seeded):
    x, y = _linear_problem(1.0, n=20 * 32)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(), loss="mse")
    # Rates far too small to move the weights: the loss stays flat.
    result = lr_find(model, (x, y), start_lr=1e-10, end_lr=1e-8, num_steps=20)
    assert result.rule == "min/10"
    assert "fell only" in result.reason or "never fell" in result.reason
    assert result.suggestion == pytest.approx(result.min_loss_lr / 10)
    assert not result.diverged and len(result.learning_rates) == 20
    np.testing.assert_allclose(result.learning_rates[[0, -1]], [1e-10, 1e-8], rtol=1e-6)


def test_dataset_input_and_result_outputs(seeded):
    import matplotlib

    matplotlib.use("Agg")
    import tensorflow as tf

    x, y = _linear_problem(1.0, n=30 * 16)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(), loss="mse")
    result = lr_find(model, ds, num_steps=30, start_lr=1e-4, end_lr=10.0)
    assert isinstance(result, LRFindResult)
    frame = result.to_frame()
    assert list(frame.columns) == ["learning_rate", "loss", "smoothed_loss"]
    assert len(frame) == len(result.learning_rates)
    assert np.all(np.diff(result.learning_rates) > 0)
    json.dumps(result.to_dict())
    fig = result.plot()
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert any(f"{result.suggestion:.2g}" in t.get_text() for t in ax.get_legend().get_texts())
    assert "suggestion" in result._repr_html_()


# ---------------------------------------------------------------- bad input


def _compiled():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(), loss="mse")
    return model


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(start_lr=1.0, end_lr=1.0), r"`start_lr`: received 1.0; expected a float smaller than end_lr=1.0"),
        (dict(start_lr=0.1, end_lr=0.01), r"`start_lr`: received 0.1"),
        (dict(start_lr=0.0), r"`start_lr`: received 0.0"),
        (dict(end_lr=float("inf")), r"`end_lr`"),
        (dict(num_steps=5), r"`num_steps`: received 5; expected an int >= 10"),
        (dict(smoothing=1.0), r"`smoothing`"),
        (dict(diverge_factor=1.0), r"`diverge_factor`"),
        (dict(batch_size=0), r"`batch_size`"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    x, y = _linear_problem(1.0, n=64)
    with pytest.raises(KerafineError, match=match):
        lr_find(_compiled(), (x, y), **{"num_steps": 10, "batch_size": 4, **kwargs})


def test_uncompiled_model_is_rejected():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    x, y = _linear_problem(1.0, n=64)
    with pytest.raises(KerafineError, match=r"`model`.*expected a compiled model. Call model.compile"):
        lr_find(model, (x, y), num_steps=10, batch_size=4)


def test_small_data_is_cycled_to_num_steps_and_the_result_says_so(seeded):
    # The README's example: 1,500 rows at batch 32 make 46 batches, fewer than the
    # default num_steps=100. (This raised DataError before cycling.)
    x, y = _linear_problem(1.0, n=1500)
    model = _compiled()
    result = lr_find(model, (x, y), start_lr=1e-4, end_lr=0.3)
    assert len(result.learning_rates) == 100 and not result.diverged
    assert result.cycled and result.batches_per_pass == 46
    assert result.epochs_of_data == pytest.approx(100 / 46)
    assert "cycled: 46 batches per pass, 2.17 epochs of data" in repr(result)
    assert "data cycled" in result._repr_html_()
    assert result.to_dict()["cycled"] is True
    assert model.optimizer.iterations == 0  # the copy trained, not the model


def test_enough_data_is_not_cycled(seeded):
    x, y = _linear_problem(1.0, n=20 * 32)
    result = lr_find(_compiled(), (x, y), start_lr=1e-4, end_lr=0.3, num_steps=20)
    assert not result.cycled and result.batches_per_pass is None and "cycled" not in repr(result)


def test_a_short_dataset_is_iterated_again():
    import tensorflow as tf

    x, y = _linear_problem(1.0, n=100)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(25)  # 4 batches
    result = lr_find(_compiled(), ds, num_steps=10, start_lr=1e-4, end_lr=0.1)
    assert len(result.losses) == 10 and result.cycled and result.batches_per_pass == 4
    assert result.epochs_of_data == pytest.approx(2.5)


def test_data_that_cannot_be_cycled_is_rejected():
    x, y = _linear_problem(1.0, n=100)
    model = _compiled()
    with pytest.raises(DataError, match=r"100 rows make no full batch of batch_size=128"):
        lr_find(model, (x, y), batch_size=128)
    assert model.optimizer.iterations == 0  # nothing ran

    def one_shot():
        for i in range(4):
            yield x[i * 25 : (i + 1) * 25], y[i * 25 : (i + 1) * 25]

    with pytest.raises(
        DataError, match=r"ran out after 4 batches, fewer than num_steps=10, and a one-shot generator cannot be cycled"
    ):
        lr_find(model, one_shot(), num_steps=10)


def test_inputs_without_targets_are_rejected():
    x, _ = _linear_problem(1.0, n=64)
    with pytest.raises(KerafineError, match=r"`train_data`"):
        lr_find(_compiled(), x, num_steps=10, batch_size=4)
