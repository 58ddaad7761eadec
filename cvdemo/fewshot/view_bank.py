"""Frozen outputs of augmented views, computed once and shared by every method and every draw.

The frozen part of a network never changes, so what it makes of view ``i`` of a photo is the same
whichever method asks and whenever: the head rung trains on the pooled features of augmented views
(computed by the accelerated runtime, as kNN's features are), the unfreeze rung on the frozen
stages' output of the same views, and accuracy-vs-shots draws reuse both. Training the head on
these cached features is exactly training it on the frozen network run every step, without the
network. Entries are keyed by (feature space, augmentation, seed, image digest, view index).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from PIL import Image

from cvdemo.fewshot.augment import AugmentConfig, augmented_views, view_size
from cvdemo.fewshot.embedding_cache import EmbeddingCache
from cvdemo.fewshot.extractor import FeatureExtractor

if TYPE_CHECKING:
    import torch

EVAL_VIEW = None  # the view index of the unaugmented photo (timm's eval preprocessing)


class ViewBank:
    """Cache of frozen features (``features``) and frozen-stage outputs (``frozen_outputs``) of views."""

    def __init__(self, extractor: FeatureExtractor, cache: EmbeddingCache | None = None, max_bytes: int = 96 << 20):
        self.extractor = extractor
        self.cache = cache if cache is not None else EmbeddingCache()
        self.max_bytes = max_bytes
        self._store: OrderedDict[tuple, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.views_made = 0  # augmented views generated (for tests and the page)
        self.frozen_runs = 0  # images run through a frozen part in PyTorch

    @property
    def view_size(self) -> int:
        return view_size(self.extractor.data_config) if self.extractor.data_config else 256

    def _get(self, key: tuple) -> Any:
        with self._lock:
            value = self._store.get(key)
            if value is not None:
                self._store.move_to_end(key)
            return value

    def _put(self, key: tuple, value: Any) -> None:
        size = int(value.nbytes) if isinstance(value, np.ndarray) else int(value.numel() * value.element_size())
        with self._lock:
            if key not in self._store:
                self._bytes += size
            self._store[key] = value
            while self._bytes > self.max_bytes and len(self._store) > 1:
                _, old = self._store.popitem(last=False)
                self._bytes -= int(old.nbytes) if isinstance(old, np.ndarray) else int(old.numel() * old.element_size())

    def _views(
        self, images: Sequence[Image.Image], digests: Sequence[str], config: AugmentConfig, seed: int, index: int
    ) -> list[Image.Image]:
        self.views_made += len(images)
        return augmented_views(images, digests, config, seed, index, self.view_size)

    def features(
        self,
        images: Sequence[Image.Image],
        digests: Sequence[str],
        config: AugmentConfig,
        seed: int,
        index: int | None,
    ) -> np.ndarray:
        """``(N, D)`` L2-normalised frozen features of view ``index`` of each image (``None``: the photo)."""
        if index is EVAL_VIEW or config.is_identity:
            return self.cache.embed(self.extractor, images, digests)
        keys = [("features", self.extractor.key, config.key, seed, d, index) for d in digests]
        found = [self._get(k) for k in keys]
        todo = [i for i, v in enumerate(found) if v is None]
        if todo:
            views = self._views([images[i] for i in todo], [digests[i] for i in todo], config, seed, index)
            for i, vector in zip(todo, self.extractor.embed(views)):
                self._put(keys[i], vector)
                found[i] = vector
        return np.stack(found).astype(np.float32, copy=False)

    def frozen_outputs(
        self,
        frozen_key: str,
        frozen_part: Callable[["torch.Tensor"], "torch.Tensor"],
        images: Sequence[Image.Image],
        digests: Sequence[str],
        config: AugmentConfig,
        seed: int,
        index: int | None,
        batch_size: int = 16,
    ) -> "torch.Tensor":
        """The frozen stages' output for view ``index`` of each image (``None``: the photo), run once
        under ``no_grad`` in PyTorch. ``frozen_key`` names the frozen part (backbone and cut)."""
        import torch

        identity = index is EVAL_VIEW or config.is_identity
        view_key = ("eval",) if identity else (config.key, seed, index)
        keys = [("frozen", frozen_key, *view_key, d) for d in digests]
        found = [self._get(k) for k in keys]
        todo = [i for i, v in enumerate(found) if v is None]
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            sources = [images[i] for i in chunk]
            if not identity:
                sources = self._views(sources, [digests[i] for i in chunk], config, seed, index)
            with torch.no_grad():
                out = frozen_part(self.extractor.preprocess(sources))
            self.frozen_runs += len(chunk)
            for i, tensor in zip(chunk, out):
                tensor = tensor.contiguous()
                self._put(keys[i], tensor)
                found[i] = tensor
        return torch.stack(found).contiguous(memory_format=torch.channels_last)
