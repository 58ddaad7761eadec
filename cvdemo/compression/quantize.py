"""Quantization: static INT8 in ONNX Runtime (with a recipe per kind of CPU), dynamic INT8 in PyTorch,
FP16 / BF16 weights.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from cvdemo.runtime import export_onnx
from cvdemo.compression.errors import CompressionError
from cvdemo.compression.cpu import CpuFeatures, cpu_features
from cvdemo.compression.layers import weighted_layers
from cvdemo.compression.onnx_export import shape_computation_nodes
from cvdemo.compression.variant import RUNTIME_ORT, RUNTIME_TORCH, Variant


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
        for name, m in weighted_layers(model)
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
