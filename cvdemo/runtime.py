"""Exported runtimes for fast CPU inference, with parity checks.

``accelerate(model, example_input)`` exports a PyTorch model to ONNX once, runs it in OpenVINO or
ONNX Runtime, and hands back an :class:`AcceleratedModel`: called with a batch tensor, it returns
what the PyTorch model would (a tensor, or a tuple of them), only faster. Eager PyTorch dispatches
one op at a time; an exported graph is planned once, with Conv+BN+activation fused and
CPU-friendly memory layouts. Measured here (EfficientNet-Lite0, batch 1, 2 cores): ONNX Runtime
0.32-0.35x and OpenVINO FP32 0.33-0.41x of PyTorch eager, which one wins varying from run to run,
hence the measurement at load (``python -m bench.bench_runtime``).

* The ONNX file is cached under ``<cvdemo cache>/runtime`` keyed by model name, a hash of the
  weights, the input shape and the export recipe, so a server restart does not export again.
* Parity: before an accelerated backend is used, it runs beside PyTorch on a few real images;
  it is refused when a top-1 class differs (classifiers) or an L2-normalised output row differs
  by more than ``tolerance``.
* Anything that goes wrong (a backend not installed, an export or parity failure) falls back to
  PyTorch, logged once and named in :attr:`AcceleratedModel.label` for the page's latency badge.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cvdemo import weights
from cvdemo.files import atomic_write_bytes

if TYPE_CHECKING:  # heavy imports stay lazy
    import torch
    from PIL import Image
    import torch.nn as nn

log = logging.getLogger("cvdemo.runtime")

OPENVINO, ONNXRUNTIME, TORCH_COMPILE, PYTORCH = "openvino", "onnxruntime", "torch.compile", "pytorch"
BACKEND_LABELS = {
    OPENVINO: "OpenVINO",
    ONNXRUNTIME: "ONNX Runtime",
    TORCH_COMPILE: "torch.compile",
    PYTORCH: "PyTorch",
}
# What backend="auto" considers: the exported-file backends. torch.compile is offered explicitly
# (bench) but not chosen automatically: it compiles for a minute per process and keeps no file here.
AUTO_BACKENDS = (OPENVINO, ONNXRUNTIME)
DEFAULT_TOLERANCE = 1e-3  # max abs difference of L2-normalised outputs; FP32 reorderings give ~1e-6
EXPORT_RECIPE = 1  # bump when export_onnx changes: files exported by an older recipe are not reused
OPSET = 18


def cpu_threads() -> int:
    """Cores this process may run on (a container's CPU quota shows up here, not in os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def cache_folder() -> Path:
    """Where exported models live: ``<cvdemo cache>/runtime`` (never inside the repo)."""
    return weights.cache_root() / "runtime"


@dataclass(frozen=True)
class RuntimeInfo:
    """What runs a network, for latency badges: ``name`` fits in a badge ("OpenVINO", "PyTorch");
    ``detail`` is the longer story (where an export came from, or why acceleration is off)."""

    name: str
    accelerated: bool
    detail: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.detail})" if self.detail else self.name


PYTORCH_RUNTIME = RuntimeInfo(BACKEND_LABELS[PYTORCH], accelerated=False)

_warned: set[tuple[str, str]] = set()


def warn_once(name: str, reason: str) -> None:
    """Log why ``name`` runs in PyTorch, once per process and reason (not once per request)."""
    if (name, reason) not in _warned:
        _warned.add((name, reason))
        log.warning("%s runs in PyTorch: %s", name, reason)


