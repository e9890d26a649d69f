"""Two real worker processes on 127.0.0.1, started by ``python -m kerafine.distributed``.

The tests launch tests/distributed/_worker.py as a 2-worker cluster (the
"fit" launch once, shared by two tests); the workers write what they saw
(logs, decisions, weights) to files the tests compare. Tiny models and few steps: these tests are about agreement between
workers, not about learning.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(540)]

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_worker.py")


def _env():
    env = dict(
        os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    env.pop("TF_CONFIG", None)
    return env


def _command(*args):
    return [
        sys.executable,
        "-m",
        "kerafine.distributed",
        "--workers",
        "2",
        "--timeout",
        "400",
        "--grace",
        "5",
        str(WORKER),
        *map(str, args),
    ]


def _launch(*args):
    return subprocess.Popen(
        _command(*args), cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(proc, timeout=450):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _results(out_dir):
    return [json.loads((Path(out_dir) / f"worker-{i}.json").read_text()) for i in (0, 1)]


def _weights(out_dir, i):
    with np.load(Path(out_dir) / f"weights-{i}.npz") as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory):
    """One 2-worker launch of _worker.py's "fit" mode, read by the tests below (one start-up cost)."""
    out_dir = tmp_path_factory.mktemp("fit")
    code, out = _finish(_launch("fit", out_dir))
    return out_dir, code, out


def test_plain_fit_with_validation_data_and_kerafine_callbacks_agree_on_every_worker(fit_run):
    tmp_path, code, out = fit_run
    assert code == 0, out[-4000:]
    w0, w1 = _results(tmp_path)
    assert (w0["chief"], w1["chief"]) == (True, False)
    # Plain Keras 3 fit(dataset, validation_data=...): same losses on both workers, all finite.
    assert w0["plain_history"] == w1["plain_history"]
    assert set(w0["plain_history"]) == {"loss", "val_loss"}
    assert all(np.isfinite(v) for vs in w0["plain_history"].values() for v in vs)
    assert w0["plain_history"]["loss"][1] < w0["plain_history"]["loss"][0]
    # evaluate() after the fit gives the last epoch's val_loss; predict() returns every row in order.
    for w in (w0, w1):
        assert w["evaluate"] == pytest.approx(w["plain_history"]["val_loss"][-1], rel=1e-6)
        assert w["predict_rows"] == 90 and w["predict_max_diff"] < 1e-5
        assert w["reload_matches"]
    # AUCTracker: the exact AUC of the whole validation set (all 90 rows), the same on both workers.
    assert w0["epochs"] == w1["epochs"]
    assert w0["epochs"][-1]["val_auc"] == w0["sklearn_auc_final"] == w1["sklearn_auc_final"]
    # EarlyStopping(min_delta=0.5, patience=1) on that AUC: both workers stop after epoch 2.
    assert w0["stopped_epoch"] == w1["stopped_epoch"] == 1
    assert len(w0["epochs"]) == len(w1["epochs"]) == 2
    # TensorBoard: one set of events, written by the chief only.
    events = sorted((tmp_path / "tb" / "kerafine").glob("events.out.tfevents.*"))
    assert len(events) == 1, events
    # Divergence rollback (lr 1e5 makes the loss inf in epoch 1): both workers roll back once,
    # to the same checkpoint, lower the learning rate alike and end with the same weights.
    assert w0["rollbacks"] == w1["rollbacks"] == 1
    assert w0["rollback_lr"] == w1["rollback_lr"] == pytest.approx(0.1)
    assert w0["rollback_epochs"] == w1["rollback_epochs"]
    assert w0["rollback_epochs"][-1]["loss"] < w0["rollback_epochs"][0]["loss"]
    for a, b in zip(*[np.load(tmp_path / f"rollback-{i}.npz").values() for i in (0, 1)]):
        np.testing.assert_array_equal(a, b)
    # DriftMonitor(on="outputs", on_drift="stop") on shifted data: both stop after the first epoch.
    assert w0["drift_epochs"] == w1["drift_epochs"]
    assert [e["drift_detected"] for e in w0["drift_epochs"]] == [1.0]
    # fine_tune under strategy.scope(): both phases train, with and without cached features, alike.
    assert w0["fine_tune"] == w1["fine_tune"]
    assert [w0["fine_tune"][c]["cached"] for c in ("False", "auto")] == [False, True]
    for run in w0["fine_tune"].values():
        assert set(run["head"]) == set(run["finetune"]) == {"loss", "val_loss"}
        assert all(np.isfinite(v) for h in (run["head"], run["finetune"]) for vs in h.values() for v in vs)


