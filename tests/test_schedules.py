"""Tests for kerafine.schedules."""

import math

import keras
import numpy as np
import pytest

from kerafine.errors import KerafineError
from kerafine.schedules import OneCycle, WarmupCosineDecay


def _values(schedule, steps):
    return np.asarray(keras.ops.convert_to_numpy(schedule(np.asarray(steps, "float32"))), dtype=np.float64)


def test_warmup_cosine_matches_keras_cosine_decay_with_warmup():
    ours = WarmupCosineDecay(peak_lr=2e-3, total_steps=120, warmup_steps=20, initial_lr=1e-4, final_lr=2e-5)
    keras_ref = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=1e-4,
        decay_steps=100,
        alpha=2e-5 / 2e-3,
        warmup_target=2e-3,
        warmup_steps=20,
    )
    steps = list(range(0, 140, 3))
    expected = [float(keras_ref(s)) for s in steps]  # Keras's schedule takes one scalar step at a time
    np.testing.assert_allclose(_values(ours, steps), expected, rtol=1e-5, atol=1e-9)


def test_warmup_cosine_without_warmup_starts_at_peak_and_stays_at_final_after_the_run():
    s = WarmupCosineDecay(peak_lr=0.5, total_steps=10, final_lr=0.05)
    assert float(s(0)) == pytest.approx(0.5)
    assert float(s(5)) == pytest.approx(0.05 + 0.45 * 0.5)
    assert float(s(10)) == pytest.approx(0.05)
    assert float(s(1000)) == pytest.approx(0.05)


def test_one_cycle_hits_start_peak_and_end_and_is_monotone_in_each_phase():
    s = OneCycle(max_lr=0.1, total_steps=200, pct_start=0.25, div_factor=10, final_div_factor=100)
    v = _values(s, range(0, 201))
    assert v[0] == pytest.approx(0.01)
    assert v[50] == pytest.approx(0.1)
    assert v[200] == pytest.approx(0.1 / 10 / 100, rel=1e-4)
    assert np.all(np.diff(v[:51]) > 0)
    assert np.all(np.diff(v[50:]) < 0)
    # Cosine shape: halfway up the rise is the mid-point of the two rates.
    assert v[25] == pytest.approx((0.01 + 0.1) / 2, rel=1e-5)
    assert float(s(10_000)) == pytest.approx(v[200], rel=1e-4)


@pytest.mark.parametrize(
    "schedule",
    [
        OneCycle(max_lr=0.03, total_steps=40, pct_start=0.4),
        WarmupCosineDecay(peak_lr=0.03, total_steps=40, warmup_steps=5, final_lr=1e-4),
    ],
)
def test_schedule_round_trips_with_a_saved_model(tmp_path, schedule):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(learning_rate=schedule), loss="mse")
    model.fit(np.ones((8, 3), "float32"), np.ones((8, 1), "float32"), epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: the classes are registered
    restored = loaded.optimizer._learning_rate
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    steps = [0, 3, 16, 39, 50]
    np.testing.assert_allclose(_values(restored, steps), _values(schedule, steps))
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations)


def test_schedule_works_inside_a_compiled_train_step():
    s = WarmupCosineDecay(peak_lr=0.1, total_steps=4, warmup_steps=2)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate=s), loss="mse")
    model.fit(np.ones((8, 2), "float32"), np.zeros((8, 1), "float32"), batch_size=4, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 2
    assert float(model.optimizer.learning_rate) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_lr=0.0, total_steps=10), "max_lr"),
        (dict(max_lr=-1.0, total_steps=10), "max_lr"),
        (dict(max_lr=0.1, total_steps=1), "total_steps"),
        (dict(max_lr=0.1, total_steps=10, pct_start=1.0), "pct_start"),
        (dict(max_lr=0.1, total_steps=10, div_factor=0.5), "div_factor"),
        (dict(max_lr=0.1, total_steps=10, final_div_factor=0.0), "final_div_factor"),
    ],
)
def test_one_cycle_rejects_bad_arguments(kwargs, match):
    with pytest.raises(KerafineError, match=f"Invalid value for argument `{match}`"):
        OneCycle(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(peak_lr=math.nan, total_steps=10), "peak_lr"),
        (dict(peak_lr=0.1, total_steps=0), "total_steps"),
        (dict(peak_lr=0.1, total_steps=10, warmup_steps=10), "warmup_steps"),
        (dict(peak_lr=0.1, total_steps=10, warmup_steps=-1), "warmup_steps"),
        (dict(peak_lr=0.1, total_steps=10, final_lr=0.2), "final_lr"),
        (dict(peak_lr=0.1, total_steps=10, initial_lr=-0.1), "initial_lr"),
    ],
)
def test_warmup_cosine_rejects_bad_arguments(kwargs, match):
    with pytest.raises(KerafineError, match=f"Invalid value for argument `{match}`"):
        WarmupCosineDecay(**kwargs)
