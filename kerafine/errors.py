"""Errors raised by kerafine.

Every kerafine error is a :class:`KerafineError`, itself a ``ValueError``, so
code that already catches ``ValueError`` keeps working. Messages name the
argument, echo the value received and say what is allowed or what to do next;
build them with :func:`invalid_argument` so they all read the same way.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import Any, Optional

__all__ = [
    "KerafineError",
    "DataError",
    "WeightsError",
    "CheckpointError",
    "TrainingError",
    "invalid_argument",
    "did_you_mean",
    "check_int",
    "check_number",
    "check_choice",
]


class KerafineError(ValueError):
    """Base class of every error kerafine raises on purpose."""


class DataError(KerafineError):
    """The data given is unusable: wrong shape, missing columns, NaN, too few rows."""


class WeightsError(KerafineError):
    """Pretrained weights cannot be found, fetched, or do not fit the architecture."""


class CheckpointError(KerafineError):
    """A checkpoint or saved profile is missing, corrupt, or belongs to another model."""


class TrainingError(KerafineError, RuntimeError):
    """Training cannot go on (for example, it diverged more often than allowed)."""


def _short_repr(value: Any, limit: int = 120) -> str:
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def invalid_argument(
    name: str,
    value: Any,
    expected: str,
    hint: str | None = None,
    error: type[KerafineError] = KerafineError,
) -> KerafineError:
    """Build the one standard message for a bad argument.

    Args:
        name: the argument's name as the user wrote it.
        value: the value received (shortened if its repr is long).
        expected: what is allowed, e.g. ``'"epoch" or a positive int'``.
        hint: an optional sentence saying what to do next.
        error: the ``KerafineError`` subclass to instantiate.

    Returns:
        The exception, for the caller to ``raise``.

    Example:

    >>> str(invalid_argument("keep", 0, "an int >= 1"))
    'Invalid value for argument `keep`: received 0; expected an int >= 1.'
    """
    message = f"Invalid value for argument `{name}`: received {_short_repr(value)}; expected {expected}."
    if hint:
        message += " " + hint
    return error(message)


def did_you_mean(value: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``' Did you mean "a" or "b"?'`` for the closest choices (closest first), or ``''``.

    Example:

    >>> did_you_mean("resnt50", ["vgg16", "vgg19", "resnet50"])
    ' Did you mean "resnet50"?'
    """
    close = difflib.get_close_matches(str(value).lower(), list(choices), n=n, cutoff=0.6)
    if not close:
        return ""
    quoted = [f'"{c}"' for c in close]
    if len(quoted) == 1:
        return f" Did you mean {quoted[0]}?"
    return " Did you mean " + ", ".join(quoted[:-1]) + " or " + quoted[-1] + "?"


# ---------------------------------------------------------------------------
# scalar argument checks: the one implementation, one message format


def _bound_text(minimum, maximum, min_inclusive: bool, max_inclusive: bool) -> str:
    if minimum is not None and maximum is not None:
        if not min_inclusive and not max_inclusive:
            return f" strictly between {minimum} and {maximum}"
        return f" in {'[' if min_inclusive else '('}{minimum}, {maximum}{']' if max_inclusive else ')'}"
    if minimum is not None:
        return f" {'>=' if min_inclusive else '>'} {minimum}"
    if maximum is not None:
        return f" {'<=' if max_inclusive else '<'} {maximum}"
    return ""


def _in_bounds(value, minimum, maximum, min_inclusive: bool, max_inclusive: bool) -> bool:
    if minimum is not None and not (value >= minimum if min_inclusive else value > minimum):
        return False
    if maximum is not None and not (value <= maximum if max_inclusive else value < maximum):
        return False
    return True


def check_int(
    name: str,
    value: Any,
    *,
    minimum: Optional[int] = None,
    maximum: Optional[int] = None,
    expected: Optional[str] = None,
    hint: Optional[str] = None,
) -> int:
    """Check that ``value`` is an int (numpy ints too, never a bool) in ``[minimum, maximum]``.

    Args:
        name: the argument's name, for the message.
        value: the value received.
        minimum: smallest allowed value, or ``None``. Defaults to ``None``.
        maximum: largest allowed value, or ``None``. Defaults to ``None``.
        expected: the message's "expected ..." text; built from the bounds when ``None``.
        hint: an optional sentence saying what to do next.

    Returns:
        ``value`` as a Python ``int``.

    Raises:
        KerafineError: naming the argument, the value and what is allowed.

    Example:

    >>> check_int("patience", 3, minimum=0)
    3
    >>> check_int("patience", -1, minimum=0)
    Traceback (most recent call last):
    ...
    kerafine.errors.KerafineError: Invalid value for argument `patience`: received -1; expected an int >= 0.
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or not _in_bounds(value, minimum, maximum, True, True):
        raise invalid_argument(name, value, expected or "an int" + _bound_text(minimum, maximum, True, True), hint)
    return int(value)


def check_number(
    name: str,
    value: Any,
    *,
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    expected: Optional[str] = None,
    hint: Optional[str] = None,
) -> float:
    """Check that ``value`` is a finite real number (never a bool) within the bounds.

    Arguments as :func:`check_int`, plus ``min_inclusive`` / ``max_inclusive``
    (whether ``minimum`` / ``maximum`` themselves are allowed; both default to
    ``True``). Returns ``value`` as a Python ``float``; raises ``KerafineError``.

    Example:

    >>> check_number("rate", 0.25, minimum=0, maximum=1, max_inclusive=False)
    0.25
    >>> check_number("rate", 1.0, minimum=0, maximum=1, max_inclusive=False)
    Traceback (most recent call last):
    ...
    kerafine.errors.KerafineError: Invalid value for argument `rate`: received 1.0; expected a finite number in [0, 1).
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not _in_bounds(value, minimum, maximum, min_inclusive, max_inclusive):
        raise invalid_argument(
            name,
            value,
            expected or "a finite number" + _bound_text(minimum, maximum, min_inclusive, max_inclusive),
            hint,
        )
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[Any], *, expected: Optional[str] = None) -> Any:
    """Check that ``value`` is one of ``choices`` (equal and of the same type: ``True`` is not ``1``).

    Returns:
        ``value`` unchanged.

    Raises:
        KerafineError: naming the argument, the value and the choices.

    Example:

    >>> check_choice("curve", "roc", ("roc", "pr", "both"))
    'roc'
    >>> check_choice("curve", "ROC", ("roc", "pr"))
    Traceback (most recent call last):
    ...
    kerafine.errors.KerafineError: Invalid value for argument `curve`: received 'ROC'; expected 'roc' or 'pr'.
    """
    choices = tuple(choices)
    if not any(value is c or (type(value) is type(c) and value == c) for c in choices):
        allowed = expected or " or ".join(repr(c) for c in choices)
        raise invalid_argument(name, value, allowed)
    return value
