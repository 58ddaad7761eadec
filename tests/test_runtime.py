"""cvdemo.runtime: exported runtimes must reproduce PyTorch, be cached, and fall back cleanly."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from cvdemo import cache, runtime
from cvdemo import fewshot as fs
from cvdemo.backbones import BACKBONES


@pytest.fixture(scope="module")
def photos():
    return runtime.parity_images(6)


TINY_CLIP = {  # a 2-layer ViT image tower and a 1-layer text tower: seconds to build and export
    "embed_dim": 64,
    "vision_cfg": {"layers": 2, "width": 64, "patch_size": 32},
    "text_cfg": {"layers": 1, "width": 64, "heads": 2},
}


def _small_cnn(seed: int = 0, classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, classes),
    ).eval()


# --- every backbone the app offers: the few-shot page's own path -------------------------------------


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_matches_pytorch(name, photos):
    """The exported features of each backbone (all stages + head) equal PyTorch's on real photos.

    Only EfficientNet-Lite0's ImageNet weights are on this machine; the others run with the
    page's own "random weights" setting, which exports the same graph with other numbers.
    """
    pretrained = name == "efficientnet_lite0"
    fast = fs.FeatureExtractor(name, pretrained=pretrained, accelerated=True)
    slow = fs.FeatureExtractor(name, pretrained=pretrained, accelerated=False)
    assert fast._accelerated.accelerated, fast._accelerated.reason
    assert fast.backend_label in ("OpenVINO", "ONNX Runtime")
    assert fast._accelerated.parity.passed and fast._accelerated.parity.images == 4
    assert slow.backend_label == "PyTorch"
    layers = [info.index for info in fast.layers()]
    got, want = fast.embed_layers(photos, layers), slow.embed_layers(photos, layers)
    for layer in layers:
        assert got[layer].shape == want[layer].shape
        assert np.abs(got[layer] - want[layer]).max() < 1e-3, (name, layer)


def test_pretrained_features_keep_their_meaning(photos):
    """Accelerated EfficientNet-Lite0 features still tell photos apart exactly like PyTorch's."""
    fast = fs.FeatureExtractor("efficientnet_lite0")
    slow = fs.FeatureExtractor("efficientnet_lite0", accelerated=False)
    a, b = fast.embed(photos), slow.embed(photos)
    np.testing.assert_allclose(a @ a.T, b @ b.T, atol=1e-4)
    assert fast._accelerated.path.is_file()
    assert str(runtime.cache_folder()) in str(fast._accelerated.path)


def test_one_export_serves_every_layer_and_both_settings():
    heads = fs.FeatureExtractor("efficientnet_lite0", None)
    stage = fs.FeatureExtractor("efficientnet_lite0", 1)
    assert heads._accelerated is stage._accelerated  # one shared session per backbone and weights


# --- caching -------------------------------------------------------------------------------------


def test_export_is_cached_by_weights_and_shape(monkeypatch, tmp_path):
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(tmp_path))
    model, example = _small_cnn(0), torch.randn(1, 3, 32, 32)
    first = runtime.accelerate(model, example, name="tiny")
    assert first.accelerated and first.path.parent.parent == tmp_path / "runtime"

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(runtime, "export_onnx", no_export)
    again = runtime.accelerate(_small_cnn(0), example, name="tiny")
    assert again.path == first.path and again.accelerated
    # Other weights or another input size are another file: exporting is attempted (and fails here).
    other = runtime.accelerate(_small_cnn(1), example, name="tiny")
    assert not other.accelerated and "export failed" in other.reason
    bigger = runtime.accelerate(_small_cnn(0), torch.randn(1, 3, 48, 48), name="tiny")
    assert not bigger.accelerated
    assert runtime.weights_digest(_small_cnn(0)) == runtime.weights_digest(_small_cnn(0))
    assert runtime.weights_digest(_small_cnn(0)) != runtime.weights_digest(_small_cnn(1))


