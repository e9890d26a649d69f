"""kerafine._keras_compat: each fix of a Keras internal, and a test that fails when Keras changes it."""

import inspect
import re
import subprocess
import sys

import numpy as np
import pytest

from kerafine import _keras_compat
from kerafine.errors import KerafineError


@pytest.fixture
def fixes():
    """Install the multi-worker fixes for one test, then put Keras's own functions back."""
    was = _keras_compat.multi_worker_fixes_installed()
    _keras_compat.install_multi_worker_fixes()
    yield
    if not was:
        _keras_compat.uninstall_multi_worker_fixes()


def _original(name):
    from keras.src.backend.tensorflow import trainer

    if name in _keras_compat._MW_ORIGINALS:
        return _keras_compat._MW_ORIGINALS[name]
    if name == "_maybe_symbolic_build":
        return trainer.TensorFlowTrainer.__dict__[name]
    return getattr(trainer, name)


# --- multi-worker fit (keras-team/keras#20585) ---
def test_multi_worker_symbolic_build_still_broken_upstream():
    source = inspect.getsource(_original("_maybe_symbolic_build"))
    assert re.search(r"strategy\.reduce\(\s*\"MEAN\",\s*maybe_distributed_data_batch,\s*axis=None", source), (
        "Keras changed keras.src.backend.tensorflow.trainer.TensorFlowTrainer._maybe_symbolic_build: it no longer "
        "reduces the sample batch with strategy.reduce('MEAN', ..., axis=None). If keras-team/keras#20585 is fixed, "
        "drop kerafine's replacement (_mw_maybe_symbolic_build in kerafine/_keras_compat.py); otherwise re-check it."
    )


def test_multi_worker_reduce_per_replica_still_broken_upstream():
    source = inspect.getsource(_original("reduce_per_replica"))
    assert re.search(
        r"_collective_all_reduce_multi_worker\(strategy\):.*?reduction == \"mean\":\s*return strategy\.reduce\(\"MEAN\", v, axis=0\)",
        source,
        flags=re.S,
    ), (
        "Keras changed keras.src.backend.tensorflow.trainer.reduce_per_replica: its multi-worker 'mean' branch no "
        "longer calls strategy.reduce('MEAN', v, axis=0) on every value. If keras-team/keras#20585 is fixed, drop "
        "kerafine's replacement (_mw_reduce_per_replica in kerafine/_keras_compat.py); otherwise re-check it."
    )


def test_multi_worker_internals_have_the_signatures_the_fixes_wrap():
    _keras_compat._mw_check_internals()  # raises KerafineError naming the internal otherwise


def test_a_changed_internal_is_refused_by_name(monkeypatch):
    from keras.src.backend.tensorflow import trainer

    if _keras_compat.multi_worker_fixes_installed():
        pytest.skip("fixes already installed in this process")  # pragma: no cover
    monkeypatch.setattr(trainer, "reduce_per_replica", lambda values, strategy: values)
    with pytest.raises(KerafineError, match=r"keras\.src\.backend\.tensorflow\.trainer\.reduce_per_replica"):
        _keras_compat.install_multi_worker_fixes()
    assert not _keras_compat._MW_ORIGINALS


def test_importing_kerafine_changes_nothing_in_keras():
    code = (
        "import kerafine, kerafine.callbacks, kerafine.distributed, kerafine._keras_compat\n"
        "from kerafine.callbacks import AUCTracker, CheckpointRestart\n"
        "from keras.src.backend.tensorflow import trainer\n"
        "assert trainer.reduce_per_replica.__module__ == 'keras.src.backend.tensorflow.trainer'\n"
        "assert trainer.TensorFlowTrainer._maybe_symbolic_build.__module__ == 'keras.src.backend.tensorflow.trainer'\n"
        "assert not kerafine._keras_compat.multi_worker_fixes_installed()\n"
        "print('unchanged')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "unchanged" in res.stdout, res.stderr[-3000:]


def test_install_is_idempotent_and_uninstall_restores_keras():
    from keras.src.backend.tensorflow import trainer

    was = _keras_compat.multi_worker_fixes_installed()
    original = _original("reduce_per_replica")
    _keras_compat.install_multi_worker_fixes()
    _keras_compat.install_multi_worker_fixes()
    assert _keras_compat.multi_worker_fixes_installed()
    assert trainer.reduce_per_replica is _keras_compat._mw_reduce_per_replica
    if not was:
        _keras_compat.uninstall_multi_worker_fixes()
        assert trainer.reduce_per_replica is original
        assert not _keras_compat.multi_worker_fixes_installed()


def _fit_history(strategy):
    import keras

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(48, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
        model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    h = model.fit(x, y, batch_size=16, epochs=2, validation_data=(x, y), verbose=0, shuffle=False)
    return h.history, model.predict(x, verbose=0)


def test_fixes_change_nothing_outside_multi_worker_collectives():
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])  # a strategy, but a single worker
    assert not _keras_compat.in_multi_worker_mode(strategy)
    was = _keras_compat.multi_worker_fixes_installed()
    if was:
        pytest.skip("fixes already installed in this process")  # pragma: no cover
    before = _fit_history(strategy)
    _keras_compat.install_multi_worker_fixes()
    try:
        after = _fit_history(strategy)
    finally:
        _keras_compat.uninstall_multi_worker_fixes()
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])


def test_reduce_per_replica_replacement_delegates_for_other_strategies(fixes):
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    strategy = tf.distribute.get_strategy()
    values = {"loss": tf.constant(1.5), "pred": tf.constant([[1.0], [2.0]])}
    for reduction in ("auto", "mean", "concat", "first", "sum"):
        got = trainer.reduce_per_replica(values, strategy, reduction)
        want = _original("reduce_per_replica")(values, strategy, reduction)
        for k in values:
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]))
