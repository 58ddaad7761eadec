"""Distillation on the CIFAR-10 subset: the split, the teacher, and two students from one initialisation."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

from cvdemo.compression.distill import DistillResult, distill
from cvdemo.compression.errors import CompressionError, Progress
from cvdemo.compression.evalset import EvalSet
from cvdemo.compression.pretrained import backbone
from cvdemo.compression.students import FeatureTeacher, make_student, train_feature_teacher
from cvdemo.compression.variant import RUNTIME_TORCH, Variant


@dataclass
class CifarSplit:
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test: EvalSet
    classes: list[str]


def cifar_split(train_per_class: int = 30) -> CifarSplit:
    """The 10 x 50 CIFAR-10 subset: the first ``train_per_class`` images of each class train, the rest test.

    Images stay 32 x 32, normalised to [-1, 1] (EfficientNet-Lite0's mean = std = 0.5).
    """
    from torchvision import transforms

    from cvdemo.datasets import dataset_path, image_folder
    from cvdemo.images import load_image

    pairs = image_folder(dataset_path("cifar10_test_50pc"))
    classes = sorted({label for _, label in pairs})
    per_class: dict[str, int] = {}
    if not 1 <= train_per_class < min(sum(1 for _, l in pairs if l == c) for c in classes):
        raise CompressionError(f"Training images per class must leave some for testing: 1 to 49, not {train_per_class}.")
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    train_x, train_y, test_x, test_y, names = [], [], [], [], []
    for path, label in pairs:
        seen = per_class.get(label, 0)
        per_class[label] = seen + 1
        tensor = tf(load_image(path))
        if seen < train_per_class:
            train_x.append(tensor)
            train_y.append(classes.index(label))
        else:
            test_x.append(tensor)
            test_y.append(classes.index(label))
            names.append(f"{label}/{path.name}")
    test = EvalSet(torch.stack(test_x), torch.tensor(test_y), names, f"CIFAR-10 subset test ({len(test_x)} images)",
                   dict(enumerate(classes)))
    return CifarSplit(torch.stack(train_x), torch.tensor(train_y), test, classes)


def labeled_mask(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """True for the first ``per_class`` images of each class: the only ones whose labels are used."""
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique():
        mask[(labels == c).nonzero()[:per_class, 0]] = True
    return mask


def cifar_teacher(labeled_per_class: int = 10, size: int = 160) -> FeatureTeacher:
    """EfficientNet-Lite0 features (frozen, images upsampled to ``size``) + a linear head fitted on
    the labeled training images only."""
    from cvdemo import cache

    split = cache.shared(cifar_split)  # the page's split too: the 500 images are read once per process
    mask = labeled_mask(split.train_labels, labeled_per_class)
    features = copy.deepcopy(backbone("efficientnet_lite0"))
    features.reset_classifier(0)
    torch.manual_seed(0)
    return train_feature_teacher(features, split.train_images[mask], split.train_labels[mask], len(split.classes), size=size)


@dataclass
class DistillationOutcome:
    teacher: nn.Module
    distilled: DistillResult
    hard_only: DistillResult
    split: CifarSplit
    labeled: int  # training images with a label
    transfer: int  # training images the distilled student saw (labeled + unlabeled ones the teacher labels)

    def variants(self) -> tuple[Variant, list[Variant]]:
        """The teacher as the reference and both students, ready for :func:`compare`."""
        teacher = Variant("Teacher: EfficientNet-Lite0 features + linear head", "teacher", RUNTIME_TORCH, "FP32",
                          self.teacher)
        kd = Variant(f"Student, distilled (T={self.distilled.temperature:g}, alpha={self.distilled.alpha:g})",
                     "distill", RUNTIME_TORCH, "FP32", self.distilled.student)
        hard = Variant("Student, hard labels only", "hard_labels", RUNTIME_TORCH, "FP32", self.hard_only.student)
        return teacher, [kd, hard]


def run_distillation(
    teacher: nn.Module,
    split: CifarSplit,
    student_kind: str = "tiny_cnn",
    temperature: float = 4.0,
    alpha: float = 0.5,
    epochs: int = 30,
    labeled_per_class: int = 10,
    transfer: bool = True,
    seed: int = 0,
    views: int = 4,
    progress: Progress | None = None,
) -> DistillationOutcome:
    """Train the same student initialisation twice: with the teacher's soft targets and on hard labels only.

    Only ``labeled_per_class`` training images per class keep their label. With ``transfer`` the
    distilled student also learns from the other training images, which only the teacher labels
    (Hinton's "transfer set"); the hard-label student can only use the labeled ones.
    """
    say = progress or (lambda fraction, text: None)
    mask = labeled_mask(split.train_labels, labeled_per_class)
    partial = torch.where(mask, split.train_labels, torch.full_like(split.train_labels, -1))
    kd_set = (split.train_images, partial) if transfer else (split.train_images[mask], split.train_labels[mask])
    student = make_student(student_kind, len(split.classes), seed=seed)
    distilled = distill(teacher, student, kd_set, temperature, alpha, epochs, seed=seed, views=views,
                        progress=lambda f, t: say(0.6 * f, f"distilling: {t}"))
    hard = distill(None, student, (split.train_images[mask], split.train_labels[mask]), temperature, 1.0, epochs,
                   seed=seed, views=views, progress=lambda f, t: say(0.6 + 0.4 * f, f"hard labels only: {t}"))
    return DistillationOutcome(teacher, distilled, hard, split, int(mask.sum()), len(kd_set[0]))
