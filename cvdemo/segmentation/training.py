"""Two-stage transfer learning on the CPU: decoder with the encoder frozen, then a gentle fine-tune.

Augmentations come from ``torchvision.transforms.v2``; the :class:`Trainer` runs epoch by epoch,
in the caller's thread or a background one the page polls, and can be stopped.
"""

from __future__ import annotations

import math
import time
from functools import cached_property
from dataclasses import dataclass, replace
from contextlib import nullcontext
from typing import TYPE_CHECKING, Callable, ContextManager, Sequence

import numpy as np
from PIL import Image

from cvdemo.jobs import BackgroundJob
from cvdemo.segmentation.dataset import (
    IGNORE_INDEX,
    SAMPLE_DATASET,
    SegDataError,
    SegDataset,
    SegSample,
    load_sample,
    split,
)
from cvdemo.segmentation.metrics import SegMetrics, confusion, evaluate
from cvdemo.segmentation.model import ModelConfig, SegModel

if TYPE_CHECKING:  # heavy imports stay lazy: importing this module must not load torch
    import torch

@dataclass
class TrainConfig:
    """The two-stage transfer-learning recipe. Without a pretrained encoder nothing is frozen."""

    frozen_epochs: int = 3  # stage 1: encoder frozen, decoder learns at ``lr``
    finetune_epochs: int = 5  # stage 2: everything learns, encoder at ``lr * encoder_lr_factor``
    lr: float = 3e-3
    encoder_lr_factor: float = 0.1  # differential learning rate for the pretrained encoder
    batch_size: int = 8
    augment: bool = True
    seed: int = 0

    @property
    def epochs(self) -> int:
        return self.frozen_epochs + self.finetune_epochs

    def effective(self, pretrained_encoder: bool) -> "TrainConfig":
        """The recipe as trained: a random encoder has nothing worth freezing, so all layers learn at
        the full rate for the same number of epochs."""
        if pretrained_encoder:
            return self
        return replace(self, frozen_epochs=0, encoder_lr_factor=1.0, finetune_epochs=self.epochs)


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    stage: str  # "frozen encoder" | "fine-tune" | "all layers"
    train_loss: float
    val_miou: float
    val_foreground_iou: float
    seconds: float


def augmentation(size: int, augment: bool):
    """Joint image+mask transforms (torchvision v2 keeps masks nearest-neighbour)."""
    from torchvision.transforms import v2

    if not augment:
        return None
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.5, 1.0), ratio=(0.75, 1.333), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
        ]
    )


