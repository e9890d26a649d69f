"""Knowledge distillation on Keras's own ``keras.distillation`` (Keras >= 3.12).

kerafine adds what a classifier with probability outputs needs: both models
are wrapped to output logits for the distiller (a model ending in a sigmoid or
softmax gives probabilities, and dividing probabilities by a temperature means
nothing), and a one-unit sigmoid head is distilled through its single logit
with a Bernoulli (binary cross-entropy) loss. Keras's ``LogitsDistillation``
does not fit that head: given a ``KLDivergence`` loss it takes a softmax over
the one unit, which is constant 1, so the loss is zero and nothing is
distilled; with its default ``"kl_divergence"`` string it reads the tempered
logits as probabilities.
"""

from __future__ import annotations

import numpy as np

from kerafine.errors import DataError, invalid_argument
from kerafine.update._checks import (
    check_fraction,
    check_model,
    check_positive_int,
    check_xy,
    input_signature,
    output_signature,
)

__all__ = ["distill"]

_EPS = 1e-7


def _output_kind(model) -> str:
    """``"sigmoid"``, ``"softmax"`` or ``"linear"``: what the model's last layer emits."""
    layer = model.layers[-1]
    while getattr(layer, "layers", None):  # a head that is itself a model: its last layer
        layer = layer.layers[-1]
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", str(activation))
    if name in ("sigmoid", "softmax"):
        return name
    return "linear"


def _logit_model(model, kind: str):
    """A functional view of ``model`` whose output is its logits; it shares ``model``'s weights."""
    import keras

    inputs = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    p = model(inputs)
    if kind == "sigmoid":
        p = keras.ops.clip(p, _EPS, 1 - _EPS)
        out = keras.ops.log(p) - keras.ops.log1p(-p)
    elif kind == "softmax":
        # log p is a valid logit vector: softmax is invariant to the constant log-sum-exp.
        out = keras.ops.log(keras.ops.clip(p, _EPS, 1.0))
    else:
        out = p
    return keras.Model(inputs, out, name=f"{model.name}_logits")


def _binary_logits_loss(temperature: float):
    import keras

    class BinaryLogitsDistillation(keras.distillation.LogitsDistillation):
        """Distils one sigmoid logit: BCE between the tempered teacher and student probabilities, times T^2."""

        def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
            t = keras.ops.sigmoid(teacher_outputs / self.temperature)
            bce = keras.losses.binary_crossentropy(t, student_outputs / self.temperature, from_logits=True)
            return keras.ops.mean(bce) * (self.temperature**2)

    return BinaryLogitsDistillation(temperature=temperature)


