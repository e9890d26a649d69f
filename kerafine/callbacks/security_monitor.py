"""Robust accuracy during ``fit``: is the model getting more accurate but more brittle?

:class:`SecurityMonitor` attacks a fixed labelled sample at a chosen radius
every ``every_n_epochs`` epochs (with :mod:`kerafine.security`'s FGSM or PGD,
on the model's own loss), writes the clean and robust accuracy into the epoch's
``logs`` and to TensorBoard, and warns with a :class:`SecurityWarning` when
robust accuracy falls while clean accuracy rises since the previous check: the
model is fitting features an attacker can move.
"""

from __future__ import annotations

import math
import numbers
import re

from kerafine import _warn
from kerafine.callbacks.state import _AlertHistoryCallback
from kerafine.errors import invalid_argument

__all__ = ["SecurityMonitor", "SecurityWarning"]


class SecurityWarning(UserWarning):
    """Robust accuracy fell while clean accuracy rose."""


class SecurityMonitor(_AlertHistoryCallback):
    """Log robust accuracy at ``epsilon`` every ``every_n_epochs`` epochs; warn when it falls as clean accuracy rises.

    Keys written into ``logs`` on checked epochs (left out on the others, as
    :class:`kerafine.callbacks.AUCTracker` does): ``clean_accuracy`` and
    ``robust_accuracy`` (prefixed ``<name>_`` when ``name`` is given). With
    ``log_dir``: TensorBoard scalars ``security/clean_accuracy`` and
    ``security/robust_accuracy`` under ``<log_dir>/kerafine`` (same prefix),
    and the warning as text (``security/alert``). A robust accuracy is the accuracy when each
    row is replaced by the worse of itself and its adversarial example (the
    adversary may leave a row alone).

    Args:
        data: ``(x, y)``: a labelled sample (a few hundred rows: it is attacked
            at every check) as arrays or a dict of arrays.
        epsilon: the attack radius (model input units). Must be > 0.
        attack: ``"fgsm"`` (one gradient pass) or ``"pgd"``. Defaults to ``"fgsm"``.
        steps: PGD steps. Defaults to 10.
        every_n_epochs: check at the end of every n-th epoch. Defaults to 1.
        log_dir: TensorBoard run directory. Defaults to ``None`` (no events).
        threshold: binary decision threshold. Defaults to ``None`` (0.5 for
            probabilities, 0 for logits).
        perturb: dict inputs: the float inputs that move. Defaults to ``None`` (all float inputs).
        clip: as :func:`kerafine.security.fgsm`. Defaults to ``"auto"``.
        seed: seed of PGD's random start. Defaults to 0.
        batch_size: rows per pass. Defaults to 256.
        name: prefix of the logs keys, for several monitors. Defaults to ``None``.

    Raises:
        KerafineError: a bad argument, before ``fit`` starts (``epsilon <= 0``,
            string inputs in ``perturb``, ``data`` not ``(x, y)``).

    Example:

    >>> import numpy as np, keras
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(128, 3)).astype("float32"); y = (x[:, 0] > 0).astype("float32")
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    >>> model.compile("adam", "binary_crossentropy")
    >>> history = model.fit(x, y, epochs=2, verbose=0, callbacks=[SecurityMonitor((x, y), epsilon=0.1)])
    >>> sorted(k for k in history.history if "accuracy" in k)
    ['clean_accuracy', 'robust_accuracy']
    """

    def __init__(
        self,
        data,
        epsilon: float,
        attack: str = "fgsm",
        steps: int = 10,
        every_n_epochs: int = 1,
        log_dir=None,
        threshold: float | None = None,
        perturb=None,
        clip="auto",
        seed: int | None = 0,
        batch_size: int = 256,
        name: str | None = None,
    ):
        super().__init__()
        from kerafine.security import _common
        from kerafine.security.attacks import check_attack
        from kerafine.security.robustness import split_data

        _common.check_epsilon(epsilon)
        check_attack(attack)
        _common.check_positive_int(steps, "steps")
        _common.check_positive_int(every_n_epochs, "every_n_epochs")
        _common.check_positive_int(batch_size, "batch_size")
        _common.check_seed(seed)
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold)
        ):
            raise invalid_argument("threshold", threshold, "None or a finite number")
        if name is not None and not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_.\-]+", name)):
            raise invalid_argument("name", name, "None or a non-empty identifier (letters, digits, _ . -)")
        if log_dir is not None:
            from kerafine import _io

            _io.check_writable_directory(log_dir, "log_dir")
        x, y = split_data(data)
        # Validates the inputs, perturb and clip now (clip "auto" is resolved against the model later).
        probe = _common.Inputs(x, perturb, None if clip == "auto" else clip, model=None)
        _common.check_labels(y, probe.n)
        self.data = data
        self.epsilon = epsilon
        self.attack = attack
        self.steps = steps
        self.every_n_epochs = every_n_epochs
        self.log_dir = log_dir
        self.threshold = threshold
        self.perturb = perturb
        self.clip = clip
        self.seed = seed
        self.batch_size = batch_size
        self.name = name
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._attacker = None

    # ---------------------------------------------------------- state protocol
    @property
    def state_key(self) -> str:
        return f"SecurityMonitor[{self.attack}|{self.epsilon:g}|{self.name or ''}]"

    # --------------------------------------------------------------- keras
    def on_train_begin(self, logs=None):
        self._restore_or_reset()
        self._attacker = None

    def on_train_end(self, logs=None):
        if self.log_dir is not None:
            from kerafine import tensorboard

            tensorboard.flush(self.log_dir)  # also writes the run's layout if it is due

    def _key(self, key: str) -> str:
        return f"{self.name}_{key}" if self.name else key

    def check(self) -> tuple[float, float]:
        """``(clean_accuracy, robust_accuracy)`` of the model now."""
        from kerafine.security.attacks import Attacker
        from kerafine.security.robustness import _curve, split_data

        if self._attacker is None:
            self._attacker = Attacker(self.model, batch_size=self.batch_size)
        x, y = split_data(self.data)
        inputs, y = self._attacker.prepare(x, y, self.perturb, self.clip)
        rows, _, _ = _curve(
            self.model,
            self._attacker,
            inputs,
            y,
            [float(self.epsilon)],
            self.attack,
            self.steps,
            None,
            True,
            self.seed,
            self.threshold,
            0.95,
            self.batch_size,
        )
        return float(rows[0][0]), float(rows[1][0])

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        clean, robust = self.check()
        self._write_logs(logs, {self._key("clean_accuracy"): clean, self._key("robust_accuracy"): robust})
        alert = None
        if self.history:
            prev = self.history[-1]
            if robust < prev["robust_accuracy"] and clean > prev["clean_accuracy"]:
                alert = (
                    f"Robust accuracy at epsilon={self.epsilon:g} ({self.attack}) fell from {prev['robust_accuracy']:.4f} "
                    f"(epoch {prev['epoch'] + 1}) to {robust:.4f} (epoch {epoch + 1}) while clean accuracy rose from "
                    f"{prev['clean_accuracy']:.4f} to {clean:.4f}: the model is learning features an attacker can move."
                )
        self.history.append({"epoch": int(epoch), "clean_accuracy": clean, "robust_accuracy": robust})
        if alert:
            self.n_alerts += 1
            _warn.warn(alert, SecurityWarning, hook=True)
        if self.log_dir is not None:
            from kerafine import tensorboard

            tensorboard.scalars(
                self.log_dir,
                {f"security/{self._key('clean_accuracy')}": clean, f"security/{self._key('robust_accuracy')}": robust},
                step=epoch,
            )
            if alert:
                tensorboard.text(self.log_dir, f"security/{self._key('alert')}", alert, step=epoch)
