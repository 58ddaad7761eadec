"""Detection speed, as ratios measured in one run (interleaved, best of repeats).

1. The page's ``Detector.detect`` vs a bare ``YOLO(...).predict`` on the same image and model file:
   the wrapper (raw-output capture, Detections) must cost at most 10 % (goal <= 1.10x).
2. FP32 activations vs INT8: the float-activation graph derived from the INT8 QDQ file vs the
   INT8 file itself, both in ONNX Runtime (only the precision differs), and the float graph in
   the runtime the Detection page picked (OpenVINO when it measured faster). Prints this CPU's
   flags: an INT8 dot-product instruction (VNNI) or AMX is what makes INT8 faster.
3. PyTorch vs the accelerated export of the ``.pt`` (OpenVINO or ONNX, ``Detector(accelerated=True)``)
   and vs an ONNX file of the same detector, when those files are on this machine.

Run: ``python -m bench.bench_detection [--repeats N]``. Uses ``../shared/weights`` and
``../shared/data`` unless CVDEMO_WEIGHTS_DIR / CVDEMO_DATA_DIR say otherwise.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
os.environ.setdefault("CVDEMO_WEIGHTS_DIR", str(SHARED / "weights"))
os.environ.setdefault("CVDEMO_DATA_DIR", str(SHARED / "data"))
os.environ.setdefault("CVDEMO_OFFLINE", "1")
# Time the networks, not the process-wide result cache (a repeat would be a cache hit): keep no results.
os.environ.setdefault("CVDEMO_RESULT_CACHE_MB", "0")

from PIL import Image  # noqa: E402

from bench.timing import compare, report  # noqa: E402
from cvdemo import datasets, weights  # noqa: E402
from cvdemo.detection import FLOAT, INT8, Detector, has_int8_twin, import_ultralytics  # noqa: E402


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


def _scores(model: Detector, image: Image.Image) -> str:
    det = model.detect(image)
    return ", ".join(f"{n} {s:.2f}" for n, s in zip(det.class_names, det.scores))


def _compare_detectors(by_label: dict[str, Detector], image: Image.Image, repeats: int, reference: str) -> None:
    """Time ``detect(image)`` of each detector, interleaved, and print the ratios to ``reference``."""
    timings = compare({label: (lambda m=model: m.detect(image)) for label, model in by_label.items()},
                      repeats=repeats, warmup=3)
    report(timings, reference=reference)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="yolov8n")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    image = Image.open(datasets.packaged_images()["bus.jpg"]).convert("RGB")
    detector = Detector(args.model)
    import_ultralytics()
    from ultralytics import YOLO

    running = detector.derived_path or detector.exported_path or detector.path
    if detector.format == "openvino":
        running = Path(str(detector.model.ckpt_path))
    bare = YOLO(str(running), task="detect")
    print(f"model: {detector.description}; runs {running.name}; image: bus.jpg {image.size[0]}x{image.size[1]}")
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

    print("\n2. FP32 activations vs INT8 (the same network; interleaved)")
    if has_int8_twin(args.model):
        from cvdemo.compression import cpu_features

        cpu = cpu_features()
        print(f"  CPU: {cpu.summary()}; flags: {', '.join(cpu.relevant_flags)}")
        by_label = {
            "FP32 activations, ONNX Runtime": Detector(args.model, accelerated=False, variant=FLOAT),
            "INT8, ONNX Runtime": Detector(args.model, variant=INT8),
        }
        if detector.variant == FLOAT and detector.format != "onnx":
            by_label[f"FP32 activations, {detector.runtime_info.name.partition(' · ')[0]} (the page's)"] = detector
        for label, model in by_label.items():
            print(f"  {label}: {model.backend_label}\n    bus.jpg: {_scores(model, image)}")
        _compare_detectors(by_label, image, args.repeats, reference="FP32 activations, ONNX Runtime")
    else:
        print(f"  skipped: no INT8 file of {args.model} on this machine")

    print("\n3. PyTorch vs exported runtimes")
    files = _local_files(args.model)
    if ".pt" in files:
        by_label = {".pt detect": Detector(str(files[".pt"]), accelerated=False)}
        by_label["accelerated detect"] = Detector(str(files[".pt"]))
        if ".onnx" in files:
            by_label[".onnx detect"] = Detector(str(files[".onnx"]))
        for label, model in by_label.items():
            print(f"  {label}: {model.backend_label}: {model.detect(image).counts()}")
        _compare_detectors(by_label, image, args.repeats, reference=".pt detect")
    else:
        have = ", ".join(str(p) for p in files.values()) or "none"
        print(f"  skipped: needs {args.model}.pt locally; found: {have}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