def _as_tensors(samples: Sequence[SegSample], size: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Images (uint8 NCHW) and masks (int64 NHW) resized once to ``size`` x ``size``."""
    import torch

    images = np.stack(
        [np.asarray(s.image.resize((size, size), Image.BILINEAR, reducing_gap=2.0)) for s in samples]
    )
    masks = np.stack([np.asarray(Image.fromarray(s.mask).resize((size, size), Image.NEAREST)) for s in samples])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(masks.astype(np.int64))


class Trainer(BackgroundJob):
    """Trains a :class:`SegModel` epoch by epoch; stoppable, observable from another thread.

    A :class:`~cvdemo.jobs.BackgroundJob`: ``run()`` trains in the calling thread; ``start()`` trains
    in a background thread (the page polls ``history`` / ``progress`` / ``phase`` while the student
    watches the curves). ``on_finish`` (if set) is called with the trainer after the last epoch.
    """

    thread_name = "cvdemo-seg-train"

    def __init__(
        self,
        model: SegModel,
        train: Sequence[SegSample],
        val: Sequence[SegSample],
        config: TrainConfig | None = None,
    ):
        if not train:
            raise SegDataError("There are no training images.")
        super().__init__()
        self.model = model
        self.train_samples = list(train)
        self.val_samples = list(val)
        self.config = (config or TrainConfig()).effective(model.config.pretrained_encoder)
        self.label = ""  # what it trains on, for people
        self.history: list[EpochRecord] = []
        self.metrics: SegMetrics | None = None  # final held-out metrics
        self.on_finish: Callable[["Trainer"], None] | None = None
        self.run_key: str | None = None  # its key in the run store, when it is one of the stored runs
        self.stored_at: float | None = None  # set on a run replayed from the store: when it was trained
        # Held around every batch and the evaluation when set: a background run that must yield the
        # cores to the pages between batches (the warm start passes the inference gate's ``hold``).
        self.batch_gate: Callable[[], ContextManager[None]] | None = None
        self._on_epoch: Callable[[EpochRecord], None] | None = None
        self._on_batch: Callable[[float], None] | None = None
        self._epoch_done = 0
        self._optimizer = None
        self._scheduler = None
        self._loss = None
        import torch

        self._generator = torch.Generator().manual_seed(self.config.seed)
        torch.manual_seed(self.config.seed)
        self._images, self._masks = _as_tensors(self.train_samples, model.config.img_size)
        self._augment = augmentation(model.config.img_size, self.config.augment)

    @property
    def total_epochs(self) -> int:
        return self.config.epochs

    @cached_property
    def held_out_views(self) -> list[tuple[SegSample, np.ndarray, float]]:
        """``(sample, predicted mask, foreground IoU)`` per held-out image, computed once per finished run
        (at training size: cheap); kept on the trainer, so a new run never sees an older run's views."""
        n = len(self.model.class_names)
        views = []
        for sample in self.val_samples:
            pred = self.model.predict(sample.image)
            views.append((sample, pred, SegMetrics(self.model.class_names, confusion(pred, sample.mask, n)).foreground_iou))
        return views

    # -- training -----------------------------------------------------------------------------

    def _stage(self, epoch: int) -> str:
        if not self.model.config.pretrained_encoder:
            return "all layers"
        return "frozen encoder" if epoch < self.config.frozen_epochs else "fine-tune"

    def _set_stage(self, stage: str) -> None:
        """Freeze or unfreeze the encoder and make the optimizer for this stage."""
        import torch
        from segmentation_models_pytorch.losses import DiceLoss

        net = self.model.network
        frozen = stage == "frozen encoder"
        # smp's own switch: no gradients for the encoder and its BatchNorm statistics stay ImageNet's.
        if frozen:
            net.freeze_encoder()
        else:
            net.unfreeze_encoder()
        head = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
        groups = [{"params": head, "lr": self.config.lr}]
        if not frozen:
            groups.append({"params": list(net.encoder.parameters()), "lr": self.config.lr * self.config.encoder_lr_factor})
        self._optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
        stage_epochs = self.config.frozen_epochs if frozen else self.config.epochs - self.config.frozen_epochs
        steps = max(1, stage_epochs * math.ceil(len(self.train_samples) / self.config.batch_size))
        # Cosine decay within each stage: the fine-tune starts gently on the encoder and settles.
        self._scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self._optimizer, T_max=steps, eta_min=0.0)
        ce = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        dice = DiceLoss("multiclass", ignore_index=IGNORE_INDEX)
        self._loss = lambda out, y: ce(out, y) + dice(out, y)

    def _gate(self) -> ContextManager[None]:
        return self.batch_gate() if self.batch_gate is not None else nullcontext()

    def _batches(self) -> list["torch.Tensor"]:
        import torch

        order = torch.randperm(len(self.train_samples), generator=self._generator)
        batches = list(order.split(self.config.batch_size))
        # BatchNorm after global pooling (DeepLabV3+'s ASPP) cannot train on one sample: pair it with itself
        # (augmentation makes the two copies differ).
        return [b.repeat(2) if len(b) == 1 else b for b in batches]

    def run_epoch(self, on_batch: Callable[[float], None] | None = None) -> EpochRecord | None:
        """Train one epoch, then evaluate on the held-out images. None when stopped before the end."""
        import torch
        from torchvision import tv_tensors

        epoch = self._epoch_done
        if epoch >= self.total_epochs:
            return None
        stage = self._stage(epoch)
        self.phase = f"epoch {epoch + 1} of {self.total_epochs} · {stage}"
        if epoch == 0 or stage != self._stage(epoch - 1):
            self._set_stage(stage)
        net = self.model.network
        net.train()  # smp's train() leaves a frozen encoder's BatchNorm in eval mode
        started = time.perf_counter()
        losses: list[float] = []
        batches = self._batches()
        per_epoch = len(batches)
        for b, idx in enumerate(batches):
            if self.stopping:
                return None
            with self._gate():
                images, masks = self._images[idx], self._masks[idx]
                if self._augment is not None:
                    pairs = [self._augment(tv_tensors.Image(i), tv_tensors.Mask(m)) for i, m in zip(images, masks)]
                    images = torch.stack([p[0] for p in pairs])
                    masks = torch.stack([p[1] for p in pairs])
                out = net(self.model.normalize(images))
                loss = self._loss(out, masks)
                self._optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._optimizer.step()
                self._scheduler.step()
            losses.append(loss.detach().item())
            self.progress = (epoch * per_epoch + b + 1) / (self.total_epochs * per_epoch)
            if on_batch is not None:
                on_batch(self.progress)
        net.eval()
        with self._gate():
            metrics = evaluate(self.model, self.val_samples) if self.val_samples else None
        self.metrics = metrics
        record = EpochRecord(
            epoch=epoch + 1,
            stage=stage,
            train_loss=float(np.mean(losses)),
            val_miou=metrics.miou if metrics else float("nan"),
            val_foreground_iou=metrics.foreground_iou if metrics else float("nan"),
            seconds=time.perf_counter() - started,
        )
        self.history.append(record)
        self._epoch_done += 1
        return record

    def run(
        self,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        on_batch: Callable[[float], None] | None = None,
    ) -> list[EpochRecord]:
        """Train every remaining epoch (or until :meth:`stop`) in this thread; returns the history."""
        self._on_epoch, self._on_batch = on_epoch, on_batch
        super().run()
        return self.history

    def _work(self) -> None:
        while self._epoch_done < self.total_epochs and not self.stopping:
            record = self.run_epoch(self._on_batch)
            if record is not None and self._on_epoch is not None:
                self._on_epoch(record)
        self.model.network.eval()
        if self.metrics is not None:
            self.model.config.metrics = {
                "val_miou": round(self.metrics.miou, 4),
                "val_foreground_iou": round(self.metrics.foreground_iou, 4),
                "epochs": float(self._epoch_done),
            }
        if self._epoch_done == self.total_epochs and self.on_finish is not None:
            self.seconds = self.elapsed  # what the stored run reports as its training time
            self.on_finish(self)


