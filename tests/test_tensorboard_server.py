"""A real TensorBoard server serves the scalars kerafine writes (loss, val_auc, drift keys)."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_run(log_dir):
    """A tiny fit with Keras's TensorBoard callback and kerafine's AUCTracker and DriftMonitor."""
    import keras

    from kerafine import tensorboard
    from kerafine.callbacks.auc_tracker import AUCTracker
    from kerafine.callbacks.drift_monitor import DriftMonitor

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 3)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=256) > 0).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    callbacks = [
        AUCTracker((x[:128], y[:128]), name="val_auc", log_dir=str(log_dir)),
        DriftMonitor(
            x[128:], x[:128] + np.array([0, 0, 2.0], "float32"), log_dir=str(log_dir), on_drift=lambda report: None
        ),
        keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False),
    ]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, validation_data=(x[:128], y[:128]), epochs=2, verbose=0, callbacks=callbacks)
    tensorboard.close(str(log_dir))


def _get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


@pytest.mark.slow
def test_tensorboard_serves_kerafine_scalar_tags(tmp_path):
    log_dir = tmp_path / "run"
    _write_run(log_dir)
    port = _free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "tensorboard.main"]
    proc = subprocess.Popen(
        cmd + ["--logdir", str(log_dir), "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        tags, deadline = {}, time.monotonic() + 90
        want = {("kerafine", "val_auc"), ("kerafine", "drift/share"), ("train", "epoch_loss")}
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"tensorboard exited: {proc.stderr.read()[-2000:]}"
            try:
                tags = _get(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
            except OSError:
                tags = {}
            served = {(run, tag) for run, ts in tags.items() for tag in ts}
            if want <= served:
                break
            time.sleep(1.0)
        served = {(run, tag) for run, ts in tags.items() for tag in ts}
        assert want <= served, f"served: {sorted(served)}"
        # The values come back too, not only the names.
        points = _get(f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?run=kerafine&tag=val_auc")
        assert [p[1] for p in points] == [0, 1]
        assert all(0.5 < p[2] <= 1.0 for p in points)
        # The Custom Scalars tab opens on kerafine's layout: loss and the AUC band first.
        layout = _get(f"http://127.0.0.1:{port}/data/plugin/custom_scalars/layout")
        titles = [c["title"] for c in layout["category"]]
        assert titles[:2] == ["loss, val_auc", "val_pr_auc, learning rate, drift share"], titles
        band = layout["category"][0]["chart"][1]["margin"]["series"][0]
        assert band == {"value": "val_auc", "lower": "val_auc_lower", "upper": "val_auc_upper"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        if proc.stderr:
            proc.stderr.close()
