"""The ``kerafine`` command: ``demo``, ``fit``, ``init-config``, ``evaluate`` and ``drift``.

Run ``kerafine --help`` or ``kerafine COMMAND --help``. The same entry point is
``python -m kerafine``. Every command returns an exit status: 0 on success, 2
on bad input (the message names the argument or config field), 130 when
interrupted with Ctrl-C (re-run the same command to resume), and for
``drift`` 1 when drift is detected.

The package composes the rest of kerafine (data, backbones, transfer,
fine-tuning, callbacks, metrics, drift); nothing outside it imports it (the
data loading that ``fit``, ``evaluate`` and ``update`` share lives below, in
``kerafine/data/_spec.py``). The commands
live in ``demo.py``, ``fit.py`` (``fit``, ``init-config``, ``evaluate``) and
``drift.py``; ``kerafine/update/_command.py`` registers ``update``. This module
holds the parser and the Ctrl-C handling, and imports nothing heavy: each
command imports TensorFlow only when it runs.
"""

from __future__ import annotations

import argparse
import sys

from kerafine.errors import KerafineError

__all__ = ["main"]

# Commands that train or load a Keras model (``drift`` and ``init-config`` never load TensorFlow).
_LOADS_TENSORFLOW = frozenset({"demo", "fit", "evaluate", "update"})


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kerafine",
        description="Transfer learning for Keras 3: pretrained backbones, two-phase fine-tuning, crash-safe "
        "checkpoints, exact AUC, drift alerts and TensorBoard logs.",
        epilog="Start with `kerafine demo`. Each command has its own --help.",
    )
    from kerafine import __version__

    parser.add_argument("--version", action="version", version=f"kerafine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from kerafine.cli import demo, drift, fit
    from kerafine.update import _command as update

    demo.add_parser(sub)
    fit.add_parsers(sub)
    drift.add_parser(sub)
    update.add_parser(sub)  # `kerafine update` lives in kerafine/update/
    return parser


def main(argv=None) -> int:
    """Run the ``kerafine`` command line; returns the exit status.

    Args:
        argv: arguments without the program name. Defaults to ``None``:
            ``sys.argv[1:]``.

    Returns:
        0 on success, 1 when ``drift`` finds drift, 2 on bad input, 130 when
        interrupted.

    Example:

    >>> main(["init-config", "--help"])  # doctest: +ELLIPSIS
    usage: kerafine init-config ...
    0
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an argparse usage error
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command in _LOADS_TENSORFLOW:
        # Before anything imports TensorFlow: its C++ start-up notices go, real errors stay.
        from kerafine._startup import quiet_tensorflow

        quiet_tensorflow()
    interrupted = _InterruptFlag()
    try:
        with interrupted:
            return int(args.func(args))
    except KerafineError as exc:
        if not interrupted.seen:
            print(f"kerafine {args.command}: error: {exc}", file=sys.stderr, flush=True)
            return 2
    except KeyboardInterrupt:
        pass
    except Exception:
        # Ctrl-C while TensorFlow traces a graph surfaces as whatever its context
        # managers raise on the way out (e.g. "Nesting violated"), not as
        # KeyboardInterrupt: after a SIGINT, any error is the interrupt.
        if not interrupted.seen:
            raise
    # The command that resumes: the same one, without --fresh (which would throw the progress away).
    again = " ".join(["kerafine", *(a for a in (sys.argv[1:] if argv is None else argv) if a != "--fresh")])
    print(f"\nInterrupted. Run `{again}` again to resume from the last checkpoint.", file=sys.stderr, flush=True)
    return 130


class _InterruptFlag:
    """Remembers that SIGINT arrived while still raising KeyboardInterrupt as Python does."""

    def __init__(self):
        self.seen = False
        self._previous = None

    def _handler(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self):
        import signal
        import threading

        # Signal handlers can only be set from the main thread (not, e.g., in a notebook worker).
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