def test_dynamic_batch_and_threads_share_one_session():
    model = _small_cnn(3)
    fast = runtime.accelerate(model, torch.randn(1, 3, 32, 32), name="tiny-batch")
    for n in (1, 3, 17):
        x = torch.randn(n, 3, 32, 32)
        with torch.inference_mode():
            want = model(x)
        assert fast(x).shape == (n, 5)
        torch.testing.assert_close(fast(x), want, atol=1e-4, rtol=1e-4)
    x = torch.randn(4, 3, 32, 32)
    expected = fast(x)
    results: list[torch.Tensor] = []

    def call() -> None:
        for _ in range(10):
            results.append(fast(x))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40 and all(torch.equal(r, expected) for r in results)


@pytest.mark.parametrize("backend", [runtime.OPENVINO, runtime.ONNXRUNTIME])
def test_each_backend_can_be_asked_for(backend):
    model = _small_cnn(4)
    fast = runtime.accelerate(model, torch.randn(1, 3, 32, 32), backend, name="tiny-backend")
    assert fast.backend == backend and fast.label == runtime.BACKEND_LABELS[backend]
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), atol=1e-4, rtol=1e-4)


def test_auto_measures_and_picks_the_faster_backend():
    fast = runtime.accelerate(_small_cnn(5), torch.randn(1, 3, 32, 32), name="tiny-auto")
    assert set(fast.latency_ms) == {runtime.OPENVINO, runtime.ONNXRUNTIME}
    assert fast.latency_ms[fast.backend] == min(fast.latency_ms.values())


# --- refusals and fallbacks ------------------------------------------------------------------------


def test_parity_rules():
    ref = [np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])]
    assert runtime.compare_outputs(ref, [ref[0] * 3], True, 1e-3).passed  # scale does not matter
    nudged = runtime.compare_outputs(ref, [ref[0] + 0.01], False, 1e-3)
    assert not nudged.passed and nudged.max_abs_diff > 1e-3 and "tolerance 1e-03" in nudged.describe()
    swapped = runtime.compare_outputs(ref, [np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0001]])], True, 1.0)
    assert swapped.top1_agreement == 0.5 and not swapped.passed  # close numbers, other class: refused
    assert not runtime.compare_outputs(ref, [np.ones((2, 4))], False, 1.0).passed  # shape mismatch
    assert not runtime.compare_outputs(ref, [ref[0] * np.nan], False, 1.0).passed


def test_a_backend_that_disagrees_is_refused(monkeypatch):
    def wrong(path, threads):
        return lambda batch: [np.random.default_rng(0).normal(size=(len(batch), 5)).astype(np.float32)]

    monkeypatch.setattr(runtime, "_openvino_runner", wrong)
    fast = runtime.accelerate(_small_cnn(6), torch.randn(2, 3, 32, 32), name="tiny-wrong", classifier=True)
    assert fast.backend == runtime.ONNXRUNTIME  # the other backend passed
    monkeypatch.setattr(runtime, "_onnxruntime_runner", wrong)
    refused = runtime.accelerate(_small_cnn(6), torch.randn(2, 3, 32, 32), name="tiny-wrong", classifier=True)
    assert refused.backend == runtime.PYTORCH and "parity" in refused.reason
    assert refused.label.startswith("PyTorch (accelerated path off:")
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(refused(x), refused.module(x))  # still answers, in PyTorch


