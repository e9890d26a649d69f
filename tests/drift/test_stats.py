"""kerafine.drift.stats equals scipy where scipy has the statistic; MMD checked against a direct formula."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon, pdist

from kerafine.drift import mmd_test
from kerafine.drift import stats as S
from kerafine.errors import DataError, KerafineError


@pytest.mark.parametrize(
    "n, m, decimals",
    [(30, 20, None), (500, 100, 1), (2000, 500, None), (3000, 700, 0), (12000, 3000, None), (20000, 5000, 2)],
)
def test_ks_matches_scipy_statistic_and_pvalue_with_and_without_ties(n, m, decimals):
    rng = np.random.default_rng(n + m)
    a = rng.normal(size=n)
    b = rng.normal(0.05, 1.1, size=m)
    if decimals is not None:  # rounding creates ties inside and across samples
        a, b = np.round(a, decimals), np.round(b, decimals)
    expected = stats.ks_2samp(a, b)
    d, p = S.ks_2samp(a, b)
    assert d == pytest.approx(expected.statistic, abs=1e-15)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    d2, p2 = S.ks_sorted(np.sort(a), np.sort(b))
    assert (d2, p2) == (d, p)


def test_ks_asymp_method_matches_scipy_asymp():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=800), rng.normal(0.1, 1, size=300)
    d, _ = S.ks_2samp(a, b)
    assert S.ks_pvalue(d, 800, 300, method="asymp") == pytest.approx(
        stats.ks_2samp(a, b, method="asymp").pvalue, rel=1e-12
    )


@pytest.mark.parametrize("n, m", [(1000, 250), (2000, 500), (20000, 5000)])
def test_ks_limit_pvalue_is_conservative_and_close_to_exact(n, m):
    from scipy.stats import _stats_py

    en = n * m / (n + m)
    g = math.gcd(n, m)
    for target in (0.5, 0.05, 1e-3, 1e-5):
        d = stats.kstwobign.isf(target) / math.sqrt(en)
        _, d, exact = _stats_py._attempt_exact_2kssamp(n, m, g, d, "two-sided")
        limit = S.ks_pvalue(d, n, m, method="limit")
        assert limit >= exact  # never anti-conservative
        if n >= 20000:
            assert limit / exact < 1.02


def test_ks_vectorised_pvalues_equal_scalar_ones():
    d = np.array([0.01, 0.05, 0.2])
    n = np.array([100, 20000, 300])
    m = np.array([50, 5000, 300])
    vec = S.ks_pvalue(d, n, m)
    assert [S.ks_pvalue(float(a), int(b), int(c)) for a, b, c in zip(d, n, m)] == pytest.approx(vec, rel=1e-12)


def test_ks_pvalue_rejects_unknown_method():
    with pytest.raises(KerafineError, match="Invalid value for argument `method`: received 'fisher'"):
        S.ks_pvalue(0.1, 10, 10, method="fisher")


@pytest.mark.parametrize("n, m, decimals", [(7, 3, None), (100, 100, 0), (2000, 333, None), (500, 800, 1)])
def test_wasserstein_matches_scipy(n, m, decimals):
    rng = np.random.default_rng(n * m)
    a = rng.lognormal(size=n)
    b = rng.lognormal(0.3, 1.0, size=m)
    if decimals is not None:
        a, b = np.round(a, decimals), np.round(b, decimals)
    assert S.wasserstein_sorted(np.sort(a), np.sort(b)) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12)


def test_wasserstein_rows_match_scipy_per_row():
    rng = np.random.default_rng(1)
    a = np.sort(rng.normal(size=(4, 300)), axis=1)
    b = np.sort(rng.normal(1.0, 2.0, size=(4, 120)), axis=1)
    got = S.wasserstein_sorted(a, b)
    assert got == pytest.approx([stats.wasserstein_distance(a[i], b[i]) for i in range(4)], rel=1e-12)


def test_chi2_matches_scipy_contingency_without_pooling():
    ref, cur = [400, 300, 200, 100], [90, 80, 70, 60]
    expected = stats.chi2_contingency([ref, cur], correction=False)
    stat, p, dof = S.chi2_homogeneity(ref, cur)
    assert (stat, dof) == (pytest.approx(expected.statistic, rel=1e-12), expected.dof)
    assert p == pytest.approx(expected.pvalue, rel=1e-10)


def test_chi2_pools_rare_levels_before_testing():
    # Levels 3 and 4 have expected counts below 5 in the smaller sample.
    ref, cur = [500, 400, 6, 4], [50, 40, 1, 2]
    pooled = stats.chi2_contingency([[500, 400, 10], [50, 40, 3]], correction=False)
    stat, p, dof = S.chi2_homogeneity(ref, cur)
    assert dof == 2 and stat == pytest.approx(pooled.statistic, rel=1e-12)
    assert p == pytest.approx(pooled.pvalue, rel=1e-10)


def test_chi2_with_a_single_level_has_nothing_to_test():
    assert S.chi2_homogeneity([100], [30]) == (0.0, 1.0, 0)


def test_js_distance_matches_scipy_base2():
    p, q = np.array([10, 20, 30, 0]), np.array([30, 20, 5, 5])
    assert S.js_distance(p, q) == pytest.approx(jensenshannon(p / p.sum(), q / q.sum(), base=2), rel=1e-12)
    assert S.js_distance(p, p) == 0.0


def test_psi_follows_its_definition_and_survives_empty_bins():
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.4, 0.4, 0.2])
    expected = sum((b - a) * math.log(b / a) for a, b in zip(p, q))
    assert S.psi(p * 1000, q * 500) == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(S.psi([10, 0], [0, 10]))


def _naive_mmd2(x, y, sigma):
    def k(a, b):
        return math.exp(-np.sum((a - b) ** 2) / (2 * sigma**2))

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_mmd_statistic_equals_the_unbiased_estimator_and_median_heuristic():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(25, 3)), rng.normal(0.5, 1.0, size=(15, 3))
    result = mmd_test(x, y, n_permutations=20)
    assert result.sigma == pytest.approx(math.sqrt(np.median(pdist(np.vstack([x, y]), "sqeuclidean")) / 2))
    assert result.statistic == pytest.approx(_naive_mmd2(x, y, result.sigma), rel=1e-9)
    fixed = mmd_test(x, y, n_permutations=20, sigma=2.0)
    assert fixed.statistic == pytest.approx(_naive_mmd2(x, y, 2.0), rel=1e-9)


def test_mmd_false_alarms_stay_near_nominal_and_shift_is_detected():
    rng = np.random.default_rng(1)
    alarms = sum(
        mmd_test(rng.normal(size=(40, 3)), rng.normal(size=(40, 3)), n_permutations=40, seed=s).p_value <= 0.05
        for s in range(40)
    )
    assert alarms <= 6  # nominal 2 of 40; the binomial 99.5% quantile is 6
    shifted = mmd_test(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + [0.5, 0, 0, 0], n_permutations=100)
    assert shifted.p_value <= 0.02


def test_mmd_subsamples_to_bound_memory_and_drops_incomplete_rows():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5000, 2))
    x[:10, 0] = np.nan
    r = mmd_test(x, rng.normal(size=(3000, 2)), n_permutations=10, max_samples=300)
    assert (r.n_ref, r.n_cur) == (300, 300)


def test_mmd_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="same number of features on both sides: reference has 3, current has 2"):
        mmd_test(rng.normal(size=(10, 3)), rng.normal(size=(10, 2)))
    with pytest.raises(DataError, match="at least 2 complete rows in the current data; it has 1"):
        mmd_test(rng.normal(size=(10, 2)), rng.normal(size=(1, 2)))
    with pytest.raises(KerafineError, match="`n_permutations`: received 0"):
        mmd_test(rng.normal(size=(10, 2)), rng.normal(size=(10, 2)), n_permutations=0)
    with pytest.raises(KerafineError, match="`sigma`: received -1"):
        mmd_test(rng.normal(size=(10, 2)), rng.normal(size=(10, 2)), sigma=-1.0)
