"""Quantized (QDQ) ONNX graphs turned back into float ones, by a plain ``onnx`` graph edit.

A static INT8 QDQ graph stores each weight as INT8 + scale behind a ``DequantizeLinear``, and
wraps activations in ``QuantizeLinear`` → ``DequantizeLinear`` pairs. ONNX Runtime and OpenVINO
fuse these into integer kernels, and those kernels differ by CPU (AVX-512 VNNI / AMX vs AVX2
round intermediate sums differently), so the same file gives different scores on different
machines. :func:`dequantized` rewrites the graph so that

* every weight ``DequantizeLinear`` becomes an FP32 initializer holding ``(q - zero_point) * scale``
  (the INT8 weights, exactly as the quantized graph sees them), and
* every activation ``QuantizeLinear`` → ``DequantizeLinear`` pair is removed (consumers read the
  float tensor directly),

which leaves the float network with the INT8 file's weights: float math gives the same numbers
on every CPU, up to the order of additions (~1e-6).

:func:`float_activation_file` does that once per source file and keeps the result in cvdemo's
cache (``<cache>/runtime/qdq``), keyed by the source's sha256 and :data:`RECIPE`.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cvdemo import runtime, weights
from cvdemo.files import atomic_write_bytes

if TYPE_CHECKING:
    import onnx

RECIPE = 1  # bump when dequantized() changes: files made by an older recipe are not reused
QUANTIZED_OPS = ("QuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger")
DERIVED_KEY = "cvdemo_derived_from"  # metadata entry naming the source file of a derived graph


class NotQuantized(ValueError):
    """The graph has no QDQ pairs or quantized weights to remove."""


def is_quantized(model: "onnx.ModelProto") -> bool:
    """Whether a graph holds quantized ops (QDQ pairs, or QLinear / Integer kernels)."""
    return any(node.op_type in QUANTIZED_OPS for node in model.graph.node)


@lru_cache(maxsize=16)
def is_quantized_file(path: Path) -> bool:
    """:func:`is_quantized` for a file; False for anything that is not a readable ONNX file."""
    if path.suffix != ".onnx":
        return False
    try:
        import onnx

        return is_quantized(onnx.load(str(path), load_external_data=False))
    except Exception:
        return False


def _dequantize_weight(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int) -> np.ndarray:
    """``(q - zero_point) * scale`` in float64, per tensor or per channel along ``axis``."""
    scale = scale.astype(np.float64)
    zero = np.zeros_like(scale) if zero_point is None else zero_point.astype(np.float64)
    if scale.ndim == 1 and q.ndim > 1:  # per channel: broadcast along the quantized axis
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (q.astype(np.float64) - zero) * scale


def dequantized(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """A float-activation copy of a QDQ graph: weights dequantized into FP32, activation QDQ pairs removed.

    Raises :class:`NotQuantized` when there is nothing to remove, and ``ValueError`` for
    quantized ops this edit cannot turn back (QLinearConv and friends: operator-oriented graphs).
    """
    import onnx
    from onnx import numpy_helper

    kernels = sorted({n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS[1:]})
    if kernels:
        raise ValueError(f"the graph uses quantized kernels ({', '.join(kernels)}), not QDQ pairs")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    initializers = {t.name: t for t in graph.initializer}
    producer = {name: node for node in graph.node for name in node.output}
    rename: dict[str, str] = {}  # DequantizeLinear output -> the float tensor it stands for
    folded: list["onnx.TensorProto"] = []
    removed: set[int] = set()
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        source = node.input[0]
        if source in initializers:  # a quantized weight or bias
            args = [numpy_helper.to_array(initializers[n]) if n else None for n in node.input[1:3]]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            value = _dequantize_weight(numpy_helper.to_array(initializers[source]), args[0], args[1] if len(args) > 1 else None, axis)
            folded.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
            removed.add(id(node))
        elif source in producer and producer[source].op_type == "QuantizeLinear":  # an activation's QDQ pair
            rename[node.output[0]] = producer[source].input[0]
            removed.add(id(node))
    if not removed:
        raise NotQuantized("the graph has no DequantizeLinear to remove")
    keep = [n for n in graph.node if id(n) not in removed]
    for node in keep:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
    for output in graph.output:  # a graph output that was a DequantizeLinear's: keep its name
        if output.name in rename:
            keep.append(onnx.helper.make_node("Identity", [rename[output.name]], [output.name]))
    # A QuantizeLinear whose every DequantizeLinear is gone now feeds nothing: drop it, and what only it used.
    used = {name for node in keep for name in node.input} | {o.name for o in graph.output}
    keep = [n for n in keep if n.op_type != "QuantizeLinear" or any(o in used for o in n.output)]
    used = {name for node in keep for name in node.input} | {o.name for o in graph.output}
    produced = {name for node in keep for name in node.output}
    kept_initializers = [t for t in graph.initializer if t.name in used] + [t for t in folded if t.name in used]
    value_info = [v for v in graph.value_info if v.name in produced]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(kept_initializers)
    del graph.value_info[:]
    graph.value_info.extend(value_info)
    if is_quantized(out):
        raise ValueError("quantized ops are left after the edit (a QuantizeLinear whose output is used directly)")
    onnx.checker.check_model(out)
    return out


def cache_folder() -> Path:
    """Where derived float graphs live: ``<cvdemo cache>/runtime/qdq``."""
    return runtime.cache_folder() / "qdq"


def float_activation_file(source: Path) -> Path:
    """The float-activation graph of the QDQ file ``source``, derived once and kept in the cache.

    Keyed by the source's sha256 and :data:`RECIPE`; written to a temp file and renamed, so a
    second process never reads half a file. The source's metadata (ultralytics reads class
    names, stride and input size from it) is kept, plus :data:`DERIVED_KEY` naming the source.
    """
    import onnx

    digest = weights.sha256_of(source)
    folder = cache_folder() / f"{runtime._safe(source.stem)}-{digest[:16]}-r{RECIPE}"
    path = folder / f"{source.stem}_float.onnx"
    if path.is_file():
        return path
    started = time.perf_counter()
    model = dequantized(onnx.load(str(source)))
    entry = model.metadata_props.add()
    entry.key, entry.value = DERIVED_KEY, json.dumps({"file": source.name, "sha256": digest, "recipe": RECIPE})
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, model.SerializeToString())
    runtime.log.info("derived %s from %s in %.1f s", path, source.name, time.perf_counter() - started)
    return path
