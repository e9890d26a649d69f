"""The documentation site (mkdocs.yml) covers every page and every public name.

`mkdocs build --strict` itself runs in .ci/run (it needs the `docs` extra); these checks
need nothing beyond the test extra.
"""

import importlib
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# The public packages: kerafine's own __all__ names them (submodules) beside its functions.
PUBLIC = [
    "kerafine",
    "backbones",
    "heads",
    "callbacks",
    "metrics",
    "drift",
    "security",
    "update",
    "distributed",
    "data",
    "schedules",
    "errors",
    "tensorboard",
]


class _Loader(yaml.SafeLoader):
    pass


# mkdocs.yml may use MkDocs' !ENV / !relative tags; they do not matter here.
_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _nav_pages(nav):
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            yield from _nav_pages(value)
        else:
            yield value


def test_every_docs_page_is_in_the_nav_and_every_nav_page_exists():
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_Loader)
    nav = set(_nav_pages(config["nav"]))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert "index.md" in nav  # README.md, served as the front page by docs/_hooks.py
    assert pages - nav == set(), "pages missing from the nav in mkdocs.yml"
    assert nav - pages - {"index.md"} == set(), "nav entries without a page"


def _documented() -> set[str]:
    return {
        m.group(1) for p in (DOCS / "api").glob("*.md") for m in re.finditer(r"^::: ([\w.]+)\s*$", p.read_text(), re.M)
    }


@pytest.mark.parametrize("package", PUBLIC)
def test_every_public_name_has_an_api_entry(package):
    module = importlib.import_module("kerafine" if package == "kerafine" else f"kerafine.{package}")
    documented = _documented()
    missing = []
    for name in module.__all__:
        if name.startswith("__") or (package == "kerafine" and name in PUBLIC):
            continue
        obj = getattr(module, name)
        home = getattr(obj, "__module__", None)
        if home is None or not home.startswith("kerafine"):
            continue  # a constant (e.g. a tuple of method names): documented in its module's prose
        if f"{home}.{getattr(obj, '__qualname__', name)}" not in documented:
            missing.append(f"{name} (::: {home}.{name})")
    assert not missing, f"kerafine.{package}: public names without an API entry in docs/api/: {missing}"
