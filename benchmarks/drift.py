"""Drift check: kerafine vs scipy per-feature tests (+ alibi-detect, evidently when installed).

Data: 50 continuous N(0, 1) features and 5 categorical ones (5 levels), as in
issue 5. For every tool, in one run:

* time of one check at reference 20,000 / current 5,000 rows (median of 5),
  and at 200,000 / 100,000 rows (one check, a 0.01-sigma shift in every
  continuous feature: the dataset verdict should be "no drift");
* false-alarm rate over ``--null`` no-shift draws (fresh reference and current
  each draw) and power over ``--power`` draws with a 0.2-sigma mean shift in
  one of the 50 continuous features.

"scipy" is what a user would write by hand: ``scipy.stats.ks_2samp`` per
continuous feature, ``chi2_contingency`` per categorical one, Bonferroni over
the 55 tests. alibi-detect (``TabularDrift``: KS + chi-squared, Bonferroni;
and ``KSDrift`` on the continuous block) and evidently (``DataDriftPreset``)
are not dependencies of kerafine: they run in their own virtualenv, given
with ``--bench-python`` (e.g. ``/tmp/bench-venv/bin/python``), through this
same file in ``--worker`` mode, which needs only numpy, pandas and the tool.

Usage::

    python benchmarks/drift.py [--null 50] [--power 30] [--bench-python /tmp/bench-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import pandas as pd

N_CONT, N_CAT = 50, 5
LEVEL_P = [0.4, 0.3, 0.15, 0.1, 0.05]
SMALL, LARGE = (20_000, 5_000), (200_000, 100_000)
ALPHA = 0.05


def make(rng, n, shift=None):
    x = rng.standard_normal((n, N_CONT))
    if shift is not None:
        x += shift
    df = pd.DataFrame(x, columns=[f"c{i}" for i in range(N_CONT)])
    codes = rng.choice(len(LEVEL_P), size=(n, N_CAT), p=LEVEL_P)
    for j in range(N_CAT):
        df[f"k{j}"] = codes[:, j]
    return df


CAT_COLS = [f"k{j}" for j in range(N_CAT)]
CONT_COLS = [f"c{i}" for i in range(N_CONT)]


def power_shift():
    shift = np.zeros(N_CONT)
    shift[17] = 0.2
    return shift


# --------------------------------------------------------------------- tools
class Scipy:
    name = "scipy KS + chi2, Bonferroni"

    def fit(self, ref):
        self.ref = ref

    def check(self, cur):
        from scipy import stats

        p = []
        for c in CONT_COLS:
            p.append(stats.ks_2samp(self.ref[c].to_numpy(), cur[c].to_numpy()).pvalue)
        for c in CAT_COLS:
            levels = sorted(set(self.ref[c].unique()) | set(cur[c].unique()))
            table = [[int((self.ref[c] == lv).sum()) for lv in levels], [int((cur[c] == lv).sum()) for lv in levels]]
            p.append(stats.chi2_contingency(table, correction=False).pvalue)
        flagged = int(np.sum(np.asarray(p) * len(p) <= ALPHA))
        return flagged > 0, flagged


class Kerafine:
    name = "kerafine DriftDetector"

    def fit(self, ref):
        from kerafine.drift import DriftDetector

        self.detector = DriftDetector(ref, categorical=CAT_COLS)

    def check(self, cur):
        r = self.detector.check(cur)
        return r.is_drift, r.n_drifted


class AlibiTabular:
    name = "alibi-detect TabularDrift"

    def fit(self, ref):
        from alibi_detect.cd import TabularDrift

        cats = {N_CONT + j: None for j in range(N_CAT)}
        self.cd = TabularDrift(
            ref.to_numpy(dtype=np.float64), p_val=ALPHA, categories_per_feature=cats, correction="bonferroni"
        )

    def check(self, cur):
        pred = self.cd.predict(cur.to_numpy(dtype=np.float64), drift_type="batch")["data"]
        flagged = int(np.sum(pred["p_val"] <= pred["threshold"]))
        return bool(pred["is_drift"]), flagged


class AlibiKS:
    name = "alibi-detect KSDrift (50 continuous only)"

    def fit(self, ref):
        from alibi_detect.cd import KSDrift

        self.cd = KSDrift(ref[CONT_COLS].to_numpy(dtype=np.float64), p_val=ALPHA, correction="bonferroni")

    def check(self, cur):
        pred = self.cd.predict(cur[CONT_COLS].to_numpy(dtype=np.float64), drift_type="batch")["data"]
        flagged = int(np.sum(pred["p_val"] <= pred["threshold"]))
        return bool(pred["is_drift"]), flagged


class Evidently:
    name = "evidently DataDriftPreset"

    def fit(self, ref):
        from evidently import DataDefinition, Dataset

        self.definition = DataDefinition(numerical_columns=CONT_COLS, categorical_columns=CAT_COLS)
        self.ref = Dataset.from_pandas(ref, data_definition=self.definition)

    def check(self, cur):
        from evidently import Dataset, Report
        from evidently.presets import DataDriftPreset

        snapshot = Report([DataDriftPreset()]).run(
            current_data=Dataset.from_pandas(cur, data_definition=self.definition), reference_data=self.ref
        )
        count = share = None
        for m in snapshot.dict()["metrics"]:
            if str(m.get("metric_name", "")).startswith("DriftedColumnsCount"):
                count, share = int(m["value"]["count"]), float(m["value"]["share"])
        # The preset's dataset verdict: drift when at least half the columns drift.
        return bool(share is not None and share >= 0.5), count


TOOLS = {
    "scipy": Scipy,
    "kerafine": Kerafine,
    "alibi_tabular": AlibiTabular,
    "alibi_ks": AlibiKS,
    "evidently": Evidently,
}


# ------------------------------------------------------------------ measures
def measure(tool_key, n_null, n_power, large=True, seed=0):
    tool = TOOLS[tool_key]()
    out = {"tool": tool.name}
    rng = np.random.default_rng(seed)
    # Warm-up: imports and first-call caches are not part of a check.
    tool.fit(make(rng, 500))
    tool.check(make(rng, 100))
    ref, cur = make(rng, SMALL[0]), make(rng, SMALL[1])
    t = time.perf_counter()
    tool.fit(ref)
    out["fit_s"] = time.perf_counter() - t
    # The cores are shared: time the tool interleaved with the scipy baseline on
    # the same data, so ratios between runs made at different loads compare.
    base = Scipy()
    base.fit(ref)
    base.check(cur)
    times, base_times = [], []
    for _ in range(7):
        t = time.perf_counter()
        tool.check(cur)
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        base.check(cur)
        base_times.append(time.perf_counter() - t)
    out["check_s"] = statistics.median(times)
    out["scipy_check_s"] = statistics.median(base_times)
    alarms = 0
    for _ in range(n_null):
        tool.fit(make(rng, SMALL[0]))
        alarms += tool.check(make(rng, SMALL[1]))[0]
    out["false_alarms"] = [int(alarms), n_null]
    hits = 0
    for _ in range(n_power):
        tool.fit(make(rng, SMALL[0]))
        hits += tool.check(make(rng, SMALL[1], power_shift()))[0]
    out["power"] = [int(hits), n_power]
    if large:
        ref, cur = make(rng, LARGE[0]), make(rng, LARGE[1], 0.01)
        t = time.perf_counter()
        tool.fit(ref)
        out["large_fit_s"] = time.perf_counter() - t
        t = time.perf_counter()
        alarm, flagged = tool.check(cur)
        out["large_check_s"] = time.perf_counter() - t
        out["large_alarm"], out["large_flagged"] = bool(alarm), flagged
    return out


def _versions(mods):
    out = {}
    for m in mods:
        try:
            out[m] = __import__(m).__version__
        except Exception:  # noqa: BLE001 - reporting only
            out[m] = None
    return out


def _row(r):
    fa = r["false_alarms"]
    pw = r["power"]
    large = ""
    if "large_check_s" in r:
        large = f"{r['large_check_s']:.2f} s, alarm={r['large_alarm']} ({r['large_flagged']} flagged)"
    return (
        f"| {r['tool']} | {r['check_s']:.3f} | {r['scipy_check_s']:.3f} | {r['check_s'] / r['scipy_check_s']:.2f} | "
        f"{fa[0]}/{fa[1]} ({fa[0] / max(fa[1], 1):.0%}) | "
        f"{pw[0]}/{pw[1]} | {large} |"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--null", type=int, default=50, help="no-shift draws for the false-alarm rate")
    ap.add_argument("--power", type=int, default=30, help="draws with a 0.2-sigma shift")
    ap.add_argument("--slow-draws", type=int, default=5, help="null/power draws for evidently (7+ s a check)")
    ap.add_argument("--bench-python", default=None, help="python of a venv with alibi-detect/evidently")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--no-large", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--evidently-large", action="store_true", help="also run evidently on 200k/100k (minutes)")
    ap.add_argument("--json", default=None, help="write the raw results here")
    args = ap.parse_args()
    if args.worker:
        n_null = args.null
        n_power = args.power
        print(json.dumps(measure(args.worker, n_null, n_power, large=not args.no_large)))
        return
    load = os.getloadavg()
    results = [measure("kerafine", args.null, args.power), measure("scipy", args.null, args.power)]
    extra_versions = {}
    if args.bench_python:
        for key, draws in (("alibi_ks", None), ("alibi_tabular", None), ("evidently", args.slow_draws)):
            n_null = args.null if draws is None else draws
            n_power = args.power if draws is None else draws
            cmd = [
                args.bench_python,
                os.path.abspath(__file__),
                "--worker",
                key,
                "--null",
                str(n_null),
                "--power",
                str(n_power),
            ]
            if key == "evidently" and not args.evidently_large:
                cmd.append("--no-large")
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                print(f"# {key}: failed in {args.bench_python}:\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        probe = subprocess.run(
            [
                args.bench_python,
                "-c",
                "import json,importlib.metadata as m;print(json.dumps({p: m.version(p) for p in ('alibi-detect','evidently','scipy','pandas','numpy')}))",
            ],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0:
            extra_versions = json.loads(probe.stdout)

    import kerafine

    print(f"# drift benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"# nproc {os.cpu_count()}, load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"python {platform.python_version()}; kerafine {kerafine.__version__}; "
        + ", ".join(f"{k} {v}" for k, v in _versions(["numpy", "scipy", "pandas"]).items())
        + (f"; bench venv: {extra_versions}" if extra_versions else "")
    )
    print(
        "| tool | check 20k x 55 (s) | same-moment scipy check (s) | tool / scipy | false alarms (no shift) | power (0.2 sigma, 1 of 50) | 200k/100k, 0.01 sigma everywhere |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(_row(r))
    base = {r["tool"]: r for r in results}
    k = base["kerafine DriftDetector"]
    k_rel = k["check_s"] / k["scipy_check_s"]
    for r in results[1:]:
        rel = r["check_s"] / r["scipy_check_s"]
        print(
            f"# {r['tool']}: check time / kerafine's = {r['check_s'] / k['check_s']:.1f}x as measured, "
            f"{rel / k_rel:.1f}x normalised by the scipy check timed beside each"
            + (
                f"; large case {r['large_check_s'] / k['large_check_s']:.1f}x as measured"
                if "large_check_s" in r
                else ""
            )
        )
    print(f"# kerafine profile build (one-off): {k['fit_s']:.2f} s at 20k rows, {k['large_fit_s']:.2f} s at 200k rows")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "load": load, "versions": extra_versions}, f, indent=2)


if __name__ == "__main__":
    main()
