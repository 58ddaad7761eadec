"""The engine API every model of the CLIP lesson shares: images and texts -> L2-normalised vectors in one space.

:class:`EmbeddingEngine` batches images (preprocessing overlapped with the model), sends single queries to a
single-threaded worker (latency), and caches text embeddings in memory and, for long batches, on disk.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

from cvdemo import networks, results, runtime
from cvdemo.images import rgb as rgb_image
from cvdemo.scheduler import compute_gate
from cvdemo.clip._common import Progress
from cvdemo.vectors import l2_normalize
from cvdemo.clip.embedding_store import EmbeddingStore, default_index_dir

if TYPE_CHECKING:
    import torch


SMALL_BATCH = 16  # texts; at most this many go through the text tower's scheduler (queries, short label lists)
FEW_IMAGES = 4  # at most this many images go one by one through the cache and the image tower's scheduler
TEXT_CHUNK = 1024  # texts per progress step of a long batch


class EmbeddingEngine:
    """Images and texts -> L2-normalised vectors in one space (``encode_images``, ``encode_texts``).

    Subclasses supply ``preprocess`` (PIL -> tensor), ``_forward`` (the bare model on a batch),
    ``_embed_batch`` (batch -> normalised numpy embeddings) and ``_encode_text_batch``.
    """

    name: str = "engine"  # identity incl. variant: names the on-disk index folder
    runtime_info: runtime.RuntimeInfo = runtime.PYTORCH_RUNTIME  # what runs the image network
    label: str = "engine"  # what the page shows
    dim: int = 0
    is_clip: bool = False
    default_temperature: float = 0.01
    default_threshold: float = 0.2
    # "None of the above" thresholds per prompt template, where calibrated (see ConSEEngine).
    none_thresholds: dict[str, float] = {}
    text_cache_size: int = 50_000
    # Batches at least this long (prompt ensembles, class names) are also cached on disk: a CPU
    # needs seconds (MiniLM) to a minute (CLIP's text tower) for 800 prompts, a lookup needs none.
    persist_min_texts: int = 8
    # The engine's name on the inference server (cvdemo.serve.networks: "<key>/image", "<key>/text"), None when
    # this variant (untrained, PyTorch-only, other settings) is not served: then it always runs here.
    serve_key: str | None = None

    def __init__(self, cache_dir: Path | str | None | bool = None) -> None:
        self._text_cache: dict[str, np.ndarray] = {}
        self._text_lock = threading.Lock()
        self._cache_dir = cache_dir  # None: cvdemo's cache (read when used); False: memory only
        self._stores: dict[tuple[Path, str], EmbeddingStore] = {}

    def stored_vectors(self, folder: Path | str, filename: str = "embeddings.npz") -> EmbeddingStore:
        """This engine's on-disk embedding cache ``folder/filename``, read once per engine object: every
        gallery index and session of the process shares one copy in memory."""
        key = (Path(folder), filename)
        with self._text_lock:
            if key not in self._stores:
                self._stores[key] = EmbeddingStore(key[0], self.name, self.dim, filename=filename)
            return self._stores[key]

    def text_store(self) -> "EmbeddingStore | None":
        """The on-disk text-embedding cache (``texts.npz`` beside the image index), or None."""
        if self._cache_dir is False:
            return None
        folder = default_index_dir(self.name) if self._cache_dir in (None, True) else Path(self._cache_dir)
        return self.stored_vectors(folder, "texts.npz")

    @property
    def backend_label(self) -> str:
        """E.g. "OpenVINO", "PyTorch", or "PyTorch (accelerated path off: …)"."""
        return self.runtime_info.label

    def none_threshold(self, template: str) -> float:
        """The cosine below which zero-shot says "none of the above", for prompts made with ``template``."""
        return float(self.none_thresholds.get(template, self.default_threshold))

    def has_words(self, text: str) -> bool:
        """Whether the text encoder finds anything to read in ``text`` (emoji-only text reads as nothing)."""
        return any(ch.isalnum() for ch in str(text))

    # --- to implement ---
    def preprocess(self, image: Image.Image) -> "torch.Tensor":
        raise NotImplementedError

    def _forward(self, batch: "torch.Tensor") -> "torch.Tensor":
        raise NotImplementedError

    def _embed_batch(self, batch: "torch.Tensor") -> np.ndarray:
        raise NotImplementedError

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    # --- shared ---
    def preprocess_batch(self, images: Sequence[Image.Image]) -> "torch.Tensor":
        import torch

        return torch.stack([self.preprocess(img.convert("RGB")) for img in images])

    def encode_images(
        self, images: Sequence[Image.Image], batch_size: int = 32, progress: Progress | None = None
    ) -> np.ndarray:
        """(N, dim) float32, each row L2-normalised; ``progress(done, total)`` after each batch."""
        from concurrent.futures import ThreadPoolExecutor

        import torch

        images = list(images)
        if len(images) <= FEW_IMAGES and progress is None:  # a photo or two (zero-shot, query, a pair): latency-bound
            return np.stack([self.encode_image(img) for img in images]) if images else np.zeros((0, self.dim), np.float32)
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        starts = list(range(0, len(images), batch_size))

        def prepare(start: int) -> "torch.Tensor":
            return self.preprocess_batch(images[start : start + batch_size])

        # In PyTorch, resize/normalise the next batch (Pillow releases the GIL) while the model runs on
        # this one. An exported runtime keeps every core busy by itself: there, taking turns measured faster.
        overlap = not self.runtime_info.accelerated and len(starts) > 1
        with ThreadPoolExecutor(max_workers=1) as pool, torch.inference_mode():
            pending = pool.submit(prepare, starts[0]) if overlap else None
            for n, start in enumerate(starts):
                batch = pending.result() if pending is not None else prepare(start)
                if overlap and n + 1 < len(starts):
                    pending = pool.submit(prepare, starts[n + 1])
                with compute_gate().hold():  # batch by batch, in turn with the other networks' requests
                    out[start : start + len(batch)] = self._image_vectors(batch)
                if progress is not None:
                    progress(start + len(batch), len(images))
        return out

    # --- the two towers: here, or on the inference server (CVDEMO_INFERENCE_URL) ---
    def _image_vectors(self, batch: "torch.Tensor") -> np.ndarray:
        """The image tower on one preprocessed batch, locally or on the inference server (same numbers)."""
        from cvdemo.serve.client import remote_batch_fn

        remote = remote_batch_fn(f"{self.serve_key}/image") if self.serve_key else None
        if remote is None:
            return self._embed_batch(batch)
        return np.stack(remote([{"pixels": pixels} for pixels in batch.float().numpy()])).astype(np.float32)

    def _text_vectors(self, texts: list[str]) -> np.ndarray:
        """The text tower on a list of texts, locally or on the inference server (same numbers)."""
        from cvdemo.serve.client import remote_batch_fn

        remote = remote_batch_fn(f"{self.serve_key}/text") if self.serve_key else None
        if remote is None:
            return self._encode_text_batch(texts)
        return np.stack(remote([{"text": text} for text in texts])).astype(np.float32)

    def image_batch(self, inputs: Sequence[dict]) -> list[np.ndarray]:
        """The image tower's batch function on plain values (what the inference server runs):
        ``{"pixels": float32 (3, H, W)}`` (this engine's preprocessing) -> its embedding."""
        import torch

        if not inputs:
            return []
        batch = torch.from_numpy(np.stack([np.asarray(item["pixels"], dtype=np.float32) for item in inputs]))
        with torch.inference_mode():
            return list(np.asarray(self._embed_batch(batch), dtype=np.float32))

    def text_batch(self, inputs: Sequence[dict]) -> list[np.ndarray]:
        """The text tower's batch function on plain values: ``{"text": str}`` -> its embedding."""
        if not inputs:
            return []
        return list(np.asarray(self._encode_text_batch([str(item["text"]) for item in inputs]), dtype=np.float32))

    def _encode_one_image(self, image: Image.Image) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._image_vectors(self.preprocess_batch([image]))

    @property
    def identity(self) -> str:
        """What embeddings depend on: the engine (model and variant) and the runtime that runs it."""
        return f"{self.name}|{self.runtime_info.name}|{self.runtime_info.accelerated}"

    def encode_image(self, image: Image.Image) -> np.ndarray:
        """(dim,) float32 L2-normalised: once per process per image content, through the image tower's
        scheduler (photos of several sessions that arrive together run as one batch)."""
        rgb = rgb_image(image)
        return results.cached(
            results.key("clip-image", self.identity, rgb),
            lambda: networks.scheduler("clip-image", self, self.identity).run(rgb),
        )

    def encode_texts(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """(M, dim) float32, L2-normalised. Each distinct text is encoded once per process (and long
        batches once per machine, on disk); ``progress(done, total)`` counts the texts still to encode."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        lookup = {t: self._text_cache[t] for t in texts if t in self._text_cache}
        missing = [t for t in dict.fromkeys(texts) if t not in lookup]
        store = self.text_store() if len(missing) >= self.persist_min_texts else None
        if store is not None:
            for t in missing:
                vector = store.vectors.get(_text_key(t))
                if vector is not None:
                    lookup[t] = vector
            missing = [t for t in missing if t not in lookup]
        if missing:
            if len(missing) <= SMALL_BATCH:  # a query: latency-bound, queued with the other sessions' texts
                texts_scheduler = networks.scheduler("clip-text", self, self.identity)
                tickets = [texts_scheduler.submit(t) for t in missing]
                vectors = np.stack([ticket.wait() for ticket in tickets])
            else:  # chunks of 1,024 so a long ensemble can report progress (the model batches inside)
                chunks = []
                for start in range(0, len(missing), TEXT_CHUNK):
                    with compute_gate().hold():
                        chunks.append(self._text_vectors(missing[start : start + TEXT_CHUNK]))
                    if progress is not None:
                        progress(min(start + TEXT_CHUNK, len(missing)), len(missing))
                vectors = l2_normalize(np.concatenate(chunks))
            lookup.update(zip(missing, vectors))
            if store is not None and len(missing) >= self.persist_min_texts:
                store.put([_text_key(t) for t in missing], vectors)
        with self._text_lock:
            if len(self._text_cache) + len(lookup) > self.text_cache_size:
                self._text_cache.clear()  # rare: a bounded cache beats an unbounded one
            self._text_cache.update(lookup)
        return np.stack([lookup[t] for t in texts]).astype(np.float32)


def _text_key(text: str) -> str:
    return hashlib.sha256(("text:" + text).encode("utf-8")).hexdigest()
