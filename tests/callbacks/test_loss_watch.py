"""The one loss-watch rule, and CheckpointRestart and TrainingMonitor agreeing on it."""

import math
import warnings

import numpy as np
import pytest

from kerafine.callbacks._loss_watch import MIN_HISTORY, LossWatch
from kerafine.callbacks.checkpoint_restart import CheckpointRestart
from kerafine.callbacks.training_monitor import TrainingMonitor
from tests.callbacks.test_checkpoint_restart import _fit, _model, _Poison


def _feed(watch, losses):
    """Feed per-step losses as Keras would log them (running means); return the verdict kinds."""
    kinds, total = [], 0.0
    for i, loss in enumerate(losses):
        total += loss
        kinds.append(watch.observe(total / (i + 1), steps=1).kind)
    return kinds


def test_a_rare_spike_is_not_divergence_but_a_sustained_blowup_is():
    rng = np.random.default_rng(0)
    base = list(0.3 + 0.02 * rng.normal(size=40))
    spike = base[:30] + [5.0] + base[30:]  # one batch with a rare positive: 16x the median
    assert _feed(LossWatch(), spike) == [None] * len(spike)
    blowup = base[:30] + [300.0] * 3
    kinds = _feed(LossWatch(), blowup)
    assert kinds[:30] == [None] * 30 and kinds[30] == "exploding"


def test_nothing_is_judged_before_min_history_and_nan_is_always_divergence():
    assert _feed(LossWatch(), [1.0] + [1e6] * (MIN_HISTORY - 1)) == [None] * MIN_HISTORY
    watch = LossWatch()
    assert watch.observe(math.nan).kind == "nonfinite" and watch.observe(math.inf).kind == "nonfinite"


def test_state_round_trip_continues_the_same_judgement():
    rng = np.random.default_rng(1)
    losses = list(1.0 + 0.1 * rng.normal(size=30))
    a = LossWatch()
    _feed(a, losses)
    b = LossWatch()
    b.set_state(a.get_state())
    assert b.get_state() == a.get_state()
    assert a.observe(1e3, steps=1).kind == b.observe(1e3, steps=1).kind


def test_checkpoint_restart_and_training_monitor_flag_the_same_batch(tmp_path):
    # The same blow-up (first kernel x 1e4 before epoch 2, batch 3), judged once by each callback.
    found = []
    monitor = TrainingMonitor(on_problem=found.append, every_n_batches=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _fit(_model(), [_Poison(lambda e, b: (e, b) == (1, 2), "blowup"), monitor], epochs=2)
    exploding = [(p.epoch, p.batch) for p in found if p.kind == "loss_exploding"]
    assert exploding[:1] == [(1, 2)]
    with pytest.warns(UserWarning, match=r"diverged at epoch 2, batch 3 \(the mean loss of the last"):
        _fit(_model(), [CheckpointRestart(tmp_path / "c"), _Poison(lambda e, b: (e, b) == (1, 2), "blowup")], epochs=2)
