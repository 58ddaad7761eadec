"""Classroom scale through the real models: identical work once per process, schedulers, warm start."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, open_page
from cvdemo import cache, networks, results, scheduler, warmup
from cvdemo.detection import FLOAT, Detector


@pytest.fixture(scope="module")
def detector() -> Detector:
    return cache.shared(Detector, "yolov8n", accelerated=True)  # the instance the page gets


def _bus(bus_jpg) -> Image.Image:
    return Image.open(bus_jpg).convert("RGB")  # a new object each time: the key is the content


def test_thirty_students_same_picture_one_inference(detector, bus_jpg):
    settings = dict(conf=0.31, iou=0.45, imgsz=detector.fixed_imgsz or 640)
    before = results.stats().misses
    with ThreadPoolExecutor(30) as pool:
        found = list(pool.map(lambda i: detector.detect(_bus(bus_jpg), name=f"student{i}.jpg", **settings), range(30)))
    assert results.stats().misses == before + 1  # one computation for thirty callers
    assert all(d.result is found[0].result for d in found)  # the same ultralytics result, shared
    assert [d.image_name for d in found] == [f"student{i}.jpg" for i in range(30)]  # each keeps its own name
    assert "bus" in found[0].class_names
    assert found[0].annotated() is found[1].annotated()  # drawn once
    other = detector.detect(_bus(bus_jpg), name="x", **{**settings, "conf": 0.6})
    assert other.result is not found[0].result and len(other) <= len(found[0])


def test_detector_requests_queue_on_its_scheduler(detector, bus_jpg):
    sched = networks.scheduler("detector", detector, detector.identity)
    runs = len(sched.batches)
    pictures = [_bus(bus_jpg).rotate(angle) for angle in (0.5, 1.0, 1.5)]  # three different photos
    with ThreadPoolExecutor(3) as pool:
        found = list(pool.map(lambda img: detector.detect(img, conf=0.2), pictures))
    assert len(sched.batches) == runs + 3 and set(sched.batches[-3:]) == {1}  # static batch axis: one by one
    for img, det in zip(pictures, found):  # each caller got the result for its own photo
        assert det.result.orig_shape == (img.height, img.width)


def test_nms_lesson_is_shared_too(detector, bus_jpg):
    a = detector.nms_lesson(_bus(bus_jpg), conf=0.3)
    b = detector.nms_lesson(_bus(bus_jpg), conf=0.3)
    assert a is b and len(a.survivors(0.45)) >= 1


@pytest.fixture(scope="module")
def conse():
    from cvdemo import clip

    return cache.shared(clip.create_engine, "conse", accelerated=True)


def test_clip_image_queries_batch_and_reach_their_callers(conse, bus_jpg):
    import torch

    pictures = [_bus(bus_jpg).resize((320 + 16 * i, 240)) for i in range(6)]
    with torch.inference_mode():
        direct = conse._embed_batch(conse.preprocess_batch(pictures))
    with ThreadPoolExecutor(6) as pool:
        queued = list(pool.map(lambda img: conse.encode_images([img])[0], pictures))
    for got, want in zip(queued, direct):
        assert np.allclose(got, want, atol=1e-4)
    before = results.stats()
    again = conse.encode_images([pictures[2]])[0]
    after = results.stats()
    assert after.hits > before.hits and after.misses == before.misses  # served from the cache, not computed
    assert np.array_equal(again, queued[2])


def test_clip_pair_of_images_is_cached_per_image(conse, bus_jpg):
    import torch

    a, b = _bus(bus_jpg).resize((300, 200)), _bus(bus_jpg).resize((200, 300))
    with torch.inference_mode():
        direct = conse._embed_batch(conse.preprocess_batch([a, b]))
    pair = conse.encode_images([a, b])  # e.g. the Verify tab's two photos
    assert pair.shape == direct.shape and np.allclose(pair, direct, atol=1e-4)
    before = results.stats().misses
    assert np.array_equal(conse.encode_images([b]), pair[1:])  # b alone: already known
    assert results.stats().misses == before
    assert conse.encode_images([]).shape == (0, conse.dim)


def test_clip_text_queries_go_through_the_text_scheduler(conse):
    texts = ["a red bus in a street", "a dog on a beach", "a plate of pasta"]
    direct = conse._encode_text_batch(texts)
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    conse._text_cache.clear()
    got = conse.encode_texts(texts)
    assert np.allclose(got, direct, atol=1e-4)
    assert networks.scheduler("clip-text", conse, conse.identity).batches  # served by the scheduler


def test_fewshot_embeddings_once_per_process(data_dir):
    from cvdemo import fewshot as fs

    extractor = cache.shared(fs.FeatureExtractor, "efficientnet_lite0", None, True, True)
    paths = sorted((data_dir / "hymenoptera_data" / "train" / "ants").glob("*.jpg"))[:4]
    pictures = [Image.open(p).convert("RGB") for p in paths]
    first = extractor.embed(pictures)
    before = results.stats().misses
    again = extractor.embed([Image.open(p).convert("RGB") for p in paths])  # other objects, same pixels
    assert results.stats().misses == before and np.array_equal(first, again)
    query = Image.open(sorted((data_dir / "hymenoptera_data" / "val" / "bees").glob("*.jpg"))[0]).convert("RGB")
    alone = extractor.embed([query])  # one query: through the backbone scheduler
    with_others = extractor._embed_layers_now([query, *pictures[:2]], [None], 8, None)[None][0]
    assert np.allclose(alone[0], with_others, atol=1e-4)


def test_inference_gate_holds_every_batch(detector, bus_jpg):
    gate = scheduler.compute_gate()
    detector.detect(_bus(bus_jpg).rotate(2.5), conf=0.2)
    assert 1 <= gate.peak_active <= gate.permits


def test_warm_start_precomputes_what_the_detection_page_shows_first():
    report = warmup.warm_up({"detection": warmup.STEPS["detection"]})
    assert [step for step, _ in report.done] == ["detection"], report.skipped
    assert cache.has(Detector, "yolov8n", accelerated=True, variant=FLOAT)  # the page's own object, not a second one
    detector = cache.shared(Detector, "yolov8n", accelerated=True, variant=FLOAT)
    runs = len(networks.scheduler("detector", detector, detector.identity).batches)
    at = open_page("app_pages/detection.py", timeout=180)
    assert not at.exception
    assert any("detections in" in s.value for s in at.subheader)
    assert len(networks.scheduler("detector", detector, detector.identity).batches) == runs  # nothing new ran


def test_warm_start_reports_what_it_could_not_do():
    def broken():
        raise FileNotFoundError("no such weights")

    report = warmup.warm_up({"ok": lambda: None, "broken": broken})
    assert [s for s, _ in report.done] == ["ok"] and report.skipped[0][0] == "broken"
    assert "no such weights" in report.summary()


def test_warm_start_setting(monkeypatch):
    monkeypatch.setenv(warmup.WARM_START_ENV, "1")
    assert warmup.enabled()
    monkeypatch.setenv(warmup.WARM_START_ENV, "0")
    assert not warmup.enabled()


def test_app_is_an_st_app_whose_start_up_starts_the_warm_start(monkeypatch):
    from streamlit.web.server.app_discovery import discover_asgi_app

    assert discover_asgi_app(REPO / "app.py").is_asgi_app  # `streamlit run app.py` serves it with its lifespan
    spec = importlib.util.spec_from_file_location("cvdemo_app_module", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imported outside a script run: it only builds the server app
    started = threading.Event()
    monkeypatch.setattr(warmup, "start_in_background", started.set)
    monkeypatch.setenv(warmup.WARM_START_ENV, "1")

    async def start_and_stop() -> None:
        async with module.lifespan(module.app):
            pass

    asyncio.run(start_and_stop())
    assert started.is_set()


@pytest.fixture
def inference_server(monkeypatch):
    """A stand-in inference server on loopback running the real extractor's batch function; it notes
    whether this process's compute gate was free while each request was being served."""
    import http.server

    from cvdemo import fewshot as fs
    from cvdemo.serve import wire
    from cvdemo.serve.client import INFERENCE_URL_ENV

    extractor = cache.shared(fs.FeatureExtractor, "efficientnet_lite0", None, True, True)
    gate = scheduler.compute_gate()
    gate_busy_during_requests: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            gate_busy_during_requests.append(gate._active)
            inputs = wire.decode(self.rfile.read(int(self.headers["Content-Length"])))["inputs"]
            body = wire.encode({"outputs": extractor.features_batch(inputs)})
            self.send_response(200)
            self.send_header("Content-Type", wire.CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(INFERENCE_URL_ENV, f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield extractor, gate_busy_during_requests
    finally:
        server.shutdown()
        server.server_close()


def test_compute_gate_is_free_while_the_inference_server_works(inference_server, data_dir):
    extractor, gate_busy_during_requests = inference_server
    paths = sorted((data_dir / "hymenoptera_data" / "val" / "ants").glob("*.jpg"))[-3:]
    pictures = [Image.open(p).convert("RGB").rotate(1) for p in paths]  # pictures no other test embedded
    remote = extractor._embed_layers_now(pictures, [None], 8, None)[None]  # the page's several-image path
    query = extractor.embed([pictures[0].rotate(1)])  # one query: through the backbone scheduler
    assert len(gate_busy_during_requests) == 2 and gate_busy_during_requests == [0, 0]
    # a detector scheduler holds the gate around its batch; the remote call inside it still steps aside
    held_scheduler = scheduler.Scheduler("remote-in-a-held-batch", lambda items: extractor._features(items, [None])[None])
    held_scheduler.run(pictures[1])
    assert gate_busy_during_requests[-1] == 0
    assert np.asarray(query).shape == (1, remote.shape[1]) and np.isfinite(remote).all()


def test_feature_extractor_preprocesses_outside_the_compute_gate(data_dir, monkeypatch):
    from cvdemo import fewshot as fs

    extractor = cache.shared(fs.FeatureExtractor, "efficientnet_lite0", None, True, True)
    gate = scheduler.compute_gate()
    held_while_preprocessing, held_while_forward = [], []
    preprocess, forward = extractor.preprocess, extractor._forward

    def watched_preprocess(*args, **kwargs):
        held_while_preprocessing.append(gate.holding())
        return preprocess(*args, **kwargs)

    def watched_forward(*args, **kwargs):
        held_while_forward.append(gate.holding())
        return forward(*args, **kwargs)

    monkeypatch.setattr(extractor, "preprocess", watched_preprocess)
    monkeypatch.setattr(extractor, "_forward", watched_forward)
    path = sorted((data_dir / "hymenoptera_data" / "val" / "bees").glob("*.jpg"))[-1]
    extractor.embed([Image.open(path).convert("RGB").rotate(2)])  # through the backbone scheduler
    assert held_while_preprocessing == [False] and held_while_forward == [True]
