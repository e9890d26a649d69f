import keras
import numpy as np
import pytest

import kerafine
from kerafine.callbacks.auc_tracker import AUCTracker
from kerafine.errors import DataError, KerafineError
from kerafine.metrics import classification_report


def _model_and_data():
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 4)).astype("float32")
    y = (x[:, 1] + 0.5 * rng.normal(size=80) > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy", run_eagerly=True)
    return model, x, y


def test_evaluate_reports_on_the_models_predictions_and_reuses_the_last_epochs_pass(monkeypatch):
    model, x, y = _model_and_data()
    calls = []
    original = model.predict
    monkeypatch.setattr(model, "predict", lambda *a, **k: calls.append(1) or original(*a, **k))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[AUCTracker((x, y))])
    assert len(calls) == 2
    report = kerafine.evaluate(model, (x, y), threshold="youden")
    assert len(calls) == 2  # the tracker's pass of the last epoch is reused
    expected = classification_report(y, original(x, verbose=0), threshold="youden")
    assert report.to_dict() == expected.to_dict()


def test_evaluate_accepts_a_dataset_and_rejects_unlabelled_or_empty_data():
    import tensorflow as tf

    model, x, y = _model_and_data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    report = kerafine.evaluate(model, dataset, threshold=0.5)
    assert report.n_samples == 80 and report.threshold == 0.5
    with pytest.raises(DataError, match="without labels"):
        kerafine.evaluate(model, x)
    with pytest.raises(DataError, match="0 rows"):
        kerafine.evaluate(model, (x[:0], y[:0]))
    with pytest.raises(KerafineError, match="`threshold`"):
        kerafine.evaluate(model, (x, y), threshold="max")
