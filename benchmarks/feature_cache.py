"""Frozen-feature caching: kerafine's cached head phase versus a plain Keras fit.

VGG16 (weights=None, 64x64x3, global average pooling) frozen under a sigmoid
head, 1024 random images, 10 head epochs, batch size 32, in one run:

* kerafine: ``fine_tune(..., head_epochs=10, finetune_epochs=0)`` with cached
  features (one backbone pass, then the head trains on the features);
* plain Keras: ``model.fit`` of the same frozen model for 10 epochs (the
  backbone runs every epoch);
* reference: one backbone forward pass over the data (``backbone.predict``)
  plus 10 epochs of a head-only model on the features: the least a cached
  path can cost. Goal: kerafine <= 1.2 x reference.

Usage: ``python benchmarks/feature_cache.py [--images 1024] [--epochs 10]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="rounds of (reference, kerafine), alternating which goes first; medians reported",
    )
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    import kerafine

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(args.images, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 2, size=args.images).astype("float32")
    shape = (args.size, args.size, 3)

    def vgg():
        return keras.applications.VGG16(weights=None, include_top=False, input_shape=shape, pooling="avg")

    def head():
        return keras.Sequential([keras.layers.Dense(1, activation="sigmoid", name="predictions")], name="head")

    tf.constant(1.0) + 1.0  # start the runtime outside the timings

    loads = {}

    def reference():
        """One forward pass + the head epochs on precomputed features (fresh model: tracing included)."""
        backbone = vgg()
        backbone.trainable = False
        t0 = time.perf_counter()
        features = backbone.predict(x, batch_size=args.batch_size, verbose=0)
        t_forward = time.perf_counter() - t0
        feature_in = keras.Input(features.shape[1:])
        head_only = keras.Model(feature_in, head()(feature_in))
        head_only.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
        t0 = time.perf_counter()
        head_only.fit(features, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
        return t_forward, time.perf_counter() - t0

    def cached():
        """kerafine's cached head phase on a fresh transfer model."""
        model = kerafine.build_transfer_model(vgg(), head(), freeze="all")
        t0 = time.perf_counter()
        result = kerafine.fine_tune(
            model,
            (x, y),
            head_epochs=args.epochs,
            finetune_epochs=0,
            head_lr=1e-3,
            batch_size=args.batch_size,
            cache_features=True,
            verbose=0,
        )
        assert result.features_cached
        return time.perf_counter() - t0, result

    refs, kfs = [], []
    for i in range(args.repeats):
        order = (reference, cached) if i % 2 == 0 else (cached, reference)
        for fn in order:
            keras.utils.set_random_seed(i)
            out = fn()
            (refs if fn is reference else kfs).append(out)
        print(f"  (round {i + 1}: reference {sum(refs[-1]):.1f} s, kerafine {kfs[-1][0]:.1f} s)", flush=True)
    loads["reference+kerafine"] = os.getloadavg()[0]
    mid = len(refs) // 2
    t_forward, t_head = sorted(refs, key=sum)[mid]
    t_reference = t_forward + t_head
    t_kerafine, result = sorted(kfs, key=lambda r: r[0])[mid]

    # plain Keras: the same frozen model, fit as usual
    keras.utils.set_random_seed(0)
    backbone = vgg()
    backbone.trainable = False
    inputs = keras.Input(shape)
    plain = keras.Model(inputs, head()(backbone(inputs, training=False)))
    plain.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    t0 = time.perf_counter()
    plain.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
    t_plain = time.perf_counter() - t0
    loads["plain"] = os.getloadavg()[0]
    print(f"  (plain keras done: {t_plain:.1f} s)", flush=True)

    print(
        f"feature_cache: VGG16 weights=None {shape}, {args.images} images, {args.epochs} head epochs, "
        f"batch {args.batch_size}; reference and kerafine: median of {args.repeats} rounds, plain: 1 run"
    )
    print(
        f"  python {platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"nproc {os.cpu_count()}, 1-min load average after each part: "
        + ", ".join(f"{k} {v:.2f}" for k, v in loads.items())
    )
    print(
        f"  kerafine cached phase 1 : {t_kerafine:8.2f} s  (features {result.feature_seconds:.2f} s + "
        f"head fit {result.head_seconds:.2f} s); all rounds: {[round(k[0], 1) for k in kfs]}"
    )
    print(f"  plain keras fit         : {t_plain:8.2f} s")
    print(f"  speed-up plain/kerafine : {t_plain / t_kerafine:8.2f} x")
    print(
        f"  reference (1 forward pass {t_forward:.2f} s + head epochs {t_head:.2f} s): {t_reference:.2f} s; "
        f"all rounds: {[round(sum(r), 1) for r in refs]}"
    )
    print(f"  kerafine / reference    : {t_kerafine / t_reference:8.2f} x  (goal <= 1.2)")
    print(f"  plain / reference       : {t_plain / t_reference:8.2f} x")


if __name__ == "__main__":
    main()
