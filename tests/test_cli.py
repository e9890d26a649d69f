"""Tests of the `kerafine` command line (kerafine.cli)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from kerafine.cli import main
from kerafine.config import load_config


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "fit", "init-config", "evaluate", "drift"):
        assert command in out


@pytest.mark.parametrize(
    "command, phrase",
    [
        ("demo", "Ctrl-C"),
        ("fit", "report.json"),
        ("init-config", "commented example"),
        ("evaluate", "MODEL.kerafine.json"),
        ("drift", "Exit status"),
    ],
)
def test_each_command_explains_itself(capsys, command, phrase):
    assert main([command, "--help"]) == 0
    assert phrase in " ".join(capsys.readouterr().out.split())


def test_python_dash_m_kerafine_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "kerafine", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "kerafine demo" in proc.stdout


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_init_config_writes_a_valid_example_and_keeps_existing_files(tmp_path, capsys):
    path = tmp_path / "kerafine.yaml"
    assert main(["init-config", str(path)]) == 0
    cfg = load_config(path)
    assert cfg.backbone.name == "lstm" and "# " in path.read_text()
    assert main(["init-config", str(path)]) == 2
    assert "Pass --force" in capsys.readouterr().err
    assert main(["init-config", str(path), "--force"]) == 0


def test_fit_with_a_bad_config_names_the_field_and_exits_2(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    assert main(["init-config", str(path)]) == 0
    path.write_text(path.read_text().replace("name: lstm", "name: resnet9000"))
    assert main(["fit", str(path)]) == 2
    err = capsys.readouterr().err
    assert "field `backbone.name`" in err and "resnet9000" in err


def test_fit_with_a_missing_config_file_exits_2(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_evaluate_rejects_data_with_other_columns_than_training(tmp_path, capsys):
    model = tmp_path / "model.keras"
    model.write_bytes(b"not read: the columns are checked first")
    (tmp_path / "model.kerafine.json").write_text(
        json.dumps({"kind": "tabular", "label": "clicked", "numeric": ["price", "age"], "categorical": ["country"]})
    )
    data = tmp_path / "new.csv"
    pd.DataFrame({"price": [1.0], "country": ["fr"], "clicked": [1]}).to_csv(data, index=False)
    assert main(["evaluate", str(model), str(data)]) == 2
    err = capsys.readouterr().err
    assert "other columns than the model was trained on (missing ['age'])" in err


def test_evaluate_needs_the_spec_written_by_fit(tmp_path, capsys):
    model = tmp_path / "m.keras"
    model.write_bytes(b"x")
    assert main(["evaluate", str(model), str(tmp_path / "d.csv")]) == 2
    assert "m.kerafine.json" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing.keras"), "d.csv"]) == 2
    assert "argument `MODEL`" in capsys.readouterr().err


def test_drift_command_exits_1_on_shifted_data_and_0_on_same_distribution(tmp_path, capsys):
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"cpu": rng.normal(50, 5, 2000), "memory": rng.normal(40, 3, 2000)})
    same = pd.DataFrame({"cpu": rng.normal(50, 5, 1000), "memory": rng.normal(40, 3, 1000)})
    shifted = same.assign(cpu=same["cpu"] + 10)
    for name, df in (("ref", ref), ("same", same), ("shifted", shifted)):
        df.to_csv(tmp_path / f"{name}.csv", index=False)
    assert main(["drift", str(tmp_path / "ref.csv"), str(tmp_path / "same.csv")]) == 0
    report = tmp_path / "drift.json"
    assert main(["drift", str(tmp_path / "ref.csv"), str(tmp_path / "shifted.csv"), "--json", str(report)]) == 1
    assert "cpu" in capsys.readouterr().out
    assert report.is_file()


def _read_until(proc, needle, timeout):
    """Lines of the child's stdout up to the first containing `needle`."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not printed within {timeout}s; got:\n{''.join(lines)}")


