"""The trainable model: its config, the smp network it builds, and save/load as safetensors (never pickle).

The config (JSON) travels inside the safetensors file's metadata, so a downloaded model loads on its own.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cvdemo.model_files import ModelFileError, looks_like_pickle
from cvdemo import backbones
from cvdemo.segmentation.dataset import MAX_CLASSES, SAMPLE_CLASSES, SAMPLE_DATASET
from cvdemo.segmentation.encoders import load_encoder_weights, smp_encoder_name
from cvdemo.segmentation.segmenter import Segmenter, labels_at_size

if TYPE_CHECKING:  # heavy imports stay lazy: importing this module must not load torch
    import torch
    import torch.nn as nn

FORMAT_KEY = "cvdemo_segmentation"  # safetensors metadata key holding the model config JSON

ARCHITECTURES: dict[str, str] = {
    "Unet": "U-Net (skip connections at every scale)",
    "FPN": "FPN (feature pyramid, light decoder)",
    "DeepLabV3Plus": "DeepLabV3+ (atrous pyramid + light skip)",
}




@dataclass
class ModelConfig:
    """Everything needed to rebuild a trained model (saved as JSON inside the safetensors file)."""

    architecture: str = "Unet"  # key of ARCHITECTURES
    encoder: str = "efficientnet_lite0"  # key of cvdemo.backbones.BACKBONES
    class_names: list[str] = field(default_factory=lambda: list(SAMPLE_CLASSES[SAMPLE_DATASET]))
    img_size: int = 160
    pretrained_encoder: bool = True
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    metrics: dict[str, float] = field(default_factory=dict)  # held-out results, for the record

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            data = json.loads(text)
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            config = cls(**known)
        except Exception as exc:
            raise ModelFileError(f"The model's config is not valid JSON for this app: {exc}") from None
        if config.architecture not in ARCHITECTURES:
            raise ModelFileError(f"Unknown architecture '{config.architecture}' (known: {', '.join(ARCHITECTURES)}).")
        if config.encoder not in backbones.BACKBONES:
            raise ModelFileError(f"Unknown encoder '{config.encoder}' (known: {', '.join(backbones.BACKBONES)}).")
        names = config.class_names
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not 2 <= len(names) <= MAX_CLASSES:
            raise ModelFileError(f"The model's config must name between 2 and {MAX_CLASSES} classes.")
        if not isinstance(config.img_size, int) or config.img_size % 32 or not 32 <= config.img_size <= 1024:
            raise ModelFileError("The model's input size must be a multiple of 32 between 32 and 1024 pixels.")
        if len(config.mean) != 3 or len(config.std) != 3 or not all(float(v) > 0 for v in config.std):
            raise ModelFileError("The model's config needs 3 mean and 3 positive std values.")
        return config


def build_network(config: ModelConfig) -> "nn.Module":
    """A randomly initialised smp network for ``config`` (weights are loaded separately)."""
    import segmentation_models_pytorch as smp

    cls = getattr(smp, config.architecture)
    return cls(
        encoder_name=smp_encoder_name(config.encoder),
        encoder_weights=None,  # smp would download; ours come from the registry
        classes=len(config.class_names),
    )


class SegModel(Segmenter):
    """A trainable smp network with its config: predict, save and load."""

    def __init__(self, config: ModelConfig, network: "nn.Module | None" = None):
        """A new network for ``config`` (ImageNet encoder when ``pretrained_encoder``), or wrap ``network``."""
        import torch

        self.config = config
        self.class_names = list(config.class_names)
        self.background = 0 if self.class_names[0].lower() in ("background", "bg", "_background_") else None
        self.title = f"{config.architecture} + {config.encoder}"
        self.dropped_keys: list[str] = []
        if network is None:
            import timm

            network = build_network(config)
            if config.pretrained_encoder:
                self.dropped_keys = load_encoder_weights(network, config.encoder)
            # timm's normalisation for this encoder's ImageNet weights (EfficientNet-Lite0: mean=std=0.5);
            # a random encoder gets the same, so both differ only in their starting weights.
            cfg = timm.models.get_pretrained_cfg(backbones.BACKBONES[config.encoder].arch)
            config.mean, config.std = list(cfg.mean), list(cfg.std)
        self.network = network.to(memory_format=torch.channels_last).eval()

    def normalize(self, batch: "torch.Tensor") -> "torch.Tensor":
        """uint8 NCHW -> normalised float, channels_last (faster convolutions on CPU)."""
        import torch

        mean = torch.tensor(self.config.mean).view(1, 3, 1, 1) * 255
        std = torch.tensor(self.config.std).view(1, 3, 1, 1) * 255
        return ((batch.float() - mean) / std).contiguous(memory_format=torch.channels_last)

    def logits(self, image: Image.Image) -> "torch.Tensor":
        """Class scores (1, C, img_size, img_size): the network sees every photo at its training size."""
        import torch

        size = self.config.img_size
        small = image.convert("RGB").resize((size, size), Image.BILINEAR, reducing_gap=2.0)
        batch = torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1)[None]
        with torch.inference_mode():
            return self.network.eval()(self.normalize(batch))

    def predict(self, image: Image.Image) -> np.ndarray:
        """Class index per pixel, at the photo's own size."""
        import torch

        with torch.inference_mode():
            return labels_at_size(self.logits(image), image.width, image.height)

    # -- save / load: safetensors with the config as metadata ----------------------------------

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        state = {k: v.detach().contiguous() for k, v in self.network.state_dict().items()}
        return save(state, metadata={FORMAT_KEY: self.config.to_json()})

    @classmethod
    def from_bytes(cls, data: bytes, config_json: str | None = None, name: str = "the file") -> "SegModel":
        """Load a model saved by :meth:`to_bytes` (safetensors only: a pickle is refused unread)."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        if not data:
            raise ModelFileError(f"{name} is empty (0 bytes).")
        if looks_like_pickle(data):
            raise ModelFileError(
                f"{name} looks like a PyTorch pickle (.pt/.pth). Pickles can run code, so only .safetensors "
                "model files are accepted here."
            )
        try:
            header_len = int.from_bytes(data[:8], "little")
            header = json.loads(data[8 : 8 + header_len])
            if not isinstance(header, dict):
                raise ValueError("header is not a JSON object")
            state = load(data)
        except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError, MemoryError):
            raise ModelFileError(f"{name} is not a valid .safetensors file.") from None
        meta = (header.get("__metadata__") or {}).get(FORMAT_KEY)
        text = config_json or meta
        if text is None:
            raise ModelFileError(
                f"{name} has no cvdemo segmentation config in its metadata; upload the JSON config saved with it."
            )
        config = ModelConfig.from_json(text)
        network = build_network(config)
        try:
            # strict: smp's non-strict loading would silently drop tensors of another shape
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            detail = str(exc).split("\n\t", 1)[-1][:160]
            raise ModelFileError(
                f"{name} does not match a {config.architecture} with a {config.encoder} encoder and "
                f"{len(config.class_names)} classes ({detail})."
            ) from None
        return cls(config, network)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.to_bytes())
        path.with_suffix(".json").write_text(self.config.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SegModel":
        path = Path(path)
        config = path.with_suffix(".json")
        return cls.from_bytes(path.read_bytes(), config.read_text() if config.is_file() else None, path.name)
