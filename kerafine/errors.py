"""Errors raised by kerafine.

Every kerafine error is a :class:`KerafineError`, itself a ``ValueError``, so
code that already catches ``ValueError`` keeps working. Messages name the
argument, echo the value received and say what is allowed or what to do next;
build them with :func:`invalid_argument` so they all read the same way.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

__all__ = [
    "KerafineError",
    "DataError",
    "WeightsError",
    "CheckpointError",
    "TrainingError",
    "invalid_argument",
    "did_you_mean",
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
    message = (
        f"Invalid value for argument `{name}`: received {_short_repr(value)}; "
        f"expected {expected}."
    )
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
