"""membership_inference: a memorising model leaks, a regularised one does not; bad input."""

import keras
import numpy as np
import pytest

from kerafine.errors import DataError, KerafineError
from kerafine.security import membership_inference

_CACHE = {}


def _memorising(seed=0):
    """A wide MLP trained to zero loss on 60 rows of pure-noise labels: it can only memorise."""
    if seed not in _CACHE:
        _CACHE[seed] = _train_memorising(seed)
    return _CACHE[seed]


def _train_memorising(seed):
    rng = np.random.default_rng(seed)
    x, xh = rng.normal(size=(60, 10)).astype("float32"), rng.normal(size=(60, 10)).astype("float32")
    y, yh = rng.integers(0, 2, 60).astype("float32"), rng.integers(0, 2, 60).astype("float32")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((10,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    model.fit(x, y, epochs=150, batch_size=20, verbose=0)
    return model, (x, y), (xh, yh)


def _regularised(seed):
    """An L2-regularised logistic model on 2,000 rows of a fixed noisy linear rule: nothing to memorise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4000, 5)).astype("float32")
    y = (rng.random(4000) < 1 / (1 + np.exp(-(x @ np.array([1.0, -1, 0.5, 0, 0]))))).astype("float32")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=keras.regularizers.L2(1e-2))]
    )
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy")
    model.fit(x[:2000], y[:2000], epochs=5, batch_size=100, verbose=0)
    return model, (x[:2000], y[:2000]), (x[2000:], y[2000:])


def test_a_memorising_model_leaks_membership():
    model, train, holdout = _memorising()
    report = membership_inference(model, train, holdout)
    loss_attack = report.attacks[0]
    assert loss_attack.name == "loss" and loss_attack.auc.auc > 0.7 and loss_attack.auc.lower > 0.5
    assert report.leaks and report.auc >= loss_attack.auc.auc and 0 < report.advantage <= 1
    assert report.reading.startswith("membership leaks")
    # Advantage is max(TPR - FPR): at most what a perfect attack reaches, at least what chance would.
    assert report.advantage >= 2 * (report.auc - 0.5) - 0.5


def test_a_regularised_model_on_plenty_of_data_shows_no_measurable_leak():
    # Under no leak the 95 % interval covers 0.5 in about 95 % of seeds; over 5 fixed seeds we ask
    # for at least 4 covering (a 1 - 0.95^5 - 5 * 0.05 * 0.95^4 ~ 2 % chance to fail if all is right).
    covered = []
    for seed in range(5):
        model, train, holdout = _regularised(seed)
        report = membership_inference(model, train, holdout)
        best = report.strongest.auc
        covered.append(best.lower <= 0.5 <= best.upper)
        assert abs(best.auc - 0.5) < 0.05
    assert sum(covered) >= 4, covered
    model, train, holdout = _regularised(0)
    report = membership_inference(model, train, holdout)
    if all(a.auc.lower <= 0.5 <= a.auc.upper for a in report.attacks):
        assert report.reading.startswith("no measurable leak") and not report.leaks


def test_report_text_json_html_and_figure():
    model, train, holdout = _memorising()
    report = membership_inference(model, train, holdout)
    d = report.to_dict()
    assert [a["name"] for a in d["attacks"]] == ["loss", "confidence"] and d["n_train"] == 60
    assert "Membership inference (60 training vs 60 held-out rows)" in str(report)
    assert report.reading in str(report) and "<ul>" in report._repr_html_()
    fig = report.plot()
    assert len(fig.axes[0].get_lines()) == 3  # two attacks and the chance line


def test_a_logits_model_gives_the_same_attacks_as_its_probability_twin():
    model, (x, y), (xh, yh) = _memorising()
    dense1, dense2 = model.layers
    logits = keras.Sequential([keras.Input((10,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(1)])
    logits.layers[0].set_weights(dense1.get_weights())
    logits.layers[1].set_weights(dense2.get_weights())
    logits.compile("sgd", keras.losses.BinaryCrossentropy(from_logits=True))
    got = membership_inference(logits, (x, y), (xh, yh))
    want = membership_inference(model, (x, y), (xh, yh))
    for a, b in zip(got.attacks, want.attacks):
        assert a.auc.auc == pytest.approx(b.auc.auc, abs=0.01) and a.auc.auc > 0.6


def test_holdout_overlapping_train_is_refused():
    model, (x, y), (xh, yh) = _memorising()
    mixed = (np.concatenate([xh[:50], x[:3]]), np.concatenate([yh[:50], y[:3]]))
    with pytest.raises(
        DataError, match=r"argument `holdout_data`: received '3 row\(s\) also in train_data \(first: holdout row 50\)'"
    ):
        membership_inference(model, (x, y), mixed)


def test_other_bad_inputs():
    model, (x, y), (xh, yh) = _memorising()
    with pytest.raises(DataError, match=r"argument `train_data`: received '5 rows'; expected at least 10 rows"):
        membership_inference(model, (x[:5], y[:5]), (xh, yh))
    with pytest.raises(DataError, match=r"argument `holdout_data`.*\(x, y\) tuple"):
        membership_inference(model, (x, y), xh)
    with pytest.raises(DataError, match=r"argument `holdout_data`: received 'labels of shape \(59,\)'"):
        membership_inference(model, (x, y), (xh, yh[:59]))
    with pytest.raises(KerafineError, match=r"argument `level`"):
        membership_inference(model, (x, y), (xh, yh), level=0)
    uncompiled = keras.Sequential([keras.Input((10,)), keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(KerafineError, match=r"argument `loss`.*compile the model or pass loss="):
        membership_inference(uncompiled, (x, y), (xh, yh))
