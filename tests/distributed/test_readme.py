"""The "Distributed training" page (docs/distributed.md): its Python runs as written, other blocks are marked."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _section():
    return (REPO / "docs" / "distributed.md").read_text()


def _blocks():
    return re.findall(r"```(\w*)\n(.*?)```", _section(), flags=re.S)


def test_every_code_block_is_python_or_marked_as_something_else():
    langs = [lang for lang, _ in _blocks()]
    assert langs.count("python") == 1
    assert set(langs) <= {"python", "bash", "yaml"}, langs


def test_launcher_command_lines_parse_as_the_launcher_reads_them():
    from kerafine.distributed.launcher import _parser

    lines = [
        line.split("#")[0].split()[3:]
        for lang, code in _blocks()
        if lang == "bash"
        for line in code.splitlines()
        if line.startswith("python -m kerafine.distributed")
    ]
    assert len(lines) == 2
    for args in lines:
        ns = _parser().parse_args(args)
        assert ns.workers == 2 and ns.script == "train.py"
    assert _parser().parse_args(lines[1]).timeout == 3600 and _parser().parse_args(lines[1]).args == ["--your-args"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_training_script_runs_as_written_in_one_process_and_resumes(tmp_path):
    (code,) = [c for lang, c in _blocks() if lang == "python"]
    script = tmp_path / "train.py"
    script.write_text(code)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    env.pop("TF_CONFIG", None)
    res = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "val_auc" in res.stdout
    assert sorted(p.name for p in (tmp_path / "runs" / "ckpt").iterdir())
