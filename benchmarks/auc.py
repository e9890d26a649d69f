"""Benchmark: exact ROC-AUC of kerafine vs scikit-learn, and AUCTracker's cost per epoch.

Run: ``python benchmarks/auc.py`` (about two minutes on 2 cores;
``--no-metrics`` or ``--no-tracker`` runs one half). One run per
size, as the issue asks; the machine is shared, so record ``uptime`` with the
figures.

1. ``kerafine.metrics.roc_auc`` vs ``sklearn.metrics.roc_auc_score`` on
   1e5, 1e6 and 1e7 binary samples (float64 scores, 30% positives), checked
   equal to 1e-12; also float32 scores (what a Keras model outputs), sample
   weights, and ``pr_auc`` vs ``average_precision_score``. A bare
   ``np.argsort`` of the scores is printed as the reference floor.
2. Per-epoch overhead of ``AUCTracker`` (exact ROC-AUC + DeLong interval on
   50,000 validation rows) on a small dense model, as a ratio to the epoch
   without it. Both runs pass the same ``validation_data`` to ``fit`` with a
   compiled ``keras.metrics.AUC`` (the thing a user would otherwise use).
"""

from __future__ import annotations

import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def _time(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def bench_metrics(sizes=(10**5, 10**6, 10**7)):
    from sklearn.metrics import average_precision_score, roc_auc_score

    from kerafine.metrics import pr_auc, roc_auc

    rng = np.random.default_rng(0)
    print("== ROC-AUC: kerafine.metrics.roc_auc vs sklearn.metrics.roc_auc_score (one run each) ==")
    print(f"{'case':<28}{'n':>10}{'kerafine s':>12}{'sklearn s':>12}{'ratio':>8}{'argsort s':>11}  |diff|")
    rows = []
    for n in sizes:
        y = rng.random(n) < 0.3
        s = rng.random(n) + 0.3 * y
        cases = [("float64", s, None, roc_auc, roc_auc_score)]
        if n >= 10**6:
            cases += [
                ("float32 (Keras output)", s.astype(np.float32), None, roc_auc, roc_auc_score),
                ("float64 + sample_weight", s, rng.uniform(0.5, 2.0, n), roc_auc, roc_auc_score),
                ("pr_auc vs average_precision", s, None, pr_auc, average_precision_score),
            ]
        t_sort, _ = _time(np.argsort, s)
        for label, scores, w, ours, theirs in cases:
            t_k, a = _time(ours, y, scores, sample_weight=w)
            t_s, b = _time(theirs, y, scores, sample_weight=w)
            rows.append((label, n, t_k, t_s))
            print(f"{label:<28}{n:>10}{t_k:>12.3f}{t_s:>12.3f}{t_k / t_s:>8.2f}{t_sort:>11.3f}  {abs(a - b):.1e}")
            assert abs(a - b) <= 1e-12, (label, n, a, b)
    return rows


def bench_tracker(n_train=100_000, n_val=50_000, epochs=4):
    import keras

    from kerafine.callbacks import AUCTracker

    rng = np.random.default_rng(1)
    d = 20
    w_true = rng.normal(size=d)

    def make(n):
        x = rng.normal(size=(n, d)).astype("float32")
        y = (x @ w_true + rng.normal(scale=3.0, size=n) > 4.0).astype("float32")  # ~10% positives
        return x, y

    x, y = make(n_train)
    xv, yv = make(n_val)

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._t)

    def run(with_tracker):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((d,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
        )
        model.compile("adam", "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
        timer = EpochTimer()
        tracker_times = []
        callbacks = [timer]
        if with_tracker:
            tracker = AUCTracker((xv, yv), name="val_exact_auc", batch_size=2048)
            inner = tracker.on_epoch_end

            def timed(epoch, logs=None):
                t0 = time.perf_counter()
                inner(epoch, logs)
                tracker_times.append(time.perf_counter() - t0)

            tracker.on_epoch_end = timed
            # The timer goes last so that its epoch end includes the tracker's work.
            callbacks = [tracker, timer]
        model.fit(x, y, validation_data=(xv, yv), batch_size=256, epochs=epochs, verbose=0, callbacks=callbacks)
        # Epoch 0 includes tracing: medians over the later epochs.
        return float(np.median(timer.times[1:])), (float(np.median(tracker_times[1:])) if tracker_times else 0.0), model

    base, _, _ = run(False)
    tracked, tracker_time, model = run(True)
    from kerafine.metrics import ranking

    p = model.predict(xv, batch_size=2048, verbose=0).ravel()
    metric_time, _ = _time(ranking._binary_summary, yv.astype(bool), p, None, 0.95)
    print(f"\n== AUCTracker per-epoch overhead (median of epochs 2..{epochs}) ==")
    print(f"train rows {n_train}, validation rows {n_val}, model Dense(32)-Dense(1), fit(validation_data=...)")
    print(f"epoch without AUCTracker:            {base:.3f} s")
    print(
        f"epoch with AUCTracker:               {tracked:.3f} s (ratio {tracked / base:.2f}; noisy on a shared machine)"
    )
    print(
        f"AUCTracker.on_epoch_end itself:      {tracker_time:.3f} s = {tracker_time / base:.1%} of the epoch without it"
    )
    print(f"  of which exact AUC + PR + DeLong:  {metric_time:.4f} s (the rest is the prediction pass)")
    return base, tracked, tracker_time, metric_time


def main():
    import sklearn

    print(f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}")
    print(f"nproc {os.cpu_count()}, load average {os.getloadavg()}")
    if "--no-metrics" not in sys.argv:
        bench_metrics()
    if "--no-tracker" not in sys.argv:
        bench_tracker()
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
