"""river 0.26.1's own ``tests/drift`` (from its sdist), run on ``kerafine.drift.StreamDriftDetector``.

``drift.ADWIN`` and ``drift.PageHinkley`` are rebound to the adapters of
``adapters.py``; the tests that use them are collected here, assertions
unchanged. river's other detectors (DDM, KSWIN, ...) and the tests of its Rust
helper ``AdaptiveWindowing`` (pickling included) are left out: kerafine has no
counterpart. Deliberate differences: ``differences.py``.
"""

import inspect

import pytest

from tests.conformance import _anchors

pytestmark = pytest.mark.conformance

for _module in _anchors.river_drift_tests():
    for _name, _test in vars(_module).items():
        if not (_name.startswith("test_") and inspect.isfunction(_test)):
            continue
        source = inspect.getsource(_test)
        if "drift.ADWIN" in source or "drift.PageHinkley" in source:
            globals()[_name] = _test