def parity_images(count: int = 4) -> list["Image.Image"]:
    """A few real photos for parity checks: packaged with ultralytics, else from the data sets.

    A machine with none gets one plain grey picture, so callers never special-case it (the
    check is then weaker, not skipped).
    """
    from PIL import Image

    from cvdemo.datasets import sample_images
    from cvdemo.images import load_image

    paths = list(sample_images().values())
    step = max(1, len(paths) // count)
    return [load_image(p) for p in paths[::step][:count]] or [Image.new("RGB", (224, 224), (128, 128, 128))]


def backend_installed(backend: str) -> bool:
    """Whether ``backend``'s package can be imported here (no import is done)."""
    from importlib.util import find_spec

    module = {OPENVINO: "openvino", ONNXRUNTIME: "onnxruntime"}.get(backend)
    return module is None or find_spec(module) is not None


# --- ONNX export -------------------------------------------------------------------------------------


def export_onnx(
    model: "nn.Module",
    input_size: tuple[int, ...] = (3, 224, 224),
    opset: int = OPSET,
    output_names: Sequence[str] = ("logits",),
) -> bytes:
    """The model as an ONNX graph with a dynamic batch axis (input ``input``).

    The torch.export-based exporter comes first: it fixes the image size, so padding that timm
    computes at run time ("same" padding) becomes constants and the graph is just Conv/Clip/Add.
    The TorchScript exporter keeps that arithmetic as float ops on shapes (which static
    quantization would then quantize too: wrong padding); it is only the fallback.
    """
    import torch

    model = model.eval()
    example = torch.randn(2, *input_size)  # batch 2: a batch of 1 could be specialised as a constant
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                verbose=False,
                opset_version=opset,
                input_names=["input"],
                output_names=list(output_names),
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            )
            return program.model_proto.SerializeToString()
        except Exception as exc:  # a model torch.export cannot trace: the TorchScript exporter
            log.info("torch.export could not trace %s (%s); using the TorchScript exporter", type(model).__name__, exc)
            buffer = io.BytesIO()
            torch.onnx.export(
                model,
                (example,),
                buffer,
                dynamo=False,
                opset_version=17,
                input_names=["input"],
                output_names=list(output_names),
                dynamic_axes={"input": {0: "batch"}, **{name: {0: "batch"} for name in output_names}},
            )
            return buffer.getvalue()


def weights_digest(model: "nn.Module") -> str:
    """sha256 of a model's state (names, shapes, dtypes, values): same network, same digest."""
    import torch

    digest = hashlib.sha256(type(model).__qualname__.encode())
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            continue
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:80] or "model"


def exported_file(
    model: "nn.Module", input_size: tuple[int, ...], name: str, output_names: Sequence[str] = ("output",)
) -> Path:
    """The model's ONNX file in the cache, exported now if no earlier run left one."""
    import torch

    key = json.dumps(
        {
            "name": name,
            "weights": weights_digest(model),
            "input": list(input_size),
            "outputs": list(output_names),
            "torch": torch.__version__,
            "recipe": EXPORT_RECIPE,
        },
        sort_keys=True,
    )
    folder = cache_folder() / f"{_safe(name)}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    path = folder / "model.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = export_onnx(model, input_size, output_names=output_names)
    atomic_write_bytes(path, data)  # another process (a second server, a test worker) never sees half a file
    (folder / "meta.json").write_text(json.dumps({**json.loads(key), "export_seconds": time.perf_counter() - started}))
    log.info("exported %s to %s in %.1f s", name, path, time.perf_counter() - started)
    return path


# --- backends ----------------------------------------------------------------------------------------


