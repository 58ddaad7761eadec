"""The layers the techniques work on: a model's Conv2d and Linear layers, by name."""

from __future__ import annotations

import torch.nn as nn


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every Conv2d and Linear layer, in the model's order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

