"""Cost of the dead-model alarms (issue 19) against one training epoch.

The constant-feature check runs the backbone (inference mode) on at most 256
rows: once before ``fine_tune``'s head phase, and at the first epoch's start and
every epoch end in ``TrainingMonitor(probe_data=...)``. The one-class check
is one prediction pass over the validation data (shared with ``AUCTracker``
through the fit's prediction cache when both see the same ``x``).

One run: a small CNN transfer model (two conv blocks with BatchNorm, 32x32x3
inputs), ``--samples`` training rows, ``--rounds`` interleaved rounds; each
figure is the median over rounds after a warm-up (tracing) round. Printed: one
epoch of ``fit`` (batch 64, no callbacks), one constant-feature check, one
one-class check on ``--val`` rows, each check as a share of the epoch, and the
one-class check against Keras's own validation pass (``evaluate``) on the same rows.

Run: ``python benchmarks/dead_model_checks.py [--rounds 5] [--samples 4096] [--val 1024]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerafine import _health  # noqa: E402
from kerafine.transfer import build_transfer_model  # noqa: E402


def _model():
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for i, width in enumerate((16, 32)):
        x = keras.layers.Conv2D(width, 3, padding="same", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    backbone = keras.Model(inputs, x, name="cnn")
    # Backbone frozen (the head phase without feature caching): the cheapest epoch that still runs the backbone.
    model = build_transfer_model(backbone, keras.layers.Dense(10, activation="softmax", name="predictions"))
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--val", type=int, default=1024)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.samples, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, args.samples)
    xv, yv = x[: args.val], y[: args.val]
    model = _model()
    times = {"epoch": [], "constant_features": [], "one_class": [], "validation": []}
    for r in range(args.rounds + 1):
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)
        t1 = time.perf_counter()
        _health.check_backbone(model, x, "train_data")
        t2 = time.perf_counter()
        _health.one_class(model.predict(xv, batch_size=256, verbose=0), yv)
        t3 = time.perf_counter()
        model.evaluate(xv, yv, batch_size=256, verbose=0)  # what fit's own validation pass costs
        t4 = time.perf_counter()
        if r:  # round 0 traces
            times["epoch"].append(t1 - t0)
            times["constant_features"].append(t2 - t1)
            times["one_class"].append(t3 - t2)
            times["validation"].append(t4 - t3)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"keras {keras.__version__}, {args.samples} training rows, {args.val} validation rows, "
        f"{args.rounds} rounds (medians)"
    )
    print(f"one epoch of fit:            {med['epoch']:.3f} s")
    print(
        f"constant-feature check:      {med['constant_features']:.4f} s = "
        f"{100 * med['constant_features'] / med['epoch']:.2f}% of an epoch"
    )
    print(
        f"one-class check ({args.val} rows): {med['one_class']:.4f} s = "
        f"{100 * med['one_class'] / med['epoch']:.2f}% of an epoch, "
        f"{med['one_class'] / med['validation']:.2f}x Keras's validation pass ({med['validation']:.4f} s)"
    )


if __name__ == "__main__":
    main()
