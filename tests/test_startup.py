"""kerafine._startup: TensorFlow's C++ start-up notices are dropped, real errors are not."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from kerafine._startup import NOISE, _is_noise

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Lines TensorFlow 2.21 prints on a CPU-only machine (one of each kind), as seen on stderr.
START_UP_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796153300.826817    7197 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    "GPU will not be used.",
    "E0000 00:00:1796153307.270257    7197 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)",
    "I0000 00:00:1796153300.955438    7197 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
    "compiler flags.",
]
NOISE_MARKERS = ("cuInit", "cudart_stub", "cpu_feature_guard", "absl::InitializeLog", "oneDNN")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAFINE_TF_STARTUP")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _run(code, **extra):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_env(**extra), cwd=ROOT
    )


@pytest.mark.parametrize("line", START_UP_LINES)
def test_each_known_start_up_line_is_noise(line):
    assert _is_noise(line)


@pytest.mark.parametrize(
    "line",
    [
        "E0000 00:00:1796153307.270257    7197 op_kernel.cc:1857] OP_REQUIRES failed at matmul_op.cc: INVALID_ARGUMENT",
        "Traceback (most recent call last):",
        "RuntimeError: CUDA error: out of memory",
        "W0000 some_file.cc:12] Could not load dynamic library 'libfoo.so'",
    ],
)
def test_other_lines_are_not_noise(line):
    assert not _is_noise(line)


def test_noise_patterns_are_listed_publicly():
    assert len(NOISE) >= 5


def test_importing_through_quiet_tensorflow_prints_no_start_up_notice():
    proc = _run(
        "import kerafine; kerafine.quiet_tensorflow(); import tensorflow as tf; "
        "print(int(tf.constant(1) + 1)); import os; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "2"]
    assert not [m for m in NOISE_MARKERS if m in proc.stderr], proc.stderr


def test_a_user_set_log_level_is_kept():
    proc = _run(
        "import kerafine, os; kerafine.quiet_tensorflow(); print(os.environ['TF_CPP_MIN_LOG_LEVEL'])",
        TF_CPP_MIN_LOG_LEVEL="0",
        KERAFINE_TF_STARTUP="show",
    )  # "show": no import needed here
    assert proc.stdout.split() == ["0"]


def _probe_noise_code(tmp_path):
    # Whether a TensorFlow build prints start-up notices depends on its version and the machine
    # (TF 2.16 on this CPU prints none), so the notice is written by construction: a module
    # imported right before TensorFlow, under the same capture, writes TF's cuInit line to fd 2.
    line = START_UP_LINES[2]
    (tmp_path / "tensorflow_probe_noise.py").write_text(f"import os\nos.write(2, {(line + chr(10)).encode()!r})\n")
    return (
        "import builtins\n"
        "real_import = builtins.__import__\n"
        "def probing_import(name, *a, **k):\n"
        "    if name == 'tensorflow':\n"
        "        real_import('tensorflow_probe_noise')\n"
        "    return real_import(name, *a, **k)\n"
        "builtins.__import__ = probing_import\n"
        "import kerafine._startup as s; s.quiet_tensorflow()\n"
        "import tensorflow\n"  # with KERAFINE_TF_STARTUP=show, quiet_tensorflow leaves the import to us
    )


def test_show_turns_the_filter_off(tmp_path):
    code = _probe_noise_code(tmp_path)
    path = f"{ROOT}{os.pathsep}{tmp_path}"
    shown = _run(code, PYTHONPATH=path, KERAFINE_TF_STARTUP="show")
    assert shown.returncode == 0, shown.stderr
    assert "failed call to cuInit" in shown.stderr  # not filtered when asked to show
    hidden = _run(code, PYTHONPATH=path)
    assert hidden.returncode == 0, hidden.stderr
    assert "cuInit" not in hidden.stderr  # the same line is filtered by default


def test_a_real_error_written_during_the_import_still_shows(tmp_path):
    # A site-packages-like module imported by TensorFlow's import would be intrusive; instead, a module
    # that writes a C-level error line to descriptor 2 is imported under the same capture.
    mod = tmp_path / "tensorflow_probe_error.py"
    mod.write_text("import os\nos.write(2, b'E0000 real_op.cc:1] a real error that must be seen\\n')\n")
    code = (
        "import sys, builtins, importlib\n"
        "real_import = builtins.__import__\n"
        "def probing_import(name, *a, **k):\n"
        "    if name == 'tensorflow':\n"
        "        real_import('tensorflow_probe_error')\n"
        "    return real_import(name, *a, **k)\n"
        "builtins.__import__ = probing_import\n"
        "import kerafine._startup as s; s.quiet_tensorflow()\n"
    )
    proc = _run(code, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert "a real error that must be seen" in proc.stderr
    assert "cuInit" not in proc.stderr


def test_a_failing_import_still_raises_with_its_message(tmp_path):
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(
        "import os\nos.write(2, b'native library failed to load\\n')\nraise ImportError('broken tensorflow')\n"
    )
    proc = _run("import kerafine; kerafine.quiet_tensorflow()", PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    assert proc.returncode != 0
    assert "native library failed to load" in proc.stderr and "broken tensorflow" in proc.stderr


def test_the_kerafine_command_starts_quietly(tmp_path):
    # `evaluate` loads TensorFlow before it reads its (missing) model: a cheap command that reaches the import.
    proc = subprocess.run(
        [sys.executable, "-m", "kerafine", "evaluate", str(tmp_path / "none.keras"), str(tmp_path / "none.csv")],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
        cwd=tmp_path,
    )
    assert not [m for m in NOISE_MARKERS if m in proc.stderr], proc.stderr
    assert "kerafine evaluate: error:" in proc.stderr  # the command's own message is still there


def test_version_prints_only_the_version():
    proc = subprocess.run(
        [sys.executable, "-m", "kerafine", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        cwd=ROOT,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("kerafine ") and proc.stderr == ""


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _first_code_cell(path):
    import json

    cells = json.loads(path.read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_quiets_tensorflow_before_loading_it(path):
    source = _first_code_cell(path)
    lines = [l.strip() for l in source.splitlines()]
    loads_tf = [i for i, l in enumerate(lines) if re.match(r"(import|from) (keras|tensorflow)\b", l)]
    if not loads_tf:  # this notebook never imports Keras in its first cell (drift only)
        assert not any("keras" in l or "tensorflow" in l for l in lines if l.startswith(("import", "from")))
        return
    quiet = [i for i, l in enumerate(lines) if l.startswith("kerafine.quiet_tensorflow()")]
    assert quiet and quiet[0] < loads_tf[0], source


def test_a_notebooks_first_lines_run_without_start_up_noise():
    # The preamble of the first notebook that loads TensorFlow, run as a notebook kernel would (fd 2 captured).
    source = next(_first_code_cell(p) for p in NOTEBOOKS if "quiet_tensorflow" in _first_code_cell(p))
    preamble = []
    for line in source.splitlines():
        if line.startswith("%"):
            continue
        preamble.append(line)
        if line.strip() == "import keras":
            break
    proc = _run("\n".join(preamble) + "\nprint(keras.__version__)")
    assert proc.returncode == 0, proc.stderr
    assert not [m for m in NOISE_MARKERS if m in proc.stderr], proc.stderr