def test_missing_backends_and_failed_exports_fall_back(monkeypatch, caplog):
    monkeypatch.setattr(runtime, "backend_installed", lambda backend: False)
    with caplog.at_level("WARNING", logger="cvdemo.runtime"):
        none = runtime.accelerate(_small_cnn(7), torch.randn(1, 3, 32, 32), name="tiny-none")
    assert none.backend == runtime.PYTORCH and "not installed" in none.reason
    assert "tiny-none runs in PyTorch" in caplog.text
    monkeypatch.undo()

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(runtime, "export_onnx", broken)
    failed = runtime.accelerate(_small_cnn(8), torch.randn(1, 3, 32, 32), name="tiny-broken")
    assert failed.backend == runtime.PYTORCH and "unsupported operator" in failed.reason
    with pytest.raises(ValueError, match="Unknown backend"):
        runtime.accelerate(_small_cnn(8), torch.randn(1, 3, 32, 32), "tensorrt")
    plain = runtime.accelerate(_small_cnn(8), torch.randn(1, 3, 32, 32), runtime.PYTORCH)
    assert plain.backend == runtime.PYTORCH and plain.reason is None and plain.label == "PyTorch"


def test_tuple_outputs_keep_their_structure():
    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = _small_cnn(9)

        def forward(self, x):
            y = self.body(x)
            return y, y.softmax(-1)

    model = TwoHeads().eval()
    fast = runtime.accelerate(model, torch.randn(1, 3, 32, 32), name="tiny-two")
    out = fast(torch.randn(2, 3, 32, 32))
    assert isinstance(out, tuple) and len(out) == 2 and out[1].shape == (2, 5)


# --- the other image networks of the app -------------------------------------------------------------


def test_conse_classifier_runs_accelerated_with_the_same_top1(photos):
    from cvdemo import clip

    fast = cache.shared(clip.create_engine, "conse")
    slow = cache.shared(clip.create_engine, "conse", accelerated=False)
    runner = fast.classifier_runner
    assert runner.accelerated, runner.reason
    assert runner.parity.top1_agreement == 1.0 and runner.parity.passed
    fast_top, slow_top = fast.imagenet_top(photos, 1), slow.imagenet_top(photos, 1)
    assert [t[0][0] for t in fast_top] == [t[0][0] for t in slow_top]
    assert [t[0][1] for t in fast_top] == pytest.approx([t[0][1] for t in slow_top], abs=1e-4)
    np.testing.assert_allclose(fast.encode_images(photos), slow.encode_images(photos), atol=1e-4)
    assert slow.classifier is fast.classifier  # one copy of the network per process


def test_clip_image_tower_runs_accelerated(photos):
    """open_clip's encode_image exports too (a tiny random ViT: no CLIP weights on this machine)."""
    from cvdemo import clip

    tiny = clip.ClipModel("clip", pretrained=False, arch="ViT-B-32", cache_dir=False, model_kwargs=TINY_CLIP)
    assert tiny.image_runner.accelerated, tiny.image_runner.reason
    assert tiny.backend_label in ("OpenVINO", "ONNX Runtime")
    batch = tiny.preprocess_batch(photos)
    with torch.inference_mode():
        want = tiny.model.encode_image(batch, normalize=True).numpy()
    np.testing.assert_allclose(tiny.encode_images(photos), want, atol=1e-4)
    slow = clip.ClipModel(
        "clip", pretrained=False, arch="ViT-B-32", cache_dir=False, model_kwargs=TINY_CLIP, accelerated=False
    )
    assert slow.image_runner is None and slow.backend_label == "PyTorch"


def test_an_unwritable_cache_folder_falls_back_with_the_folder_named(monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("CVDEMO_CACHE_DIR", str(blocker / "cache"))
    fast = runtime.accelerate(_small_cnn(10), torch.randn(1, 3, 32, 32), name="tiny-readonly")
    assert fast.backend == runtime.PYTORCH and "cannot write to" in fast.reason and "not-a-folder" in fast.reason


def test_a_machine_without_sample_photos_still_accelerates(monkeypatch):
    """No packaged or data-set photos: parity runs on one plain picture instead of failing the page."""
    from cvdemo import datasets
    from cvdemo.fewshot.extractor import _accelerated_backbone

    monkeypatch.setattr(datasets, "sample_images", lambda: {})
    fast = _accelerated_backbone("mobilenetv3_small_100", False)
    assert fast.accelerated and fast.parity.images == 1
