"""DriftReport: table, JSON, HTML and plot of a check."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from kerafine.drift import DriftDetector


@pytest.fixture(scope="module")
def report():
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000), "k": rng.choice(["x", "y"], 2000)})
    cur = pd.DataFrame({"a": rng.normal(1.0, 1.0, 400), "b": rng.normal(size=400), "k": ["x"] * 380 + ["z"] * 20})
    cur.loc[:3, "b"] = np.nan
    return DriftDetector(ref).check(cur)


def test_frame_has_one_row_per_feature_most_shifted_first(report):
    frame = report.to_frame()
    # k moved 52 points of level share (x 50% -> 95%), a has a KS distance near 0.38.
    assert list(frame.index) == ["k", "a", "b"]
    assert list(frame["drifted"]) == [True, True, False]
    assert {"statistic", "p_value", "p_value_adjusted", "effect", "psi", "js_distance", "wasserstein"} <= set(
        frame.columns
    )
    assert frame.loc["k", "unseen_levels"] == "z"


def test_json_is_strict_and_round_trips(report, tmp_path):
    text = report.to_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data == json.loads(text)
    assert data["is_drift"] is True and data["drifted_features"] == ["k", "a"]
    by_name = {f["name"]: f for f in data["features"]}
    assert by_name["k"]["wasserstein"] is None  # NaN becomes null in strict JSON
    assert by_name["b"]["missing_current"] == pytest.approx(0.01)
    with pytest.raises(ValueError):
        json.dumps(float("nan"), allow_nan=False)  # what to_json must avoid


def test_html_shows_the_verdict_and_highlights_drifted_rows(report):
    html = report._repr_html_()
    assert "DRIFT" in html and "2 of 3 features drifted" in html
    assert html.count('style="background:#fde7e9"') == 2


def test_summary_names_top_features_and_their_effect(report):
    text = report.summary()
    assert text.startswith("Drift detected: 2 of 3 features drifted")
    assert "a (ks effect 0.3" in text and "k (chi2 effect" in text


def test_plot_draws_reference_and_current_for_the_most_shifted(report):
    import matplotlib

    matplotlib.use("Agg")
    fig = report.plot(top=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith("k: DRIFT") and titles[1].startswith("a: DRIFT")
    assert len(fig.axes[0].patches) == 6  # 3 levels (x, y, z), reference and current
    bars = fig.axes[1].patches
    assert len(bars) == 60  # 30 reference + 30 current bins
    heights = np.array([b.get_height() for b in bars[:30]])
    widths = np.array([b.get_width() for b in bars[:30]])
    assert float(np.sum(heights * widths)) == pytest.approx(1.0, rel=1e-6)  # a density
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_getitem_and_no_drift_summary():
    rng = np.random.default_rng(1)
    rep = DriftDetector(rng.normal(size=(500, 2))).check(rng.normal(size=(200, 2)))
    assert rep.summary().startswith("No drift: 0 of 2")
    assert rep["f0"].name == "f0"
    with pytest.raises(KeyError):
        rep["nope"]
    assert math.isfinite(rep.drift_share) and rep.drifted_features == []
