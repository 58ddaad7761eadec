"""Inference on Ray Serve (cvdemo.serve): the same results as in process, batching, clear errors.

The served tests start a real local Ray instance on loopback (module-scoped: started once) and deploy
the detector, the EfficientNet-Lite0 backbone and the ConSE towers with cvdemo's own deployments.
Ray comes from requirements-serve.txt; CI installs it and sets CVDEMO_REQUIRE_RAY=1, so there a
missing Ray fails these tests instead of skipping them.
"""

from __future__ import annotations

import os
import socket
import threading

import numpy as np
import pytest

from cvdemo.serve import InferenceServerError, InferenceServerUnavailable, remote_batch_fn, wire
from cvdemo.serve.client import INFERENCE_URL_ENV, send_batch

SERVED = ["yolov8n", "efficientnet_lite0", "conse"]
BATCH_WAIT_S = 0.3  # generous: on a busy 2-core runner the concurrent requests must still meet in one batch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def _require_ray():
    if os.environ.get("CVDEMO_REQUIRE_RAY") == "1":
        import ray.serve  # noqa: F401  (an ImportError fails the test: CI installs requirements-serve.txt)
    else:
        pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install -r requirements-serve.txt")


@pytest.fixture(scope="module")
def local_models(bus_jpg):
    """The in-process models, loaded (and exported into the test cache) before the replicas look for them."""
    os.environ.pop(INFERENCE_URL_ENV, None)
    from cvdemo import cache
    from cvdemo.clip.engines import create_engine
    from cvdemo.detection import Detector
    from cvdemo.fewshot.extractor import FeatureExtractor

    return {
        "detector": cache.shared(Detector, "yolov8n"),
        "extractor": cache.shared(FeatureExtractor, "efficientnet_lite0"),
        "conse": cache.shared(create_engine, "conse", cache_dir=False),
    }


@pytest.fixture(scope="module")
def server_url(local_models):
    """A local Ray instance on loopback serving SERVED; shut down after this module's tests."""
    _require_ray()
    from cvdemo.serve.deployment import local_server

    with local_server(SERVED, ray_cpus=2, num_replicas=1, num_cpus=0.5, max_batch_size=8,
                      batch_wait_timeout_s=BATCH_WAIT_S) as url:
        yield url


@pytest.fixture
def remote(server_url, monkeypatch):
    monkeypatch.setenv(INFERENCE_URL_ENV, server_url)
    return server_url


def _here_then_served(remote: str, compute):
    """``compute()`` in this process, then with the inference server set (as the ``remote`` fixture left it)."""
    os.environ.pop(INFERENCE_URL_ENV)
    local = compute()
    os.environ[INFERENCE_URL_ENV] = remote
    return local, compute()


def _stats(url: str, model: str) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{url}/{model}/stats", timeout=30) as response:
        return json.loads(response.read())


# --- without a server -----------------------------------------------------------------------------


def test_wire_round_trip_keeps_arrays_and_refuses_objects():
    value = {"inputs": [{"image": np.arange(24, dtype=np.uint8).reshape(2, 4, 3), "conf": 0.25,
                         "classes": None, "text": "ünïcode 🚌"}]}
    back = wire.decode(wire.encode(value))
    item = back["inputs"][0]
    assert item["image"].dtype == np.uint8 and np.array_equal(item["image"], value["inputs"][0]["image"])
    assert item["text"] == "ünïcode 🚌" and item["conf"] == 0.25 and item["classes"] is None
    with pytest.raises(TypeError):
        wire.encode({"x": np.array([object()], dtype=object)})


def test_local_by_default(monkeypatch):
    monkeypatch.delenv(INFERENCE_URL_ENV, raising=False)
    assert remote_batch_fn("yolov8n/detect") is None


def test_cli_picks_available_models_and_refuses_unknown_ones(monkeypatch):
    from cvdemo import weights
    from cvdemo.serve.__main__ import chosen_models

    assert {"yolov8n", "efficientnet_lite0", "conse"} <= set(chosen_models(None))  # the classroom weights
    assert chosen_models(["conse/text", "conse/image", "yolov8n"]) == ["conse", "yolov8n"]
    with pytest.raises(SystemExit, match="Unknown model"):
        chosen_models(["nosuch"])
    monkeypatch.setattr(weights, "available", lambda name: name != "resnet50")  # as on a machine without it
    with pytest.raises(SystemExit, match="No weights on this machine for: resnet50"):
        chosen_models(["resnet50"])


def test_cli_without_ray_says_what_to_install(monkeypatch):
    import sys

    from cvdemo.serve import __main__ as cli

    monkeypatch.setitem(sys.modules, "ray", None)  # as on a machine with only requirements.txt
    monkeypatch.delitem(sys.modules, "cvdemo.serve.deployment", raising=False)
    with pytest.raises(SystemExit, match="pip install -r requirements-serve.txt"):
        cli.main(["--networks", "yolov8n"])


