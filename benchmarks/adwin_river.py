"""ADWIN: kerafine's StreamDriftDetector against river's ADWIN, same streams, one run.

For each ``delta`` (0.002, river's default, and 0.1):

* false alarms: detections on ``--null`` stationary N(0, 1) streams of 5,000 values;
* detection delay: on ``--power`` streams of 1,000 N(0, 1) values followed by 1,000
  N(1, 1) values, the delay of the first detection at or after the change (and how
  many changes were missed);
* time per update (median over the runs) and its ratio.

kerafine keeps its window exactly and examines every split point; river keeps an
exponential histogram and examines bucket boundaries only. river is a test-only
dependency (``pip install -e ".[test]"``).

Usage::

    python benchmarks/adwin_river.py [--null 20] [--power 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
from river import drift

from kerafine.drift import StreamDriftDetector


def _run(make, stream):
    detector = make()
    hits = []
    start = time.perf_counter()
    for i, value in enumerate(stream):
        detector.update(float(value))
        if detector.drift_detected:
            hits.append(i)
    return hits, (time.perf_counter() - start) / len(stream)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--null", type=int, default=20)
    parser.add_argument("--power", type=int, default=20)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, nproc {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    for delta in (0.002, 0.1):
        tools = {
            "kerafine": lambda: StreamDriftDetector("adwin", delta=delta),
            "river": lambda: drift.ADWIN(delta=delta),
        }
        false_alarms = {name: 0 for name in tools}
        delays = {name: [] for name in tools}
        missed = {name: 0 for name in tools}
        per_update = {name: [] for name in tools}
        for seed in range(args.null):
            stream = np.random.default_rng(seed).normal(0, 1, 5000)
            for name, make in tools.items():  # same stream for both, back to back
                hits, t = _run(make, stream)
                false_alarms[name] += len(hits)
                per_update[name].append(t)
        for seed in range(args.power):
            rng = np.random.default_rng(10_000 + seed)
            stream = np.r_[rng.normal(0, 1, 1000), rng.normal(1, 1, 1000)]
            for name, make in tools.items():
                hits, t = _run(make, stream)
                after = [h for h in hits if h >= 1000]
                if after:
                    delays[name].append(after[0] - 1000)
                else:
                    missed[name] += 1
                per_update[name].append(t)
        print(f"\ndelta={delta}")
        for name in tools:
            median_delay = statistics.median(delays[name]) if delays[name] else float("nan")
            print(
                f"  {name:<9} false alarms {false_alarms[name]:>3} over {args.null} x 5000 values; "
                f"median delay {median_delay:6.1f} (missed {missed[name]}/{args.power}); "
                f"{statistics.median(per_update[name]) * 1e6:7.1f} us/update"
            )
        ratio = statistics.median(per_update["kerafine"]) / statistics.median(per_update["river"])
        print(f"  time per update, kerafine / river: {ratio:.1f}x")


if __name__ == "__main__":
    main()