@pytest.mark.slow
def test_demo_interrupted_with_ctrl_c_resumes_and_fine_tuned_beats_scratch(tmp_path, capsys):
    out = tmp_path / "demo"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kerafine", "demo", "--out", str(out), "--quick", "--quiet-fit"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _read_until(proc, "finetuned: head", timeout=600)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    assert "again to resume" in err
    assert (out / "models" / "encoder.keras").is_file()
    assert not (out / "results.json").exists()

    # The same command again: completed stages are skipped, the rest runs to the end.
    assert main(["demo", "--out", str(out), "--quick", "--quiet-fit"]) == 0
    printed = capsys.readouterr().out
    assert "Resuming the demo" in printed and "Pretrained encoder found" in printed
    assert f"tensorboard --logdir {out / 'logs'}" in printed
    results = json.loads((out / "results.json").read_text())["results"]
    fine, scratch = results["fine-tuned"], results["from scratch"]
    assert fine["test"]["roc_auc"] > scratch["test"]["roc_auc"]
    for r in (fine, scratch):
        assert 0.5 < r["val"]["roc_auc"] <= 1 and 0 < r["test"]["pr_auc"] <= 1
    assert "fine-tuned" in printed and "from scratch" in printed and "test ROC-AUC" in printed
    from kerafine import tensorboard

    assert "val_auc" in tensorboard.read_scalars(out / "logs" / "finetuned")
    assert (out / "models" / "finetuned.kerafine.json").is_file()


def test_demo_refuses_an_output_dir_of_other_settings_naming_each_change(tmp_path, capsys, monkeypatch):
    import kerafine.data.demo

    def stop(*args, **kwargs):
        raise RuntimeError("stopped after the run directory was set up")

    monkeypatch.setattr(kerafine.data.demo, "generate_fleet", stop)
    out = tmp_path / "demo"
    with pytest.raises(RuntimeError, match="stopped"):
        main(["demo", "--out", str(out), "--seed", "1"])
    assert main(["demo", "--out", str(out), "--quick"]) == 2
    err = capsys.readouterr().err
    assert "size: full -> quick" in err and "seed: 1 -> 0" in err
    assert f"kerafine demo --quick --out {out} --fresh" in err and "another --out" in err
    assert "Traceback" not in err
    # --fresh starts over with the new settings (it gets as far as generating the data).
    with pytest.raises(RuntimeError, match="stopped"):
        main(["demo", "--out", str(out), "--quick", "--fresh"])


def test_ctrl_c_hint_of_a_fresh_run_is_the_command_that_resumes(monkeypatch, tmp_path, capsys):
    from kerafine.cli import fit as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_fit", interrupted)
    assert main(["fit", "my.yaml", "--fresh", "--quiet-fit"]) == 130
    err = capsys.readouterr().err
    assert "Run `kerafine fit my.yaml --quiet-fit` again to resume" in err and "--fresh" not in err


TINY_CONFIG = """
data:
  kind: server_metrics
  cpu: fleet/cpu.csv
  memory: fleet/memory.csv
  diskio: fleet/diskio.csv
  uptime: fleet/uptime.csv
  failures: fleet/failures.csv
  freq: 1min
  horizon: 30
  window: 16
  stride: 4
  split: {by: server, val: 0.25, test: 0.25, seed: 0}
backbone: {name: lstm, units: [8], pretrain_epochs: 1}
head: {hidden: [], dropout: 0.0}
schedule:
  head_epochs: 2
  finetune_epochs: 1
  batch_size: 64
  learning_rate: search
  lr_search: {candidates: [0.001, 0.01], epochs: 1}
callbacks: {early_stopping: {enabled: true, patience: 2}}
output_dir: run
"""


