"""Argument checks of the backbone and head builders, on top of :mod:`kerafine.errors`'s scalar checks."""

from __future__ import annotations

import numbers
from typing import Any

from kerafine.errors import check_choice, check_int, check_number, invalid_argument

__all__ = ["check_choice", "check_units", "check_rate", "check_positive_int"]


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    return check_int(name, value, minimum=minimum)


def check_units(name: str, value: Any, allow_empty: bool = True) -> tuple[int, ...]:
    """A tuple of layer widths: positive ints (an int alone means one layer)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    expected = "a tuple of positive ints" + ("" if allow_empty else " (at least one)")
    if not isinstance(value, (tuple, list)) or (not allow_empty and not value):
        raise invalid_argument(name, value, expected)
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise invalid_argument(name, value, expected)
    return tuple(int(v) for v in value)


def check_rate(name: str, value: Any) -> float:
    """A dropout rate in [0, 1)."""
    return check_number(name, value, minimum=0, maximum=1, max_inclusive=False, expected="a float in [0, 1)")
