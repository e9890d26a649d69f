"""ConsoleProgress: one short line per epoch instead of Keras's full ``logs`` dump.

Keras's progress output prints every key of ``logs``. kerafine's callbacks
add keys there on purpose (``History``, ``CSVLogger`` and ``EarlyStopping``
read them): TrainingMonitor's learning rate, step time, samples per second,
CPU and memory, AUCTracker's interval bounds, DriftMonitor's share. The
result was a line of some 300 characters per epoch. This callback prints
what a person watches (loss, the compiled metrics, validation AUC, drift
share, learning rate) in one line of at most ``width`` characters, and
leaves the rest in the logs, the CSV and TensorBoard. Use it with
``verbose=0`` in ``fit``; :func:`kerafine.fine_tune` and the ``kerafine``
command do that for you.
"""

from __future__ import annotations

import sys
import time

import keras

from kerafine._display import human_duration
from kerafine.errors import check_int, invalid_argument

__all__ = ["ConsoleProgress", "DETAIL_KEYS"]

#: Keys left out of the line by default: diagnostics that live in TensorBoard and the logs/CSV.
DETAIL_KEYS = frozenset(
    {
        "step_seconds",
        "samples_per_second",
        "cpu_percent",
        "rss_mb",
        "gpu_memory_mb",
        "update_ratio",
    }
)
_RENAME = {"learning_rate": "lr"}


def _is_detail(key: str) -> bool:
    base = key[4:] if key.startswith("val_") else key
    return (
        base in DETAIL_KEYS
        or base.endswith(("_lower", "_upper", "_detected", "_p_value"))  # AUC interval, drift flags: TensorBoard
        or "/" in key
    )


def _priority(key: str) -> tuple:
    # loss first, then the validation AUC kerafine tracks, the compiled metrics, drift, the learning rate.
    if key == "loss":
        return (0, key)
    if key == "val_loss":
        return (1, key)
    if key.startswith("val_") and "auc" in key:
        return (2, key)
    if key == "learning_rate":
        return (6, key)
    if "drift" in key or "robust" in key:
        return (5, key)
    if key.startswith("val_"):
        return (4, key)
    return (3, key)


def _number(value) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v:
        return "nan"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.2e}"
    return f"{v:.4f}"


class ConsoleProgress(keras.callbacks.Callback):
    """Print one line of at most ``width`` characters per epoch.

    The line reads ``epoch 3/10  4.2 s  loss 0.4213  val_loss 0.4420
    val_auc 0.8812 ...``: the epoch, its wall time, then the keys of ``logs``
    in this order while they fit in ``width``: ``loss``, ``val_loss``, the
    validation AUCs, the compiled metrics, drift and robustness figures, the
    learning rate (as ``lr``). Diagnostics (:data:`DETAIL_KEYS`, AUC interval
    bounds, drift flags) are left out: they are in TensorBoard and in any
    ``CSVLogger``. A key that does not fit is dropped whole, never cut.
    With ``verbose=1`` and an interactive terminal, the line also counts
    batches while the epoch runs (rewritten in place). A ``fit`` that runs no
    epoch (a restarted run that had already finished) says so in one line.

    Args:
        verbose: 1 (batch counter on a terminal, then the epoch line) or 2
            (the epoch line only). Defaults to 2.
        width: the longest line printed. Defaults to 120.
        keys: the ``logs`` keys to show, in order. Defaults to ``None``: the
            choice described above.
        stream: where to print. Defaults to ``None``: ``sys.stdout`` at each
            print (so pytest's capture and redirections see it).

    Raises:
        KerafineError: a bad ``verbose``, ``width`` or ``keys``.

    Example:

    >>> import numpy as np, keras
    >>> from kerafine.callbacks import ConsoleProgress
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile("sgd", "mse")
    >>> _ = model.fit(np.zeros((8, 3)), np.zeros(8), epochs=1, verbose=0,
    ...               callbacks=[ConsoleProgress()])  # doctest: +ELLIPSIS
    epoch 1/1  ... s  loss 0.0000
    """

    def __new__(cls, verbose: int = 2, *args, **kwargs):
        # The batch counter lives in a subclass: Keras runs batch hooks asynchronously, hence faster,
        # when no callback overrides them, so the epoch-line-only callback must not define one.
        if cls is ConsoleProgress and verbose == 1 and not isinstance(verbose, bool):
            cls = _LiveConsoleProgress
        return super().__new__(cls)

    def __init__(self, verbose: int = 2, width: int = 120, keys=None, stream=None):
        super().__init__()
        if isinstance(verbose, bool) or verbose not in (1, 2):
            raise invalid_argument("verbose", verbose, "1 (batch counter and epoch line) or 2 (epoch line only)")
        check_int("width", width, minimum=40)
        if keys is not None and (isinstance(keys, str) or not all(isinstance(k, str) for k in keys)):
            raise invalid_argument("keys", keys, "None or a list of logs keys (str)")
        self.verbose = verbose
        self.width = width
        self.keys = None if keys is None else list(keys)
        self.stream = stream
        self._said_done = False
        self._reset()

    def _reset(self):
        self._epochs_run = 0
        self._t0 = None
        self._live = False

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def _interactive(self) -> bool:
        out = self._out()
        return self.verbose == 1 and bool(getattr(out, "isatty", lambda: False)())

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def line(self, epoch: int, seconds: float, logs: dict) -> str:
        """The epoch line for ``logs`` (0-based ``epoch``), at most ``width`` characters."""
        epochs = (self.params or {}).get("epochs")
        text = f"epoch {epoch + 1}" + (f"/{epochs}" if epochs else "") + f"  {human_duration(seconds)}"
        if self.keys is not None:
            chosen = [k for k in self.keys if k in logs]
        else:
            chosen = sorted((k for k in logs if not _is_detail(k)), key=_priority)
        for key in chosen:
            part = f"  {_RENAME.get(key, key)} {_number(logs[key])}"
            if len(text) + len(part) <= self.width:
                text += part
        return text

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - (self._t0 if self._t0 is not None else time.perf_counter())
        text = self.line(epoch, seconds, dict(logs or {}))
        out = self._out()
        if self._live:
            out.write("\r" + " " * self.width + "\r")
            self._live = False
        print(text, file=out, flush=True)
        self._epochs_run += 1

    def on_train_end(self, logs=None):
        # Once per instance: fine_tune's two phases share one ConsoleProgress, and a finished run re-run
        # must say so in one line, not one per phase.
        if self._epochs_run == 0 and not self._said_done:
            epochs = (self.params or {}).get("epochs")
            print(
                f"nothing to train: all {epochs} epochs of this run were already done (or it had stopped "
                "early); the restored checkpoint holds the result",
                file=self._out(),
                flush=True,
            )
            self._said_done = True


class _LiveConsoleProgress(ConsoleProgress):
    """``ConsoleProgress(verbose=1)``: also counts batches in place while an epoch runs (on a terminal)."""

    def on_train_batch_end(self, batch, logs=None):
        if not self._interactive():
            return
        steps = (self.params or {}).get("steps")
        loss = (logs or {}).get("loss")
        text = (
            f"  batch {batch + 1}"
            + (f"/{steps}" if steps else "")
            + (f"  loss {_number(loss)}" if loss is not None else "")
        )
        self._out().write("\r" + text[: self.width])
        self._out().flush()
        self._live = True
