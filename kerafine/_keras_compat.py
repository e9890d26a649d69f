"""The one place where kerafine touches Keras/TensorFlow internals.

Every function here says why it needs an internal and which upstream issue it
works around; ``tests/test_keras_compat.py`` fails, naming the internal, when a
Keras release changes it. Importing this module changes nothing in Keras: a fix
is applied only by the kerafine call that needs it.
"""

from __future__ import annotations

import inspect
import threading

# --- multi-worker fit (keras-team/keras#20585) ---
#
# Keras 3's TensorFlow trainer cannot run `fit`/`evaluate` under
# `tf.distribute.MultiWorkerMirroredStrategy` (keras-team/keras#20585,
# tensorflow/tensorflow#72388): two functions of
# `keras.src.backend.tensorflow.trainer` call `strategy.reduce` in ways the
# collective (multi-worker) strategy rejects.
#
# 1. `TensorFlowTrainer._maybe_symbolic_build` takes a sample batch to build the
#    model by reducing the first distributed batch with
#    `strategy.reduce("MEAN", batch, axis=None)` eagerly; the collective
#    strategy raises "Attempt to convert a value (PerReplica...) to a Tensor".
#    The build only needs shapes and dtypes, so the local replica's batch does.
# 2. `reduce_per_replica` reduces every step output with
#    `strategy.reduce("MEAN", v, axis=0)` under multi-worker collectives, also
#    the rank-0 loss and metric values, where axis 0 does not exist ("Invalid
#    reduction dimension 0 for input with 0 dimensions"). Rank-0 values are
#    averaged across replicas with `axis=None` instead.
#
# Both replacements delegate to the original for every other strategy and
# case, so installing them changes nothing outside multi-worker collectives.
# They are installed by `kerafine.distributed.multi_worker_strategy()` only.
# DROP THIS SECTION when Keras fixes keras-team/keras#20585:
# `test_keras_compat.py::test_multi_worker_*_still_broken` fails then.

_MW_LOCK = threading.Lock()
_MW_ORIGINALS: dict = {}


def _mw_trainer_module():
    from keras.src.backend.tensorflow import trainer

    return trainer


def _mw_collective(strategy) -> bool:
    """True under a MultiWorkerMirroredStrategy that really spans several workers."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    # Private: the public API has no "is this strategy multi-worker" query;
    # Keras's own trainer asks the same (`_collective_all_reduce_multi_worker`).
    return bool(strategy.extended._in_multi_worker_mode())


def _mw_local_value(strategy, value):
    import tensorflow as tf

    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _mw_maybe_symbolic_build(self, iterator=None, data_batch=None):
    original = _MW_ORIGINALS["_maybe_symbolic_build"]
    strategy = self._distribute_strategy
    if strategy is None or iterator is None or not _mw_collective(strategy):
        return original(self, iterator=iterator, data_batch=data_batch)
    from keras import tree

    for _, _, it in iterator:
        # Shapes and dtypes are all the build needs: this worker's first replica's batch.
        data_batch = tree.map_structure(lambda v: _mw_local_value(strategy, v), next(it))
        break
    # With `iterator=None` the original only builds from `data_batch` under the strategy's scope.
    return original(self, iterator=None, data_batch=data_batch)


def _mw_reduce_per_replica(values, strategy, reduction):
    original = _MW_ORIGINALS["reduce_per_replica"]
    if reduction not in ("auto", "mean") or not _mw_collective(strategy):
        return original(values, strategy, reduction)
    from keras import tree

    def reduce_one(v):
        rank = _mw_local_value(strategy, v).shape.rank
        if rank == 0:
            return strategy.reduce("MEAN", v, axis=None)
        return original(v, strategy, reduction)

    return tree.map_structure(reduce_one, values)


def _mw_check_internals() -> None:
    """Raise a clear error if the Keras internals the fixes replace have moved."""
    from kerafine.errors import KerafineError

    try:
        trainer = _mw_trainer_module()
        cls = trainer.TensorFlowTrainer
        names = {
            "keras.src.backend.tensorflow.trainer.TensorFlowTrainer._maybe_symbolic_build": (
                _MW_ORIGINALS.get("_maybe_symbolic_build", cls.__dict__.get("_maybe_symbolic_build")),
                ["self", "iterator", "data_batch"],
            ),
            "keras.src.backend.tensorflow.trainer.reduce_per_replica": (
                _MW_ORIGINALS.get("reduce_per_replica", getattr(trainer, "reduce_per_replica", None)),
                ["values", "strategy", "reduction"],
            ),
        }
    except (ImportError, AttributeError) as exc:  # pragma: no cover - depends on the Keras release
        raise KerafineError(
            f"kerafine's multi-worker fix cannot find Keras's TensorFlow trainer ({exc}); this Keras release "
            "is not supported by kerafine.distributed (see keras-team/keras#20585)."
        ) from exc
    for name, (fn, params) in names.items():
        if fn is None or list(inspect.signature(fn).parameters) != params:
            raise KerafineError(
                f"kerafine's multi-worker fix (keras-team/keras#20585) does not recognise `{name}` in this "
                f"Keras release (expected a function with parameters {params}); upgrade kerafine or check "
                "whether Keras fixed the issue."
            )
    if not hasattr(cls, "_symbolic_build"):  # pragma: no cover - depends on the Keras release
        raise KerafineError(
            "kerafine's multi-worker fix (keras-team/keras#20585) needs "
            "`keras.src.trainers.trainer.Trainer._symbolic_build`, which this Keras release lacks."
        )


def install_multi_worker_fixes() -> None:
    """Make Keras 3's TensorFlow ``fit``/``evaluate``/``predict`` work under
    ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585). Idempotent.

    Called by :func:`kerafine.distributed.multi_worker_strategy`; importing
    kerafine does not call it.
    """
    with _MW_LOCK:
        if _MW_ORIGINALS:
            return
        _mw_check_internals()
        trainer = _mw_trainer_module()
        _MW_ORIGINALS["_maybe_symbolic_build"] = trainer.TensorFlowTrainer.__dict__["_maybe_symbolic_build"]
        _MW_ORIGINALS["reduce_per_replica"] = trainer.reduce_per_replica
        trainer.TensorFlowTrainer._maybe_symbolic_build = _mw_maybe_symbolic_build
        # `_make_function` looks the module-level name up at call time.
        trainer.reduce_per_replica = _mw_reduce_per_replica


def multi_worker_fixes_installed() -> bool:
    """True once :func:`install_multi_worker_fixes` has patched this process's Keras."""
    trainer = _mw_trainer_module()
    return (
        trainer.reduce_per_replica is _mw_reduce_per_replica
        and trainer.TensorFlowTrainer.__dict__.get("_maybe_symbolic_build") is _mw_maybe_symbolic_build
    )


def uninstall_multi_worker_fixes() -> None:
    """Put Keras's own functions back (for tests)."""
    with _MW_LOCK:
        if not _MW_ORIGINALS:
            return
        trainer = _mw_trainer_module()
        trainer.TensorFlowTrainer._maybe_symbolic_build = _MW_ORIGINALS.pop("_maybe_symbolic_build")
        trainer.reduce_per_replica = _MW_ORIGINALS.pop("reduce_per_replica")


def in_multi_worker_mode(strategy) -> bool:
    """True when ``strategy`` is a MultiWorkerMirroredStrategy spanning several workers."""
    return _mw_collective(strategy)
