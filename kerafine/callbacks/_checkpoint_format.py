"""The on-disk format of a ``CheckpointRestart`` checkpoint, apart from the callback.

A checkpoint is a directory ``ckpt-<8-digit sequence>`` built under a
temporary dot-name and renamed into place (:func:`kerafine._io.atomic_directory`,
with a CRC32 manifest). It holds two files:

* ``variables.bin``: every array (model variables, optimizer variables,
  running metric values, arrays inside callback states) back to back, raw;
* ``checkpoint.json``: ``{"format", "groups": {group: [{dtype, shape, offset,
  nbytes}]}, "state": ...}``, the state with each array replaced by
  ``{"__array__": index}`` (:func:`kerafine._io.split_arrays`).

No pickle anywhere. Also here: the architecture fingerprint a checkpoint is
checked against, and directory housekeeping (listing, atomic removal of old
checkpoints, leftovers of killed processes).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import zlib
from pathlib import Path

import numpy as np

from kerafine import _io, _keras_compat

FORMAT_VERSION = 1
_CKPT_RE = re.compile(r"^ckpt-(\d{8})$")
_LEFTOVER_RE = re.compile(r"^\.ckpt-\d{8}\.(?:tmp|del)-(\d+)-[0-9a-f]+$")
_VARIABLES = "variables.bin"
_META = "checkpoint.json"
_ARRAY_TAG = "__array__"


def _list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``(sequence number, path)`` of complete-looking checkpoints, newest first."""
    out = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        m = _CKPT_RE.match(entry.name)
        if m and entry.is_dir():
            out.append((int(m.group(1)), Path(entry.path)))
    out.sort(reverse=True)
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_tree_atomically(path: Path, background: bool = False) -> threading.Thread | None:
    # Rename first: a kill during rmtree then leaves a dot-name that readers
    # ignore (and the next run removes), never a half-deleted checkpoint that
    # looks like a corrupt one. Freeing 100s of MB can then happen beside training.
    doomed = path.with_name(f".{path.name}.del-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        os.rename(path, doomed)
    except OSError:
        return None
    if background:
        thread = threading.Thread(target=shutil.rmtree, args=(doomed, True), name="kerafine-rm", daemon=True)
        thread.start()
        return thread
    shutil.rmtree(doomed, ignore_errors=True)
    return None


def _write_checkpoint(
    directory: Path, groups: dict[str, list[np.ndarray]], state: dict, checksums: dict | None = None
) -> None:
    """Write every array into one raw file, and the index plus the state into one JSON file.

    Two files and one sequential write keep the fsyncs few; no pickle. The
    CRC32 of the raw file is computed from memory in a second thread while
    the file is written (zlib and file writes release the GIL) and put in
    ``checksums`` for the manifest, instead of reading 100s of MB back.
    """
    state_arrays: list = []
    skeleton = _io.split_arrays(state, state_arrays, tag=_ARRAY_TAG)
    groups = dict(groups, state=state_arrays)
    index, buffers = {}, []
    offset = 0
    for group, arrays in groups.items():
        entries = []
        for a in arrays:
            # asarray(order="C"), not ascontiguousarray, which turns scalars into shape (1,).
            a = np.asarray(a, order="C")
            buffers.append(a.tobytes() if a.ndim == 0 else memoryview(a).cast("B"))
            entries.append({"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset, "nbytes": a.nbytes})
            offset += a.nbytes
        index[group] = entries
    crc = [0]

    def checksum():
        value = 0
        for b in buffers:
            value = zlib.crc32(b, value)
        crc[0] = value

    worker = threading.Thread(target=checksum, name="kerafine-crc32")
    worker.start()
    try:
        with open(directory / _VARIABLES, "wb") as f:
            for b in buffers:
                f.write(b)
    finally:
        worker.join()
    if checksums is not None:
        checksums[_VARIABLES] = {"size": offset, "crc32": f"{crc[0] & 0xFFFFFFFF:08x}"}
    # Inside the temporary directory a plain write suffices: atomic_directory
    # fsyncs every file before the rename.
    with open(directory / _META, "w", encoding="utf-8") as f:
        f.write(_io.dumps_json({"format": FORMAT_VERSION, "groups": index, "state": skeleton}))


def _read_checkpoint(directory: Path) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """``(state, {group: arrays})`` of a checkpoint directory (not verified here)."""
    meta = _io.read_json(directory / _META)
    with open(directory / _VARIABLES, "rb") as f:
        blob = f.read()
    arrays = {}
    for group, entries in meta["groups"].items():
        arrays[group] = [
            np.frombuffer(
                blob, dtype=np.dtype(e["dtype"]), count=int(np.prod(e["shape"], dtype=np.int64)), offset=e["offset"]
            ).reshape(e["shape"])
            for e in entries
        ]
    state = _io.join_arrays(meta["state"], arrays.pop("state", []), tag=_ARRAY_TAG, copy=True)
    return state, arrays


def _fingerprint(model) -> dict:
    """Architecture summary: layer classes and (name, shape, dtype) of every variable.

    Variable *paths* are left out on purpose: Keras numbers them per process
    (``dense_3``), so the same architecture built after another model would
    not match.
    """
    layers = [type(layer).__name__ for layer in _keras_compat.flatten_layers(model, include_self=False)]
    variables = [[v.name, [int(d) for d in v.shape], str(v.dtype)] for v in model.variables]
    return {"model_class": type(model).__name__, "layers": layers, "variables": variables}


def _fingerprint_difference(saved: dict, current: dict) -> str | None:
    if saved == current:
        return None
    if saved.get("model_class") != current.get("model_class"):
        return f"model class {saved.get('model_class')} vs {current.get('model_class')}"
    if saved.get("layers") != current.get("layers"):
        a, b = saved.get("layers", []), current.get("layers", [])
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return f"layer #{i}: {x} in the checkpoint, {y} in the model"
        return f"{len(a)} layers in the checkpoint, {len(b)} in the model"
    a, b = saved.get("variables", []), current.get("variables", [])

    def show(v):
        return f"{v[0]} {tuple(v[1])} {v[2]}"

    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"variable #{i}: {show(x)} in the checkpoint, {show(y)} in the model"
    return f"{len(a)} variables in the checkpoint, {len(b)} in the model"
