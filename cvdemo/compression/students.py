"""Students and teachers for distillation: a tiny CNN or an untrained MobileNetV3, and a frozen-feature teacher."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvdemo.compression.errors import CompressionError, Progress


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
