"""distill: the one-sigmoid head is distilled through its logit; pseudo-labels; teacher untouched; bad input."""

import numpy as np
import pytest

from kerafine.errors import DataError, KerafineError
from kerafine.metrics import roc_auc
from kerafine.update import distill
from tests.update._models import data, mlp, trained_mlp


def test_keras_softmax_kl_on_one_unit_is_zero_which_is_why_the_binary_head_needs_its_own_loss():
    import keras

    from kerafine.update.distill import _binary_logits_loss

    t = np.array([[3.0], [-2.0]], "float32")
    s = np.array([[-3.0], [2.0]], "float32")  # the opposite opinion
    kl = keras.distillation.LogitsDistillation(temperature=3.0, loss=keras.losses.KLDivergence())
    ours = _binary_logits_loss(3.0)
    assert float(kl.compute_loss(t, s)) == 0.0  # softmax over one unit is 1 whatever the logit
    assert float(ours.compute_loss(t, s)) > float(ours.compute_loss(t, t)) > 0.0  # minimum: the entropy at s == t
    # The minimum is where the student's tempered probability equals the teacher's.
    grid = np.linspace(-6, 6, 121, dtype="float32")
    values = [float(ours.compute_loss(t[:1], np.array([[g]], "float32"))) for g in grid]
    assert grid[int(np.argmin(values))] == pytest.approx(3.0)


def test_student_learns_the_teacher_from_its_outputs_alone():
    teacher = trained_mlp(units=32, epochs=40)
    x, _ = data(1500, seed=5)
    # Labels unrelated to x: with alpha=0 only the teacher's outputs teach.
    noise = np.random.default_rng(0).integers(0, 2, len(x)).astype("float32")
    student = mlp(units=8, seed=1)
    out = distill(teacher, student, (x, noise), alpha=0.0, epochs=30, learning_rate=1e-2, verbose=0)
    assert out is student
    xt, yt = data(1000, seed=9)
    p_t = teacher.predict(xt, verbose=0).ravel()
    p_s = student.predict(xt, verbose=0).ravel()
    assert roc_auc(yt, p_s) > roc_auc(yt, p_t) - 0.05
    assert np.corrcoef(p_s, p_t)[0, 1] > 0.9


def test_unlabeled_rows_are_pseudo_labelled_by_the_teacher():
    teacher = trained_mlp(units=32, epochs=40)
    x_few = np.zeros((4, 4), "float32")
    y_few = np.array([0, 1, 0, 1], "float32")  # uninformative
    x_unl, _ = data(1500, seed=6)
    student = mlp(units=8, seed=2)
    distill(teacher, student, (x_few, y_few), unlabeled=x_unl, alpha=1.0, epochs=30, learning_rate=1e-2, verbose=0)
    xt, yt = data(1000, seed=9)
    assert roc_auc(yt, student.predict(xt, verbose=0)) > 0.85


def test_teacher_is_left_as_it_was():
    teacher = trained_mlp(units=16, epochs=2)
    teacher.layers[0].trainable = False  # a user's own choice must survive
    before = [w.copy() for w in teacher.get_weights()]
    flags = [layer.trainable for layer in teacher.layers] + [teacher.trainable]
    x, y = data(200)
    distill(teacher, mlp(units=4), (x, y), epochs=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, teacher.get_weights()))
    assert [layer.trainable for layer in teacher.layers] + [teacher.trainable] == flags


def test_softmax_heads_distil_with_kerases_logits_distillation():
    import keras

    x, y = data(600)
    teacher = mlp(units=16, outputs=2, activation="softmax")
    teacher.compile("adam", "sparse_categorical_crossentropy")
    teacher.fit(x, y.astype("int32"), epochs=20, verbose=0)
    assert roc_auc(y, teacher.predict(x, verbose=0)[:, 1]) > 0.85
    student = mlp(units=4, outputs=2, activation="softmax", seed=3)
    distill(teacher, student, (x, y.astype("int32")), unlabeled=x[:100], epochs=20, learning_rate=1e-2, verbose=0)
    assert roc_auc(y, student.predict(x, verbose=0)[:, 1]) > 0.8
    assert isinstance(student, keras.Model)


@pytest.mark.parametrize(
    "student_kw, kwargs, error, match",
    [
        (dict(outputs=2, activation="softmax"), {}, KerafineError, "student.*output"),
        (dict(inputs=3), {}, KerafineError, "student.*input shape"),
        (dict(activation="linear"), {}, KerafineError, "student"),
        ({}, dict(temperature=0), KerafineError, "temperature"),
        ({}, dict(alpha=1.5), KerafineError, "alpha"),
        ({}, dict(epochs=0), KerafineError, "epochs"),
        ({}, dict(train_data=(np.zeros((3, 5)), np.zeros(3))), DataError, "train_data"),
        ({}, dict(unlabeled=np.zeros((3, 5))), DataError, "unlabeled"),
    ],
)
def test_bad_input_names_the_argument(student_kw, kwargs, error, match):
    teacher = mlp(units=4)
    student = mlp(units=2, seed=1, **student_kw)
    args = dict(train_data=(np.zeros((8, 4), "float32"), np.zeros(8, "float32")))
    args.update(kwargs)
    before = [w.copy() for w in student.get_weights()]
    with pytest.raises(error, match=match):
        distill(teacher, student, **args)
    assert all(np.array_equal(a, b) for a, b in zip(before, student.get_weights()))
