"""Tests of the `kerafine` command line (kerafine.cli)."""

import json
import os
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


@pytest.mark.parametrize("command, phrase", [
    ("demo", "Ctrl-C"),
    ("fit", "report.json"),
    ("init-config", "commented example"),
    ("evaluate", "MODEL.kerafine.json"),
    ("drift", "Exit status"),
])
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
    (tmp_path / "model.kerafine.json").write_text(json.dumps(
        {"kind": "tabular", "label": "clicked", "numeric": ["price", "age"], "categorical": ["country"]}))
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
