"""Keras 3.15.1's own ``early_stopping_test.py``, run on ``kerafine.callbacks.EarlyStopping``.

The file is read from the installed keras wheel; only ``callbacks.EarlyStopping``
is rebound (see ``_anchors.keras_early_stopping_tests``). Deliberate differences:
``differences.py``.
"""

import pytest

from tests.conformance import _anchors

pytestmark = pytest.mark.conformance

EarlyStoppingTest = _anchors.keras_early_stopping_tests().EarlyStoppingTest
