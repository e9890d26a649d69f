"""benchmarks/transfer_real.py: its paired DeLong test, its features, and a smoke run of --quick."""

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

from kerafine import metrics

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "transfer_real.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("transfer_real", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["transfer_real"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _brute_force_paired(y, a, b):
    """DeLong's paired test written from the definition: O(m n) placement values."""
    y = np.asarray(y).astype(bool)
    comps10, comps01 = [], []
    for s in (a, b):
        pos, neg = s[y], s[~y]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        comps10.append(psi.mean(axis=1))
        comps01.append(psi.mean(axis=0))
    m, n = int(y.sum()), int((~y).sum())
    s10, s01 = np.cov(np.array(comps10)), np.cov(np.array(comps01))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    diff = comps10[0].mean() - comps10[1].mean()
    z = diff / np.sqrt(var)
    return diff, 2 * (1 - statistics.NormalDist().cdf(abs(z)))


def test_paired_delong_matches_the_definition_with_ties(bench):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    a = np.round(y + rng.normal(size=300), 1)  # rounded: many ties
    b = np.round(0.5 * y + rng.normal(size=300), 1)
    result = bench._paired_delong(y, a, b)
    diff, p = _brute_force_paired(y, a, b)
    assert result["auc_a"] == pytest.approx(metrics.roc_auc(y, a), abs=1e-12)
    assert result["auc_b"] == pytest.approx(metrics.roc_auc(y, b), abs=1e-12)
    assert result["diff"] == pytest.approx(diff, abs=1e-12)
    assert result["p"] == pytest.approx(p, rel=1e-9)
    assert result["p"] < 0.05  # a is much better than b on 300 rows


def test_paired_delong_holds_its_level_under_the_null(bench):
    """Two equally good, correlated scores: about 5% of 400 tests reject at 0.05."""
    rng = np.random.default_rng(1)
    rejections = 0
    for _ in range(400):
        y = rng.integers(0, 2, 200)
        shared = rng.normal(size=200)
        a = y + shared + rng.normal(size=200)
        b = y + shared + rng.normal(size=200)
        rejections += bench._paired_delong(y, a, b)["p"] < 0.05
    # Binomial(400, 0.05): mean 20, sd 4.4; 8..34 is about +-3 sd.
    assert 8 <= rejections <= 34


def test_window_statistics_read_level_trend_and_recent_change(bench):
    ramp = (3.0 + 0.5 * np.arange(16.0))[None, :, None]
    f = bench.window_statistics(ramp)
    assert f.shape == (1, 11)
    assert f[0, 0] == pytest.approx(10.5)  # last value
    assert f[0, 1] == pytest.approx(ramp.mean())
    assert f[0, 5] == pytest.approx(0.5)  # least-squares slope
    assert f[0, 10] == pytest.approx(0.5)  # last change


def test_quick_mode_runs_on_real_series_and_keeps_test_series_unseen(bench, tmp_path, capsys):
    data = bench.default_data_dir()
    if not (data / "combined_windows.json").exists():
        pytest.skip(f"the NAB development data is not at {data} (set KERAFINE_NAB_DEV)")
    out = tmp_path / "rows.json"
    assert bench.main(["--quick", "--groups", "adexchange", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| adexchange | 1 |" in printed
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1
    row = rows[0]
    assert len(row["labelled"]) == 1 and len(row["evaluated"]) == 2
    assert not set(row["labelled"]) & set(row["evaluated"])
    for model in bench.MODELS:
        assert 0.0 <= row[model]["roc_auc"] <= 1.0
        assert row[model]["lower"] <= row[model]["roc_auc"] <= row[model]["upper"]
        assert 0.0 < row[model]["pr_auc"] <= 1.0
    for other in bench.MODELS[1:]:
        assert 0.0 <= row[f"vs_{other}"]["p"] <= 1.0
        assert row[f"vs_{other}"]["diff"] == pytest.approx(
            row["pretrained"]["roc_auc"] - row[other]["roc_auc"], abs=1e-9
        )


def test_missing_data_is_reported_not_crashed(bench, tmp_path, capsys):
    assert bench.main(["--quick", "--data", str(tmp_path / "nowhere")]) == 0
    assert "NAB data not found" in capsys.readouterr().out
