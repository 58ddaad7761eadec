"""Model compression, measured on this machine: quantization, pruning, low-rank, distillation.

Every technique takes a model (and, where needed, a few images) and returns a :class:`Variant`:
the new network plus a record of what was done to which layer. :func:`compare` then measures
the original and the variants side by side on this CPU: file size, parameters and non-zeros,
MACs, latency at batch 1 and 8 (same thread count, interleaved runs, median), top-1 accuracy
and agreement with the original.

The point of the lesson is that savings depend on the hardware and on the runtime, so the
runtime's effect is kept apart from the compression's: FP32 in PyTorch, FP32 in ONNX Runtime and
INT8 in ONNX Runtime are separate rows. :func:`cpu_features` reads this CPU's instruction-set
flags so the page can say where a speed-up came from.

Heavy module: torch, onnx and onnxruntime are imported at the top (pages import it lazily).
"""

from __future__ import annotations

import copy
import io
import math
import re
import statistics
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from cvdemo.errors import CvdemoError
from cvdemo import model_files
from cvdemo.runtime import export_onnx, ort_session  # one exporter and session setup for the app
from cvdemo.stats import format_interval, intervals_overlap, wilson_interval

RUNTIME_TORCH = "PyTorch eager"
RUNTIME_ORT = "ONNX Runtime"

Progress = Callable[[float, str], None]  # (fraction done 0..1, what is happening)


class CompressionError(CvdemoError, ValueError):
    """A knob or an input that cannot work; the message says why in one sentence."""


class ModelFileError(model_files.ModelFileError, CompressionError):
    """An uploaded model file that is refused (pickle, wrong format, does not fit)."""


# --- this CPU ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuFeatures:
    """The instruction-set extensions that decide whether INT8 / BF16 arithmetic is fast here."""

    model_name: str
    flags: frozenset[str]
    cores: int
    source: str = "/proc/cpuinfo"  # where the flags were read: "CPUID" (what kernels dispatch on) or a cpuinfo file

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def vnni(self) -> bool:
        """An INT8 dot-product instruction (VPDPBUSD): AVX512-VNNI or AVX-VNNI."""
        return bool({"avx512_vnni", "avx512vnni", "avx_vnni"} & self.flags)

    @property
    def bf16(self) -> bool:
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    @property
    def amx(self) -> bool:
        return any(flag.startswith("amx") for flag in self.flags)

    @property
    def int8_flags(self) -> list[str]:
        """The flags that decide how ONNX Runtime multiplies 8-bit numbers here."""
        return sorted(self.flags & {"avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"})

    @property
    def relevant_flags(self) -> list[str]:
        keep = re.compile(r"^(sse4_2|fma|f16c|avx|avx2|avx512.*|avx_vnni.*|amx.*)$")
        return sorted(f for f in self.flags if keep.match(f))

    def summary(self) -> str:
        parts = [f"{self.model_name or 'unknown CPU'}, {self.cores} core(s)"]
        parts.append("AVX-512" if self.avx512 else ("AVX2" if self.avx2 else "no AVX2"))
        parts.append("INT8 dot-product (VNNI)" if self.vnni else "no VNNI")
        parts.append("BF16 dot-product" if self.bf16 else "no BF16 instructions")
        if self.amx:
            parts.append("AMX tiles")
        return ", ".join(parts)


# torch.cpu.get_capabilities() names -> the /proc/cpuinfo names the rest of this module uses
_CPUID_TO_LINUX = {"avx512_f": "avx512f", "avx512_cd": "avx512cd", "avx512_dq": "avx512dq", "avx512_bw": "avx512bw",
                   "avx512_vl": "avx512vl", "avx512_ifma": "avx512ifma", "avx512_vbmi": "avx512vbmi", "fma3": "fma",
                   "bmi": "bmi1"}


def _cpuid_flags() -> frozenset[str] | None:
    """Flags from CPUID as this process sees them (PyTorch's cpuinfo), or None where torch cannot tell."""
    try:
        capabilities = torch.cpu.get_capabilities()
    except Exception:  # an older torch or an unknown architecture
        return None
    flags = {_CPUID_TO_LINUX.get(name, name) for name, value in capabilities.items() if value is True}
    return frozenset(flags) if flags else None


