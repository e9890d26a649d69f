"""L-infinity evasion attacks: FGSM and PGD on the model's own loss.

Both follow the sign of the gradient of the model's compiled loss with respect
to its inputs (``tf.GradientTape``, the model called with ``training=False``),
batch by batch, and return new inputs of the same structure:

* :func:`fgsm` (Goodfellow et al., 2015): one step of size ``epsilon``.
* :func:`pgd` (Madry et al., 2018): ``steps`` steps of ``step_size``, each
  projected back into the ``epsilon`` box around the clean input, from a
  uniform random start in that box (``random_start=True``).

Inputs are moved in the units the model sees: raw 0-255 pixels for kerafine's
vision backbones (which hold their own preprocessing; the default
``clip="auto"`` then keeps pixels in [0, 255]), scaled features or windows for
the others. With dict inputs only float inputs move (those named in
``perturb=``, by default all of them); string and integer (categorical) inputs
never do.

Example:

>>> import numpy as np, keras
>>> from kerafine.security import fgsm
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(32, 4)).astype("float32"); y = (x[:, 0] > 0).astype("float32")
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
>>> model.compile("sgd", "binary_crossentropy")
>>> x_adv = fgsm(model, x, y, epsilon=0.1)
>>> round(float(np.abs(x_adv - x).max()), 6)
0.1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from kerafine.errors import invalid_argument
from kerafine.security import _common

__all__ = ["fgsm", "pgd"]


class Attacker:
    """A model's compiled attack step, reused across calls (epsilons of a curve, epochs of a monitor)."""

    def __init__(self, model, loss=None, batch_size: int = 256):
        _common.check_single_output(model)
        _common.per_sample_loss(model, loss)  # fails now on an uncompiled model
        self.model = model
        self.loss = loss
        self.batch_size = _common.check_positive_int(batch_size, "batch_size")
        self._steps = {}

    def _step_fn(self, inputs: _common.Inputs):
        loss_key = self.loss if isinstance(self.loss, str) or self.loss is None else id(self.loss)
        # The compiled loss may change with a recompile: key on the object compiled now too.
        key = (tuple(inputs.moving), tuple(inputs.fixed), inputs.is_dict, loss_key, id(self.model.loss))
        # Kept on the attacker (no process-wide registry): a curve's epsilons and a monitor's
        # epochs reuse one attacker, so they trace once; a plain fgsm()/pgd() call traces anew.
        steps = self._steps
        if key not in steps:
            steps[key] = _common.StepFunction(self.model, self.loss, inputs.moving, inputs.fixed, inputs.is_dict)
        return steps[key]

    def prepare(self, x, y, perturb=None, clip="auto"):
        inputs = _common.Inputs(x, perturb, clip, self.model)
        y = _common.check_labels(y, inputs.n)
        return inputs, y

    def run(self, inputs: _common.Inputs, y, epsilon: float, steps: int, step_size: float, random_start: bool, seed):
        import tensorflow as tf

        step = self._step_fn(inputs)
        moved = {k: np.empty_like(inputs.arrays[k]) for k in inputs.moving}
        low = [np.float32(-np.inf if inputs.clip[k] is None else inputs.clip[k][0]) for k in inputs.moving]
        high = [np.float32(np.inf if inputs.clip[k] is None else inputs.clip[k][1]) for k in inputs.moving]
        if random_start:
            # Noise for every row at once, so the result does not depend on the batch size.
            rng = np.random.default_rng(seed)
            noise = {
                k: rng.uniform(-epsilon, epsilon, inputs.arrays[k].shape).astype(np.float32) for k in inputs.moving
            }
        eps_t = tf.constant(epsilon, tf.float32)
        size_t = tf.constant(step_size, tf.float32)
        y_dtype = np.float32 if y.dtype.kind in "bf" else np.int64
        for start in range(0, inputs.n, self.batch_size):
            stop = min(start + self.batch_size, inputs.n)
            part = inputs.batch(start, stop)
            origin = [tf.constant(part[k]) for k in inputs.moving]
            if random_start:
                adv = [
                    tf.constant(np.clip(part[k] + noise[k][start:stop], lo, hi))
                    for k, lo, hi in zip(inputs.moving, low, high)
                ]
            else:
                adv = list(origin)
            kept = {k: tf.constant(part[k]) for k in inputs.fixed}
            yb = tf.constant(y[start:stop].astype(y_dtype))
            for _ in range(steps):
                adv = step(adv, origin, kept, yb, size_t, eps_t, low, high)
            for k, a in zip(inputs.moving, adv):
                moved[k][start:stop] = a.numpy()
        return inputs.rebuild(moved)

    def attack(
        self, inputs, y, attack: str, epsilon: float, steps: int = 10, step_size=None, random_start=True, seed=0
    ):
        if attack == "fgsm":
            return self.run(inputs, y, epsilon, 1, epsilon, False, None)
        size = default_step_size(epsilon, steps) if step_size is None else step_size
        return self.run(inputs, y, epsilon, steps, size, random_start, seed)


def default_step_size(epsilon: float, steps: int) -> float:
    # Madry et al.'s rule: 2.5 * epsilon / steps, so a path can cross the box and still turn back.
    return 2.5 * epsilon / steps


