"""Crash-safe file writing, checksummed manifests and JSON + ``.npz`` state.

Every file kerafine writes that a later run reads back (checkpoints, drift
profiles, reports) goes through this module:

* writes are atomic: a temporary name in the same directory, flush, fsync,
  ``os.replace`` onto the final name, then fsync the directory so the rename
  itself survives a power cut. A kill at any moment leaves either the old file
  or the new one, never half of one;
* a directory of files is committed as a whole with :func:`atomic_directory`
  and described by a ``MANIFEST.json`` holding each file's size and CRC32, so a
  reader can tell a truncated or bit-flipped file from a good one;
* state is stored as JSON for plain values plus one ``.npz`` for numpy arrays,
  never pickle, so loading a file cannot run code.

No Keras or TensorFlow import here: this is shared plumbing for every layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kerafine.errors import CheckpointError

MANIFEST_NAME = "MANIFEST.json"
_CHUNK = 4 * 1024 * 1024
_ARRAY_TAG = "__ndarray__"


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so that renames and creations inside it are durable."""
    # Not every platform lets a directory be opened (Windows); durability of the
    # rename is then up to the OS, and there is nothing more we can do.
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync dir)."""
    path = Path(path)
    tmp = _temp_sibling(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return os.fspath(value)
    return value


def dumps_json(obj: Any) -> str:
    """JSON text of ``obj``; numpy scalars and arrays become plain numbers and lists.

    ``NaN`` and ``Infinity`` are kept (Python's ``json`` reads them back), since
    a metric's "no best value yet" is naturally ``inf``.
    """
    return json.dumps(_to_jsonable(obj), indent=2, sort_keys=True, allow_nan=True)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, dumps_json(obj) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, raising :class:`CheckpointError` naming the file if unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Cannot read JSON file {os.fspath(path)!r}: {exc}") from exc


def crc32_file(path: str | os.PathLike) -> str:
    """CRC32 of a file as 8 hex digits, read in 4 MiB chunks.

    CRC32 rather than SHA-256: the aim is to catch truncation and bit flips,
    not tampering, and it hashes a 177 MB checkpoint about twice as fast.
    """
    crc = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
    return f"{crc & 0xFFFFFFFF:08x}"


def write_manifest(
    directory: str | os.PathLike,
    extra: Mapping[str, Any] | None = None,
    checksums: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict:
    """Write ``MANIFEST.json`` listing every file in ``directory`` with size and CRC32.

    Sub-directories are walked; paths are stored relative to ``directory`` with
    forward slashes. ``extra`` is stored under ``"meta"``. ``checksums`` maps a
    relative path to ``{"size", "crc32"}`` already computed while writing it
    (saves reading a large file back); it is used only if the size on disk
    agrees. Returns the manifest.
    """
    directory = Path(directory)
    checksums = checksums or {}
    files = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != MANIFEST_NAME:
            rel = p.relative_to(directory).as_posix()
            size = p.stat().st_size
            known = checksums.get(rel)
            crc = known["crc32"] if known and known.get("size") == size else crc32_file(p)
            files[rel] = {"size": size, "crc32": crc}
    manifest = {"format": 1, "files": files, "meta": dict(extra or {})}
    atomic_write_json(directory / MANIFEST_NAME, manifest)
    return manifest


def verify_manifest(directory: str | os.PathLike) -> list[str]:
    """Check ``directory`` against its ``MANIFEST.json``.

    Returns:
        A list of human-readable problems (missing manifest, missing file, size
        or checksum mismatch), empty when everything verifies.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        return [f"{manifest_path} is missing"]
    try:
        manifest = read_json(manifest_path)
        files = manifest["files"]
    except (CheckpointError, KeyError, TypeError) as exc:
        return [f"{manifest_path} is unreadable ({exc})"]
    problems = []
    for rel, info in files.items():
        p = directory / rel
        if not p.is_file():
            problems.append(f"{p} is missing")
            continue
        size = p.stat().st_size
        if size != info.get("size"):
            problems.append(f"{p} has {size} bytes, manifest says {info.get('size')}")
            continue
        if crc32_file(p) != info.get("crc32"):
            problems.append(f"{p} fails its CRC32 check")
    return problems


def read_manifest_meta(directory: str | os.PathLike) -> dict:
    """The ``"meta"`` mapping of a directory's manifest (``{}`` if absent)."""
    return dict(read_json(Path(directory) / MANIFEST_NAME).get("meta", {}))


@contextlib.contextmanager
def atomic_directory(
    final: str | os.PathLike,
    manifest_meta: Mapping[str, Any] | None = None,
    checksums: dict[str, Mapping[str, Any]] | None = None,
) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it into place as a whole.

    Files written inside the yielded directory are fsynced, a ``MANIFEST.json``
    with their checksums is added, and the directory is renamed to ``final``
    only if the ``with`` block finished without an exception. On error (a full
    disk, a kill) the temporary directory is removed, or, after a kill, left
    behind under a dot-name that readers ignore; ``final`` is never half-written.

    ``checksums`` (optional) is a dict the ``with`` block may fill with the
    ``{"size", "crc32"}`` of files it computed while writing them (see
    :func:`write_manifest`).

    Raises:
        FileExistsError: if ``final`` already exists.

    Example:

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_directory(root / "ckpt-1") as tmp:
    ...     _ = (tmp / "a.txt").write_text("hello")
    >>> verify_manifest(root / "ckpt-1")
    []
    """
    final = Path(final)
    if final.exists():
        raise FileExistsError(f"{final} already exists")
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for p in tmp.rglob("*"):
            if p.is_file():
                with open(p, "rb+") as f:
                    os.fsync(f.fileno())
        write_manifest(tmp, manifest_meta, checksums)
        fsync_dir(tmp)
        os.rename(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def split_arrays(value: Any, arrays, tag: str = _ARRAY_TAG) -> Any:
    """Replace every array in a nested state by ``{tag: key}``; collect the arrays.

    ``arrays`` is a dict (keys ``"a0"``, ``"a1"``... for ``.npz`` files) or a
    list (keys are indices, for raw concatenated files). The one array
    splitter of kerafine (``save_state`` and checkpoints use it).
    """
    if isinstance(value, np.ndarray):
        if isinstance(arrays, list):
            arrays.append(value)
            return {tag: len(arrays) - 1}
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {tag: key}
    if isinstance(value, Mapping):
        return {str(k): split_arrays(v, arrays, tag) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [split_arrays(v, arrays, tag) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def join_arrays(value: Any, arrays, tag: str = _ARRAY_TAG, copy: bool = False) -> Any:
    """Inverse of :func:`split_arrays` (``copy=True`` returns writable copies of read-only buffers)."""
    if isinstance(value, dict):
        if set(value) == {tag}:
            a = arrays[value[tag]]
            return np.array(a) if copy else np.asarray(a)
        return {k: join_arrays(v, arrays, tag, copy) for k, v in value.items()}
    if isinstance(value, list):
        return [join_arrays(v, arrays, tag, copy) for v in value]
    return value


def save_state(directory: str | os.PathLike, name: str, state: Mapping[str, Any]) -> None:
    """Save a nested state (JSON-able values and numpy arrays) as ``name.json`` + ``name.npz``.

    Arrays anywhere in the structure (also inside lists, e.g. a list of weight
    arrays) go to the ``.npz``; the JSON holds a placeholder for each. Each file
    is written atomically.
    """
    directory = Path(directory)
    arrays: dict[str, np.ndarray] = {}
    skeleton = split_arrays(dict(state), arrays)
    if arrays:
        buf_path = directory / f"{name}.npz"
        tmp = _temp_sibling(buf_path)
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, buf_path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    atomic_write_json(directory / f"{name}.json", skeleton)


def load_state(directory: str | os.PathLike, name: str) -> dict:
    """Inverse of :func:`save_state`. Never unpickles (``allow_pickle=False``)."""
    directory = Path(directory)
    skeleton = read_json(directory / f"{name}.json")
    npz_path = directory / f"{name}.npz"
    arrays: dict[str, np.ndarray] = {}
    if npz_path.is_file():
        try:
            with np.load(npz_path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"Cannot read array file {os.fspath(npz_path)!r}: {exc}") from exc
    return join_arrays(skeleton, arrays)


def check_writable_directory(path: str | os.PathLike, argument: str) -> Path:
    """Create ``path`` if needed and check a file can be written in it.

    Raises:
        KerafineError: naming ``argument`` when ``path`` is a file or not writable.
    """
    from kerafine.errors import invalid_argument

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise invalid_argument(argument, os.fspath(path), "a directory path", "It names an existing file.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".kerafine-write-test-"):
            pass
    except OSError as exc:
        raise invalid_argument(
            argument, os.fspath(path), "a writable directory", f"Writing there failed: {exc.strerror or exc}."
        ) from exc
    return path
