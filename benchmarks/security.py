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
the least disturbed), all functions taking turns round-robin so that load swings
hit them alike. The issue's goal: PGD-10
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


def timed_all(fns: dict, repeats: int) -> dict:
    """Best-of-``repeats`` time of each function, run round-robin so load swings hit all alike."""
    for f in fns.values():
        f()  # warm-up (tracing)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) for name, t in times.items()}


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
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5, activation="softmax"),
        ]
    )
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

    first = {
        "kerafine fgsm()": first_call(lambda: fgsm(model, x, y, eps)),
        "kerafine pgd(steps=10)": first_call(
            lambda: pgd(model, x, y, eps, steps=10, step_size=2.0, random_start=False)
        ),
    }
    fns = {
        "model.predict": lambda: model.predict(x, batch_size=256, verbose=0),
        "one gradient pass (tf.function)": gradient_pass,
        "kerafine fgsm, reused attacker": lambda: attacker.attack(inputs, yy, "fgsm", eps),
        "kerafine pgd-10, reused attacker": lambda: attacker.attack(inputs, yy, "pgd", eps, 10, 2.0, False, None),
        "kerafine fgsm()": lambda: fgsm(model, x, y, eps),
        "kerafine pgd(steps=10)": lambda: pgd(model, x, y, eps, steps=10, step_size=2.0, random_start=False),
    }
    art_version = agree = None
    try:
        import art
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
        from art.estimators.classification import TensorFlowV2Classifier

        art_version = art.__version__
        clf = TensorFlowV2Classifier(
            model,
            nb_classes=5,
            input_shape=(32, 32, 3),
            loss_object=keras.losses.SparseCategoricalCrossentropy(),
            clip_values=(0, 255),
        )
        onehot = np.eye(5)[y]
        fgm = FastGradientMethod(clf, eps=eps, batch_size=256)
        pgd_art = ProjectedGradientDescent(
            clf, eps=eps, eps_step=2.0, max_iter=10, num_random_init=0, batch_size=256, verbose=False
        )
        fns["ART FastGradientMethod"] = lambda: fgm.generate(x, onehot)
        fns["ART ProjectedGradientDescent (10 iter)"] = lambda: pgd_art.generate(x, onehot)
        a = pgd_art.generate(x, onehot)
        b = pgd(model, x, y, eps, steps=10, step_size=2.0, random_start=False)
        agree = float(np.max(np.abs(a - b)))
    except ImportError:
        pass
    load_before = os.getloadavg()[0]
    rows = timed_all(fns, args.repeats)

    print(f"security attacks, {len(x)} rows of 32x32x3, eps={eps} pixels; best of {args.repeats} after a warm-up")
    print(
        f"python {platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"numpy {np.__version__}, ART {art_version}; {os.cpu_count()} CPUs, "
        f"load average {load_before:.1f} before timing, {os.getloadavg()[0]:.1f} after"
    )
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
        print(
            f"ART PGD / kerafine pgd()    = {rows['ART ProjectedGradientDescent (10 iter)'] / rows['kerafine pgd(steps=10)']:.2f}x"
        )
        print(f"max |ART PGD - kerafine PGD| = {agree:.3g} pixels")


if __name__ == "__main__":
    main()
