"""The learning-rate range test: pick a learning rate before fine-tuning.

:func:`lr_find` trains a *copy* of the model for ``num_steps`` batches while the
learning rate grows exponentially from ``start_lr`` to ``end_lr``, records the
loss of every batch, stops when an exponential moving average of the loss
diverges, and suggests a learning rate from the loss curve smoothed by a
centred moving average, which, unlike the exponential average, does not shift
the curve towards higher rates (Smith, "Cyclical Learning Rates", 2017; the
fastai ``lr_find``).
The model itself, its weights, its optimizer state and iteration count, is
left exactly as it was: nothing of the test leaks into the real run.

Two suggestion rules are computed, and :attr:`LRFindResult.rule` says which one
was used and :attr:`LRFindResult.reason` why:

* ``"min/10"``: a tenth of the rate at the minimum of the smoothed loss. Used
  when the loss reached a minimum and rose again (or diverged): the minimum
  marks the edge of the unstable region, and a tenth of it is the largest rate
  safely below it. Also the fallback for a flat curve (a drop under 5 % or
  under three times the batch-to-batch noise of the loss).
* ``"steepest"``: the rate where the smoothed loss falls fastest (most
  negative slope against ``log(lr)``) before its lowest point. Used when the
  loss was still falling at ``end_lr``, so the minimum, hence ``min/10``, is
  unknown.

Data shorter than ``num_steps`` batches are cycled, as fastai's range test
does: array data are reshuffled (with ``seed``) for every new pass, and
datasets are iterated again. The result says so (:attr:`LRFindResult.cycled`,
:attr:`LRFindResult.epochs_of_data` and a line of its ``repr``): later passes
show the model batches it has already trained on, so the end of the curve
reads a little lower than on fresh data. A one-shot generator cannot be
iterated again, so it still has to yield ``num_steps`` batches.

For the head-only phase of a transfer model, pass the model with its backbone
frozen (only the head's weights move in the copy); ``fine_tune`` may instead
pass the head alone with cached backbone features, which is faster.

Example:

>>> import numpy as np, keras
>>> from kerafine.lr_finder import lr_find
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(2048, 4)).astype("float32")
>>> y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
>>> model.compile(keras.optimizers.SGD(), loss="mse")
>>> result = lr_find(model, (x, y), num_steps=60, start_lr=1e-4, end_lr=10, batch_size=32)
>>> result.rule in ("steepest", "min/10"), 1e-3 < result.suggestion < 1.0
(True, True)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from kerafine import _batches as _batching  # (lr_finder's own `_batches` is the batch iterator below)
from kerafine._display import displayable
from kerafine._keras_compat import flatten_layers
from kerafine.errors import DataError, KerafineError, TrainingError, check_int, check_number, invalid_argument

_n_rows, _take, _is_array_like = _batching.n_rows, _batching.take, _batching.is_array_like

__all__ = ["lr_find", "LRFindResult"]

_MIN_STEPS = 10
_MIN_DESCENT_POINTS = 4
_MIN_RELATIVE_DROP = 0.05


@displayable
@dataclasses.dataclass(frozen=True, repr=False)
class LRFindResult:
    """The outcome of :func:`lr_find`.

    Attributes:
        learning_rates: ``(n,)`` learning rate of each step run.
        losses: ``(n,)`` raw training loss of each step.
        smoothed_losses: ``(n,)`` the losses smoothed by a centred moving
            average over about a tenth of the steps (the curve the suggestion
            is read from).
        suggestion: the suggested learning rate.
        rule: ``"steepest"`` or ``"min/10"``: the rule that gave ``suggestion``.
        reason: one sentence saying why that rule was used.
        steepest_lr: rate of the steepest descent of the smoothed loss, or
            ``None`` when too few points precede its minimum.
        min_loss_lr: rate at the minimum of the smoothed loss.
        diverged: ``True`` if the test stopped early because the loss diverged.
        num_steps: the number of steps requested.
        batches_per_pass: batches in one pass over the data, or ``None``
            when the data never ran out (length unknown).
        epochs_of_data: passes over the data the steps run made (steps run
            divided by ``batches_per_pass``; ``0.0`` when unknown).
        cycled: ``True`` if the data held fewer batches than the steps run,
            so batches were seen again.
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    suggestion: float
    rule: str
    reason: str
    steepest_lr: Optional[float]
    min_loss_lr: float
    diverged: bool
    num_steps: int
    batches_per_pass: Optional[int] = None
    epochs_of_data: float = 0.0
    cycled: bool = False

    def __repr__(self) -> str:
        return (
            f"LRFindResult(suggestion={self.suggestion:.3g}, rule={self.rule!r}, "
            f"steps={len(self.learning_rates)}/{self.num_steps}, diverged={self.diverged})"
            + (
                f"\n  cycled: {self.batches_per_pass} batches per pass, "
                f"{self.epochs_of_data:.2f} epochs of data (batches were seen again)"
                if self.cycled
                else ""
            )
        )

    def to_dict(self) -> dict:
        """JSON-native dict (arrays as lists)."""
        out = dataclasses.asdict(self)
        for key in ("learning_rates", "losses", "smoothed_losses"):
            out[key] = [float(v) for v in out[key]]
        return out

    def to_frame(self):
        """The curve as a pandas DataFrame (``learning_rate``, ``loss``, ``smoothed_loss``)."""
        import pandas as pd

        return pd.DataFrame(
            {"learning_rate": self.learning_rates, "loss": self.losses, "smoothed_loss": self.smoothed_losses}
        )

    def plot(self, ax=None):
        """Plot loss against learning rate (log scale) with the suggestion marked.

        Like every kerafine result's ``plot()``, it returns the figure (not
        shown; ``fig.savefig(...)``, or it displays itself in Jupyter).

        Args:
            ax: a matplotlib Axes to draw on. Defaults to ``None``: a new figure.

        Returns:
            The ``matplotlib.figure.Figure`` (``ax.figure`` when ``ax`` is given);
            the chart is ``fig.axes[0]``.
        """
        if ax is None:
            from matplotlib.figure import Figure

            # A Figure without pyplot: no global figure registry, no GUI backend needed.
            fig = Figure(figsize=(6, 4), layout="tight")
            ax = fig.add_subplot()
        ax.plot(self.learning_rates, self.losses, color="0.75", lw=1, label="loss")
        ax.plot(self.learning_rates, self.smoothed_losses, color="C0", lw=2, label="smoothed loss")
        ax.axvline(self.suggestion, color="C3", ls="--", label=f"suggestion {self.suggestion:.2g} ({self.rule})")
        if self.steepest_lr is not None and self.rule != "steepest":
            ax.axvline(self.steepest_lr, color="C2", ls=":", label=f"steepest {self.steepest_lr:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        finite = self.smoothed_losses[np.isfinite(self.smoothed_losses)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite[0])
            span = max(hi - lo, 1e-12)
            ax.set_ylim(lo - 0.1 * span, max(float(finite.max()), hi) + 0.1 * span)
        ax.set_title("learning-rate range test")
        ax.legend(loc="best", fontsize="small")
        return ax.figure

    def _repr_html_(self) -> str:
        import html

        return (
            f"<div><b>lr_find</b>: suggestion <b>{self.suggestion:.3g}</b> (rule <code>{html.escape(self.rule)}</code>: "
            f"{html.escape(self.reason)}); {len(self.learning_rates)} of {self.num_steps} steps"
            f"{', stopped at divergence' if self.diverged else ''}"
            f"{f'; data cycled ({self.epochs_of_data:.2f} epochs of data)' if self.cycled else ''}.</div>"
        )


def _batches(train_data, batch_size, num_steps, seed, info):
    """Validate ``train_data`` (before any training) and return a batch iterator.

    The iterator cycles through the data when it holds fewer than
    ``num_steps`` batches and records the batches of one pass in
    ``info["batches_per_pass"]``.
    """
    if isinstance(train_data, tuple) and len(train_data) in (2, 3) and _is_array_like(train_data[0]):
        x, y = train_data[0], train_data[1]
        w = train_data[2] if len(train_data) == 3 else None
        if y is None:
            raise invalid_argument("train_data", train_data, "(x, y) or (x, y, sample_weight) with targets y")
        n = _n_rows(x)
        for name, arr in (("y", y), ("sample_weight", w)):
            if arr is not None and _n_rows(arr) != n:
                raise DataError(
                    f"Invalid value for argument `train_data`: x has {n} rows but {name} has {_n_rows(arr)}."
                )
        n_batches = n // batch_size
        if n_batches < 1:
            raise DataError(
                f"Invalid value for argument `train_data`: {n} rows make no full batch of "
                f"batch_size={batch_size}. Pass batch_size <= {n} or more data."
            )
        if n_batches < num_steps:
            info["batches_per_pass"] = n_batches
        rng = np.random.default_rng(seed)

        def gen():
            order = rng.permutation(n)
            for i in range(num_steps):
                j = i % n_batches
                if i and j == 0:  # a new pass: reshuffle, as an epoch of fit would
                    order = rng.permutation(n)
                idx = order[j * batch_size : (j + 1) * batch_size]
                yield _take(x, idx), _take(y, idx), (None if w is None else np.asarray(w)[idx])

        return gen()
    if _is_array_like(train_data):
        raise invalid_argument("train_data", train_data, "(x, y) with targets, or a dataset yielding (x, y) batches")
    if not (hasattr(train_data, "__iter__") or hasattr(train_data, "__getitem__")):
        raise invalid_argument(
            "train_data", train_data, "(x, y[, sample_weight]) arrays, a tf.data.Dataset, a PyDataset or a generator"
        )
    known = None
    if hasattr(train_data, "element_spec"):
        import tensorflow as tf

        card = int(tf.data.experimental.cardinality(train_data))
        known = None if card < 0 else card  # -1 infinite, -2 unknown
    elif hasattr(train_data, "__len__"):
        known = getattr(train_data, "num_batches", None) or len(train_data)
    if known == 0:
        raise DataError("Invalid value for argument `train_data`: it yields no batches.")
    # A one-shot iterator (a generator) is its own iterator: it cannot be read twice.
    one_shot = hasattr(train_data, "__next__") or (
        hasattr(train_data, "__iter__") and not hasattr(train_data, "__getitem__") and iter(train_data) is train_data
    )
    if known is not None and known < num_steps and one_shot:
        raise DataError(
            f"Invalid value for argument `train_data`: it yields {known} batches, fewer than "
            f"num_steps={num_steps}, and a one-shot iterator cannot be cycled. Pass num_steps <= {known} "
            f"(at least {_MIN_STEPS}), a re-iterable dataset, or more data."
        )

    def one_pass(limit):
        for batch in _batching.iterate(train_data, limit):
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise DataError(
                    "Invalid value for argument `train_data`: its batches must be (x, y) or (x, y, sample_weight)."
                )
            yield _batching.split_batch(batch)

    def gen():
        count = 0
        while count < num_steps:
            before = count
            for batch in one_pass(num_steps - count):
                yield batch
                count += 1
            if count == before:
                raise DataError("Invalid value for argument `train_data`: it yields no batches.")
            if count < num_steps:
                info.setdefault("batches_per_pass", count)
                if one_shot:
                    raise DataError(
                        f"Invalid value for argument `train_data`: it ran out after {count} batches, fewer than "
                        f"num_steps={num_steps}, and a one-shot generator cannot be cycled. Pass num_steps <= "
                        f"{count}, a re-iterable dataset, or more data."
                    )

    return gen()


def _copy_model(model):
    """A compiled-to-be copy with the same architecture, weights and trainable flags."""
    import keras

    try:
        clone = keras.models.clone_model(model)
    except Exception as exc:  # subclassed models without a usable get_config
        raise KerafineError(
            f"lr_find could not copy the model ({type(exc).__name__}: {exc}); it needs a Functional or "
            "Sequential model (kerafine.build_transfer_model builds one) so the original stays untouched."
        ) from exc
    src_layers = flatten_layers(model)
    dst_layers = flatten_layers(clone)
    if len(src_layers) == len(dst_layers):
        for a, b in zip(src_layers, dst_layers):
            b.trainable = a.trainable
    clone.set_weights(model.get_weights())
    if len(clone.trainable_weights) != len(model.trainable_weights):
        raise KerafineError(
            "lr_find copied the model but the copy trains a different set of weights "
            f"({len(clone.trainable_weights)} vs {len(model.trainable_weights)}); please report this model."
        )
    return clone


def _fresh_optimizer(optimizer, learning_rate: float):
    config = optimizer.get_config()
    config["learning_rate"] = learning_rate
    opt = type(optimizer).from_config(config)
    return opt


def _window(n: int) -> int:
    """Odd width of the centred moving average: about a tenth of the curve."""
    return max(3, 2 * (n // 20) + 1)


def _centred_average(losses: np.ndarray) -> np.ndarray:
    """Moving average centred on each point, so the curve is not shifted.

    The exponential average used to detect divergence lags by tens of steps,
    i.e. by a decade or more of learning rate on a 100-step ramp; a suggestion
    read off it lands several times too high.
    """
    w = min(_window(len(losses)), len(losses) - (1 - len(losses) % 2))
    if w < 2:
        return losses.astype(np.float64)
    padded = np.pad(losses.astype(np.float64), w // 2, mode="edge")
    return np.convolve(padded, np.ones(w) / w, mode="valid")


def _suggest(lrs, curve, raw, diverged):
    n = len(lrs)
    i_min = int(np.argmin(curve))
    min_lr = float(lrs[i_min])
    min_rule = min_lr / 10.0
    skip = max(1, n // 10)
    start = float(curve[min(skip, n - 1)])
    drop = (start - float(curve[i_min])) / max(abs(start), 1e-12)
    # Batch-to-batch noise of the raw losses: a "descent" smaller than three times
    # that is the minimum of noise, not learning.
    # Robust (median absolute deviation) and over the part before the minimum,
    # so the blow-up at divergence does not count as noise.
    resid = (raw - curve)[: max(i_min + 1, n // 2)]
    noise = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) if resid.size > 2 else 0.0
    significant = drop >= _MIN_RELATIVE_DROP and (start - float(curve[i_min])) > 3.0 * noise
    steepest = None
    if i_min <= skip:
        return (
            min_rule,
            "min/10",
            steepest,
            (
                "the loss never fell below its value at the start of the range; if it rose, start_lr is "
                "already too high (lower it), otherwise the range is too narrow to tell"
            ),
        )
    if i_min - skip >= _MIN_DESCENT_POINTS:
        slope = np.gradient(curve, np.log(lrs))
        steepest = float(lrs[skip + int(np.argmin(slope[skip : i_min + 1]))])
    if not significant:
        return (
            min_rule,
            "min/10",
            steepest,
            (
                f"the loss fell only {max(drop, 0.0):.1%} over the range, within its batch-to-batch noise, so "
                "there is no clear descent to read a steepest point from"
            ),
        )
    turned_up = diverged or (i_min < n - 1 - _window(n) // 2 and float(curve[-1]) > float(curve[i_min]) * 1.02)
    if turned_up:
        return (
            min_rule,
            "min/10",
            steepest,
            (
                f"the loss reached its minimum at {min_lr:.2g} and then rose"
                f"{' until the test stopped at divergence' if diverged else ''}; a tenth of that rate is the "
                "largest one safely below the unstable region"
            ),
        )
    if steepest is not None:
        return (
            steepest,
            "steepest",
            steepest,
            (
                f"the loss was still falling at the end of the range ({float(lrs[-1]):.2g}), so its minimum, "
                "hence min/10, is unknown; the steepest descent is where learning is fastest"
            ),
        )
    return (
        min_rule,
        "min/10",
        steepest,
        (
            "the loss was still falling at the end of the range but too few points precede its lowest value "
            "for a steepest point; raise end_lr or num_steps for a better estimate"
        ),
    )


def lr_find(
    model,
    train_data,
    start_lr: float = 1e-7,
    end_lr: float = 1.0,
    num_steps: int = 100,
    *,
    batch_size: int = 32,
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
    seed: int = 0,
) -> LRFindResult:
    """Run the learning-rate range test on a copy of ``model``.

    Args:
        model: a compiled Functional or Sequential ``keras.Model`` (the
            optimizer's class and settings and the loss are reused; its state is
            not touched). Freeze the backbone first to test the head-only phase.
        train_data: ``(x, y)`` or ``(x, y, sample_weight)`` arrays (batched
            here, shuffled with ``seed``), or a ``tf.data.Dataset``,
            ``keras.utils.PyDataset`` or generator yielding ``(x, y[, w])``
            batches. Data with fewer than ``num_steps`` batches are cycled
            (arrays reshuffled each pass); a one-shot generator must yield
            ``num_steps`` batches.
        start_lr: learning rate of the first step. Defaults to 1e-7.
        end_lr: learning rate of the last step; must exceed ``start_lr``.
            Defaults to 1.
        num_steps: steps of the exponential ramp (>= 10). Defaults to 100.
        batch_size: batch size for array data. Defaults to 32.
        smoothing: factor of the exponential moving average of the loss that
            detects divergence, in ``[0, 1)``. Defaults to 0.98.
        diverge_factor: stop when that average exceeds this many times its
            best value (or the loss is NaN/inf). Defaults to 4.
        seed: seed of the shuffling of array data. Defaults to 0.

    Returns:
        An :class:`LRFindResult` with the curve, ``suggestion``, ``rule`` and ``reason``.

    Raises:
        KerafineError: if the model is not compiled, ``start_lr >= end_lr``, or
            another argument is out of range (before any training).
        DataError: if ``train_data`` holds no full batch, or is a one-shot
            generator with fewer than ``num_steps`` batches.
        TrainingError: if the loss is not finite even at ``start_lr``.

    Example:

    >>> import numpy as np, keras
    >>> from kerafine.lr_finder import lr_find
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> lr_find(model, (np.ones((640, 2)), np.ones(640)))
    Traceback (most recent call last):
    ...
    kerafine.errors.KerafineError: Invalid value for argument `model`: received <Sequential ...>; expected a compiled model. Call model.compile(optimizer, loss) first.
    """
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        raise KerafineError(
            f"Invalid value for argument `model`: received <{type(model).__name__} name={getattr(model, 'name', '?')}>; "
            "expected a compiled model. Call model.compile(optimizer, loss) first."
        )
    start_lr = check_number("start_lr", start_lr, minimum=0, min_inclusive=False, expected="a finite float > 0")
    end_lr = check_number("end_lr", end_lr, minimum=0, min_inclusive=False, expected="a finite float > 0")
    if start_lr >= end_lr:
        raise invalid_argument("start_lr", start_lr, f"a float smaller than end_lr={end_lr}", hint="The ramp goes up.")
    for name, value, minimum in (("num_steps", num_steps, _MIN_STEPS), ("batch_size", batch_size, 1)):
        check_int(name, value, minimum=minimum)
    smoothing = check_number(
        "smoothing", smoothing, minimum=0, maximum=1, max_inclusive=False, expected="a float in [0, 1)"
    )
    diverge_factor = check_number(
        "diverge_factor", diverge_factor, minimum=1, min_inclusive=False, expected="a finite float > 1"
    )
    info: dict = {}
    batches = _batches(train_data, batch_size, num_steps, seed, info)

    work = _copy_model(model)
    optimizer = _fresh_optimizer(model.optimizer, start_lr)
    work.compile(optimizer=optimizer, loss=model.loss, loss_weights=getattr(model, "loss_weights", None))
    ramp = start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))
    lrs, losses = [], []
    avg, best, diverged = 0.0, math.inf, False
    for i, (xb, yb, wb) in enumerate(batches):
        optimizer.learning_rate = float(ramp[i])
        logs = work.train_on_batch(xb, yb, sample_weight=wb, return_dict=True)
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            if i == 0:
                raise TrainingError(
                    f"lr_find: the loss is {loss} at the first step (learning rate {start_lr:g}); the data or "
                    "the model produce non-finite values before any learning-rate effect. Check the data "
                    "(np.isfinite) and the loss."
                )
            diverged = True
            break
        avg = smoothing * avg + (1.0 - smoothing) * loss
        value = avg / (1.0 - smoothing ** (i + 1))
        lrs.append(float(ramp[i]))
        losses.append(loss)
        best = min(best, value)
        if i > 0 and value > diverge_factor * best:
            diverged = True
            break
    del work
    lrs_a = np.asarray(lrs)
    smoothed_a = _centred_average(np.asarray(losses))
    suggestion, rule, steepest, reason = _suggest(lrs_a, smoothed_a, np.asarray(losses), diverged)
    return LRFindResult(
        learning_rates=lrs_a,
        losses=np.asarray(losses),
        smoothed_losses=smoothed_a,
        suggestion=float(suggestion),
        rule=rule,
        reason=reason,
        steepest_lr=steepest,
        min_loss_lr=float(lrs_a[int(np.argmin(smoothed_a))]),
        diverged=diverged,
        num_steps=num_steps,
        batches_per_pass=info.get("batches_per_pass"),
        epochs_of_data=(len(lrs) / info["batches_per_pass"]) if info.get("batches_per_pass") else 0.0,
        cycled=bool(info.get("batches_per_pass")) and len(lrs) > info["batches_per_pass"],
    )
