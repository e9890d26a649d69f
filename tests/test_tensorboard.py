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
