"""Membership inference: can an attacker tell the training rows from rows the model never saw?

Two threshold attacks, each scoring every row of ``train_data`` (members) and
``holdout_data`` (non-members) from the model's output alone:

* ``loss`` (Yeom et al., 2018): the lower a row's loss under the model's own
  loss, the more likely it was trained on (needs the label).
* ``confidence`` (Salem et al., 2019): the higher the top predicted
  probability, the more likely a member (no label needed).

An attack's ROC-AUC (members positive) is exact, with a DeLong interval from
:func:`kerafine.metrics.roc_auc_ci`; its advantage is the largest ``TPR - FPR``
over thresholds (Yeom et al.'s membership advantage). An AUC interval that
contains 0.5 means no measurable leak at this sample size.

Example:

>>> import numpy as np, keras
>>> from kerafine.security import membership_inference
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(400, 4)).astype("float32"); y = (x[:, 0] > 0).astype("float32")
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
>>> model.compile("sgd", "binary_crossentropy")
>>> report = membership_inference(model, (x[:200], y[:200]), (x[200:], y[200:]))
>>> [a.name for a in report.attacks]
['loss', 'confidence']
"""

from __future__ import annotations

import dataclasses
import html
import math
import numbers
import warnings

import numpy as np

from kerafine._display import displayable
from kerafine.errors import DataError, invalid_argument
from kerafine.metrics import AUCInterval, roc_auc_ci, roc_curve
from kerafine.security import _common
from kerafine.security.robustness import split_data

__all__ = ["MembershipAttack", "MembershipReport", "membership_inference"]

_MIN_ROWS = 10


@dataclasses.dataclass(frozen=True)
class MembershipAttack:
    """One threshold attack's result.

    Attributes:
        name: ``"loss"`` or ``"confidence"``.
        auc: :class:`kerafine.metrics.AUCInterval` of the attack (members positive).
        advantage: maximum ``TPR - FPR`` over thresholds.
        roc_curve: ``(fpr, tpr)`` of the attack.
    """

    name: str
    auc: AUCInterval
    advantage: float
    roc_curve: tuple = dataclasses.field(repr=False, default=None)

    @property
    def leaks(self) -> bool:
        """True when the interval lies above 0.5 (the attack beats chance)."""
        return math.isfinite(self.auc.lower) and self.auc.lower > 0.5

    def to_dict(self) -> dict:
        return {"name": self.name, "auc": self.auc.to_dict(), "advantage": self.advantage}


