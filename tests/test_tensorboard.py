import os

import numpy as np

from kerafine import tensorboard as tb


def test_scalars_text_images_histograms_and_pr_curves_are_readable_by_tensorboards_reader(tmp_path):
    import matplotlib.pyplot as plt

    log_dir = tmp_path / "run"
    tb.scalars(log_dir, {"val_auc": 0.8, "drift_share": 0.1}, step=0)
    tb.scalar(log_dir, "val_auc", 0.9, step=1)
    tb.text(log_dir, "alerts", "feature cpu drifted", step=1)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    tb.figure(log_dir, "roc_curve", fig, step=1)
    tb.histogram(log_dir, "weights", np.r_[np.random.default_rng(0).normal(size=50), np.nan], step=1)
    y = np.r_[np.zeros(50), np.ones(50)]
    tb.pr_curve(log_dir, "pr", y, np.linspace(-3, 3, 100), step=1)  # logits are accepted
    tb.flush(log_dir)

    scalars = tb.read_scalars(log_dir)
    assert [s for s, _ in scalars["val_auc"]] == [0, 1]
    np.testing.assert_allclose([v for _, v in scalars["val_auc"]], [0.8, 0.9], rtol=1e-6)
    tags = tb.read_tags(log_dir)
    assert tags["text"] == {"alerts"} and tags["images"] == {"roc_curve"}
    assert tags["histograms"] == {"weights"} and "pr_curves" in tags
    # events sit in their own folder beside Keras's train/ and validation/
    assert (log_dir / tb.SUBDIR).is_dir()


def test_close_then_write_again_reopens_a_writer(tmp_path):
    tb.scalar(tmp_path, "a", 1.0, step=0)
    tb.close(tmp_path)
    tb.scalar(tmp_path, "a", 2.0, step=1)
    assert [v for _, v in tb.read_scalars(tmp_path)["a"]] == [1.0, 2.0]


def test_single_process_is_chief():
    assert tb.is_chief()


def _shown_steps(event_dir, tag):
    # The loader the TensorBoard server uses; it honours SessionLog.START purges.
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(event_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]


def test_purge_after_drops_the_interrupted_runs_points_at_and_after_its_step(tmp_path):
    import os
    import subprocess
    import sys

    log_dir = tmp_path / "logs"
    # The interrupted run: another process (a resume always is), epochs 0-3.
    script = (
        "import sys; from kerafine import tensorboard as tb\n"
        "[tb.scalar(sys.argv[1], 'loss', float(e), step=e) for e in range(4)]; tb.close()\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", script, str(log_dir)], check=True, env=env, timeout=300)
    written = tb.purge_after(log_dir / tb.SUBDIR, 2)
    assert written is not None and "tfevents" in os.path.basename(written)
    for epoch in range(2, 5):  # the resumed run writes epochs 2.. again
        tb.scalar(log_dir, "loss", 10.0 + epoch, step=epoch)
    tb.close(log_dir)
    assert _shown_steps(log_dir / tb.SUBDIR, "loss") == [(0, 0.0), (1, 1.0), (2, 12.0), (3, 13.0), (4, 14.0)]
    # The raw files still hold both runs' points at steps 2 and 3: the marker does it.
    assert len(tb.read_scalars(log_dir)["loss"]) == 7


def test_purge_after_writes_nothing_where_nothing_was_logged(tmp_path):
    assert tb.purge_after(tmp_path / "absent", 3) is None
    assert not (tmp_path / "absent").exists()


def _fit_with_every_writer(log_dir, ckpt_dir, epochs=3):
    """A tiny fit with Keras's TensorBoard and every kerafine writer, as the CLI wires them."""
    import warnings

    import keras

    from kerafine.callbacks.auc_tracker import AUCTracker
    from kerafine.callbacks.checkpoint_restart import CheckpointRestart
    from kerafine.callbacks.drift_monitor import DriftMonitor
    from kerafine.callbacks.training_monitor import TrainingMonitor

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 3)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=128) > 0).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    callbacks = [
        AUCTracker((x[:64], y[:64]), log_dir=str(log_dir)),
        DriftMonitor(x[64:], x[:64] + np.array([0, 0, 2.0], "float32"), log_dir=str(log_dir), on_drift=lambda r: None),
        TrainingMonitor(log_dir=str(log_dir), every_n_batches=2, on_problem=lambda p: None),
        keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False, profile_batch=0),
        CheckpointRestart(str(ckpt_dir), log_dir=str(log_dir)),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, validation_data=(x[:64], y[:64]), batch_size=32, epochs=epochs, verbose=0, callbacks=callbacks)
    tb.close(str(log_dir))


def _chart_tags(chart):
    if chart.HasField("margin"):
        return [(s.value, s.lower, s.upper) for s in chart.margin.series]
    return list(chart.multiline.tag)


