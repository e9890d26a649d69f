"""Load the anchors' own test modules with kerafine bound in place of the code under test.

Nothing here downloads anything. The test files are read from:

* Keras: ``keras/src/callbacks/early_stopping_test.py``, shipped in the keras wheel;
* scikit-learn: ``sklearn/metrics/tests/test_ranking.py``, shipped in the sklearn wheel;
* river: ``tests/drift/*.py`` of the river sdist, which the wheel does not ship.
  ``.ci/fetch_anchor_tests.py`` (run by ``.ci/run`` at install time) extracts them into
  ``.ci/cache/anchors/river-<version>/``; ``KERAFINE_ANCHOR_TESTS`` points elsewhere.

scikit-learn and river are pinned (the ``test`` extra of setup.cfg): the list of
deliberate differences in ``differences.py`` is about those versions. Keras is not
pinned there (kerafine's oldest-versions CI run installs Keras 3.12): its test file
has no listed difference at 3.15.1, so it must pass on any Keras >= 3.15.1 (a new
difference then fails CI), and is skipped (failed under CI) on older ones. With another version
installed, or the river sources absent, the anchor's tests are skipped with the
reason, except under ``KERAFINE_REQUIRE_ANCHORS=1`` (set by ``.ci/run``), where
they fail: CI must run them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

PINNED = {"keras": "3.15.1", "scikit-learn": "1.9.1", "river": "0.26.1"}
REPO = Path(__file__).resolve().parents[2]


class OptionNotOffered(Exception):
    """An anchor's option that kerafine does not offer was used (deliberately not a ValueError)."""

    def __init__(self, api: str, option: str, value):
        super().__init__(f"kerafine does not offer {api}({option}={value!r})")


def unavailable(reason: str):
    """Skip, or fail when CI requires the anchors (KERAFINE_REQUIRE_ANCHORS=1)."""
    if os.environ.get("KERAFINE_REQUIRE_ANCHORS") == "1":
        pytest.fail(f"{reason} (KERAFINE_REQUIRE_ANCHORS=1: CI must run the conformance tests)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def _version_tuple(version: str) -> tuple:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def check_version(distribution: str) -> None:
    try:
        installed = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        unavailable(f"{distribution} is not installed (pip install -e '.[test]')")
        return
    if distribution == "keras":
        if _version_tuple(installed) < _version_tuple(PINNED["keras"]):
            unavailable(f"conformance needs keras>={PINNED['keras']} (its test file), {installed} is installed")
        return
    if installed != PINNED[distribution]:
        unavailable(
            f"conformance is pinned to {distribution}=={PINNED[distribution]} (its list of differences), "
            f"{installed} is installed"
        )


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        unavailable(f"{path} is not in the installed {package} distribution")
    return path


def river_tests_dir() -> Path:
    root = Path(os.environ.get("KERAFINE_ANCHOR_TESTS", REPO / ".ci" / "cache" / "anchors"))
    path = root / f"river-{PINNED['river']}" / "tests" / "drift"
    if not path.is_dir():
        unavailable(
            f"river's tests/drift not found in {path.parent.parent}: they ship in the sdist only; "
            "run `python3 .ci/fetch_anchor_tests.py` (what .ci/run does) to extract them"
        )
    return path


def load(path: Path, name: str, patch: dict | None = None) -> types.ModuleType:
    """Import the file at ``path`` as module ``name``.

    ``patch`` maps ``"module.attribute"`` to a replacement set on that module
    only while the file's top level runs, so that its ``from x import y`` lines
    (and module-level lists built from them) bind kerafine's object. Nothing
    stays patched afterwards: the anchor's own library is unchanged.
    """
    saved = []
    for target, value in (patch or {}).items():
        module_name, attribute = target.rsplit(".", 1)
        module = importlib.import_module(module_name)
        saved.append((module, attribute, getattr(module, attribute)))
        setattr(module, attribute, value)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        for module_, attribute, value in reversed(saved):
            setattr(module_, attribute, value)
    return module


def keras_early_stopping_tests() -> types.ModuleType:
    check_version("keras")
    from kerafine.callbacks.early_stopping import EarlyStopping

    path = _package_file("keras", "src/callbacks/early_stopping_test.py")
    module = load(path, "kerafine_conformance_keras_early_stopping_test")
    # The file calls `callbacks.EarlyStopping(...)` on `from keras.src import callbacks`.
    module.callbacks = types.SimpleNamespace(EarlyStopping=EarlyStopping)
    return module


def sklearn_ranking_tests(name: str = "kerafine_conformance_sklearn_test_ranking") -> types.ModuleType:
    check_version("scikit-learn")
    from tests.conformance import adapters

    path = _package_file("sklearn", "metrics/tests/test_ranking.py")
    patch = {f"sklearn.metrics.{name}": function for name, function in adapters.SKLEARN.items()}
    # The warning class is part of the API under test: kerafine warns with its own.
    patch["sklearn.exceptions.UndefinedMetricWarning"] = adapters.UndefinedMetricWarning
    return load(path, name, patch)


def river_drift_tests() -> list[types.ModuleType]:
    check_version("river")
    from tests.conformance import adapters

    folder = river_tests_dir()
    modules = []
    for name in ("test_drift_detectors", "test_adwin_regression"):
        module = load(folder / f"{name}.py", f"kerafine_conformance_river_{name}")
        # Both files call `drift.ADWIN(...)` / `drift.PageHinkley(...)` on `from river import drift`.
        module.drift = types.SimpleNamespace(ADWIN=adapters.ADWIN, PageHinkley=adapters.PageHinkley)
        modules.append(module)
    return modules
