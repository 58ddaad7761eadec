"""Detection speed, as ratios measured in one run (interleaved, best of repeats).

1. The page's ``Detector.detect`` vs a bare ``YOLO(...).predict`` on the same image and model file:
   the wrapper (raw-output capture, Detections) must cost at most 10 % (goal <= 1.10x).
2. PyTorch vs the accelerated export of the ``.pt`` (OpenVINO or ONNX, ``Detector(accelerated=True)``)
   and vs an ONNX file of the same detector, when those files are on this machine.

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

    print("\n2. PyTorch vs exported runtimes")
    files = _local_files(args.model)
    if ".pt" in files:
        by_label = {".pt detect": Detector(str(files[".pt"]), accelerated=False)}
        by_label["accelerated detect"] = Detector(str(files[".pt"]))
        if ".onnx" in files:
            by_label[".onnx detect"] = Detector(str(files[".onnx"]))
        for label, model in by_label.items():
            print(f"  {label}: {model.backend_label}: {model.detect(image).counts()}")
        timings = compare(
            {label: (lambda m=model: m.detect(image)) for label, model in by_label.items()},
            repeats=args.repeats,
            warmup=3,
        )
        report(timings, reference=".pt detect")
    else:
        have = ", ".join(str(p) for p in files.values()) or "none"
        print(f"  skipped: needs {args.model}.pt locally; found: {have}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