def test_layout_opens_on_loss_auc_band_pr_auc_learning_rate_drift_and_ends_on_checkpoints(tmp_path):
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.plugins.custom_scalar import metadata

    log_dir = tmp_path / "logs"
    _fit_with_every_writer(log_dir, tmp_path / "ckpt")
    layout = tb.read_layout(log_dir)
    first = layout.category[0]
    # Two overview categories (TensorBoard draws margin charts after line charts in one).
    assert [c.title for c in layout.category[:2]] == ["loss, val_auc", "val_pr_auc, learning rate, drift share"]
    assert [_chart_tags(c) for c in [*layout.category[0].chart, *layout.category[1].chart]] == [
        ["^epoch_loss$"],
        [("val_auc", "val_auc_lower", "val_auc_upper")],
        ["^val_pr_auc$"],
        ["^epoch/learning_rate$"],
        ["^drift/share$"],
    ]
    # Every tag those charts name is written by the run, where TensorBoard looks for it.
    kerafine_scalars = tb.read_scalars(log_dir)
    assert {"val_auc", "val_auc_lower", "val_auc_upper", "val_pr_auc", "epoch/learning_rate", "drift/share"} <= set(
        kerafine_scalars
    )
    for run in ("train", "validation"):
        assert [s for s, _ in tb.read_scalars(log_dir, subdir=run)["epoch_loss"]] == [0, 1, 2]
    titles = [c.title for c in layout.category]
    assert titles[2] == "Training health (per epoch)"
    assert [_chart_tags(c) for c in layout.category[2].chart][:3] == [
        ["^epoch/step_seconds$"],
        ["^epoch/samples_per_second$"],
        ["^epoch/update_ratio$"],
    ]
    assert titles[-2:] == ["Per batch (step = optimizer iteration)", "Checkpoints (step = optimizer iteration)"]
    assert layout.category[-1].closed and not first.closed
    checkpoint_tags = {t for c in layout.category[-1].chart for t in _chart_tags(c)}
    batch_scalars = tb.read_scalars(log_dir, subdir=tb.BATCH_SUBDIR)
    assert checkpoint_tags == {"^batch/checkpoint/save_seconds$", "^batch/checkpoint/epoch$"}
    assert {"batch/checkpoint/save_seconds", "batch/checkpoint/epoch"} <= set(batch_scalars)
    # Only charts of written tags: no chart for a tag nobody wrote.
    written = set(kerafine_scalars) | {"epoch_loss"}
    for category in layout.category:
        for chart in category.chart:
            for tag in _chart_tags(chart):
                if isinstance(tag, tuple):
                    assert set(tag) <= written
                elif tag.endswith("$"):
                    assert tag[1:-1].replace("\\.", ".") in written, tag
    # Written once per run: one layout event in the kerafine run.
    layouts = [
        v
        for name in sorted(os.listdir(log_dir / tb.SUBDIR))
        if "tfevents" in name
        for event in event_file_loader.EventFileLoader(str(log_dir / tb.SUBDIR / name)).Load()
        for v in event.summary.value
        if v.tag == metadata.CONFIG_SUMMARY_TAG
    ]
    assert len(layouts) == 1


def test_layout_has_only_the_charts_of_written_tags():
    layout = tb.layout_for({"drift/share", "drift/largest_effect"})
    assert [c.title for c in layout.category] == ["drift share", "drift"]
    assert [_chart_tags(c) for c in layout.category[0].chart] == [["^drift/share$"]]
    assert [_chart_tags(c) for c in layout.category[1].chart] == [["^drift/largest_effect$"]]
    # Without the interval the AUC is a plain line; Keras's loss needs Keras's writer.
    layout = tb.layout_for({"val_auc"}, keras_loss=False)
    assert [_chart_tags(c) for c in layout.category[0].chart] == [["^val_auc$"]]
    assert list(tb.layout_for(set()).category) == []


def test_purge_is_per_directory_at_each_directorys_step(tmp_path):
    import subprocess
    import sys

    log_dir = tmp_path / "logs"
    # The interrupted run: epochs 0-3 per epoch, 4 optimizer iterations an epoch per batch.
    script = (
        "import sys; from kerafine import tensorboard as tb\n"
        "[tb.scalar(sys.argv[1], 'loss', float(e), step=e) for e in range(4)]\n"
        "[tb.batch_scalars(sys.argv[1], {'monitor/lr': float(i)}, step=i) for i in range(1, 17)]; tb.close()\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", script, str(log_dir)], check=True, env=env, timeout=300)
    # Resume at epoch 2 = after optimizer iteration 8 (what CheckpointRestart asks).
    tb.purge_after(log_dir / tb.SUBDIR, 2)
    tb.purge_after(log_dir / tb.BATCH_SUBDIR, 8 + 1)
    for epoch in range(2, 4):
        tb.scalar(log_dir, "loss", 10.0 + epoch, step=epoch)
    for i in range(9, 17):
        tb.batch_scalars(log_dir, {"monitor/lr": 100.0 + i}, step=i)
    tb.close(log_dir)
    assert _shown_steps(log_dir / tb.SUBDIR, "loss") == [(0, 0.0), (1, 1.0), (2, 12.0), (3, 13.0)]
    lr = _shown_steps(log_dir / tb.BATCH_SUBDIR, "batch/monitor/lr")
    # Iterations 1-8 of epochs 0 and 1 survive (a purge at the epoch, 2, would have dropped 2-8).
    assert lr == [(i, float(i)) for i in range(1, 9)] + [(i, 100.0 + i) for i in range(9, 17)]
