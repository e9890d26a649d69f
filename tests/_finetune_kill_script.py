"""fine_tune with cached features and CheckpointRestart, optionally SIGKILLed in the head phase (subprocess).

Usage: python _finetune_kill_script.py CONFIG_JSON

CONFIG_JSON keys:
  directory   CheckpointRestart directory
  out         .npz written at the end: final weights, backbone predict calls, result flags
  kill_epoch  None, or the head-phase epoch at whose start the process SIGKILLs itself
              (after the previous epoch's checkpoint: inside the cached head phase)

Not collected by pytest (leading underscore, no test functions).
"""

import json
import os
import signal
import sys


def main(config):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    import keras

    import kerafine
    from kerafine.callbacks.checkpoint_restart import CheckpointRestart

    keras.utils.set_random_seed(11)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 5)).astype("float32")
    y = (x[:, 0] - x[:, 1] > 0).astype("float32")
    xv = rng.normal(size=(32, 5)).astype("float32")
    yv = (xv[:, 0] - xv[:, 1] > 0).astype("float32")

    inputs = keras.Input((5,))
    encoder = keras.Model(inputs, keras.layers.Dense(6, activation="tanh", name="enc")(inputs), name="encoder")
    head = keras.Sequential(
        [
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dropout(0.2, seed=3),
            keras.layers.Dense(1, activation="sigmoid", name="predictions"),
        ],
        name="head",
    )
    model = kerafine.build_transfer_model(encoder, head)

    calls = [0]
    original_predict = encoder.predict

    def counting_predict(*args, **kwargs):
        calls[0] += 1
        return original_predict(*args, **kwargs)

    encoder.predict = counting_predict  # the backbone's feature pass, counted

    head_resumed = []

    class Killer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            # After CheckpointRestart's (it is first in the list): did this phase resume?
            head_resumed.append(ckpt.resumed_from is not None)

        def on_epoch_begin(self, epoch, logs=None):
            if config.get("kill_epoch") is not None and epoch == config["kill_epoch"]:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    ckpt = CheckpointRestart(config["directory"], background_save=False, keep=2)
    result = kerafine.fine_tune(
        model,
        (x, y),
        validation_data=(xv, yv),
        head_epochs=5,
        finetune_epochs=2,
        head_lr=0.05,
        finetune_lr=0.01,
        unfreeze_top="all",
        batch_size=16,
        cache_features=True,
        shuffle=False,
        verbose=0,
        callbacks=[ckpt, Killer()],
    )
    arrays = {f"w{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    np.savez(
        config["out"],
        backbone_predict_calls=np.int64(calls[0]),
        features_cached=result.features_cached,
        features_loaded=result.features_loaded,
        head_epochs_run=np.int64(len(result.head_history.epoch)),
        head_resumed=np.bool_(head_resumed[0]),
        **arrays,
    )


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
