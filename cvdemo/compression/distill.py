"""Distillation: a student trained on a teacher's softened outputs (and the labels), with fixed augmented views;
the same loop fine-tunes a compressed model towards its original.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from cvdemo.compression.errors import CompressionError, Progress


@dataclass
class DistillResult:
    student: nn.Module
    history: pd.DataFrame  # one row per epoch: loss, hard-label loss, soft-target loss, train accuracy
    temperature: float
    alpha: float


def augmented_views(images: torch.Tensor, views: int = 2, seed: int = 0) -> torch.Tensor:
    """``[views, N, C, H, W]``: the images, their mirror images, then random shifted crops (+ mirror).

    Made once from ``seed``, so a distilled and a hard-label student see exactly the same views
    and the teacher labels each view once instead of every epoch.
    """
    if views < 1:
        raise CompressionError(f"At least one view of each image is needed, not {views}.")
    out = [images]
    if views > 1:
        out.append(torch.flip(images, dims=[3]))
    generator = torch.Generator().manual_seed(seed + 7919)
    height, width = images.shape[-2:]
    pad = max(1, min(height, width) // 8)
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    for _ in range(2, views):
        dy = torch.randint(0, 2 * pad + 1, (len(images),), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (len(images),), generator=generator)
        flip = torch.rand(len(images), generator=generator) < 0.5
        crops = torch.stack([padded[k, :, dy[k] : dy[k] + height, dx[k] : dx[k] + width] for k in range(len(images))])
        crops[flip] = torch.flip(crops[flip], dims=[3])
        out.append(crops)
    return torch.stack(out)


def distill(
    teacher: nn.Module | Callable[[torch.Tensor], torch.Tensor] | None,
    student: nn.Module,
    dataset: tuple[torch.Tensor, torch.Tensor | None],
    temperature: float = 4.0,
    alpha: float = 0.5,
    epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
    views: int = 2,
    progress: Progress | None = None,
) -> DistillResult:
    """Train ``student`` on ``alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T)``.

    ``alpha = 1`` is ordinary training on hard labels (the baseline); ``alpha = 0`` only mimics
    the teacher, which needs no labels (used to fine-tune a pruned model towards the original).
    Each image comes in ``views`` fixed augmented versions (:func:`augmented_views`); the teacher
    labels every view once and each step picks one view per image. The student passed in is
    copied, so one initialisation can be trained twice.
    """
    images, labels = dataset
    if images is None or len(images) == 0:
        raise CompressionError("The training set is empty: distillation needs at least one image.")
    if temperature <= 0:
        raise CompressionError(f"Temperature must be positive, not {temperature}.")
    if not 0 <= alpha <= 1:
        raise CompressionError(f"Alpha mixes hard labels and soft targets, so it must be in [0, 1], not {alpha}.")
    if labels is None and alpha > 0:
        raise CompressionError("Hard-label training (alpha > 0) needs labels; this set has none.")
    if alpha < 1 and teacher is None:
        raise CompressionError("Soft targets (alpha < 1) need a teacher.")
    say = progress or (lambda fraction, text: None)
    bank = augmented_views(images, views, seed)
    soft_targets = None
    if alpha < 1:
        say(0.0, f"teacher labels {views} view(s) of {len(images)} images")
        soft_targets = torch.stack([_batched_logits(teacher, view) for view in bank])
    generator = torch.Generator().manual_seed(seed)
    student = copy.deepcopy(student)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(images) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1))
    rows = []
    for epoch in range(epochs):
        student.train()
        order = torch.randperm(len(images), generator=generator)
        totals = {"loss": 0.0, "hard-label loss": 0.0, "soft-target loss": 0.0}
        correct = 0
        for start in range(0, len(images), batch_size):
            idx = order[start : start + batch_size]
            view = torch.randint(0, len(bank), (len(idx),), generator=generator)
            logits = student(bank[view, idx])
            hard = logits.new_zeros(())
            if labels is not None and alpha > 0 and (labels[idx] >= 0).any():  # -1: unlabeled (soft target only)
                hard = F.cross_entropy(logits, labels[idx], ignore_index=-1)
            soft = logits.new_zeros(())
            if soft_targets is not None:
                soft = F.kl_div(
                    F.log_softmax(logits / temperature, dim=1),
                    F.log_softmax(soft_targets[view, idx] / temperature, dim=1),
                    log_target=True,
                    reduction="batchmean",
                ) * temperature**2
            loss = alpha * hard + (1 - alpha) * soft
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = len(idx)
            n_labeled = int((labels[idx] >= 0).sum()) if labels is not None else 0
            totals["loss"] += loss.item() * n
            totals["hard-label loss"] += hard.item() * n_labeled  # cross-entropy averages over labeled images
            totals["soft-target loss"] += soft.item() * n
            if labels is not None:
                correct += int((logits.argmax(1) == labels[idx]).sum())
        labeled = int((labels >= 0).sum()) if labels is not None else 0
        row = {
            "epoch": epoch + 1,
            "loss": totals["loss"] / len(images),
            "hard-label loss": totals["hard-label loss"] / labeled if labeled and alpha > 0 else float("nan"),
            "soft-target loss": totals["soft-target loss"] / len(images) if soft_targets is not None else float("nan"),
            "train accuracy": correct / labeled if labeled else float("nan"),
        }
        rows.append(row)
        say((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}: loss {row['loss']:.3f}")
    return DistillResult(student=student.eval(), history=pd.DataFrame(rows), temperature=temperature, alpha=alpha)


def _batched_logits(model: nn.Module | Callable, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    if isinstance(model, nn.Module):
        model.eval()
    with torch.inference_mode():
        return torch.cat([model(images[i : i + batch_size]).float() for i in range(0, len(images), batch_size)])


def fine_tune_to_original(
    original: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    compressed: nn.Module,
    images: torch.Tensor,
    epochs: int = 2,
    lr: float = 1e-3,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> nn.Module:
    """A short recovery fine-tune: the compressed model learns the original's soft outputs.

    No labels needed (alpha = 0, T = 2): the original teaches its own compressed copy, on any
    unlabeled images. BatchNorm statistics are re-estimated along the way. ``original`` may be
    any callable giving logits (e.g. the original's ONNX Runtime ``predict``, which is faster).
    """
    result = distill(original, compressed, (images, None), temperature=2.0, alpha=0.0, epochs=epochs, lr=lr,
                     batch_size=batch_size, views=2, progress=progress)
    return result.student
