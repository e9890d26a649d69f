"""How kerafine shows things to a person: durations, notes, and results in a console or Jupyter.

Plain Python only (no numpy, Keras or TensorFlow import), so that every layer,
including :mod:`kerafine.metrics` and :mod:`kerafine.drift`, can use it.

* :func:`human_duration` writes seconds as ``"1 min 02 s"``.
* :func:`wrap_note` wraps a note on word boundaries (never cut mid-word).
* :func:`displayable` gives a result class a short ``__repr__`` (a few lines)
  and a ``_repr_html_`` for Jupyter, both built from its ``_display()``
  method, which returns a title and a few ``(label, value)`` rows.
"""

from __future__ import annotations

import html
import math
import textwrap

__all__ = ["human_duration", "wrap_note", "displayable", "fmt"]


def human_duration(seconds: float) -> str:
    """``75.2`` -> ``"1 min 15 s"``; ``0.42`` -> ``"0.4 s"``; ``3720`` -> ``"1 h 02 min"``.

    Example:

    >>> human_duration(62), human_duration(9.46), human_duration(60), human_duration(3 * 86400 + 3600)
    ('1 min 02 s', '9.5 s', '1 min', '3 d 1 h')
    """
    seconds = float(seconds)
    if not math.isfinite(seconds):
        return str(seconds)
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    if seconds < 10:
        return f"{sign}{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{sign}{whole} s"
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days} d {hours} h" if hours else f"{sign}{days} d"
    if hours:
        return f"{sign}{hours} h {minutes:02d} min" if minutes else f"{sign}{hours} h"
    return f"{sign}{minutes} min {secs:02d} s" if secs else f"{sign}{minutes} min"


def wrap_note(text: str, width: int = 100, indent: str = "    ", first: str = "") -> str:
    """The whole of ``text``, wrapped at word boundaries to ``width`` characters a line.

    ``first`` starts the first line (after ``indent``); later lines are
    indented to align under it. Words longer than a line (paths) are kept whole.

    Example:

    >>> print(wrap_note("each step moves the trainable weights too far", width=24, first="note: "))
        note: each step
              moves the
              trainable
              weights too
              far
    """
    words = " ".join(str(text).split())
    return textwrap.fill(
        words,
        width=width,
        initial_indent=indent + first,
        subsequent_indent=indent + " " * len(first),
        break_long_words=False,
        break_on_hyphens=False,
    )


def fmt(value) -> str:
    """A value as a person reads it: 4 significant digits for floats, a short form for long lists."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return f"{float(value):.4g}"
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return "[" + ", ".join(fmt(v) for v in value[:3]) + f", ... ({len(value)} items)]"
    text = str(value)
    return text if len(text) <= 80 else text[:77].rsplit(" ", 1)[0] + " ..."


def _repr(self) -> str:
    title, rows = self._display()
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join([f"{title}"] + [f"  {k:<{width}}  {v}" for k, v in rows])


def _repr_html_(self) -> str:
    title, rows = self._display()
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
        f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<div><strong>{html.escape(title)}</strong><table>{body}</table></div>"


def _str_repr(self) -> str:
    return str(self)


def _pre_html(self) -> str:
    return f"<pre>{html.escape(str(self))}</pre>"


def displayable(cls):
    """Class decorator: a short ``__repr__`` and a ``_repr_html_`` for Jupyter.

    With a ``_display()`` method (returning ``(title, [(label, value), ...])``)
    both are built from it. Without one, a class that defines a short
    ``__str__`` gets it as its ``__repr__`` too, and a ``<pre>`` block of it as
    HTML. A ``_repr_html_`` the class defines itself is kept. Put the decorator
    above ``@dataclass`` so that it replaces the generated field dump.

    Example:

    >>> @displayable
    ... class Result:
    ...     def _display(self):
    ...         return "Result", [("auc", "0.91"), ("rows", "120")]
    >>> print(repr(Result()))
    Result
      auc   0.91
      rows  120
    >>> Result()._repr_html_().startswith("<div><strong>Result</strong>")
    True
    """
    own = cls.__dict__
    if "_display" in own:
        cls.__repr__ = _repr
        if "_repr_html_" not in own:
            cls._repr_html_ = _repr_html_
    elif "__str__" in own:
        cls.__repr__ = _str_repr
        if "_repr_html_" not in own:
            cls._repr_html_ = _pre_html
    elif "_repr_html_" not in own:
        cls._repr_html_ = _pre_html
    return cls
