"""Result types of a drift check: :class:`FeatureDrift` and :class:`DriftReport`.

Both are frozen dataclasses with named fields. A report converts to a pandas
DataFrame (:meth:`DriftReport.to_frame`), to a JSON-able dict and JSON text
(:meth:`~DriftReport.to_dict`, :meth:`~DriftReport.to_json`), renders as an
HTML table in Jupyter and plots reference vs current histograms of the most
shifted features (:meth:`~DriftReport.plot`).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
from typing import Optional

import numpy as np

from kerafine._display import displayable

__all__ = ["FeatureDrift", "DriftReport", "DriftWarning"]


class DriftWarning(UserWarning):
    """Warning category of drift alerts (filter it with ``warnings.simplefilter``)."""


@dataclasses.dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature.

    Attributes:
        name: feature name.
        kind: ``"continuous"`` or ``"categorical"``.
        method: ``"ks"``, ``"chi2"``, ``"psi"``, ``"jensenshannon"`` or ``"wasserstein"``.
        statistic: the method's statistic (KS distance, chi-squared, or the distance).
        p_value: the test's p-value (``nan`` for distance methods or when not tested).
        p_value_adjusted: after the Bonferroni/FDR correction over all tests of the check.
        effect: effect size in ``[0, 1]``: the largest change in the probability
            of an event, over threshold events ``{x <= t}`` for a continuous
            feature (the KS distance) and over sets of levels for a categorical
            one (the total variation distance).
        drifted: True if the values or the missing rate drifted.
        value_drift: True if the distribution of the non-missing values drifted.
        missing_drift: True if the share of missing values changed significantly.
        missing_reference: share of missing (NaN, None, inf) values in the reference.
        missing_current: share of missing values in the current data.
        missing_p_value: p-value of the missing-share test (``nan`` if none missing).
        psi: Population Stability Index on the reference's quantile bins (or levels).
        js_distance: Jensen-Shannon distance (base 2) on the same bins.
        wasserstein: Wasserstein-1 distance divided by the reference standard
            deviation (``nan`` for categorical; raw distance for a constant reference).
        n_reference: non-missing reference values used by the test.
        n_current: non-missing current values used by the test.
        unseen_levels: categorical levels of the current data never seen in the reference.
        unseen_share: share of current rows holding an unseen level.
        note: why a test was skipped or what is special about the feature, or ``""``.
    """

    name: str
    kind: str
    method: str
    statistic: float
    p_value: float
    p_value_adjusted: float
    effect: float
    drifted: bool
    value_drift: bool
    missing_drift: bool
    missing_reference: float
    missing_current: float
    missing_p_value: float
    psi: float
    js_distance: float
    wasserstein: float
    n_reference: int
    n_current: int
    unseen_levels: tuple = ()
    unseen_share: float = 0.0
    note: str = ""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["unseen_levels"] = list(self.unseen_levels)
        return {k: _json_value(v) for k, v in d.items()}


