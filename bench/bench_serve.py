"""A burst of students with different photos: the Ray Serve path vs the in-process path, in one run.

N (default 30) different coco128 photos arrive at the same moment, one thread per student, each
calling the page's own code (``Detector.detect``; ``FeatureExtractor.embed`` for the few-shot page's
backbone). In process, the model serves them one after another (the Detector's lock; the backbone one
image per call, as a student's query is). Through Ray Serve (``CVDEMO_INFERENCE_URL`` set, a local Ray
instance started here on loopback, or ``--url``), the replicas take them, the backbone in batches.
Prints each student's time to result (p50, p95, first, last), the ratio of Serve's p95 to in-process
p95 and the batch sizes the server ran. Bursts alternate (in-process, Serve, ...); best of ``--repeats``.

Run: ``python -m bench.bench_serve [--images 30] [--replicas 1] [--cpus-per-replica 2] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from bench.timing import quantile
from cvdemo import cache, datasets
from cvdemo.serve.client import INFERENCE_URL_ENV


def burst(work: Callable[[Any], Any], items: list[Any]) -> list[float]:
    """Every item's seconds from the common start to its result, all threads released at once."""
    start_line = threading.Barrier(len(items) + 1)
    done: list[float] = [0.0] * len(items)
    errors: list[BaseException] = []

    def student(i: int) -> None:
        start_line.wait()
        try:
            work(items[i])
        except BaseException as exc:  # counted and reported: a bench must not hide failures
            errors.append(exc)
        done[i] = time.perf_counter()

    threads = [threading.Thread(target=student, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    start_line.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(items)} requests failed, e.g. {errors[0]!r}")
    return sorted(d - t0 for d in done)


def summary(seconds: list[float]) -> dict[str, float]:
    return {"p50": quantile(seconds, 0.5), "p95": quantile(seconds, 0.95), "first": seconds[0], "last": seconds[-1]}


def batch_sizes(url: str, model: str) -> list[int]:
    with urllib.request.urlopen(f"{url}/{model}/stats", timeout=30) as response:
        return list(json.loads(response.read())["batch_sizes"])


def photo_paths(n: int) -> list[Path]:
    """The first ``n`` coco128 photos (sorted by name): the same different photos in every bench."""
    folder = datasets.dataset_path("coco128") / "images"
    paths = sorted(p for p in folder.rglob("*.jpg"))[:n]
    if len(paths) < n:
        raise SystemExit(f"Only {len(paths)} coco128 photos here; ask for --images {len(paths)} or fewer.")
    return paths


def photos(n: int) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in photo_paths(n)]


def run(url: str, images: list[Image.Image], repeats: int) -> None:
    from cvdemo.detection import Detector
    from cvdemo.fewshot.extractor import FeatureExtractor

    detector = cache.shared(Detector, "yolov8n")
    extractor = cache.shared(FeatureExtractor, "efficientnet_lite0")
    cases = {
        "detection (yolov8n)": (lambda img: detector.detect(img), "yolov8n"),
        "few-shot embedding (efficientnet_lite0)": (lambda img: extractor.embed([img]), "efficientnet_lite0"),
    }
    for name, (work, model) in cases.items():
        # Warm both paths (first-call kernel builds, HTTP connections) before timing.
        os.environ.pop(INFERENCE_URL_ENV, None)
        work(images[0])
        os.environ[INFERENCE_URL_ENV] = url
        work(images[0])
        best: dict[str, dict[str, float]] = {}
        sizes: list[int] = []
        for _ in range(repeats):
            for path in ("in-process", "Ray Serve"):
                if path == "in-process":
                    os.environ.pop(INFERENCE_URL_ENV, None)
                else:
                    os.environ[INFERENCE_URL_ENV] = url
                    before = len(batch_sizes(url, model))
                result = summary(burst(work, images))
                if path == "Ray Serve":
                    sizes = batch_sizes(url, model)[before:]
                if path not in best or result["p95"] < best[path]["p95"]:
                    best[path] = result
        os.environ.pop(INFERENCE_URL_ENV, None)
        print(f"\n{name}: {len(images)} different photos at once (best of {repeats} bursts by p95)")
        for path, r in best.items():
            print(f"  {path:<11} p50 {r['p50']:6.2f} s   p95 {r['p95']:6.2f} s   first {r['first']:6.2f} s   last {r['last']:6.2f} s")
        print(f"  Ray Serve p95 / in-process p95 = {best['Ray Serve']['p95'] / best['in-process']['p95']:.2f}x; "
              f"server batch sizes in the last burst: {sizes}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--cpus-per-replica", type=float, default=float(os.cpu_count() or 1))
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=10.0)
    parser.add_argument("--url", help="an inference server already running (python -m cvdemo.serve)")
    args = parser.parse_args(argv)
    images = photos(args.images)
    print(f"CPU: {os.cpu_count()} logical cores; {args.images} photos from coco128")
    if args.url:
        run(args.url.rstrip("/"), images, args.repeats)
        return 0
    from cvdemo.serve.deployment import local_server

    # The in-process models load (and export into the cache) first, so the replicas find the exports.
    from cvdemo.detection import Detector
    from cvdemo.fewshot.extractor import FeatureExtractor

    cache.shared(Detector, "yolov8n")
    cache.shared(FeatureExtractor, "efficientnet_lite0")
    cpus = args.cpus_per_replica
    with local_server(["yolov8n", "efficientnet_lite0"], ray_cpus=max(int(os.cpu_count() or 1), int(2 * cpus * args.replicas)),
                      num_replicas=args.replicas, num_cpus=cpus, max_batch_size=args.max_batch_size,
                      batch_wait_timeout_s=args.batch_wait_ms / 1000) as url:
        print(f"Ray Serve: {args.replicas} replica(s) per model, {cpus} CPU(s) each, max batch {args.max_batch_size}, "
              f"wait {args.batch_wait_ms:g} ms")
        run(url, images, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
