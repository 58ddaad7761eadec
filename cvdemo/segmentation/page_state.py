"""What the Segmentation page keeps in a browser session between reruns, as typed records (not string-keyed dicts).

:class:`RunRecord` is one finished training run in the page's "Your runs" table (and a faint curve
beside the next run).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cvdemo.run_store import stored_when

if TYPE_CHECKING:
    from cvdemo.segmentation.training import Trainer


@dataclass(frozen=True)
class RunRecord:
    """One finished run of this session, as the comparison table shows it."""

    number: int
    architecture: str
    encoder: str
    encoder_weights: str  # "ImageNet" or "random"
    epochs: str  # "frozen + fine-tune"
    size_px: int
    held_out_images: int
    foreground_iou: float
    miou: float
    train_seconds: float
    stored_at: float | None  # when a stored run was trained; None: trained live in this session
    # Not id(trainer): a later trainer can get the address of a freed one, and the page would take
    # it for this run (not recorded, its curve hidden). A weak reference does not keep the model alive.
    trainer: "weakref.ReferenceType[Trainer]"
    run_key: str | None
    curve_epochs: list[int] = field(default_factory=list)
    curve_foreground_iou: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, trainer: "Trainer", number: int) -> "RunRecord":
        last = trainer.history[-1]
        cfg = trainer.model.config
        frozen = sum(r.stage == "frozen encoder" for r in trainer.history)
        return cls(
            number=number,
            architecture=cfg.architecture,
            encoder=cfg.encoder,
            encoder_weights="ImageNet" if cfg.pretrained_encoder else "random",
            epochs=f"{frozen} + {len(trainer.history) - frozen}",
            size_px=cfg.img_size,
            held_out_images=len(trainer.val_samples),
            foreground_iou=round(last.val_foreground_iou, 3),
            miou=round(last.val_miou, 3),
            train_seconds=round(trainer.seconds, 1),
            stored_at=trainer.stored_at,
            trainer=weakref.ref(trainer),
            run_key=trainer.run_key,
            curve_epochs=[r.epoch for r in trainer.history],
            curve_foreground_iou=[r.val_foreground_iou for r in trainer.history],
        )

    @property
    def stored(self) -> bool:
        return self.stored_at is not None

    @property
    def trained(self) -> str:
        """The table's "trained" column: "live" or "stored, <when>"."""
        return "live" if self.stored_at is None else f"stored, {stored_when(self.stored_at)}"

    def is_of(self, trainer: "Trainer") -> bool:
        """Whether this is ``trainer``'s run."""
        return self.trainer() is trainer

    def row(self) -> dict[str, Any]:
        """The table row, with the column names the page shows."""
        return {
            "run": self.number,
            "architecture": self.architecture,
            "encoder": self.encoder,
            "encoder weights": self.encoder_weights,
            "epochs (frozen + fine-tune)": self.epochs,
            "size px": self.size_px,
            "held-out images": self.held_out_images,
            "held-out foreground IoU": self.foreground_iou,
            "held-out mIoU": self.miou,
            "train seconds": self.train_seconds,
            "trained": self.trained,
        }


def record_run(runs: list[RunRecord], trainer: "Trainer") -> bool:
    """Append ``trainer``'s finished run once; False when there is nothing new to record."""
    if not trainer.history or any(r.is_of(trainer) for r in runs):
        return False
    if trainer.stored_at is not None and any(r.run_key == trainer.run_key and r.stored for r in runs):
        return False  # the same stored run shown again (settings changed and changed back)
    runs.append(RunRecord.of(trainer, len(runs) + 1))
    return True