def test_checkpoint_restart_sigkill_of_a_worker_fails_the_run_and_relaunch_resumes_to_the_same_weights(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    full.mkdir()
    killed.mkdir()
    pause = killed / "paused.pid"
    # The uninterrupted run and the run to be killed run side by side (separate clusters).
    # save_freq=3 (6 steps an epoch): the newest checkpoint at the kill is inside epoch 3.
    reference = _launch("ckpt", full, full / "ckpt", 3)
    victim = _launch("ckpt", killed, killed / "ckpt", 3, pause)
    deadline = time.monotonic() + 300
    while not (pause.exists() and pause.read_text().strip()) and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.2)
    assert pause.exists(), "worker 1 never reached epoch 3, batch 5"
    os.kill(int(pause.read_text()), signal.SIGKILL)  # worker 1, in the middle of its third epoch
    code, out = _finish(victim)
    assert code == 128 + signal.SIGKILL, out[-4000:]
    assert "worker 1 exited with code -9; stopping the others" in out
    assert not (killed / "worker-0.json").exists()  # worker 0 was stopped, not left to finish
    code, out_ref = _finish(reference)
    assert code == 0, out_ref[-4000:]

    # Relaunch the same command: both workers resume from the same (newest) checkpoint.
    code, out = _finish(_launch("ckpt", killed, killed / "ckpt", 3, pause))
    assert code == 0, out[-4000:]
    r0, r1 = _results(killed)
    f0, f1 = _results(full)
    # The initial checkpoint, then one every 3 steps: the 6th is after step 15 = epoch 3, batch 3.
    assert r0["resumed_from"] == r1["resumed_from"] == "ckpt-00000006"
    meta = json.loads((killed / "ckpt" / "ckpt-00000006" / "MANIFEST.json").read_text())["meta"]
    assert (meta["epoch"], meta["batch"]) == (2, 3)  # a resume inside an epoch
    assert f0["resumed_from"] is None
    # Only the chief wrote checkpoints, in both runs.
    assert r1["writes"] == [] and f1["writes"] == []
    assert len(r0["writes"]) >= 1 and len(f0["writes"]) > len(r0["writes"])
    # The resumed epochs log what the uninterrupted run logged. The resumed epoch's running loss
    # is rebuilt from the checkpointed metric totals and rounds differently in float32 (measured:
    # 1 ulp), hence rel=1e-6 for it; the next epoch's loss is exact. The final weights are bit for
    # bit the same (deterministic CPU kernels, fixed data order, 2-term all-reduce).
    assert r0["epochs"] == r1["epochs"]
    assert len(r0["epochs"]) == 2
    assert r0["epochs"][0]["loss"] == pytest.approx(f0["epochs"][2]["loss"], rel=1e-6)
    assert r0["epochs"][1] == f0["epochs"][3]
    for i in (0, 1):
        for a, b in zip(_weights(killed, i), _weights(full, 0)):
            np.testing.assert_array_equal(a, b)