def cpu_features(cpuinfo: str | Path | None = None) -> CpuFeatures:
    """This CPU's instruction-set flags and model name.

    By default the flags come from CPUID as this process sees it (``torch.cpu.get_capabilities``): that is
    what ONNX Runtime's and PyTorch's kernels dispatch on, also under an emulator (``qemu -cpu Haswell``
    reports an AVX2-only CPU while /proc/cpuinfo still lists the host's AVX-512 VNNI). The model name comes
    from /proc/cpuinfo. Given a ``cpuinfo`` file, only that file is parsed; an unreadable file gives an
    empty flag set.
    """
    import os

    try:
        text = Path(cpuinfo or "/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    flags: set[str] = set()
    model = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key == "model name" and not model:
            model = value.strip()
    cpuid = _cpuid_flags() if cpuinfo is None else None
    if cpuid is not None:
        return CpuFeatures(model_name=model, flags=cpuid, cores=os.cpu_count() or 1, source="CPUID")
    return CpuFeatures(model_name=model, flags=frozenset(flags), cores=os.cpu_count() or 1,
                       source=str(cpuinfo or "/proc/cpuinfo"))


# --- variants: a network in a runtime, plus the record of what was done ------------------------


@dataclass(eq=False)
class Variant:
    """One model to measure: what runs, in which runtime and precision, and what was changed.

    ``module`` is the FP32 network this variant computes (parameters, non-zeros and MACs are
    read from it). What actually runs is ``onnx_model`` in ONNX Runtime when set, else
    ``run_module`` (dynamic INT8, FP16/BF16 weights) or ``module`` in PyTorch.
    """

    name: str
    technique: str
    runtime: str
    precision: str
    module: nn.Module
    onnx_model: bytes | None = None
    run_module: nn.Module | None = None
    input_dtype: torch.dtype = torch.float32
    layers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _sessions: dict[int, Any] = field(default_factory=dict, repr=False)
    _file: bytes | None = field(default=None, repr=False)

    # running ---------------------------------------------------------------------------------
    def session(self, threads: int | None = None):
        """An ONNX Runtime session with ``threads`` intra-op threads (cached per thread count)."""
        threads = threads or torch.get_num_threads()
        if threads not in self._sessions:
            self._sessions[threads] = ort_session(self.onnx_model, threads)
        return self._sessions[threads]

    def predict(self, images: torch.Tensor, threads: int | None = None) -> torch.Tensor:
        """FP32 logits for a batch of preprocessed images."""
        if self.onnx_model is not None:
            session = self.session(threads)
            name = session.get_inputs()[0].name
            out = session.run(None, {name: images.numpy().astype(np.float32, copy=False)})[0]
            return torch.from_numpy(out).float()
        net = self.run_module if self.run_module is not None else self.module
        with torch.inference_mode():
            return net(images.to(self.input_dtype)).float()

    def runner(self, images: torch.Tensor, threads: int | None = None) -> Callable[[], object]:
        """A zero-argument call that runs one forward pass on ``images`` (for timing)."""
        if self.onnx_model is not None:
            session = self.session(threads)
            feed = {session.get_inputs()[0].name: images.numpy().astype(np.float32)}
            return lambda: session.run(None, feed)
        net = self.run_module if self.run_module is not None else self.module
        batch = images.to(self.input_dtype)

        def run() -> object:
            with torch.inference_mode():
                return net(batch)

        return run

    # files ----------------------------------------------------------------------------------
    @property
    def file_format(self) -> str:
        if self.onnx_model is not None:
            return "onnx"
        return "safetensors" if _plain_tensors(self._stored_module().state_dict()) else "torch.save"

    def _stored_module(self) -> nn.Module:
        return self.run_module if self.run_module is not None else self.module

    def file_bytes(self) -> bytes:
        """The serialized model as it would be stored: ONNX, else safetensors of the weights.

        Dynamically quantized PyTorch modules hold packed weights that safetensors cannot
        store; their size is measured with ``torch.save`` (they are never offered for download).
        """
        if self._file is None:
            if self.onnx_model is not None:
                self._file = self.onnx_model
            else:
                state = self._stored_module().state_dict()
                if _plain_tensors(state):
                    self._file = safetensors_bytes(state)
                else:
                    buffer = io.BytesIO()
                    torch.save(state, buffer)
                    self._file = buffer.getvalue()
        return self._file

    def downloads(self, input_size: tuple[int, int, int] = (3, 224, 224)) -> dict[str, tuple[str, Callable[[], bytes]]]:
        """Formats this variant can be downloaded in: ``{label: (file suffix, make bytes)}``."""
        if self.onnx_model is not None:
            return {"ONNX": (".onnx", lambda: self.onnx_model)}
        if self.file_format != "safetensors":
            return {}
        out: dict[str, tuple[str, Callable[[], bytes]]] = {"safetensors (weights)": (".safetensors", self.file_bytes)}
        if self.run_module is None:  # FP32 networks also export to a self-contained ONNX graph
            out["ONNX"] = (".onnx", lambda: export_onnx(self.module, input_size))
        return out

    def parameter_counts(self) -> tuple[int, int]:
        """(parameters, non-zero parameters) of the network."""
        total = nonzero = 0
        for p in self.module.parameters():
            total += p.numel()
            nonzero += int(torch.count_nonzero(p.detach()))
        return total, nonzero


def _plain_tensors(state: dict) -> bool:
    return all(isinstance(v, torch.Tensor) and not v.is_quantized for v in state.values())


def safetensors_bytes(state: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    # safetensors refuses views that share memory; contiguous copies are what gets stored anyway.
    return save({k: v.detach().contiguous().clone() for k, v in state.items()})


def original_variant(model: nn.Module, name: str = "Original (FP32, PyTorch)") -> Variant:
    return Variant(name=name, technique="original", runtime=RUNTIME_TORCH, precision="FP32", module=model.eval())


# --- ONNX export and ONNX Runtime (the exporter and session settings live in cvdemo.runtime) -----


def shape_computation_nodes(onnx_model: bytes) -> list[str]:
    """Nodes that compute shapes or paddings (fed only by Shape ops and constants), not activations.

    They must never be quantized: an 8-bit padding amount is a wrong padding amount.
    """
    import onnx

    graph = onnx.load_from_string(onnx_model).graph
    constant = {init.name for init in graph.initializer}
    tainted: set[str] = set()
    names = []
    for node in graph.node:  # ONNX graphs are topologically sorted
        inputs = [i for i in node.input if i]
        if node.op_type == "Shape" or (
            node.op_type != "Constant" and inputs and any(i in tainted for i in inputs)
            and all(i in tainted or i in constant for i in inputs)
        ):
            tainted.update(node.output)
            names.append(node.name)
        elif node.op_type == "Constant":
            constant.update(node.output)
    return names


def to_onnx_runtime(
    model: nn.Module,
    input_size: tuple[int, int, int] = (3, 224, 224),
    name: str | None = None,
    onnx_model: bytes | None = None,
    like: Variant | None = None,
) -> Variant:
    """The same FP32 network exported to ONNX Runtime: the runtime's effect, no compression.

    ``like``: a PyTorch variant (pruned, factorised) to deploy in ONNX Runtime; its technique,
    layer record and notes are kept so both rows can be compared in their own runtime.
    """
    onnx_model = onnx_model or export_onnx(model, input_size)
    if like is not None:
        return Variant(
            name=name or like.name.replace("PyTorch", "ONNX Runtime"),
            technique=like.technique,
            runtime=RUNTIME_ORT,
            precision=like.precision,
            module=model,
            onnx_model=onnx_model,
            layers=like.layers,
            notes=[*like.notes, "Exported to ONNX Runtime (FP32)."],
        )
    return Variant(
        name=name or "FP32, ONNX Runtime",
        technique="onnx_fp32",
        runtime=RUNTIME_ORT,
        precision="FP32",
        module=model,
        onnx_model=onnx_model,
        notes=["Same weights and FP32 arithmetic; only the runtime changed (graph optimisation, fused Conv+BN+activation)."],
    )


# --- quantization --------------------------------------------------------------------------------


def _image_reader(images: torch.Tensor, input_name: str):
    """An onnxruntime CalibrationDataReader over a tensor of images, one image per call."""
    from onnxruntime.quantization import CalibrationDataReader

    class ImageReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([{input_name: images[i : i + 1].numpy().astype(np.float32)} for i in range(len(images))])

        def get_next(self) -> dict | None:
            return next(self._batches, None)

    return ImageReader()


def quantized_layers(onnx_model: bytes) -> list[dict[str, Any]]:
    """Every Conv / Gemm / MatMul of an ONNX graph, whether it runs in INT8 and how its weights are stored.

    In QDQ format a layer is quantized when both its input and its weight come out of a
    DequantizeLinear node (ONNX Runtime then fuses the pattern into an integer kernel).
    ``weights`` is the stored type: INT8 (signed), UINT8 (unsigned) or FP32.
    """
    import onnx

    graph = onnx.load_from_string(onnx_model).graph
    producers = {out: node.op_type for node in graph.node for out in node.output}
    stored = {init.name: init.data_type for init in graph.initializer}
    dequantized_from = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    type_names = {onnx.TensorProto.INT8: "INT8", onnx.TensorProto.UINT8: "UINT8"}
    weight_input = {"QLinearConv": 3, "QLinearMatMul": 3}
    rows = []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul", "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"):
            continue
        if node.op_type in ("ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"):
            quantized = True
        else:
            quantized = all(producers.get(name) == "DequantizeLinear" for name in node.input[:2])
        weight = node.input[weight_input.get(node.op_type, 1)]
        weights = type_names.get(stored.get(dequantized_from.get(weight, weight)), "FP32")
        rows.append({"layer": node.name or node.output[0], "op": node.op_type, "quantized": quantized, "weights": weights})
    return rows


@dataclass(frozen=True)
class Int8Recipe:
    """How :func:`quantize_int8` quantizes for one kind of CPU, and why (the page shows ``why``)."""

    key: str
    label: str
    integer_gemm_weights: str  # "int8" or "uint8": weights of the Conv (not depthwise), Gemm and MatMul layers
    why: str
    float_first_conv: bool = True  # the convolution that sees the raw pixels stays FP32


# Measured on an Intel Xeon @ 2.80 GHz with AVX-512 VNNI (2 cores) and, for the AVX2 kernels, under
# `qemu-x86_64 -cpu Haswell`; EfficientNet-Lite0, 16 calibration images, 153 ants & bees val images.
# Agreement with FP32 (VNNI CPU / AVX2 kernels) and INT8 / FP32 latency in ONNX Runtime on the VNNI CPU:
#   8-bit signed weights, MinMax (the old default):  0.961 / 0.891 (first 64 images)   ~0.35-0.55x
#   7-bit signed weights (reduce_range):              0.941 / 0.941 (identical)         ~0.35-0.5x
#   signed weights, first conv FP32 (recipe "vnni"):  0.987 / saturates on AVX2        ~0.35-0.5x
#   unsigned weights in the integer GEMMs, signed depthwise, first conv FP32 (recipe "no_vnni"):
#                                                     0.967 / 0.967 (identical)         ~1.0x here
# Entropy calibration gave a file identical to MinMax; Percentile and keeping the classifier in FP32
# changed agreement by one image or less (KL to FP32 within 0.0007); per-tensor weights: 0.843.
INT8_RECIPES: dict[str, Int8Recipe] = {
    "vnni": Int8Recipe(
        "vnni",
        "signed 8-bit weights (U8S8 kernels)",
        "int8",
        "With VNNI, one VPDPBUSD instruction multiplies unsigned 8-bit activations by signed 8-bit weights and adds "
        "the products straight into 32-bit sums: nothing can overflow, so full 8-bit signed weights are both exact "
        "and the fastest choice.",
    ),
    "no_vnni": Int8Recipe(
        "no_vnni",
        "unsigned 8-bit weights in the convolutions and the classifier (U8U8 kernels), signed in the depthwise ones",
        "uint8",
        "Without VNNI, signed 8-bit weights go through VPMADDUBSW, which adds two byte products into a 16-bit "
        "number: 255 x 127 + 255 x 127 = 64,770 does not fit under 32,767, so such sums are clipped (saturated) and "
        "predictions change. ONNX Runtime suggests 7-bit weights (reduce_range) or unsigned weights (U8U8) for this; "
        "7-bit weights avoid the overflow but lost 2 points of agreement in our measurement, while the U8U8 kernels "
        "widen to 16 bits before multiplying and cannot saturate. Depthwise convolutions are computed in 16/32-bit "
        "lanes anyway, so they keep signed weights.",
    ),
}


def int8_recipe(cpu: CpuFeatures) -> Int8Recipe:
    """The recipe for this CPU: signed weights where VNNI makes them exact, unsigned ones elsewhere."""
    return INT8_RECIPES["vnni" if cpu.vnni else "no_vnni"]


def _int8_plan(onnx_model: bytes, recipe: Int8Recipe, per_channel: bool):
    """(nodes kept in float, per-tensor quantization overrides, layer counts) of ``recipe`` on a graph."""
    import onnx
    from onnxruntime.quantization import QuantType

    graph = onnx.load_from_string(onnx_model).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    keep_float: list[str] = []
    overrides: dict[str, list[dict[str, Any]]] = {}
    counts = {"integer GEMM": 0, "depthwise": 0}
    for node in graph.node:  # topologically sorted: the first Conv is the one that sees the input image
        weight = node.input[1] if len(node.input) > 1 else ""
        if node.op_type not in ("Conv", "Gemm", "MatMul") or weight not in shapes:
            continue
        if node.op_type == "Conv" and recipe.float_first_conv and not keep_float:
            keep_float.append(node.name)
            continue
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and groups > 1 and shapes[weight][1] == 1:
            counts["depthwise"] += 1  # MLAS multiplies these in 16/32-bit lanes: no saturation
            continue
        counts["integer GEMM"] += 1
        if recipe.integer_gemm_weights == "uint8":
            override: dict[str, Any] = {"quant_type": QuantType.QUInt8}
            if per_channel and node.op_type != "MatMul":  # output-channel axis, as ONNX Runtime picks it
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                override["axis"] = 0 if node.op_type == "Conv" or trans_b else 1
            overrides[weight] = [override]
    return keep_float, overrides, counts


def _int32_bias_guard(recipe: Int8Recipe) -> dict[str, float]:
    """Extra quantizer options that keep every bias inside int32.

    A bias is stored as int32 in units of input scale x weight scale. A near-dead channel (BatchNorm
    folded its weights to ~1e-9) gets a tiny weight scale and its bias overflows int32. ONNX Runtime
    widens such scales itself for signed weights only; for unsigned ones a minimum weight range does it.
    """
    return {"MinimumRealRange": 1e-4} if recipe.integer_gemm_weights == "uint8" else {}


def quantize_int8(
    model: nn.Module,
    calibration_images: torch.Tensor,
    input_size: tuple[int, int, int] | None = None,
    per_channel: bool = True,
    onnx_model: bytes | None = None,
    cpu: CpuFeatures | None = None,
    recipe: Int8Recipe | str | None = None,
) -> Variant:
    """Post-training static INT8 (ONNX Runtime, QDQ format) calibrated on a few images.

    Activations are UINT8 with MinMax ranges measured on ``calibration_images``; weights are
    8-bit per output channel. The recipe follows ``cpu`` (default: this CPU, see :func:`int8_recipe`):
    with VNNI, signed weights everywhere; without, unsigned weights in the layers ONNX Runtime runs
    as integer GEMMs, so AVX2's 16-bit intermediate sums cannot saturate. Both keep the first
    convolution in FP32. ``recipe`` ("vnni" / "no_vnni" or an :class:`Int8Recipe`) overrides the choice.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration_images is None or len(calibration_images) == 0:
        raise CompressionError("Static INT8 needs calibration images to measure activation ranges; none were given.")
    input_size = input_size or tuple(calibration_images.shape[1:])
    cpu = cpu or cpu_features()
    if isinstance(recipe, str):
        if recipe not in INT8_RECIPES:
            raise CompressionError(f"Unknown INT8 recipe {recipe!r}: choose one of {', '.join(INT8_RECIPES)}.")
        recipe = INT8_RECIPES[recipe]
    recipe = recipe or int8_recipe(cpu)
    fp32 = onnx_model or export_onnx(model, input_size)
    notes = []
    with tempfile.TemporaryDirectory(prefix="cvdemo-int8-") as tmp:
        raw, prepared, out = Path(tmp, "fp32.onnx"), Path(tmp, "prepared.onnx"), Path(tmp, "int8.onnx")
        raw.write_bytes(fp32)
        try:  # shape inference + graph optimisation (folds BatchNorm) before quantizing
            quant_pre_process(str(raw), str(prepared))
        except Exception as exc:
            prepared = raw
            notes.append(f"Pre-processing skipped ({type(exc).__name__}); quantized the raw export.")
        graph = prepared.read_bytes()
        keep_float, overrides, counts = _int8_plan(graph, recipe, per_channel)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(
                str(prepared),
                str(out),
                _image_reader(calibration_images.float(), "input"),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=shape_computation_nodes(graph) + keep_float,
                extra_options={"TensorQuantOverrides": overrides, **_int32_bias_guard(recipe)},
            )
        int8 = out.read_bytes()
    layers = quantized_layers(int8)
    done = sum(r["quantized"] for r in layers)
    notes.insert(
        0,
        f"{done} of {len(layers)} Conv/Gemm/MatMul layers run in INT8 (QDQ)"
        f"{', the first convolution stays FP32' if keep_float else ''}; calibrated on {len(calibration_images)} "
        f"images (MinMax); weights {'per channel' if per_channel else 'per tensor'}. Recipe for "
        f"{'CPUs with VNNI' if recipe.key == 'vnni' else 'CPUs without VNNI'}: {recipe.label} "
        f"({counts['integer GEMM']} integer-GEMM layers, {counts['depthwise']} depthwise).",
    )
    if recipe.key == "vnni":
        notes.append("This file is tuned for VNNI CPUs: on an AVX2-only CPU its signed weights can saturate; quantize "
                     "it there to get the unsigned-weight recipe.")
    return Variant(
        name="INT8 static, ONNX Runtime",
        technique="int8_static",
        runtime=RUNTIME_ORT,
        precision="INT8",
        module=model,
        onnx_model=int8,
        layers=layers,
        notes=notes,
    )


def quantize_dynamic_int8(model: nn.Module) -> Variant:
    """PyTorch dynamic INT8: ``nn.Linear`` weights become INT8, activations are quantized on the fly.

    Convolutions are untouched and stay FP32, which is why this helps transformers and LSTMs
    but hardly a conv net.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError as exc:  # removed in a future torch
            raise CompressionError(f"This PyTorch ({torch.__version__}) has no dynamic quantization.") from exc
        quantized = quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)
    layers = [
        {"layer": name, "op": type(m).__name__, "quantized": isinstance(m, nn.Linear)}
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    linear = sum(r["quantized"] for r in layers)
    return Variant(
        name="INT8 dynamic (Linear only), PyTorch",
        technique="int8_dynamic",
        runtime=RUNTIME_TORCH,
        precision="INT8 Linear / FP32 conv",
        module=model,
        run_module=quantized,
        layers=layers,
        notes=[f"{linear} Linear layer(s) INT8; {len(layers) - linear} convolution(s) stay FP32."],
    )


def cast_weights(model: nn.Module, dtype: torch.dtype = torch.float16) -> Variant:
    """Weights (and the computation) in FP16 or BF16: half the file; speed depends on the CPU."""
    if dtype not in (torch.float16, torch.bfloat16):
        raise CompressionError(f"Weights can be cast to float16 or bfloat16, not {dtype}.")
    label = "FP16" if dtype == torch.float16 else "BF16"
    return Variant(
        name=f"{label} weights, PyTorch",
        technique=label.lower(),
        runtime=RUNTIME_TORCH,
        precision=label,
        module=model,
        run_module=copy.deepcopy(model).to(dtype).eval(),
        input_dtype=dtype,
        notes=[f"Every weight stored in 16 bits ({label}); the network also computes in {label}."],
    )


# --- pruning -------------------------------------------------------------------------------------


def _check_fraction(amount: float, what: str) -> float:
    amount = float(amount)
    if not math.isfinite(amount) or amount <= 0:
        raise CompressionError(f"{what} of {amount:.0%} removes nothing: choose a value above 0%.")
    if amount >= 1:
        raise CompressionError(
            f"{what} of {amount:.0%} would remove every weight and leave a network that outputs a constant: "
            "choose a value below 100%."
        )
    return amount


def _weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def prune_unstructured(model: nn.Module, amount: float, scope: str = "layer") -> Variant:
    """Magnitude pruning with ``torch.nn.utils.prune``: the smallest weights become exactly 0.

    ``scope="layer"`` removes ``amount`` of every layer's weights; ``"global"`` ranks all
    weights of the network together. The zeros are baked in (``prune.remove``), the tensors
    stay dense: same shapes, same MACs for a dense kernel.
    """
    from torch.nn.utils import prune

    amount = _check_fraction(amount, "Sparsity")
    if scope not in ("layer", "global"):
        raise CompressionError(f"Pruning scope must be 'layer' or 'global', not {scope!r}.")
    pruned = copy.deepcopy(model).eval()
    targets = _weighted_layers(pruned)
    if not targets:
        raise CompressionError("The model has no Conv2d or Linear layer to prune.")
    if scope == "global":
        prune.global_unstructured([(m, "weight") for _, m in targets], pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for _, m in targets:
            prune.l1_unstructured(m, "weight", amount=amount)
    layers = []
    for name, m in targets:
        prune.remove(m, "weight")
        weights = m.weight.numel()
        zeros = weights - int(torch.count_nonzero(m.weight))
        layers.append({"layer": name, "kind": type(m).__name__, "weights": weights, "zeros": zeros, "sparsity": zeros / weights})
    total = sum(r["weights"] for r in layers)
    zeros = sum(r["zeros"] for r in layers)
    return Variant(
        name=f"Unstructured {amount:.0%} ({scope}), PyTorch",
        technique="prune_unstructured",
        runtime=RUNTIME_TORCH,
        precision="FP32",
        module=pruned,
        layers=layers,
        notes=[f"{zeros:,} of {total:,} conv/linear weights are zero ({zeros / total:.1%}); tensors keep their shapes."],
    )


def _classifier_layers(model: nn.Module) -> list[nn.Module]:
    """The output layer(s): pruning them would change the number of classes."""
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        if isinstance(head, nn.Module) and any(isinstance(m, (nn.Linear, nn.Conv2d)) for m in head.modules()):
            return [head]
    weighted = _weighted_layers(model)
    return [weighted[-1][1]] if weighted else []


def prune_structured(
    model: nn.Module,
    amount: float,
    example_input: torch.Tensor,
    round_to: int | None = None,
) -> Variant:
    """Channel pruning with Torch-Pruning: whole filters are removed, tensors get smaller.

    Channels are ranked by the L2 norm of their weights (summed over each dependency group, so
    residual additions and depthwise convolutions stay consistent); the classifier keeps its
    outputs. ``round_to=8`` keeps channel counts multiples of 8, which SIMD kernels like, but it
    removes at least 8 channels from every layer: a 16-channel layer of a mobile net loses half.
    """
    import torch_pruning as tp

    amount = _check_fraction(amount, "Channel sparsity")
    pruned = copy.deepcopy(model).eval()
    before = {name: (m.out_channels if isinstance(m, nn.Conv2d) else m.out_features) for name, m in _weighted_layers(pruned)}
    importance = tp.importance.MagnitudeImportance(p=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(
            pruned,
            example_input,
            importance=importance,
            pruning_ratio=amount,
            ignored_layers=_classifier_layers(pruned),
            round_to=round_to,
        )
        pruner.step()
    layers = []
    for name, m in _weighted_layers(pruned):
        after = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        layers.append(
            {
                "layer": name,
                "kind": "depthwise conv" if isinstance(m, nn.Conv2d) and m.groups > 1 else type(m).__name__,
                "channels before": before.get(name, after),
                "channels after": after,
                "kept": after / max(before.get(name, after), 1),
            }
        )
    params_before = sum(p.numel() for p in model.parameters())
    params_after = sum(p.numel() for p in pruned.parameters())
    return Variant(
        name=f"Structured {amount:.0%} channels, PyTorch",
        technique="prune_structured",
        runtime=RUNTIME_TORCH,
        precision="FP32",
        module=pruned,
        layers=layers,
        notes=[f"Channels physically removed: {params_before:,} -> {params_after:,} parameters."],
    )


# --- low-rank factorisation ------------------------------------------------------------------------


def _rank_for_energy(singular: torch.Tensor, energy: float) -> int:
    share = torch.cumsum(singular**2, 0) / torch.sum(singular**2).clamp_min(1e-30)
    return int(torch.searchsorted(share, torch.tensor(energy - 1e-9, dtype=share.dtype)).item()) + 1


def _factorise(layer: nn.Module, u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, rank: int) -> nn.Sequential:
    """W ≈ (U_r S_r) V_r: a thin layer with ``rank`` outputs followed by a 1x1 / linear mix."""
    left = (u[:, :rank] * s[:rank]).contiguous()
    right = vh[:rank].contiguous()
    if isinstance(layer, nn.Linear):
        first = nn.Linear(layer.in_features, rank, bias=False)
        second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
        first.weight.data.copy_(right)
        second.weight.data.copy_(left)
    else:
        # A copy keeps the conv's own padding logic (timm's Conv2dSame pads dynamically).
        first = copy.deepcopy(layer)
        first.out_channels = rank
        first.weight = nn.Parameter(right.reshape(rank, *layer.weight.shape[1:]))
        first.bias = None
        second = nn.Conv2d(rank, layer.out_channels, 1, bias=layer.bias is not None)
        second.weight.data.copy_(left.reshape(layer.out_channels, rank, 1, 1))
    if layer.bias is not None:
        second.bias.data.copy_(layer.bias.data)
    return nn.Sequential(first, second)


def low_rank(
    model: nn.Module,
    energy: float = 0.9,
    rank: int | None = None,
    layers: Sequence[str] | None = None,
) -> Variant:
    """SVD factorisation of Linear and (non-grouped) Conv layers at a rank or an energy fraction.

    A ``out x in x k x k`` convolution is reshaped to an ``out x (in k k)`` matrix ``W = U S V``;
    keeping ``r`` singular values turns it into a ``k x k`` conv with ``r`` filters followed by
    a ``1 x 1`` conv with ``out`` filters. ``energy`` picks the smallest ``r`` keeping that share
    of ``sum(s^2)``; ``rank`` fixes it. A layer is only replaced when that saves parameters.
    Naming ``layers`` restricts the change to them, and then a rank they cannot have is an error.
    """
    if rank is not None:
        rank = int(rank)
        if rank < 1:
            raise CompressionError(f"Rank must be at least 1, not {rank}.")
    elif not 0 < energy <= 1:
        raise CompressionError(f"Energy must be a fraction in (0, 1], not {energy}.")
    factored = copy.deepcopy(model).eval()
    candidates = {
        name: m for name, m in _weighted_layers(factored) if isinstance(m, nn.Linear) or m.groups == 1
    }
    if layers:
        unknown = [name for name in layers if name not in candidates]
        if unknown:
            raise CompressionError(
                f"Layer {unknown[0]!r} is not a Linear or non-grouped Conv layer of this model, so it cannot be factorised."
            )
        candidates = {name: candidates[name] for name in layers}
    rows = []
    for name, layer in candidates.items():
        matrix = layer.weight.detach().reshape(layer.weight.shape[0], -1).double()
        out_dim, in_dim = matrix.shape
        full = min(out_dim, in_dim)
        if rank is not None and rank > full:
            if layers:
                raise CompressionError(
                    f"Rank {rank} is larger than layer {name!r} allows: its weight is a {out_dim} x {in_dim} "
                    f"matrix, so its rank is at most {full}."
                )
            rows.append(_rank_row(name, layer, out_dim, in_dim, full, None, None, f"skipped: rank {rank} > full rank {full}"))
            continue
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        r = rank if rank is not None else _rank_for_energy(s, energy)
        kept_energy = float((s[:r] ** 2).sum() / (s**2).sum().clamp_min(1e-30))
        if r * (out_dim + in_dim) >= out_dim * in_dim:
            rows.append(_rank_row(name, layer, out_dim, in_dim, full, r, kept_energy, "skipped: no parameter saving at this rank"))
            continue
        replacement = _factorise(layer, u.float(), s.float(), vh.float(), r)
        _set_submodule(factored, name, replacement)
        rows.append(_rank_row(name, layer, out_dim, in_dim, full, r, kept_energy, "factorised"))
    done = [r for r in rows if r["status"] == "factorised"]
    if not done:
        how = f"rank {rank}" if rank is not None else f"energy {energy:.0%}"
        raise CompressionError(
            f"No layer was factorised at {how}: every candidate would keep so many singular values that the two "
            "thin layers hold more weights than the original. Lower the energy or the rank."
        )
    before = sum(r["params before"] for r in done)
    after = sum(r["params after"] for r in done)
    knob = f"rank {rank}" if rank is not None else f"{energy:.0%} energy"
    return Variant(
        name=f"Low-rank SVD ({knob}), PyTorch",
        technique="low_rank",
        runtime=RUNTIME_TORCH,
        precision="FP32",
        module=factored,
        layers=rows,
        notes=[f"{len(done)} of {len(rows)} layers factorised: their weights {before:,} -> {after:,}."],
    )


def _rank_row(name, layer, out_dim, in_dim, full, r, kept_energy, status) -> dict[str, Any]:
    return {
        "layer": name,
        "kind": type(layer).__name__,
        "matrix": f"{out_dim} x {in_dim}",
        "full rank": full,
        "rank": r if r is not None else full,
        "energy kept": kept_energy if kept_energy is not None else 1.0,
        "params before": out_dim * in_dim,
        "params after": r * (out_dim + in_dim) if status == "factorised" else out_dim * in_dim,
        "status": status,
    }


def _set_submodule(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


# --- distillation -----------------------------------------------------------------------------------


@dataclass
class DistillResult:
    student: nn.Module
    history: pd.DataFrame  # one row per epoch: loss, hard-label loss, soft-target loss, train accuracy
    temperature: float
    alpha: float


def augmented_views(images: torch.Tensor, views: int = 2, seed: int = 0) -> torch.Tensor:
    """``[views, N, C, H, W]``: the images, their mirror images, then random shifted crops (+ mirror).

    Made once from ``seed``, so a distilled and a hard-label student see exactly the same views
    and the teacher labels each view once instead of every epoch.
    """
    if views < 1:
        raise CompressionError(f"At least one view of each image is needed, not {views}.")
    out = [images]
    if views > 1:
        out.append(torch.flip(images, dims=[3]))
    generator = torch.Generator().manual_seed(seed + 7919)
    height, width = images.shape[-2:]
    pad = max(1, min(height, width) // 8)
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    for _ in range(2, views):
        dy = torch.randint(0, 2 * pad + 1, (len(images),), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (len(images),), generator=generator)
        flip = torch.rand(len(images), generator=generator) < 0.5
        crops = torch.stack([padded[k, :, dy[k] : dy[k] + height, dx[k] : dx[k] + width] for k in range(len(images))])
        crops[flip] = torch.flip(crops[flip], dims=[3])
        out.append(crops)
    return torch.stack(out)


def distill(
    teacher: nn.Module | Callable[[torch.Tensor], torch.Tensor] | None,
    student: nn.Module,
    dataset: tuple[torch.Tensor, torch.Tensor | None],
    temperature: float = 4.0,
    alpha: float = 0.5,
    epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
    views: int = 2,
    progress: Progress | None = None,
) -> DistillResult:
    """Train ``student`` on ``alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T)``.

    ``alpha = 1`` is ordinary training on hard labels (the baseline); ``alpha = 0`` only mimics
    the teacher, which needs no labels (used to fine-tune a pruned model towards the original).
    Each image comes in ``views`` fixed augmented versions (:func:`augmented_views`); the teacher
    labels every view once and each step picks one view per image. The student passed in is
    copied, so one initialisation can be trained twice.
    """
    images, labels = dataset
    if images is None or len(images) == 0:
        raise CompressionError("The training set is empty: distillation needs at least one image.")
    if temperature <= 0:
        raise CompressionError(f"Temperature must be positive, not {temperature}.")
    if not 0 <= alpha <= 1:
        raise CompressionError(f"Alpha mixes hard labels and soft targets, so it must be in [0, 1], not {alpha}.")
    if labels is None and alpha > 0:
        raise CompressionError("Hard-label training (alpha > 0) needs labels; this set has none.")
    if alpha < 1 and teacher is None:
        raise CompressionError("Soft targets (alpha < 1) need a teacher.")
    say = progress or (lambda fraction, text: None)
    bank = augmented_views(images, views, seed)
    soft_targets = None
    if alpha < 1:
        say(0.0, f"teacher labels {views} view(s) of {len(images)} images")
        soft_targets = torch.stack([_batched_logits(teacher, view) for view in bank])
    generator = torch.Generator().manual_seed(seed)
    student = copy.deepcopy(student)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(images) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1))
    rows = []
    for epoch in range(epochs):
        student.train()
        order = torch.randperm(len(images), generator=generator)
        totals = {"loss": 0.0, "hard-label loss": 0.0, "soft-target loss": 0.0}
        correct = 0
        for start in range(0, len(images), batch_size):
            idx = order[start : start + batch_size]
            view = torch.randint(0, len(bank), (len(idx),), generator=generator)
            logits = student(bank[view, idx])
            hard = logits.new_zeros(())
            if labels is not None and alpha > 0 and (labels[idx] >= 0).any():  # -1: unlabeled (soft target only)
                hard = F.cross_entropy(logits, labels[idx], ignore_index=-1)
            soft = logits.new_zeros(())
            if soft_targets is not None:
                soft = F.kl_div(
                    F.log_softmax(logits / temperature, dim=1),
                    F.log_softmax(soft_targets[view, idx] / temperature, dim=1),
                    log_target=True,
                    reduction="batchmean",
                ) * temperature**2
            loss = alpha * hard + (1 - alpha) * soft
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = len(idx)
            n_labeled = int((labels[idx] >= 0).sum()) if labels is not None else 0
            totals["loss"] += loss.item() * n
            totals["hard-label loss"] += hard.item() * n_labeled  # cross-entropy averages over labeled images
            totals["soft-target loss"] += soft.item() * n
            if labels is not None:
                correct += int((logits.argmax(1) == labels[idx]).sum())
        labeled = int((labels >= 0).sum()) if labels is not None else 0
        row = {
            "epoch": epoch + 1,
            "loss": totals["loss"] / len(images),
            "hard-label loss": totals["hard-label loss"] / labeled if labeled and alpha > 0 else float("nan"),
            "soft-target loss": totals["soft-target loss"] / len(images) if soft_targets is not None else float("nan"),
            "train accuracy": correct / labeled if labeled else float("nan"),
        }
        rows.append(row)
        say((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}: loss {row['loss']:.3f}")
    return DistillResult(student=student.eval(), history=pd.DataFrame(rows), temperature=temperature, alpha=alpha)


def _batched_logits(model: nn.Module | Callable, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    if isinstance(model, nn.Module):
        model.eval()
    with torch.inference_mode():
        return torch.cat([model(images[i : i + batch_size]).float() for i in range(0, len(images), batch_size)])


def fine_tune_to_original(
    original: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    compressed: nn.Module,
    images: torch.Tensor,
    epochs: int = 2,
    lr: float = 1e-3,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> nn.Module:
    """A short recovery fine-tune: the compressed model learns the original's soft outputs.

    No labels needed (alpha = 0, T = 2): the original teaches its own compressed copy, on any
    unlabeled images. BatchNorm statistics are re-estimated along the way. ``original`` may be
    any callable giving logits (e.g. the original's ONNX Runtime ``predict``, which is faster).
    """
    result = distill(original, compressed, (images, None), temperature=2.0, alpha=0.0, epochs=epochs, lr=lr,
                     batch_size=batch_size, views=2, progress=progress)
    return result.student


def tiny_cnn(num_classes: int = 10, width: int = 16) -> nn.Module:
    """A four-conv student (~25k parameters at width 16) for 32x32 images."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(3, width),
        *block(width, width),
        nn.MaxPool2d(2),
        *block(width, 2 * width),
        nn.MaxPool2d(2),
        *block(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )


def make_student(kind: str, num_classes: int, seed: int = 0) -> nn.Module:
    """A randomly initialised student: ``"tiny_cnn"`` or ``"mobilenetv3_small"`` (timm, no weights)."""
    torch.manual_seed(seed)
    if kind == "tiny_cnn":
        return tiny_cnn(num_classes)
    if kind == "mobilenetv3_small":
        import timm

        return timm.create_model("mobilenetv3_small_100", pretrained=False, num_classes=num_classes)
    raise CompressionError(f"Unknown student {kind!r}: choose 'tiny_cnn' or 'mobilenetv3_small'.")


class FeatureTeacher(nn.Module):
    """Frozen pretrained features + a trained linear head, fed by upsampled small images."""

    def __init__(self, features: nn.Module, head: nn.Linear, size: int):
        super().__init__()
        self.features, self.head, self.size = features.eval(), head, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.head(self.features(x))


def train_feature_teacher(
    features: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    size: int = 160,
    steps: int = 300,
    progress: Progress | None = None,
) -> FeatureTeacher:
    """Fit a linear head on frozen features (``features(x)`` gives pooled vectors)."""
    teacher = FeatureTeacher(features, nn.Linear(1, 1), size)
    feats = []
    with torch.inference_mode():
        for i in range(0, len(images), 32):
            x = F.interpolate(images[i : i + 32], size=(size, size), mode="bilinear", align_corners=False)
            feats.append(features(x).float())
            if progress:
                progress(min(i + 32, len(images)) / len(images), "teacher features")
    feats = torch.cat(feats).clone()
    head = nn.Linear(feats.shape[1], num_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(head(feats), labels).backward()
        optimizer.step()
    teacher.head = head.eval()
    return teacher.eval()


# --- evaluation data ---------------------------------------------------------------------------------


@dataclass
class EvalSet:
    """Preprocessed images, their labels in the model's class space (-1 = unknown) and names."""

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    description: str
    class_names: dict[int, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.images) == 0:
            raise CompressionError(f"The evaluation set ({self.description}) is empty: it needs at least one readable image.")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labeled(self) -> int:
        return int((self.labels >= 0).sum())


def imagenet_label_map(folder_names: Iterable[str], class_names: Sequence[str] | None = None) -> dict[str, int]:
    """Folder names matched to ImageNet classes by their synonyms ("ants" -> 310 "ant, emmet, pismire").

    Folders that match no class are left out (their images count for agreement only).
    """
    if class_names is None:
        from cvdemo.backbones import imagenet_class_names

        class_names = imagenet_class_names()
    synonyms: dict[str, int] = {}
    for index, description in enumerate(class_names):
        for word in description.lower().split(","):
            synonyms.setdefault(word.strip(), index)
    out = {}
    for folder in folder_names:
        key = folder.lower().replace("_", " ").replace("-", " ").strip()
        for candidate in (key, key[:-1] if key.endswith("s") else key, key[:-2] if key.endswith("es") else key):
            if candidate in synonyms:
                out[folder] = synonyms[candidate]
                break
    return out


def _stack(items: list[tuple[str, Any, int]], transform, description: str, skipped: list[str],
           class_names: dict[int, str]) -> EvalSet:
    from cvdemo.images import ImageInputError, load_image

    tensors, labels, names = [], [], []
    for name, src, label in items:
        try:
            tensors.append(transform(load_image(src)))
        except ImageInputError as exc:
            skipped.append(f"{name}: {exc}")
            continue
        labels.append(label)
        names.append(name)
    images = torch.stack(tensors) if tensors else torch.empty(0, 3, 1, 1)
    return EvalSet(images, torch.tensor(labels, dtype=torch.long), names, description, class_names, skipped)


def _interleave(pairs: list[tuple[Path, str]], limit: int | None) -> list[tuple[Path, str]]:
    """At most ``limit`` items taking classes in turn, so a small subset stays balanced."""
    by_class: dict[str, list] = {}
    for pair in pairs:
        by_class.setdefault(pair[1], []).append(pair)
    out: list = []
    queues = [list(v) for v in by_class.values()]
    while any(queues) and (limit is None or len(out) < limit):
        for q in queues:
            if q and (limit is None or len(out) < limit):
                out.append(q.pop(0))
    return out


def eval_set_from_folder(
    root: str | Path, transform, label_map: dict[str, int] | None = None, limit: int | None = None,
    description: str | None = None,
) -> EvalSet:
    """An ImageFolder (``root/<class>/<image>``) as an EvalSet; classes mapped through ``label_map``."""
    from cvdemo.datasets import image_folder

    pairs = _interleave(image_folder(root), limit)
    label_map = label_map or {}
    items = [(f"{label}/{path.name}", path, label_map.get(label, -1)) for path, label in pairs]
    names = {v: k for k, v in label_map.items()}
    return _stack(items, transform, description or f"{Path(root).name} ({len(items)} images)", [], names)


def eval_set_from_paths(paths: Sequence[Path], transform, description: str) -> EvalSet:
    """Unlabeled images: only agreement with the original can be measured."""
    return _stack([(Path(p).name, p, -1) for p in paths], transform, description, [], {})


def eval_set_from_zip(data: bytes, transform, label_map_for: Callable[[list[str]], dict[str, int]],
                      limit: int | None = None) -> EvalSet:
    """A user's zip of ``<class>/<image>`` folders; unreadable files are listed in ``skipped``."""
    from cvdemo.archives import class_folders, read_zip

    contents = read_zip(data)
    groups = class_folders(contents)
    label_map = label_map_for(sorted(groups))
    pairs = [((name, blob), cls) for cls, files in sorted(groups.items()) for name, blob in sorted(files.items())]
    pairs = _interleave(pairs, limit)
    items = [(f"{cls}/{name}", blob, label_map.get(cls, -1)) for (name, blob), cls in pairs]
    names = {v: k for k, v in label_map.items()}
    return _stack(items, transform, f"uploaded zip ({len(items)} images)", list(contents.skipped), names)


# --- measuring -------------------------------------------------------------------------------------


def count_macs(module: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (:func:`cvdemo.complexity.profile`)."""
    from cvdemo.complexity import profile

    return int(profile(module.eval(), input_size=input_size).total_macs)


def time_interleaved(
    runners: dict[str, Callable[[], object]],
    repeats: int = 20,
    warmup: int = 3,
    pause: float = 0.002,
    budget: float | None = None,
    min_repeats: int = 5,
) -> dict[str, list[float]]:
    """Seconds per call for each runner, taking turns (A, B, C, A, B, C, ...) after a warm-up.

    Taking turns spreads the noise of a shared machine evenly over the candidates; the short
    ``pause`` before each timed call lets the previous runtime's worker threads go to sleep.

    ``budget`` (seconds per runner): a runner whose warm-up call shows that ``repeats`` runs would
    take longer gets fewer runs, never fewer than ``min_repeats``, and one warm-up call only (FP16
    on a CPU without FP16 arithmetic takes a second per batch: 20 runs of it were a minute of waiting).
    """
    counts: dict[str, int] = {}
    for name, run in runners.items():
        start = time.perf_counter()
        run()
        first = time.perf_counter() - start
        slow = budget is not None and first * repeats > budget
        for _ in range(0 if slow and first > budget / min_repeats else warmup - 1):
            run()
        counts[name] = max(min(min_repeats, repeats), int(budget / first)) if slow else repeats
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for turn in range(max(counts.values(), default=0)):
        for name, run in runners.items():
            if turn >= counts[name]:
                continue
            time.sleep(pause)
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return samples


def predictions(variant: Variant, eval_set: EvalSet, batch_size: int = 16, threads: int | None = None) -> torch.Tensor:
    return torch.cat(
        [variant.predict(eval_set.images[i : i + batch_size], threads).argmax(1) for i in range(0, len(eval_set), batch_size)]
    )


COLUMNS = [
    "model", "technique", "runtime", "precision", "file MB", "zipped MB", "params", "non-zeros",
    "MMACs", "latency b1 ms", "latency b8 ms", "speed-up b1", "top-1", "agreement",
    # sample sizes and 95 % Wilson intervals (cvdemo.stats): on a few dozen images they are wide
    "top-1 n", "top-1 low", "top-1 high", "agreement n", "agreement low", "agreement high",
    "runs b1", "runs b8",  # timed runs behind each median (fewer for very slow models: compare's time_budget)
]


def compare(
    original: Variant | nn.Module,
    compressed: Sequence[Variant],
    eval_set: EvalSet,
    repeats: int = 20,
    warmup: int = 3,
    batch_sizes: Sequence[int] = (1, 8),
    threads: int | None = None,
    progress: Progress | None = None,
    time_budget: float | None = 2.0,
) -> pd.DataFrame:
    """One row per model: size, parameters, MACs, CPU latency, top-1 and agreement with ``original``.

    Latency: every model runs with the same thread count (torch's and ONNX Runtime's), the
    models take turns, ``repeats`` runs after ``warmup`` per batch size; the median is reported.
    A model so slow that ``repeats`` runs would exceed ``time_budget`` seconds gets fewer (at least 5,
    see :func:`time_interleaved`); the ``runs b1`` / ``runs b8`` columns say how many each model got.
    Top-1 counts labeled images only (NaN when there are none); agreement is the share of all
    images where a model predicts the same class as the original. Both come with their n and a
    95 % Wilson interval (``top-1 low`` / ``top-1 high``, ...).
    """
    if not isinstance(original, Variant):
        original = original_variant(original)
    if eval_set is None or len(eval_set) == 0:
        raise CompressionError("The evaluation set is empty: add at least one image.")
    if repeats < 1:
        raise CompressionError("Latency needs at least one timed run.")
    threads = threads or torch.get_num_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    variants = [original, *compressed]
    input_size = tuple(eval_set.images.shape[1:])
    say = progress or (lambda fraction, text: None)
    try:
        preds = {}
        for i, v in enumerate(variants):
            say(0.5 * i / len(variants), f"evaluating {v.name} on {len(eval_set)} images")
            preds[v.name] = predictions(v, eval_set, threads=threads)
        latency: dict[int, dict[str, float]] = {}
        runs: dict[int, dict[str, int]] = {}
        for j, batch in enumerate(batch_sizes):
            say(0.5 + 0.4 * j / len(batch_sizes), f"timing batch {batch}: up to {repeats} interleaved runs per model")
            x = torch.randn(batch, *input_size)
            samples = time_interleaved({v.name: v.runner(x, threads) for v in variants}, repeats, warmup,
                                       budget=time_budget)
            latency[batch] = {name: statistics.median(s) * 1e3 for name, s in samples.items()}
            runs[batch] = {name: len(s) for name, s in samples.items()}
        say(0.9, "counting parameters and MACs, sizing files")
        rows = []
        labeled = eval_set.labels >= 0
        reference = preds[original.name]
        first_batch = batch_sizes[0]
        for v in variants:
            params, nonzero = v.parameter_counts()
            blob = v.file_bytes()
            pred = preds[v.name]
            correct = int((pred[labeled] == eval_set.labels[labeled]).sum())
            same = int((pred == reference).sum())
            n_labeled = int(labeled.sum())
            row = {
                "model": v.name,
                "technique": v.technique,
                "runtime": v.runtime,
                "precision": v.precision,
                "file MB": len(blob) / 1e6,
                "zipped MB": len(zlib.compress(blob, 6)) / 1e6,
                "params": params,
                "non-zeros": nonzero,
                "MMACs": count_macs(v.module, input_size) / 1e6,
                "top-1": correct / n_labeled if n_labeled else float("nan"),
                "agreement": same / len(pred),
                "top-1 n": n_labeled,
                **dict(zip(("top-1 low", "top-1 high"), wilson_interval(correct, n_labeled))),
                "agreement n": len(pred),
                **dict(zip(("agreement low", "agreement high"), wilson_interval(same, len(pred)))),
            }
            for batch in batch_sizes:
                row[f"latency b{batch} ms"] = latency[batch][v.name]
                row[f"runs b{batch}"] = runs[batch][v.name]
            row[f"speed-up b{first_batch}"] = latency[first_batch][original.name] / latency[first_batch][v.name]
            rows.append(row)
        say(1.0, "done")
    finally:
        torch.set_num_threads(previous_threads)
    table = pd.DataFrame(rows)
    ordered = [c for c in COLUMNS if c in table.columns] + [c for c in table.columns if c not in COLUMNS]
    return table[ordered]


# --- uploaded model files ------------------------------------------------------------------------------

PICKLE_SUFFIXES = model_files.PICKLE_SUFFIXES


def load_model_file(
    filename: str, data: bytes, reference: nn.Module, input_size: tuple[int, int, int] = (3, 224, 224)
) -> Variant:
    """A user's model file as a Variant: ONNX (runs in ONNX Runtime) or safetensors (weights for
    ``reference``'s architecture). Pickle-based checkpoints are refused: loading one can run code.
    """
    suffix = Path(filename).suffix.lower()
    if not data:
        raise ModelFileError(f"{filename} is empty.")
    if suffix in PICKLE_SUFFIXES or model_files.looks_like_pickle(data):
        raise ModelFileError(
            f"{filename} looks like a pickle-based PyTorch checkpoint. Loading pickle can run arbitrary code, so it is "
            "refused: save the weights with safetensors (safetensors.torch.save_file) or export the model to ONNX."
        )
    if suffix == ".safetensors" or model_files.looks_like_safetensors(data):
        return _safetensors_variant(filename, data, reference)
    if suffix == ".onnx" or suffix == "":
        return _onnx_variant(filename, data, reference, input_size)
    raise ModelFileError(f"{filename} is neither a .safetensors nor an .onnx file; only those two formats are accepted.")


def _safetensors_variant(filename: str, data: bytes, reference: nn.Module) -> Variant:
    from safetensors.torch import load

    try:
        state = load(data)
    except Exception as exc:
        raise ModelFileError(f"{filename} is not a readable safetensors file ({exc}).") from None
    model = copy.deepcopy(reference)
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise ModelFileError(
                f"{filename} does not fit the chosen model: weight {key!r} is missing. Safetensors holds weights only, "
                "so a pruned or factorised model must be uploaded as ONNX."
            )
        if tuple(state[key].shape) != tuple(value.shape):
            raise ModelFileError(
                f"{filename} does not fit the chosen model: {key!r} has shape {tuple(state[key].shape)}, the model expects "
                f"{tuple(value.shape)}. Upload pruned or factorised models as ONNX."
            )
    model.load_state_dict({k: state[k].float() for k in own}, strict=True)
    return Variant(name=f"Uploaded: {filename}", technique="uploaded", runtime=RUNTIME_TORCH, precision="FP32",
                   module=model.eval(), notes=["Weights loaded from safetensors into the chosen architecture."])


def _onnx_variant(filename: str, data: bytes, reference: nn.Module, input_size: tuple[int, int, int]) -> Variant:
    import onnx

    try:
        proto = onnx.load_from_string(data)
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ModelFileError(f"{filename} is not a valid ONNX model ({str(exc).splitlines()[0][:160]}).") from None
    inputs = [i for i in proto.graph.input if i.name not in {init.name for init in proto.graph.initializer}]
    if len(inputs) != 1:
        raise ModelFileError(f"{filename} has {len(inputs)} inputs; an image classifier has exactly one.")
    try:
        session = ort_session(data)
        name = session.get_inputs()[0].name
        out = session.run(None, {name: np.zeros((1, *input_size), np.float32)})[0]
    except Exception as exc:
        raise ModelFileError(
            f"{filename} does not run on a 1x{'x'.join(map(str, input_size))} image ({str(exc).splitlines()[0][:160]})."
        ) from None
    with torch.inference_mode():
        classes = reference(torch.zeros(1, *input_size)).shape[-1]
    if out.ndim != 2 or out.shape[-1] != classes:
        raise ModelFileError(f"{filename} outputs shape {tuple(out.shape)}; the chosen model has {classes} classes.")
    variant = Variant(name=f"Uploaded: {filename}", technique="uploaded", runtime=RUNTIME_ORT,
                      precision="INT8" if any(r["quantized"] for r in quantized_layers(data)) else "FP32",
                      module=reference, onnx_model=data, layers=quantized_layers(data),
                      notes=["Parameters and MACs are those of the chosen architecture, not read from the file."])
    try:  # a batch-1-only graph cannot be timed at batch 8
        session.run(None, {name: np.zeros((2, *input_size), np.float32)})
    except Exception:
        variant.notes.append("The graph has a fixed batch size of 1.")
    return variant


# --- explaining the numbers ------------------------------------------------------------------------------

LECTURE_POINTS: dict[str, str] = {
    "onnx_fp32": "FLOPs are not latency: the same FP32 network can run several times faster in an inference "
    "runtime that fuses layers and picks kernels for this CPU.",
    "int8_static": "Static INT8 stores weights in 8 bits (4x smaller) and, with activation ranges calibrated "
    "beforehand, runs convolutions as integer arithmetic: 2-4x faster only where the CPU has fast int8 dot products.",
    "int8_dynamic": "Dynamic quantization converts only Linear (and LSTM) weights; activations are quantized on the "
    "fly. Convolutions stay FP32, so a conv net barely changes.",
    "fp16": "Half-precision weights halve the file; arithmetic is faster only on hardware with native FP16 math "
    "(GPUs, some ARM CPUs).",
    "bf16": "BF16 keeps FP32's range with 8 bits of mantissa: half the file; faster only where the CPU has BF16 dot "
    "products (AVX512-BF16, AMX).",
    "prune_unstructured": "Magnitude pruning zeroes individual weights: sparsity without speed-up, because dense "
    "kernels multiply the zeros too and the tensors keep their shapes. It pays off with sparse storage (zip) or "
    "sparse hardware.",
    "prune_structured": "Structured pruning removes whole channels, so tensors and MACs really shrink and any "
    "runtime gets faster, at a larger accuracy cost that fine-tuning recovers.",
    "low_rank": "Low-rank factorisation replaces a weight matrix W by two thin ones (U S)(V): fewer parameters and "
    "MACs when the rank is small, but two small layers are not always faster than one big one.",
    "distill": "Distillation trains a small student on the teacher's softened outputs (temperature T), which carry "
    "'dark knowledge' about class similarities that hard labels lack.",
}


def _row(table: pd.DataFrame, technique: str) -> pd.Series | None:
    hits = table[table["technique"] == technique]
    return hits.iloc[0] if len(hits) else None


def _row_in(table: pd.DataFrame, technique: str, runtime: str) -> pd.Series | None:
    hits = table[(table["technique"] == technique) & (table["runtime"] == runtime)]
    return hits.iloc[0] if len(hits) else None


def _times(ratio: float, better: str, worse: str, same: str = "the same") -> str:
    """"3.2x faster", "1.5x slower" or "about the same" for a ratio where > 1 is better."""
    if 0.95 <= ratio <= 1.05:
        return f"about {same}"
    return f"{ratio:.2f}x {better}" if ratio > 1 else f"{1 / ratio:.2f}x {worse}"


def _than(ratio: float, better: str, worse: str, same: str) -> str:
    """"3.2x faster than", "1.5x slower than" or "about as fast as" (followed by what is compared)."""
    return f"about {same}" if 0.95 <= ratio <= 1.05 else _times(ratio, better, worse) + " than"


def with_interval(row: pd.Series, column: str = "top-1") -> str:
    """``"82.8 % (95 % CI 72–90 %, n = 64)"``: an accuracy with what it can be trusted to."""
    value = f"{row[column]:.1%}"
    if f"{column} n" not in row or pd.isna(row[f"{column} low"]):
        return value
    return f"{value} (95 % CI {format_interval(row[f'{column} low'], row[f'{column} high'])}, n = {int(row[f'{column} n'])})"


def accuracy_difference(row: pd.Series, base: pd.Series, column: str = "top-1") -> str:
    """What a difference in accuracy on this many images shows: a sentence, or "" without intervals."""
    if f"{column} n" not in row or pd.isna(row[f"{column} low"]) or pd.isna(base[f"{column} low"]):
        return ""
    ours, theirs = (row[f"{column} low"], row[f"{column} high"]), (base[f"{column} low"], base[f"{column} high"])
    if row[column] == base[column]:
        return ""
    if intervals_overlap(ours, theirs):
        return (f" The 95 % intervals overlap: on {int(row[f'{column} n'])} images a {abs(row[column] - base[column]):.1%} "
                "difference is within noise, so neither is shown to be better.")
    return " The 95 % intervals do not overlap: a real difference on these images."


SATURATION_LESSON = (
    "Integer arithmetic is exact only if no intermediate sum overflows: x86 CPUs without VNNI multiply 8-bit "
    "activations by signed 8-bit weights with VPMADDUBSW, which adds two products into a 16-bit register that "
    "clips at 32,767 (255 x 127 x 2 = 64,770), so the same INT8 file can answer differently on an AVX2 laptop."
)

# Where the numbers below come from: EfficientNet-Lite0, 16 calibration images, 153 ants & bees val images;
# the VNNI CPU directly, the AVX2 kernels under `qemu-x86_64 -cpu Haswell` (bench/bench_compression.py).
INT8_MEASURED = (
    "Measured on an Intel Xeon @ 2.80 GHz with AVX-512 VNNI (2 cores), EfficientNet-Lite0, 153 ants & bees images: "
    "agreement with FP32 0.987 with the VNNI recipe (0.961 with every layer in signed INT8). With the AVX2 kernels "
    "(emulated Haswell) signed 8-bit weights fell to 0.89, 7-bit weights (reduce_range) gave 0.94, and the "
    "unsigned-weight recipe 0.967, the same as on the VNNI CPU; there it runs at about FP32 speed, the VNNI recipe "
    "at 0.35-0.5x."
)


def int8_recipe_text(cpu: CpuFeatures) -> str:
    """Which INT8 recipe :func:`quantize_int8` uses on ``cpu`` and why, for the page (markdown)."""
    recipe = int8_recipe(cpu)
    seen = ", ".join(cpu.int8_flags) or "none of avx2, avx512bw, avx512_vnni, avx_vnni, amx_int8"
    has = "has" if cpu.vnni else "has no"
    return (
        f"**Recipe used here:** {recipe.label}, the first convolution kept in FP32 (it sees the raw pixels and "
        f"is one small layer), MinMax calibration. Chosen because this CPU {has} VNNI (INT8 flags seen in "
        f"{cpu.source}: {seen}). {recipe.why} {SATURATION_LESSON if cpu.vnni else ''}".rstrip()
        + f"\n\n*{INT8_MEASURED}*"
    )


def explain(technique: str, table: pd.DataFrame, cpu: CpuFeatures) -> str:
    """The lecture's key point plus where this machine's measured numbers agree or disagree."""
    point = LECTURE_POINTS.get(technique, "")
    base = _row(table, "original")
    row = _row(table, technique)
    if base is None or row is None:
        return point
    b1 = "latency b1 ms"
    speed = base[b1] / row[b1]
    size = base["file MB"] / row["file MB"]
    lines = [f"**Lecture:** {point}", ""]
    measured = (
        f"**Here:** {row[b1]:.1f} ms vs {base[b1]:.1f} ms at batch 1 ({_than(speed, 'faster', 'slower', 'as fast as')} "
        f"the original), file {row['file MB']:.1f} MB vs {base['file MB']:.1f} MB ({_times(size, 'smaller', 'larger', 'same size')}), "
        f"agreement with the original {row['agreement']:.0%}"
        + (f", top-1 {with_interval(row)} vs {with_interval(base)}.{accuracy_difference(row, base)}"
           if not pd.isna(row["top-1"]) else ".")
    )
    lines.append(measured)
    verdict = ""
    if technique == "onnx_fp32":
        verdict = (
            f"This is the runtime's effect alone, no compression: {speed:.1f}x from graph optimisation and kernels "
            f"({'AVX-512' if cpu.avx512 else 'AVX2' if cpu.avx2 else 'SSE'} FP32 on this CPU)."
        )
    elif technique == "int8_static":
        ort = _row(table, "onnx_fp32")
        flags = (
            "This CPU has an INT8 dot-product instruction (VNNI: one VPDPBUSD multiplies and accumulates 4 byte pairs "
            "per 32-bit lane), so INT8 convolutions can beat FP32 clearly."
            if cpu.vnni
            else "This CPU has no VNNI: INT8 dot products take two instructions (VPMADDUBSW + VPMADDWD, or 16-bit "
            "VPMADDWD alone for the unsigned weights used here), so INT8 gains little over well-tuned FP32."
        )
        if ort is not None:
            runtime_gain = base[b1] / ort[b1]
            int8_gain = ort[b1] / row[b1]
            verdict = (
                f"Of the {speed:.1f}x total speed-up, the runtime (PyTorch -> ONNX Runtime, both FP32) gave "
                f"{runtime_gain:.1f}x and INT8 in the same runtime gave {int8_gain:.2f}x. {flags} "
                + (
                    "Here INT8 itself is within the lecture's 2-4x."
                    if int8_gain >= 2
                    else "Here INT8 itself gives less than the lecture's 2-4x: most of the win is the runtime; "
                    "for a small depthwise net memory traffic and the fused FP32 kernels are already efficient."
                )
            )
        else:
            verdict = flags + " Add the FP32 ONNX Runtime row to separate the runtime's share from INT8's."
        verdict += "\n\n" + int8_recipe_text(cpu)
    elif technique == "int8_dynamic":
        verdict = (
            f"{'Agrees' if speed < 1.2 else 'Disagrees'} with the lecture: latency is {_times(speed, 'faster', 'slower')}, "
            "because in a CNN the convolutions do almost all the work and they stayed FP32; the file shrinks only by "
            f"the Linear weights ({base['file MB']:.1f} -> {row['file MB']:.1f} MB)."
        )
    elif technique in ("fp16", "bf16"):
        label = technique.upper()
        hardware = (
            "this CPU has BF16 dot-product instructions (AVX512-BF16), which PyTorch's oneDNN convolutions use"
            if technique == "bf16" and cpu.bf16
            else f"this CPU has no {label} arithmetic instructions"
            + (" (AVX512-FP16 is missing), so every FP16 layer falls back to slow converting kernels" if technique == "fp16"
               else ", so BF16 layers convert to FP32 and back")
        )
        verdict = f"The file halves as promised. Latency is {_times(speed, 'faster', 'slower')}: {hardware}."
        if technique == "bf16" and cpu.bf16 and speed < 0.95:
            verdict += " Layers without a BF16 kernel (depthwise convolutions, BatchNorm) still convert, which costs more here."
    elif technique == "prune_unstructured":
        sparsity = 1 - row["non-zeros"] / row["params"]
        verdict = (
            f"{sparsity:.0%} of the parameters are zero, yet MACs ({row['MMACs']:.0f} M) and the dense file are "
            f"unchanged and latency is {_times(speed, 'faster', 'slower')}"
            f"{': as the lecture says' if speed < 1.15 else ' (noise: nothing skips the zeros)'}. "
            f"Only the zipped file shrinks ({base['zipped MB']:.1f} -> {row['zipped MB']:.1f} MB)."
        )
    elif technique == "prune_structured":
        mac_ratio = base["MMACs"] / max(row["MMACs"], 1e-9)
        verdict = (
            f"MACs {base['MMACs']:.0f} M -> {row['MMACs']:.0f} M ({mac_ratio:.1f}x fewer) made it "
            f"{_times(speed, 'faster', 'slower')} at batch 1: "
            + ("latency followed the MACs less than proportionally (overheads, memory-bound depthwise layers)."
               if speed < 0.8 * mac_ratio else "latency followed the MACs.")
        )
        ort_base, ort_row = _row_in(table, "onnx_fp32", RUNTIME_ORT), _row_in(table, technique, RUNTIME_ORT)
        if ort_base is not None and ort_row is not None:
            verdict += (f" In ONNX Runtime the pruned model is {_times(ort_base[b1] / ort_row[b1], 'faster', 'slower')} "
                        "than the unpruned one: structured pruning speeds up every runtime.")
    elif technique == "low_rank":
        mac_ratio = base["MMACs"] / max(row["MMACs"], 1e-9)
        verdict = (
            f"Parameters {base['params']:,} -> {row['params']:,}, MACs {_times(mac_ratio, 'fewer', 'more')}, "
            f"latency {_times(speed, 'faster', 'slower')}: "
            + ("the saved arithmetic is too small to measure through the noise." if 0.95 <= speed <= 1.05
               else "the extra layer costs more than the saved arithmetic here." if speed < 1 else "a real saving here.")
        )
    if verdict:
        lines += ["", verdict]
    return "\n".join(lines)


def explain_distillation(table: pd.DataFrame, labeled: int, transfer: int) -> str:
    """The lecture's point on distillation and what the two students measured here show.

    ``labeled``: training images with a label; ``transfer``: images the distilled student saw.
    """
    teacher, kd, hard = (_row(table, t) for t in ("teacher", "distill", "hard_labels"))
    if teacher is None or kd is None or hard is None:
        return LECTURE_POINTS["distill"]
    gain = kd["top-1"] - hard["top-1"]
    unlabeled = transfer - labeled
    source = (f"the teacher also labeled {unlabeled} images that have no label" if unlabeled > 0
              else "both students saw the same labeled images")
    within_noise = "overlap:" in accuracy_difference(kd, hard)  # the two 95 % intervals share values
    if abs(gain) > 0.02 and within_noise:
        # a few points on a few hundred test images can be chance: say so rather than claim a verdict
        verdict = (f"{'Leans towards' if gain > 0 else 'Leans against'} the lecture: the distilled student is "
                   f"{gain:+.1%} {'ahead' if gain > 0 else 'behind'} ({source}), but the 95 % intervals overlap, "
                   f"so on {int(kd['top-1 n'])} test images this is not yet evidence. With more labeled images "
                   "or epochs, see whether the sign holds.")
    elif gain > 0.02:
        verdict = f"Agrees with the lecture: distillation added {gain:+.1%} top-1 over hard labels alone ({source})."
    elif gain < -0.02:
        verdict = (f"Disagrees this time: the distilled student is {gain:+.1%} behind ({source}). The teacher is only "
                   f"{teacher['top-1']:.0%} accurate and its mistakes are soft targets too; try another T or alpha.")
    else:
        verdict = f"No clear difference ({gain:+.1%}, {source}): within the run-to-run noise of a few hundred images."
    if unlabeled <= 0:
        verdict += (" On this small set the soft targets alone rarely help much; where distillation pays is a "
                    "transfer set: switch on 'teacher labels the unlabeled images'.")
    return "\n".join([
        f"**Lecture:** {LECTURE_POINTS['distill']}",
        "",
        f"**Here:** teacher top-1 {teacher['top-1']:.0%} with {teacher['params']:,} parameters and "
        f"{teacher['latency b1 ms']:.1f} ms per image; student {kd['params']:,} parameters "
        f"({teacher['params'] / kd['params']:.0f}x fewer), {kd['latency b1 ms']:.1f} ms. "
        f"Distilled student top-1 {with_interval(kd)} (agrees with the teacher on {kd['agreement']:.0%}), "
        f"hard-label student {with_interval(hard)} ({hard['agreement']:.0%}). Labeled training images: {labeled}; "
        f"images the distilled student learned from: {transfer}.",
        "",
        verdict,
    ])


def thread_count() -> int:
    return torch.get_num_threads()


def openmp_wait_policy() -> str:
    """How idle OpenMP threads wait (``OMP_WAIT_POLICY``, read when torch loaded); unset = the runtime's default."""
    import os

    return os.environ.get("OMP_WAIT_POLICY", "default (spin, then sleep)")


def results_csv(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False).encode()


def model_choices() -> list[dict[str, Any]]:
    """ImageNet classifiers the page offers, each with whether its weights are here and why not."""
    from cvdemo import weights
    from cvdemo.backbones import BACKBONES

    rows = []
    for name in ("efficientnet_lite0", "resnet18", "mobilenetv2_100", "mobilenetv3_large_100", "mobilenetv3_small_100"):
        ok = weights.available(name)
        reason = "" if ok else str(weights.WeightsUnavailable(weights.get(name)))
        rows.append({"name": name, "label": BACKBONES[name].label, "available": ok, "reason": reason})
    return rows



# --- ready-made runs for the page and the Gradio demo ----------------------------------------------------

TECHNIQUES: dict[str, str] = {
    "int8_static": "Quantization: INT8 static (ONNX Runtime)",
    "int8_dynamic": "Quantization: INT8 dynamic (PyTorch, Linear only)",
    "fp16": "Quantization: FP16 weights",
    "bf16": "Quantization: BF16 weights",
    "prune_unstructured": "Pruning: unstructured (magnitude)",
    "prune_structured": "Pruning: structured channels",
    "low_rank": "Low-rank: SVD factorisation",
}

EVAL_SETS: dict[str, str] = {
    "hymenoptera": "Ants & bees (hymenoptera val, ImageNet classes 310/309)",
    "coco128": "COCO128 photos (no labels: agreement only)",
}


@dataclass
class TechniqueSpec:
    """One technique to apply and its knobs (see :func:`make_variant`)."""

    technique: str
    knobs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return TECHNIQUES.get(self.technique, self.technique)


def backbone(name: str) -> nn.Module:
    """The pretrained ImageNet model, built once per process and never modified."""
    from cvdemo import cache
    from cvdemo.backbones import create_backbone

    return cache.shared(create_backbone, name)


def input_size_of(model: nn.Module) -> tuple[int, int, int]:
    from cvdemo.backbones import data_config

    return tuple(data_config(model)["input_size"])


def backbone_onnx(name: str) -> bytes:
    """The pretrained model exported to ONNX once per process (the export takes seconds)."""
    from cvdemo import cache

    model = backbone(name)
    return cache.shared(_export_named, name, input_size_of(model))


def _export_named(name: str, input_size: tuple[int, int, int]) -> bytes:
    return export_onnx(backbone(name), input_size)


def transform_for(name: str):
    from cvdemo.backbones import eval_transform

    return eval_transform(backbone(name))


def standard_eval_set(name: str, which: str = "hymenoptera", limit: int | None = 64) -> EvalSet:
    """A shipped evaluation set preprocessed for model ``name`` (raises DataUnavailable)."""
    from cvdemo.datasets import dataset_path
    from cvdemo.images import is_image_name

    if which == "hymenoptera":
        root = dataset_path("hymenoptera_data") / "val"
        return eval_set_from_folder(
            root, transform_for(name), imagenet_label_map(["ants", "bees"]), limit, description="ants & bees (hymenoptera val)"
        )
    if which == "coco128":
        folder = dataset_path("coco128") / "images"
        paths = sorted(p for p in folder.rglob("*") if is_image_name(p.name))[:limit]
        return eval_set_from_paths(paths, transform_for(name), "COCO128 photos (unlabeled)")
    raise CompressionError(f"Unknown evaluation set {which!r}: choose one of {', '.join(EVAL_SETS)}.")


def train_images(name: str, count: int = 16) -> torch.Tensor:
    """Images that are not in the evaluation set, for calibration and fine-tuning (hymenoptera train)."""
    from cvdemo.datasets import dataset_path

    root = dataset_path("hymenoptera_data") / "train"
    return eval_set_from_folder(root, transform_for(name), {}, count, description="hymenoptera train").images


def make_variant(name: str, spec: TechniqueSpec, progress: Progress | None = None) -> Variant:
    """Apply one technique to pretrained model ``name`` with the spec's knobs."""
    model = backbone(name)
    size = input_size_of(model)
    k = spec.knobs
    if spec.technique == "int8_static":
        return quantize_int8(
            model, train_images(name, int(k.get("calibration_images", 16))), size,
            per_channel=bool(k.get("per_channel", True)), onnx_model=backbone_onnx(name),
        )
    if spec.technique == "int8_dynamic":
        return quantize_dynamic_int8(model)
    if spec.technique in ("fp16", "bf16"):
        return cast_weights(model, torch.float16 if spec.technique == "fp16" else torch.bfloat16)
    if spec.technique == "prune_unstructured":
        return prune_unstructured(model, float(k.get("amount", 0.3)), str(k.get("scope", "global")))
    if spec.technique == "prune_structured":
        variant = prune_structured(model, float(k.get("amount", 0.3)), torch.randn(1, *size), round_to=k.get("round_to"))
        epochs = int(k.get("fine_tune_epochs", 0))
        if epochs > 0:
            images = train_images(name, int(k.get("fine_tune_images", 244)))
            teacher = to_onnx_runtime(model, size, onnx_model=backbone_onnx(name))  # faster teacher, same logits
            variant.module = fine_tune_to_original(teacher.predict, variant.module, images, epochs=epochs, progress=progress)
            variant.name = variant.name.replace(", PyTorch", f" + {epochs} epoch fine-tune, PyTorch")
            variant.notes.append(
                f"Fine-tuned {epochs} epoch(s) on {len(images)} unlabeled hymenoptera train images to match the original's outputs."
            )
        return variant
    if spec.technique == "low_rank":
        layers = list(k.get("layers") or []) or None
        if k.get("rank"):
            return low_rank(model, rank=int(k["rank"]), layers=layers)
        return low_rank(model, energy=float(k.get("energy", 0.9)), layers=layers)
    raise CompressionError(f"Unknown technique {spec.technique!r}.")


def factorisable_layers_of(model: nn.Module) -> list[str]:
    """Layers :func:`low_rank` can factorise (Linear and non-grouped Conv), last (classifier) first."""
    names = [n for n, m in _weighted_layers(model) if isinstance(m, nn.Linear) or m.groups == 1]
    return names[::-1]


def factorisable_layers(name: str) -> list[str]:
    return factorisable_layers_of(backbone(name))


@dataclass
class Run:
    """Everything one press of 'Compress and measure' produced."""

    model_name: str
    variants: list[Variant]
    table: pd.DataFrame
    errors: dict[str, str]
    eval_description: str
    cpu: CpuFeatures


def build_variants(
    name: str, specs: Sequence[TechniqueSpec], deploy_ort: bool = False, progress: Progress | None = None
) -> tuple[list[Variant], dict[str, str]]:
    """The compressed variants of ``name`` plus the FP32 ONNX Runtime row whenever a variant runs there.

    A technique whose knobs cannot work is reported in ``errors`` (label -> sentence), the others go on.
    """
    say = progress or (lambda fraction, text: None)
    model = backbone(name)
    size = input_size_of(model)
    variants: list[Variant] = []
    errors: dict[str, str] = {}
    if deploy_ort or any(s.technique == "int8_static" for s in specs):
        say(0.0, "exporting the original to ONNX (once per server)")
        variants.append(to_onnx_runtime(model, size, onnx_model=backbone_onnx(name)))
    for i, spec in enumerate(specs):
        start, span = (i + 0.1) / len(specs), 0.9 / len(specs)
        say(start, f"applying {spec.label}")
        try:
            variant = make_variant(name, spec, progress=lambda f, text: say(start + span * f, f"{spec.label}: {text}"))
        except CompressionError as exc:
            errors[spec.label] = str(exc)
            continue
        variants.append(variant)
        if deploy_ort and variant.runtime == RUNTIME_TORCH and variant.run_module is None:
            say(start + span * 0.9, f"exporting {variant.name} to ONNX Runtime")
            variants.append(to_onnx_runtime(variant.module, size, like=variant))
    return variants, errors


def run_comparison(
    name: str,
    specs: Sequence[TechniqueSpec],
    eval_set: EvalSet,
    deploy_ort: bool = False,
    repeats: int = 20,
    progress: Progress | None = None,
) -> Run:
    """Build the variants (first 40% of the progress) and measure them against the original."""
    say = progress or (lambda fraction, text: None)
    variants, errors = build_variants(name, specs, deploy_ort, lambda f, t: say(0.4 * f, t))
    if errors and not any(v.technique != "onnx_fp32" for v in variants):
        raise CompressionError(" ".join(f"{label}: {message}" for label, message in errors.items()))
    table = compare(
        original_variant(backbone(name)), variants, eval_set, repeats=repeats, progress=lambda f, t: say(0.4 + 0.6 * f, t)
    )
    return Run(name, variants, table, errors, eval_set.description, cpu_features())


# --- distillation on the CIFAR-10 subset ------------------------------------------------------------------------


@dataclass
class CifarSplit:
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test: EvalSet
    classes: list[str]


def cifar_split(train_per_class: int = 30) -> CifarSplit:
    """The 10 x 50 CIFAR-10 subset: the first ``train_per_class`` images of each class train, the rest test.

    Images stay 32 x 32, normalised to [-1, 1] (EfficientNet-Lite0's mean = std = 0.5).
    """
    from torchvision import transforms

    from cvdemo.datasets import dataset_path, image_folder
    from cvdemo.images import load_image

    pairs = image_folder(dataset_path("cifar10_test_50pc"))
    classes = sorted({label for _, label in pairs})
    per_class: dict[str, int] = {}
    if not 1 <= train_per_class < min(sum(1 for _, l in pairs if l == c) for c in classes):
        raise CompressionError(f"Training images per class must leave some for testing: 1 to 49, not {train_per_class}.")
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    train_x, train_y, test_x, test_y, names = [], [], [], [], []
    for path, label in pairs:
        seen = per_class.get(label, 0)
        per_class[label] = seen + 1
        tensor = tf(load_image(path))
        if seen < train_per_class:
            train_x.append(tensor)
            train_y.append(classes.index(label))
        else:
            test_x.append(tensor)
            test_y.append(classes.index(label))
            names.append(f"{label}/{path.name}")
    test = EvalSet(torch.stack(test_x), torch.tensor(test_y), names, f"CIFAR-10 subset test ({len(test_x)} images)",
                   dict(enumerate(classes)))
    return CifarSplit(torch.stack(train_x), torch.tensor(train_y), test, classes)


def labeled_mask(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """True for the first ``per_class`` images of each class: the only ones whose labels are used."""
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique():
        mask[(labels == c).nonzero()[:per_class, 0]] = True
    return mask


def cifar_teacher(labeled_per_class: int = 10, size: int = 160) -> FeatureTeacher:
    """EfficientNet-Lite0 features (frozen, images upsampled to ``size``) + a linear head fitted on
    the labeled training images only."""
    split = cifar_split()
    mask = labeled_mask(split.train_labels, labeled_per_class)
    features = copy.deepcopy(backbone("efficientnet_lite0"))
    features.reset_classifier(0)
    torch.manual_seed(0)
    return train_feature_teacher(features, split.train_images[mask], split.train_labels[mask], len(split.classes), size=size)


@dataclass
class DistillationOutcome:
    teacher: nn.Module
    distilled: DistillResult
    hard_only: DistillResult
    split: CifarSplit
    labeled: int  # training images with a label
    transfer: int  # training images the distilled student saw (labeled + unlabeled ones the teacher labels)

    def variants(self) -> tuple[Variant, list[Variant]]:
        """The teacher as the reference and both students, ready for :func:`compare`."""
        teacher = Variant("Teacher: EfficientNet-Lite0 features + linear head", "teacher", RUNTIME_TORCH, "FP32",
                          self.teacher)
        kd = Variant(f"Student, distilled (T={self.distilled.temperature:g}, alpha={self.distilled.alpha:g})",
                     "distill", RUNTIME_TORCH, "FP32", self.distilled.student)
        hard = Variant("Student, hard labels only", "hard_labels", RUNTIME_TORCH, "FP32", self.hard_only.student)
        return teacher, [kd, hard]


def run_distillation(
    teacher: nn.Module,
    split: CifarSplit,
    student_kind: str = "tiny_cnn",
    temperature: float = 4.0,
    alpha: float = 0.5,
    epochs: int = 30,
    labeled_per_class: int = 10,
    transfer: bool = True,
    seed: int = 0,
    views: int = 4,
    progress: Progress | None = None,
) -> DistillationOutcome:
    """Train the same student initialisation twice: with the teacher's soft targets and on hard labels only.

    Only ``labeled_per_class`` training images per class keep their label. With ``transfer`` the
    distilled student also learns from the other training images, which only the teacher labels
    (Hinton's "transfer set"); the hard-label student can only use the labeled ones.
    """
    say = progress or (lambda fraction, text: None)
    mask = labeled_mask(split.train_labels, labeled_per_class)
    partial = torch.where(mask, split.train_labels, torch.full_like(split.train_labels, -1))
    kd_set = (split.train_images, partial) if transfer else (split.train_images[mask], split.train_labels[mask])
    student = make_student(student_kind, len(split.classes), seed=seed)
    distilled = distill(teacher, student, kd_set, temperature, alpha, epochs, seed=seed, views=views,
                        progress=lambda f, t: say(0.6 * f, f"distilling: {t}"))
    hard = distill(None, student, (split.train_images[mask], split.train_labels[mask]), temperature, 1.0, epochs,
                   seed=seed, views=views, progress=lambda f, t: say(0.6 + 0.4 * f, f"hard labels only: {t}"))
    return DistillationOutcome(teacher, distilled, hard, split, int(mask.sum()), len(kd_set[0]))
