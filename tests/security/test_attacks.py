"""fgsm / pgd: ART as the oracle, a closed form on a linear model, input handling and bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerafine.errors import DataError, KerafineError
from kerafine.security import fgsm, pgd


def _mlp(n_in=4, n_out=3, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((n_in,)),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dense(n_out, activation="softmax" if n_out > 1 else "sigmoid"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy" if n_out > 1 else "binary_crossentropy")
    return model


def _data(n=300, n_in=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, n_in)).astype("float32")
    y = rng.integers(0, classes, n)
    return x, y


# ------------------------------------------------------------------ oracle: ART


def _art_classifier(model, loss, n_in, classes, clip):
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(model, nb_classes=classes, input_shape=(n_in,), loss_object=loss, clip_values=clip)


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_fgsm_equals_art_fast_gradient_method(eps):
    from art.attacks.evasion import FastGradientMethod

    model, (x, y) = _mlp(), _data()
    clf = _art_classifier(model, keras.losses.SparseCategoricalCrossentropy(), 4, 3, (-1.2, 1.2))
    expected = FastGradientMethod(clf, eps=eps, batch_size=64).generate(x, np.eye(3)[y])
    got = fgsm(model, x, y, eps, clip=(-1.2, 1.2))
    # Most rows move by eps in every coordinate and some hit the clip range: a real attack, not a copy.
    assert np.mean(np.isclose(np.abs(got - x), eps, atol=1e-6)) > 0.5
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("steps, step_size", [(5, 0.05), (10, 0.02)])
def test_pgd_without_random_start_equals_art_projected_gradient_descent(steps, step_size):
    from art.attacks.evasion import ProjectedGradientDescent

    model, (x, y) = _mlp(seed=1), _data(seed=1)
    clf = _art_classifier(model, keras.losses.SparseCategoricalCrossentropy(), 4, 3, (-1.2, 1.2))
    art = ProjectedGradientDescent(
        clf, eps=0.15, eps_step=step_size, max_iter=steps, num_random_init=0, batch_size=64, verbose=False
    )
    expected = art.generate(x, np.eye(3)[y])
    got = pgd(model, x, y, 0.15, steps=steps, step_size=step_size, random_start=False, clip=(-1.2, 1.2))
    assert np.abs(got - x).max() <= 0.15 + 1e-6
    np.testing.assert_allclose(got, expected, atol=1e-5)


# ART's classifiers need nb_classes >= 2, so one-output sigmoid models are checked against the
# closed form below instead.


# ------------------------------------------------------------------ closed form


def test_fgsm_on_logistic_regression_moves_each_feature_against_the_label():
    # For p = sigmoid(w.x + b) and binary cross-entropy, d loss / d x = (p - y) w: the FGSM step is
    # -eps * sign(w) for a positive and +eps * sign(w) for a negative (p is strictly inside (0, 1)).
    w = np.array([[2.0], [-0.5], [1.0]], "float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.layers[0].set_weights([w, np.array([0.1], "float32")])
    model.compile("sgd", "binary_crossentropy")
    x = np.random.default_rng(0).normal(size=(50, 3)).astype("float32")
    y = np.arange(50) % 2
    expected = x + 0.25 * np.where(y[:, None] == 1, -1.0, 1.0) * np.sign(w[:, 0])[None, :]
    np.testing.assert_allclose(fgsm(model, x, y, 0.25, clip=None), expected, rtol=0, atol=1e-6)
    # On a linear model every PGD step points the same way: it ends in the same corner.
    np.testing.assert_allclose(pgd(model, x, y, 0.25, steps=5, random_start=False), expected, atol=1e-6)


# ------------------------------------------------------------------ behaviour


def test_pgd_stays_in_the_box_and_does_not_depend_on_the_batch_size():
    model, (x, y) = _mlp(seed=3), _data(seed=3)
    a = pgd(model, x, y, 0.2, steps=4, seed=7, batch_size=256)
    b = pgd(model, x, y, 0.2, steps=4, seed=7, batch_size=37)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert np.abs(a - x).max() <= 0.2 + 1e-6
    c = pgd(model, x, y, 0.2, steps=4, seed=8)
    assert not np.allclose(a, c)  # the seed drives the random start


def test_pgd_increases_the_loss_more_than_random_noise():
    model, (x, y) = _mlp(seed=4), _data(seed=4)
    model.fit(x, y, epochs=20, verbose=0)
    loss = keras.losses.SparseCategoricalCrossentropy()
    adv = pgd(model, x, y, 0.2)
    noise = np.clip(x + np.random.default_rng(0).choice([-0.2, 0.2], x.shape), -10, 10).astype("float32")
    clean_l, adv_l, noise_l = (float(loss(y, model.predict(v, verbose=0))) for v in (x, adv, noise))
    assert adv_l > noise_l > 0 and adv_l > clean_l


def test_raw_image_model_is_clipped_to_0_255_by_default():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4, 4, 1)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Flatten(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.choice([0.0, 255.0], size=(20, 4, 4, 1)).astype("float32")  # every pixel on a bound
    y = rng.integers(0, 2, 20)
    adv = fgsm(model, x, y, 8.0)
    assert adv.min() >= 0.0 and adv.max() <= 255.0
    assert np.mean(adv != x) > 0.2  # pixels moved inwards where the gradient pointed inwards
    unclipped = fgsm(model, x, y, 8.0, clip=None)
    assert unclipped.min() < 0.0 or unclipped.max() > 255.0


def _dict_model():
    num = keras.Input((2,), name="num")
    cat = keras.Input((1,), name="city", dtype="string")
    idx = keras.Input((1,), name="idx", dtype="int32")
    lookup = keras.layers.StringLookup(vocabulary=["a", "b"], output_mode="one_hot")(cat)
    idx_f = keras.layers.Lambda(lambda t: keras.ops.cast(t, "float32"))(idx)
    h = keras.layers.Concatenate()([num, keras.layers.Reshape((3,))(lookup), idx_f])
    model = keras.Model({"num": num, "city": cat, "idx": idx}, keras.layers.Dense(1, activation="sigmoid")(h))
    model.compile("sgd", "binary_crossentropy")
    return model


def _dict_data(n=16):
    rng = np.random.default_rng(0)
    return {
        "num": rng.normal(size=(n, 2)).astype("float32"),
        "city": rng.choice(["a", "b"], size=(n, 1)).astype(object),
        "idx": rng.integers(0, 3, size=(n, 1)).astype("int32"),
    }, rng.integers(0, 2, n)


def test_dict_inputs_move_only_the_float_inputs():
    model = _dict_model()
    x, y = _dict_data()
    adv = pgd(model, x, y, 0.3, steps=3)
    assert set(adv) == {"num", "city", "idx"}
    assert (adv["city"] == x["city"]).all() and (adv["idx"] == x["idx"]).all()
    assert 0 < np.abs(adv["num"] - x["num"]).max() <= 0.3 + 1e-6
    np.testing.assert_allclose(fgsm(model, x, y, 0.3, perturb=["num"])["num"], fgsm(model, x, y, 0.3)["num"])


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("eps", [0, -0.1, float("nan"), float("inf"), True, "0.1"])
def test_epsilon_must_be_positive_and_finite(eps):
    model, (x, y) = _mlp(), _data(n=8)
    with pytest.raises(KerafineError, match=r"argument `epsilon`: received .*expected a finite number > 0"):
        fgsm(model, x, y, eps)
    with pytest.raises(KerafineError, match=r"argument `epsilon`"):
        pgd(model, x, y, eps)


def test_string_inputs_asked_to_move_are_refused():
    model = _dict_model()
    x, y = _dict_data()
    with pytest.raises(
        KerafineError, match=r"argument `perturb`: received \['num', 'city'\].*continuous.*'city'.*strings"
    ):
        fgsm(model, x, y, 0.1, perturb=["num", "city"])
    with pytest.raises(KerafineError, match=r"argument `perturb`.*'idx' holds integers"):
        pgd(model, x, y, 0.1, perturb="idx")
    with pytest.raises(
        KerafineError, match=r"argument `perturb`.*names of numeric inputs among \['city', 'idx', 'num'\]"
    ):
        fgsm(model, x, y, 0.1, perturb=["nmu"])


def test_string_array_inputs_and_datasets_are_refused():
    model, (x, y) = _mlp(), _data(n=8)
    with pytest.raises(DataError, match=r"argument `x`.*dtype <U1.*numeric inputs"):
        fgsm(model, np.array([["a"] * 4] * 8), y, 0.1)
    with pytest.raises(DataError, match=r"argument `x`: received 'DatasetV2'|argument `x`: received '.*Dataset"):
        fgsm(model, tf.data.Dataset.from_tensor_slices(x), y, 0.1)
    with pytest.raises(KerafineError, match=r"argument `perturb`.*None when x is a single array"):
        fgsm(model, x, y, 0.1, perturb="x")


def test_other_bad_arguments_fail_before_any_gradient():
    model, (x, y) = _mlp(), _data(n=8)
    with pytest.raises(DataError, match=r"argument `y`: received 'labels of shape \(7,\)'; expected 8 labels"):
        fgsm(model, x, y[:7], 0.1)
    with pytest.raises(DataError, match=r"argument `x`.*finite inputs"):
        fgsm(model, np.where(x > 0.9, np.nan, x), y, 0.1)
    with pytest.raises(DataError, match=r"argument `clip`.*a range holding the inputs"):
        fgsm(model, x, y, 0.1, clip=(0, 1))
    with pytest.raises(KerafineError, match=r"argument `steps`: received 0"):
        pgd(model, x, y, 0.1, steps=0)
    with pytest.raises(KerafineError, match=r"argument `step_size`: received -1"):
        pgd(model, x, y, 0.1, step_size=-1)
    uncompiled = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(KerafineError, match=r"argument `loss`.*compile the model or pass loss="):
        fgsm(uncompiled, x, y, 0.1)
    adv = fgsm(uncompiled, x, y, 0.1, loss="sparse_categorical_crossentropy")
    assert adv.shape == x.shape


def test_an_attacker_reuses_one_compiled_step_and_attacks_do_not_keep_the_model_alive():
    import gc
    import weakref

    from kerafine.security import attacks

    model, (x, y) = _mlp(seed=5), _data(n=16, seed=5)
    attacker = attacks.Attacker(model)
    inputs, labels = attacker.prepare(x, y)
    attacker.attack(inputs, labels, "fgsm", 0.1)
    attacker.attack(inputs, labels, "pgd", 0.1, steps=2)
    assert len(attacker._steps) == 1  # fgsm and pgd share the step: one trace per input layout
    fgsm(model, x, y, 0.1)
    pgd(model, x, y, 0.1, steps=2)
    del attacker, inputs
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
