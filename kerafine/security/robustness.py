"""Robustness curve: accuracy and exact ROC-AUC as the attack radius grows.

For each ``epsilon`` the attack starts from the clean inputs; a row then keeps
the worst prediction found at any radius up to ``epsilon`` (an adversary
allowed ``epsilon`` may use every smaller perturbation too). The curve is
therefore non-increasing in ``epsilon`` by construction, and each point is the
accuracy (and AUC) of the strongest attack tried so far: an upper bound on the
true robust accuracy. The PGD curve also folds in the FGSM example at each
radius, so it is never above the FGSM curve.

Example:

>>> import numpy as np, keras
>>> from kerafine.security import robustness_curve
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(200, 3)).astype("float32"); y = (x[:, 0] > 0).astype("float32")
>>> keras.utils.set_random_seed(0)
>>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
>>> model.compile(keras.optimizers.Adam(0.1), "binary_crossentropy")
>>> _ = model.fit(x, y, epochs=20, verbose=0)
>>> curve = robustness_curve(model, (x, y), [0.1, 0.5], attack="fgsm")
>>> curve.to_frame()["epsilon"].tolist(), bool(curve.accuracy[0] >= curve.accuracy[-1])
([0.0, 0.1, 0.5], True)
"""

from __future__ import annotations

import dataclasses
import html
import math
import numbers
from collections.abc import Sequence
from typing import Optional

import numpy as np

from kerafine._display import displayable
from kerafine.errors import DataError, invalid_argument
from kerafine.security import _common
from kerafine.security.attacks import Attacker, check_attack, check_step_size

__all__ = ["RobustnessCurve", "robustness_curve"]


