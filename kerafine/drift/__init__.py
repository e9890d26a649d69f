"""Distribution-shift (drift) detection: numpy, scipy and pandas only.

Importing this package never imports TensorFlow or Keras, so a production
service can check its traffic for drift without loading them.

* :class:`ReferenceProfile`: what to keep of the training data (bounded).
* :class:`DriftDetector`: per-feature tests, corrected, with an effect floor;
  ``check(current)`` returns a :class:`DriftReport`.
* :class:`StreamDriftDetector`: ADWIN / Page-Hinkley on a monitored series.
* :func:`mmd_test`: multivariate MMD two-sample test (RBF kernel, permutations).

Example:

>>> import numpy as np
>>> from kerafine.drift import DriftDetector
>>> rng = np.random.default_rng(0)
>>> report = DriftDetector(rng.normal(size=(2000, 4))).check(rng.normal(size=(500, 4)))
>>> report.is_drift
False
"""

from kerafine.drift.detector import DriftDetector
from kerafine.drift.profile import ReferenceProfile
from kerafine.drift.report import DriftReport, DriftWarning, FeatureDrift
from kerafine.drift.stats import MMDResult, mmd_test
from kerafine.drift.stream import StreamDriftDetector

__all__ = [
    "DriftDetector",
    "DriftReport",
    "DriftWarning",
    "FeatureDrift",
    "MMDResult",
    "ReferenceProfile",
    "StreamDriftDetector",
    "mmd_test",
]
