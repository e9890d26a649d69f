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
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[_FlipAtEpoch(2), AUCTracker((x, y)), stop])
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


# ------------------------------------------------------------ non-finite inputs (issue 19)


def _tabular_with_nan_rows(n=600, n_bad=149, seed=7):
    """A trained tabular ReLU model and test rows of which ``n_bad`` have a NaN feature."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = (x[:, 0] - x[:, 2] + 0.5 * rng.normal(size=n) > 0).astype("float32")
    # The hidden activation maps NaN to 0 by construction (NaN > 0 is False on every CPU), as
    # the ReLU of the CPU did: the NaN rows then get finite scores, the silent case.
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(8),
            keras.layers.Lambda(lambda h: keras.ops.where(h > 0, h, 0.0)),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    model.fit(x, y, epochs=3, verbose=0)
    bad = np.sort(rng.choice(n, size=n_bad, replace=False))
    x_test = x.copy()
    x_test[bad, 3] = np.nan
    return model, x_test, y, bad


def test_rows_with_a_nan_feature_are_refused_by_default_naming_count_and_first_rows():
    # Issue 19: 149 rows with a NaN feature were scored (all alike) and counted silently.
    model, x, y, bad = _tabular_with_nan_rows()
    assert np.isfinite(model.predict(x[bad], verbose=0)).all()  # scored, finite: nothing else would object
    first = ", ".join(str(i) for i in bad[:5])
    with pytest.raises(
        DataError,
        match=rf"`data`: 149 of 600 rows hold NaN or inf \(inputs: 149; first rows \[{first}, \.\.\.\]\)"
        r".*non_finite=\"exclude\"",
    ):
        kerafine.evaluate(model, (x, y), threshold=0.5)


def test_non_finite_exclude_evaluates_the_finite_rows_and_the_report_says_how_many_were_left_out(tmp_path):
    model, x, y, bad = _tabular_with_nan_rows()
    keep = np.setdiff1d(np.arange(len(y)), bad)
    report = kerafine.evaluate(model, (x, y), threshold=0.5, non_finite="exclude")
    clean = kerafine.evaluate(model, (x[keep], y[keep]), threshold=0.5)
    assert report.n_samples == 451 and report.nonfinite_excluded == 149
    assert report.accuracy == clean.accuracy and report.roc_auc == clean.roc_auc
    assert "149 rows with NaN/inf inputs (not evaluated)" in str(report)
    assert "149 rows with NaN/inf inputs (not evaluated)" in report._repr_html_()
    import json

    assert json.loads(report.to_json())["nonfinite_excluded"] == 149
    assert clean.nonfinite_excluded == 0 and "excluded" not in str(clean)


def test_non_finite_rows_of_a_dataset_are_refused_or_excluded_after_the_pass():
    import tensorflow as tf

    model, x, y, bad = _tabular_with_nan_rows(n=200, n_bad=3)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    with pytest.raises(DataError, match=r"3 of 200 rows hold NaN or inf"):
        kerafine.evaluate(model, ds, threshold=0.5)
    report = kerafine.evaluate(model, ds, threshold=0.5, non_finite="exclude")
    assert (report.n_samples, report.nonfinite_excluded) == (197, 3)


def test_evaluate_refuses_data_whose_every_row_is_non_finite_and_an_unknown_option():
    model, x, y = _model_and_data()
    x[:, 0] = np.inf
    with pytest.raises(DataError, match="every one of its 80 rows has NaN or inf inputs"):
        kerafine.evaluate(model, (x, y), non_finite="exclude")
    with pytest.raises(KerafineError, match=r"`non_finite`: received 'drop'; expected 'raise' or 'exclude'"):
        kerafine.evaluate(model, (x, y), non_finite="drop")