def train_model(
    dataset: SegDataset,
    n_val: int = 6,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> tuple[SegModel, Trainer]:
    """Split, build and train in one call (used by the tests, the Gradio demo and the bench)."""
    train_config = train_config or TrainConfig()
    model_config = replace(model_config or ModelConfig(), class_names=list(dataset.class_names))
    train, val = split(dataset.samples, n_val, seed=train_config.seed)
    import torch

    torch.manual_seed(train_config.seed)  # same decoder initialisation for every run with this seed
    model = SegModel(model_config)
    trainer = Trainer(model, train, val, train_config)
    trainer.run(on_epoch=on_epoch)
    return model, trainer


SAMPLE_HELD_OUT = 6  # sample images the server's model never trains on (6 of the 26 pets)


def sample_model(dataset_name: str = SAMPLE_DATASET, architecture: str = "Unet") -> SegModel:
    """The U-Net that the demos use when nobody trained one: fine-tuned on the sample pets, once per server.

    Use it through ``cvdemo.cache.shared(sample_model)`` / ``ui.shared(sample_model)``. The run is kept
    in the run store (:mod:`cvdemo.segmentation.runs`): after a restart it loads instead of training.
    """
    from cvdemo.segmentation import runs

    model = runs.get_or_train(load_sample(dataset_name), SAMPLE_HELD_OUT, ModelConfig(architecture=architecture),
                              TrainConfig()).model
    model.title = f"{architecture} fine-tuned on {dataset_name} (this server)"
    return model


def sample_held_out(samples: Sequence[SegSample]) -> list[SegSample]:
    """The samples :func:`sample_model` holds out (never trains on): the same split with the same seed.

    The page and the demo use it to say which pets give an honest look at the server's model.
    """
    return split(samples, SAMPLE_HELD_OUT, seed=TrainConfig().seed)[1]
