import numpy as np
import pytest

from kerafine.callbacks import predictions
from kerafine.errors import DataError, KerafineError


@pytest.fixture
def model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="embedding")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="out")(hidden)
    m = keras.Model(inputs, outputs)
    m.compile("sgd", "binary_crossentropy")
    return m


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


def test_second_request_in_the_same_model_state_reuses_the_first_pass(model, arrays, monkeypatch):
    calls = []
    original = model.predict
    monkeypatch.setattr(model, "predict", lambda *a, **k: calls.append(1) or original(*a, **k))
    first = predictions.predict(model, predictions.EvalData(arrays))
    second = predictions.predict(model, predictions.EvalData(arrays))  # another callback, same arrays
    assert second is first and len(calls) == 1
    np.testing.assert_allclose(first.y_pred, original(arrays[0], verbose=0), rtol=1e-6)


def test_a_weight_update_invalidates_the_cache(model, arrays):
    data = predictions.EvalData(arrays)
    before = predictions.predict(model, data)
    model.fit(*arrays, epochs=1, verbose=0)
    after = predictions.predict(model, data)
    assert after is not before
    assert not np.allclose(after.y_pred, before.y_pred)


def test_dataset_generator_and_arrays_give_the_same_outputs_and_labels(model, arrays):
    import tensorflow as tf

    x, y = arrays
    ref = predictions.predict(model, predictions.EvalData(arrays))
    ds = predictions.predict(model, predictions.EvalData(tf.data.Dataset.from_tensor_slices((x, y)).batch(7)))

    def gen():
        for i in range(0, 40, 16):
            yield x[i : i + 16], y[i : i + 16]

    g = predictions.EvalData(gen())
    from_gen = predictions.predict(model, g)
    again = predictions.predict(model, g)  # a generator is materialised, so a second epoch still has data
    for got in (ds, from_gen, again):
        np.testing.assert_allclose(got.y_pred, ref.y_pred, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got.y_true, y)


def test_layer_outputs_give_embeddings(model, arrays):
    emb = predictions.predict(model, predictions.EvalData(arrays), layer="embedding")
    assert emb.y_pred.shape == (40, 3)
    with pytest.raises(KerafineError, match="argument `layer`.*'nope'.*embedding"):
        predictions.predict(model, predictions.EvalData(arrays), layer="nope")


def test_bad_validation_data_is_rejected_before_any_prediction(arrays):
    x, y = arrays
    with pytest.raises(DataError, match="40 rows but the labels have 39"):
        predictions.EvalData((x, y[:-1]))
    with pytest.raises(DataError, match="0 rows"):
        predictions.EvalData((x[:0], y[:0]))
    with pytest.raises(KerafineError, match="argument `batch_size`"):
        predictions.EvalData(arrays, batch_size=0)
    with pytest.raises(DataError, match="argument `validation_data`"):
        predictions.EvalData(42)


def test_an_empty_dataset_is_a_clear_error(model):
    import tensorflow as tf

    empty = tf.data.Dataset.from_tensor_slices((np.zeros((0, 4), "float32"), np.zeros(0))).batch(4)
    with pytest.raises(DataError, match="yielded no batches"):
        predictions.predict(model, predictions.EvalData(empty))
