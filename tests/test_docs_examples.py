"""Every ```python block of README.md and docs/*.md runs exactly as written, and every relative link resolves.

Conventions (documented in docs/development.md, "Code blocks in the docs"):

- A ```python block is a self-contained program, run in a fresh Python process from an
  empty temporary working directory.
- ``<!-- continue -->`` on the line before a block: the block continues the previous
  ```python block of the same page (same process, same namespace).
- ``<!-- slow -->`` before a block: an end-to-end example; its test case is marked ``slow``
  (it runs in CI; deselect locally with ``-m "not slow"``). A block continued by a slow
  block is part of a slow case.
- A plain ``` block right after a ```python block (only blank lines between) shows what the
  block prints: the block must print exactly that. ``<!-- output: approximate -->`` before
  the ```python block relaxes this to: the same text, whole numbers equal, every other number
  within 2% (or 0.02) of the one shown, for figures that depend on the TensorFlow build's
  last digits.
- Anything else in a code fence must name what it is (```bash, ```yaml, ```text ...): a
  fence language this test does not know fails, so no Python hides under another name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DIRECTIVES = {"continue", "slow", "output: approximate"}
# Fence languages that are not executed; `python` is executed; "" is an output or plain text.
OTHER_LANGUAGES = {"", "bash", "yaml", "text", "ipython", "json", "csv", "toml", "ini", "console"}
SEPARATOR = "\x00--- end of block ---\x00"

_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the first code line
    language: str
    code: str
    directives: set[str] = field(default_factory=set)
    output: str | None = None  # the plain block shown right after it, if any

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def parse(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, with their directives and shown outputs."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    previous_end = -1
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, language = m.group(1), m.group(2)
        start = i + 1
        j = start
        while j < len(lines) and not re.match(rf"^{indent}```\s*$", lines[j]):
            j += 1
        if j == len(lines):
            raise AssertionError(f"{page.relative_to(REPO)}:{i + 1}: code fence never closed")
        code = "\n".join(line[len(indent) :] for line in lines[start:j]) + "\n"
        directives = set()
        k = i - 1
        while k >= 0 and (not lines[k].strip() or _DIRECTIVE.match(lines[k])):
            if lines[k].strip():
                directives.add(_DIRECTIVE.match(lines[k]).group(1))
            k -= 1
        block = Block(page, start + 1, language, code, directives)
        previous = blocks[-1] if blocks else None
        if (
            language == ""
            and not directives
            and previous is not None
            and previous.language == "python"
            and previous.output is None
            and all(not line.strip() for line in lines[previous_end + 1 : i])
        ):
            previous.output = code
        else:
            blocks.append(block)
        previous_end = j
        i = j + 1
    return blocks


def _cases():
    """Groups of python blocks run in one process: a block and the blocks continuing it."""
    cases = []
    for page in PAGES:
        for block in parse(page):
            if block.language != "python":
                continue
            if "continue" in block.directives:
                if not cases or cases[-1][0].page != page:
                    raise AssertionError(f"{block.where}: <!-- continue --> with no python block before it on the page")
                cases[-1].append(block)
            else:
                cases.append([block])
    return cases


def _params():
    return [
        pytest.param(
            group, id=group[0].where, marks=[pytest.mark.slow] if any("slow" in b.directives for b in group) else []
        )
        for group in _cases()
    ]


# Runs the blocks of one case in one namespace, as __main__, each compiled against its page
# and line so a traceback points into the .md file; a separator after each block's output.
_DRIVER = f"""
import json, sys
blocks = json.load(open(sys.argv[1]))
namespace = {{"__name__": "__main__"}}
for page, line, code in blocks:
    exec(compile("\\n" * (line - 1) + code, page, "exec"), namespace)
    sys.stdout.flush()
    sys.stdout.write({SEPARATOR!r})
    sys.stdout.flush()
