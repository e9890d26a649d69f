"""Each Keras internal used by callbacks/, finetune.py and lr_finder.py (kerafine/_keras_compat.py, callbacks section), checked against the installed Keras.

A failure here names the internal that a Keras release changed; fix the one
function in _keras_compat.py that uses it.
"""

import keras
import numpy as np

from kerafine import _keras_compat as kc


def _model():
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(3), keras.layers.Dropout(0.5, seed=1), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(0.1), "mse", metrics=["mae"])
    return model


def _fit_with(callback, model=None, **kwargs):
    model = model or _model()
    model.fit(
        np.ones((8, 2), "float32"), np.ones((8, 1), "float32"), batch_size=4, verbose=0, callbacks=[callback], **kwargs
    )
    return model


class _Probe(keras.callbacks.Callback):
    def __init__(self, fn):
        super().__init__()
        self.fn, self.result = fn, None

    def on_train_begin(self, logs=None):
        self.result = self.fn(self)


def test_running_callback_list_finds_the_CallbackList_through_its_callbacks_attribute():
    probe = _Probe(kc.running_callback_list)
    _fit_with(probe)
    assert isinstance(probe.result, keras.callbacks.CallbackList), (
        "keras.callbacks.CallbackList no longer holds its callbacks in the list attribute `callbacks`"
    )
    assert any(cb is probe for cb in probe.result.callbacks)
    assert kc.running_callback_list(keras.callbacks.Callback()) is None  # outside any fit


def test_wrap_callback_list_replaces_instance_methods_and_undo_restores_them():
    seen = []

    def wrap(cb):
        cbl = kc.running_callback_list(cb)
        return kc.wrap_callback_list(
            cbl, on_epoch_end=lambda orig: lambda epoch, logs=None: (seen.append(epoch), orig(epoch, logs))
        )

    probe = _Probe(wrap)
    _fit_with(probe, epochs=2)
    assert seen == [0, 1], "CallbackList.on_epoch_end is no longer looked up on the instance (fit calls it otherwise)"


def test_initial_epoch_private_attribute_is_what_fit_starts_from():
    def start_at_two(cb):
        assert kc.get_initial_epoch(cb.model) is None, (
            "Model._initial_epoch is gone (Keras's BackupAndRestore writes it too)"
        )
        kc.set_initial_epoch(cb.model, 2)

    epochs = []
    probe = _Probe(start_at_two)
    rec = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs.append(e))
    model = _model()
    model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=4, verbose=0, callbacks=[probe, rec])
    assert epochs == [2, 3], "fit no longer reads Model._initial_epoch after on_train_begin"
    kc.set_initial_epoch(model, None)


def test_replace_train_function_is_what_fit_calls():
    calls = []

    def install(cb):
        return kc.replace_train_function(cb.model, lambda original: lambda it: (calls.append(1), original(it))[1])

    probe = _Probe(install)
    _fit_with(probe)
    assert len(calls) == 2, "fit no longer steps through model.train_function"
    probe.result()  # undo
    assert probe.model.train_function is not None


def test_symbolic_build_creates_the_metric_variables():
    model = _model()
    assert len(model.metrics_variables) < 4
    kc.symbolic_build(model, (np.ones((4, 2), "float32"), np.ones((4, 1), "float32")))
    assert len(model.metrics_variables) >= 4, "Model._symbolic_build no longer builds the compiled metrics"


def test_flatten_layers_and_nodes_by_depth():
    inner = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="inner_dense")], name="inner")
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inner(inputs)))
    names = [l.name for l in kc.flatten_layers(model, include_self=False)]
    assert "inner_dense" in names, "Layer._flatten_layers no longer walks nested models"
    ops = [n.operation for nodes in kc.nodes_by_depth(model).values() for n in nodes]
    assert inner in ops, "Functional._nodes_by_depth no longer lists the nodes of the graph"


def test_layer_own_variables_split_weights_and_statistics():
    bn = keras.layers.BatchNormalization()
    bn.build((None, 3))
    trainable, non_trainable = kc.layer_own_variables(bn)
    assert len(trainable) == 2 and len(non_trainable) == 2, (
        "Layer._trainable_variables/_non_trainable_variables changed"
    )


