"""scikit-learn 1.9.1's own ``sklearn/metrics/tests/test_ranking.py``, run on ``kerafine.metrics``.

The file is read from the installed scikit-learn wheel with ``roc_auc_score``,
``average_precision_score``, ``roc_curve``, ``precision_recall_curve`` (and
``UndefinedMetricWarning``) bound to kerafine's through ``adapters.py``. Its
tests that reach one of those four functions are collected here, assertions
unchanged; the others (``det_curve``, ``ndcg_score``, ...) test functions
kerafine does not offer and are left out. Deliberate differences:
``differences.py``; the tests that fail on a message run a second time as
``<test>__without_match``, from a second copy of the file whose
``pytest.raises``/``pytest.warns`` ignore ``match=`` (nothing else changes),
where they must pass (message-only) or fail on the difference listed for them.
"""

import inspect
import re

import pytest

from tests.conformance import _anchors, adapters
from tests.conformance.differences import without_match_bases

pytestmark = pytest.mark.conformance

_upstream = _anchors.sklearn_ranking_tests()
# CURVE_FUNCS is the file's list of curve functions, parametrizing several tests.
_REBOUND = re.compile(r"\b({})\b".format("|".join([*adapters.SKLEARN, "CURVE_FUNCS"])))


def _reaches_kerafine(function) -> bool:
    return _REBOUND.search(inspect.getsource(function)) is not None


for _name, _test in vars(_upstream).items():
    if _name.startswith("test_") and inspect.isfunction(_test) and _reaches_kerafine(_test):
        globals()[_name] = _test


class _PytestWithoutMatch:
    """The ``pytest`` module, except that ``raises`` and ``warns`` drop their ``match=`` pattern."""

    def __getattr__(self, name):
        return getattr(pytest, name)

    @staticmethod
    def raises(*args, match=None, **kwargs):
        return pytest.raises(*args, **kwargs)

    @staticmethod
    def warns(*args, match=None, **kwargs):
        return pytest.warns(*args, **kwargs)


_copy = _anchors.sklearn_ranking_tests(name="kerafine_conformance_sklearn_test_ranking_without_match")
_copy.pytest = _PytestWithoutMatch()
for _name in sorted(without_match_bases()):
    globals()[f"{_name}__without_match"] = getattr(_copy, _name)
