"""Training on several machines with ``tf.distribute.MultiWorkerMirroredStrategy``.

:func:`multi_worker_strategy` returns TensorFlow's multi-worker strategy with
Keras 3's ``fit``/``evaluate``/``predict`` made to work under it (the upstream
bug keras-team/keras#20585 is worked around in :mod:`kerafine._keras_compat`;
the fix is applied by this call only, never by importing kerafine).

The local launcher runs a script as several workers on this machine::

    python -m kerafine.distributed --workers 2 train.py --epochs 3

Each worker gets a ``TF_CONFIG`` naming a cluster of free ports on 127.0.0.1;
on a real cluster the scheduler sets ``TF_CONFIG`` and the same script runs
unchanged.
"""

from kerafine.distributed._strategy import cluster_info, is_chief, multi_worker_strategy

__all__ = ["multi_worker_strategy", "is_chief", "cluster_info"]
