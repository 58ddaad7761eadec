"""The ImageNet models the page offers: which are here, each built and exported to ONNX once per process."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from cvdemo.runtime import export_onnx
from cvdemo.compression.lowrank import factorisable_layers_of


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


def factorisable_layers(name: str) -> list[str]:
    return factorisable_layers_of(backbone(name))