def check_attack(attack) -> str:
    if attack not in ("fgsm", "pgd"):
        raise invalid_argument("attack", attack, '"fgsm" or "pgd"')
    return attack


def check_step_size(step_size) -> Optional[float]:
    if step_size is None:
        return None
    return _common.check_epsilon(step_size, "step_size")


def fgsm(
    model,
    x,
    y,
    epsilon: float,
    *,
    perturb: str | Sequence[str] | None = None,
    clip="auto",
    loss=None,
    batch_size: int = 256,
):
    """Fast gradient sign method: ``x + epsilon * sign(grad_x loss(model(x), y))``, clipped.

    Args:
        model: a ``keras.Model`` with one output, compiled (its loss is the one
            attacked) unless ``loss`` is given.
        x: the clean inputs: an array ``(n_samples, ...)`` (images, windows,
            features) or a dict of arrays, one per model input.
        y: labels ``(n_samples,)`` (or one-hot ``(n_samples, n_classes)``),
            as the model's loss expects them.
        epsilon: L-infinity radius, in the units the model sees (pixels for
            raw 0-255 images).
        perturb: dict inputs only: the float inputs that move. Defaults to
            ``None``: every float input; string and integer inputs never move.
        clip: ``"auto"`` (0-255 for a model that takes raw images, i.e. holds
            its own preprocessing layer, and the inputs lie in that range;
            otherwise no clipping), ``None``, a ``(low, high)`` pair or a dict
            of pairs per input. Defaults to ``"auto"``.
        loss: the loss to attack instead of the compiled one (a
            ``keras.losses.Loss``, its name or a function). Defaults to ``None``.
        batch_size: rows per gradient pass. Defaults to 256.

    Returns:
        The adversarial inputs, same structure, shapes and float32 dtype as ``x``
        (unmoved dict inputs are returned as given).

    Raises:
        KerafineError: ``epsilon <= 0``, an uncompiled model without ``loss``,
            a string or integer input named in ``perturb``, a bad ``clip``.
        DataError: non-numeric or non-finite inputs, labels that do not match
            ``x``, a ``tf.data.Dataset`` (attacks need arrays).

    Example:

    >>> import numpy as np, keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    >>> model.compile("sgd", "binary_crossentropy")
    >>> x_adv = fgsm(model, np.zeros((3, 2), "float32"), np.ones(3), epsilon=0.5)
    >>> x_adv.shape, float(np.abs(x_adv).max())
    ((3, 2), 0.5)
    """
    epsilon = _common.check_epsilon(epsilon)
    attacker = Attacker(model, loss, batch_size)
    inputs, y = attacker.prepare(x, y, perturb, clip)
    return attacker.attack(inputs, y, "fgsm", epsilon)


def pgd(
    model,
    x,
    y,
    epsilon: float,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    seed: int | None = 0,
    *,
    perturb: str | Sequence[str] | None = None,
    clip="auto",
    loss=None,
    batch_size: int = 256,
):
    """Projected gradient descent in the L-infinity box of radius ``epsilon``.

    From ``x`` (or a uniform random point of the box, ``random_start=True``),
    ``steps`` times: ``x_adv <- x_adv + step_size * sign(grad)``, then back into
    ``[x - epsilon, x + epsilon]`` and into the ``clip`` range. Without random
    start this is ART's ``ProjectedGradientDescent`` with ``eps_step=step_size``
    and ``max_iter=steps``.

    Args:
        model: as :func:`fgsm`.
        x: as :func:`fgsm`.
        y: as :func:`fgsm`.
        epsilon: L-infinity radius (model input units).
        steps: gradient steps. Defaults to 10.
        step_size: size of one step. Defaults to ``None``: ``2.5 * epsilon / steps``.
        random_start: start from a uniform random point of the box. Defaults to ``True``.
        seed: seed of the random start. Defaults to 0.
        perturb: as :func:`fgsm`.
        clip: as :func:`fgsm`.
        loss: as :func:`fgsm`.
        batch_size: as :func:`fgsm`.

    Returns:
        The adversarial inputs (same structure as ``x``).

    Raises:
        KerafineError: as :func:`fgsm`, or ``steps < 1``, ``step_size <= 0``.
        DataError: as :func:`fgsm`.

    Example:

    >>> import numpy as np, keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    >>> model.compile("sgd", "binary_crossentropy")
    >>> x_adv = pgd(model, np.zeros((3, 2), "float32"), np.ones(3), epsilon=0.5, steps=4)
    >>> bool(np.abs(x_adv).max() <= 0.5)
    True
    """
    epsilon = _common.check_epsilon(epsilon)
    steps = _common.check_positive_int(steps, "steps")
    step_size = check_step_size(step_size)
    if not isinstance(random_start, (bool, np.bool_)):
        raise invalid_argument("random_start", random_start, "True or False")
    _common.check_seed(seed)
    attacker = Attacker(model, loss, batch_size)
    inputs, y = attacker.prepare(x, y, perturb, clip)
    return attacker.attack(inputs, y, "pgd", epsilon, steps, step_size, bool(random_start), seed)
