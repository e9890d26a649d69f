"""Per-epoch overhead of TrainingMonitor, and lr_find's wall time against one epoch.

One run, on one machine, all configurations interleaved round-robin so that the
load of a shared machine hits them alike. For each configuration the epoch time
is measured from the first callback's ``on_epoch_begin`` to the last callback's
``on_epoch_end`` (so every callback's epoch-end work, validation included, is
inside it) and the median over the timed rounds is reported; the first epoch of
every model (tracing) is not timed.

Configurations:

* ``none``: no extra callback (Keras's History only);
* ``monitor``: ``TrainingMonitor()`` with its defaults (no TensorBoard);
* ``monitor-nocheck``: the same without the per-batch finite-weights check
  (``weight_check_freq`` larger than the run), to isolate that check's cost;
* ``monitor+tb``: ``TrainingMonitor(log_dir)`` (TensorBoard scalars every 50 batches);
* ``monitor+tb+hist``: ``TrainingMonitor(log_dir, histograms_every_n_epochs=1)``;
* ``keras_tb_hist``: ``keras.callbacks.TensorBoard(log_dir, histogram_freq=1)``.

Then ``lr_find(num_steps=100)`` on the same model and data, against one epoch
without callbacks.

Run: ``python benchmarks/training_monitor.py [--model conv|mlp] [--rounds 5] [--samples 8192]``

Besides wall time, the process CPU time of each epoch and the time spent
inside TrainingMonitor's own hooks are printed: on a shared machine the wall
time of a single epoch is noisy, the time inside the hooks much less so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerafine.callbacks.training_monitor import TrainingMonitor  # noqa: E402
from kerafine.lr_finder import lr_find  # noqa: E402


class _Start(keras.callbacks.Callback):
    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def on_epoch_begin(self, epoch, logs=None):
        self.clock["t0"] = time.perf_counter()
        self.clock["c0"] = time.process_time()


class _End(keras.callbacks.Callback):
    def __init__(self, clock, times):
        super().__init__()
        self.clock, self.times = clock, times

    def on_epoch_end(self, epoch, logs=None):
        self.times.append((time.perf_counter() - self.clock["t0"], time.process_time() - self.clock["c0"]))


def _timed_hooks(callback, totals):
    """Wrap a callback's hooks to add the time spent inside them to ``totals["s"]``."""
    for hook in ("on_epoch_begin", "on_train_batch_end", "on_epoch_end"):
        original = getattr(callback, hook)

        def wrapped(*a, _original=original, **k):
            t = time.perf_counter()
            try:
                return _original(*a, **k)
            finally:
                totals["s"] += time.perf_counter() - t

        setattr(callback, hook, wrapped)
    return callback


