"""Attack speed: kerafine's PGD-10 and FGSM against one predict / one gradient pass, and against ART.

Model: a small CNN on 1,000 of kerafine's digits demo images (32 x 32 x 3, raw
0-255 pixels, ``Rescaling`` inside the model), compiled with sparse categorical
cross-entropy. In one run, after one warm-up call of each (so graph tracing is
reported separately, not mixed into the steady-state time):

* ``model.predict(x, batch_size=256)``;
* one gradient pass: a hand-written ``tf.function`` computing the input
  gradient of the loss over the 1,000 rows in batches of 256 (what a user
  would write; FGSM is exactly this plus a sign);
* ``kerafine.security.fgsm`` and ``pgd(steps=10)``, both as the public
  functions (each call builds its compiled step) and through one reused
  attacker (what ``robustness_curve`` and ``SecurityMonitor`` do);
* ART 1.x's ``FastGradientMethod`` and ``ProjectedGradientDescent``
  (``max_iter=10``, no random start) on a ``TensorFlowV2Classifier`` of the
  same model, when ART is installed.

Each time is the best of ``--repeats`` runs (the machine is shared: the minimum is
the least disturbed), kerafine and ART alternating run by run. The issue's goal: PGD-10
costs at most ~11 gradient passes, and kerafine is not slower than ART.

Usage::

    python benchmarks/security.py [--rows 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def timed(fn, repeats):
    fn()  # warm-up (tracing)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def timed_pair(fa, fb, repeats):
    """Best-of-``repeats`` times of two functions run alternately, so load swings hit both alike."""
    fa(), fb()  # warm-up (tracing)
    ta, tb = [], []
    for _ in range(repeats):
        for f, acc in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            f()
            acc.append(time.perf_counter() - t0)
    return min(ta), min(tb)


def first_call(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from kerafine.data.demo import load_digits_task
    from kerafine.security import fgsm, pgd
    from kerafine.security.attacks import Attacker

    task = load_digits_task(image_size=32)
    x = np.concatenate([task["pretrain"][0], task["transfer_train"][0], task["transfer_test"][0]])[: args.rows]
    y = np.concatenate([task["pretrain"][1], task["transfer_train"][1], task["transfer_test"][1]])[: args.rows]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(5, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    eps = 8.0
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction="sum")

    @tf.function(reduce_retracing=True)
    def grad(xb, yb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            value = loss_fn(yb, model(xb, training=False))
        return tape.gradient(value, xb)

    def gradient_pass():
        for s in range(0, len(x), 256):
            grad(tf.constant(x[s : s + 256]), tf.constant(y[s : s + 256])).numpy()

    attacker = Attacker(model)
    inputs, yy = attacker.prepare(x, y)

    rows = {}
    rows["model.predict"] = timed(lambda: model.predict(x, batch_size=256, verbose=0), args.repeats)
    rows["one gradient pass (tf.function)"] = timed(gradient_pass, args.repeats)
    rows["kerafine fgsm, reused attacker"] = timed(lambda: attacker.attack(inputs, yy, "fgsm", eps), args.repeats)
    rows["kerafine pgd-10, reused attacker"] = timed(
        lambda: attacker.attack(inputs, yy, "pgd", eps, 10, 2.0, False, None), args.repeats
    )
    first = {
        "kerafine fgsm()": first_call(lambda: fgsm(model, x, y, eps)),
        "kerafine pgd(steps=10)": first_call(lambda: pgd(model, x, y, eps, steps=10, step_size=2.0, random_start=False)),
    }
    rows["kerafine fgsm()"] = timed(lambda: fgsm(model, x, y, eps), args.repeats)
    rows["kerafine pgd(steps=10)"] = timed(
        lambda: pgd(model, x, y, eps, steps=10, step_size=2.0, random_start=False), args.repeats
    )
    art_version = None
    try:
        import art
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
        from art.estimators.classification import TensorFlowV2Classifier

        art_version = art.__version__
        clf = TensorFlowV2Classifier(model, nb_classes=5, input_shape=(32, 32, 3),
                                     loss_object=keras.losses.SparseCategoricalCrossentropy(), clip_values=(0, 255))
        onehot = np.eye(5)[y]
        fgm = FastGradientMethod(clf, eps=eps, batch_size=256)
        pgd_art = ProjectedGradientDescent(clf, eps=eps, eps_step=2.0, max_iter=10, num_random_init=0,
                                           batch_size=256, verbose=False)
        rows["kerafine fgsm()"], rows["ART FastGradientMethod"] = timed_pair(
            lambda: fgsm(model, x, y, eps), lambda: fgm.generate(x, onehot), args.repeats)
        rows["kerafine pgd(steps=10)"], rows["ART ProjectedGradientDescent (10 iter)"] = timed_pair(
            lambda: pgd(model, x, y, eps, steps=10, step_size=2.0, random_start=False),
            lambda: pgd_art.generate(x, onehot), args.repeats)
        a = pgd_art.generate(x, onehot)
        b = pgd(model, x, y, eps, steps=10, step_size=2.0, random_start=False)
        agree = float(np.max(np.abs(a - b)))
    except ImportError:
        agree = None

    print(f"security attacks, {len(x)} rows of 32x32x3, eps={eps} pixels; best of {args.repeats} after a warm-up")
    print(f"python {platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}, "
          f"numpy {np.__version__}, ART {art_version}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for name, t in rows.items():
        print(f"  {name:<42} {t:8.3f} s")
    for name, t in first.items():
        print(f"  {name + ' first call (tracing)':<42} {t:8.3f} s")
    g, p = rows["one gradient pass (tf.function)"], rows["model.predict"]
    pg = rows["kerafine pgd-10, reused attacker"]
    print(f"PGD-10 (reused attacker) / one gradient pass = {pg / g:.2f}  (goal <= ~11)")
    print(f"PGD-10 (reused attacker) / model.predict     = {pg / p:.2f}")
    print(f"pgd() public call / one gradient pass         = {rows['kerafine pgd(steps=10)'] / g:.2f}")
    if "ART FastGradientMethod" in rows:
        print(f"ART FGSM / kerafine fgsm()  = {rows['ART FastGradientMethod'] / rows['kerafine fgsm()']:.2f}x")
        print(f"ART PGD / kerafine pgd()    = {rows['ART ProjectedGradientDescent (10 iter)'] / rows['kerafine pgd(steps=10)']:.2f}x")
        print(f"max |ART PGD - kerafine PGD| = {agree:.3g} pixels")


if __name__ == "__main__":
    main()
