"""The weights resolver over present, missing and sha-mismatched files, and the CLI."""

from __future__ import annotations

import hashlib
import pickle

import pytest
import torch

from cvdemo import weights
from cvdemo.weights import Asset, WeightsUnavailable


@pytest.fixture
def fake_asset(monkeypatch, tmp_path):
    """A registry entry whose file we control, with empty caches and no network."""
    payload = b"pretend weights"
    asset = Asset(
        name="unit_test_model",
        description="a model used only by tests",
        library="timm",
        filename="unit.safetensors",
        alt_filenames=("unit.onnx",),
        sha256={"unit.safetensors": hashlib.sha256(payload).hexdigest()},
        url="https://example.invalid/unit.safetensors",
    )
    monkeypatch.setitem(weights.REGISTRY, asset.name, asset)
    monkeypatch.setenv("CVDEMO_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CVDEMO_OFFLINE", "1")
    (tmp_path / "weights").mkdir()
    return asset, payload, tmp_path / "weights"


def test_present_file_resolves(fake_asset):
    asset, payload, folder = fake_asset
    (folder / "unit.safetensors").write_bytes(payload)
    assert weights.resolve(asset.name) == folder / "unit.safetensors"
    assert weights.available(asset.name)


def test_alternative_file_resolves(fake_asset):
    asset, _, folder = fake_asset
    (folder / "unit.onnx").write_bytes(b"onnx bytes")
    assert weights.resolve(asset.name).name == "unit.onnx"


def test_cache_is_second_choice(fake_asset, tmp_path):
    asset, payload, _ = fake_asset
    cached = weights.cache_dir() / "unit.safetensors"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(payload)
    assert weights.resolve(asset.name) == cached


def test_missing_file_message_says_what_and_where(fake_asset):
    asset, _, folder = fake_asset
    with pytest.raises(WeightsUnavailable) as info:
        weights.resolve(asset.name)
    message = str(info.value)
    assert "unit.safetensors" in message and str(folder) in message
    assert "python -m cvdemo.weights fetch unit_test_model" in message
    assert "offline" in message


def test_sha_mismatch_is_ignored_and_reported(fake_asset):
    asset, _, folder = fake_asset
    (folder / "unit.safetensors").write_bytes(b"something else entirely")
    assert not weights.available(asset.name)
    with pytest.raises(WeightsUnavailable, match="wrong sha256"):
        weights.resolve(asset.name)


def test_empty_file_does_not_count(fake_asset):
    asset, _, folder = fake_asset
    (folder / "unit.safetensors").write_bytes(b"")
    assert not weights.available(asset.name)


def test_unknown_name_lists_known_assets():
    with pytest.raises(KeyError, match="yolov8n"):
        weights.resolve("no_such_model")


def test_shared_weights_resolve_with_checksum(weights_dir):
    path = weights.resolve("yolov8n")
    assert path == weights_dir / "yolov8n_coco_int8_qdq.onnx"
    assert weights.sha256_of(path) == weights.get("yolov8n").sha256[path.name]


def test_pip_package_weights_resolve():
    path = weights.resolve("efficientnet_lite0")
    assert path.name == "efficientnet-lite0-57934424.pth" and path.stat().st_size > 18_000_000


class _Evil:
    def __reduce__(self):
        return (print, ("this would run code",))


def test_checkpoints_never_unpickle_code(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": _Evil()}, evil)
    with pytest.raises(ValueError, match="never unpickled"):
        weights.load_state_dict(evil)
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ValueError):
        weights.load_state_dict(raw)


def test_state_dict_formats(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(3)}, str(tmp_path / "m.safetensors"))
    assert weights.load_state_dict(tmp_path / "m.safetensors")["w"].sum() == 3
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "m.pth")
    assert list(weights.load_state_dict(tmp_path / "m.pth")) == ["w"]


def test_status_cli_prints_every_asset(capsys):
    assert weights.main(["status"]) == 0
    out = capsys.readouterr().out
    for name in weights.REGISTRY:
        assert name in out
    assert "yolov8n_coco_int8_qdq.onnx" in out


def test_fetch_offline_fails_clearly(fake_asset, capsys):
    asset, _, _ = fake_asset
    assert weights.main(["fetch", asset.name]) == 1
    assert "offline" in capsys.readouterr().out


def test_fetch_copies_a_locally_found_file(fake_asset, capsys):
    asset, payload, folder = fake_asset
    cached = weights.cache_dir() / "unit.safetensors"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(payload)
    assert weights.main(["fetch", asset.name]) == 0
    assert (folder / "unit.safetensors").read_bytes() == payload
