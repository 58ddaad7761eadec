"""The training loop the trainable rungs share: AdamW with per-group learning rates, cosine decay,
label smoothing, one fresh augmented view of every image per epoch, held-out accuracy after each epoch.

What it trains is given as functions (inputs of epoch ``e``, the forward to train), so the same loop
trains a head on cached frozen features and the unfrozen stages on cached frozen-stage outputs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of one rung, for the live curves."""

    method: str
    epoch: int  # 1-based
    train_loss: float
    train_accuracy: float  # on this epoch's (augmented) training views
    test_accuracy: float  # on the held-out images after the epoch
    seconds: float  # since the rung started


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    batch_size: int = 16
    label_smoothing: float = 0.1
    seed: int = 0


def make_optimizer(param_groups: list[dict], weight_decay: float = 1e-4) -> "torch.optim.Optimizer":
    """AdamW over named parameter groups, each with its own learning rate."""
    import torch

    return torch.optim.AdamW(param_groups, weight_decay=weight_decay)


def fit(
    method: str,
    module: "torch.nn.Module",
    optimizer: "torch.optim.Optimizer",
    inputs_for_epoch: Callable[[int], "torch.Tensor"],
    forward: Callable[["torch.Tensor"], "torch.Tensor"],
    y: np.ndarray,
    test_inputs: "torch.Tensor",
    y_test: np.ndarray,
    settings: FitSettings,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    started: float | None = None,
) -> list[EpochRecord]:
    """Train ``module`` with ``optimizer`` for ``settings.epochs`` (cosine decay of every group's
    learning rate); returns the epochs that finished.

    ``inputs_for_epoch(e)`` gives the training inputs of epoch ``e`` (0-based; view ``e`` of each
    image), ``forward`` maps a batch of them to logits. ``y`` / ``y_test`` are class indices.
    Stopping (``should_stop()`` true) ends after the current batch and keeps what was learned.
    """
    import torch

    started = time.perf_counter() if started is None else started
    targets = torch.as_tensor(y, dtype=torch.long)
    steps_per_epoch = math.ceil(len(targets) / settings.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, settings.epochs * steps_per_epoch))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    generator = torch.Generator().manual_seed(settings.seed)
    history: list[EpochRecord] = []
    for epoch in range(settings.epochs):
        inputs = inputs_for_epoch(epoch)
        module.train()
        total_loss, correct, seen = 0.0, 0, 0
        for batch in torch.randperm(len(targets), generator=generator).split(settings.batch_size):
            if should_stop is not None and should_stop():
                module.eval()
                return history
            logits = forward(inputs[batch])
            loss = loss_fn(logits, targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(batch)
            correct += int((logits.argmax(1) == targets[batch]).sum())
            seen += len(batch)
        module.eval()
        record = EpochRecord(
            method,
            epoch + 1,
            total_loss / max(seen, 1),
            correct / max(seen, 1),
            float((predict(forward, test_inputs) == y_test).mean()) if len(y_test) else float("nan"),
            time.perf_counter() - started,
        )
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return history


def predict(forward: Callable[["torch.Tensor"], "torch.Tensor"], inputs: "torch.Tensor", batch_size: int = 64) -> np.ndarray:
    """Class indices for ``inputs`` (no gradients, in chunks)."""
    import torch

    if not len(inputs):
        return np.zeros(0, np.int64)
    with torch.no_grad():
        return torch.cat([forward(chunk).argmax(1) for chunk in inputs.split(batch_size)]).numpy()
