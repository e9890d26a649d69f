"""ResumableSequence: the order is a function of (seed, epoch) only."""

import warnings

import keras
import numpy as np
import pytest

from kerafine.data.resumable import ResumableSequence
from kerafine.errors import DataError, KerafineError


def _rows(seq):
    return np.concatenate([seq[i][1] for i in range(len(seq))])


def _data(n=10):
    return np.arange(n, dtype="float32")[:, None], np.arange(n, dtype="float32")


def test_each_epoch_visits_every_row_once_in_a_seeded_order():
    x, y = _data(10)
    seq = ResumableSequence(x, y, batch_size=4, seed=5)
    orders = []
    for epoch in range(3):
        seq.set_epoch(epoch)
        rows = _rows(seq)
        assert sorted(rows.tolist()) == list(range(10))
        orders.append(rows.tolist())
    assert len({tuple(o) for o in orders}) == 3  # a new order every epoch

    other = ResumableSequence(x, y, batch_size=4, seed=5)  # "another process"
    other.set_epoch(1)
    assert _rows(other).tolist() == orders[1]
    third = ResumableSequence(x, y, batch_size=4, seed=6)
    third.set_epoch(1)
    assert _rows(third).tolist() != orders[1]


def test_epoch_advances_on_each_epoch_begin_unless_pinned():
    x, y = _data()
    seq = ResumableSequence(x, y, batch_size=5, seed=1)
    seq.on_epoch_begin()
    assert seq.epoch == 0
    seq.on_epoch_end()
    seq.on_epoch_begin()
    assert seq.epoch == 1
    seq.set_epoch(7)
    seq.on_epoch_begin()  # the pin wins over the count once
    assert seq.epoch == 7
    seq.on_epoch_begin()
    assert seq.epoch == 8


def test_unshuffled_in_order_and_drop_remainder():
    x, y = _data(10)
    seq = ResumableSequence(x, y, batch_size=4, shuffle=False, drop_remainder=True)
    assert len(seq) == 2
    assert _rows(seq).tolist() == list(range(8))


def test_transform_gets_a_generator_fixed_by_seed_epoch_and_index():
    x, y = _data(8)

    def jitter(xb, yb, rng):
        return xb + rng.normal(size=xb.shape), yb

    a = ResumableSequence(x, y, batch_size=4, seed=2, transform=jitter)
    b = ResumableSequence(x, y, batch_size=4, seed=2, transform=jitter)
    a.set_epoch(3)
    b.set_epoch(3)
    np.testing.assert_array_equal(a[1][0], b[1][0])
    b.set_epoch(4)
    assert not np.array_equal(a[1][0], b[1][0])


def test_dict_inputs_and_sample_weight():
    x = {"a": np.arange(6.0), "b": np.arange(6.0) * 2}
    seq = ResumableSequence(x, np.arange(6.0), sample_weight=np.arange(6.0) + 1, batch_size=3, seed=0)
    xb, yb, wb = seq[0]
    np.testing.assert_array_equal(xb["b"], 2 * yb)
    np.testing.assert_array_equal(wb, yb + 1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(batch_size=0), KerafineError, r"`batch_size`: received 0; expected an int >= 1"),
        (dict(seed=-1), KerafineError, r"`seed`: received -1"),
        (dict(transform="flip"), KerafineError, r"`transform`: received 'flip'"),
        (dict(y=np.arange(3.0)), DataError, r"share their first dimension"),
        (dict(batch_size=20, drop_remainder=True), DataError, r"no complete batch"),
    ],
)
def test_bad_inputs(kwargs, error, match):
    args = dict(x=np.zeros((10, 2)), y=np.zeros(10))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ResumableSequence(**args)


def test_fit_with_keras_shuffle_warns_that_order_cannot_be_replayed():
    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    seq = ResumableSequence(x, x[:, :1], batch_size=4, seed=0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", loss="mse")
    keras.utils.set_random_seed(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(seq, epochs=1, verbose=0, shuffle=True)
    assert any("pass shuffle=False to fit()" in str(w.message) for w in caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(seq, epochs=2, verbose=0, shuffle=False)
    assert not any("out of order" in str(w.message) for w in caught)
