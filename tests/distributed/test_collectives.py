"""all_gather_bytes outside a cluster (the two-worker exchange is tested in test_multi_worker.py)."""

import tensorflow as tf

from kerafine.distributed._collectives import all_gather_bytes, num_workers_of


def test_outside_a_cluster_every_payload_is_its_own_and_no_collective_runs():
    for strategy in (None, tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["CPU:0"])):
        assert num_workers_of(strategy) == 1
        assert all_gather_bytes(b"profile bytes", strategy) == [b"profile bytes"]
        assert all_gather_bytes(bytearray(b"\x00\x01"), strategy) == [b"\x00\x01"]
