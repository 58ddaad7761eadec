"""Zip safety and sample data discovery."""

from __future__ import annotations

import io
import zipfile

import pytest

from cvdemo import datasets
from cvdemo.archives import ArchiveError, class_folders, read_zip


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return buf.getvalue()


def test_path_tricks_are_skipped_and_listed():
    blob = _zip({"../evil.txt": b"x", "/abs/evil.txt": b"x", "C:/win.txt": b"x", "cats/a.jpg": b"ok"})
    contents = read_zip(blob)
    assert list(contents.files) == ["cats/a.jpg"]
    assert len(contents.skipped) == 3 and all("unsafe path" in s for s in contents.skipped)


def test_zip_bomb_is_refused():
    with pytest.raises(ArchiveError, match="zip bomb"):
        read_zip(_zip({"big.bin": b"\0" * (20 << 20)}))


def test_oversized_total_is_refused():
    with pytest.raises(ArchiveError, match="limit"):
        read_zip(_zip({"a.bin": b"a" * 2048}, zipfile.ZIP_STORED), max_total_bytes=1024)


def test_not_a_zip_and_empty_zip():
    with pytest.raises(ArchiveError, match="not a valid zip"):
        read_zip(b"plain text")
    with pytest.raises(ArchiveError, match="empty"):
        read_zip(_zip({}))


def test_class_folders_ignore_macos_junk():
    contents = read_zip(_zip({"set/cats/a.jpg": b"1", "set/dogs/b.jpg": b"2", "__MACOSX/set/._a.jpg": b"", "top.jpg": b"3"}))
    groups = class_folders(contents)
    assert sorted(groups) == ["cats", "dogs"]
    assert any("top.jpg" in s for s in contents.skipped)


def test_shared_data_sets_are_found(data_dir):
    for name in datasets.DATASETS:
        assert datasets.dataset_path(name) == data_dir / name
    pairs = datasets.image_folder(datasets.dataset_path("hymenoptera_data") / "val")
    assert len(pairs) == 153 and {label for _, label in pairs} == {"ants", "bees"}


def test_missing_data_set_says_where(monkeypatch, tmp_path):
    monkeypatch.setenv("CVDEMO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(datasets.DataUnavailable, match=str(tmp_path)):
        datasets.dataset_path("coco8")


def test_sample_images_include_packaged_photos():
    samples = datasets.sample_images()
    assert {"bus.jpg", "zidane.jpg"} <= set(samples)
    assert any(name.startswith("coco8/") for name in samples)


def test_temp_copy_is_writable_and_separate(data_dir):
    copy = datasets.temp_copy("coco8")
    assert copy != data_dir / "coco8" and (copy / "data.yaml").is_file()
    (copy / "labels" / "x.cache").write_text("ok")
    assert not (data_dir / "coco8" / "labels" / "x.cache").exists()


def test_fetch_unpacks_safely_into_the_cache(monkeypatch, tmp_path):
    """A downloaded data set zip gets the same checks as an upload: path tricks never land."""
    blob = _zip({"coco8/data.yaml": b"names: {}", "coco8/images/val/a.jpg": b"x", "../escape.txt": b"no"})

    class _Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setenv("CVDEMO_DATA_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets.urllib.request, "urlopen", lambda url, timeout: _Response(blob))
    path = datasets.fetch("coco8")
    assert path == tmp_path / "cache" / "data" / "coco8" and (path / "data.yaml").is_file()
    assert not list(tmp_path.rglob("escape.txt"))
