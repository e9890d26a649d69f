"""MkDocs hook: README.md is the site's front page (index.md).

The README links to the guides as ``docs/<page>.md`` (right on GitHub and PyPI); on the
site the pages sit beside the front page, so those links lose their ``docs/`` prefix.
"""

import re
from pathlib import Path

from mkdocs.structure.files import File

_README = Path(__file__).resolve().parents[1] / "README.md"


def on_files(files, config):
    text = re.sub(r"\]\(docs/", "](", _README.read_text(encoding="utf-8"))
    files.append(File.generated(config, "index.md", content=text))
    return files