def distill(
    teacher,
    student,
    train_data,
    unlabeled=None,
    temperature: float = 3.0,
    alpha: float = 0.5,
    *,
    validation_data=None,
    epochs: int = 10,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    callbacks=None,
    verbose="auto",
):
    """Train ``student`` to imitate ``teacher`` (and the labels) with ``keras.distillation.Distiller``.

    The loss is ``alpha * supervised + (1 - alpha) * distillation``, Keras's
    ``student_loss_weight``: the supervised part is the cross-entropy of the
    student's logits against the labels; the distillation part compares the
    teacher's and the student's logits softened by ``temperature`` (KL
    divergence of the softmax for several classes, binary cross-entropy of the
    sigmoid for a one-unit binary head, both scaled by ``temperature**2``).
    ``unlabeled`` rows are labelled by the teacher (its probabilities, soft
    pseudo-labels; the class with the largest probability for integer
    labels) and trained on together with ``train_data``. The teacher is not
    changed: its ``trainable`` flags are restored afterwards.

    Args:
        teacher: a trained ``keras.Model`` with a sigmoid or softmax output.
        student: a ``keras.Model`` with the same input and output shapes
            (typically much smaller), trained in place.
        train_data: ``(x, y)`` labelled arrays.
        unlabeled: ``x`` rows without labels (an array), or ``None``. Defaults to ``None``.
        temperature: softening temperature, > 0. Defaults to 3.0.
        alpha: weight of the supervised loss, in [0, 1]; 0 learns from the
            teacher alone. Defaults to 0.5.
        validation_data: ``(x, y)`` for the callbacks, or ``None``. Defaults to ``None``.
        epochs: epochs, >= 1. Defaults to 10.
        learning_rate: Adam's learning rate. Defaults to ``1e-3``.
        batch_size: batch size. Defaults to 64.
        callbacks: Keras callbacks for the distiller's ``fit``. Defaults to ``None``.
        verbose: Keras's ``verbose``. Defaults to ``"auto"``.

    Returns:
        ``student``, trained: a plain ``keras.Model`` with its own output
        activation, ready to save and serve.

    Raises:
        KerafineError: teacher and student with different input or output
            shapes, an output that is neither sigmoid nor softmax, bad
            ``temperature``/``alpha``/``epochs``, all before training.
        DataError: unusable ``train_data`` / ``unlabeled``.

    Example:

    >>> import numpy as np, keras
    >>> from kerafine.update import distill
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 4)).astype("float32"); y = (x[:, 0] > 0).astype("float32")
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"),
    ...                             keras.layers.Dense(1, activation="sigmoid")])
    >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    >>> out = distill(teacher, student, (x, y), unlabeled=x, epochs=1, verbose=0)
    >>> out is student, out.output.shape
    (True, (None, 1))
    """
    import keras

    check_model(teacher, "teacher")
    check_model(student, "student")
    if teacher is student:
        raise invalid_argument("student", student.name, "another model than the teacher")
    if input_signature(teacher) != input_signature(student):
        raise invalid_argument(
            "student",
            f"a model taking inputs of shape {input_signature(student)}",
            f"the teacher's input shape {input_signature(teacher)}",
        )
    if output_signature(teacher) != output_signature(student):
        raise invalid_argument(
            "student",
            f"a model with outputs of shape {output_signature(student)}",
            f"the teacher's output shape {output_signature(teacher)}",
        )
    kind = _output_kind(teacher)
    if kind == "linear" or _output_kind(student) != kind:
        raise invalid_argument(
            "student",
            f"a {_output_kind(student)} output (teacher: {kind})",
            "teacher and student both ending in a sigmoid, or both in a softmax",
        )
    binary = kind == "sigmoid"
    if binary and output_signature(teacher) != (1,):
        raise invalid_argument(
            "teacher",
            f"a sigmoid output of shape {output_signature(teacher)}",
            "one sigmoid unit (binary) or a softmax over the classes",
        )
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise invalid_argument("temperature", temperature, "a number > 0")
    alpha = check_fraction("alpha", alpha, high_open=False)
    epochs = check_positive_int("epochs", epochs)
    x, y = check_xy(train_data, "train_data")
    if tuple(x.shape[1:]) != input_signature(teacher):
        raise invalid_argument(
            "train_data",
            f"rows of shape {tuple(x.shape[1:])}",
            f"rows of the models' input shape {input_signature(teacher)}",
            error=DataError,
        )
    x = x.astype("float32", copy=False)
    sparse = not binary and (y.ndim == 1 or y.shape[-1] == 1)
    y = (
        y.astype("float32").reshape(-1, 1)
        if binary
        else (y.reshape(-1).astype("int32") if sparse else y.astype("float32"))
    )
    if unlabeled is not None:
        xu = np.asarray(unlabeled)
        if xu.ndim < 1 or len(xu) == 0 or tuple(xu.shape[1:]) != input_signature(teacher):
            raise invalid_argument(
                "unlabeled",
                f"an array of shape {xu.shape}",
                f"rows of the models' input shape {input_signature(teacher)}",
                error=DataError,
            )
        pu = np.asarray(teacher.predict(xu.astype("float32"), batch_size=1024, verbose=0))
        # Soft pseudo-labels keep the teacher's uncertainty (binary, one-hot targets); integer labels
        # can only take the teacher's top class.
        yu = (
            pu.reshape(-1, 1).astype("float32")
            if binary
            else (pu.argmax(-1).astype("int32") if sparse else pu.astype("float32"))
        )
        x = np.concatenate([x, xu.astype("float32")])
        y = np.concatenate([y, yu])

    flags = [(layer, layer.trainable) for layer in _all_layers(teacher)]
    t_logits, s_logits = _logit_model(teacher, kind), _logit_model(student, kind)
    loss = (
        _binary_logits_loss(float(temperature))
        if binary
        else keras.distillation.LogitsDistillation(temperature=float(temperature))
    )
    distiller = keras.distillation.Distiller(
        teacher=t_logits,
        student=s_logits,
        distillation_losses=loss,
        student_loss_weight=alpha,
        name="kerafine_distiller",
    )
    supervised = (
        keras.losses.BinaryCrossentropy(from_logits=True)
        if binary
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if sparse
        else keras.losses.CategoricalCrossentropy(from_logits=True)
    )
    distiller.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=supervised)
    try:
        distiller.fit(
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            callbacks=callbacks,
            verbose=verbose,
            validation_data=_logit_targets(validation_data, binary, sparse),
        )
    finally:
        # The Distiller freezes the teacher it was given (our wrapper), which freezes the teacher's
        # layers too: give them back their flags.
        for layer, flag in flags:
            layer.trainable = flag
    return student


def _all_layers(model) -> list:
    """``model`` and every layer nested in it (through the public ``.layers``)."""
    out, stack = [], [model]
    while stack:
        layer = stack.pop()
        out.append(layer)
        stack.extend(getattr(layer, "layers", []) or [])
    return out


def _logit_targets(validation_data, binary: bool, sparse: bool):
    if validation_data is None:
        return None
    xv, yv = check_xy(validation_data, "validation_data")
    yv = yv.astype("float32").reshape(-1, 1) if binary else (yv.reshape(-1).astype("int32") if sparse else yv)
    return xv.astype("float32", copy=False), yv
