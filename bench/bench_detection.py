"""Detection speed, as ratios measured in one run (interleaved, best of repeats).

1. The page's ``Detector.detect`` vs a bare ``YOLO(...).predict`` on the same image and model file:
   the wrapper (raw-output capture, Detections) must cost at most 10 % (goal <= 1.10x).
2. ONNX vs PyTorch weights of the same detector, when both files are on this machine.

Run: ``python -m bench.bench_detection [--repeats N]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from bench.timing import compare, report
from cvdemo import datasets, weights
from cvdemo.detection import Detector, import_ultralytics


def _local_files(name: str) -> dict[str, Path]:
    """Every local file of a registry asset, by suffix (.pt, .onnx)."""
    asset = weights.get(name)
    found: dict[str, Path] = {}
    for folder in (weights.weights_dir(), weights.cache_dir()):
        if folder is None:
            continue
        for filename in asset.candidates:
            path = folder / filename
            if path.is_file() and path.suffix not in found:
                found[path.suffix] = path
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="yolov8n")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    image = Image.open(datasets.packaged_images()["bus.jpg"]).convert("RGB")
    detector = Detector(args.model)
    import_ultralytics()
    from ultralytics import YOLO

    bare = YOLO(str(detector.path), task="detect")
    print(f"model: {detector.description}; image: bus.jpg {image.size[0]}x{image.size[1]}")
    print("\n1. Detector.detect vs bare YOLO.predict (same file, same settings)")
    timings = compare(
        {
            "YOLO.predict": lambda: bare.predict(image, conf=0.25, iou=0.45, imgsz=640, verbose=False),
            "Detector.detect": lambda: detector.detect(image, conf=0.25, iou=0.45, imgsz=640),
        },
        repeats=args.repeats,
        warmup=3,
    )
    report(timings, reference="YOLO.predict", goal=1.10)

    print("\n2. ONNX vs PyTorch weights")
    files = _local_files(args.model)
    if ".pt" in files and ".onnx" in files:
        by_format = {suffix: Detector(str(path)) for suffix, path in files.items() if suffix in (".pt", ".onnx")}
        for suffix, model in by_format.items():
            print(f"  {suffix}: {model.description}: {model.detect(image).counts()}")
        timings = compare(
            {f"{suffix} detect": (lambda m=model: m.detect(image)) for suffix, model in by_format.items()},
            repeats=args.repeats,
            warmup=3,
        )
        report(timings, reference=".pt detect")
    else:
        have = ", ".join(str(p) for p in files.values()) or "none"
        print(f"  skipped: needs both {args.model}.pt and an ONNX export locally; found: {have}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
