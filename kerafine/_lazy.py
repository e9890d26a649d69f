"""Public names of a kerafine package that load on first use.

A package lists ``{public name: defining module}`` and gets its module-level
``__getattr__`` and ``__dir__`` from :func:`attach`, so that importing the
package imports none of its modules (``kerafine.data`` or ``kerafine.security``
without TensorFlow, until a name that needs it is used).
"""

from __future__ import annotations

import importlib
import sys


def attach(package: str, names: dict[str, str]):
    """``(__getattr__, __dir__, __all__)`` for ``package`` whose ``names`` map to their modules.

    Example:

    >>> getattr_, dir_, all_ = attach("kerafine.data", {"sliding_windows": "kerafine.data.windows"})
    >>> all_, getattr_("sliding_windows").__name__
    (['sliding_windows'], 'sliding_windows')
    """
    public = sorted(names)

    def __getattr__(name: str):
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            setattr(sys.modules[package], name, value)  # the next look-up skips __getattr__
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return public

    return __getattr__, __dir__, public
