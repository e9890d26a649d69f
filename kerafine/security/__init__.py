"""Security monitoring: adversarial robustness, membership-inference risk and input guards.

* :func:`fgsm`, :func:`pgd`: L-infinity evasion attacks on the model's own loss.
* :func:`robustness_curve`: accuracy and exact ROC-AUC (DeLong interval)
  against the attack radius, a :class:`RobustnessCurve`.
* :func:`membership_inference`: loss- and confidence-threshold attacks telling
  training rows from held-out rows, a :class:`MembershipReport`.
* :class:`InputGuard`: rule-based checks of what a model is fed, built from a
  :class:`kerafine.drift.ReferenceProfile` (numpy and pandas only).
* :class:`SecurityMonitor`: robust accuracy during ``fit`` (in
  :mod:`kerafine.callbacks` too).

Names load lazily: ``from kerafine.security import InputGuard`` does not
import TensorFlow.

Example:

>>> import numpy as np, pandas as pd
>>> from kerafine.drift import ReferenceProfile
>>> from kerafine.security import InputGuard
>>> train = pd.DataFrame({"cpu": np.linspace(0, 100, 50), "region": ["eu", "us"] * 25})
>>> guard = InputGuard(ReferenceProfile.from_data(train), margin=0.1)
>>> guard.check(pd.DataFrame({"cpu": [50.0, 250.0], "region": ["eu", "mars"]})).rejected_rows.tolist()
[1]
"""

from __future__ import annotations

import importlib

_LAZY = {
    "fgsm": "kerafine.security.attacks",
    "pgd": "kerafine.security.attacks",
    "robustness_curve": "kerafine.security.robustness",
    "RobustnessCurve": "kerafine.security.robustness",
    "membership_inference": "kerafine.security.membership",
    "MembershipReport": "kerafine.security.membership",
    "MembershipAttack": "kerafine.security.membership",
    "InputGuard": "kerafine.security.guard",
    "GuardReport": "kerafine.security.guard",
    "FilterResult": "kerafine.security.guard",
    "SecurityMonitor": "kerafine.callbacks.security_monitor",
    "SecurityWarning": "kerafine.callbacks.security_monitor",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kerafine.security' has no attribute {name!r}")


def __dir__():
    return __all__
