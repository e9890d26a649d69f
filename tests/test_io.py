import errno
import json
import os

import numpy as np
import pytest

from kerafine import _io
from kerafine.errors import CheckpointError, KerafineError


def test_atomic_write_leaves_old_file_intact_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    _io.atomic_write_json(target, {"epoch": 1})

    def failing_fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_io.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        _io.atomic_write_json(target, {"epoch": 2})
    assert json.loads(target.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left behind


def test_json_keeps_infinity_and_numpy_scalars(tmp_path):
    _io.atomic_write_json(tmp_path / "a.json", {"best": np.float32(np.inf), "n": np.int64(3), "v": np.arange(2)})
    assert _io.read_json(tmp_path / "a.json") == {"best": float("inf"), "n": 3, "v": [0, 1]}


def test_atomic_directory_commits_whole_and_manifest_catches_truncation_and_bit_flips(tmp_path):
    final = tmp_path / "ckpt-0001"
    with _io.atomic_directory(final, manifest_meta={"epoch": 1}) as d:
        (d / "weights.bin").write_bytes(bytes(range(256)) * 10)
        (d / "sub").mkdir()
        (d / "sub" / "x.txt").write_text("hi")
    assert _io.verify_manifest(final) == []
    assert _io.read_manifest_meta(final) == {"epoch": 1}

    data = bytearray((final / "weights.bin").read_bytes())
    data[100] ^= 0x01
    (final / "weights.bin").write_bytes(bytes(data))
    assert any("CRC32" in p for p in _io.verify_manifest(final))

    (final / "weights.bin").write_bytes(bytes(data[:50]))
    assert any("bytes" in p for p in _io.verify_manifest(final))

    (final / "sub" / "x.txt").unlink()
    assert any("missing" in p for p in _io.verify_manifest(final))


def test_atomic_directory_removes_the_temporary_dir_on_error_and_never_creates_final(tmp_path):
    final = tmp_path / "ckpt"
    with pytest.raises(RuntimeError):
        with _io.atomic_directory(final) as d:
            (d / "half.bin").write_bytes(b"x")
            raise RuntimeError("killed mid-write")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_refuses_to_overwrite(tmp_path):
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(FileExistsError):
        with _io.atomic_directory(tmp_path / "ckpt"):
            pass


def test_verify_manifest_reports_missing_and_unreadable_manifest(tmp_path):
    assert "missing" in _io.verify_manifest(tmp_path)[0]
    (tmp_path / _io.MANIFEST_NAME).write_text("{not json")
    assert "unreadable" in _io.verify_manifest(tmp_path)[0]


def test_state_round_trip_with_nested_arrays_and_no_pickle(tmp_path):
    state = {
        "version": 1,
        "best": float("inf"),
        "best_weights": [np.ones((2, 3), "float32"), np.arange(4)],
        "nested": {"counts": np.array([1, 2]), "name": "x"},
        "none": None,
    }
    _io.save_state(tmp_path, "cb", state)
    back = _io.load_state(tmp_path, "cb")
    assert back["best"] == float("inf") and back["none"] is None and back["nested"]["name"] == "x"
    np.testing.assert_array_equal(back["best_weights"][0], state["best_weights"][0])
    assert back["best_weights"][0].dtype == np.float32
    np.testing.assert_array_equal(back["nested"]["counts"], [1, 2])
    # the JSON half is plain JSON and the arrays half loads without pickle
    assert json.loads((tmp_path / "cb.json").read_text())["best_weights"][0] == {"__ndarray__": "a0"}
    np.load(tmp_path / "cb.npz", allow_pickle=False).close()


def test_load_state_of_a_corrupted_array_file_is_a_clear_checkpoint_error(tmp_path):
    _io.save_state(tmp_path, "cb", {"w": np.ones(3)})
    (tmp_path / "cb.npz").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cb.npz"):
        _io.load_state(tmp_path, "cb")


def test_check_writable_directory_rejects_a_file_and_a_path_below_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(KerafineError, match="Invalid value for argument `directory`.*existing file"):
        _io.check_writable_directory(f, "directory")
    with pytest.raises(KerafineError, match="expected a writable directory"):
        _io.check_writable_directory(f / "sub", "directory")
    made = _io.check_writable_directory(tmp_path / "new" / "dir", "directory")
    assert made.is_dir() and os.listdir(made) == []
