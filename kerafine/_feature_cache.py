"""Frozen-backbone features kept on disk, so a resumed ``fine_tune`` does not recompute them.

``fine_tune(..., cache_features=True, callbacks=[CheckpointRestart(dir)])``
computes the backbone's features once and stores them in
``dir/features-<key>/`` (one ``.npy`` per array, no pickle, written under a
temporary name with a CRC32 manifest and renamed into place by
:func:`kerafine._io.atomic_directory`). A resumed run with the same backbone
weights, the same data and the same batch size finds the directory, verifies
the checksums and loads the arrays instead of running the backbone again. A
damaged or partial directory is ignored (and recomputed).

The key is a digest of the backbone's weights, of the data's bytes and of the
batch size: other weights or other data never load these features.

Example:

>>> import tempfile, numpy as np
>>> from kerafine import _feature_cache
>>> d = tempfile.mkdtemp()
>>> calls = []
>>> def compute():
...     calls.append(1)
...     return {"train": np.arange(6.0).reshape(3, 2)}
>>> a, loaded = _feature_cache.load_or_compute(d, "k1", compute)
>>> b, loaded_again = _feature_cache.load_or_compute(d, "k1", compute)
>>> loaded, loaded_again, len(calls), bool((a["train"] == b["train"]).all())
(False, True, 1, True)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Optional

import numpy as np

from kerafine import _io

__all__ = ["data_digest", "features_key", "load_or_compute"]


def data_digest(*arrays) -> str:
    """Digest of the bytes, dtypes and shapes of arrays (dicts and lists of arrays too; ``None`` allowed)."""
    h = hashlib.blake2b(digest_size=16)

    def feed(value):
        if value is None:
            h.update(b"none")
        elif isinstance(value, dict):
            for k in sorted(value):
                h.update(str(k).encode())
                feed(value[k])
        elif isinstance(value, (list, tuple)):
            h.update(b"[")
            for v in value:
                feed(v)
            h.update(b"]")
        else:
            a = np.ascontiguousarray(np.asarray(value))
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(memoryview(a).cast("B") if a.ndim else a.tobytes())

    for a in arrays:
        feed(a)
    return h.hexdigest()


def features_key(backbone, data_key: str, batch_size: int) -> str:
    """Key of a feature set: backbone weights, data and batch size."""
    from kerafine.callbacks.predictions import weights_digest

    text = f"{weights_digest(backbone).hex()}|{data_key}|{int(batch_size)}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _load(path: Path) -> Optional[dict]:
    if not path.is_dir() or _io.verify_manifest(path):
        return None
    names = _io.read_manifest_meta(path).get("arrays", [])
    out = {}
    for name in names:
        with open(path / f"{name}.npy", "rb") as f:
            out[name] = np.load(f, allow_pickle=False)
    return out


def load_or_compute(directory, key: str, compute: Callable[[], Mapping[str, np.ndarray]], chief: bool = True):
    """``(arrays, loaded)``: the arrays stored under ``key`` in ``directory``, or ``compute()``'s, then stored.

    Args:
        directory: where feature sets live (a ``CheckpointRestart`` directory).
        key: from :func:`features_key`.
        compute: returns ``{name: array}`` (``None`` values are kept as absent).
        chief: write only on the chief worker. Defaults to ``True``.

    Returns:
        ``(dict of arrays, True if read from disk)``.
    """
    path = Path(directory) / f"features-{key}"
    found = _load(path)
    if found is not None:
        return found, True
    arrays = {k: v for k, v in dict(compute()).items() if v is not None}
    if chief:
        os.makedirs(directory, exist_ok=True)
        if path.exists():  # a damaged earlier copy: replace it
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        with _io.atomic_directory(path, manifest_meta={"arrays": sorted(arrays)}) as tmp:
            for name, a in arrays.items():
                with open(tmp / f"{name}.npy", "wb") as f:
                    np.save(f, np.asarray(a), allow_pickle=False)
    return arrays, False
