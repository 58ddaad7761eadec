"""Techniques by name: the spec of one technique and its knobs, applied to a pretrained model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from cvdemo.compression.errors import CompressionError, Progress
from cvdemo.compression.evalset import train_images
from cvdemo.compression.lowrank import low_rank
from cvdemo.compression.onnx_export import to_onnx_runtime
from cvdemo.compression.pretrained import backbone, backbone_onnx, input_size_of
from cvdemo.compression.prune import prune_structured, prune_unstructured
from cvdemo.compression.quantize import cast_weights, quantize_dynamic_int8, quantize_int8
from cvdemo.compression.distill import fine_tune_to_original
from cvdemo.compression.variant import Variant


TECHNIQUES: dict[str, str] = {
    "int8_static": "Quantization: INT8 static (ONNX Runtime)",
    "int8_dynamic": "Quantization: INT8 dynamic (PyTorch, Linear only)",
    "fp16": "Quantization: FP16 weights",
    "bf16": "Quantization: BF16 weights",
    "prune_unstructured": "Pruning: unstructured (magnitude)",
    "prune_structured": "Pruning: structured channels",
    "low_rank": "Low-rank: SVD factorisation",
}


@dataclass
class TechniqueSpec:
    """One technique to apply and its knobs (see :func:`make_variant`)."""

    technique: str
    knobs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return TECHNIQUES.get(self.technique, self.technique)


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
