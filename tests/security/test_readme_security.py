"""The "Security monitoring" page (docs/security.md): every code block runs as written and prints what it shows."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def _blocks():
    text = README.read_text()
    section = text
    # Each ```python block followed by the plain ``` block of what it prints.
    return re.findall(r"```python\n(.*?)```\s*\n```\n(.*?)```", section, flags=re.S)


def _run(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    return out.getvalue()


def test_the_section_has_three_examples():
    assert len(_blocks()) == 3


@pytest.mark.parametrize("index", [1, 2])
def test_guard_and_monitor_examples_print_exactly_what_the_readme_shows(index, tmp_path, monkeypatch):
    code, shown = _blocks()[index]
    assert _run(code, tmp_path, monkeypatch) == shown


@pytest.mark.slow
def test_robustness_and_membership_example_prints_the_readme_figures(tmp_path, monkeypatch):
    code, shown = _blocks()[0]
    printed = _run(code, tmp_path, monkeypatch).splitlines()
    expected = shown.splitlines()
    assert len(printed) == len(expected)
    number = re.compile(r"-?\d+\.\d+")
    for got, want in zip(printed, expected):
        # Same text; figures equal up to another TensorFlow build's last digits.
        assert number.sub("#", got) == number.sub("#", want), (got, want)
        for a, b in zip(number.findall(got), number.findall(want)):
            assert float(a) == pytest.approx(float(b), abs=0.02), (got, want)