def ort_session(onnx_model: bytes | str | Path, threads: int | None = None):
    """A CPU ONNX Runtime session using ``threads`` intra-op threads (all cores by default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Idle ORT threads otherwise busy-wait after each run and steal the cores from whatever runs
    # next (PyTorch, another session's request): measured here, that doubled PyTorch's latency.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = str(onnx_model) if isinstance(onnx_model, Path) else onnx_model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


@lru_cache(maxsize=1)
def _openvino_core():
    import openvino as ov

    return ov.Core()


def openvino_model(onnx_path: str | Path, threads: int | None = None):
    """An OpenVINO CPU compiled model of an ONNX file, in FP32.

    OpenVINO runs in BF16 by default on CPUs with AMX or AVX-512 BF16 (this one has both): faster,
    but not the same numbers as PyTorch, so parity would fail. FP32 is asked for explicitly.
    """
    return _openvino_core().compile_model(
        str(onnx_path),
        "CPU",
        {
            "INFERENCE_NUM_THREADS": threads or cpu_threads(),
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        },
    )


Runner = Callable[[np.ndarray], list[np.ndarray]]


def _onnxruntime_runner(path: Path, threads: int | None) -> Runner:
    session = ort_session(path, threads)
    input_name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {input_name: batch})  # ORT sessions are thread-safe


def _openvino_runner(path: Path, threads: int | None) -> Runner:
    compiled = openvino_model(path, threads)
    request = compiled.create_infer_request()
    lock = threading.Lock()  # one infer request is not thread-safe; sessions take turns
    outputs = range(len(compiled.outputs))

    def run(batch: np.ndarray) -> list[np.ndarray]:
        with lock:
            request.infer({0: batch})
            return [np.array(request.get_output_tensor(i).data, copy=True) for i in outputs]

    return run


def _torch_compile_runner(module: "nn.Module") -> Runner:
    import torch

    compiled = torch.compile(module, dynamic=False)

    def run(batch: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = compiled(torch.from_numpy(batch))
        return [t.float().numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]

    return run


# --- parity ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parity:
    """How closely an accelerated backend reproduced PyTorch on real images."""

    images: int
    max_abs_diff: float  # over every L2-normalised output row
    top1_agreement: float | None  # share of images with the same argmax (classifiers only)
    tolerance: float

    @property
    def passed(self) -> bool:
        top1_ok = self.top1_agreement is None or self.top1_agreement == 1.0
        return bool(np.isfinite(self.max_abs_diff)) and self.max_abs_diff <= self.tolerance and top1_ok

    def describe(self) -> str:
        text = f"max |Δ| of normalised outputs {self.max_abs_diff:.1e} (tolerance {self.tolerance:.0e})"
        if self.top1_agreement is not None:
            text += f", top-1 agreement {self.top1_agreement:.0%}"
        return f"{text} on {self.images} images"


def _rows(x: np.ndarray) -> np.ndarray:
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


def compare_outputs(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], classifier: bool, tolerance: float
) -> Parity:
    """Parity of two runs of the same inputs (lists of outputs, batch first)."""
    if len(reference) != len(candidate) or any(r.shape != c.shape for r, c in zip(reference, candidate)):
        return Parity(len(reference[0]) if reference else 0, float("inf"), None, tolerance)
    diff = max(float(np.abs(_rows(r) - _rows(c)).max(initial=0.0)) for r, c in zip(reference, candidate))
    agreement = None
    if classifier:
        agreement = float(np.mean(reference[0].reshape(len(reference[0]), -1).argmax(1)
                                  == candidate[0].reshape(len(candidate[0]), -1).argmax(1)))
    return Parity(len(reference[0]), diff, agreement, tolerance)


# --- the accelerated model ---------------------------------------------------------------------------


def _as_list(out: Any) -> list["torch.Tensor"]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


@dataclass(eq=False)
class AcceleratedModel:
    """A model behind the fastest backend that passed parity, called like the PyTorch model.

    ``model(batch)`` takes an ``(N, C, H, W)`` float tensor and returns a tensor, or a tuple
    when the PyTorch model returns one. ``backend`` is what runs; ``reason`` says why it is
    PyTorch when acceleration was asked for and could not be used.
    """

    name: str
    backend: str
    module: "nn.Module" = field(repr=False)
    reason: str | None = None
    parity: Parity | None = None
    path: Path | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)  # batch-1 timings behind backend="auto"
    _runner: Runner | None = field(default=None, repr=False)
    _tuple_output: bool = field(default=False, repr=False)

    @property
    def accelerated(self) -> bool:
        return self.backend != PYTORCH

    @property
    def runtime_info(self) -> RuntimeInfo:
        """What runs, for the latency badge; a refusal's reason goes in ``detail``."""
        detail = f"accelerated path off: {self.reason}" if self.reason else None
        return RuntimeInfo(BACKEND_LABELS[self.backend], self.accelerated, detail)

    @property
    def label(self) -> str:
        """"OpenVINO", "PyTorch", "PyTorch (accelerated path off: …)"."""
        return self.runtime_info.label

    def __call__(self, batch: "torch.Tensor") -> Any:
        import torch

        if self._runner is None:
            with torch.inference_mode():
                return self.module(batch)
        # contiguous NCHW float32: what the exported graph takes (channels-last would be copied anyway)
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        outputs = [torch.from_numpy(o) for o in self._runner(array)]
        return tuple(outputs) if self._tuple_output else outputs[0]


def _fallback(model: "nn.Module", name: str, reason: str | None, tuple_output: bool) -> AcceleratedModel:
    if reason:
        warn_once(name, reason)
    return AcceleratedModel(name, PYTORCH, model, reason=reason, _tuple_output=tuple_output)