def build_mlp(seed: int):
    """The worst case for a per-batch hook: a tiny MLP whose steps take about a millisecond."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def build_model(seed: int):
    """A small transfer model: a frozen conv "backbone" and a trainable head."""
    keras.utils.set_random_seed(seed)
    backbone = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name="backbone",
    )
    backbone.trainable = False
    inp = keras.Input((32, 32, 3))
    h = backbone(inp, training=False)
    h = keras.layers.Dense(64, activation="relu")(h)
    h = keras.layers.Dropout(0.2)(h)
    out = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs per configuration")
    parser.add_argument("--samples", type=int, default=8192, help="training samples (batch 32)")
    parser.add_argument(
        "--model",
        choices=["conv", "mlp"],
        default="conv",
        help="conv: frozen conv backbone + head; mlp: tiny MLP (worst case for per-batch hooks)",
    )
    args = parser.parse_args()
    builder = build_model if args.model == "conv" else build_mlp

    rng = np.random.default_rng(0)
    proj = rng.normal(size=(3, 10))

    def data(n):
        # Learnable labels: the class is set by the image's mean colour.
        xs = rng.normal(size=(n, 32, 32, 3)).astype("float32") + rng.normal(size=(n, 1, 1, 3)).astype("float32")
        return xs, (xs.mean(axis=(1, 2)) @ proj).argmax(axis=1)

    x, y = data(args.samples)
    xv, yv = data(args.samples // 8)
    tmp = tempfile.mkdtemp(prefix="kerafine-bench-monitor-")

    def callbacks(name):
        if name == "none":
            return []
        if name == "monitor":
            return [_timed_hooks(TrainingMonitor(on_problem=lambda p: None), self_time[name])]
        if name == "monitor-nocheck":
            monitor = TrainingMonitor(on_problem=lambda p: None, weight_check_freq=10**9)
            return [_timed_hooks(monitor, self_time[name])]
        if name == "monitor+tb":
            return [
                _timed_hooks(
                    TrainingMonitor(log_dir=os.path.join(tmp, "t"), on_problem=lambda p: None), self_time[name]
                )
            ]
        if name == "monitor+tb+hist":
            monitor = TrainingMonitor(
                log_dir=os.path.join(tmp, "m"), histograms_every_n_epochs=1, on_problem=lambda p: None
            )
            return [_timed_hooks(monitor, self_time[name])]
        if name == "keras_tb_hist":
            return [keras.callbacks.TensorBoard(log_dir=os.path.join(tmp, "k"), histogram_freq=1)]
        raise ValueError(name)

    names = ["none", "monitor", "monitor-nocheck", "monitor+tb", "monitor+tb+hist", "keras_tb_hist"]
    self_time = {n: {"s": 0.0} for n in names}
    models = {n: builder(0) for n in names}
    cbs = {n: callbacks(n) for n in names}
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for round_ in range(args.rounds + 1):
        for n in names:
            if round_ == 1:
                self_time[n]["s"] = 0.0  # count only the timed rounds
            clock, epoch_times = {}, []
            models[n].fit(
                x,
                y,
                batch_size=32,
                epochs=1,
                verbose=0,
                validation_data=(xv, yv),
                callbacks=[_Start(clock)] + cbs[n] + [_End(clock, epoch_times)],
            )
            if round_ > 0:  # round 0 traces the functions
                times[n].append(epoch_times[0])
    steps = int(np.ceil(args.samples / 32))
    wall = {n: statistics.median(t[0] for t in times[n]) for n in names}
    cpu = {n: statistics.median(t[1] for t in times[n]) for n in names}
    base = wall["none"]
    label = "frozen conv backbone + dense head" if args.model == "conv" else "tiny MLP"
    print(
        f"model: {label}, {steps} steps/epoch (batch 32), "
        f"{len(xv)} validation samples; median of {args.rounds} epochs per configuration"
    )
    print(
        f"{'configuration':<16} {'wall s':>8} {'wall ratio':>11} {'cpu s':>8} {'cpu ratio':>10} {'hooks s/epoch':>14}"
    )
    for n in names:
        hooks = self_time[n]["s"] / args.rounds if self_time[n]["s"] else float("nan")
        print(f"{n:<16} {wall[n]:8.3f} {wall[n] / base:11.3f} {cpu[n]:8.3f} {cpu[n] / cpu['none']:10.3f} {hooks:14.4f}")
    for n in ("monitor", "monitor-nocheck", "monitor+tb", "monitor+tb+hist"):
        print(
            f"{n}: time inside TrainingMonitor's hooks = {100 * self_time[n]['s'] / args.rounds / base:.2f}% "
            "of a plain epoch"
        )
    print(
        f"monitor+tb+hist / keras_tb_hist: wall {wall['monitor+tb+hist'] / wall['keras_tb_hist']:.3f}, "
        f"cpu {cpu['monitor+tb+hist'] / cpu['keras_tb_hist']:.3f}"
    )

    model = builder(0)
    t0 = time.perf_counter()
    result = lr_find(model, (x, y), num_steps=100, batch_size=32)
    t_find = time.perf_counter() - t0
    print(
        f"lr_find(num_steps=100): {t_find:.2f} s (copy, compile, trace and 100 steps; "
        f"{len(result.learning_rates)} steps run, suggestion {result.suggestion:.2g}, rule {result.rule}); "
        f"one epoch without callbacks: {base:.2f} s; ratio {t_find / base:.2f}"
    )


if __name__ == "__main__":
    main()
