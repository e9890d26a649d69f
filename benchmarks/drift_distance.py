"""Distance drift rules: the cost and the false alarms of calibrating them against a bootstrap null.

For PSI, Jensen-Shannon and normalised Wasserstein, in one run:

* kerafine's rule (``DriftDetector(method=...)``: distance >= 0.1 **and**
  significant against a bootstrap null at the same sizes, Bonferroni);
* the bare cut a user writes by hand (evidently's rule): the same distance on
  the reference's decile bins (PSI/JS) or ``scipy.stats.wasserstein_distance``
  over the reference standard deviation, flagged when >= 0.1;
* kerafine's default KS test (``method="auto"``) for reference.

Two stationary settings (nothing drifts, so every flag is a false alarm): a small
reference (300 rows, 10 features, 300 current rows) and a large one (20,000 x 50,
5,000 current rows). Prints the median time of one check and the share of
checks that alarm, and the ratio of times.

Usage::

    python benchmarks/drift_distance.py [--checks 30]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import scipy
from scipy import stats

from kerafine.drift import DriftDetector


def _bare(method: str, ref: np.ndarray, cur: np.ndarray, cut: float = 0.1) -> int:
    """Features flagged by the plain threshold rule, written with numpy/scipy."""
    flagged = 0
    for j in range(ref.shape[1]):
        r, c = ref[:, j], cur[:, j]
        if method == "wasserstein":
            d = stats.wasserstein_distance(r, c) / r.std()
        else:
            edges = np.quantile(r, np.linspace(0, 1, 11)[1:-1])
            p = np.bincount(np.searchsorted(edges, r), minlength=10) / r.size
            q = np.bincount(np.searchsorted(edges, c), minlength=10) / c.size
            if method == "psi":
                p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)
                d = float(np.sum((q - p) * np.log(q / p)))
            else:
                from scipy.spatial.distance import jensenshannon

                d = float(jensenshannon(p, q, base=2))
        flagged += d >= cut
    return flagged


def run(n_ref: int, n_cur: int, p: int, checks: int) -> None:
    print(f"\nreference {n_ref} x {p}, current {n_cur} rows, {checks} stationary checks")
    print(f"{'method':<14} {'kerafine s':>11} {'alarms':>7} {'bare cut s':>11} {'alarms':>7} {'ratio':>7}")
    for method in ("psi", "jensenshannon", "wasserstein", "auto"):
        times, bare_times, alarms, bare_alarms = [], [], 0, 0
        for seed in range(checks):
            rng = np.random.default_rng(seed)
            ref = rng.normal(size=(n_ref, p))
            cur = rng.normal(size=(n_cur, p))
            detector = DriftDetector(ref, method=method)
            t0 = time.perf_counter()
            alarms += detector.check(cur).is_drift
            times.append(time.perf_counter() - t0)
            if method != "auto":
                t0 = time.perf_counter()
                bare_alarms += _bare(method, ref, cur) > 0
                bare_times.append(time.perf_counter() - t0)
        k = statistics.median(times)
        if bare_times:
            b = statistics.median(bare_times)
            print(
                f"{method:<14} {k:>11.4f} {alarms / checks:>7.0%} {b:>11.4f} {bare_alarms / checks:>7.0%} {k / b:>6.1f}x"
            )
        else:
            print(f"{method:<14} {k:>11.4f} {alarms / checks:>7.0%} {'':>11} {'':>7} {'':>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=30)
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, {platform.machine()}"
    )
    run(300, 300, 10, args.checks)
    run(20_000, 5_000, 50, max(3, args.checks // 6))


if __name__ == "__main__":
    main()