def test_learning_rate_schedule_and_samples_seen():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    assert kc.learning_rate_schedule(keras.optimizers.SGD(schedule)) is schedule, "Optimizer._learning_rate changed"
    assert kc.learning_rate_schedule(keras.optimizers.SGD(0.1)) is None
    model = _fit_with(keras.callbacks.Callback())
    assert kc.samples_seen(model) == 8.0, "Model._loss_tracker.count no longer counts the samples of the epoch"


def test_metric_direction_reads_keras_compiled_metrics():
    model = _model()
    model.compile("sgd", "mse", metrics=[keras.metrics.AUC(name="auc")])
    _fit_with(keras.callbacks.Callback(), model=model)
    assert kc.metric_direction(model, "auc") == "max", "compile_utils.CompileMetrics or Metric._direction changed"


def test_print_msg_and_is_default_hook(capsys):
    kc.print_msg("hello from kerafine")
    assert "hello from kerafine" in capsys.readouterr().out, "keras.src.utils.io_utils.print_msg changed"
    assert kc.is_default_hook(keras.callbacks.Callback().on_train_batch_end)
    assert not kc.is_default_hook(keras.callbacks.LambdaCallback(on_train_batch_end=print).on_train_batch_end)


def test_global_seed_state_round_trips():
    keras.random.uniform((1,))  # creates Keras's global SeedGenerator
    before = kc.global_seed_state()
    assert before is not None, "keras.src.backend.common.global_state no longer holds 'global_seed_generator'"
    a = keras.random.uniform((3,)).numpy()
    kc.set_global_seed_state(before)
    b = keras.random.uniform((3,)).numpy()
    np.testing.assert_array_equal(a, b)


def test_keras_early_stopping_resets_in_on_train_begin_and_after_next_on_train_begin_reapplies():
    es = keras.callbacks.EarlyStopping(monitor="loss", patience=5)
    es.wait = 3
    kc.after_next_on_train_begin(es, lambda: setattr(es, "wait", 3))
    es.on_train_begin()
    assert es.wait == 3
    es.on_train_begin()  # one shot
    assert es.wait == 0, "keras.callbacks.EarlyStopping no longer resets `wait` in on_train_begin"


def test_tensorboard_callback_dirs_are_where_keras_writes_its_events(tmp_path):
    import os

    tb = keras.callbacks.TensorBoard(str(tmp_path / "logs"))
    model = _model()
    x, y = np.ones((8, 2), "float32"), np.ones((8, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=1, validation_data=(x, y), verbose=0, callbacks=[tb])
    assert hasattr(tb, "_train_dir") and hasattr(tb, "_val_dir"), (
        "keras.callbacks.TensorBoard no longer keeps its event directories in `_train_dir`/`_val_dir`"
    )
    dirs = kc.tensorboard_callback_dirs(tb)
    assert dirs == [str(tmp_path / "logs" / "train"), str(tmp_path / "logs" / "validation")]
    for d in dirs:
        assert any("tfevents" in name for name in os.listdir(d)), d


def test_reopen_csv_logger_makes_an_open_CSVLogger_write_to_the_replaced_file(tmp_path):
    import os

    path = tmp_path / "h.csv"
    path.write_text("epoch,loss\n0,1.0\n1,0.5\n")
    csv_logger = keras.callbacks.CSVLogger(str(path), append=True)
    seen = {}

    def replace_then_reopen(_):
        assert getattr(csv_logger, "csv_file", None) is not None, (
            "keras.callbacks.CSVLogger no longer keeps its open file in `csv_file`"
        )
        tmp = tmp_path / "h.tmp"
        tmp.write_text("epoch,loss\n0,1.0\n")
        os.replace(tmp, path)
        seen["reopened"] = kc.reopen_csv_logger(csv_logger)

    model = _model()
    model.fit(
        np.ones((8, 2), "float32"),
        np.ones((8, 1), "float32"),
        batch_size=4,
        epochs=2,
        initial_epoch=1,
        verbose=0,
        callbacks=[csv_logger, _Probe(replace_then_reopen)],
    )
    assert seen["reopened"] is True
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,loss" and [line.split(",")[0] for line in lines[1:]] == ["0", "1"], lines
    assert kc.reopen_csv_logger(csv_logger) is False  # closed at the end of fit
