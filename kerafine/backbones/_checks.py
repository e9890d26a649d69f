"""Argument checks shared by the backbone and head builders (one message format)."""

from __future__ import annotations

import numbers
from typing import Any, Iterable

from kerafine.errors import invalid_argument

__all__ = ["check_choice", "check_units", "check_rate", "check_positive_int"]


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if not any(value is c or (value == c and type(value) is type(c)) for c in choices):
        allowed = " or ".join(repr(c) if c is not None else "None" for c in choices)
        raise invalid_argument(name, value, allowed)
    return value


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise invalid_argument(name, value, f"an int >= {minimum}")
    return int(value)


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
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise invalid_argument(name, value, "a float in [0, 1)")
    return float(value)