def test_monitor_stops_and_sharded_drift_profiles_agree_on_every_worker_when_one_worker_goes_wrong(fit_run):
    tmp_path, code, out = fit_run
    assert code == 0, out[-4000:]  # no worker was left waiting in an all-reduce
    w0, w1 = _results(tmp_path)

    # 1. NaN labels on worker 1 only: both workers report the non-finite loss at the same
    # step and stop right there, having run the same steps; evaluate() after it runs on both.
    assert (w0["own_rows_finite"], w1["own_rows_finite"]) == (True, False)
    assert w0["nan_problems"] == w1["nan_problems"]
    # The NaN loss comes first; the NaN gradients it makes then poison the weights, which
    # TrainingMonitor's per-batch finite-weights check reports at the same step (issue 19).
    kinds = [p[0] for p in w0["nan_problems"]]
    assert kinds[0] == "nonfinite_loss" and set(kinds) <= {"nonfinite_loss", "nonfinite_weights"}, kinds
    assert len({tuple(p[1:]) for p in w0["nan_problems"]}) == 1  # all at the one step
    kind, epoch, batch = w0["nan_problems"][0]
    assert w0["nan_steps"] == w1["nan_steps"]
    assert w0["nan_steps"][-1] == [epoch, batch]  # the step of the problem is the last one run
    assert epoch == 0 and len(w0["nan_steps"]) < w0["nan_steps_per_epoch"]  # stopped inside epoch 1 of 2
    assert w0["nan_iterations"] == w1["nan_iterations"] == len(w0["nan_steps"])
    assert w0["nan_evaluate"] == w1["nan_evaluate"]
    # the inputs were finite: no bad input row in any problem's probe
    assert w0["nan_probe_rows"] == w1["nan_probe_rows"] == [0] * len(kinds)

    # 2. Exploding targets on worker 1 only: the same explosion step on both, the stop right
    # there (before the end of the epoch), and identical weights afterwards.
    assert w0["explode_problems"] == w1["explode_problems"]
    assert [p[0] for p in w0["explode_problems"]] == ["loss_exploding"]
    assert w0["explode_steps"] == w1["explode_steps"]
    assert w0["explode_steps"][-1] == w0["explode_problems"][0][1:]
    assert len(w0["explode_steps"]) < w0["explode_steps_per_epoch"]  # stopped inside the epoch
    assert w0["explode_iterations"] == w1["explode_iterations"] == len(w0["explode_steps"])
    for a, b in zip(*[np.load(tmp_path / f"explode-{i}.npz").values() for i in (0, 1)]):
        np.testing.assert_array_equal(a, b)

    # 3. DriftMonitor(reference_is_shard=True): each worker profiled its 300 rows, the merged
    # profile has all 600 rows, and both workers logged the same checks (the fit stopped after
    # epoch 1 on the other monitor's alert, asserted above).
    assert w0["drift_n_rows"] == w1["drift_n_rows"] == [600, 300]
    assert w0["drift_epochs"] == w1["drift_epochs"]
    assert [e["shard_in_drift_detected"] for e in w0["drift_epochs"]] == [1.0]
    assert w0["drift_inputs_report"] == w1["drift_inputs_report"]
    assert w0["drift_outputs_report"] == w1["drift_outputs_report"]
    # Equal to one process checking all 600 rows: the reference is below max_samples, so the
    # merged sample holds every row and the tests see the same values. On the inputs (the same
    # float64 rows) they match closely; on the outputs the forward passes are batched differently
    # (each worker's shard vs all rows at once), which may round an output differently and move
    # one value of the KS ranking: an effect within 1/300 (one row of the current data).
    merged, whole = w0["drift_inputs_report"], w0["whole_inputs_report"]
    assert [f[0] for f in merged] == [f[0] for f in whole] and [f[3] for f in merged] == [f[3] for f in whole]
    for m, w in zip(merged, whole):
        assert m[1] == pytest.approx(w[1], rel=1e-6, abs=1e-12)
        assert m[2] == pytest.approx(w[2], rel=1e-6, abs=1e-9)
    merged, whole = w0["drift_outputs_report"], w0["whole_outputs_report"]
    assert [f[0] for f in merged] == [f[0] for f in whole] and [f[3] for f in merged] == [f[3] for f in whole]
    for m, w in zip(merged, whole):
        assert m[2] == pytest.approx(w[2], abs=1 / 300 + 1e-9)
    assert [f[3] for f in w0["drift_inputs_report"]] == [True, False, False, False]