"""

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _matches_approximately(printed: str, shown: str) -> bool:
    if _NUMBER.sub("#", printed) != _NUMBER.sub("#", shown):
        return False
    for a, b in zip(_NUMBER.findall(printed), _NUMBER.findall(shown)):
        if re.fullmatch(r"-?\d+", b):  # a whole number (a count, an epoch, a setting) is exact
            if a != b:
                return False
        elif float(a) != pytest.approx(float(b), rel=0.02, abs=0.02):
            return False
    return True


@pytest.mark.timeout(900)
@pytest.mark.parametrize("group", _params())
def test_code_block_runs_as_written(group, tmp_path):
    _run_and_compare(group, tmp_path)


def _run_and_compare(group: list[Block], tmp_path: Path) -> None:
    for block in group:
        unknown = block.directives - DIRECTIVES
        assert not unknown, f"{block.where}: unknown directive(s) {sorted(unknown)}; known: {sorted(DIRECTIVES)}"
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = tmp_path / ".blocks.json"
    spec.write_text(json.dumps([[str(b.page), b.line, b.code] for b in group]))
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    env.pop("TF_CONFIG", None)
    res = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(spec)], cwd=workdir, env=env, capture_output=True, text=True, timeout=880
    )
    assert res.returncode == 0, f"{group[-1].where} failed:\n{res.stderr[-4000:]}"
    printed = res.stdout.split(SEPARATOR)
    for block, out in zip(group, printed):
        if block.output is None:
            continue
        if "output: approximate" in block.directives:
            assert _matches_approximately(out, block.output), (
                f"{block.where} printed\n{out}\nthe page shows\n{block.output}"
            )
        else:
            assert out == block.output, f"{block.where} printed\n{out}\nthe page shows\n{block.output}"


def test_every_code_fence_names_a_known_language():
    for page in PAGES:
        for block in parse(page):
            assert block.language == "python" or block.language in OTHER_LANGUAGES, (
                f"{block.where}: fence language {block.language!r}; python blocks must say ```python, "
                f"others one of {sorted(OTHER_LANGUAGES - {''})}"
            )
            assert not (block.directives - DIRECTIVES), f"{block.where}: unknown directive(s) {block.directives}"
            if block.language != "python":
                assert not block.directives, f"{block.where}: directives only apply to ```python blocks"


def test_the_parser_reads_the_conventions(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nprint(1)\n```\n\n```\n1\n```\n\n<!-- continue -->\n<!-- slow -->\n```python\nx = 2\n```\n\n"
        "```bash\necho hi\n```\n\n```\nnot an output\n```\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    blocks = parse(page)
    assert [(b.language, b.line, b.output) for b in blocks] == [
        ("python", 2, "1\n"),
        ("python", 12, None),
        ("bash", 16, None),
        ("", 20, None),
    ]
    assert blocks[1].directives == {"continue", "slow"}


# --- links ---------------------------------------------------------------------------------


def _slug(text: str) -> str:
    # Python-Markdown's toc slugify (what MkDocs uses for heading ids).
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _without_code_blocks(page: Path) -> str:
    kept, fence = [], None
    for line in page.read_text(encoding="utf-8").splitlines():
        if fence is None and (m := _FENCE.match(line)):
            fence = m.group(1)
        elif fence is not None and re.match(rf"^{fence}```\s*$", line):
            fence = None
        elif fence is None:
            kept.append(line)
    return "\n".join(kept)


def _prose(page: Path) -> str:
    """The page without its code blocks and inline code (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", _without_code_blocks(page))


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", _without_code_blocks(page), flags=re.M):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))  # a link in a heading: its text
        slug = _slug(re.sub(r"[*`]", "", heading))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}_{n}")
    return anchors


def _links(page: Path):
    for m in re.finditer(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", _prose(page)):
        target = m.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        yield target


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_a_file_and_anchor_that_exist(page):
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with id {anchor!r} in {dest.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: broken links:\n" + "\n".join(broken)


def test_the_link_checker_sees_a_broken_anchor(tmp_path):
    (tmp_path / "a.md").write_text(
        "# Title: one `x`\n\n```python\n# not a heading\n```\n\n## Drift alerts (during fit)\n"
    )
    assert _anchors(tmp_path / "a.md") == {"title-one-x", "drift-alerts-during-fit"}
    (tmp_path / "b.md").write_text("[ok](a.md#title-one-x) [bad](a.md#nope) [web](https://x.org) `[no](c.md)`\n")
    assert list(_links(tmp_path / "b.md")) == ["a.md#title-one-x", "a.md#nope"]


def test_approximate_output_allows_last_digits_only():
    shown = "Robustness (PGD-10, 300 rows)\n  4    0.9333   0.9955\n"
    assert _matches_approximately("Robustness (PGD-10, 300 rows)\n  4    0.9400   0.9900\n", shown)
    assert not _matches_approximately("Robustness (PGD-10, 300 rows)\n  4    0.9000   0.9955\n", shown)
    assert not _matches_approximately("Robustness (PGD-10, 301 rows)\n  4    0.9333   0.9955\n", shown)
    assert not _matches_approximately("Robustness (FGSM, 300 rows)\n  4    0.9333   0.9955\n", shown)


def test_a_wrong_output_a_failing_block_and_continued_namespaces_are_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nx = 2\nprint(x)\n```\n\n```\n2\n```\n\n"
        "<!-- continue -->\n```python\nprint(x + 1)\n```\n\n```\n3\n```\n\n"
        "```python\nprint(x)\n```\n"
    )
    first, second, alone = (b for b in parse(page) if b.language == "python")
    _run_and_compare([first, second], tmp_path / "a")  # same namespace: x is defined
    with pytest.raises(AssertionError, match="NameError"):
        _run_and_compare([alone], tmp_path / "b")  # a fresh process: x is not
    second.output = "4\n"
    with pytest.raises(AssertionError, match="printed"):
        _run_and_compare([first, second], tmp_path / "c")
