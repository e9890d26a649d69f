"""Conformance suite set-up: the anchors' fixtures, and the deliberate differences as marks."""

import fnmatch
import inspect

import pytest

from tests.conformance import adapters
from tests.conformance.differences import DIFFERENCES, mark_for

_ADAPTERS = set(adapters.SKLEARN.values())


def pytest_configure(config):
    # Keras's file marks its fit-based tests; TensorFlow is a trainable backend.
    config.addinivalue_line("markers", "requires_trainable_backend: Keras test needing a trainable backend")


@pytest.fixture
def global_random_seed():
    """scikit-learn's fixture, at its default value (SKLEARN_TESTS_GLOBAL_RANDOM_SEED unset: 42)."""
    return 42


def _tests_another_library(item) -> bool:
    """A parametrized case whose function under test is scikit-learn's own (det_curve, ...), not kerafine's."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    for value in callspec.params.values():
        if inspect.isfunction(value) and value.__module__.startswith("sklearn.") and value not in _ADAPTERS:
            return True
    return False


_FILES = {
    "test_keras_early_stopping.py": "keras",
    "test_sklearn_ranking.py": "scikit-learn",
    "test_river_drift.py": "river",
}


def _check_no_stale_patterns(config, names_by_anchor):
    """With a whole anchor file collected, every pattern of its differences must name a collected test."""
    if config.option.keyword or config.option.deselect:
        return  # -k / --deselect: a partial collection says nothing
    stale = []
    for difference in DIFFERENCES:
        names = names_by_anchor.get(difference.anchor)
        if names is None:
            continue
        for pattern in (*difference.tests, *difference.tests_after_message):
            if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
                stale.append(f"{difference.key}: {pattern}")
    if stale:
        raise pytest.UsageError("differences.py lists tests that no longer exist: " + "; ".join(stale))


def pytest_collection_modifyitems(config, items):
    here = __file__.rsplit("/", 1)[0]
    deselected = []
    kept = []
    names_by_anchor = {}
    for item in items:
        if not str(item.fspath).startswith(here):
            kept.append(item)
            continue
        anchor = _FILES.get(item.fspath.basename)
        if anchor is not None and "__without_match" not in item.name:
            names_by_anchor.setdefault(anchor, []).append(item.name)
        if _tests_another_library(item):
            deselected.append(item)
            continue
        action, mark = mark_for(item)
        if action == "deselect":
            deselected.append(item)
            continue
        if mark is not None:
            item.add_marker(mark)
        kept.append(item)
    _check_no_stale_patterns(config, names_by_anchor)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
