"""The frozen feature extractor: images -> L2-normalised vectors.

A timm backbone (one stage's feature map, global-average pooled, or the model's pooled head),
optionally behind an exported runtime, or another page's image tower (anything with
``encode_images``); and which backbones this machine can offer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from cvdemo import networks, results, runtime, weights
from cvdemo.backbones import BACKBONES, create_frozen
from cvdemo.vectors import l2_normalize
from cvdemo.images import fingerprint, load_image
from cvdemo.scheduler import compute_gate

if TYPE_CHECKING:
    import torch

Progress = Callable[[int, int], None]  # (done, total)

DEFAULT_BACKBONE = "efficientnet_lite0"
# Image towers of other pages that FeatureExtractor can wrap (registry names of cvdemo.weights).
ENCODER_BACKBONES: dict[str, str] = {
    "clip": "CLIP ViT-B/32 image tower",
    "mobileclip_s0": "MobileCLIP-S0 image tower",
}


@runtime_checkable
class ImageEncoder(Protocol):
    """What :class:`FeatureExtractor` needs from a non-timm model (e.g. ``cvdemo.clip.ClipModel``).

    ``encode_images(images, batch_size=..., progress=...)`` returns an ``(N, D)`` array or tensor,
    one row per PIL image (normalised or not: the extractor L2-normalises it again). ``name``
    (optional, else the class name) goes into cache keys, so it must differ between models.
    ``FeatureExtractor("clip")`` builds ``cvdemo.clip.ClipModel("clip")`` itself.
    """

    name: str

    def encode_images(
        self, images: Sequence[Image.Image], batch_size: int = 32, progress: Progress | None = None
    ) -> Any: ...


@dataclass(frozen=True)
class LayerInfo:
    """One choice of feature layer: ``index`` into timm's ``feature_info`` or None for the head."""

    index: int | None
    label: str
    channels: int
    reduction: int | None  # input pixels per feature-map pixel (None: pooled head)


def _load_encoder(name: str, accelerated: bool = True) -> ImageEncoder:
    """The CLIP page's image encoder, once that page's module exists (``cvdemo.clip.ClipModel``)."""
    weights.resolve(name)  # missing weights: WeightsUnavailable with the registry's advice
    try:
        from cvdemo.clip import ClipModel  # type: ignore[import-not-found]
    except ImportError:
        raise weights.WeightsUnavailable(
            weights.get(name), "The CLIP package (cvdemo/clip/) is not part of this installation yet."
        ) from None
    return ClipModel(name, accelerated=accelerated)


def _pooled_features_module(model: "torch.nn.Module") -> "torch.nn.Module":
    """Every stage's feature map (averaged over space) and the pooled head, from one forward pass.

    One exported graph then serves any layer choice on the page; the stage averages cost
    next to nothing beside the network itself.
    """
    import torch

    class PooledFeatures(torch.nn.Module):
        def __init__(self, backbone: torch.nn.Module) -> None:
            super().__init__()
            self.backbone = backbone
            self.stages = list(range(len(backbone.feature_info)))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            final, maps = self.backbone.forward_intermediates(x, indices=self.stages)
            return (*[fmap.mean(dim=(2, 3)) for fmap in maps], self.backbone.forward_head(final))

    return PooledFeatures(model).eval()


def _accelerated_backbone(name: str, pretrained: bool) -> "runtime.AcceleratedModel":
    """The backbone's pooled features behind an exported runtime (once per process and weights)."""
    import torch

    from cvdemo import cache

    pytorch = FeatureExtractor(name, pretrained=pretrained, accelerated=False)
    size = tuple(pytorch.data_config["input_size"])
    return runtime.accelerate(
        _pooled_features_module(cache.shared(create_frozen, name, pretrained, 0)),
        torch.zeros(1, *size),
        name=f"{name}-features" + ("" if pretrained else "-random-init"),
        parity_inputs=pytorch.preprocess(runtime.parity_images(), channels_last=False),
    )