def _json_value(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    return v


@displayable
@dataclasses.dataclass(frozen=True)
class DriftReport:
    """Result of :meth:`kerafine.drift.DriftDetector.check`.

    Attributes:
        features: one :class:`FeatureDrift` per feature, in the reference's order.
        is_drift: the dataset-level verdict: at least one feature drifted and
            the drifted share is at least ``threshold``.
        drift_share: share of features that drifted.
        n_drifted: number of features that drifted.
        threshold: the drift-share threshold of the verdict.
        p_value: the nominal significance level (family-wise for Bonferroni,
            false discovery rate for FDR).
        correction: ``"bonferroni"``, ``"fdr"`` or ``"none"``.
        min_effect: the effect-size floor below which nothing counts as drift.
        method: the detector's ``method`` argument.
        n_reference_rows: rows of the reference data.
        n_current_rows: rows of the current data.
        nonfinite_current_rows: rows of the current data holding NaN or inf in
            a numeric feature. Those values never enter a value test or a
            distance (they count as missing, in the missing-share test) and the
            summary, text, JSON and HTML say how many rows held them.
        nonfinite_first_rows: the first of those rows (at most 5).
    """

    features: tuple
    is_drift: bool
    drift_share: float
    n_drifted: int
    threshold: float
    p_value: float
    correction: str
    min_effect: float
    method: str
    n_reference_rows: int
    n_current_rows: int
    # name -> ("continuous", sorted reference sample, sorted current values, None)
    #      or ("categorical", levels, reference shares, current shares)
    histograms: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)
    nonfinite_current_rows: int = 0
    nonfinite_first_rows: tuple = ()

    # ------------------------------------------------------------- access

    def _display(self):
        top = ", ".join(f.name for f in self.top(3) if f.drifted) or "none"
        return f"DriftReport: {'DRIFT' if self.is_drift else 'no drift'}", [
            (
                "drifted",
                f"{self.n_drifted} of {len(self.features)} features (share {self.drift_share:.2f}, "
                f"threshold {self.threshold:g})",
            ),
            ("most shifted", top),
            ("test", f"{self.method}, p < {self.p_value:g} ({self.correction}), effect >= {self.min_effect:g}"),
            ("rows", f"{self.n_reference_rows} reference, {self.n_current_rows} current"),
        ]

    def __getitem__(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def drifted_features(self) -> list[str]:
        """Names of the drifted features, most shifted (largest effect) first."""
        return [f.name for f in self.top(len(self.features)) if f.drifted]

    def top(self, k: int = 5) -> list[FeatureDrift]:
        """The ``k`` most shifted features: drifted ones first, then by effect size."""

        def key(f):
            eff = f.effect if math.isfinite(f.effect) else -1.0
            miss = abs(f.missing_current - f.missing_reference)
            return (not f.drifted, -max(eff, miss))

        return sorted(self.features, key=key)[:k]

    def _nonfinite_note(self) -> str:
        if not self.nonfinite_current_rows:
            return ""
        more = ", ..." if self.nonfinite_current_rows > len(self.nonfinite_first_rows) else ""
        return (
            f"; {self.nonfinite_current_rows} of {self.n_current_rows} current rows hold NaN or inf "
            f"(first rows [{', '.join(str(i) for i in self.nonfinite_first_rows)}{more}]): left out of the value "
            "tests, counted as missing"
        )

    def summary(self, k: int = 3) -> str:
        """One line for logs: the verdict and the top drifted features with their effect.

        Rows of the current data holding NaN/inf are counted at the end of the line.
        """
        return self._summary(k) + self._nonfinite_note()

    def _summary(self, k: int) -> str:
        head = f"{self.n_drifted} of {len(self.features)} features drifted (share {self.drift_share:.2f})"
        if not self.n_drifted:
            return "No drift: " + head
        parts = []
        for f in [f for f in self.top(k) if f.drifted]:
            what = f"{f.name} ({f.method} effect {f.effect:.3f}"
            if f.missing_drift:
                what += f", missing {f.missing_reference:.1%} -> {f.missing_current:.1%}"
            parts.append(what + ")")
        more = "" if self.n_drifted <= k else f" and {self.n_drifted - k} more"
        return (
            ("Drift detected: " if self.is_drift else "Drift below the share threshold: ")
            + head
            + ": "
            + ", ".join(parts)
            + more
        )

    # ------------------------------------------------------------ convert
    def to_frame(self):
        """One row per feature (index: feature name), most shifted first.

        Example:

        >>> import numpy as np
        >>> from kerafine.drift import DriftDetector
        >>> rng = np.random.default_rng(0)
        >>> det = DriftDetector(rng.normal(size=(1000, 2)))
        >>> det.check(rng.normal([0.0, 1.0], 1.0, size=(300, 2))).to_frame()[["drifted", "method"]]
            drifted method
        f1     True     ks
        f0    False     ks
        """
        import pandas as pd

        rows = [f.to_dict() for f in self.top(len(self.features))]
        for r in rows:
            r["unseen_levels"] = ", ".join(r["unseen_levels"])
        frame = pd.DataFrame(rows).set_index("name")
        frame.index.name = None
        return frame

    def to_dict(self) -> dict:
        """JSON-able dict (non-finite numbers become ``None``)."""
        return {
            "is_drift": bool(self.is_drift),
            "drift_share": _json_value(self.drift_share),
            "n_drifted": int(self.n_drifted),
            "threshold": _json_value(self.threshold),
            "p_value": _json_value(self.p_value),
            "correction": self.correction,
            "min_effect": _json_value(self.min_effect),
            "method": self.method,
            "n_reference_rows": int(self.n_reference_rows),
            "n_current_rows": int(self.n_current_rows),
            "nonfinite_current_rows": int(self.nonfinite_current_rows),
            "nonfinite_first_rows": [int(i) for i in self.nonfinite_first_rows],
            "drifted_features": self.drifted_features,
            "features": [f.to_dict() for f in self.features],
        }

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The report as strict JSON text; also written atomically to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            from kerafine import _io

            _io.atomic_write_text(path, text + "\n")
        return text

    def _repr_html_(self) -> str:
        verdict = "DRIFT" if self.is_drift else "no drift"
        color = "#b00020" if self.is_drift else "#1b5e20"
        cols = ["method", "statistic", "p_value", "p_value_adjusted", "effect", "missing_current", "drifted"]
        head = "".join(f"<th>{c}</th>" for c in ["feature"] + cols)
        body = []
        for f in self.top(min(len(self.features), 50)):
            d = f.to_dict()
            cells = []
            for c in cols:
                v = d[c]
                cells.append(f"<td>{v:.4g}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>")
            style = ' style="background:#fde7e9"' if f.drifted else ""
            body.append(f"<tr{style}><td>{html.escape(f.name)}</td>{''.join(cells)}</tr>")
        more = "" if len(self.features) <= 50 else f"<p>{len(self.features) - 50} more features not shown.</p>"
        return (
            f'<div><p><b style="color:{color}">{verdict}</b>: {self.n_drifted} of {len(self.features)} features '
            f"drifted (share {self.drift_share:.2f}, threshold {self.threshold:g}; p-value {self.p_value:g} with "
            f"{self.correction} correction; effect floor {self.min_effect:g}){html.escape(self._nonfinite_note())}.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}</div>"
        )

    # --------------------------------------------------------------- plot
    def plot(self, top: int = 6, ncols: int = 3, figsize: Optional[tuple] = None):
        """Reference vs current histograms of the ``top`` most shifted features.

        Args:
            top: how many features. Defaults to 6.
            ncols: panels per row. Defaults to 3.
            figsize: matplotlib figure size. Defaults to ``None`` (from the grid).

        Returns:
            The matplotlib ``Figure``.
        """
        import matplotlib

        if not os.environ.get("MPLBACKEND") and "matplotlib.pyplot" not in __import__("sys").modules:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        feats = [f for f in self.top(top) if f.name in self.histograms] or []
        n = max(1, len(feats))
        ncols = max(1, min(ncols, n))
        nrows = int(math.ceil(n / ncols))
        fig, axes = plt.subplots(nrows, ncols, figsize=figsize or (4.0 * ncols, 3.0 * nrows), squeeze=False)
        for ax in axes.ravel()[len(feats) :]:
            ax.axis("off")
        for ax, f in zip(axes.ravel(), feats):
            kind, a, b, c = self.histograms[f.name]
            if kind == "continuous":
                xs, ref, cur = _densities(a, b)
                centers = 0.5 * (xs[1:] + xs[:-1])
                width = np.diff(xs)
                ax.bar(centers, ref, width=width, alpha=0.5, label="reference", color="tab:blue")
                ax.bar(centers, cur, width=width, alpha=0.5, label="current", color="tab:orange")
            else:
                xs, ref, cur = a, b, c
                pos = np.arange(len(xs))
                ax.bar(pos - 0.2, ref, width=0.4, label="reference", color="tab:blue")
                ax.bar(pos + 0.2, cur, width=0.4, label="current", color="tab:orange")
                ax.set_xticks(pos, [str(x)[:10] for x in xs], rotation=45, ha="right")
            flag = "DRIFT" if f.drifted else "ok"
            ax.set_title(f"{f.name}: {flag}, effect {f.effect:.3f}", fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        return fig


def _densities(r: np.ndarray, c: np.ndarray, bins: int = 30):
    """Bin edges and density histograms of two sorted samples over their joint range."""
    lo, hi = min(r[0], c[0]), max(r[-1], c[-1])
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    width = np.diff(edges)

    # np.histogram's bins: [a, b) except the last, [a, b]; on sorted data, by position.
    def dens(x):
        pos = np.searchsorted(x, edges, side="left")
        pos[-1] = x.size
        return np.diff(pos) / (x.size * width)

    return edges, dens(r), dens(c)