def accelerate(
    model: "nn.Module",
    example_input: "torch.Tensor",
    backend: str = "auto",
    *,
    name: str | None = None,
    parity_inputs: "torch.Tensor | None" = None,
    classifier: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    threads: int | None = None,
) -> AcceleratedModel:
    """``model`` exported once and run by the fastest backend that matches PyTorch on real images.

    ``example_input``: one input batch; its shape without the batch axis fixes the exported
    image size (the batch axis stays dynamic). ``backend``: ``"auto"`` (each installed one of
    OpenVINO and ONNX Runtime that passes parity, timed at batch 1, fastest wins),
    ``"openvino"``, ``"onnxruntime"``, ``"torch.compile"`` or ``"pytorch"``. ``name`` goes into
    the cache key and the logs: give the model's registry name. ``parity_inputs``: a preprocessed
    batch of real images (random inputs, the fallback, make a weak check). ``classifier``: the
    first output is logits and its top-1 must agree too. ``threads`` defaults to every core.
    """
    import torch

    if backend != "auto" and backend not in BACKEND_LABELS:
        raise ValueError(f"Unknown backend '{backend}'. Choose auto, {', '.join(BACKEND_LABELS)}.")
    model = model.eval()
    name = name or type(model).__qualname__
    inputs = parity_inputs if parity_inputs is not None and len(parity_inputs) else example_input
    inputs = inputs.float().contiguous()
    with torch.inference_mode():
        raw = model(inputs)  # PyTorch's answer: what every backend must reproduce
    tuple_output = isinstance(raw, (tuple, list))
    reference = [t.float().numpy() for t in _as_list(raw)]
    if backend == PYTORCH:
        return _fallback(model, name, None, tuple_output)
    candidates = list(AUTO_BACKENDS) if backend == "auto" else [backend]
    installed = [c for c in candidates if backend_installed(c)]
    if not installed:
        return _fallback(model, name, f"{' and '.join(BACKEND_LABELS[c] for c in candidates)} not installed", tuple_output)
    output_names = [f"output{i}" for i in range(len(reference))]

    path: Path | None = None
    if any(c != TORCH_COMPILE for c in installed):
        try:
            path = exported_file(model, tuple(example_input.shape[1:]), name, output_names)
        except Exception as exc:  # e.g. an op the exporters do not support, or a read-only cache folder
            installed = [c for c in installed if c == TORCH_COMPILE]
            if not installed:
                what = f"cannot write to {cache_folder()}" if isinstance(exc, OSError) else "ONNX export failed"
                return _fallback(model, name, f"{what} ({type(exc).__name__}: {exc})"[:300], tuple_output)

    passed: dict[str, tuple[Runner, Parity]] = {}
    problems = []
    array = np.ascontiguousarray(inputs.numpy(), dtype=np.float32)
    for candidate in installed:
        try:
            if candidate == OPENVINO:
                runner = _openvino_runner(path, threads)
            elif candidate == ONNXRUNTIME:
                runner = _onnxruntime_runner(path, threads)
            else:
                runner = _torch_compile_runner(model)
            parity = compare_outputs(reference, runner(array), classifier, tolerance)
        except Exception as exc:
            problems.append(f"{BACKEND_LABELS[candidate]} failed to run ({type(exc).__name__}: {exc})"[:300])
            continue
        if parity.passed:
            passed[candidate] = (runner, parity)
        else:
            problems.append(f"{BACKEND_LABELS[candidate]} refused by the parity check: {parity.describe()}")
    if not passed:
        return _fallback(model, name, "; ".join(problems), tuple_output)

    latency: dict[str, float] = {}
    if len(passed) > 1:  # measure, interleaved, best of 5: the faster backend on *this* machine wins
        one = array[:1]
        for runner, _ in passed.values():
            runner(one)  # warm-up: first runs allocate
        latency = {c: float("inf") for c in passed}
        for _ in range(5):
            for c, (runner, _) in passed.items():
                start = time.perf_counter()
                runner(one)
                latency[c] = min(latency[c], (time.perf_counter() - start) * 1000)
    chosen = min(passed, key=lambda c: latency.get(c, 0.0))
    runner, parity = passed[chosen]
    for problem in problems:
        log.info("%s: %s", name, problem)
    return AcceleratedModel(name, chosen, model, None, parity, path, latency, runner, tuple_output)
