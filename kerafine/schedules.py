"""Learning-rate schedules for fine-tuning that save and load with the model.

Both classes are ``keras.optimizers.schedules.LearningRateSchedule`` subclasses
registered with Keras's serialisation (package ``"kerafine"``), so an optimizer
built with one round-trips through ``model.save("m.keras")`` /
``keras.models.load_model`` without ``custom_objects`` once ``kerafine`` (or
``kerafine.schedules``) has been imported.

* :class:`OneCycle`: Smith's one-cycle policy (as in fastai and PyTorch's
  ``OneCycleLR``): a cosine rise from ``max_lr / div_factor`` to ``max_lr``
  over the first ``pct_start`` of the run, then a cosine fall to
  ``max_lr / (div_factor * final_div_factor)``.
* :class:`WarmupCosineDecay`: a linear warm-up from ``initial_lr`` to
  ``peak_lr`` over ``warmup_steps``, then a cosine decay to ``final_lr`` at
  ``total_steps``. Keras's ``CosineDecay(warmup_target=...)`` computes the same
  curve; this class takes the total length of the run instead of the length of
  the decay, which is what a fine-tuning phase knows.

Steps are optimizer steps (``optimizer.iterations``), not epochs: a phase of
``epochs`` epochs over ``n`` batches lasts ``epochs * n`` steps. After
``total_steps`` both schedules stay at their final value.

Example:

>>> from kerafine.schedules import OneCycle, WarmupCosineDecay
>>> s = WarmupCosineDecay(peak_lr=1e-3, total_steps=100, warmup_steps=10)
>>> [round(float(s(t)), 6) for t in (0, 5, 10, 55, 100)]
[0.0, 0.0005, 0.001, 0.0005, 0.0]
>>> c = OneCycle(max_lr=0.01, total_steps=100, pct_start=0.3)
>>> round(float(c(0)), 6), round(float(c(30)), 6), float(c(100)) < 1e-6
(0.0004, 0.01, True)
"""

from __future__ import annotations

import math

import keras
from keras import ops

from kerafine.errors import check_int, check_number, invalid_argument

__all__ = ["OneCycle", "WarmupCosineDecay"]


def _positive_float(name, value, allow_zero=False):
    expected = "a finite float >= 0" if allow_zero else "a finite float > 0"
    return check_number(name, value, minimum=0, min_inclusive=allow_zero, expected=expected)


def _cosine(start, end, fraction):
    """Cosine interpolation from ``start`` (fraction 0) to ``end`` (fraction 1)."""
    return end + (start - end) * 0.5 * (1.0 + ops.cos(math.pi * fraction))