def test_dead_address_gives_the_clear_message(monkeypatch, bus_jpg):
    from cvdemo import cache
    from cvdemo.detection import Detector

    detector = cache.shared(Detector, "yolov8n")
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv(INFERENCE_URL_ENV, url)
    with pytest.raises(InferenceServerUnavailable) as info:
        detector.detect(bus_jpg)
    message = str(info.value)
    assert url in message and "does not answer" in message
    assert "python -m cvdemo.serve" in message and INFERENCE_URL_ENV in message


def test_detection_page_shows_the_message_not_a_traceback(monkeypatch):
    from conftest import open_page

    monkeypatch.setenv(INFERENCE_URL_ENV, f"http://127.0.0.1:{_free_port()}")
    at = open_page("app_pages/detection.py")  # asserts no exception escaped
    errors = " ".join(e.value for e in at.error)
    assert "does not answer" in errors and "python -m cvdemo.serve" in errors


# --- against a local Ray Serve ----------------------------------------------------------------------


def test_remote_detector_finds_the_same_boxes(local_models, remote, bus_jpg):
    detector = local_models["detector"]
    local, served = _here_then_served(remote, lambda: detector.detect(bus_jpg))
    counts = served.counts()
    assert counts.get("bus", 0) >= 1 and counts.get("person", 0) >= 1
    # Same CPU, same model file, same kernels: the same boxes (tolerance for float summation order).
    assert served.counts() == local.counts()
    order_l, order_s = np.argsort(-local.scores), np.argsort(-served.scores)
    assert np.allclose(served.xyxy[order_s], local.xyxy[order_l], atol=0.5)
    assert np.allclose(served.scores[order_s], local.scores[order_l], atol=1e-3)
    assert served.input_shape == local.input_shape and served.image_size == local.image_size
    assert served.png()[:4] == b"\x89PNG" and served.to_dict()["detections"]  # a full Results object
    assert "on the inference server" in served.runtime_info.label  # the latency badge says where it ran
    assert "inference server" not in local.runtime_info.label


def test_remote_nms_lesson_matches_local(local_models, remote, bus_jpg):
    detector = local_models["detector"]
    local, served = _here_then_served(remote, lambda: detector.nms_lesson(bus_jpg))
    assert served.n_proposals == local.n_proposals and len(served) == len(local)
    assert np.allclose(served.candidates, local.candidates, atol=0.5)
    assert np.array_equal(served.survivors(0.45), local.survivors(0.45))


def test_remote_backbone_embedding_equals_local(local_models, remote, bus_jpg):
    from PIL import Image

    extractor = local_models["extractor"]
    images = [Image.open(bus_jpg).convert("RGB"), Image.open(bus_jpg).convert("RGB").rotate(90, expand=True)]
    local, served = _here_then_served(remote, lambda: extractor.embed_layers(images, [1, None]))
    for layer in (1, None):
        assert served[layer].shape == local[layer].shape
        assert np.allclose(served[layer], local[layer], atol=1e-5)


def test_remote_text_and_image_towers_equal_local(local_models, remote, bus_jpg):
    from PIL import Image

    engine = local_models["conse"]
    texts = ["a red double-decker bus", "people waiting at a bus stop", "🚌"]
    local_text = np.stack(engine.text_batch([{"text": t} for t in texts]))  # the local batch function
    served_text = engine.encode_texts(texts)  # through the engine, CVDEMO_INFERENCE_URL set: remote
    assert np.allclose(served_text, local_text / np.linalg.norm(local_text, axis=1, keepdims=True), atol=1e-5)
    image = Image.open(bus_jpg).convert("RGB")
    served_image = engine.encode_images([image])
    os.environ.pop(INFERENCE_URL_ENV)
    local_image = engine.encode_images([image])
    assert np.allclose(served_image, local_image, atol=1e-5)


def test_concurrent_requests_run_as_one_batch(local_models, remote, bus_jpg):
    from PIL import Image

    extractor = local_models["extractor"]
    crop = np.asarray(extractor._transform(Image.open(bus_jpg).convert("RGB")), dtype=np.uint8)
    before = len(_stats(remote, "efficientnet_lite0")["batch_sizes"])
    send = remote_batch_fn("efficientnet_lite0/features")
    results: list = [None] * 6
    start = threading.Barrier(len(results))

    def one(i: int) -> None:
        start.wait()
        results[i] = send([{"crop": crop}])[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    sizes = _stats(remote, "efficientnet_lite0")["batch_sizes"][before:]
    assert sum(sizes) == len(results) and max(sizes) > 1, sizes  # six requests, fewer forward passes
    assert all(np.allclose(r["head"], results[0]["head"], atol=1e-5) for r in results)


def test_unserved_network_and_bad_body_are_explained(remote):
    with pytest.raises(InferenceServerError, match="does not serve resnet18/features"):
        send_batch(remote, "resnet18/features", [{"crop": np.zeros((3, 4, 4), np.uint8)}])
    with pytest.raises(InferenceServerError, match="has no network 'tower'"):
        send_batch(remote, "conse/tower", [{"text": "x"}])
