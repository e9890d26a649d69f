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
    cache = predictions.PredictionCache()
    first = cache.predict(model, predictions.EvalData(arrays))
    second = cache.predict(model, predictions.EvalData(arrays))  # another callback, same arrays
    assert second.y_pred is first.y_pred and len(calls) == 1
    np.testing.assert_allclose(first.y_pred, original(arrays[0], verbose=0), rtol=1e-6)


def test_a_weight_update_invalidates_the_cache(model, arrays):
    data = predictions.EvalData(arrays)
    cache = predictions.PredictionCache()
    before = cache.predict(model, data)
    model.fit(*arrays, epochs=1, verbose=0)
    after = cache.predict(model, data)
    assert cache.passes == 2
    assert not np.allclose(after.y_pred, before.y_pred)


def test_x_alone_and_x_with_labels_share_one_prediction_pass(model, arrays, monkeypatch):
    calls = []
    original = model.predict
    monkeypatch.setattr(model, "predict", lambda *a, **k: calls.append(1) or original(*a, **k))
    x, y = arrays
    cache = predictions.PredictionCache()
    labelled = cache.predict(model, predictions.EvalData((x, y)))
    alone = cache.predict(model, predictions.EvalData(x))
    weighted = cache.predict(model, predictions.EvalData((x, y, np.full(len(x), 2.0))))
    assert len(calls) == 1 and cache.passes == 1
    assert alone.y_pred is labelled.y_pred and alone.y_true is None
    np.testing.assert_array_equal(labelled.y_true, y)
    np.testing.assert_array_equal(weighted.sample_weight, np.full(len(x), 2.0))  # each caller keeps its own labels


@pytest.mark.parametrize("change", ["set_weights", "load_weights", "assign_one_bias"])
def test_any_weight_change_invalidates_the_cache_even_without_an_optimizer_step(model, arrays, tmp_path, change):
    cache = predictions.PredictionCache()
    data = predictions.EvalData(arrays)
    old = cache.predict(model, data).y_pred
    old_weights = model.get_weights()
    new_weights = [w + 0.5 for w in old_weights]
    if change == "set_weights":
        model.set_weights(new_weights)
    elif change == "load_weights":
        other = model.__class__.from_config(model.get_config())
        other.set_weights(new_weights)
        other.save_weights(tmp_path / "w.weights.h5")
        model.load_weights(tmp_path / "w.weights.h5")
    else:
        bias = model.get_layer("out").bias
        bias.assign(bias.numpy() + 0.5)
    iterations = int(model.optimizer.iterations.numpy())
    new = cache.predict(model, data).y_pred
    assert int(model.optimizer.iterations.numpy()) == iterations == 0  # no step: only the weights tell
    assert cache.passes == 2
    np.testing.assert_allclose(new, model.predict(arrays[0], verbose=0), rtol=1e-6)
    assert not np.allclose(new, old)


def test_dataset_generator_and_arrays_give_the_same_outputs_and_labels(model, arrays):
    import tensorflow as tf

    x, y = arrays
    cache = predictions.PredictionCache()
    ref = predictions.predict(model, predictions.EvalData(arrays))
    ds = predictions.predict(model, predictions.EvalData(tf.data.Dataset.from_tensor_slices((x, y)).batch(7)))

    def gen():
        for i in range(0, 40, 16):
            yield x[i : i + 16], y[i : i + 16]

    g = predictions.EvalData(gen())
    from_gen = cache.predict(model, g)
    again = cache.predict(model, g)  # a generator is materialised, so a second epoch still has data
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
