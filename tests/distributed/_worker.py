"""The script every worker runs in tests/distributed/test_multi_worker.py (via the launcher).

Usage: _worker.py fit OUT_DIR
       _worker.py ckpt OUT_DIR CKPT_DIR SAVE_FREQ [PAUSE_FILE]

Each worker writes OUT_DIR/worker-<index>.json (and .npz weights); the test compares them.
"""

import json
import os
import sys
import time
import warnings

import numpy as np


def main():
    from kerafine.distributed import cluster_info, multi_worker_strategy

    strategy = multi_worker_strategy()  # first TensorFlow work of the program

    import keras
    import tensorflow as tf

    mode, out = sys.argv[1], sys.argv[2]
    info = cluster_info()
    result = {"index": info.task_index, "chief": info.is_chief}

    class Record(keras.callbacks.Callback):
        """Keeps every epoch's logs as the last callback sees them."""

        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append({k: float(v) for k, v in (logs or {}).items()})

    def data(n, seed):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, 4)).astype("float32")
        y = (x[:, 0] + 0.8 * x[:, 1] + rng.normal(size=n) > 0).astype("float32")
        return x, y

    def new_model(lr=0.05):
        keras.utils.set_random_seed(7)
        with strategy.scope():
            model = keras.Sequential(
                [
                    keras.Input((4,)),
                    keras.layers.Dense(8, activation="tanh"),
                    keras.layers.Dense(1, activation="sigmoid"),
                ]
            )
            model.compile(keras.optimizers.SGD(lr, momentum=0.9), "binary_crossentropy")
        return model

    x, y = data(192, 0)
    xv, yv = data(90, 1)  # 90 rows: batches of 32, 32, 26 do not split evenly across workers
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(32)

    if mode == "fit":
        from kerafine.callbacks import AUCTracker, EarlyStopping

        # 1. Plain Keras: fit with validation_data, evaluate, predict, save.
        model = new_model()
        history = model.fit(train, validation_data=val, epochs=2, verbose=0)
        result["plain_history"] = {k: [float(v) for v in vs] for k, vs in history.history.items()}
        result["evaluate"] = float(model.evaluate(val, verbose=0))
        pred = model.predict(xv, batch_size=32, verbose=0)
        # Batched and whole-array forward passes may round differently: compare closely, in order.
        result["predict_max_diff"] = float(np.max(np.abs(pred - model(xv, training=False).numpy())))
        result["predict_rows"] = int(pred.shape[0])
        path = os.path.join(out, f"model-{info.task_index}.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        result["reload_matches"] = bool(np.array_equal(reloaded(xv).numpy(), model(xv, training=False).numpy()))

        # 2. kerafine callbacks: whole-set AUC, early stopping on it, TensorBoard from the chief.
        model = new_model()
        record = Record()
        auc = AUCTracker((xv, yv), batch_size=32, log_dir=os.path.join(out, "tb"))
        stop = EarlyStopping(monitor="val_auc", mode="max", patience=1, min_delta=0.5)
        model.fit(train, validation_data=val, epochs=6, verbose=0, callbacks=[auc, stop, record])
        result["epochs"] = record.epochs
        result["stopped_epoch"] = int(stop.stopped_epoch)
        from sklearn.metrics import roc_auc_score

        result["sklearn_auc_final"] = float(roc_auc_score(yv, model(xv, training=False).numpy()[:, 0]))

        # 3. Divergence rollback: a learning rate far too large for linear regression makes the
        # loss explode; every worker must roll back at the same step to the same checkpoint.
        from kerafine.callbacks import CheckpointRestart

        keras.utils.set_random_seed(7)
        target = tf.data.Dataset.from_tensor_slices((x, x @ np.array([1.0, -2.0, 0.5, 0.0], "float32"))).batch(32)
        with strategy.scope():
            reg = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            reg.compile(keras.optimizers.SGD(1e5), "mse")
        rb = CheckpointRestart(os.path.join(out, "rollback"), lr_factor=1e-6, max_rollbacks=2)
        record = Record()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            reg.fit(target, epochs=4, verbose=0, callbacks=[rb, record])
        result["rollbacks"] = int(rb.rollbacks)
        result["rollback_epochs"] = record.epochs
        result["rollback_lr"] = float(reg.optimizer.learning_rate.numpy())
        np.savez(os.path.join(out, f"rollback-{info.task_index}.npz"), *[v.numpy() for v in reg.weights])

        # 4. kerafine.fine_tune called under the strategy's scope, with and without cached features.
        import kerafine

        result["fine_tune"] = {}
        for cache in (False, "auto"):
            keras.utils.set_random_seed(1)
            with strategy.scope():
                backbone = keras.Sequential(
                    [keras.Input((4,)), keras.layers.Dense(8, activation="relu")], name="backbone"
                )
                ft_model = kerafine.build_transfer_model(backbone, kerafine.heads.classification(2))
                res = kerafine.fine_tune(
                    ft_model,
                    (x, y),
                    validation_data=(xv, yv),
                    head_epochs=1,
                    finetune_epochs=1,
                    cache_features=cache,
                    batch_size=32,
                    verbose=0,
                )
            result["fine_tune"][str(cache)] = {
                "cached": bool(res.features_cached),
                "head": res.head_history.history,
                "finetune": res.finetune_history.history,
            }

        # 5. DriftMonitor, stopping the fit on drift: every worker must stop at the same epoch.
        # (a) on the model's outputs (distributed predict of the whole reference and of shifted
        # data); (b, c) with a sharded reference: each worker passes every other row of one
        # 600-row reference, on the inputs and on the outputs; the current data, the same on
        # both workers, shifts feature 0 a little.
        from kerafine.callbacks import DriftMonitor
        from kerafine.drift import DriftDetector

        model = new_model()
        shifted = xv + np.array([3.0, 3.0, 0.0, 0.0], "float32")
        drift = DriftMonitor(reference=(x, y), current_data=(shifted, yv), on="outputs", on_drift="stop")
        ref_x, ref_y = data(600, 5)
        shard = slice(info.rank, None, info.num_workers)
        cur_x, cur_y = data(300, 6)
        cur_x = cur_x + np.array([0.6, 0.0, 0.0, 0.0], "float32")
        on_inputs = DriftMonitor((ref_x[shard], ref_y[shard]), (cur_x, cur_y), name="shard_in", reference_is_shard=True)
        on_outputs = DriftMonitor(ref_x[shard], cur_x, on="outputs", name="shard_out", reference_is_shard=True)
        record = Record()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(train, epochs=3, verbose=0, callbacks=[drift, on_inputs, on_outputs, record])
        result["drift_epochs"] = record.epochs
        result["drift_n_rows"] = [on_inputs._detector.profile.n_rows, on_inputs._shard_detector.profile.n_rows]

        def features(report):
            return [[f.name, f.p_value, f.effect, bool(f.drifted)] for f in report.features]

        result["drift_inputs_report"] = features(on_inputs.last_report)
        result["drift_outputs_report"] = features(on_outputs.last_report)
        # The same checks by one process on all 600 rows, with the final weights.
        result["whole_inputs_report"] = features(DriftDetector(ref_x).check(cur_x))
        whole_out = DriftDetector(model(ref_x, training=False).numpy(), feature_names=["out0"]).check(
            model(cur_x, training=False).numpy()
        )
        result["whole_outputs_report"] = features(whole_out)

        # 6. TrainingMonitor(on_problem="stop") when one worker's data goes wrong.
        from kerafine.callbacks import TrainingMonitor

        def own(x_, y_, batch):
            """This worker's own rows, not sharded by the strategy (each worker reads what it is given)."""
            ds = tf.data.Dataset.from_tensor_slices((x_, y_)).batch(batch)
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
            return ds.with_options(options)

        class Steps(keras.callbacks.Callback):
            """(epoch, batch) of every training step this worker ran."""

            def __init__(self):
                super().__init__()
                self.steps = []

            def on_train_begin(self, logs=None):
                self.per_epoch = self.params.get("steps")

            def on_epoch_begin(self, epoch, logs=None):
                self._epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                self.steps.append([self._epoch, batch])

        def problems(monitor):
            return [[p.kind, p.epoch, p.batch] for p in monitor.problems]

        # With auto-sharding OFF each worker reads its own dataset, 16 rows (its half of the
        # global batch of 32) a step, for as many steps as the dataset has batches of 32: an
        # epoch reads its first half, rows 16 * step .. 16 * step + 15 at each step.
        # 6a. Non-finite loss on worker 1 only: its labels from row 96 on (step 6) are NaN, so its
        # cross-entropy is NaN (worker 0's rows are all finite). The loss Keras logs is the mean
        # over workers, so it is NaN on both, and TrainingMonitor(on_problem="stop") must stop
        # both at the same step.
        xa, ya = data(384, 3)
        if info.task_index == 1:
            ya = ya.copy()
            ya[96:] = np.nan
        result["own_rows_finite"] = bool(np.isfinite(xa).all() and np.isfinite(ya).all())
        model = new_model(lr=0.01)
        steps = Steps()
        monitor = TrainingMonitor(on_problem="stop", probe_data=xa)  # the probe runs on each worker alone
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(own(xa, ya, 32), epochs=2, verbose=0, callbacks=[monitor, steps])
        result["nan_problems"] = problems(monitor)
        result["nan_probe_rows"] = [p.values.get("nonfinite_input_rows") for p in monitor.problems]
        result["nan_steps"] = steps.steps
        result["nan_steps_per_epoch"] = steps.per_epoch
        result["nan_iterations"] = int(model.optimizer.iterations.numpy())
        # After the stop every worker still meets the others in a collective (no hang).
        result["nan_evaluate"] = repr(float(model.evaluate(val, verbose=0)))

        # 6b. Exploding loss on worker 1 only: its regression targets from row 160 on (step 10 of
        # 16) are 1000x larger. The mean loss explodes, and both workers must stop at the same step.
        xr = np.random.default_rng(4).normal(size=(512, 4)).astype("float32")
        yr = xr @ np.array([1.0, -2.0, 0.5, 0.0], "float32")
        if info.task_index == 1:
            yr = yr.copy()
            yr[160:] *= 1000.0
        keras.utils.set_random_seed(7)
        with strategy.scope():
            reg = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            reg.compile(keras.optimizers.SGD(1e-3), "mse")
        steps = Steps()
        monitor = TrainingMonitor(on_problem="stop", loss_smoothing=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reg.fit(own(xr, yr, 32), epochs=1, verbose=0, callbacks=[monitor, steps])
        result["explode_problems"] = problems(monitor)
        result["explode_steps"] = steps.steps
        result["explode_steps_per_epoch"] = steps.per_epoch
        result["explode_iterations"] = int(reg.optimizer.iterations.numpy())
        np.savez(os.path.join(out, f"explode-{info.task_index}.npz"), *[v.numpy() for v in reg.weights])

    elif mode == "ckpt":
        from kerafine import _io
        from kerafine.callbacks import CheckpointRestart

        ckpt_dir = sys.argv[3]
        save_freq = "epoch" if sys.argv[4] == "epoch" else int(sys.argv[4])
        pause_file = sys.argv[5] if len(sys.argv) > 5 else None
        writes = []
        original_atomic_directory = _io.atomic_directory

        def counting_atomic_directory(*args, **kwargs):  # a spy: counts, then does the real write
            writes.append(str(args[0]))
            return original_atomic_directory(*args, **kwargs)

        _io.atomic_directory = counting_atomic_directory

        class PauseOnce(keras.callbacks.Callback):
            """Worker 1, epoch 3, batch 5 of the first run: announce itself and wait to be killed."""

            def on_train_batch_end(self, batch, logs=None):
                if (
                    pause_file
                    and info.task_index == 1
                    and self._epoch == 2
                    and batch == 4
                    and not os.path.exists(pause_file)
                ):
                    with open(pause_file, "w") as f:
                        f.write(str(os.getpid()))
                    print("PAUSED", flush=True)
                    time.sleep(300)

            def on_epoch_begin(self, epoch, logs=None):
                self._epoch = epoch

        model = new_model()
        ckpt = CheckpointRestart(ckpt_dir, keep=10, save_freq=save_freq)
        record = Record()
        model.fit(train, epochs=4, verbose=0, callbacks=[ckpt, PauseOnce(), record])
        result["resumed_from"] = None if ckpt.resumed_from is None else os.path.basename(str(ckpt.resumed_from))
        result["epochs"] = record.epochs
        result["writes"] = writes
        np.savez(os.path.join(out, f"weights-{info.task_index}.npz"), *[v.numpy() for v in model.weights])

    with open(os.path.join(out, f"worker-{info.task_index}.json"), "w") as f:
        json.dump(result, f)
    print("DONE", time.time(), flush=True)


if __name__ == "__main__":  # a script: pytest's doctest collection must not run it
    main()
