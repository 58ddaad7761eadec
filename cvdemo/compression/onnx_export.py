"""The same network in ONNX Runtime (the runtime's effect, no compression) and the graph's shape-computing nodes.

The exporter and the session settings live in :mod:`cvdemo.runtime`.
"""

from __future__ import annotations

import torch.nn as nn

from cvdemo.runtime import export_onnx
from cvdemo.compression.variant import RUNTIME_ORT, Variant


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
