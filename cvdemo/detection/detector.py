"""The :class:`Detector`: a YOLO detect model from the weights registry, which runtime runs it, and its calls.

A ``.pt`` is exported once (:mod:`cvdemo.detection.export`) and run from the export; an INT8 QDQ ONNX
file runs as the float-activation graph derived from it when that graph finds what the INT8 file
finds (:mod:`cvdemo.detection.parity`), else as it is. Calls go through the result cache, the
network's scheduler and, when configured, the inference server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from PIL import Image

from cvdemo import catalog, networks, qdq, results, runtime, weights
from cvdemo.detection._common import _as_rgb, _bgr
from cvdemo.detection.detections import Detections
from cvdemo.detection.evaluation import Evaluation, validate
from cvdemo.detection.export import export_pt, openvino_folder
from cvdemo.detection.labeled_sets import LabeledSet
from cvdemo.detection.models import int8_file
from cvdemo.detection.nms_lesson import NmsLesson
from cvdemo.detection.parity import RAW_TOLERANCE, DetectionParity, detection_parity, raw_difference
from cvdemo.detection.predictor import _run
from cvdemo.yolo_runtime import import_ultralytics

if TYPE_CHECKING:
    from ultralytics.engine.results import Results

IMAGE_SIZES = (320, 416, 512, 640, 800, 960, 1280)

# cvdemo.runtime's backend key for each ultralytics backend format (the latency badge's name).
FORMAT_BACKENDS = {"pt": "pytorch", "onnx": "onnxruntime", "openvino": "openvino"}

FLOAT, INT8 = "float", "int8"
VARIANTS = {FLOAT: "FP32 activations", INT8: "INT8"}  # Detector(variant=...) -> what the badge calls it


def detect_input(image: Image.Image, raw: bool = False, **settings: Any) -> dict:
    """One image and its predict settings as the plain dict :meth:`Detector.predict_batch` takes."""
    classes = settings.get("classes")
    return {
        "image": np.asarray(image.convert("RGB"), dtype=np.uint8),
        "conf": float(settings.get("conf", 0.25)),
        "iou": float(settings.get("iou", 0.45)),
        "classes": [int(c) for c in classes] if classes else None,
        "imgsz": int(settings.get("imgsz", 640)),
        "max_det": int(settings.get("max_det", 300)),
        "raw": bool(raw),
    }


class Detector:
    """A YOLO detect model from the weights registry (or a file path), shared across sessions.

    ``Detector("yolov8n")`` resolves the registry asset: the official ``.pt`` online, or the
    classroom INT8 QDQ ONNX file offline. ``variant`` picks the precision that runs:

    * ``"float"`` (default): a ``.pt`` runs as before (with ``accelerated``, exported once with
      ultralytics' own ``YOLO.export``, OpenVINO when installed, else ONNX; if that fails, PyTorch,
      and :attr:`fallback_reason` says why). An INT8 QDQ file is rewritten once into its
      float-activation graph (:func:`cvdemo.qdq.float_activation_file`): INT8 kernels differ by
      CPU, float math does not, so every machine shows the same boxes. That graph must find the
      same objects as the INT8 file on a few sample photos (:func:`detection_parity`), else the
      INT8 file runs and :attr:`fallback_reason` says why. With ``accelerated``, OpenVINO runs it
      too when installed, matches ONNX Runtime's raw output and measures faster here.
    * ``"int8"``: the INT8 file as it is, in ONNX Runtime: the compressed twin.

    Calls are serialized with a lock: one ultralytics predictor is not safe to use from two
    threads at once.
    """

    def __init__(self, weights_name: str = "yolov8n", accelerated: bool = True, variant: str = FLOAT):
        if variant not in VARIANTS:
            raise ValueError(f"Unknown variant '{variant}'. Choose {' or '.join(VARIANTS)}.")
        if weights_name in weights.REGISTRY:
            self.path = weights.resolve(weights_name)  # WeightsUnavailable says which file to put where
            self.name = weights_name
        else:
            self.path = Path(weights_name)
            self.name = self.path.stem
            if not self.path.is_file():
                raise FileNotFoundError(f"No model file at {self.path}.")
        self.accelerated = accelerated
        self.exported_path: Path | None = None  # the export that runs, when one was made from the .pt
        self.derived_path: Path | None = None  # the float-activation graph that runs, when derived from an INT8 file
        self.fallback_reason: str | None = None  # why the asked-for path is not the one that runs
        self.parity: DetectionParity | None = None  # float graph vs INT8 file, when one was derived
        self.latency_ms: dict[str, float] = {}  # best-of-5 per runtime behind the float graph's choice
        self.notes: list[str] = []  # runtimes tried and refused, for the curious
        self._lock = threading.Lock()
        import_ultralytics()
        if variant == INT8:
            if not qdq.is_quantized_file(self.path):
                found = int8_file(weights_name) if weights_name in weights.REGISTRY else None
                if found is None:
                    raise ValueError(f"{self.name} has no INT8 file on this machine ({self.path.name} is not quantized).")
                self.path = found
            self._adopt(self._yolo(self.path), INT8)
        elif self.path.suffix == ".pt" and accelerated:
            try:
                exported = export_pt(self.path)
                self._adopt(self._yolo(exported))
                self.exported_path = exported
            except Exception as exc:  # anything: a missing package, an exporter or runtime error
                self.fallback_reason = _short_reason(exc)
                runtime.warn_once(str(self.path), f"export failed: {self.fallback_reason}")
                self._adopt(self._yolo(self.path))
        elif qdq.is_quantized_file(self.path):
            model = self._float_twin(accelerated)
            self._adopt(model, FLOAT if self.derived_path else INT8)
        else:
            self._adopt(self._yolo(self.path))
        # The inference server runs the registry's default (accelerated, float) model: others always run here.
        self.serve_key: str | None = (
            f"{self.name}/detect" if weights_name in weights.REGISTRY and accelerated and variant == FLOAT else None
        )

    def _yolo(self, path: Path) -> Any:
        """An ultralytics YOLO on a model file (or OpenVINO folder), its predictor built now, not in a student's request."""
        from ultralytics import YOLO

        model = YOLO(str(path), task="detect")
        _run(model, Image.new("RGB", (64, 64)))
        return model

    def _adopt(self, model: Any, variant: str | None = None) -> None:
        """Run ``model`` from now on, and read what the page needs from its backend.

        ``variant``: INT8 or FLOAT when the model is the INT8 file or the float graph derived from it.
        """
        self.model = model
        backend = model.predictor.model
        self.format: str = str(backend.format)
        self.names: dict[int, str] = {int(k): str(v) for k, v in backend.names.items()}
        static = self.format != "pt" and not getattr(backend, "dynamic", False) and hasattr(backend, "imgsz")
        # Static exports (like the classroom ONNX) only take the size they were exported at.
        self.fixed_imgsz: int | None = int(max(backend.imgsz)) if static else None
        self.end2end: bool = bool(getattr(backend, "end2end", False))
        self.precision: str | None = _openvino_precision(backend) if self.format == "openvino" else None
        self.variant: str | None = variant

    def _float_twin(self, accelerated: bool) -> Any:
        """The INT8 file's float-activation graph, if it finds what the INT8 file finds; else the INT8 file."""
        int8 = self._yolo(self.path)
        try:
            float_path = qdq.float_activation_file(self.path)
            onnx_float = self._yolo(float_path)
        except Exception as exc:  # an unusual graph the edit cannot handle, an unwritable cache...
            return self._refuse_float(int8, f"could not derive it ({_short_reason(exc)})")
        images = runtime.parity_images()
        reference = [_run(int8, im)[0] for im in images]
        float_runs = [_run(onnx_float, im, copy_raw=True) for im in images]
        self.parity = detection_parity(reference, [r for r, _ in float_runs])
        if not self.parity.passed:
            return self._refuse_float(int8, f"it does not find what the INT8 file finds: {self.parity.describe()}")
        self.derived_path = float_path
        candidates = {runtime.ONNXRUNTIME: onnx_float}
        if accelerated and runtime.backend_installed(runtime.OPENVINO):
            try:
                openvino = self._yolo(openvino_folder(float_path))
                diff = raw_difference([raw for _, raw in float_runs], [_run(openvino, im, copy_raw=True)[1] for im in images])
                if all(diff[k] <= RAW_TOLERANCE[k] for k in diff):
                    candidates[runtime.OPENVINO] = openvino
                else:  # e.g. bf16 on a CPU with AMX: other numbers than FP32, so other boxes than elsewhere
                    self.notes.append(
                        f"OpenVINO refused: its output differs from ONNX Runtime's by {diff['boxes']:.2g} px / "
                        f"{diff['scores']:.2g} in scores (precision {_openvino_precision(openvino.predictor.model)})"
                    )
            except Exception as exc:
                self.notes.append(f"OpenVINO could not run it ({_short_reason(exc)})")
        if len(candidates) > 1:  # measure, interleaved, best of 5: the faster runtime on *this* machine wins
            image = images[0]
            self.latency_ms = {name: math.inf for name in candidates}
            for _ in range(5):
                for name, model in candidates.items():
                    start = time.perf_counter()
                    _run(model, image)
                    self.latency_ms[name] = min(self.latency_ms[name], 1000 * (time.perf_counter() - start))
            return candidates[min(self.latency_ms, key=self.latency_ms.__getitem__)]
        return onnx_float

    def _refuse_float(self, int8: Any, reason: str) -> Any:
        self.fallback_reason = f"FP32-activation graph refused: {reason}"
        runtime.log.warning("%s runs its INT8 file: %s", self.name, self.fallback_reason)
        return int8

    @property
    def description(self) -> str:
        """E.g. "yolov8n (yolov8n.pt, openvino)", "yolov8n (yolov8n_coco_int8_qdq.onnx, FP32 activations, openvino)"."""
        variant = f", {VARIANTS[self.variant]}" if self.variant else ""
        return f"{self.name} ({self.path.name}{variant}, {self.format})"

    @property
    def identity(self) -> str:
        """What the results depend on: the weights file (path, size, mtime), the export that runs, its format."""
        stat = self.path.stat()
        # the variant and the derived graph too: the float twin and the INT8 file share one weights file
        return (
            f"{self.path}|{stat.st_size}|{stat.st_mtime_ns}|{self.exported_path}|{self.derived_path}|"
            f"{self.variant}|{self.format}|{self.precision}"
        )

    def _scheduled_predict(self, image: Image.Image, **kwargs: Any) -> tuple["Results", tuple[int, int], Any]:
        """:meth:`_predict` through this network's FIFO scheduler (one at a time, process-wide gate)."""
        return networks.scheduler("detector", self, self.identity).run((image, kwargs))

    @property
    def runtime_info(self) -> runtime.RuntimeInfo:
        """What runs, for the latency badge: e.g. "ONNX Runtime · FP32 activations (derived from the INT8 file …)",
        or "… on the inference server"."""
        from cvdemo.serve.client import served_runtime

        return served_runtime(self._local_runtime_info(), getattr(self, "serve_key", None))

    def _local_runtime_info(self) -> runtime.RuntimeInfo:
        name = runtime.BACKEND_LABELS.get(FORMAT_BACKENDS.get(self.format, ""), self.format)
        if self.precision and self.precision != "f32":
            name += f" {self.precision}"  # OpenVINO chose a lower precision on this CPU: say so
        if self.variant:
            name += f" · {VARIANTS[self.variant]}"
        no_pytorch = "" if self.accelerated else ", no PyTorch weights to run"
        if self.exported_path is not None:
            return runtime.RuntimeInfo(name, True, f"exported from {self.path.name}")
        if self.format == "pt":
            return runtime.RuntimeInfo(name, False, f"export failed: {self.fallback_reason}" if self.fallback_reason else None)
        if self.derived_path is not None:
            return runtime.RuntimeInfo(name, True, f"derived from the INT8 file {self.path.name}{no_pytorch}")
        if self.fallback_reason is not None:
            return runtime.RuntimeInfo(name, True, f"{self.fallback_reason}; running the INT8 file {self.path.name}")
        kind = "INT8 ONNX" if self.variant == INT8 else self.format.upper()
        # accelerated=False cannot switch an export back to PyTorch: there are no PyTorch weights.
        return runtime.RuntimeInfo(name, True, f"{kind} file {self.path.name}{no_pytorch}")

    @property
    def backend_label(self) -> str:
        """E.g. "OpenVINO (exported from yolov8n.pt)" or "ONNX Runtime · INT8 (INT8 ONNX file yolov8n_coco_int8_qdq.onnx)"."""
        return self.runtime_info.label

    def _predict(self, image: Image.Image, raw: bool = False, **kwargs: Any) -> tuple["Results", tuple[int, int], Any]:
        """One forward pass: the result, the network input shape and (with ``raw``, or when local) the raw output.

        With ``CVDEMO_INFERENCE_URL`` set the network runs on the inference server (:mod:`cvdemo.serve`)
        and its plain output becomes the same ultralytics ``Results`` here.
        """
        from cvdemo.serve.client import remote_batch_fn

        remote = remote_batch_fn(self.serve_key) if getattr(self, "serve_key", None) else None
        if remote is None:
            return self._predict_local(image, **kwargs)
        output = remote([detect_input(image, raw=raw, **kwargs)])[0]
        return self._results_from(output, image)

    def _predict_local(self, image: Image.Image, **kwargs: Any) -> tuple["Results", tuple[int, int], Any]:
        """One ultralytics predict call in this process."""
        with self._lock:
            result, raw = _run(self.model, image, **kwargs)
            return result, self.model.predictor.last_input_shape, raw

    def predict_batch(self, inputs: Sequence[dict]) -> list[dict]:
        """The detector's batch function on plain values (what the inference server runs).

        Each input is :func:`detect_input`'s dict; each output holds the boxes as an ``(N, 6)`` array
        (x1, y1, x2, y2, score, class in original-image pixels), the network input shape, ultralytics'
        timing and, when asked, the raw network output. One predict call per image: the classroom
        INT8 export takes one image at a time, and images of different shapes letterbox differently.
        """
        outputs = []
        for item in inputs:
            settings = {k: item[k] for k in ("conf", "iou", "imgsz", "max_det")}
            result, input_shape, raw = self._predict_local(
                Image.fromarray(np.asarray(item["image"], dtype=np.uint8)), classes=item.get("classes"), **settings
            )
            output = {
                "boxes": result.boxes.data.cpu().numpy().astype(np.float32),
                "input_shape": list(input_shape),
                "speed": {k: float(v or 0) for k, v in result.speed.items()},
                "path": str(result.path),
            }
            if item.get("raw"):
                output["raw"] = raw.detach().float().cpu().numpy()
            outputs.append(output)
        return outputs

    def _results_from(self, output: dict, image: Image.Image) -> tuple["Results", tuple[int, int], Any]:
        """:meth:`predict_batch`'s plain output as the ultralytics ``Results`` a local predict returns."""
        import torch
        from ultralytics.engine.results import Results

        boxes = torch.from_numpy(np.asarray(output["boxes"], dtype=np.float32).reshape(-1, 6))
        result = Results(_bgr(image), path=output.get("path", "image0.jpg"), names=dict(self.names), boxes=boxes)
        result.speed = dict(output["speed"])
        raw = torch.from_numpy(np.asarray(output["raw"])) if "raw" in output else None
        h, w = output["input_shape"]
        return result, (int(h), int(w)), raw

    def detect(
        self,
        image: Any,
        conf: float = catalog.DETECTION_CONF,  # the Detection page's defaults, one place for page, twin and benches
        iou: float = catalog.DETECTION_IOU,
        classes: Sequence[int] | None = None,
        imgsz: int = catalog.DETECTION_IMGSZ,
        max_det: int = 300,
        name: str = "image",
    ) -> Detections:
        """Boxes in pixels of ``image`` (PIL/bytes/path/array), with ultralytics' timing split.

        Computed once per process per (model, image content, settings): the same picture with the
        same settings from another session gets the same (read-only) result, with its own ``name``.
        """
        rgb = _as_rgb(image)
        settings = dict(conf=conf, iou=iou, classes=list(classes) if classes else None, imgsz=imgsz, max_det=max_det)

        def compute() -> Detections:
            result, input_shape, _ = self._scheduled_predict(rgb, **settings)
            return Detections(result, name, self.description, input_shape, conf, iou, self.runtime_info)

        found = results.cached(results.key("detect", self.identity, rgb, settings), compute)
        return found if found.image_name == name else dataclasses.replace(found, image_name=name)

    def nms_lesson(
        self,
        image: Any,
        conf: float = 0.25,
        classes: Sequence[int] | None = None,
        imgsz: int = 640,
        agnostic: bool = False,
        max_det: int = 300,
    ) -> NmsLesson:
        """Run the network once and keep its raw output, for NMS at any IoU threshold."""
        if self.end2end:
            raise ValueError(
                f"{self.name} is an end-to-end (NMS-free) model: it outputs final boxes, there is no NMS to show."
            )
        rgb = _as_rgb(image)
        cls_list = list(classes) if classes else None
        settings = dict(conf=conf, classes=cls_list, imgsz=imgsz, agnostic=agnostic, max_det=max_det)
        return results.cached(
            results.key("nms_lesson", self.identity, rgb, settings),
            lambda: self._nms_lesson(rgb, conf, cls_list, imgsz, agnostic, max_det),
        )

    def _nms_lesson(
        self, rgb: Image.Image, conf: float, cls_list: list[int] | None, imgsz: int, agnostic: bool, max_det: int
    ) -> NmsLesson:
        _, input_shape, raw = self._scheduled_predict(
            rgb, raw=True, conf=conf, iou=0.45, classes=cls_list, imgsz=imgsz, max_det=max_det
        )
        return NmsLesson.from_raw(rgb, raw, input_shape, dict(self.names), conf, cls_list, agnostic, max_det)

    def evaluate(
        self,
        labeled: LabeledSet,
        imgsz: int = 640,
        progress: Callable[[int, int], None] | None = None,
    ) -> Evaluation:
        """mAP50, mAP50-95 and the PR curve with ultralytics' DetectionValidator.

        ``progress(images_done, images_total)`` is called after every batch.

        Everything the validator writes (label caches, its run folder) stays in the set's temp folder.
        """
        # The PyTorch module is shared with the predictor: do not run both at once. (ONNX gets its own session.)
        lock = self._lock if self.format == "pt" else contextlib.nullcontext()
        batch = 1 if self.format != "pt" else 4
        return validate(self.model, labeled, self.description, self.fixed_imgsz or imgsz, batch, lock, progress)


def _openvino_precision(backend: Any) -> str | None:
    """The precision OpenVINO computes in, e.g. "f32", or "bf16" (its CPU default where the CPU has AMX/AVX512-BF16)."""
    try:
        return str(backend.ov_compiled_model.get_property("INFERENCE_PRECISION_HINT").get_type_name())
    except Exception:
        return None


def _short_reason(exc: BaseException) -> str:
    """An exception as one short line for a badge (ultralytics messages can span screens)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
