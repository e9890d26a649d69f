"""``multi_worker_strategy``: TensorFlow's MultiWorkerMirroredStrategy, with Keras 3 fixed to run under it."""

from __future__ import annotations

from kerafine._cluster import ClusterInfo, _read_tf_config, cluster_info, is_chief  # noqa: F401 (re-exported)
from kerafine.errors import invalid_argument

_COMMUNICATIONS = ("auto", "ring", "nccl")


def multi_worker_strategy(communication: str = "auto", timeout_seconds: float | None = None):
    """A ``tf.distribute.MultiWorkerMirroredStrategy`` under which Keras 3's ``fit`` works.

    Keras 3 cannot ``fit`` under TensorFlow's multi-worker strategy
    (keras-team/keras#20585). This call applies kerafine's fix for it (see
    :mod:`kerafine._keras_compat`: the fix changes nothing outside
    multi-worker collectives) and creates the strategy. Create it at the start
    of the program, before other TensorFlow work, and build and compile the
    model under ``strategy.scope()``; ``fit`` then shards the data across
    workers, all-reduces the gradients and averages the logged loss and
    metrics across workers, so every worker logs the same values.

    The cluster is read from ``TF_CONFIG`` (set by ``python -m
    kerafine.distributed`` locally, or by your scheduler). Without it the
    strategy trains in this process alone.

    Args:
        communication: the collective implementation, ``"auto"``, ``"ring"``
            (gRPC, works everywhere) or ``"nccl"`` (GPUs). Defaults to ``"auto"``.
        timeout_seconds: give up a collective operation (e.g. waiting for a
            dead worker) after this many seconds, raising an error instead of
            hanging. Defaults to ``None`` (TensorFlow's default: wait).

    Returns:
        The ``tf.distribute.MultiWorkerMirroredStrategy``.

    Raises:
        KerafineError: for a bad argument or a malformed ``TF_CONFIG``, before
            any TensorFlow work; or if this Keras release is one kerafine's fix
            does not recognise.

    Example:

    ```python
    import keras, numpy as np
    from kerafine.distributed import multi_worker_strategy

    strategy = multi_worker_strategy()
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    model.fit(x, (x[:, 0] > 0).astype("float32"), batch_size=16, epochs=1, verbose=0)
    ```
    """
    if communication not in _COMMUNICATIONS:
        raise invalid_argument("communication", communication, f"one of {list(_COMMUNICATIONS)}")
    if timeout_seconds is not None and (
        isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) or not timeout_seconds > 0
    ):
        raise invalid_argument("timeout_seconds", timeout_seconds, "None or a positive number of seconds")
    _read_tf_config()  # a malformed TF_CONFIG fails here, with a clear message
    from kerafine import _keras_compat

    _keras_compat.install_multi_worker_fixes()
    import tensorflow as tf

    impl = {
        "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
        "ring": tf.distribute.experimental.CommunicationImplementation.RING,
        "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
    }[communication]
    options = tf.distribute.experimental.CommunicationOptions(implementation=impl, timeout_seconds=timeout_seconds)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
