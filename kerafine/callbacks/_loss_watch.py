"""The one loss-watch rule: when does a training loss count as diverging?

Used by ``CheckpointRestart`` (to roll back) and ``TrainingMonitor`` (to say
so), with one set of defaults, so the two can never disagree on a batch.

The rule, exactly. Keras logs the epoch's running mean loss after every
batch hook; :meth:`LossWatch.observe` recovers the step's own loss from it
(exact when batches have equal sizes). If the running mean or the step's
loss is NaN/inf, the loss is *non-finite*. Otherwise the *smoothed loss* is
the mean of the last ``smoothing`` step losses (fewer at the very start); it
is *exploding* when it exceeds ``factor`` times the median of the previous
``window`` smoothed losses, tested once at least :data:`MIN_HISTORY` are
known. Smoothing keeps imbalanced data from tripping the rule: a batch that
holds a rare positive can have a cross-entropy many times the median, but it
moves a mean of 10 batches only by a tenth of that. A diverged observation is
not added to the history, so the median stays that of the healthy run.

Example:

>>> from kerafine.callbacks._loss_watch import LossWatch
>>> watch = LossWatch()
>>> [watch.observe(1.0, steps=1).kind for _ in range(20)][-1] is None
True
>>> running = (1.0 * 20 + 1e6) / 21   # one step with a loss of a million
>>> watch.observe(running, steps=1).kind
'exploding'
>>> watch.observe(float("nan"), steps=1).kind
'nonfinite'
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import deque
from typing import Optional

__all__ = ["LossWatch", "Verdict", "DEFAULT_FACTOR", "DEFAULT_WINDOW", "DEFAULT_SMOOTHING", "MIN_HISTORY"]

#: Smoothed loss / median of the recent smoothed losses counted as divergence.
DEFAULT_FACTOR = 10.0
#: How many recent smoothed losses make the median.
DEFAULT_WINDOW = 50
#: How many step losses the smoothed loss averages.
DEFAULT_SMOOTHING = 10
#: A ratio test on fewer smoothed losses than this would fire on the first noisy batches.
MIN_HISTORY = 8


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What :meth:`LossWatch.observe` concluded about one step.

    Attributes:
        kind: ``None`` (healthy), ``"nonfinite"`` or ``"exploding"``.
        running: the running mean Keras logged.
        batch_loss: the step's own loss (recovered from the running mean).
        smoothed: the smoothed loss, or ``None`` when non-finite.
        median: the median it was compared with, or ``None`` before
            :data:`MIN_HISTORY` smoothed losses are known.
        window: how many step losses ``smoothed`` averages.
    """

    kind: Optional[str]
    running: float
    batch_loss: float
    smoothed: Optional[float]
    median: Optional[float]
    window: int

    def describe(self, factor: float) -> str:
        """The reason in words (for warnings and errors)."""
        if self.kind == "nonfinite":
            return f"the loss is {self.running}"
        if self.kind == "exploding":
            return (
                f"the mean loss of the last {self.window} batches, {self.smoothed:.6g}, exceeds "
                f"{factor} x the recent median {self.median:.6g}"
            )
        return "the loss is healthy"


class LossWatch:
    """Per-batch divergence test on Keras's running mean loss (the rule is in the module docstring).

    Args:
        factor: the ratio counted as exploding (``> 1``). Defaults to ``10.0``.
        window: smoothed losses in the median (``>= MIN_HISTORY``). Defaults to ``50``.
        smoothing: step losses in the smoothed loss (``>= 1``). Defaults to ``10``.
    """

    def __init__(
        self, factor: float = DEFAULT_FACTOR, window: int = DEFAULT_WINDOW, smoothing: int = DEFAULT_SMOOTHING
    ):
        self.factor = float(factor)
        self.window = int(window)
        self.smoothing = int(smoothing)
        self.recent: deque = deque(maxlen=self.smoothing)  # step losses
        self.smoothed: deque = deque(maxlen=self.window)  # means of `recent`
        self.new_epoch()

    def new_epoch(self) -> None:
        """Keras's running mean restarts with every epoch."""
        self.mean_prev, self.mean_count = 0.0, 0

    def observe(self, running: float, steps: int = 1) -> Verdict:
        """Judge the ``steps`` steps whose hook reported the running mean ``running``; record them if healthy."""
        count = self.mean_count + steps
        batch_loss = (running * count - self.mean_prev * self.mean_count) / steps
        if not math.isfinite(running) or not math.isfinite(batch_loss):
            return Verdict("nonfinite", running, batch_loss, None, None, 0)
        window = list(self.recent)[-(self.smoothing - 1) :] if self.smoothing > 1 else []
        smoothed = math.fsum(window + [batch_loss]) / (len(window) + 1)
        median = statistics.median(self.smoothed) if len(self.smoothed) >= MIN_HISTORY else None
        if median is not None and median > 0 and smoothed > self.factor * median:
            return Verdict("exploding", running, batch_loss, smoothed, median, len(window) + 1)
        self.mean_prev, self.mean_count = running, count
        self.recent.append(batch_loss)
        self.smoothed.append(smoothed)
        return Verdict(None, running, batch_loss, smoothed, median, len(window) + 1)

    def skip(self, running: float, steps: int = 1) -> None:
        """Account for steps whose loss is not judged (kept in the running-mean bookkeeping only)."""
        self.mean_prev, self.mean_count = running, self.mean_count + steps

    def get_state(self) -> dict:
        """JSON-native state (the keys CheckpointRestart has always written)."""
        return {
            "recent_losses": [float(x) for x in self.recent],
            "recent_smoothed": [float(x) for x in self.smoothed],
            "running_mean": [float(self.mean_prev), int(self.mean_count)],
        }

    def set_state(self, state: dict, running_mean: bool = True) -> None:
        """Restore :meth:`get_state`'s output (``running_mean=False`` keeps this epoch's bookkeeping)."""
        self.recent.clear()
        self.smoothed.clear()
        self.recent.extend(float(x) for x in state.get("recent_losses", []))
        self.smoothed.extend(float(x) for x in state.get("recent_smoothed", []))
        if running_mean:
            prev, count = state.get("running_mean", [0.0, 0])
            self.mean_prev, self.mean_count = float(prev), int(count)
