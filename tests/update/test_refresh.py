"""refresh: replay mix, fine_tune's rules (BatchNorm frozen, fresh optimizer), bad input."""

import numpy as np
import pytest

from kerafine.errors import DataError, KerafineError
from kerafine.update import refresh, replay_mix
from tests.update._models import data, transfer_model


def test_replay_mix_draws_the_asked_share_of_old_rows_without_replacement():
    x_new, y_new = np.zeros((140, 2)), np.zeros(140)
    x_old = np.arange(1000, dtype=float).repeat(2).reshape(-1, 2)
    x, y, n = replay_mix((x_new, y_new), (x_old, np.ones(1000)), replay_fraction=0.3, seed=1)
    assert n == 60 and len(x) == 200
    old_rows = x[y == 1]  # the old rows kept their labels
    assert len(old_rows) == 60
    assert len(np.unique(old_rows[:, 0])) == 60  # no old row drawn twice


def test_replay_mix_is_capped_by_the_old_data():
    x, y, n = replay_mix((np.zeros((100, 2)), np.zeros(100)), (np.ones((10, 2)), np.ones(10)), 0.5)
    assert n == 10 and len(x) == 110


def test_no_replay_is_the_new_data_shuffled():
    x_new = np.arange(50, dtype=float).reshape(-1, 1)
    x, y, n = replay_mix((x_new, np.zeros(50)), None, 0.3)
    assert n == 0 and sorted(x[:, 0]) == list(range(50))


def test_refresh_keeps_batchnorm_statistics_and_uses_a_fresh_optimizer():
    import keras

    model = transfer_model()
    x, y = data(300)
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    old_optimizer = model.optimizer
    bn = model.get_layer("encoder").get_layer("enc_bn")
    stats = [v.numpy().copy() for v in (bn.moving_mean, bn.moving_variance)]
    dense_before = model.get_layer("encoder").get_layer("enc_dense").get_weights()[0].copy()
    xn, yn = data(200, seed=1, shift=0.5)
    r = refresh(model, (xn, yn), replay=(x, y), epochs=2, learning_rate=1e-2, verbose=0)
    assert r.model is model and r.n_new == 200 and r.n_replayed == 86
    assert model.optimizer is not old_optimizer
    assert [v.numpy() for v in (bn.moving_mean, bn.moving_variance)][0] == pytest.approx(stats[0])
    assert bn.moving_variance.numpy() == pytest.approx(stats[1])
    # The backbone itself was trained (unfreeze_top="all").
    assert not np.allclose(model.get_layer("encoder").get_layer("enc_dense").get_weights()[0], dense_before)
    assert r.fine_tune.epochs == 2


def test_replay_limits_forgetting_of_the_old_data():
    # Old and new data follow different rules: training on the new alone forgets the old; with
    # replay the old ROC-AUC stays close to where it was.
    import keras

    from kerafine.metrics import roc_auc

    rng = np.random.default_rng(0)
    x_old = rng.normal(size=(1200, 4)).astype("float32")
    y_old = (x_old[:, 0] > 0).astype("float32")
    x_new = rng.normal(size=(600, 4)).astype("float32") + np.float32([0, 0, 2, 0])
    y_new = (x_new[:, 1] > 0).astype("float32")
    x_test = rng.normal(size=(800, 4)).astype("float32")
    y_test = (x_test[:, 0] > 0).astype("float32")

    def trained():
        m = transfer_model(seed=3, units=16, batchnorm=False)
        m.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
        m.fit(x_old, y_old, epochs=15, batch_size=64, verbose=0)
        return m

    base = trained()
    before = roc_auc(y_test, base.predict(x_test, verbose=0))
    alone = refresh(trained(), (x_new, y_new), None, epochs=15, learning_rate=1e-2, batch_size=64, verbose=0).model
    mixed = refresh(
        trained(),
        (x_new, y_new),
        (x_old, y_old),
        replay_fraction=0.5,
        epochs=15,
        learning_rate=1e-2,
        batch_size=64,
        verbose=0,
    ).model
    auc_alone = roc_auc(y_test, alone.predict(x_test, verbose=0))
    auc_mixed = roc_auc(y_test, mixed.predict(x_test, verbose=0))
    assert before > 0.95
    assert auc_alone < before - 0.2  # forgot (about chance level on this data)
    assert auc_mixed > before - 0.1  # remembered most of it
    assert auc_mixed > auc_alone + 0.25
    assert roc_auc(y_new, mixed.predict(x_new, verbose=0)) > 0.9  # and learned the new rule


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(new_data=None), KerafineError, "new_data"),
        (dict(new_data=(np.zeros((0, 4)), np.zeros(0))), DataError, "new_data"),
        (dict(new_data=(np.zeros((5, 4)), np.zeros(4))), DataError, "new_data"),
        (dict(new_data=(np.zeros((5, 3)), np.zeros(5))), DataError, "new_data.*input shape"),
        (dict(replay=(np.zeros((5, 3)), np.zeros(5))), DataError, "replay"),
        (dict(replay_fraction=1.0), KerafineError, "replay_fraction"),
        (dict(epochs=0), KerafineError, "epochs"),
    ],
)
def test_bad_input_is_refused_before_training(kwargs, error, match):
    model = transfer_model()
    args = dict(new_data=(np.zeros((5, 4), "float32"), np.zeros(5, "float32")))
    args.update(kwargs)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(error, match=match):
        refresh(model, **args)
    assert not getattr(model, "compiled", False)  # nothing was compiled or trained
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