@pytest.mark.slow
def test_fit_on_a_small_config_writes_every_artifact_and_evaluate_reads_them(tmp_path, capsys):
    from kerafine import tensorboard
    from kerafine.data.demo import generate_fleet

    generate_fleet(tmp_path / "fleet", "B", n_servers=8, n_steps=720, seed=3)
    cfg = tmp_path / "fit.yaml"
    cfg.write_text(TINY_CONFIG)
    assert main(["fit", str(cfg), "--quiet-fit"]) == 0
    printed = capsys.readouterr().out
    run = tmp_path / "run"
    for name in ("model.keras", "model.kerafine.json", "report.json", "report.png", "encoder.keras", "lr_search.json"):
        assert (run / name).is_file(), name
    assert (run / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((run / "checkpoints" / "train").glob("ckpt-*"))
    report = json.loads((run / "report.json").read_text())
    assert [r["learning_rate"] for r in report["lr_search"]] == [0.001, 0.01]
    assert report["learning_rate"] in (0.001, 0.01)
    assert 0.0 <= report["test"]["roc_auc"] <= 1.0 and report["config"]["backbone"]["name"] == "lstm"
    assert {"AUCTracker", "CheckpointRestart", "EarlyStopping", "DriftMonitor"} <= set(report["callbacks"])
    # One TensorBoard run: the fine-tuning epoch continues the head phase's two.
    scalars = tensorboard.read_scalars(run / "logs" / "train")
    assert [step for step, _ in scalars["val_auc"]] == [0, 1, 2]
    assert "drift/share" in scalars  # drift: true compares validation inputs with training inputs
    assert [step for step, _ in tensorboard.read_scalars(run / "logs" / "train", subdir="train")["epoch_loss"]] == [
        0,
        1,
        2,
    ]
    assert report["history"]["head"]["epoch"] == [0, 1] and report["history"]["finetune"]["epoch"] == [2]
    assert len(report["history"]["head"]["loss"]) == 2 and len(report["history"]["finetune"]["loss"]) == 1
    assert f"tensorboard --logdir {run / 'logs'}" in printed

    out_json = tmp_path / "eval.json"
    assert main(["evaluate", str(run / "model.keras"), str(tmp_path / "fleet"), "--json", str(out_json)]) == 0
    evaluated = json.loads(out_json.read_text())
    assert evaluated["n_samples"] > 0 and 0.0 <= evaluated["roc_auc"] <= 1.0
    assert "ROC-AUC" in capsys.readouterr().out or "roc" in out_json.read_text()


@pytest.mark.slow
def test_fit_a_tabular_csv_then_evaluate_it(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 400
    price, country = rng.gamma(2, 10, n), rng.choice(["fr", "de", "us"], n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.1 * (price - 20) + np.where(country == "us", 1.5, -0.5))))).astype(int)
    pd.DataFrame({"price": price, "country": country, "clicked": y}).to_csv(tmp_path / "clicks.csv", index=False)
    (tmp_path / "fit.yaml").write_text(
        "data: {kind: tabular, csv: clicks.csv, label: clicked}\n"
        "backbone: {name: tabular, units: [8]}\n"
        "head: {hidden: []}\n"
        "schedule: {head_epochs: 2, finetune_epochs: 2, learning_rate: 0.01}\n"
        "callbacks: {drift: false}\n"
        "output_dir: run\n"
    )
    assert main(["fit", str(tmp_path / "fit.yaml"), "--quiet-fit"]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["data"]["train"]["rows"] == 240 and report["lr_search"] == []
    assert report["test"]["roc_auc"] > 0.6  # price and country carry real signal
    spec = json.loads((tmp_path / "run" / "model.kerafine.json").read_text())
    assert spec == {"kind": "tabular", "label": "clicked", "numeric": ["price"], "categorical": ["country"]}
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run" / "model.keras"), str(tmp_path / "clicks.csv")]) == 0
    assert "ROC-AUC" in capsys.readouterr().out
    # The report is of the saved (restored-best) model, never of a cached pass of other weights.
    from sklearn.metrics import roc_auc_score

    from kerafine.cli import _common as cli_module
    from kerafine.cli.fit import _fit_data
    from kerafine.config import load_config

    data = _fit_data(load_config(tmp_path / "fit.yaml", check_output_dir=False), cli_module._Console(quiet=True))
    model = cli_module._load_model(tmp_path / "run" / "model.keras")
    x_val, y_val = data["val"][0], data["val"][1]
    expected = roc_auc_score(y_val, cli_module._predict(model, x_val))
    assert report["val"]["roc_auc"] == pytest.approx(expected, abs=1e-6)


def test_drift_accepts_the_reference_and_current_flags_and_refuses_ambiguous_or_missing_paths(tmp_path, capsys):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    pd.DataFrame({"cpu": rng.normal(50, 5, 3000)}).to_csv(tmp_path / "ref.csv", index=False)
    pd.DataFrame({"cpu": rng.normal(58, 5, 1000)}).to_csv(tmp_path / "cur.csv", index=False)
    ref, cur = str(tmp_path / "ref.csv"), str(tmp_path / "cur.csv")
    assert main(["drift", "--reference", ref, "--current", cur]) == 1
    assert "cpu" in capsys.readouterr().out
    assert main(["drift", "--reference", ref, cur]) == 1  # flags and positionals mix
    assert main(["drift", "--reference", ref, "--current", cur, ref]) == 2
    assert "argument `--current`" in capsys.readouterr().err
    assert main(["drift", "--reference", ref]) == 2
    assert "Missing argument `--current`" in capsys.readouterr().err


def test_ctrl_c_while_tensorflow_traces_still_exits_130_with_the_resume_hint(monkeypatch, tmp_path, capsys):
    import signal as _signal

    from kerafine.cli import fit as cli

    def traced_when_interrupted(args):
        try:
            os.kill(os.getpid(), _signal.SIGINT)  # what Ctrl-C sends
            time.sleep(5)
        except KeyboardInterrupt:
            # TensorFlow's graph context managers replace the KeyboardInterrupt on their way out.
            raise AssertionError("Nesting violated for default stack of FuncGraph objects") from None

    monkeypatch.setattr(cli, "_init_config", traced_when_interrupted)
    assert main(["init-config", str(tmp_path / "x.yaml")]) == 130
    assert "again to resume" in capsys.readouterr().err
    assert _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler  # handler restored


def test_a_real_error_without_ctrl_c_is_not_reported_as_an_interrupt(monkeypatch, tmp_path):
    from kerafine.cli import fit as cli

    def broken(args):
        raise AssertionError("a genuine bug")

    monkeypatch.setattr(cli, "_init_config", broken)
    with pytest.raises(AssertionError, match="genuine bug"):
        main(["init-config", str(tmp_path / "x.yaml")])


def _clicks(tmp_path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    price, country = rng.gamma(2, 10, n), rng.choice(["fr", "de", "us"], n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.1 * (price - 20) + np.where(country == "us", 1.5, -0.5))))).astype(int)
    frame = pd.DataFrame({"price": price, "age": rng.integers(18, 80, n), "country": country, "clicked": y})
    frame.to_csv(tmp_path / "clicks.csv", index=False)
    return frame


