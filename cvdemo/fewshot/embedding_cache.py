"""Vectors per (feature space, image digest), so changing k or the metric never re-embeds an image."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from cvdemo.images import fingerprint
from cvdemo.fewshot.extractor import FeatureExtractor, Progress


class EmbeddingCache:
    """Vectors per (extractor key, image digest): each image is embedded once per feature space.

    Thread-safe: the page reads it while a ladder run fills it in a background thread.
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        self._store: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.RLock()
        self.max_entries = max_entries
        self.computed = 0  # how many images were actually run through a network (for tests/UI)

    def __len__(self) -> int:
        return len(self._store)

    def get(self, key: str, digest: str) -> np.ndarray | None:
        with self._lock:
            vec = self._store.get((key, digest))
            if vec is not None:
                self._store.move_to_end((key, digest))
            return vec

    def put(self, key: str, digest: str, vector: np.ndarray) -> None:
        with self._lock:
            self._store[(key, digest)] = np.asarray(vector, np.float32)
            self._store.move_to_end((key, digest))
            while len(self._store) > self.max_entries:
                self._store.popitem(last=False)

    def missing(self, key: str, digests: Sequence[str]) -> list[int]:
        with self._lock:
            return [i for i, d in enumerate(digests) if (key, d) not in self._store]

    def embed(
        self,
        extractor: FeatureExtractor,
        images: Sequence[Image.Image],
        digests: Sequence[str] | None = None,
        batch_size: int = 32,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """``(N, D)`` features, computing only the images this extractor has not seen."""
        digests = list(digests) if digests is not None else [fingerprint(img) for img in images]
        found = {d: v for d in digests if (v := self.get(extractor.key, d)) is not None}
        # the same picture twice in one call is embedded once
        todo = list(dict.fromkeys(d for d in digests if d not in found))
        if todo:
            first = {d: i for i, d in reversed(list(enumerate(digests)))}
            vectors = extractor.embed([images[first[d]] for d in todo], batch_size=batch_size, progress=progress)
            for d, v in zip(todo, vectors):
                self.put(extractor.key, d, v)
                found[d] = v
            self.computed += len(todo)
        if not digests:
            return np.zeros((0, 0), np.float32)
        return np.stack([found[d] for d in digests]).astype(np.float32, copy=False)

    def embed_layers(
        self,
        extractor: FeatureExtractor,
        images: Sequence[Image.Image],
        digests: Sequence[str],
        layers: Sequence[int | None],
        batch_size: int = 32,
        progress: Progress | None = None,
    ) -> dict[int | None, np.ndarray]:
        """Like :meth:`embed` for several layers: images missing any layer go through ONE pass."""
        keys = {layer: extractor.key_for(layer) for layer in layers}
        found = {(key, d): v for key in keys.values() for d in digests if (v := self.get(key, d)) is not None}
        todo = sorted({i for i, d in enumerate(digests) for key in keys.values() if (key, d) not in found})
        if todo:
            computed = extractor.embed_layers([images[i] for i in todo], list(layers), batch_size, progress)
            for layer, vectors in computed.items():
                for i, v in zip(todo, vectors):
                    self.put(keys[layer], digests[i], v)
                    found[(keys[layer], digests[i])] = v
            self.computed += len(todo)
        return {layer: np.stack([found[(key, d)] for d in digests]) for layer, key in keys.items()}

    def keys_for(self, digests: Iterable[str]) -> dict[str, dict[str, np.ndarray]]:
        """Every feature space with vectors for some of these digests: ``{key: {digest: vector}}``."""
        wanted = set(digests)
        out: dict[str, dict[str, np.ndarray]] = {}
        with self._lock:
            items = list(self._store.items())
        for (key, digest), vec in items:
            if digest in wanted:
                out.setdefault(key, {})[digest] = vec
        return out
