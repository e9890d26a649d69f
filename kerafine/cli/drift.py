"""``kerafine drift``: compare a current CSV with a reference; the logic as one pure function.

:func:`run` never touches ``argparse`` or ``sys.exit``, so it can be tested
in-process and reused from a notebook or a cron wrapper; :func:`add_parser`
registers the command and ``_drift`` maps its arguments onto :func:`run`.
This module imports neither TensorFlow nor Keras.

Exit status returned by :func:`run`:

* ``0``: no drift detected;
* ``1``: drift detected (the table lists the drifted columns);
* ``2``: bad input (unreadable file, column mismatch, too few rows...): the
  message is printed to ``err``; nothing raises.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap
from collections.abc import Sequence

from kerafine.errors import KerafineError, check_int, invalid_argument

__all__ = ["run", "format_table"]


def _parse_categorical(categorical) -> list[str] | None:
    if categorical is None:
        return None
    if isinstance(categorical, str):
        names = [c.strip() for c in categorical.split(",")]
    else:
        names = [str(c).strip() for c in categorical]
    names = [n for n in names if n]
    if not names:
        raise invalid_argument("--categorical", categorical, "comma-separated column names, e.g. region,device")
    return names


def _read_csv(path, argument: str):
    import pandas as pd

    if not os.path.isfile(path):
        raise invalid_argument(argument, os.fspath(path), "an existing CSV file", "No such file.")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise invalid_argument(
            argument, os.fspath(path), "a readable CSV file with a header row", f"Reading it failed: {exc}."
        ) from None
    return frame


def _fmt(v, spec=".4g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def format_table(report, top: int = 20) -> str:
    """The drifted features of ``report`` as a fixed-width text table, with a summary line."""
    rows = [f for f in report.top(len(report.features)) if f.drifted][:top]
    lines = [report.summary()]
    if rows:
        header = ("feature", "kind", "method", "statistic", "p_adj", "effect", "missing ref->cur", "note")
        body = [
            (
                f.name,
                f.kind,
                f.method,
                _fmt(f.statistic),
                _fmt(f.p_value_adjusted, ".2e"),
                _fmt(f.effect, ".3f"),
                f"{f.missing_reference:.1%}->{f.missing_current:.1%}",
                f.note,
            )
            for f in rows
        ]
        widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
        for r in [header] + body:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        if report.n_drifted > len(rows):
            lines.append(f"... and {report.n_drifted - len(rows)} more drifted features (see --json).")
    return "\n".join(lines)


def run(
    reference,
    current,
    categorical: str | Sequence[str] | None = None,
    json_path=None,
    p_value: float = 0.05,
    correction: str = "bonferroni",
    min_effect: float | None = None,
    top: int = 20,
    out=None,
    err=None,
) -> int:
    """Compare a current CSV with a reference (CSV or saved profile); print the drifted columns.

    Args:
        reference: path of a CSV file or of a directory saved by
            :meth:`kerafine.drift.ReferenceProfile.save`.
        current: path of a CSV file with the same columns.
        categorical: categorical column names, as ``"a,b"`` or a list. Only
            for a CSV reference (a profile fixes them). Defaults to ``None``.
        json_path: also write the full report as JSON here. Defaults to ``None``.
        p_value: significance level. Defaults to 0.05.
        correction: ``"bonferroni"`` or ``"fdr"``. Defaults to ``"bonferroni"``.
        min_effect: effect-size floor; ``None`` keeps the detector's default (0.05).
        top: most drifted rows printed. Defaults to 20.
        out: stream for the table. Defaults to ``sys.stdout``.
        err: stream for error messages. Defaults to ``sys.stderr``.

    Returns:
        0 when no drift is detected, 1 when drift is detected, 2 on bad input.

    Example:

    >>> import numpy as np, pandas as pd, tempfile, os, io
    >>> d = tempfile.mkdtemp()
    >>> rng = np.random.default_rng(0)
    >>> pd.DataFrame({"a": rng.normal(size=500)}).to_csv(os.path.join(d, "ref.csv"), index=False)
    >>> pd.DataFrame({"a": rng.normal(size=200)}).to_csv(os.path.join(d, "cur.csv"), index=False)
    >>> run(os.path.join(d, "ref.csv"), os.path.join(d, "cur.csv"), out=io.StringIO())
    0
    """
    from kerafine.drift.detector import DriftDetector
    from kerafine.drift.profile import ReferenceProfile

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        check_int("--top", top, minimum=1, expected="a positive int")
        cats = _parse_categorical(categorical)
        if os.path.isdir(reference):
            profile = ReferenceProfile.load(reference)
            if cats is not None and set(cats) != set(profile.categorical):
                raise invalid_argument(
                    "--categorical",
                    ",".join(cats),
                    f"no value (or exactly {','.join(profile.categorical) or 'none'}) with a saved profile",
                    "The profile fixed its categorical columns when it was built.",
                )
            ref_arg, cats = profile, None
        else:
            ref_arg = _read_csv(reference, "--reference")
        cur = _read_csv(current, "--current")
        kwargs = {} if min_effect is None else {"min_effect": min_effect}
        detector = DriftDetector(ref_arg, p_value=p_value, correction=correction, categorical=cats, **kwargs)
        report = detector.check(cur, progress=True)
        print(format_table(report, top=top), file=out)
        if json_path is not None:
            report.to_json(json_path)
    except KerafineError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=err)
        return 2
    return 1 if report.is_drift else 0


def _drift_paths(args) -> tuple[str, str]:
    """REFERENCE and CURRENT from ``--reference``/``--current``, positionals filling what the flags leave open."""
    positionals = [p for p in (args.reference_pos, args.current_pos) if p is not None]
    paths = {}
    for name in ("reference", "current"):
        value = getattr(args, name)
        if value is None and positionals:
            value = positionals.pop(0)
        if value is None:
            raise KerafineError(
                f"Missing argument `--{name}`: expected a path, e.g. `kerafine drift "
                f"--reference REF.csv --current CUR.csv`."
            )
        paths[name] = value
    if positionals:
        raise KerafineError(
            f"Invalid value for argument `--current`: received {paths['current']!r} and also {positionals[0]!r}; "
            "expected two paths in all (a reference and a current file)."
        )
    return paths["reference"], paths["current"]


def _drift(args) -> int:
    reference, current = _drift_paths(args)
    return int(
        run(
            reference,
            current,
            categorical=args.categorical,
            json_path=args.json,
            p_value=args.p_value,
            correction=args.correction,
            min_effect=args.min_effect,
            top=args.top,
        )
    )


def add_parser(sub) -> None:
    """Register the command(s) of this module on the ``kerafine`` subparsers object ``sub``."""
    p = sub.add_parser(
        "drift",
        help="compare a current CSV with a reference (CSV or saved profile): exit 1 on drift",
        description=textwrap.dedent("""\
            Test every column of CURRENT against REFERENCE (a CSV, or a directory written by
            ReferenceProfile.save) and print the drifted columns. Exit status: 0 no drift, 1 drift, 2 bad input."""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "reference_pos",
        nargs="?",
        metavar="REFERENCE",
        help="reference CSV or saved profile directory (or use --reference)",
    )
    p.add_argument("current_pos", nargs="?", metavar="CURRENT.csv", help="current CSV (or use --current)")
    p.add_argument("--reference", metavar="REF", help="reference CSV or saved profile directory")
    p.add_argument("--current", metavar="CUR.csv", help="current CSV to test against the reference")
    p.add_argument("--categorical", metavar="COLS", help="comma-separated categorical columns")
    p.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    p.add_argument("--p-value", type=float, default=0.05, help="significance level (default: 0.05)")
    p.add_argument(
        "--correction",
        choices=("bonferroni", "fdr"),
        default="bonferroni",
        help="multiple-testing correction (default: bonferroni)",
    )
    p.add_argument("--min-effect", type=float, default=None, help="smallest effect size reported as drift")
    p.add_argument("--top", type=int, default=20, help="at most this many drifted columns in the table (default: 20)")
    p.set_defaults(func=_drift)
