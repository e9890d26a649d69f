"""Embedded demo data: a simulated server fleet and a small image-transfer task.

Nothing is downloaded. :func:`generate_fleet` simulates a fleet of servers
deterministically from a seed and writes the four metric CSVs (plus the
failures table) in exactly the layout :func:`kerafine.data.load_server_metrics`
reads, so the demo exercises the same loader a user points at their own data.

What the simulation contains, and why:

* **diurnal load**: CPU, memory and disk IO follow a daily cycle with a
  per-server phase, plus autocorrelated noise and short benign bursts, so that
  "CPU is high" alone does not mean "about to fail";
* **missing samples**: a fraction of samples is dropped at random (short gaps
  the loader interpolates) plus the occasional long monitoring outage (which
  it reports); sample times jitter by a few seconds around the grid;
* **restarts**: planned reboots reset ``uptime`` with no failure;
* **failures** follow a **precursor** of 40 to 100 steps, one of three kinds:
  a memory leak (memory climbs towards 100 %), CPU saturation (CPU pinned
  high with the usual noise gone), or IO stalls (disk IO collapses in
  intermittent stalls). Both fleets' precursors go 60 % of the way, so they
  overlap with normal load and a few labelled failures are not enough to learn
  them. The server is then down for a few samples and comes back with a fresh
  uptime.
* **three fleets with different hardware profiles** (``"A"``, ``"B"``, ``"C"``):
  different baselines, amplitudes, noise and disk throughput. The demo
  pretrains on unlabeled fleet A and transfers to few labels of fleet B;
  fleet C is fleet B's kind of server after a hardware and load change, the
  drift that ``kerafine update`` answers (notebook 04).

:func:`load_digits_task` splits scikit-learn's bundled 8x8 digits into a
pretraining task (some classes) and a transfer task (the other classes).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from kerafine.errors import check_int, invalid_argument

__all__ = ["FleetProfile", "FLEET_PROFILES", "generate_fleet", "simulate_fleet", "load_digits_task"]

METRIC_FILES = ("cpu", "memory", "diskio", "uptime")


@dataclasses.dataclass(frozen=True)
class FleetProfile:
    """Hardware and workload profile of a simulated fleet.

    Attributes:
        cpu_base: mean CPU utilisation, percent.
        cpu_amp: amplitude of the daily CPU cycle, percent.
        cpu_noise: standard deviation of the CPU noise, percent.
        mem_base: mean memory utilisation, percent.
        mem_amp: amplitude of the daily memory cycle, percent.
        io_base: mean disk throughput, MB/s.
        io_noise: relative (log-normal) spread of disk throughput.
        failure_rate: expected failures per server per simulated day.
        restart_rate: expected planned restarts per server per simulated day.
        precursor_strength: how far a precursor moves the metrics before a
            failure, 1.0 being "all the way" (memory to ~99 %, CPU to ~97 %,
            IO stalled most of the time).
    """

    cpu_base: float
    cpu_amp: float
    cpu_noise: float
    mem_base: float
    mem_amp: float
    io_base: float
    io_noise: float
    failure_rate: float
    restart_rate: float
    precursor_strength: float = 1.0


FLEET_PROFILES = {
    # Older 16-core web nodes: lower load, noisier, spinning disks.
    "A": FleetProfile(
        cpu_base=35.0,
        cpu_amp=18.0,
        cpu_noise=6.0,
        mem_base=45.0,
        mem_amp=8.0,
        io_base=25.0,
        io_noise=0.35,
        failure_rate=2.5,
        restart_rate=0.5,
        precursor_strength=0.6,
    ),
    # Newer 64-core database nodes: busier, smoother, NVMe throughput, fewer failures.
    "B": FleetProfile(
        cpu_base=50.0,
        cpu_amp=12.0,
        cpu_noise=4.0,
        mem_base=60.0,
        mem_amp=5.0,
        io_base=140.0,
        io_noise=0.25,
        failure_rate=0.9,
        restart_rate=0.5,
        precursor_strength=0.6,
    ),
    # The same database nodes after a hardware and load change (bigger working set, shared
    # storage): hotter CPU, fuller memory, slower and noisier IO. A model trained on fleet B
    # sees its inputs drift and its failures look different.
    "C": FleetProfile(
        cpu_base=66.0,
        cpu_amp=14.0,
        cpu_noise=6.0,
        mem_base=74.0,
        mem_amp=6.0,
        io_base=70.0,
        io_noise=0.4,
        failure_rate=1.2,
        restart_rate=0.5,
        precursor_strength=0.6,
    ),
}

_PRECURSORS = ("memory_leak", "cpu_saturation", "io_stall")


def _ar1(rng, shape, phi: float, scale: float) -> np.ndarray:
    """AR(1) noise along the last axis, built with an IIR filter instead of a Python loop."""
    from scipy.signal import lfilter

    eps = rng.normal(0.0, scale * np.sqrt(1 - phi**2), size=shape)
    return lfilter([1.0], [1.0, -phi], eps, axis=-1)


def simulate_fleet(
    fleet: str = "A",
    n_servers: int = 12,
    n_steps: int = 2880,
    seed: int = 0,
    freq_seconds: int = 60,
    start: str = "2024-03-04 00:00:00",
):
    """Simulate a fleet and return its tables as pandas DataFrames (no files written).

    Args:
        fleet: ``"A"``, ``"B"`` or ``"C"``, a key of :data:`FLEET_PROFILES`. Defaults to ``"A"``.
        n_servers: servers in the fleet. Defaults to 12.
        n_steps: samples per server. Defaults to 2880 (two days at one per minute).
        seed: random seed; the same seed gives the same fleet. Defaults to 0.
        freq_seconds: seconds between samples. Defaults to 60.
        start: first timestamp. Defaults to ``"2024-03-04 00:00:00"``.

    Returns:
        A dict of DataFrames: ``"cpu"``, ``"memory"``, ``"diskio"``, ``"uptime"``
        (columns ``server, timestamp, <value>``) and ``"failures"`` (columns
        ``server, timestamp, precursor``).

    Example:

    >>> t = simulate_fleet("B", n_servers=2, n_steps=300, seed=1)
    >>> sorted(t), list(t["cpu"].columns)
    (['cpu', 'diskio', 'failures', 'memory', 'uptime'], ['server', 'timestamp', 'cpu'])
    """
    import pandas as pd

    if fleet not in FLEET_PROFILES:
        raise invalid_argument("fleet", fleet, f"one of {sorted(FLEET_PROFILES)}")
    for name, value in (("n_servers", n_servers), ("n_steps", n_steps), ("freq_seconds", freq_seconds)):
        check_int(name, value, minimum=1, expected="a positive int")
    p = FLEET_PROFILES[fleet]
    # Different fleets draw from different streams even with the same seed.
    rng = np.random.default_rng([seed, ord(fleet)])
    S, T = n_servers, n_steps
    steps_per_day = 86400 / freq_seconds
    t = np.arange(T)
    phase = rng.uniform(0, 2 * np.pi, size=(S, 1))
    day = np.sin(2 * np.pi * t[None, :] / steps_per_day + phase)

    cpu = p.cpu_base + p.cpu_amp * day + _ar1(rng, (S, T), 0.8, p.cpu_noise)
    # Benign bursts: short CPU spikes that do not precede anything.
    bursts = rng.random((S, T)) < 0.004
    burst_len = np.zeros((S, T))
    burst_len[bursts] = rng.uniform(15, 35, size=bursts.sum())
    from scipy.signal import lfilter

    cpu += lfilter([1.0], [1.0, -0.8], burst_len, axis=-1)
    mem = p.mem_base + p.mem_amp * np.sin(2 * np.pi * t[None, :] / steps_per_day + phase + 0.7)
    mem = mem + _ar1(rng, (S, T), 0.95, 1.5)
    io = p.io_base * (1 + 0.4 * day) * np.exp(_ar1(rng, (S, T), 0.6, p.io_noise))

    up = np.empty((S, T))
    keep = rng.random((S, T)) > 0.01  # 1 % of samples lost in transit
    failures = []
    for s in range(S):
        events = []
        n_fail = rng.poisson(p.failure_rate * T / steps_per_day) if T > 240 else 0
        n_boot = rng.poisson(p.restart_rate * T / steps_per_day) if T > 170 else 0
        # Keep the first 120 steps clean so every server starts with a full window.
        for tf in np.sort(rng.integers(220, T - 10, size=n_fail)):
            if events and tf - events[-1][0] < 160:
                continue
            events.append((int(tf), "failure"))
        for tb in rng.integers(150, T - 10, size=n_boot):
            if all(abs(int(tb) - e[0]) > 120 for e in events):
                events.append((int(tb), "reboot"))
        events.sort()
        boot = -int(rng.integers(200, 5000))  # step at which the server last booted
        up_s = np.empty(T)
        prev = 0
        for te, kind in events + [(T, "end")]:
            up_s[prev:te] = (np.arange(prev, te) - boot) * freq_seconds
            if kind == "end":
                break
            if kind == "failure":
                dur = int(rng.integers(40, 101))
                a = te - dur
                ramp = p.precursor_strength * np.linspace(0.0, 1.0, dur) ** 1.5
                kind_p = _PRECURSORS[int(rng.integers(0, 3))]
                if kind_p == "memory_leak":
                    mem[s, a:te] += ramp * (99.0 - mem[s, a:te].mean())
                elif kind_p == "cpu_saturation":
                    target = 97.0 + rng.normal(0, 0.8, dur)
                    cpu[s, a:te] = (1 - ramp) * cpu[s, a:te] + ramp * target
                else:
                    stall = rng.random(dur) < 0.15 + 0.75 * ramp
                    io[s, a:te] = np.where(stall, io[s, a:te] * rng.uniform(0.0, 0.08, dur), io[s, a:te])
                    cpu[s, a:te] -= 10.0 * ramp  # threads blocked on IO leave the CPU idle
                down = int(rng.integers(3, 9))
                keep[s, te : te + down] = False
                failures.append((s, te, kind_p))
                boot = te + down
            else:
                down = int(rng.integers(1, 3))
                keep[s, te : te + down] = False
                boot = te + down
            prev = te
        up[s] = np.maximum(up_s, 0.0) + rng.uniform(0, 1.0, T)
        # A rare monitoring outage (long gap) unrelated to failures.
        if T > 700 and rng.random() < 0.3:
            g = int(rng.integers(300, T - 300))
            keep[s, g : g + int(rng.integers(15, 30))] = False
    cpu = np.clip(cpu, 0.0, 100.0)
    mem = np.clip(mem, 0.0, 100.0)
    io = np.maximum(io, 0.0)

    names = np.array([f"{fleet.lower()}-{i:03d}" for i in range(S)])
    base = pd.Timestamp(start)
    jitter = rng.integers(0, max(1, freq_seconds // 3), size=(S, T))
    seconds = t[None, :] * freq_seconds + jitter
    srv_idx, step_idx = np.nonzero(keep)
    stamps = base + pd.to_timedelta(seconds[srv_idx, step_idx], unit="s")
    out = {}
    for name, values, digits in (("cpu", cpu, 2), ("memory", mem, 2), ("diskio", io, 2), ("uptime", up, 0)):
        out[name] = pd.DataFrame(
            {"server": names[srv_idx], "timestamp": stamps, name: np.round(values[srv_idx, step_idx], digits)}
        )
    out["uptime"]["uptime"] = out["uptime"]["uptime"].astype(np.int64)
    f_srv = [names[s] for s, _, _ in failures]
    f_time = [base + pd.to_timedelta(te * freq_seconds, unit="s") for _, te, _ in failures]
    out["failures"] = pd.DataFrame(
        {
            "server": f_srv,
            "timestamp": pd.to_datetime(pd.Series(f_time, dtype="datetime64[ns]")),
            "precursor": [k for _, _, k in failures],
        }
    )
    return out


def generate_fleet(
    out_dir,
    fleet: str = "A",
    n_servers: int = 12,
    n_steps: int = 2880,
    seed: int = 0,
    freq_seconds: int = 60,
    progress: bool = True,
) -> dict[str, Path]:
    """Simulate a fleet (see :func:`simulate_fleet`) and write it as CSV files.

    Files written in ``out_dir``: ``cpu.csv``, ``memory.csv``, ``diskio.csv``,
    ``uptime.csv`` (columns ``server,timestamp,<metric>``) and ``failures.csv``
    (``server,timestamp,precursor``). Each is written atomically, so an
    interrupted run never leaves a half-written CSV behind.

    Args:
        out_dir: directory to write into (created if needed).
        fleet: ``"A"``, ``"B"`` or ``"C"``. Defaults to ``"A"``.
        n_servers: servers in the fleet. Defaults to 12.
        n_steps: samples per server. Defaults to 2880.
        seed: random seed. Defaults to 0.
        freq_seconds: seconds between samples. Defaults to 60.
        progress: a ``tqdm`` bar (simulation, then each file written), shown
            only when stderr is an interactive terminal and cleared when done
            (``TQDM_DISABLE=1`` in the environment also hides it). Defaults to
            ``True``; ``False`` never shows it.

    Returns:
        ``{"cpu": path, "memory": path, "diskio": path, "uptime": path, "failures": path}``,
        ready to pass to :func:`kerafine.data.load_server_metrics` as keyword arguments.

    Example:

    >>> import tempfile
    >>> paths = generate_fleet(tempfile.mkdtemp(), "A", n_servers=2, n_steps=300)
    >>> sorted(p.name for p in paths.values())
    ['cpu.csv', 'diskio.csv', 'failures.csv', 'memory.csv', 'uptime.csv']
    """
    from kerafine._io import atomic_write_text, check_writable_directory

    if not isinstance(progress, bool):
        raise invalid_argument("progress", progress, "True or False")
    out_dir = check_writable_directory(out_dir, "out_dir")
    from tqdm.auto import tqdm

    names = (*METRIC_FILES, "failures")
    # disable=None: tqdm stays silent when stderr is not a terminal (logs, CI, pytest). Most of the time
    # (about 1 s a fleet of the demo's size) goes to writing the CSVs, hence one step a file.
    with tqdm(
        total=1 + len(names), desc=f"fleet {fleet}", unit="step", leave=False, disable=None if progress else True
    ) as bar:
        bar.set_postfix_str("simulating")
        tables = simulate_fleet(fleet, n_servers, n_steps, seed, freq_seconds)
        bar.update(1)
        paths = {}
        for name in names:
            bar.set_postfix_str(f"writing {name}.csv")
            path = out_dir / f"{name}.csv"
            atomic_write_text(path, tables[name].to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S"))
            paths[name] = path
            bar.update(1)
    return paths


def load_digits_task(pretrain_classes=(0, 1, 2, 3, 4), image_size: int = 32, seed: int = 0):
    """The digits transfer task: pretrain on some digit classes, transfer to the others.

    scikit-learn's bundled 8x8 digits (no download) are upscaled to
    ``image_size`` x ``image_size`` x 3 in [0, 255] so that ImageNet-style
    backbones (which need at least 32x32 RGB) accept them.

    Args:
        pretrain_classes: digit classes of the pretraining task; the rest form
            the transfer task, relabelled ``0..k-1``. Defaults to ``(0, 1, 2, 3, 4)``.
        image_size: output side in pixels, a multiple of 8. Defaults to 32.
        seed: seed of the shuffle before splitting. Defaults to 0.

    Returns:
        ``{"pretrain": (x, y), "transfer_train": (x, y), "transfer_test": (x, y)}``
        with ``x`` float32 ``(n, image_size, image_size, 3)`` and ``y`` int64.
        The transfer task is split 30 % / 70 % into a small training set and a test set.

    Example:

    >>> task = load_digits_task()
    >>> task["pretrain"][0].shape[1:], sorted(set(task["transfer_train"][1].tolist()))
    ((32, 32, 3), [0, 1, 2, 3, 4])
    """
    from sklearn.datasets import load_digits

    expected = "a positive multiple of 8 (at least 8)"
    if check_int("image_size", image_size, minimum=8, expected=expected) % 8:
        raise invalid_argument("image_size", image_size, expected)
    digits = load_digits()
    pre = set(int(c) for c in pretrain_classes)
    if not pre or not pre < set(range(10)):
        raise invalid_argument("pretrain_classes", pretrain_classes, "a non-empty proper subset of 0..9")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    images = digits.images[order].astype(np.float32) * (255.0 / 16.0)
    target = digits.target[order].astype(np.int64)
    k = image_size // 8
    big = np.repeat(np.repeat(images, k, axis=1), k, axis=2)
    x = np.repeat(big[..., None], 3, axis=-1)
    is_pre = np.isin(target, sorted(pre))
    rest = sorted(set(range(10)) - pre)
    y_rest = np.searchsorted(np.array(rest), target[~is_pre])
    x_rest = x[~is_pre]
    n_train = int(round(0.3 * len(x_rest)))
    return {
        "pretrain": (x[is_pre], np.searchsorted(np.array(sorted(pre)), target[is_pre]).astype(np.int64)),
        "transfer_train": (x_rest[:n_train], y_rest[:n_train].astype(np.int64)),
        "transfer_test": (x_rest[n_train:], y_rest[n_train:].astype(np.int64)),
    }


def _fleet_dir_is_complete(directory) -> bool:
    directory = Path(directory)
    return all((directory / f"{n}.csv").is_file() for n in (*METRIC_FILES, "failures"))


def _remove_partial(directory) -> None:
    for n in (*METRIC_FILES, "failures"):
        p = Path(directory) / f"{n}.csv"
        if p.exists():
            os.remove(p)