class FeatureExtractor:
    """Images -> L2-normalised feature vectors from a frozen pretrained model.

    ``backbone`` is a name from :data:`cvdemo.backbones.BACKBONES` (timm; ImageNet weights via
    :mod:`cvdemo.weights`), a name from :data:`ENCODER_BACKBONES`, or any :class:`ImageEncoder`.
    ``layer`` (timm backbones only) is an index into the model's ``feature_info`` stages: that
    stage's feature map is global-average pooled; ``None`` is the model's own pooled head.
    ``accelerated`` runs the network through :func:`cvdemo.runtime.accelerate` (exported once,
    parity-checked; PyTorch when that is refused); ``backend_label`` says which runs.
    Raises :class:`cvdemo.weights.WeightsUnavailable` when pretrained weights are missing.
    """

    def __init__(
        self,
        backbone: str | ImageEncoder = DEFAULT_BACKBONE,
        layer: int | None = None,
        pretrained: bool = True,
        accelerated: bool = True,
    ):
        from cvdemo import cache

        self.layer = layer
        self.pretrained = pretrained
        self._model = None
        self._accelerated: runtime.AcceleratedModel | None = None
        self._encoder: ImageEncoder | None = None
        self.serve_key: str | None = None
        if isinstance(backbone, str):
            self.backbone = backbone
            if backbone in ENCODER_BACKBONES:
                self._encoder = cache.shared(_load_encoder, backbone, accelerated)
            elif backbone in BACKBONES:
                # num_classes=0: pooled features, no classifier; one copy shared by every layer's extractor
                self._model = cache.shared(create_frozen, backbone, pretrained, 0)
                self._prepare_preprocessing()
                if accelerated:  # shared by every layer's extractor: one export, one session
                    self._accelerated = cache.shared(_accelerated_backbone, backbone, pretrained)
                # The inference server runs the pretrained, accelerated timm backbones; others run here.
                self.serve_key = f"{backbone}/features" if pretrained and accelerated else None
            else:
                raise KeyError(f"Unknown backbone '{backbone}'. Known: {', '.join([*BACKBONES, *ENCODER_BACKBONES])}")
        elif callable(getattr(backbone, "encode_images", None)):  # duck typing: ``name`` is optional
            self._encoder = backbone
            self.backbone = str(getattr(backbone, "name", type(backbone).__name__))
        else:
            raise TypeError("backbone must be a backbone name or an object with encode_images(images, ...).")
        if self._encoder is not None and layer is not None:
            raise ValueError("Layer choice needs a timm backbone; an image encoder only gives its final embedding.")
        if layer is not None and not 0 <= layer < len(self.layers()) - 1:
            raise ValueError(f"Layer {layer} does not exist; choose 0..{len(self.layers()) - 2} or None (head).")

    def _prepare_preprocessing(self) -> None:
        """timm's eval transform in its prefetcher form: resize + crop per image to uint8, then
        normalise the whole batch at once. Per-image float ops on small tensors are slow when
        torch's threads compete with other processes; one batched op is not."""
        import timm
        import torch

        from cvdemo.backbones import data_config

        config = data_config(self._model)
        self._transform = timm.data.create_transform(**config, is_training=False, use_prefetcher=True)
        self._mean = torch.tensor(config["mean"]).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(config["std"]).view(1, 3, 1, 1) * 255

    def preprocess(self, images: Sequence[Image.Image], channels_last: bool = True) -> "torch.Tensor":
        """A normalised float batch exactly as timm's eval pipeline prepares it.

        Channels-last suits PyTorch's CPU convolutions; exported runtimes take plain NCHW.
        """
        import torch

        return self._normalise(torch.stack([self._transform(img) for img in images]), channels_last)

    def _normalise(self, crops: "torch.Tensor", channels_last: bool) -> "torch.Tensor":
        """uint8 (N, 3, H, W) crops -> the float batch the network takes."""
        import torch

        batch = crops.float().sub_(self._mean).div_(self._std)
        return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch

    @property
    def timm_model(self) -> torch.nn.Module | None:
        """The frozen timm backbone (shared: copy it before training), or None for an image encoder."""
        return self._model

    @property
    def _exported(self) -> bool:
        return self._accelerated is not None and self._accelerated.accelerated

    @property
    def runtime_info(self) -> runtime.RuntimeInfo:
        """What computes the features, for the latency badge."""
        if self._encoder is not None:
            return getattr(self._encoder, "runtime_info", runtime.PYTORCH_RUNTIME)
        from cvdemo.serve.client import served_runtime

        info = self._accelerated.runtime_info if self._accelerated is not None else runtime.PYTORCH_RUNTIME
        return served_runtime(info, self.serve_key)

    @property
    def backend_label(self) -> str:
        """E.g. "OpenVINO", "PyTorch", or "PyTorch (accelerated path off: …)"."""
        return self.runtime_info.label

    @property
    def key(self) -> str:
        """Identifies the feature space: embeddings under different keys are not comparable."""
        return self.key_for(self.layer)

    def key_for(self, layer: int | None) -> str:
        return f"{self.backbone}/{layer_key(layer)}" + ("" if self.pretrained else "/random-init")

    def layers(self) -> list[LayerInfo]:
        """Stages from timm's ``feature_info`` (early = generic) then the pooled head (specific)."""
        if self._model is None:
            return [LayerInfo(None, "final embedding", 0, None)]
        stages = [
            LayerInfo(
                i,
                f"stage {i + 1}: {info['num_chs']} ch at 1/{info['reduction']} size",
                info["num_chs"],
                info["reduction"],
            )
            for i, info in enumerate(self._model.feature_info)
        ]
        head = LayerInfo(None, f"head: pooled {self._model.num_features}-d features", self._model.num_features, None)
        return [*stages, head]

    @property
    def data_config(self) -> dict:
        from cvdemo.backbones import data_config

        return data_config(self._model) if self._model is not None else {}

    def embed(self, images: Sequence[Any], batch_size: int = 32, progress: Progress | None = None) -> np.ndarray:
        """``(N, D)`` float32 L2-normalised features; images are PIL (or anything ``load_image`` reads)."""
        return self.embed_layers(images, [self.layer], batch_size, progress)[self.layer]

    def embed_layers(
        self,
        images: Sequence[Any],
        layers: Sequence[int | None],
        batch_size: int = 32,
        progress: Progress | None = None,
    ) -> dict[int | None, np.ndarray]:
        """Features of several layers from ONE forward pass per batch (for comparing layers).

        Each picture is embedded once per process and feature space (see :mod:`cvdemo.results`):
        thirty sessions on the same example set cost one pass; a single query image goes through
        the backbone's scheduler, where the queries of several sessions run as one batch.
        """
        images = [img if isinstance(img, Image.Image) else load_image(img) for img in images]
        if self._encoder is not None:
            if list(layers) != [None]:
                raise ValueError("An image encoder only gives its final embedding (layer None).")
            vectors = np.asarray(self._encoder.encode_images(images, batch_size=batch_size, progress=progress))
            return {None: l2_normalize(vectors.astype(np.float32, copy=False).reshape(len(images), -1))}
        layers = list(dict.fromkeys(layers))
        store = results.process_cache()
        spaces = {layer: f"{self.key_for(layer)}|{self.runtime_info.name}" for layer in layers}
        prints = [fingerprint(img) for img in images]
        found: dict[tuple[int | None, str], np.ndarray] = {}
        for layer in layers:
            for fp in set(prints):
                vector = store.get(("backbone", spaces[layer], fp))
                if vector is not None:
                    found[(layer, fp)] = vector
        todo = list(dict.fromkeys(fp for fp in prints if any((layer, fp) not in found for layer in layers)))
        if todo:
            first = {fp: images[i] for i, fp in reversed(list(enumerate(prints)))}
            pictures = [first[fp] for fp in todo]

            def compute() -> dict[int | None, np.ndarray]:
                if len(pictures) == 1 and progress is None and layers == [self.layer]:
                    vector = networks.scheduler("backbone", self, spaces[self.layer]).run(pictures[0])
                    computed = {self.layer: np.asarray(vector)[None]}
                else:
                    computed = self._embed_layers_now(pictures, layers, batch_size, progress)
                for layer, vectors in computed.items():
                    for fp, vector in zip(todo, vectors):
                        store.put(("backbone", spaces[layer], fp), vector)
                return computed

            # Single flight: sessions asking for the same pictures at once wait for one pass.
            computed = results.cached(("backbone-pass", tuple(spaces.values()), tuple(todo)), compute)
            for layer, vectors in computed.items():
                for fp, vector in zip(todo, vectors):
                    found[(layer, fp)] = vector
        width = {info.index: info.channels for info in self.layers()}
        return {
            layer: np.stack([found[(layer, fp)] for fp in prints]).astype(np.float32, copy=False)
            if prints
            else np.zeros((0, width[layer]), np.float32)
            for layer in layers
        }

    def embed_now(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(N, D)`` features of this extractor's layer, computed now (the backbone scheduler's batch function)."""
        return self._embed_layers_now(list(images), [self.layer], len(images) or 1, None)[self.layer]

    def _embed_layers_now(
        self,
        images: list[Image.Image],
        layers: list[int | None],
        batch_size: int,
        progress: Progress | None,
    ) -> dict[int | None, np.ndarray]:
        import torch

        chunks: dict[int | None, list[np.ndarray]] = {layer: [] for layer in layers}
        total = len(images)
        if progress:
            progress(0, total)
        with torch.inference_mode():
            for start in range(0, total, batch_size):
                batch = images[start : start + batch_size]
                features = self._features(batch, layers)  # takes the compute gate around the forward pass
                for layer, feats in features.items():
                    chunks[layer].append(torch.nn.functional.normalize(feats.float(), dim=1).numpy())
                if progress:
                    progress(min(start + batch_size, total), total)
        width = {layer: info.channels for info in self.layers() for layer in [info.index]}
        return {
            layer: np.concatenate(parts) if parts else np.zeros((0, width[layer]), np.float32)
            for layer, parts in chunks.items()
        }

    def _features(self, images: Sequence[Image.Image], layers: list[int | None]) -> dict[int | None, "torch.Tensor"]:
        """Pooled (not yet normalised) features of one batch, per layer: computed here, or on the
        inference server when ``CVDEMO_INFERENCE_URL`` is set (timm's uint8 crops travel, not floats)."""
        import torch

        from cvdemo.serve.client import remote_batch_fn

        remote = remote_batch_fn(self.serve_key) if self.serve_key else None
        if remote is None:
            pixels = self.preprocess(images, channels_last=not self._exported)  # decoding and resizing: no gate
            with compute_gate().hold():  # batch by batch, in turn with the other networks' requests
                return self._forward(pixels, layers)
        outputs = remote([{"crop": np.asarray(self._transform(img), dtype=np.uint8)} for img in images])
        return {layer: torch.from_numpy(np.stack([out[layer_key(layer)] for out in outputs])) for layer in layers}

    def features_batch(self, inputs: Sequence[dict]) -> list[dict]:
        """The backbone's batch function on plain values (what the inference server runs).

        Each input is ``{"crop": uint8 (3, H, W)}`` (timm's eval resize and crop); each output maps every
        layer's key (``stage1`` ... ``head``) to its pooled float32 features, from one forward pass.
        """
        import torch

        if not inputs:
            return []
        crops = torch.stack([torch.from_numpy(np.asarray(item["crop"], dtype=np.uint8)) for item in inputs])
        layers = [info.index for info in self.layers()]
        with torch.inference_mode():
            feats = self._forward(self._normalise(crops, channels_last=not self._exported), layers)
            arrays = {layer_key(layer): feats[layer].float().numpy() for layer in layers}
        return [{key: np.ascontiguousarray(values[i]) for key, values in arrays.items()} for i in range(len(inputs))]

    def _forward(self, x: "torch.Tensor", layers: list[int | None]) -> dict[int | None, "torch.Tensor"]:
        if self._accelerated is not None and self._accelerated.accelerated:
            outputs = self._accelerated(x)  # (stage 1, ..., stage n, head), all pooled
            return {layer: outputs[-1 if layer is None else layer] for layer in layers}
        model = self._model
        stages = sorted(layer for layer in layers if layer is not None)
        if not stages:
            return {None: model(x)}  # num_classes=0: the pooled pre-logits features
        if None in layers:
            final, maps = model.forward_intermediates(x, indices=stages)
            out: dict[int | None, torch.Tensor] = {None: model.forward_head(final)}
        else:  # no need to run the deeper blocks
            maps = model.forward_intermediates(x, indices=stages, intermediates_only=True, stop_early=True)
            out = {}
        for layer, fmap in zip(stages, maps):
            out[layer] = fmap.mean(dim=(2, 3))  # global average pool over the feature map
        return out


def layer_key(layer: int | None) -> str:
    return "head" if layer is None else f"stage{layer + 1}"


@dataclass(frozen=True)
class BackboneStatus:
    name: str
    label: str
    available: bool
    reason: str  # why not available (empty when it is)


def backbone_status() -> list[BackboneStatus]:
    """Every backbone the page can offer, and for the missing ones the sentence saying why."""
    rows = []
    entries = [(name, spec.label) for name, spec in BACKBONES.items()] + list(ENCODER_BACKBONES.items())
    for name, label in entries:
        try:
            weights.resolve(name, download=False)
            reason = ""
            if name in ENCODER_BACKBONES:
                from importlib.util import find_spec

                if find_spec("cvdemo.clip") is None:
                    reason = "The CLIP package (cvdemo/clip/) is not part of this installation yet."
        except weights.WeightsUnavailable as exc:
            reason = str(exc)
        except KeyError:
            reason = "Not in the weights registry."
        rows.append(BackboneStatus(name, label, not reason, reason))
    return rows
