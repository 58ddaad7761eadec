"""Classroom warm start: load and warm the models, and precompute the default sample results, at server start.

With ``CVDEMO_WARM_START=1`` the server (app.py's start-up hook) runs :func:`warm_up` once in a
background thread: the heavy imports, every model page's default model (the same process-wide
instances the pages use, see :mod:`cvdemo.cache`), and the results a student sees first on each page
(detections on the default sample, its CLIP embedding and the default labels' text vectors, the
default architecture's profile) go into the result cache; the Segmentation page's default training run
and the Compression page's default measurement go into the run store. The first student then pays
for none of it.
Steps that cannot run here (weights missing) are skipped and reported, never raised.

The settings are the pages' own defaults, read from one place (:mod:`cvdemo.catalog`);
``tests/test_classroom.py`` checks that the Detection page opened after a warm-up computes nothing new.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from cvdemo.images import shared_image

WARM_START_ENV = "CVDEMO_WARM_START"


def enabled() -> bool:
    """Whether ``$CVDEMO_WARM_START`` asks for a warm start (1, true, yes, on)."""
    return os.environ.get(WARM_START_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class WarmUpReport:
    done: list[tuple[str, float]] = field(default_factory=list)  # (step, seconds)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (step, why)

    def summary(self) -> str:
        took = sum(s for _, s in self.done)
        parts = [f"warm start: {len(self.done)} steps in {took:.1f} s"]
        parts += [f"skipped {step} ({why})" for step, why in self.skipped]
        return "; ".join(parts)


def _detection() -> None:
    from cvdemo import cache, catalog, datasets
    from cvdemo.detection import FLOAT, Detector, page_default

    model_name = page_default()
    if model_name is None:
        raise FileNotFoundError("no detector weights")
    # the page's own arguments, variant included: the shared cache is keyed by them, so the page gets this object
    detector = cache.shared(Detector, model_name, accelerated=True, variant=FLOAT)
    samples = datasets.sample_images(include_sets=catalog.DETECTION_SAMPLE_SETS)
    name, path = next(iter(samples.items()))
    detector.detect(shared_image(path), conf=catalog.DETECTION_CONF, iou=catalog.DETECTION_IOU, classes=None,
                    imgsz=detector.fixed_imgsz or catalog.DETECTION_IMGSZ, name=name)


def _clip() -> None:
    from cvdemo import cache, catalog, clip

    available = clip.available_engines()
    if not available:
        raise FileNotFoundError("no CLIP or ConSE weights")
    engine = cache.shared(clip.create_engine, available[0], accelerated=True)
    _, path = next(iter(clip.zero_shot_samples().items()))
    engine.encode_images([shared_image(path)])
    labels = next(iter(clip.LABEL_PRESETS.values()))
    clip.class_text_embeddings(engine, labels, catalog.zero_shot_template(engine.is_clip))


def _architectures() -> None:
    from cvdemo import catalog
    from cvdemo import complexity as cx
    from cvdemo import zoo

    key = catalog.ARCHITECTURE_MODEL
    resolution = zoo.native_resolution(key)
    cx.profile(key, (zoo.input_channels(key), resolution, resolution))


def _fewshot() -> None:
    from cvdemo import cache
    from cvdemo import fewshot as fs

    ready = [s for s in fs.backbone_status() if s.available]
    if not ready:
        raise FileNotFoundError("no few-shot backbone weights")
    cache.shared(fs.FeatureExtractor, ready[0].name, None, True, True)


def _segmentation_run() -> None:
    from cvdemo.segmentation import runs

    # The Segmentation page's default training run (about a minute of both cores), into the run store:
    # the page then shows it at once. Lowest priority: last, after the cheap steps, and one batch at a
    # time through the inference gate, so the pages' requests go between batches. A student who presses
    # Train on these settings meanwhile watches this same run instead of starting a second one.
    runs.get_or_train(*runs.page_default(), polite=True)


def _compression_run() -> None:
    from cvdemo.compression import runs

    # The Compression page's default selection (INT8 static on the first model, 64 ants & bees images),
    # measured once into the run store: the page then shows it at once. Last, after the segmentation
    # run, and one step at a time (a technique, a model's predictions, a batch size's timing) through the
    # inference gate, so the pages' requests go in between. Its settings come from runs.page_default(),
    # the same constants the page's widgets start from.
    runs.get_or_measure(*runs.page_default(), polite=True)


STEPS: dict[str, Callable[[], None]] = {
    "detection": _detection,
    "CLIP": _clip,
    "architectures": _architectures,
    "few-shot backbone": _fewshot,
    "segmentation default run": _segmentation_run,  # the longest step
    "compression default run": _compression_run,  # keep last: the least urgent
}


def warm_up(steps: dict[str, Callable[[], None]] | None = None) -> WarmUpReport:
    """Run the warm-up steps in order; a step that fails is skipped with its reason."""
    report = WarmUpReport()
    for name, step in (steps or STEPS).items():
        started = time.perf_counter()
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - a warm-up never takes the server down
            report.skipped.append((name, f"{type(exc).__name__}: {exc}"[:200]))
        else:
            report.done.append((name, time.perf_counter() - started))
    return report


_started: threading.Thread | None = None
_lock = threading.Lock()


def start_in_background() -> threading.Thread:
    """Start :func:`warm_up` in a daemon thread, once per process (its summary goes to the server's log);
    later calls return the same thread."""
    global _started
    with _lock:
        if _started is None:
            _started = threading.Thread(target=lambda: print(warm_up().summary(), flush=True),
                                        name="cvdemo-warm-start", daemon=True)
            _started.start()
        return _started
