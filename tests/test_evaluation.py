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


def test_evaluate_reports_on_the_models_current_predictions(monkeypatch):
    model, x, y = _model_and_data()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[AUCTracker((x, y))])
    report = kerafine.evaluate(model, (x, y), threshold="youden")
    expected = classification_report(y, model.predict(x, verbose=0), threshold="youden")
    assert report.to_dict() == expected.to_dict()


class _FlipAtEpoch(keras.callbacks.Callback):
    """Negates the weights at the start of one epoch: that epoch's scores rank the classes backwards."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.set_weights([-w for w in self.model.get_weights()])


def test_evaluate_after_restore_best_weights_gives_the_restored_models_auc():
    from sklearn.metrics import roc_auc_score

    from kerafine.callbacks.early_stopping import EarlyStopping

    model, x, y = _model_and_data()
    model.compile(keras.optimizers.SGD(0.01), "binary_crossentropy")
    # Start from weights that rank by the informative feature: the first epochs score well.
    model.set_weights([np.array([[0.0], [1.0], [0.0], [0.0]], "float32"), np.zeros(1, "float32")])
    stop = EarlyStopping(monitor="val_auc", mode="max", patience=5, restore_best_weights=True)
    history = model.fit(
        x, y, epochs=3, verbose=0, callbacks=[_FlipAtEpoch(2), AUCTracker((x, y)), stop]
    )
    aucs = history.history["val_auc"]
    assert aucs[-1] < 0.5 < max(aucs[:-1])  # the last epoch is the worst, the best was restored
    report = kerafine.evaluate(model, (x, y))
    restored = roc_auc_score(y, model.predict(x, verbose=0).ravel())
    assert report.roc_auc == pytest.approx(restored, abs=1e-12)
    assert report.roc_auc == pytest.approx(max(aucs), abs=1e-9)


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
