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