TABULAR_CONFIG = """
data: {kind: tabular, csv: clicks.csv, label: clicked}
backbone: {name: tabular, units: [8, 8]}
head: {hidden: []}
schedule: {head_epochs: 2, finetune_epochs: 1, head_learning_rate_placeholder: 0, learning_rate: 0.001, unfreeze: 1}
output_dir: run
""".replace(" head_learning_rate_placeholder: 0,", "")


@pytest.mark.slow
def test_rerunning_fit_with_an_edited_config_exits_2_naming_each_changed_field(tmp_path, capsys):
    _clicks(tmp_path)
    cfg = tmp_path / "fit.yaml"
    cfg.write_text(TABULAR_CONFIG)
    assert main(["fit", str(cfg), "--quiet-fit"]) == 0
    run = tmp_path / "run"
    report = json.loads((run / "report.json").read_text())
    # unfreeze: 1 leaves exactly the top weighted backbone layer trainable in phase 2.
    from kerafine.saving import load_model
    from kerafine.transfer import backbone_of

    weighted = [layer.name for layer in backbone_of(load_model(run / "model.keras")).layers if layer.weights]
    assert len(weighted) >= 3 and report["trainable_backbone_layers"] == weighted[-1:]
    # drift: true (the default) attaches a DriftMonitor to tabular data too, on the input columns.
    from kerafine import tensorboard

    assert "DriftMonitor" in report["callbacks"]
    assert any(tag.startswith("drift/effect/price") for tag in tensorboard.read_scalars(run / "logs" / "train"))
    capsys.readouterr()

    # The same config again: nothing retrained, the finished run is reported.
    mtime = (run / "model.keras").stat().st_mtime_ns
    assert main(["fit", str(cfg), "--quiet-fit"]) == 0
    assert "finished run of this config" in capsys.readouterr().out
    assert (run / "model.keras").stat().st_mtime_ns == mtime

    for edit, field in [
        ("learning_rate: 0.001", "schedule.learning_rate: 0.001 -> 0.0003"),
        ("head_epochs: 2", "schedule.head_epochs: 2 -> 4"),
        ("units: [8, 8]", "backbone.units: [8, 8] -> [16, 8]"),
    ]:
        new = edit.replace("0.001", "0.0003").replace(": 2", ": 4").replace("[8, 8]", "[16, 8]")
        cfg.write_text(TABULAR_CONFIG.replace(edit, new))
        assert main(["fit", str(cfg), "--quiet-fit"]) == 2, edit
        err = capsys.readouterr().err
        assert field in err, err
        assert f"kerafine fit {cfg} --fresh" in err and "another output_dir" in err
        assert "Traceback" not in err and "ValueError" not in err
        assert (run / "model.keras").stat().st_mtime_ns == mtime  # stopped before any work
    # Only a monitor changed: the run is the same one.
    cfg.write_text(TABULAR_CONFIG + "callbacks: {drift: false}\n")
    assert main(["fit", str(cfg), "--quiet-fit"]) == 0
    # --fresh trains again with the edited config.
    cfg.write_text(TABULAR_CONFIG.replace("head_epochs: 2", "head_epochs: 3").replace("unfreeze: 1", "unfreeze: 2"))
    assert main(["fit", str(cfg), "--quiet-fit", "--fresh"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["history"]["head"]["epoch"] == [0, 1, 2] and report["history"]["finetune"]["epoch"] == [3]
    assert report["trainable_backbone_layers"] == weighted[-2:]


def test_fit_refuses_a_numeric_column_with_a_text_cell_naming_column_row_and_value(tmp_path, capsys):
    frame = _clicks(tmp_path, n=120)
    frame["price"] = frame["price"].astype(object)
    frame.loc[37, "price"] = "n/a?"
    frame.to_csv(tmp_path / "clicks.csv", index=False)
    (tmp_path / "fit.yaml").write_text(TABULAR_CONFIG)
    assert main(["fit", str(tmp_path / "fit.yaml")]) == 2
    err = capsys.readouterr().err
    assert "price" in err and "n/a?" in err and "37" in err
    assert not (tmp_path / "run" / "model.keras").exists()


def test_fit_refuses_a_training_split_with_a_single_class_naming_the_counts(tmp_path, capsys):
    frame = _clicks(tmp_path, n=120)
    # One positive row in all: the label column has two classes, but at most one split can hold the positive.
    frame.assign(clicked=(np.arange(len(frame)) == 7).astype(int)).to_csv(tmp_path / "clicks.csv", index=False)
    (tmp_path / "fit.yaml").write_text(TABULAR_CONFIG)
    assert main(["fit", str(tmp_path / "fit.yaml")]) == 2
    err = capsys.readouterr().err
    assert re.search(r"The (training|validation|test) split holds a single class \(0: \d+; \d+ rows\)", err), err
    assert not (tmp_path / "run" / "model.keras").exists()


def test_check_label_classes_raises_or_warns_naming_split_and_counts():
    from kerafine.data import check_label_classes
    from kerafine.errors import DataError

    assert check_label_classes(np.array([0, 1, 1]), "training") == {0: 1, 1: 2}
    with pytest.raises(DataError, match=r"training split holds a single class \(0: 5; 5 rows\)"):
        check_label_classes(np.zeros(5), "training")
    with pytest.warns(UserWarning, match=r"validation split holds a single class \(1: 3"):
        check_label_classes(np.ones((3, 1), dtype=int), "validation", error=False)
    assert check_label_classes(np.eye(2)[[0, 1, 1]], "training") == {0: 1, 1: 2}  # one-hot


# --------------------------------------------------------------------------- one effect test per config key


@pytest.mark.slow
def test_fit_config_keys_each_change_the_run(tmp_path, capsys, monkeypatch):
    """head.dropout, finetune_learning_rate, lr_search.epochs and callbacks checkpoint/auc/monitor: false."""
    from kerafine import tensorboard
    from kerafine.cli import fit as fit_module
    from kerafine.saving import load_model

    calls = []
    real_train = fit_module._train

    def recording_train(*args, **kwargs):  # the real training, with its arguments noted
        calls.append(dict(kwargs))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(fit_module, "_train", recording_train)
    _clicks(tmp_path, n=200)
    (tmp_path / "fit.yaml").write_text(
        "data: {kind: tabular, csv: clicks.csv, label: clicked}\n"
        "backbone: {name: tabular, units: [8]}\n"
        "head: {hidden: [], dropout: 0.375}\n"
        "schedule: {head_epochs: 2, finetune_epochs: 1, learning_rate: search, finetune_learning_rate: 0.00625,\n"
        "           lr_search: {candidates: [0.002], epochs: 3}}\n"
        "callbacks: {checkpoint: false, auc: false, monitor: false, drift: false,\n"
        "            early_stopping: {enabled: true, patience: 5}}\n"
        "output_dir: run\n"
    )
    assert main(["fit", str(tmp_path / "fit.yaml"), "--quiet-fit"]) == 0, capsys.readouterr().err
    run = tmp_path / "run"
    report = json.loads((run / "report.json").read_text())
    # lr_search.epochs: each candidate is trained for that many head epochs, without callbacks.
    search_calls = [c for c in calls if c["callbacks"] == []]
    assert [c["head_epochs"] for c in search_calls] == [3] and [c["head_lr"] for c in search_calls] == [0.002]
    # finetune_learning_rate: the saved model's optimizer is the phase-2 one, at that rate (not 0.002 / 10).
    model = load_model(run / "model.keras")
    assert float(keras_value(model.optimizer.learning_rate)) == pytest.approx(0.00625)
    # head.dropout: the head holds a Dropout layer of that rate.
    rates = [layer.get_config()["rate"] for layer in _all_layers(model) if layer.__class__.__name__ == "Dropout"]
    assert rates == [0.375]
    # checkpoint: false: no checkpoints at all, and the run still finishes (issue 19's crash).
    assert not (run / "checkpoints").exists() and "CheckpointRestart" not in report["callbacks"]
    assert "checkpoints" not in report["artifacts"]
    # auc: false: no AUCTracker, no val_auc in the history; early stopping watches val_loss instead.
    assert "AUCTracker" not in report["callbacks"] and "EarlyStopping" in report["callbacks"]
    for phase in report["history"].values():
        assert "val_auc" not in phase and "val_loss" in phase
    scalars = tensorboard.read_scalars(run / "logs" / "train")
    assert "val_auc" not in scalars
    # monitor: false: no TrainingMonitor and none of its batch/monitor/* or epoch/* scalars.
    assert "TrainingMonitor" not in report["callbacks"]
    assert not any(tag.startswith(("batch/monitor/", "epoch/")) for tag in scalars), sorted(scalars)


def keras_value(variable):
    import numpy as np

    return np.asarray(variable)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _sequence_config(tmp_path, backbone: str, name: str = "fit.yaml"):
    """TINY_CONFIG (server metrics, window 16) with another backbone line; the CSVs are not read."""
    text = TINY_CONFIG.replace("backbone: {name: lstm, units: [8], pretrain_epochs: 1}", f"backbone: {backbone}")
    assert text != TINY_CONFIG
    (tmp_path / name).write_text(text)
    return load_config(tmp_path / name)


def _weights_equal(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(wa, wb))


def test_backbone_weights_is_the_encoder_fit_starts_from(tmp_path):
    import keras

    from kerafine.backbones import sequence_encoder
    from kerafine.cli._common import _Console
    from kerafine.cli.fit import _fit_backbone

    keras.utils.set_random_seed(5)
    given = sequence_encoder((16, 4), kind="lstm", units=(8,))
    given.set_weights([w + 0.25 for w in given.get_weights()])  # unlike any fresh initialisation
    given.save(tmp_path / "enc.keras")
    cfg = _sequence_config(tmp_path, "{name: lstm, units: [8], weights: enc.keras, pretrain_epochs: 1}")
    data = {"shape": (16, 4), "pretrain_x": np.zeros((8, 16, 4), "float32")}
    make = _fit_backbone(cfg, data, tmp_path / "run", _Console(quiet=True), verbose=0)
    assert _weights_equal(make(), given)
    assert not (tmp_path / "run" / "logs" / "pretrain").exists()  # loaded, not pretrained
    # An encoder of other windows is refused naming the key.
    cfg = _sequence_config(tmp_path, "{name: lstm, units: [8], weights: enc.keras}", "other.yaml")
    with pytest.raises(Exception, match=r"backbone.weights.*\(16, 4\)"):
        _fit_backbone(cfg, {"shape": (32, 4)}, tmp_path / "run2", _Console(quiet=True), verbose=0)


def test_backbone_pretrain_epochs_trains_the_encoder_that_many_epochs(tmp_path):
    import keras

    from kerafine import tensorboard
    from kerafine.cli._common import _Console, _sequence_encoder
    from kerafine.cli.fit import _fit_backbone

    windows = np.random.default_rng(0).normal(size=(64, 16, 4)).astype("float32")
    data = {"shape": (16, 4), "pretrain_x": windows}
    keras.utils.set_random_seed(0)
    fresh = _sequence_encoder(16, 4, "lstm", (8,))
    encoders = {}
    for epochs in (0, 2):
        cfg = _sequence_config(tmp_path, f"{{name: lstm, units: [8], pretrain_epochs: {epochs}}}", f"e{epochs}.yaml")
        (tmp_path / f"run{epochs}").mkdir()  # a real run makes its output_dir before this step
        keras.utils.set_random_seed(0)
        encoders[epochs] = _fit_backbone(cfg, data, tmp_path / f"run{epochs}", _Console(quiet=True), verbose=0)()
    assert _weights_equal(encoders[0], fresh)  # 0: the initialisation, untouched
    assert not _weights_equal(encoders[2], fresh)
    losses = tensorboard.read_scalars(tmp_path / "run2" / "logs" / "pretrain", subdir="train")["epoch_loss"]
    assert [step for step, _ in losses] == [0, 1]
    assert not (tmp_path / "run0" / "logs" / "pretrain").exists()


def test_fit_refuses_backbone_weights_for_tabular_data_naming_the_key(tmp_path, capsys):
    _clicks(tmp_path, n=60)
    (tmp_path / "fit.yaml").write_text(TABULAR_CONFIG.replace("units: [8, 8]}", "units: [8, 8], weights: enc.keras}"))
    assert main(["fit", str(tmp_path / "fit.yaml")]) == 2
    err = capsys.readouterr().err
    assert "field `backbone.weights`" in err and "enc.keras" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "run.json").exists()  # stopped before any work


# --------------------------------------------------------------------------- schedule.class_weight (issue 19)

_CLASS_WEIGHT_CONFIG = (
    "data: {kind: tabular, csv: clicks.csv, label: clicked}\n"
    "backbone: {name: tabular, units: [4]}\n"
    "head: {hidden: []}\n"
    "schedule: {head_epochs: 1, finetune_epochs: 1, learning_rate: search, lr_search: {candidates: [0.01]},\n"
    "           class_weight: CW}\n"
    "callbacks: {checkpoint: false, auc: false, monitor: false, drift: false, early_stopping: {enabled: false}}\n"
    "output_dir: run\n"
)


def _recording_train(monkeypatch):
    from kerafine.cli import fit as fit_module

    calls = []
    real_train = fit_module._train

    def recording_train(*args, **kwargs):  # the real training, with its arguments noted
        calls.append((args, dict(kwargs)))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(fit_module, "_train", recording_train)
    return calls


def test_fit_class_weight_balanced_is_scikit_learns_and_reaches_the_search_and_both_phases(
    tmp_path, capsys, monkeypatch
):
    from sklearn.utils.class_weight import compute_class_weight

    calls = _recording_train(monkeypatch)
    frame = _clicks(tmp_path, n=200)
    # 30% positive: "balanced" is not all ones.
    frame.assign(clicked=(frame["price"] > frame["price"].quantile(0.7)).astype(int)).to_csv(
        tmp_path / "clicks.csv", index=False
    )
    (tmp_path / "fit.yaml").write_text(_CLASS_WEIGHT_CONFIG.replace("CW", "balanced"))
    assert main(["fit", str(tmp_path / "fit.yaml"), "--quiet-fit"]) == 0, capsys.readouterr().err
    assert len(calls) == 2  # the learning-rate search, then the two-phase run (one fine_tune call)
    y_train = calls[-1][0][1][1]
    expected = dict(zip([0, 1], compute_class_weight("balanced", classes=np.array([0, 1]), y=y_train)))
    for _, kwargs in calls:
        assert kwargs["class_weight"].keys() == expected.keys()
        np.testing.assert_allclose([kwargs["class_weight"][k] for k in (0, 1)], [expected[0], expected[1]], rtol=1e-12)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["class_weight"] == pytest.approx({"0": expected[0], "1": expected[1]})
    assert report["config"]["schedule"]["class_weight"] == "balanced"


def test_fit_refuses_a_class_weight_for_a_class_not_in_the_labels_before_training(tmp_path, capsys, monkeypatch):
    calls = _recording_train(monkeypatch)
    _clicks(tmp_path, n=120)
    (tmp_path / "fit.yaml").write_text(_CLASS_WEIGHT_CONFIG.replace("CW", "{0: 1.0, 2: 4.0}"))
    assert main(["fit", str(tmp_path / "fit.yaml")]) == 2
    err = capsys.readouterr().err
    assert "`schedule.class_weight`" in err and "classes of the training labels [0, 1] (got the key 2)" in err
    assert calls == [] and not (tmp_path / "run" / "model.keras").exists()


def test_fit_refuses_inf_cells_naming_rows_and_lines_and_non_finite_drop_trains_and_evaluate_excludes(tmp_path, capsys):
    # Issue 19: "inf" parses as a number, so no other check stops it before training.
    frame = _clicks(tmp_path, n=200)
    frame["price"] = frame["price"].astype(object)
    frame.loc[[12, 40], "price"] = "inf"
    frame.to_csv(tmp_path / "clicks.csv", index=False)
    (tmp_path / "fit.yaml").write_text(TABULAR_CONFIG)
    assert main(["fit", str(tmp_path / "fit.yaml")]) == 2
    err = capsys.readouterr().err
    assert "field `data.csv`" in err and "2 of 200 rows hold NaN or inf" in err and "first rows [12, 40]" in err
    assert "CSV lines [14, 42]" in err and "data.non_finite: drop" in err
    assert not (tmp_path / "run" / "model.keras").exists()

    (tmp_path / "fit.yaml").write_text(TABULAR_CONFIG.replace("label: clicked}", "label: clicked, non_finite: drop}"))
    # --fresh: the refused run above recorded its settings in output_dir.
    assert main(["fit", str(tmp_path / "fit.yaml"), "--quiet-fit", "--fresh"]) == 0
    assert "data.non_finite: drop: left out 2 of 200 rows" in capsys.readouterr().out
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert sum(report["data"][k]["rows"] for k in ("train", "val", "test")) == 198

    model = str(tmp_path / "run" / "model.keras")
    assert main(["evaluate", model, str(tmp_path / "clicks.csv")]) == 2
    assert "2 of 200 rows hold NaN or inf" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                model,
                str(tmp_path / "clicks.csv"),
                "--non-finite",
                "exclude",
                "--json",
                str(tmp_path / "eval.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "samples" in out and "2 rows with NaN/inf inputs (not evaluated)" in out
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert (saved["n_samples"], saved["nonfinite_excluded"]) == (198, 2)


def test_fit_monitor_gets_a_probe_batch_and_the_validation_split_and_flags_a_one_class_model(tmp_path, capsys):
    """The CLI's TrainingMonitor checks the validation predictions itself (not only fine_tune's final check).

    A single categorical column holding one value gives every row the same input, so the model gives every
    row the same score: one predicted class, whatever the weights, while the labels hold both classes.
    """
    rng = np.random.default_rng(0)
    n = 200
    pd.DataFrame({"country": ["fr"] * n, "clicked": rng.permutation(np.arange(n) % 2)}).to_csv(
        tmp_path / "one.csv", index=False
    )
    (tmp_path / "fit.yaml").write_text(
        "data: {kind: tabular, csv: one.csv, label: clicked}\n"
        "backbone: {name: tabular, units: [4]}\n"
        "head: {hidden: []}\n"
        "schedule: {head_epochs: 1, finetune_epochs: 1, learning_rate: 0.01}\n"
        "callbacks: {drift: false, checkpoint: false}\n"
        "output_dir: run\n"
    )
    assert main(["fit", str(tmp_path / "fit.yaml"), "--quiet-fit"]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the notes are wrapped: compare with single spaces
    assert re.search(r"TrainingMonitor: at epoch \d+ \(\d+ epoch\(s\) in a row\), the model predicts class", printed)
    assert "for all 40 validation rows although their labels hold 2 classes" in printed


def test_fit_monitor_holds_a_probe_batch_of_at_most_256_training_rows_and_the_validation_split():
    """What `_callbacks` gives the TrainingMonitor: the first rows of the training inputs and (x_val, y_val)."""
    from kerafine.callbacks.training_monitor import TrainingMonitor
    from kerafine.cli._common import _callbacks

    x_train = {"price": np.arange(1000.0), "country": np.array(["fr", "de"] * 500)}
    x_val, y_val = {"price": np.arange(10.0), "country": np.array(["fr"] * 10)}, np.arange(10) % 2
    cbs, used = _callbacks(
        x_train=x_train,
        x_val=x_val,
        y_val=y_val,
        log_dir="unused",
        ckpt_dir=None,
        patience=None,
        auc=False,
        tensorboard=False,
    )
    (monitor,) = [c for c in cbs if isinstance(c, TrainingMonitor)]
    assert "TrainingMonitor" in used
    np.testing.assert_array_equal(monitor.probe_data["price"], np.arange(256.0))
    assert list(monitor.probe_data["country"][:2]) == ["fr", "de"] and len(monitor.probe_data["country"]) == 256
    assert monitor.validation_data[0] is x_val and monitor.validation_data[1] is y_val
    windows = np.zeros((300, 5, 2), "float32")
    cbs, _ = _callbacks(
        x_train=windows,
        x_val=None,
        y_val=None,
        log_dir="unused",
        ckpt_dir=None,
        patience=None,
        auc=False,
        tensorboard=False,
    )
    (monitor,) = [c for c in cbs if isinstance(c, TrainingMonitor)]
    assert monitor.probe_data.shape == (256, 5, 2) and monitor.validation_data is None
