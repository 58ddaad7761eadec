"""cvdemo.files: a published file is whole or absent, never half written."""

from __future__ import annotations

import pytest

from cvdemo.files import atomic_write, atomic_write_bytes, publish


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "model.onnx"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "store.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, suffix=".npz.part") as fh:
            fh.write(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["store.npz"]


def test_publish_accepts_losing_the_race_to_a_complete_folder(tmp_path):
    final = tmp_path / "model_openvino_model"
    final.mkdir()
    (final / "model.xml").write_text("done")
    work = tmp_path / ".work"
    work.mkdir()
    (work / "model.xml").write_text("mine")
    (work / "extra").write_text("x")  # a non-empty folder cannot replace a non-empty one
    assert publish(work, final, lambda p: (p / "model.xml").is_file()) == final
    assert (final / "model.xml").read_text() == "done"
    with pytest.raises(OSError):
        publish(work, final, lambda p: False)
