"""Champion/challenger: compare candidate models on the same test sets and decide which one serves."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any

import numpy as np

from kerafine._display import displayable
from kerafine.errors import invalid_argument
from kerafine.update._checks import check_model, check_xy, input_signature

__all__ = ["compare", "decide", "Comparison", "Decision"]

_COLUMNS = [
    "candidate",
    "test_set",
    "roc_auc",
    "roc_auc_lower",
    "roc_auc_upper",
    "pr_auc",
    "ece",
    "params",
    "predict_ms_per_1k",
    "auc_difference",
    "difference_lower",
    "difference_upper",
    "p_value",
    "rows",
    "positives",
]


@displayable
@dataclasses.dataclass(frozen=True)
class Comparison:
    """The champion/challenger table of :func:`compare`.

    Attributes:
        table: a ``pandas.DataFrame``, one row per candidate and test set:
            ``roc_auc`` with its DeLong interval (``roc_auc_lower``,
            ``roc_auc_upper``), ``pr_auc``, ``ece`` (expected calibration
            error), ``params``, ``predict_ms_per_1k`` (milliseconds to predict
            1,000 rows), and against the current model on the same rows:
            ``auc_difference`` (candidate minus current), its interval and the
            paired DeLong ``p_value`` (two-sided); ``NaN`` for the current model.
        current: name of the current (champion) model.
        level: confidence level of the intervals.
    """

    table: Any
    current: str
    level: float

    def _display(self):
        t = self.table
        best = t.loc[t["roc_auc"].idxmax()] if len(t) else None
        rows = [
            ("current", self.current),
            ("candidates", ", ".join(dict.fromkeys(map(str, t["candidate"])))),
            ("test sets", ", ".join(dict.fromkeys(map(str, t["test_set"])))),
        ]
        if best is not None:
            rows.append(("best ROC-AUC", f"{best['candidate']} on {best['test_set']}: {best['roc_auc']:.4f}"))
        return "Comparison (print() shows the table)", rows

    @property
    def candidates(self) -> list:
        return list(dict.fromkeys(self.table["candidate"]))

    @property
    def test_sets(self) -> list:
        return list(dict.fromkeys(self.table["test_set"]))

    def row(self, candidate: str, test_set: str) -> dict:
        t = self.table
        hit = t[(t["candidate"] == candidate) & (t["test_set"] == test_set)]
        if hit.empty:
            raise invalid_argument("candidate", (candidate, test_set), f"one of {self.candidates} x {self.test_sets}")
        return hit.iloc[0].to_dict()

    def to_frame(self):
        return self.table.copy()

    def to_dict(self) -> dict:
        rows = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in self.table.to_dict(orient="records")
        ]
        return {"current": self.current, "level": self.level, "rows": rows}

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=2, default=float)
        if path is not None:
            from kerafine._io import atomic_write_text

            atomic_write_text(path, text + "\n")
        return text

    def __str__(self) -> str:
        lines = [
            f"{'candidate':<12}{'test set':<10}{'ROC-AUC':>8} {'interval':<15}{'PR-AUC':>7}{'ECE':>7}"
            f"{'params':>9}{'ms/1k':>8}{'vs current':>11}{'p-value':>9}"
        ]
        for r in self.table.to_dict(orient="records"):
            diff = "" if math.isnan(r["auc_difference"]) else f"{r['auc_difference']:+.4f}"
            p = "" if math.isnan(r["p_value"]) else f"{r['p_value']:.2g}"
            lines.append(
                f"{r['candidate']:<12}{r['test_set']:<10}{r['roc_auc']:>8.4f} "
                f"[{r['roc_auc_lower']:.3f}, {r['roc_auc_upper']:.3f}] {r['pr_auc']:>7.4f}{r['ece']:>7.3f}"
                f"{int(r['params']):>9}{r['predict_ms_per_1k']:>8.1f}{diff:>11}{p:>9}"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return (
            f"<p><b>Champion/challenger</b> (current model: <code>{self.current}</code>; paired DeLong "
            f"p-values against it)</p>" + self.table.to_html(index=False, float_format=lambda v: f"{v:.4g}")
        )

    def plot(self, figsize=(9, 4)):
        """ROC-AUC with its interval per candidate, one panel per test set; returns the figure."""
        import matplotlib

        matplotlib.use("Agg", force=False) if matplotlib.get_backend() == "" else None
        import matplotlib.pyplot as plt

        sets = self.test_sets
        fig, axes = plt.subplots(1, len(sets), figsize=figsize, squeeze=False, sharey=True)
        for ax, ts in zip(axes[0], sets):
            t = self.table[self.table["test_set"] == ts]
            pos = np.arange(len(t))
            err = np.vstack([t["roc_auc"] - t["roc_auc_lower"], t["roc_auc_upper"] - t["roc_auc"]])
            colors = ["tab:gray" if c == self.current else "tab:blue" for c in t["candidate"]]
            ax.bar(pos, t["roc_auc"], yerr=err, color=colors, capsize=4)
            ax.set_xticks(pos, list(t["candidate"]), rotation=30, ha="right")
            ax.set_title(f"test set {ts!r}")
            lo = float(np.nanmin(t["roc_auc_lower"]))
            ax.set_ylim(max(0.0, lo - 0.05), 1.0)
            for x, p in zip(pos, t["p_value"]):
                if not math.isnan(p):
                    ax.annotate(
                        f"p={p:.2g}", (x, 1.0), xytext=(0, -12), textcoords="offset points", ha="center", fontsize=8
                    )
        axes[0][0].set_ylabel("ROC-AUC (DeLong interval)")
        fig.tight_layout()
        return fig


def _timed_predict(model, x, repeats: int = 2):
    """Scores and the best wall time of ``repeats`` predictions (the first call also traces the graph)."""
    best, p = math.inf, None
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        p = model.predict(x, batch_size=1024, verbose=0)
        best = min(best, time.perf_counter() - t0) if p is not None else best
    return np.asarray(p, dtype=np.float64).reshape(-1), best


def compare(
    candidates, test_sets, current: str | None = None, *, level: float = 0.95, timing_repeats: int = 2
) -> Comparison:
    """Compare candidate models on the same test sets (champion/challenger table).

    For each candidate and each test set: the exact ROC-AUC with its DeLong
    interval, PR-AUC, expected calibration error, parameter count, prediction
    time per 1,000 rows, and the paired DeLong test of the candidate against
    the current model on the same rows (:func:`kerafine.metrics.roc_auc_compare`).

    Args:
        candidates: ``{name: keras.Model}``, all taking the same input shape.
            The current (serving) model is one of them.
        test_sets: ``{name: (x, y)}``, e.g. ``{"old": ..., "new": ...}``; each
            with both classes.
        current: the name of the current model. Defaults to ``None``: the
            first candidate.
        level: confidence level of the intervals. Defaults to 0.95.
        timing_repeats: timed predictions per candidate and test set (the
            best is kept, after one untimed warm-up). Defaults to 2.

    Returns:
        :class:`Comparison`.

    Raises:
        KerafineError: an empty candidate dict, a ``current`` that is not a
            candidate, candidates with different input shapes, an empty
            ``test_sets``.
        DataError: a test set without both classes or of another row shape.

    Example:

    >>> import numpy as np, keras
    >>> from kerafine.update import compare
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 3)).astype("float32"); y = (x[:, 0] > 0).astype("float32")
    >>> a = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    >>> b = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    >>> c = compare({"current": a, "challenger": b}, {"test": (x, y)}, timing_repeats=1)
    >>> c.table.shape[0], c.current
    (2, 'current')
    """
    import pandas as pd

    from kerafine.metrics import classification_report, roc_auc_compare

    if not isinstance(candidates, dict) or not candidates:
        raise invalid_argument("candidates", candidates, "a non-empty dict {name: keras.Model}")
    for name, m in candidates.items():
        check_model(m, f"candidates[{name!r}]")
    if current is None:
        current = next(iter(candidates))
    if current not in candidates:
        raise invalid_argument("current", current, f"one of the candidates {list(candidates)}")
    shapes = {name: input_signature(m) for name, m in candidates.items()}
    if len(set(shapes.values())) > 1:
        raise invalid_argument("candidates", f"models with input shapes {shapes}", "models taking the same input shape")
    if not isinstance(test_sets, dict) or not test_sets:
        raise invalid_argument("test_sets", test_sets, 'a non-empty dict {name: (x, y)}, e.g. {"old": ..., "new": ...}')
    want = next(iter(shapes.values()))
    checked = {}
    for ts, data in test_sets.items():
        x, y = check_xy(data, f"test_sets[{ts!r}]", both_classes=True)
        if tuple(x.shape[1:]) != want:
            from kerafine.errors import DataError

            raise invalid_argument(
                f"test_sets[{ts!r}]",
                f"rows of shape {tuple(x.shape[1:])}",
                f"rows of the candidates' input shape {want}",
                error=DataError,
            )
        checked[ts] = (x, np.asarray(y).reshape(-1))
    timing_repeats = max(1, int(timing_repeats))

    rows = []
    for ts, (x, y) in checked.items():
        scores, ms = {}, {}
        for name, m in candidates.items():
            scores[name], seconds = _timed_predict(m, x, timing_repeats)
            ms[name] = seconds * 1000.0 * 1000.0 / len(x)
        for name, m in candidates.items():
            rep = classification_report(y, scores[name], level=level)
            ci = rep.roc_auc_interval
            ece = rep.calibration.ece if rep.calibration is not None else float("nan")
            if name == current:
                diff = lo = hi = p = float("nan")
            else:
                r = roc_auc_compare(y, scores[current], scores[name], level=level)
                diff, lo, hi, p = r.difference, r.lower, r.upper, r.p_value
            rows.append(
                {
                    "candidate": name,
                    "test_set": ts,
                    "roc_auc": float(rep.roc_auc),
                    "roc_auc_lower": ci.lower,
                    "roc_auc_upper": ci.upper,
                    "pr_auc": float(rep.pr_auc),
                    "ece": float(ece),
                    "params": int(m.count_params()),
                    "predict_ms_per_1k": float(ms[name]),
                    "auc_difference": diff,
                    "difference_lower": lo,
                    "difference_upper": hi,
                    "p_value": p,
                    "rows": int(len(y)),
                    "positives": int(np.count_nonzero(y)),
                }
            )
    return Comparison(pd.DataFrame(rows, columns=_COLUMNS), current, float(level))


@displayable
@dataclasses.dataclass(frozen=True)
class Decision:
    """The outcome of :func:`decide`.

    Attributes:
        promote: whether a challenger replaces the current model.
        champion: the model that should serve (the current one when not promoting).
        reasons: one sentence per candidate saying why it was or was not chosen.
    """

    promote: bool
    champion: str
    reasons: list

    def _display(self):
        return "Decision", [
            ("promote", str(self.promote)),
            ("champion", self.champion),
            *((f"reason {i + 1}", r) for i, r in enumerate(self.reasons[:4])),
        ]

    @property
    def text(self) -> str:
        head = f"Promote {self.champion!r}." if self.promote else f"Keep {self.champion!r}: no challenger qualifies."
        return "\n".join([head, *(f"- {r}" for r in self.reasons)])

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict:
        return {"promote": self.promote, "champion": self.champion, "reasons": list(self.reasons)}


def decide(
    comparison: Comparison, *, new: str = "new", old: str | None = "old", alpha: float = 0.05, margin: float = 0.01
) -> Decision:
    """Promote a challenger only on evidence: better on the new data, not worse on the old.

    A challenger qualifies when, against the current model, its ROC-AUC on
    test set ``new`` is higher with a paired DeLong p-value below ``alpha``,
    and its ROC-AUC on test set ``old`` is at most ``margin`` below the
    current model's. Among qualifying challengers the one with the highest
    ROC-AUC on ``new`` is promoted.

    Args:
        comparison: the :class:`Comparison` of :func:`compare`.
        new: the test set of the new data. Defaults to ``"new"``.
        old: the test set of the old data, or ``None`` to skip that check.
            Defaults to ``"old"``.
        alpha: significance level of the paired test. Defaults to 0.05.
        margin: largest ROC-AUC loss on ``old`` accepted. Defaults to 0.01.

    Returns:
        :class:`Decision`; ``str(decision)`` is the decision and its reasons.

    Raises:
        KerafineError: ``new`` / ``old`` not among the comparison's test sets,
            ``alpha`` not in (0, 1), a negative ``margin``.

    Example:

    >>> import pandas as pd
    >>> from kerafine.update.compare import Comparison, decide
    >>> nan = float("nan")
    >>> rows = [dict(candidate="current", test_set="new", roc_auc=0.80, auc_difference=nan, p_value=nan),
    ...         dict(candidate="current", test_set="old", roc_auc=0.90, auc_difference=nan, p_value=nan),
    ...         dict(candidate="refresh", test_set="new", roc_auc=0.86, auc_difference=0.06, p_value=0.001),
    ...         dict(candidate="refresh", test_set="old", roc_auc=0.895, auc_difference=-0.005, p_value=0.6)]
    >>> d = decide(Comparison(pd.DataFrame(rows), "current", 0.95))
    >>> d.promote, d.champion
    (True, 'refresh')
    """
    if not isinstance(comparison, Comparison):
        raise invalid_argument("comparison", comparison, "the Comparison returned by kerafine.update.compare")
    sets = comparison.test_sets
    if new not in sets:
        raise invalid_argument("new", new, f"one of the comparison's test sets {sets}")
    if old is not None and old not in sets:
        raise invalid_argument("old", old, f"one of the comparison's test sets {sets}, or None")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise invalid_argument("alpha", alpha, "a float strictly between 0 and 1")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
        raise invalid_argument("margin", margin, "a float >= 0")
    cur = comparison.current
    reasons, ok = [], []
    for name in comparison.candidates:
        if name == cur:
            continue
        rn = comparison.row(name, new)
        why = (
            f"{name}: ROC-AUC on {new!r} {rn['roc_auc']:.4f} vs {comparison.row(cur, new)['roc_auc']:.4f} "
            f"({rn['auc_difference']:+.4f}, paired DeLong p={rn['p_value']:.2g})"
        )
        better = rn["auc_difference"] > 0 and rn["p_value"] < alpha
        if not better:
            reasons.append(why + f": not significantly better at alpha={alpha:g}.")
            continue
        if old is not None:
            ro = comparison.row(name, old)
            d_old = ro["auc_difference"]
            why += f"; on {old!r} {d_old:+.4f}"
            if d_old < -margin:
                reasons.append(why + f": loses more than the margin {margin:g} on the old data.")
                continue
            why += f" (within the margin {margin:g})"
        reasons.append(why + ": qualifies.")
        ok.append((rn["roc_auc"], name))
    if not ok:
        return Decision(False, cur, reasons)
    best = max(ok)[1]
    if len(ok) > 1:
        reasons.append(f"{best} has the highest ROC-AUC on {new!r} of the qualifying challengers.")
    return Decision(True, best, reasons)