@keras.saving.register_keras_serializable(package="kerafine")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle learning-rate policy (cosine warm-up then cosine annealing).

    Args:
        max_lr: the peak learning rate, reached after ``pct_start * total_steps``
            steps. A good value is the suggestion of :func:`kerafine.lr_find`.
        total_steps: length of the run in optimizer steps (``epochs * steps_per_epoch``).
        pct_start: fraction of the run spent rising. Defaults to 0.3.
        div_factor: the run starts at ``max_lr / div_factor``. Defaults to 25.
        final_div_factor: the run ends at ``max_lr / (div_factor * final_div_factor)``.
            Defaults to 1e4.
        name: name of the schedule. Defaults to ``"OneCycle"``.

    Raises:
        KerafineError: if an argument is out of range (non-positive rates or
            steps, ``pct_start`` outside ``(0, 1)``, factors below 1).

    Example:

    >>> import keras
    >>> from kerafine.schedules import OneCycle
    >>> opt = keras.optimizers.SGD(learning_rate=OneCycle(max_lr=0.1, total_steps=1000))
    >>> round(float(opt.learning_rate), 4)
    0.004
    """

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        name: str = "OneCycle",
    ):
        super().__init__()
        self.max_lr = _positive_float("max_lr", max_lr)
        self.total_steps = check_int("total_steps", total_steps, minimum=2)
        self.pct_start = check_number(
            "pct_start",
            pct_start,
            minimum=0,
            maximum=1,
            min_inclusive=False,
            max_inclusive=False,
            expected="a float strictly between 0 and 1",
        )
        self.div_factor = _positive_float("div_factor", div_factor)
        self.final_div_factor = _positive_float("final_div_factor", final_div_factor)
        if self.div_factor < 1.0:
            raise invalid_argument("div_factor", div_factor, "a float >= 1 (the run starts below max_lr)")
        if self.final_div_factor < 1.0:
            raise invalid_argument("final_div_factor", final_div_factor, "a float >= 1")
        self.name = name

    @property
    def initial_lr(self) -> float:
        """The learning rate at step 0."""
        return self.max_lr / self.div_factor

    @property
    def final_lr(self) -> float:
        """The learning rate at (and after) ``total_steps``."""
        return self.initial_lr / self.final_div_factor

    def __call__(self, step):
        step = ops.cast(step, "float32")
        up_steps = max(1.0, round(self.pct_start * self.total_steps))
        down_steps = max(1.0, self.total_steps - up_steps)
        rising = _cosine(self.initial_lr, self.max_lr, ops.clip(step / up_steps, 0.0, 1.0))
        falling = _cosine(self.max_lr, self.final_lr, ops.clip((step - up_steps) / down_steps, 0.0, 1.0))
        return ops.where(step < up_steps, rising, falling)

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="kerafine")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak_lr``, then cosine decay to ``final_lr``.

    Args:
        peak_lr: the learning rate reached at the end of the warm-up.
        total_steps: length of the run in optimizer steps, warm-up included.
        warmup_steps: steps of linear warm-up. Defaults to 0 (pure cosine decay).
        initial_lr: the learning rate at step 0 when warming up. Defaults to 0.
        final_lr: the learning rate at ``total_steps`` and after. Defaults to 0.
        name: name of the schedule. Defaults to ``"WarmupCosineDecay"``.

    Raises:
        KerafineError: if ``peak_lr`` is not positive, ``warmup_steps`` is not
            smaller than ``total_steps``, or ``initial_lr``/``final_lr`` are
            negative or above ``peak_lr``.

    Example:

    >>> from kerafine.schedules import WarmupCosineDecay
    >>> s = WarmupCosineDecay(peak_lr=0.1, total_steps=10, final_lr=0.01)
    >>> round(float(s(0)), 4), round(float(s(10)), 4), round(float(s(99)), 4)
    (0.1, 0.01, 0.01)
    """

    def __init__(
        self,
        peak_lr: float,
        total_steps: int,
        warmup_steps: int = 0,
        initial_lr: float = 0.0,
        final_lr: float = 0.0,
        name: str = "WarmupCosineDecay",
    ):
        super().__init__()
        self.peak_lr = _positive_float("peak_lr", peak_lr)
        self.total_steps = check_int("total_steps", total_steps, minimum=1)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        if self.warmup_steps >= self.total_steps:
            raise invalid_argument("warmup_steps", warmup_steps, f"an int smaller than total_steps={self.total_steps}")
        self.initial_lr = _positive_float("initial_lr", initial_lr, allow_zero=True)
        self.final_lr = _positive_float("final_lr", final_lr, allow_zero=True)
        for arg, value in (("initial_lr", self.initial_lr), ("final_lr", self.final_lr)):
            if value > self.peak_lr:
                raise invalid_argument(arg, value, f"a float between 0 and peak_lr={self.peak_lr}")
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        decay = _cosine(
            self.peak_lr,
            self.final_lr,
            ops.clip((step - self.warmup_steps) / (self.total_steps - self.warmup_steps), 0.0, 1.0),
        )
        if self.warmup_steps == 0:
            return decay
        warm = self.initial_lr + (self.peak_lr - self.initial_lr) * step / self.warmup_steps
        return ops.where(step < self.warmup_steps, warm, decay)

    def get_config(self):
        return {
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "initial_lr": self.initial_lr,
            "final_lr": self.final_lr,
            "name": self.name,
        }
