"""The same YOLO as an FP32-activation graph and as its INT8 file, measured side by side on this CPU.

The classroom detector is a static INT8 QDQ file; :mod:`cvdemo.qdq` derives its float-activation
twin (same weights, float activations). :func:`compare` runs both through ultralytics and puts
side by side what compression changed:

* **latency** on this CPU: interleaved runs of the same photo, median and best; the runtime is
  the same (ONNX Runtime) for both rows so only the precision differs. When the Detection page
  runs the float graph in another runtime (OpenVINO, when it measured faster), that is a third row;
* **accuracy**: mAP50 and mAP50-95 from ultralytics' validator on coco8 (or coco128);
* **box agreement**: on every image of the set, INT8 boxes matched to float boxes (same class,
  IoU ≥ 0.5), as precision / recall / F1 of the INT8 boxes against the float ones.

:func:`explain` reads the CPU's flags (:func:`cvdemo.compression.cpu.cpu_features`) to say why INT8
is, or is not, faster here: an INT8 dot-product instruction (AVX-512 VNNI, AVX-VNNI) or AMX tiles
make INT8 convolutions cheap; with AVX2 alone they take three instructions per step.

:func:`remembered` keeps one result per (model, data set) for the whole process, so a class
opening the page does not recompute it.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from cvdemo.errors import CvdemoError
from cvdemo import cache, datasets
from cvdemo.detection import FLOAT, INT8, Detector, Evaluation, match_boxes, sample_set
from cvdemo.images import is_image_name, load_image

if TYPE_CHECKING:
    import pandas as pd

    from cvdemo.compression.cpu import CpuFeatures

Progress = Callable[[float, str], None]  # (fraction done 0..1, what is happening)

DATASETS = {"coco8": "coco8 (8 images, under a minute)", "coco128": "coco128 (128 images, a few minutes)"}
AGREEMENT_IOU = 0.5
AGREEMENT_CONF = 0.25  # the Detection page's default confidence threshold
BORDERLINE = 0.5  # a box scoring below this is "borderline": quantization noise can move it across the threshold


class ComparisonUnavailable(CvdemoError, RuntimeError):
    """The comparison cannot run here (no INT8 file, no data set); the message says what is missing."""


# --- box agreement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxAgreement:
    """INT8 boxes matched to float boxes, image by image (same class, IoU ≥ ``min_iou``)."""

    images: int
    float_boxes: int
    int8_boxes: int
    matched: int
    mean_iou: float  # over matched pairs
    mean_score_change: float  # INT8 score - float score, over matched pairs
    unmatched_borderline: int  # boxes only one of the two found that score below BORDERLINE
    min_iou: float
    conf: float
    per_image: "pd.DataFrame"  # image, float boxes, INT8 boxes, matched, only float, only INT8

    @property
    def precision(self) -> float:
        """Share of the INT8 boxes that the float graph found too."""
        return self.matched / self.int8_boxes if self.int8_boxes else 1.0

    @property
    def recall(self) -> float:
        """Share of the float boxes that the INT8 file found too."""
        return self.matched / self.float_boxes if self.float_boxes else 1.0

    @property
    def f1(self) -> float:
        total = self.float_boxes + self.int8_boxes
        return 2 * self.matched / total if total else 1.0

    @property
    def unmatched(self) -> int:
        """Boxes only one of the two found."""
        return self.float_boxes + self.int8_boxes - 2 * self.matched


def box_agreement(
    images: Sequence[tuple[str, object]],
    float_model: Detector,
    int8_model: Detector,
    conf: float = AGREEMENT_CONF,
    min_iou: float = AGREEMENT_IOU,
    progress: Callable[[int, int], None] | None = None,
) -> BoxAgreement:
    """Run both detectors on ``(name, image)`` pairs and match their boxes (:func:`cvdemo.detection.match_boxes`)."""
    import pandas as pd

    rows, ious, shifts, borderline = [], [], [], 0
    for k, (name, image) in enumerate(images):
        a, b = float_model.detect(image, conf=conf, name=name), int8_model.detect(image, conf=conf, name=name)
        pairs = match_boxes(b.xyxy, b.class_ids, a.xyxy, a.class_ids, min_iou)
        ious += [iou for _, _, iou in pairs]
        shifts += [float(b.scores[i] - a.scores[j]) for i, j, _ in pairs]
        alone_a = np.delete(a.scores, [j for _, j, _ in pairs])
        alone_b = np.delete(b.scores, [i for i, _, _ in pairs])
        borderline += int((alone_a < BORDERLINE).sum() + (alone_b < BORDERLINE).sum())
        rows.append(
            {
                "image": name,
                "float boxes": len(a),
                "INT8 boxes": len(b),
                "matched": len(pairs),
                "only float": ", ".join(sorted(a.class_names[j] for j in set(range(len(a))) - {j for _, j, _ in pairs})),
                "only INT8": ", ".join(sorted(b.class_names[i] for i in set(range(len(b))) - {i for i, _, _ in pairs})),
            }
        )
        if progress is not None:
            progress(k + 1, len(images))
    table = pd.DataFrame(rows, columns=["image", "float boxes", "INT8 boxes", "matched", "only float", "only INT8"])
    return BoxAgreement(
        images=len(rows),
        float_boxes=int(table["float boxes"].sum()),
        int8_boxes=int(table["INT8 boxes"].sum()),
        matched=int(table["matched"].sum()),
        mean_iou=float(np.mean(ious)) if ious else math.nan,
        mean_score_change=float(np.mean(shifts)) if shifts else math.nan,
        unmatched_borderline=borderline,
        min_iou=min_iou,
        conf=conf,
        per_image=table,
    )


# --- the comparison ----------------------------------------------------------------------------


def _file_mb(path: Path) -> float:
    files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files if p.suffix in (".onnx", ".bin", ".pt")) / 2**20


def running_file(detector: Detector) -> Path:
    """The model file (or OpenVINO folder) a detector runs."""
    return Path(str(detector.model.ckpt_path or detector.model.model_name))


def row_name(detector: Detector) -> str:
    """E.g. "FP32 activations · ONNX Runtime"."""
    name = detector.runtime_info.name
    runtime_name, _, precision = name.partition(" · ")
    return f"{precision} · {runtime_name}" if precision else name


@dataclass
class DetectorComparison:
    """Float vs INT8 detector, measured here: the table, the box agreement and the CPU that explains them."""

    model_name: str
    dataset: str
    image_name: str  # the photo the latency was measured on
    cpu: "CpuFeatures"
    table: "pd.DataFrame"  # one row per detector (index: "float", "int8", "page"): latency, size, mAP
    agreement: BoxAgreement
    evaluations: dict[str, Evaluation] = field(repr=False)
    latency_samples_ms: dict[str, list[float]] = field(repr=False)
    seconds: float = 0.0

    @property
    def speedup(self) -> float:
        """Median inference time of the float graph / of the INT8 file, both in ONNX Runtime."""
        return float(self.table.loc["float", "inference ms"] / self.table.loc["int8", "inference ms"])


def compare(
    float_model: Detector,
    int8_model: Detector,
    dataset: str = "coco8",
    repeats: int = 20,
    page_model: Detector | None = None,
    progress: Progress | None = None,
) -> DetectorComparison:
    """Latency (interleaved, ``repeats`` runs each), mAP on ``dataset`` and box agreement of two detectors.

    ``float_model`` and ``int8_model`` should run in the same runtime (ONNX Runtime), so the
    latency ratio is the precision's alone. ``page_model``: the float graph as the Detection page
    runs it, when that is another runtime: a latency-only third row (same graph, same boxes).
    """
    import pandas as pd

    from cvdemo.compression.cpu import cpu_features
    from cvdemo.timing import time_interleaved

    if int8_model.variant != INT8 or float_model.variant != FLOAT:
        raise ComparisonUnavailable(
            f"Needs the float-activation graph and the INT8 file; got {float_model.description} and {int8_model.description}."
        )
    report = progress or (lambda fraction, text: None)
    started = time.perf_counter()
    models = {"float": float_model, "int8": int8_model}
    if page_model is not None and page_model.format != float_model.format and page_model.variant == FLOAT:
        models["page"] = page_model
    photo_name, photo_path = next(iter(datasets.packaged_images().items()), (None, None))
    images = _dataset_images(dataset)
    photo = load_image(photo_path) if photo_path else images[0][1]
    image_name = photo_name or images[0][0]

    report(0.0, f"Timing {len(models)} detectors on {image_name}, {repeats} interleaved runs each…")
    inference: dict[str, list[float]] = {k: [] for k in models}

    def runner(key: str, model: Detector) -> Callable[[], None]:
        return lambda: inference[key].append(model.detect(photo).latency.inference)

    warmup = 3
    wall = time_interleaved({k: runner(k, m) for k, m in models.items()}, repeats=repeats, warmup=warmup)
    inference = {k: v[warmup:] for k, v in inference.items()}

    evaluations: dict[str, Evaluation] = {}
    for step, key in enumerate(("float", "int8")):
        model = models[key]
        base = 0.2 + 0.3 * step
        report(base, f"mAP of {row_name(model)} on {dataset}…")
        with sample_set(dataset) as labeled:
            evaluations[key] = model.evaluate(
                labeled,
                progress=lambda done, total, base=base, name=row_name(model): report(
                    base + 0.3 * done / total, f"mAP of {name}: image {done} of {total}"
                ),
            )
    report(0.8, f"Box agreement on {len(images)} images…")
    agreement = box_agreement(
        images,
        float_model,
        int8_model,
        progress=lambda done, total: report(0.8 + 0.2 * done / total, f"Box agreement: image {done} of {total}"),
    )

    reference = statistics.median(inference["float"])
    rows = []
    for key, model in models.items():
        evaluation = evaluations.get(key)
        median = statistics.median(inference[key])
        rows.append(
            {
                "key": key,
                "model": row_name(model),
                "precision": model.variant,
                "runtime": model.runtime_info.name.partition(" · ")[0],
                "file": running_file(model).name,
                "file MB": round(_file_mb(running_file(model)), 2),
                "inference ms": round(median, 1),
                "best ms": round(min(inference[key]), 1),
                "per image ms": round(1000 * statistics.median(wall[key]), 1),
                "speed-up": round(reference / median, 2),
                "mAP50": round(evaluation.map50, 3) if evaluation else None,
                "mAP50-95": round(evaluation.map50_95, 3) if evaluation else None,
            }
        )
    report(1.0, "Done")
    return DetectorComparison(
        model_name=float_model.name,
        dataset=evaluations["float"].dataset,
        image_name=image_name,
        cpu=cpu_features(),
        table=pd.DataFrame(rows).set_index("key").rename_axis(None),
        agreement=agreement,
        evaluations=evaluations,
        latency_samples_ms=inference,
        seconds=time.perf_counter() - started,
    )


def _dataset_images(name: str) -> list[tuple[str, object]]:
    """Every image of a sample detection set, read in place (reading never writes next to the data)."""
    if name not in DATASETS:
        raise ComparisonUnavailable(f"Unknown data set '{name}'. Choose {' or '.join(DATASETS)}.")
    root = datasets.dataset_path(name) / "images"  # DataUnavailable says where to put it
    return [(p.name, p) for p in sorted(root.rglob("*")) if is_image_name(p.name)]


# --- what the numbers mean on this CPU ---------------------------------------------------------


def explain(comparison: DetectorComparison) -> str:
    """Markdown: why INT8 is (or is not) faster on this CPU, what it cost in mAP, and how far the boxes agree."""
    cpu, table, agree = comparison.cpu, comparison.table, comparison.agreement
    speedup = comparison.speedup
    flags = ", ".join(f for f in cpu.relevant_flags if "vnni" in f or f.startswith("amx") or f == "avx2") or "none"
    fast_int8 = cpu.amx or cpu.vnni
    if fast_int8:
        unit = "AMX tiles and an INT8 dot-product instruction (VNNI)" if cpu.amx else "an INT8 dot-product instruction (VNNI)"
        why = (
            f"This CPU has {unit}: one VNNI instruction multiplies 8-bit numbers and adds them into 32-bit sums, "
            "four per lane, where FP32 needs one fused multiply-add per number, so INT8 convolutions can be faster."
        )
    elif cpu.avx2:
        why = (
            "This CPU has AVX2 but no INT8 dot-product instruction (no VNNI): each INT8 multiply-add step takes three "
            "instructions (vpmaddubsw, vpmaddwd, vpaddd), and quantizing and dequantizing between layers costs extra, "
            "so expect little or no gain from INT8, sometimes a loss."
        )
    else:
        why = "This CPU has neither AVX2 nor VNNI: neither FP32 nor INT8 kernels are well vectorised."
    if speedup >= 1.05:
        verdict = f"Measured: INT8 runs **{speedup:.2f}×** as fast as FP32 activations (median inference, both in ONNX Runtime)."
    elif speedup > 1 / 1.05:
        verdict = f"Measured: INT8 is **about as fast** as FP32 activations ({speedup:.2f}×, both in ONNX Runtime)."
    else:
        verdict = f"Measured: INT8 is **slower** than FP32 activations ({speedup:.2f}×, both in ONNX Runtime)."
    if fast_int8 and speedup < 1.05:
        verdict += (
            " Only the convolutions gain from VNNI; the quantize/dequantize steps around each of them, the float "
            "detection head and a busy server (other sessions share these cores) take back the difference."
        )
    lines = [
        f"**Speed.** {why} {verdict} Flags read from {cpu.source}: {flags}.",
        "",
        f"**Size.** The INT8 file is {table.loc['int8', 'file MB']:.1f} MB, the float graph "
        f"{table.loc['float', 'file MB']:.1f} MB: 1 byte per weight instead of 4.",
        "",
        f"**Accuracy.** mAP50-95 {table.loc['float', 'mAP50-95']:.3f} with FP32 activations, "
        f"{table.loc['int8', 'mAP50-95']:.3f} in INT8 (mAP50 {table.loc['float', 'mAP50']:.3f} vs "
        f"{table.loc['int8', 'mAP50']:.3f}) on {comparison.dataset}. Both use the same INT8-rounded weights: the "
        "difference is the rounding of the activations between layers.",
        "",
        f"**Same boxes?** At confidence ≥ {agree.conf:.2f}, {agree.matched} of {agree.int8_boxes} INT8 boxes match one "
        f"of the {agree.float_boxes} float boxes (same class, IoU ≥ {agree.min_iou:.1f}; F1 {agree.f1:.2f}, mean IoU "
        f"{agree.mean_iou:.2f}, scores move by {agree.mean_score_change:+.3f} on average). Of the {agree.unmatched} "
        f"boxes only one of the two found, {agree.unmatched_borderline} score below {BORDERLINE}: borderline boxes that "
        "a small change of score moves across the threshold. INT8 scores also differ from one CPU to another "
        "(integer kernels round differently with and without VNNI); the float graph's do not, which is why the "
        "Detection page runs it by default.",
    ]
    return "\n".join(lines)


# --- one result per process ---------------------------------------------------------------------

_results: dict[tuple[str, str], DetectorComparison] = {}
_locks: dict[tuple[str, str], threading.Lock] = {}
_guard = threading.Lock()


def detectors(name: str = "yolov8n") -> tuple[Detector, Detector, Detector]:
    """The float graph in ONNX Runtime, the INT8 file, and the float graph as the Detection page runs it.

    Shared with the Detection page through :func:`cvdemo.cache.shared` (same arguments, same objects).
    """
    from cvdemo.detection import has_int8_twin

    if not has_int8_twin(name):
        raise ComparisonUnavailable(
            f"{name} has no INT8 file on this machine: the comparison needs the INT8 QDQ ONNX file "
            "(e.g. yolov8n_coco_int8_qdq.onnx in the weights folder)."
        )
    int8_model = cache.shared(Detector, name, accelerated=True, variant=INT8)
    onnx_float = cache.shared(Detector, name, accelerated=False, variant=FLOAT)
    page_float = cache.shared(Detector, name, accelerated=True, variant=FLOAT)
    if onnx_float.variant != FLOAT:
        raise ComparisonUnavailable(f"The float-activation graph is not available: {onnx_float.fallback_reason}.")
    return onnx_float, int8_model, page_float


def has_result(name: str = "yolov8n", dataset: str = "coco8") -> bool:
    return (name, dataset) in _results


def remembered(
    name: str = "yolov8n", dataset: str = "coco8", progress: Progress | None = None, refresh: bool = False
) -> DetectorComparison:
    """:func:`compare` of :func:`detectors`, computed once per process and (model, data set); ``refresh`` re-measures."""
    key = (name, dataset)
    if not refresh and key in _results:
        return _results[key]  # a re-measure under way elsewhere keeps the lock; readers still get the last result
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:  # two sessions asking at once compute it once
        if refresh or key not in _results:
            onnx_float, int8_model, page_float = detectors(name)
            _results[key] = compare(onnx_float, int8_model, dataset, page_model=page_float, progress=progress)
    return _results[key]

