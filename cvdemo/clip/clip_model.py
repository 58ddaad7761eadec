"""A real CLIP on **open_clip** (ViT-B-32 LAION-2B, MobileCLIP2-S0): weights through :mod:`cvdemo.weights`,
open_clip's own preprocessing and tokenizer, the image tower optionally in an exported runtime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from cvdemo import runtime, weights
from cvdemo.clip.embedding_engine import EmbeddingEngine

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ClipSpec:
    asset: str  # cvdemo.weights registry key
    arch: str  # open_clip model config name
    tag: str  # open_clip pretrained tag (for its preprocessing config)
    label: str


CLIP_MODELS: dict[str, ClipSpec] = {
    "clip": ClipSpec("clip", "ViT-B-32", "laion2b_s34b_b79k", "CLIP ViT-B/32 (LAION-2B, open_clip)"),
    "mobileclip_s0": ClipSpec("mobileclip_s0", "MobileCLIP2-S0", "dfndr2b", "MobileCLIP2-S0 (open_clip)"),
}


def _frozen_kwargs(kwargs: dict[str, Any] | None) -> str:
    return json.dumps(kwargs or {}, sort_keys=True)  # hashable, for the process-wide cache key


def _pretrained_open_clip(name: str, arch: str, model_kwargs: str = "{}") -> tuple[Any, Any]:
    """open_clip model and its image preprocessing, weights from the registry (eval mode)."""
    import open_clip

    spec = CLIP_MODELS[name]
    path = weights.resolve(spec.asset)
    # A file path gets open_clip's default preprocessing; take the tag's (MobileCLIP: mean 0, std 1).
    tag_cfg = open_clip.get_pretrained_cfg(arch, spec.tag) or {}
    model, _, preprocess = open_clip.create_model_and_transforms(
        arch,
        pretrained=str(path),
        image_mean=tag_cfg.get("mean"),
        image_std=tag_cfg.get("std"),
        image_interpolation=tag_cfg.get("interpolation"),
        image_resize_mode=tag_cfg.get("resize_mode"),
        **json.loads(model_kwargs),
    )
    if "MobileCLIP" in arch:
        from timm.utils import reparameterize_model  # fuse MobileOne branches for inference

        model = reparameterize_model(model)
    return model.eval().requires_grad_(False), preprocess


class ClipModel(EmbeddingEngine):
    """A real CLIP from open_clip: contrastively trained image and text towers.

    ``ClipModel("clip")`` loads ViT-B-32 LAION-2B from the weights registry (raises
    :class:`cvdemo.weights.WeightsUnavailable` when the file is missing). ``pretrained=False``
    builds the same architecture (or ``arch``) randomly initialised: the mechanics without the
    knowledge, used by the tests (``model_kwargs`` can shrink it further). ``accelerated`` runs
    the image tower through :func:`cvdemo.runtime.accelerate` (exported once, parity-checked).
    """

    is_clip = True
    default_threshold = 0.2

    def __init__(
        self,
        name: str = "clip",
        pretrained: bool = True,
        arch: str | None = None,
        cache_dir: Path | str | None | bool = None,
        model_kwargs: dict[str, Any] | None = None,
        accelerated: bool = True,
    ) -> None:
        super().__init__(cache_dir)
        import open_clip

        if name not in CLIP_MODELS:
            raise KeyError(f"Unknown CLIP model '{name}'. Known: {', '.join(CLIP_MODELS)}")
        spec = CLIP_MODELS[name]
        arch = arch or spec.arch
        if pretrained:
            from cvdemo import cache

            # One copy per process, shared by the PyTorch and the accelerated engine (the sidebar switch).
            model, preprocess = cache.shared(_pretrained_open_clip, name, arch, _frozen_kwargs(model_kwargs))
            self.name, self.label = spec.asset, spec.label
        else:
            # model_kwargs override config entries (e.g. a tiny text_cfg for quick experiments).
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, **(model_kwargs or {}))
            if "MobileCLIP" in arch:
                from timm.utils import reparameterize_model  # fuse MobileOne branches for inference

                model = reparameterize_model(model)
            self.name, self.label = f"{arch}-random-init", f"{arch} (random init, untrained)"
        self.model = model.eval()
        self._preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.arch = arch
        self.dim = self._probe_dim()  # towers differ in where the projection lives; ask the model
        # CLIP's learned temperature: logits = cos * exp(logit_scale).
        self.default_temperature = float(1.0 / model.logit_scale.exp().item())
        self.image_runner = self._accelerate_image_tower() if accelerated else None
        self.serve_key = name if pretrained and accelerated and arch == spec.arch and not model_kwargs else None

    def _accelerate_image_tower(self) -> runtime.AcceleratedModel:
        import torch

        class ImageTower(torch.nn.Module):  # encode_image as a module's forward, so it exports
            def __init__(self, clip_model: torch.nn.Module) -> None:
                super().__init__()
                self.clip_model = clip_model

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.clip_model.encode_image(x, normalize=True)

        parity = self.preprocess_batch(runtime.parity_images())
        return runtime.accelerate(ImageTower(self.model), parity[:1], name=f"{self.name}-image", parity_inputs=parity)

    @property
    def runtime_info(self) -> runtime.RuntimeInfo:
        """What runs the image tower, for the latency badge."""
        from cvdemo.serve.client import served_runtime

        info = self.image_runner.runtime_info if self.image_runner is not None else runtime.PYTORCH_RUNTIME
        return served_runtime(info, getattr(self, "serve_key", None))

    def _probe_dim(self) -> int:
        import torch

        with torch.inference_mode():
            return int(self.model.encode_text(self.tokenizer(["x"])).shape[-1])

    def preprocess(self, image: Image.Image) -> "torch.Tensor":
        return self._preprocess(image)

    def _forward(self, batch: "torch.Tensor") -> "torch.Tensor":
        return self.model.encode_image(batch)

    def _embed_batch(self, batch: "torch.Tensor") -> np.ndarray:
        if self.image_runner is not None:
            return self.image_runner(batch).float().numpy()
        return self.model.encode_image(batch, normalize=True).float().numpy()

    def has_words(self, text: str) -> bool:
        """CLIP's byte-level tokenizer reads emoji too (CLIP learned many from captions)."""
        return bool(str(text).strip())

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), 256):
                tokens = self.tokenizer(texts[start : start + 256])  # truncates to 77 tokens
                out.append(self.model.encode_text(tokens, normalize=True).float().numpy())
        return np.concatenate(out)
