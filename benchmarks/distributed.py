"""Benchmark: multi-worker training with kerafine.distributed on one machine.

Run: ``python benchmarks/distributed.py`` (about 5 minutes on 2 shared cores).

One run launches the same worker code twice through the local launcher
(``kerafine.distributed.launcher.launch``): as 1 worker and as 2 workers on
127.0.0.1, with the same model, data and *global* batch size. Each worker
first trains one epoch to trace the functions, then alternates (ABBA order), ``REPEATS``
times, a ``fit`` of ``EPOCHS`` epochs without callbacks and the same ``fit``
with kerafine's callbacks (CheckpointRestart, AUCTracker on a validation set,
EarlyStopping on its AUC, TrainingMonitor, DriftMonitor on a sharded reference),
on the same model so both see the
same trained state. Printed, as ratios from this one run:

1. training steps per second, 2 workers / 1 worker (fits without callbacks);
2. callbacks' overhead: time with / time without, per worker count (median
   and range over the repeats, each fit with callbacks against the fit without
   next to it), the added seconds per epoch (the callbacks' cost is per epoch,
   so their share depends on the epoch's length), and the same ratio for each
   callback alone (one fit each).

What 2 cores can and cannot show: both workers share the same 2 cores (each
TensorFlow process also wants 2 threads), so 2 workers cannot be faster than
1 here; the 2-worker figure measures the cost of the strategy (gradient
all-reduce over gRPC on loopback, input sharding, process contention), not
scaling. Scaling needs one machine (or at least dedicated cores) per worker.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EPOCHS = 2
REPEATS = 6
ROWS, FEATURES, BATCH = 16384, 32, 256  # 64 global steps an epoch


def worker(out_dir: str) -> None:
    from kerafine.distributed import cluster_info, multi_worker_strategy

    strategy = multi_worker_strategy()
    import keras
    import numpy as np
    import tensorflow as tf

    from kerafine.callbacks import AUCTracker, CheckpointRestart, DriftMonitor, EarlyStopping, TrainingMonitor

    info = cluster_info()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, FEATURES)).astype("float32")
    y = (x[:, :4].sum(axis=1) + rng.normal(size=ROWS) > 0).astype("float32")
    xv = rng.normal(size=(2048, FEATURES)).astype("float32")
    yv = (xv[:, :4].sum(axis=1) > 0).astype("float32")
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((FEATURES,)),
                keras.layers.Dense(256, activation="relu"),
                keras.layers.Dense(256, activation="relu"),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
        model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    model.fit(train, epochs=1, verbose=0)  # trace

    def callbacks(tag, only=None):
        made = {
            "CheckpointRestart": lambda: CheckpointRestart(os.path.join(out_dir, f"ckpt-{tag}")),
            "AUCTracker": lambda: AUCTracker((xv, yv), batch_size=512),
            "EarlyStopping": lambda: EarlyStopping(monitor="val_auc", mode="max", patience=100),
            "TrainingMonitor": lambda: TrainingMonitor(os.path.join(out_dir, f"tb-{tag}"), on_problem="warn"),
            # Each worker profiles its share of 4 096 training rows; the profiles are exchanged and merged.
            "DriftMonitor": lambda: DriftMonitor(
                x[:4096][info.rank :: info.num_workers], xv, reference_is_shard=True, on_drift=lambda report: None
            ),
        }
        return [f() for name, f in made.items() if only in (None, name)]

    def timed(cbs):
        t = time.perf_counter()
        model.fit(train, epochs=EPOCHS, verbose=0, callbacks=cbs)
        return time.perf_counter() - t

    plain, with_cbs = [], []
    for rep in range(REPEATS):
        # ABBA order: a slow drift of the machine's load biases neither side.
        if rep % 2 == 0:
            plain.append(timed([]))
            with_cbs.append(timed(callbacks(rep)))
        else:
            with_cbs.append(timed(callbacks(rep)))
            plain.append(timed([]))
    # One callback at a time (once each, beside one more plain fit): where the overhead comes from.
    single = {
        name: timed(callbacks(f"{name}-only", only=name))
        for name in ("CheckpointRestart", "AUCTracker", "TrainingMonitor", "DriftMonitor")
    }
    plain.append(timed([]))
    steps = EPOCHS * ROWS // BATCH
    with open(os.path.join(out_dir, f"timing-{info.task_index}.json"), "w") as f:
        json.dump({"plain": plain, "callbacks": with_cbs, "single": single, "steps": steps}, f)


def run(workers: int, out_dir: str) -> dict:
    from kerafine.distributed.launcher import launch

    log = open(os.path.join(out_dir, "launcher.log"), "w")
    code = launch(__file__, ["--worker", out_dir], workers=workers, timeout=900, out=log)
    log.close()
    if code != 0:
        sys.exit(f"{workers}-worker run failed (exit {code}); see {out_dir}/launcher.log")
    with open(os.path.join(out_dir, "timing-0.json")) as f:
        return json.load(f)


def main() -> None:
    import keras
    import tensorflow as tf

    results = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory(prefix=f"kerafine-bench-{workers}w-") as d:
            results[workers] = run(workers, d)
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}"
    )
    print(f"versions: TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}")
    print(f"model: MLP {FEATURES}-256-256-1, {ROWS} rows, global batch {BATCH}, {EPOCHS} epochs x {REPEATS} repeats")
    rate = {}
    for workers, r in results.items():
        plain = statistics.median(r["plain"])
        cbs = statistics.median(r["callbacks"])
        rate[workers] = r["steps"] / plain
        print(
            f"{workers} worker(s): {rate[workers]:.1f} steps/s without callbacks (median fit {plain:.2f} s), "
            f"{r['steps'] / cbs:.1f} steps/s with kerafine's callbacks (median {cbs:.2f} s): "
            f"overhead x{cbs / plain:.3f}  (all fits: plain {[round(v, 2) for v in r['plain']]}, "
            f"callbacks {[round(v, 2) for v in r['callbacks']]})"
        )
        paired = sorted(c / p for c, p in zip(r["callbacks"], r["plain"]))
        print(
            f"    overhead per repeat (with / adjacent without, sorted): {[round(v, 3) for v in paired]}; "
            f"median x{statistics.median(paired):.3f}, range x{paired[0]:.3f}..x{paired[-1]:.3f}"
        )
        extra = sorted((c - p) / EPOCHS for c, p in zip(r["callbacks"], r["plain"]))
        per_epoch = statistics.median(extra)
        print(
            f"    added seconds per epoch (with - adjacent without): median {per_epoch:.2f} s, range "
            f"{extra[0]:.2f}..{extra[-1]:.2f} s; an epoch without callbacks here takes {plain / EPOCHS:.2f} s, "
            f"so 5 % needs epochs of >= {20 * max(per_epoch, 0):.0f} s"
        )
        print(
            "    one callback at a time (time / median plain fit): "
            + ", ".join(f"{name} x{t / plain:.3f}" for name, t in r["single"].items())
        )
    spread = sorted(results[2]["steps"] / p2 / rate[1] for p2 in results[2]["plain"])
    print(
        f"steps/s, 2 workers / 1 worker: {rate[2] / rate[1]:.2f} (each 2-worker fit / the median 1-worker rate: "
        f"{spread[0]:.2f}..{spread[-1]:.2f})"
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
