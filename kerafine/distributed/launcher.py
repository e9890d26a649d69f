"""The local launcher: run one script as ``N`` workers of a cluster on 127.0.0.1.

``python -m kerafine.distributed --workers 2 train.py [args]`` picks free
loopback ports, gives each worker its ``TF_CONFIG``, prefixes every output
line with ``[worker i]``, and stops every worker (exiting non-zero) as soon as
one fails. It never listens on anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from kerafine.errors import KerafineError, invalid_argument

__all__ = ["free_ports", "tf_config", "launch", "main"]

HOST = "127.0.0.1"


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now (the OS picks them)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of workers on ``ports`` of 127.0.0.1.

    >>> import json
    >>> json.loads(tf_config([5001, 5002], 1))["task"]
    {'type': 'worker', 'index': 1}
    """
    return json.dumps(
        {"cluster": {"worker": [f"{HOST}:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )


def _pump(stream, prefix: str, out, lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace")
        with lock:
            out.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
            out.flush()
    stream.close()


def _stop(procs, grace: float) -> None:
    """SIGTERM every live worker's process group, SIGKILL what is left after ``grace`` seconds."""
    live = [p for p in procs if p.poll() is None]
    for p in live:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for p in live:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def launch(
    script: str,
    args=(),
    workers: int = 2,
    timeout: float | None = None,
    grace: float = 10.0,
    python: str | None = None,
    out=None,
) -> int:
    """Run ``script`` as ``workers`` processes of one cluster on 127.0.0.1; return the exit code.

    Args:
        script: path of the Python script every worker runs.
        args: its command-line arguments.
        workers: number of worker processes. Defaults to 2.
        timeout: stop everything (exit code 124) after this many seconds.
            Defaults to ``None`` (no limit).
        grace: seconds a worker gets to exit after SIGTERM before SIGKILL. Defaults to 10.
        python: the interpreter. Defaults to ``None`` (this one).
        out: where the prefixed output goes. Defaults to ``None`` (``sys.stdout``).

    Returns:
        0 when every worker exits with 0; otherwise the first failing worker's
        exit code (128 + signal number if it was killed by a signal), 124 on
        timeout, 130 on Ctrl-C.

    Raises:
        KerafineError: for a bad argument, before any worker starts.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise invalid_argument("workers", workers, "a positive int")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise invalid_argument("timeout", timeout, "None or a positive number of seconds")
    if not os.path.isfile(script):
        raise invalid_argument("script", script, "the path of an existing Python script")
    out = sys.stdout if out is None else out
    lock = threading.Lock()
    ports = free_ports(workers)
    procs, pumps = [], []
    for i in range(workers):
        env = dict(os.environ, TF_CONFIG=tf_config(ports, i), PYTHONUNBUFFERED="1")
        p = subprocess.Popen(
            [python or sys.executable, script, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops its children too
        )
        procs.append(p)
        t = threading.Thread(target=_pump, args=(p.stdout, f"[worker {i}] ", out, lock), daemon=True)
        t.start()
        pumps.append(t)
        with lock:
            out.write(f"[launcher] worker {i} pid {p.pid} TF_CONFIG task index {i} of {workers} on {HOST}\n")
            out.flush()
    started = time.monotonic()
    code = None
    reason = None
    try:
        while code is None:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, c = failed[0]
                code = 128 - c if c < 0 else c
                reason = f"worker {i} exited with code {c}; stopping the others"
            elif all(c == 0 for c in codes):
                code = 0
            elif timeout is not None and time.monotonic() - started > timeout:
                code, reason = 124, f"timeout after {timeout:g} s; stopping every worker"
            else:
                time.sleep(0.1)
    except KeyboardInterrupt:
        code, reason = 130, "interrupted; stopping every worker"
    if reason is not None:
        with lock:
            out.write(f"[launcher] {reason}\n")
            out.flush()
    _stop(procs, grace)
    for t in pumps:
        t.join(timeout=5)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kerafine.distributed",
        description="Run a training script as several MultiWorkerMirroredStrategy workers on 127.0.0.1.",
    )
    parser.add_argument("--workers", type=int, default=2, help="number of worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=None, help="stop everything after this many seconds")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL (default 10)")
    parser.add_argument("script", help="the Python script each worker runs")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")
    return parser


def main(argv=None) -> int:
    """``python -m kerafine.distributed [--workers N] [--timeout S] [--grace S] script.py [args]``."""
    ns = _parser().parse_args(argv)
    try:
        return launch(ns.script, ns.args, workers=ns.workers, timeout=ns.timeout, grace=ns.grace)
    except KerafineError as exc:
        print(f"python -m kerafine.distributed: error: {exc}", file=sys.stderr)
        return 2