@displayable
@dataclasses.dataclass(frozen=True)
class MembershipReport:
    """Result of :func:`membership_inference` (frozen).

    Attributes:
        attacks: the :class:`MembershipAttack` results, loss attack first.
        n_train: member rows scored.
        n_holdout: non-member rows scored.
        reading: one line saying what the numbers mean.
    """

    attacks: tuple
    n_train: int
    n_holdout: int
    reading: str

    @property
    def strongest(self) -> MembershipAttack:
        """The attack with the highest ROC-AUC."""
        return max(self.attacks, key=lambda a: a.auc.auc if math.isfinite(a.auc.auc) else -1.0)

    @property
    def auc(self) -> float:
        """ROC-AUC of the strongest attack."""
        return self.strongest.auc.auc

    @property
    def advantage(self) -> float:
        """Largest membership advantage over the attacks."""
        return max(a.advantage for a in self.attacks)

    @property
    def leaks(self) -> bool:
        """True when any attack's interval lies above 0.5."""
        return any(a.leaks for a in self.attacks)

    def to_dict(self) -> dict:
        return {
            "n_train": self.n_train,
            "n_holdout": self.n_holdout,
            "attacks": [a.to_dict() for a in self.attacks],
            "auc": self.auc,
            "advantage": self.advantage,
            "leaks": self.leaks,
            "reading": self.reading,
        }

    def _rows(self) -> list[str]:
        out = []
        for a in self.attacks:
            ci = f"[{a.auc.lower:.4f}, {a.auc.upper:.4f}]" if math.isfinite(a.auc.lower) else "n/a"
            out.append(f"{a.name:<10}  ROC-AUC {a.auc.auc:.4f} {ci}  advantage {a.advantage:.4f}")
        return out

    def title(self) -> str:
        return f"Membership inference ({self.n_train} training vs {self.n_holdout} held-out rows)"

    def __str__(self) -> str:
        return "\n".join([self.title()] + ["  " + r for r in self._rows()] + ["  " + self.reading])

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(f"<li>{esc(r)}</li>" for r in self._rows())
        return f"<div><b>{esc(self.title())}</b><ul>{rows}</ul><p>{esc(self.reading)}</p></div>"

    def draw(self, ax) -> None:
        """Draw the attacks' ROC curves on a matplotlib ``Axes``."""
        for a in self.attacks:
            fpr, tpr = a.roc_curve
            ax.plot(fpr, tpr, label=f"{a.name} (AUC {a.auc.auc:.3f})")
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
        ax.set(
            xlabel="false positive rate (held-out rows)",
            ylabel="true positive rate (training rows)",
            title="Membership inference",
            xlim=(0, 1),
            ylim=(0, 1.01),
        )
        ax.legend(fontsize="small")

    def plot(self, figsize=(5, 4)):
        """A matplotlib ``Figure`` of the attacks' ROC curves (not shown)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        self.draw(fig.subplots())
        fig.tight_layout()
        return fig


def _row_keys(x) -> list:
    """Hashable content of each row (all inputs of a dict together), to find rows shared by two sets."""
    arrays = [np.asarray(x[k]) for k in sorted(x)] if isinstance(x, dict) else [np.asarray(x)]
    parts = []
    for a in arrays:
        flat = a.reshape(len(a), -1)
        if flat.dtype.kind in "OUS":
            parts.append([tuple(map(str, r)) for r in flat])
        else:
            flat = np.ascontiguousarray(flat.astype(np.float64))
            parts.append([r.tobytes() for r in flat])
    return list(zip(*parts))


def _probabilities(pred: np.ndarray) -> np.ndarray:
    """Class probabilities ``(n, k)`` from the model output (sigmoid / softmax applied to logits)."""
    pred = np.asarray(pred, dtype=np.float64)
    if pred.ndim == 1:
        pred = pred[:, None]
    if pred.shape[1] == 1:
        p = pred[:, 0]
        if p.min() < 0 or p.max() > 1:
            p = 1.0 / (1.0 + np.exp(-p))
        return np.stack([1 - p, p], axis=1)
    if pred.min() < 0 or pred.max() > 1 or not np.allclose(pred.sum(axis=1), 1.0, atol=1e-3):
        z = pred - pred.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    return pred


def _losses(model, fn, pred, y) -> np.ndarray:
    import tensorflow as tf

    pred_t = tf.constant(pred)
    y_t = tf.cast(tf.constant(np.asarray(y)), pred_t.dtype)
    if y_t.shape.rank == 1 and pred_t.shape.rank == 2 and pred_t.shape[-1] == 1:
        y_t = y_t[:, None]
    return np.asarray(fn(y_t, pred_t), dtype=np.float64).reshape(len(pred))


def _attack(name: str, member_scores, other_scores, level) -> MembershipAttack:
    scores = np.concatenate([member_scores, other_scores])
    truth = np.concatenate([np.ones(len(member_scores), bool), np.zeros(len(other_scores), bool)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = roc_auc_ci(truth, scores, level=level)
        fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    return MembershipAttack(name, ci, float(np.max(tpr - fpr)), (np.asarray(fpr), np.asarray(tpr)))


def _reading(attacks) -> str:
    leaking = [a for a in attacks if a.leaks]
    if not leaking:
        best = max(attacks, key=lambda a: a.auc.auc)
        return (
            f"no measurable leak: the best attack ({best.name}) has ROC-AUC {best.auc.auc:.3f} "
            f"[{best.auc.lower:.3f}, {best.auc.upper:.3f}], an interval containing 0.5 (chance)"
        )
    best = max(leaking, key=lambda a: a.auc.auc)
    return (
        f"membership leaks: the {best.name} attack tells training rows from held-out rows with ROC-AUC "
        f"{best.auc.auc:.3f} [{best.auc.lower:.3f}, {best.auc.upper:.3f}] (advantage {best.advantage:.3f})"
    )


def membership_inference(
    model, train_data, holdout_data, *, loss=None, level: float = 0.95, batch_size: int = 256
) -> MembershipReport:
    """Loss- and confidence-threshold membership attacks on ``model``.

    Args:
        model: a ``keras.Model`` with one output (probabilities or logits),
            compiled unless ``loss`` is given (the loss attack uses it per row).
        train_data: ``(x, y)`` rows the model was trained on (members).
        holdout_data: ``(x, y)`` rows it never saw, disjoint from ``train_data``.
            Use about as many rows as ``train_data`` (at least 10 each).
        loss: the per-row loss instead of the compiled one. Defaults to ``None``.
        level: level of the DeLong intervals. Defaults to 0.95.
        batch_size: prediction batch size. Defaults to 256.

    Returns:
        :class:`MembershipReport`: per attack the ROC-AUC with its interval and
        the maximum advantage, and a one-line ``reading``.

    Raises:
        DataError: a row of ``holdout_data`` also in ``train_data``, fewer than
            10 rows in either, data not ``(x, y)``.
        KerafineError: an uncompiled model without ``loss``, a bad ``level``.

    Example:

    >>> import numpy as np, keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    >>> model.compile("sgd", "binary_crossentropy")
    >>> x = np.arange(40, dtype="float32").reshape(20, 2); y = np.arange(20) % 2
    >>> membership_inference(model, (x[:10], y[:10]), (x[10:], y[10:])).n_holdout
    10
    """
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise invalid_argument("level", level, "a float strictly between 0 and 1, e.g. 0.95")
    batch_size = _common.check_positive_int(batch_size, "batch_size")
    _common.check_single_output(model)
    fn = _common.per_sample_loss(model, loss)
    xt, yt = split_data(train_data, "train_data")
    xh, yh = split_data(holdout_data, "holdout_data")
    sides = {}
    for name, x, y in (("train_data", xt, yt), ("holdout_data", xh, yh)):
        keys = _row_keys(x)
        if len(keys) < _MIN_ROWS:
            raise invalid_argument(name, f"{len(keys)} rows", f"at least {_MIN_ROWS} rows", error=DataError)
        sides[name] = (keys, _common.check_labels(y, len(keys), name))
    members = set(sides["train_data"][0])
    shared = [i for i, k in enumerate(sides["holdout_data"][0]) if k in members]
    if shared:
        raise invalid_argument(
            "holdout_data",
            f"{len(shared)} row(s) also in train_data (first: holdout row {shared[0]})",
            "rows disjoint from train_data",
            "A held-out row seen in training would count as a non-member and hide the leak; drop the shared rows.",
            error=DataError,
        )
    scores = {}
    for name, x in (("train_data", xt), ("holdout_data", xh)):
        pred = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
        y = sides[name][1]
        losses = _losses(model, fn, pred.astype(np.float32), y)
        conf = _probabilities(pred).max(axis=1)
        scores[name] = (-losses, conf)
    attacks = (
        _attack("loss", scores["train_data"][0], scores["holdout_data"][0], float(level)),
        _attack("confidence", scores["train_data"][1], scores["holdout_data"][1], float(level)),
    )
    return MembershipReport(attacks, len(sides["train_data"][0]), len(sides["holdout_data"][0]), _reading(attacks))
