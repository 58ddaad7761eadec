"""The pretrained encoder: a timm backbone under smp's ``tu-`` name, filled with the registry's ImageNet weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cvdemo import backbones

if TYPE_CHECKING:  # heavy imports stay lazy: importing this module must not load torch
    import torch.nn as nn

def smp_encoder_name(encoder: str) -> str:
    """smp's name for a timm encoder: its timm-universal wrapper ``tu-<timm arch>``."""
    return "tu-" + backbones.BACKBONES[encoder].arch


def encoder_choices() -> dict[str, str]:
    """Encoders to offer: every backbone, labelled with whether its ImageNet weights are here."""
    ready = set(backbones.available_backbones())
    return {
        name: spec.label + ("" if name in ready else " — no ImageNet weights on this machine")
        for name, spec in backbones.BACKBONES.items()
    }


def load_encoder_weights(network: "nn.Module", encoder: str) -> list[str]:
    """Copy the registry's ImageNet weights of ``encoder`` into the network's encoder.

    The encoder is timm's ``features_only`` version of the classifier, which drops the head
    (e.g. conv_head/bn2/classifier for EfficientNet): those keys are the only ones allowed to be
    left over, every encoder tensor must be filled. Returns the dropped keys.
    Raises :class:`cvdemo.weights.WeightsUnavailable` when the weights are not on this machine.
    """
    source = backbones.create_backbone(encoder, pretrained=True).state_dict()
    target = network.encoder.model.state_dict()
    # timm's FeatureListNet flattens the first Sequential level: "stages.0.x" -> "stages_0.x".
    aliases: dict[str, str] = {}
    for key in source:
        aliases[key] = key
        parts = key.split(".")
        if len(parts) > 2:
            aliases.setdefault(f"{parts[0]}_{parts[1]}." + ".".join(parts[2:]), key)
    missing = [k for k in target if k not in aliases]
    if missing:
        raise ValueError(f"The {encoder} checkpoint does not cover its encoder (missing e.g. {missing[:3]}).")
    mapped = {k: source[aliases[k]] for k in target}
    wrong = [k for k in target if tuple(mapped[k].shape) != tuple(target[k].shape)]
    if wrong:
        raise ValueError(f"The {encoder} checkpoint has other shapes than its encoder (e.g. {wrong[:3]}).")
    network.encoder.model.load_state_dict(mapped, strict=True)
    used = {aliases[k] for k in target}
    return sorted(k for k in source if k not in used)
