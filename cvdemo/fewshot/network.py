"""The fine-tuning network: a pretrained timm backbone cut into stages, a new head, per-stage learning rates.

The lecture's ladder, in code: the backbone's stages (stem, block groups, head convolution) stay
frozen except the last ``unfrozen`` ones; a new :class:`ClassifierHead` sits on the pooled
features. :meth:`FineTuneNetwork.parameter_groups` gives the optimizer one group for the head at
the head's learning rate and one group per unfrozen stage at ``head LR / lr_factor``
(differential learning rates: pretrained weights need only small nudges).

BatchNorm layers keep ImageNet's statistics (the backbone always runs in eval mode): a batch of
a dozen photos is far too small to re-estimate them, and the frozen part must not change at all.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cvdemo.errors import CvdemoError

if TYPE_CHECKING:
    import torch
    import torch.nn as nn


class LadderError(CvdemoError, ValueError):
    """A ladder request that cannot run (bad data or settings); the message is shown as is."""


@dataclass
class Stage:
    """One unfreezable piece of a backbone: its modules (whose parameters it owns) and how it runs."""

    name: str
    modules: list["nn.Module"]
    forward: Callable[["torch.Tensor"], "torch.Tensor"]

    def parameters(self) -> list["torch.nn.Parameter"]:
        return [p for m in self.modules for p in m.parameters()]


def backbone_stages(model: "nn.Module") -> tuple[list[Stage], Callable[["torch.Tensor"], "torch.Tensor"]]:
    """The stages of a timm backbone (``num_classes=0``) in forward order, and the pooling after them.

    Running the stages one after another and then the returned tail gives ``model(x)``. The stages
    follow timm's coarse ``group_matcher`` (stem, each block group, the final convolution).
    """
    import torch.nn as nn

    kind = type(model).__name__

    def sequential(*modules: nn.Module) -> Stage:
        seq = nn.Sequential(*modules)
        return Stage("", list(modules), seq)

    def named(stage: Stage, name: str) -> Stage:
        stage.name = name
        return stage

    if kind == "EfficientNet":  # EfficientNet(-Lite), MobileNetV2
        stages = [named(sequential(model.conv_stem, model.bn1), "stem")]
        stages += [named(sequential(block), f"block group {i + 1}") for i, block in enumerate(model.blocks)]
        stages.append(named(sequential(model.conv_head, model.bn2), "head convolution"))
        return stages, lambda x: model.forward_head(x, pre_logits=True)
    if kind == "MobileNetV3":  # its 1x1 head convolution runs after the pooling
        stages = [named(sequential(model.conv_stem, model.bn1), "stem")]
        stages += [named(sequential(block), f"block group {i + 1}") for i, block in enumerate(model.blocks)]
        head_modules = [m for m in (model.conv_head, getattr(model, "norm_head", None)) if m is not None]
        stages.append(Stage("head convolution", head_modules, lambda x: model.forward_head(x, pre_logits=True)))
        return stages, lambda x: x
    if kind == "ResNet":
        stages = [named(sequential(model.conv1, model.bn1, model.act1, model.maxpool), "stem")]
        stages += [named(sequential(getattr(model, f"layer{i}")), f"layer {i}") for i in range(1, 5)]
        return stages, lambda x: model.forward_head(x, pre_logits=True)
    if kind == "ConvNeXt":
        stages = [named(sequential(model.stem), "stem")]
        stages += [named(sequential(stage), f"stage {i + 1}") for i, stage in enumerate(model.stages)]
        stages.append(
            Stage("final norm", [model.norm_pre, model.head], lambda x: model.forward_head(model.norm_pre(x), True))
        )
        return stages, lambda x: x
    raise LadderError(
        f"Partial unfreezing knows EfficientNet, MobileNet, ResNet and ConvNeXt backbones, not {kind}; "
        "use the other rungs of the ladder with this backbone."
    )


def count_parameters(params: Sequence[Any]) -> int:
    return int(sum(p.numel() for p in params))


def _head_module(dim: int, n_classes: int, hidden: int, dropout: float) -> "nn.Module":
    import torch.nn as nn

    if hidden:
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))
    return nn.Linear(dim, n_classes)


@functools.cache
def _head_class() -> type:
    import torch
    import torch.nn as nn

    class ClassifierHead(nn.Module):
        """L2-normalise, scale to unit variance per component (x sqrt(dim)), then linear or a small MLP."""

        def __init__(self, dim: int, n_classes: int, hidden: int = 0, dropout: float = 0.2) -> None:
            super().__init__()
            self.dim, self.n_classes, self.hidden = dim, n_classes, hidden
            self.scale = math.sqrt(dim)
            self.net = _head_module(dim, n_classes, hidden, dropout)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return self.net(nn.functional.normalize(features, dim=1) * self.scale)

    return ClassifierHead


def classifier_head(dim: int, n_classes: int, hidden: int = 0, dropout: float = 0.2) -> "nn.Module":
    """A new head: L2-normalise the pooled features, scale them to unit variance per component
    (x sqrt(dim)), then a linear layer (``hidden=0``) or a small MLP.

    The normalisation makes the head see exactly the vectors kNN and the linear probe use, so a
    probe's weights can start it (LP-FT) and cached frozen features can train it.
    """
    return _head_class()(dim, n_classes, hidden, dropout)


def head_from_linear_probe(probe: Any, dim: int) -> "nn.Module":
    """A linear :func:`classifier_head` with the weights of a scikit-learn logistic regression fitted
    on the same L2-normalised features (LP-FT's starting point): identical predictions."""
    import torch

    coef = np.asarray(probe.coef_, np.float64)
    intercept = np.asarray(probe.intercept_, np.float64)
    if coef.shape[0] == 1:  # binary: sigmoid(z) = softmax([-z/2, z/2])
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    head = classifier_head(dim, coef.shape[0])
    with torch.no_grad():
        head.net.weight.copy_(torch.as_tensor(coef / math.sqrt(dim), dtype=torch.float32))
        head.net.bias.copy_(torch.as_tensor(intercept, dtype=torch.float32))
    return head


@functools.cache
def _network_class() -> type:
    import torch
    import torch.nn as nn

    class FineTuneNetwork(nn.Module):
        """``backbone`` (a private copy) + ``head``; only the last ``unfrozen`` stages and the head train."""

        def __init__(self, backbone: nn.Module, head: nn.Module, unfrozen: int) -> None:
            super().__init__()
            self.backbone = backbone
            self.head = head
            stages, self._tail = backbone_stages(backbone)
            self._stages = stages  # plain list: the modules are registered under ``backbone``
            if not 0 <= unfrozen <= len(stages):
                raise LadderError(
                    f"Cannot unfreeze {unfrozen} stages: this backbone has {len(stages)} "
                    f"({', '.join(s.name for s in stages)}). Choose 0 to {len(stages)}."
                )
            self.unfrozen = unfrozen
            self.cut = len(stages) - unfrozen
            backbone.requires_grad_(False)
            for stage in stages[self.cut :]:
                for p in stage.parameters():
                    p.requires_grad_(True)
            head.requires_grad_(True)

        @property
        def stage_names(self) -> list[str]:
            return [s.name for s in self._stages]

        @property
        def unfrozen_stages(self) -> list[Stage]:
            return self._stages[self.cut :]

        def train(self, mode: bool = True) -> "FineTuneNetwork":
            super().train(mode)
            self.backbone.eval()  # BatchNorm keeps ImageNet's statistics; no dropout inside the backbone
            return self

        def frozen_part(self, x: torch.Tensor) -> torch.Tensor:
            """The frozen stages' output: computed without gradients (and cacheable: it never changes)."""
            with torch.no_grad():
                for stage in self._stages[: self.cut]:
                    x = stage.forward(x)
            return x

        def trainable_part(self, h: torch.Tensor) -> torch.Tensor:
            """Logits from the frozen part's output: the unfrozen stages, the pooling, the head."""
            for stage in self._stages[self.cut :]:
                h = stage.forward(h)
            return self.head(self._tail(h))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """Logits for a preprocessed batch: the timm backbone's own forward, then the head."""
            return self.head(self.backbone(x))

        def trainable_parameters(self) -> list[nn.Parameter]:
            return [p for p in self.parameters() if p.requires_grad]

        def parameter_groups(self, head_lr: float, lr_factor: float) -> list[dict]:
            """One optimizer group for the head (``head_lr``) and one per unfrozen stage (``head_lr / lr_factor``)."""
            if lr_factor < 1:
                raise LadderError(
                    f"The learning-rate factor must be at least 1 (the pretrained layers learn slower than the head); "
                    f"got {lr_factor:g}."
                )
            groups = [{"name": "new head", "params": list(self.head.parameters()), "lr": head_lr}]
            for stage in self.unfrozen_stages:
                params = stage.parameters()
                if params:
                    groups.append({"name": stage.name, "params": params, "lr": head_lr / lr_factor})
            return groups

    return FineTuneNetwork


def fine_tune_network(backbone: "nn.Module", head: "nn.Module", unfrozen: int) -> "nn.Module":
    """A :class:`FineTuneNetwork` around ``backbone`` (not copied: pass a private copy)."""
    return _network_class()(backbone, head, unfrozen)


def stage_count(model: "nn.Module") -> int:
    return len(backbone_stages(model)[0])
