"""Deterministic tiny training run for the fault-injection tests (run as a subprocess).

Usage: python _train_script.py CONFIGS_JSON

CONFIGS_JSON is a list of configs, run one after the other in this process
(each run reseeds everything); config keys:
  directory    checkpoint directory (None: no CheckpointRestart, the reference run)
  out          where to write the final weights and what happened (.npz)
  save_freq    "epoch" or an int
  data         "arrays" (fit on arrays, shuffle=False) or "resumable" (ResumableSequence)
  kill         None, or ["batch", epoch, batch] (SIGKILL inside an epoch, after that
               batch's callbacks), ["epoch_begin", epoch] (between epochs, after the
               previous epoch's checkpoint), or ["write", n] (during the n-th
               checkpoint write of this process: after the variables file is written,
               before the manifest and the rename).
  history      None, or a directory: a CSVLogger(append=True) and a Keras TensorBoard
               callback write there (before CheckpointRestart in the callback list),
               and CheckpointRestart gets it as log_dir.

Not collected by pytest (leading underscore, no test functions).
"""

import json
import os
import signal
import sys


def _die():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main(config):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    import keras

    from kerafine.callbacks import checkpoint_restart as cr
    from kerafine.callbacks.early_stopping import EarlyStopping
    from kerafine.data.resumable import ResumableSequence

    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    w = rng.normal(size=(6, 1))
    y = (x @ w + 0.3 * rng.normal(size=(64, 1))).astype("float32")
    xv = rng.normal(size=(32, 6)).astype("float32")
    yv = (xv @ w + 0.3 * rng.normal(size=(32, 1))).astype("float32")

    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.Adam(0.05), loss="mse")

    kill = config.get("kill")
    epochs_seen = []

    class Killer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if kill and kill[0] == "epoch_begin" and epoch == kill[1]:
                _die()

        def on_epoch_end(self, epoch, logs=None):
            epochs_seen.append(epoch)

        def on_train_batch_end(self, batch, logs=None):
            if kill and kill[0] == "batch" and epochs_seen_current[0] == kill[1] and batch == kill[2]:
                _die()

    epochs_seen_current = [None]

    class EpochTracker(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epochs_seen_current[0] = epoch

    if kill and kill[0] == "write":
        original = cr._write_checkpoint
        writes = [0]

        def dying_write(directory, groups, state, checksums=None):
            original(directory, groups, state, checksums)
            writes[0] += 1
            if writes[0] == kill[1]:
                _die()

        cr._write_checkpoint = dying_write

    stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=0.0)
    train = ResumableSequence(x, y, batch_size=8, seed=3) if config.get("data") == "resumable" else None
    callbacks = [EpochTracker(), stop, reduce]
    history = config.get("history")
    if config.get("directory"):
        callbacks.insert(
            1,
            cr.CheckpointRestart(
                config["directory"], save_freq=config.get("save_freq", "epoch"), keep=2, data=train, log_dir=history
            ),
        )
    if history:
        callbacks[:0] = [
            keras.callbacks.CSVLogger(os.path.join(history, "history.csv"), append=True),
            keras.callbacks.TensorBoard(history),
        ]
    callbacks.append(Killer())

    if train is not None:
        model.fit(train, epochs=30, validation_data=(xv, yv), shuffle=False, verbose=0, callbacks=callbacks)
    else:
        model.fit(
            x, y, batch_size=8, epochs=30, validation_data=(xv, yv), shuffle=False, verbose=0, callbacks=callbacks
        )

    arrays = {f"w{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    arrays.update({f"o{i}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)})
    np.savez(
        config["out"],
        stopped_epoch=np.int64(stop.stopped_epoch),
        best_epoch=np.int64(stop.best_epoch),
        last_epoch=np.int64(epochs_seen[-1] if epochs_seen else -1),
        **arrays,
    )


if __name__ == "__main__":
    for config in json.loads(sys.argv[1]):
        main(config)
