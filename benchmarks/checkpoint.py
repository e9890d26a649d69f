"""Benchmark: CheckpointRestart vs keras.callbacks.BackupAndRestore on a VGG16-size model.

Run: ``python benchmarks/checkpoint.py`` (a few minutes on 2 cores). One run,
as the issue asks; the machine is shared, so ``uptime`` is printed with the
figures.

Model: ``keras.applications.VGG16(weights=None, include_top=False)`` on
32x32x3 inputs with a 10-way dense head (about 14.7M parameters), Adam, so a
checkpoint holds about 177 MB (weights plus two Adam slots per weight).

1. Per-checkpoint save time: ``CheckpointRestart._save`` with
   ``background_save=False`` (atomic directory,
   fsync, CRC32 manifest, plus callback and random state) vs
   ``BackupAndRestore._save_model`` (``model.save_weights`` to one
   ``.weights.h5`` written in place, no fsync), called alternately, median of
   6 rounds (the disk of a shared VM is noisy; alternating exposes both to
   the same noise). With the default ``background_save=True`` the figures are
   the pause of training (snapshot) and the time until the checkpoint is
   durable.
2. Restore time: what each does in ``on_train_begin`` of a restarted fit
   (CheckpointRestart also verifies every file's CRC32), alternately, median.
3. Per-epoch overhead of each callback relative to the same ``fit`` without
   it (1 training step an epoch, so the save dominates the difference).
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def _model():
    import keras

    keras.utils.set_random_seed(0)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    model = keras.Sequential([base, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(1e-4), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _timed(obj, name, sink):
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        sink.append(time.perf_counter() - t0)
        return out

    setattr(obj, name, wrapper)


def main(epochs=8, rounds=6):
    import warnings

    import keras
    import tensorflow as tf

    from kerafine import _io
    from kerafine.callbacks.checkpoint_restart import CheckpointRestart

    rng = np.random.default_rng(0)
    # A small epoch (one step of 4 images), so that the save is a visible part of it.
    x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=4)
    model = _model()
    print(f"parameters: {model.count_params():,}")
    fit = dict(x=x, y=y, batch_size=4, verbose=0, shuffle=False)
    model.fit(epochs=1, **fit)  # trace the train step and build Adam's slots
    root = tempfile.mkdtemp(prefix="kerafine-bench-", dir=os.environ.get("BENCH_DIR"))
    ours_dir, keras_dir = os.path.join(root, "kerafine"), os.path.join(root, "keras")

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    try:
        # 1-2. Saves and restores alternate, so that both see the same (shared,
        # noisy) disk and CPU; medians over `rounds`.
        ckpt = CheckpointRestart(ours_dir, keep=2, rollback_on_divergence=False, background_save=False)
        ckpt.set_model(model)
        ckpt_bg = CheckpointRestart(ours_dir + "-bg", keep=2, rollback_on_divergence=False)
        ckpt_bg.set_model(model)
        bar = keras.callbacks.BackupAndRestore(keras_dir, delete_checkpoint=False)
        bar.set_model(model)
        ours_saves, keras_saves, ours_restores, keras_restores, bg_pause, bg_total = [], [], [], [], [], []
        for i in range(rounds):
            ours_saves.append(timed(lambda: ckpt._save(epoch=i + 1, batch=0, stopped=False)))
            keras_saves.append(timed(bar._save_model))
            pause = timed(lambda: ckpt_bg._save(epoch=i + 1, batch=0, stopped=False))
            bg_pause.append(pause)
            bg_total.append(pause + timed(ckpt_bg._wait_for_pending))
        size = sum(f.stat().st_size for f in ckpt.checkpoints()[0].rglob("*") if f.is_file())
        keras_size = os.path.getsize(os.path.join(keras_dir, "latest.weights.h5"))
        initial = model._initial_epoch
        for _ in range(rounds):
            fresh = CheckpointRestart(ours_dir, keep=2, rollback_on_divergence=False)
            fresh.set_model(model)
            newest = fresh.checkpoints()[0]
            # What on_train_begin does: verify every CRC32, then load.
            ours_restores.append(
                timed(lambda: (_io.verify_manifest(newest), fresh._restore(newest, begun=[], resume=True)))
            )
            keras_restores.append(timed(bar._load_model))
        model._initial_epoch = initial

        # 3. Whole epochs inside fit().
        def run(callbacks):
            t0 = time.perf_counter()
            model.fit(epochs=epochs, callbacks=callbacks, **fit)
            return (time.perf_counter() - t0) / epochs

        base = statistics.median(run([]) for _ in range(2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shutil.rmtree(ours_dir)
            ours_epoch = run([CheckpointRestart(ours_dir, keep=2, rollback_on_divergence=False)])
            shutil.rmtree(ours_dir)
            ours_sync_epoch = run(
                [CheckpointRestart(ours_dir, keep=2, rollback_on_divergence=False, background_save=False)]
            )
            shutil.rmtree(keras_dir)
            keras_epoch = run([keras.callbacks.BackupAndRestore(keras_dir)])
        results = {
            "save_ours": statistics.median(ours_saves),
            "save_keras": statistics.median(keras_saves),
            "bg_pause": statistics.median(bg_pause),
            "bg_total": statistics.median(bg_total),
            "epoch_ours_sync": ours_sync_epoch,
            "restore_ours": statistics.median(ours_restores),
            "restore_keras": statistics.median(keras_restores),
            "epoch_base": base,
            "epoch_ours": ours_epoch,
            "epoch_keras": keras_epoch,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)

    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; nproc: {os.cpu_count()}; {uptime}")
    print(
        f"python {platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}, numpy {np.__version__}"
    )
    print(f"checkpoint size: kerafine {size / 1e6:.0f} MB (directory), keras {keras_size / 1e6:.0f} MB (.weights.h5)")
    print(
        f"all saves (s)   : kerafine {[round(t, 2) for t in ours_saves]}, keras {[round(t, 2) for t in keras_saves]}, "
        f"kerafine background pause {[round(t, 3) for t in bg_pause]}"
    )
    r = results
    print(
        f"save    : CheckpointRestart(background_save=False) {r['save_ours']:.3f} s, BackupAndRestore "
        f"{r['save_keras']:.3f} s, ratio {r['save_ours'] / r['save_keras']:.2f}x (goal <= 1.2x)"
    )
    print(
        f"save    : CheckpointRestart(background_save=True, default) pauses training {r['bg_pause']:.3f} s "
        f"(ratio {r['bg_pause'] / r['save_keras']:.2f}x), durable after {r['bg_total']:.3f} s"
    )
    print(
        f"restore : CheckpointRestart {r['restore_ours']:.3f} s, BackupAndRestore {r['restore_keras']:.3f} s, ratio {r['restore_ours'] / r['restore_keras']:.2f}x"
    )
    print(
        f"epoch   : no callback {r['epoch_base']:.3f} s; CheckpointRestart {r['epoch_ours']:.3f} s "
        f"(+{r['epoch_ours'] - r['epoch_base']:.3f} s, {r['epoch_ours'] / r['epoch_base']:.2f}x); "
        f"with background_save=False {r['epoch_ours_sync']:.3f} s (+{r['epoch_ours_sync'] - r['epoch_base']:.3f} s); "
        f"BackupAndRestore {r['epoch_keras']:.3f} s (+{r['epoch_keras'] - r['epoch_base']:.3f} s, "
        f"{r['epoch_keras'] / r['epoch_base']:.2f}x)"
    )
    return results


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
