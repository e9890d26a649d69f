"""multi_worker_strategy's argument checks and cluster_info (no cluster needed)."""

import json

import pytest

from kerafine import _keras_compat
from kerafine.distributed import cluster_info, is_chief, multi_worker_strategy
from kerafine.errors import KerafineError


def _cfg(cluster, task):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}


def test_cluster_info_without_tf_config_is_a_single_chief():
    info = cluster_info({})
    assert (info.task_type, info.task_index, info.num_workers, info.is_chief) == (None, 0, 1, True)


def test_worker_zero_is_chief_unless_the_cluster_names_a_chief():
    workers = {"worker": ["h1:1", "h2:1", "h3:1"]}
    assert [is_chief(_cfg(workers, {"type": "worker", "index": i})) for i in range(3)] == [True, False, False]
    with_chief = {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}
    assert is_chief(_cfg(with_chief, {"type": "chief", "index": 0}))
    assert not is_chief(_cfg(with_chief, {"type": "worker", "index": 0}))
    assert cluster_info(_cfg(with_chief, {"type": "worker", "index": 1})).num_workers == 3


def test_rank_numbers_the_training_tasks_from_the_chief():
    workers = {"worker": ["h1:1", "h2:1", "h3:1"]}
    assert [cluster_info(_cfg(workers, {"type": "worker", "index": i})).rank for i in range(3)] == [0, 1, 2]
    with_chief = {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}
    tasks = [{"type": "chief", "index": 0}, {"type": "worker", "index": 0}, {"type": "worker", "index": 1}]
    assert [cluster_info(_cfg(with_chief, t)).rank for t in tasks] == [0, 1, 2]
    assert cluster_info({}).rank == 0


@pytest.mark.parametrize(
    "raw, match",
    [
        ("{not json", "TF_CONFIG.*not JSON"),
        ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG.*expected a JSON object with a "cluster"'),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "TF_CONFIG.*not in its cluster"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "TF_CONFIG.*not in its cluster"),
    ],
)
def test_malformed_tf_config_is_refused(raw, match):
    with pytest.raises(KerafineError, match=match):
        cluster_info({"TF_CONFIG": raw})


def test_bad_arguments_are_refused_before_keras_is_touched(monkeypatch):
    was = _keras_compat.multi_worker_fixes_installed()
    with pytest.raises(KerafineError, match="`communication`.*received 'tcp'.*'auto', 'ring', 'nccl'"):
        multi_worker_strategy(communication="tcp")
    for bad in (0, -1.0, True, "10"):
        with pytest.raises(KerafineError, match="`timeout_seconds`.*None or a positive number"):
            multi_worker_strategy(timeout_seconds=bad)
    monkeypatch.setenv("TF_CONFIG", "{oops")
    with pytest.raises(KerafineError, match="TF_CONFIG"):
        multi_worker_strategy()
    assert _keras_compat.multi_worker_fixes_installed() == was


def _two_workers(index):
    return json.dumps(
        {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": index}}
    )


def test_a_non_chief_worker_writes_no_tensorboard_events(tmp_path, monkeypatch):
    from kerafine import tensorboard

    for index in (1, 0):
        monkeypatch.setenv("TF_CONFIG", _two_workers(index))
        log_dir = tmp_path / f"w{index}"
        tensorboard.scalar(log_dir, "x", 1.0, step=0)
        tensorboard.flush(log_dir)
    assert not list((tmp_path / "w1").rglob("events.out.tfevents.*"))
    assert len(list((tmp_path / "w0").rglob("events.out.tfevents.*"))) == 1


def test_checkpoints_in_a_cluster_come_from_the_chief_only_and_are_written_before_training_goes_on(
    tmp_path, monkeypatch
):
    import keras
    import numpy as np

    from kerafine.callbacks import CheckpointRestart

    x, y = np.ones((8, 2), "float32"), np.ones((8, 1), "float32")
    seen = {}
    for index in (1, 0):
        monkeypatch.setenv("TF_CONFIG", _two_workers(index))
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        ckpt = CheckpointRestart(tmp_path / f"w{index}")  # background_save=True by default
        model.fit(x, y, epochs=2, verbose=0, callbacks=[ckpt])
        seen[index] = (len(ckpt.checkpoints()), ckpt._synchronous)
    assert seen[1] == (0, True)
    assert seen[0] == (3, True)  # the initial checkpoint and one per epoch, written synchronously
    monkeypatch.delenv("TF_CONFIG")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[ckpt := CheckpointRestart(tmp_path / "alone")])
    assert ckpt._synchronous is False  # one process: background saves as configured


def test_kerafine_distributed_is_a_public_lazy_submodule():
    import kerafine

    assert "distributed" in kerafine.__all__
    assert kerafine.distributed.multi_worker_strategy is multi_worker_strategy