@displayable
@dataclasses.dataclass(frozen=True)
class RobustnessCurve:
    """Result of :func:`robustness_curve` (frozen).

    Attributes:
        attack: ``"pgd"`` or ``"fgsm"``.
        kind: ``"binary"`` or ``"multiclass"``.
        n_samples: rows attacked.
        epsilon: radii, starting with 0 (the clean inputs).
        accuracy: accuracy at each radius (worst case over the radii up to it).
        roc_auc: exact ROC-AUC at each radius (multiclass: one-vs-rest macro).
        auc_lower: lower bound of the DeLong interval (binary; ``nan`` otherwise).
        auc_upper: upper bound likewise.
        level: level of the intervals.
        threshold: decision threshold of a binary model (``None`` for arg-max).
        steps: PGD steps (1 for FGSM).
    """

    attack: str
    kind: str
    n_samples: int
    epsilon: np.ndarray
    accuracy: np.ndarray
    roc_auc: np.ndarray
    auc_lower: np.ndarray
    auc_upper: np.ndarray
    level: float
    threshold: Optional[float]
    steps: int

    def to_frame(self):
        """A ``pandas.DataFrame``, one row per radius: ``epsilon``, ``accuracy``, ``roc_auc``, ``auc_lower``, ``auc_upper``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "epsilon": self.epsilon,
                "accuracy": self.accuracy,
                "roc_auc": self.roc_auc,
                "auc_lower": self.auc_lower,
                "auc_upper": self.auc_upper,
            }
        )

    def to_dict(self) -> dict:
        """Plain values (lists, floats; ``nan`` stays ``nan``, the report's JSON turns it into ``null``)."""
        return {
            "attack": self.attack,
            "kind": self.kind,
            "n_samples": self.n_samples,
            "steps": self.steps,
            "level": self.level,
            "threshold": self.threshold,
            "epsilon": self.epsilon.tolist(),
            "accuracy": self.accuracy.tolist(),
            "roc_auc": self.roc_auc.tolist(),
            "auc_lower": self.auc_lower.tolist(),
            "auc_upper": self.auc_upper.tolist(),
        }

    def _rows(self) -> list[str]:
        out = [f"{'epsilon':>10}  {'accuracy':>8}  {'ROC-AUC':>7}  interval"]
        for e, a, r, lo, hi in zip(self.epsilon, self.accuracy, self.roc_auc, self.auc_lower, self.auc_upper):
            ci = f"[{lo:.4f}, {hi:.4f}]" if math.isfinite(lo) else "n/a"
            out.append(f"{e:>10.4g}  {a:>8.4f}  {r:>7.4f}  {ci}")
        return out

    def title(self) -> str:
        what = "FGSM" if self.attack == "fgsm" else f"PGD-{self.steps}"
        return f"Robustness ({what}, L-inf, {self.n_samples} rows)"

    def __str__(self) -> str:
        return "\n".join([self.title()] + ["  " + r for r in self._rows()])

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "<tr><th>epsilon</th><th>accuracy</th><th>ROC-AUC</th><th>interval</th></tr>"
        body = "".join(
            f"<tr><td>{e:.4g}</td><td>{a:.4f}</td><td>{r:.4f}</td>"
            f"<td>{esc(f'[{lo:.4f}, {hi:.4f}]' if math.isfinite(lo) else 'n/a')}</td></tr>"
            for e, a, r, lo, hi in zip(self.epsilon, self.accuracy, self.roc_auc, self.auc_lower, self.auc_upper)
        )
        return f"<div><b>{esc(self.title())}</b><table>{head}{body}</table></div>"

    def draw(self, ax) -> None:
        """Draw the curve on a matplotlib ``Axes`` (used by :meth:`plot` and the evaluation report)."""
        ax.plot(self.epsilon, self.accuracy, marker="o", label="accuracy")
        ax.plot(self.epsilon, self.roc_auc, marker="s", label="ROC-AUC")
        if np.isfinite(self.auc_lower).any():
            ax.fill_between(self.epsilon, self.auc_lower, self.auc_upper, alpha=0.2, label=f"{self.level:.0%} DeLong")
        ax.set(xlabel="epsilon (L-inf, model input units)", ylabel="score", title=self.title(), ylim=(0, 1.01))
        ax.legend(fontsize="small")

    def plot(self, figsize=(5, 4)):
        """A matplotlib ``Figure`` of accuracy and ROC-AUC against epsilon (not shown).

        Args:
            figsize: size in inches. Defaults to ``(5, 4)``.
        """
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        self.draw(fig.subplots())
        fig.tight_layout()
        return fig


def check_epsilons(epsilons, name: str = "epsilons") -> list[float]:
    if isinstance(epsilons, (str, bytes)) or not hasattr(epsilons, "__iter__"):
        raise invalid_argument(name, epsilons, "a non-empty list of numbers > 0")
    values = list(epsilons)
    if not values:
        raise invalid_argument(name, epsilons, "a non-empty list of numbers > 0")
    for e in values:
        if isinstance(e, bool) or not isinstance(e, numbers.Real) or not math.isfinite(e) or e <= 0:
            raise invalid_argument(
                name, epsilons, "a non-empty list of finite numbers > 0 (0, the clean inputs, is always included)"
            )
    return sorted(set(float(e) for e in values))


def split_data(data, name: str = "data"):
    if isinstance(data, tuple) and len(data) in (2, 3):
        return data[0], data[1]
    raise invalid_argument(
        name, type(data).__name__, "an (x, y) tuple of arrays (or of a dict of arrays and labels)", error=DataError
    )


def _scores(pred: np.ndarray) -> np.ndarray:
    pred = np.asarray(pred, dtype=np.float64)
    if pred.ndim == 2 and pred.shape[1] == 1:
        return pred[:, 0]
    return pred


def _labels(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    if scores.ndim == 1:
        y = np.asarray(y).reshape(len(y), -1)
        if y.shape[1] != 1:
            raise invalid_argument(
                "data", f"labels of shape {y.shape}", "one 0/1 label per row for a one-output model", error=DataError
            )
        return (y[:, 0] > 0.5).astype(np.int64) if y.dtype.kind == "f" else (y[:, 0] > 0).astype(np.int64)
    if np.ndim(y) == 2:
        return np.argmax(y, axis=1)
    return np.asarray(y).astype(np.int64)


def _badness(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How wrong each row's prediction is (larger is worse): what the attack pushes up."""
    if scores.ndim == 1:
        return np.where(labels == 1, -scores, scores)
    true = scores[np.arange(len(labels)), labels]
    others = scores.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return others.max(axis=1) - true


def _point(scores, labels, threshold, level):
    import warnings

    from kerafine.metrics import roc_auc, roc_auc_ci

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a single class gives nan; the clean report already warned
        if scores.ndim == 1:
            acc = float(np.mean((scores >= threshold) == (labels == 1)))
            ci = roc_auc_ci(labels, scores, level=level)
            return acc, ci.auc, ci.lower, ci.upper
        acc = float(np.mean(np.argmax(scores, axis=1) == labels))
        auc = roc_auc(labels, scores, labels=list(range(scores.shape[1])))
        return acc, float(auc), float("nan"), float("nan")


def robustness_curve(
    model,
    data,
    epsilons: Sequence[float],
    attack: str = "pgd",
    *,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    seed: int | None = 0,
    threshold: float | None = None,
    level: float = 0.95,
    perturb=None,
    clip="auto",
    loss=None,
    batch_size: int = 256,
    progress: bool = True,
) -> RobustnessCurve:
    """Accuracy and exact ROC-AUC (DeLong interval) of ``model`` against the attack radius.

    Args:
        model: a compiled ``keras.Model`` with one output (binary: ``(n, 1)``
            or ``(n,)`` scores; multiclass: ``(n, k)``).
        data: ``(x, y)`` with ``x`` an array or a dict of arrays.
        epsilons: attack radii > 0, in the units the model sees (0 is added).
        attack: ``"pgd"`` or ``"fgsm"``. Defaults to ``"pgd"``.
        steps: PGD steps. Defaults to 10.
        step_size: PGD step. Defaults to ``None`` (``2.5 * epsilon / steps``).
        random_start: PGD random start. Defaults to ``True``.
        seed: seed of the random start. Defaults to 0.
        threshold: binary decision threshold. Defaults to ``None``: 0.5 when the
            clean scores lie in [0, 1] (probabilities), else 0 (logits).
        level: level of the DeLong intervals. Defaults to 0.95.
        perturb: as :func:`kerafine.security.fgsm`.
        clip: as :func:`kerafine.security.fgsm`.
        loss: as :func:`kerafine.security.fgsm`.
        batch_size: rows per pass. Defaults to 256.
        progress: a ``tqdm`` bar over the radii, shown only on an interactive
            terminal and only if the curve takes more than a second
            (``TQDM_DISABLE=1`` in the environment also hides it). Defaults to
            ``True``; ``False`` never shows it.

    Returns:
        :class:`RobustnessCurve` (``to_frame()`` for a DataFrame, ``plot()`` for a Figure).

    Raises:
        KerafineError: an epsilon <= 0, an unknown ``attack``, and the errors of
            :func:`kerafine.security.pgd`.
        DataError: ``data`` not ``(x, y)``, labels that do not fit the output.

    Example:

    >>> import numpy as np, keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    >>> model.compile("sgd", "binary_crossentropy")
    >>> x = np.array([[1, 0], [-1, 0], [2, 0], [-2, 0]], "float32"); y = np.array([1, 0, 1, 0])
    >>> curve = robustness_curve(model, (x, y), [0.5], attack="fgsm")
    >>> curve.epsilon.tolist()
    [0.0, 0.5]
    """
    eps = check_epsilons(epsilons)
    check_attack(attack)
    steps = _common.check_positive_int(steps, "steps")
    step_size = check_step_size(step_size)
    _common.check_seed(seed)
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold)
    ):
        raise invalid_argument("threshold", threshold, "None or a finite number")
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise invalid_argument("level", level, "a float strictly between 0 and 1, e.g. 0.95")
    if not isinstance(progress, bool):
        raise invalid_argument("progress", progress, "True or False")
    x, y = split_data(data)
    attacker = Attacker(model, loss, batch_size)
    inputs, y = attacker.prepare(x, y, perturb, clip)

    rows, clean, threshold = _curve(
        model,
        attacker,
        inputs,
        y,
        eps,
        attack,
        steps,
        step_size,
        random_start,
        seed,
        threshold,
        float(level),
        batch_size,
        progress,
    )
    acc, auc, lo, hi = (np.array(c, dtype=np.float64) for c in zip(*rows))
    return RobustnessCurve(
        attack=attack,
        kind="binary" if clean.ndim == 1 else "multiclass",
        n_samples=int(inputs.n),
        epsilon=np.array([0.0] + eps),
        accuracy=acc,
        roc_auc=auc,
        auc_lower=lo,
        auc_upper=hi,
        level=float(level),
        threshold=None if clean.ndim != 1 else float(threshold),
        steps=1 if attack == "fgsm" else steps,
    )


def _curve(
    model,
    attacker,
    inputs,
    y,
    eps,
    attack,
    steps,
    step_size,
    random_start,
    seed,
    threshold,
    level,
    batch_size,
    progress=False,
):
    """Rows ``(accuracy, auc, lower, upper)`` at 0 and each radius; also the clean scores and the threshold used."""
    clean = _scores(
        model.predict(inputs.rebuild({k: inputs.arrays[k] for k in inputs.moving}), batch_size=batch_size, verbose=0)
    )
    labels = _labels(y, clean)
    if clean.ndim == 1 and threshold is None:
        threshold = 0.5 if clean.min() >= 0 and clean.max() <= 1 else 0.0
    worst, worst_bad = clean.copy(), _badness(clean, labels)
    rows = [_point(worst, labels, threshold, float(level))]
    from tqdm.auto import tqdm

    # disable=None: tqdm stays silent when stderr is not a terminal (logs, CI, pytest).
    for e in tqdm(
        eps, desc=f"robustness ({attack})", unit="radius", delay=1.0, leave=False, disable=None if progress else True
    ):
        # PGD's curve also folds in the FGSM point (one more gradient pass): a random start can
        # leave PGD a hair short of FGSM's corner on a near-linear model, and the adversary has both.
        tries = ["fgsm"] if attack == "fgsm" else ["pgd", "fgsm"]
        for name in tries:
            adv = attacker.attack(inputs, y, name, e, steps, step_size, random_start, seed)
            scores = _scores(model.predict(adv, batch_size=batch_size, verbose=0))
            bad = _badness(scores, labels)
            take = bad > worst_bad
            worst[take], worst_bad[take] = scores[take], bad[take]
        rows.append(_point(worst, labels, threshold, float(level)))
    return rows, clean, threshold
