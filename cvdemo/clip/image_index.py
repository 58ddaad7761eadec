"""The searchable gallery index: one L2-normalised embedding per image, cached on disk by file hash,
ranked against a text, an image or a vector (brute force, or FAISS for very large galleries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from cvdemo.clip._common import ClipInputError, Progress
from cvdemo.vectors import l2_normalize
from cvdemo.clip.embedding_engine import EmbeddingEngine
from cvdemo.clip.embedding_store import EmbeddingStore, default_index_dir
from cvdemo.clip.gallery import GalleryImage, display_thumbnail
from cvdemo.clip.prompts import clean_query, quoted
from cvdemo.search.ann import faiss_module
from cvdemo.search.exact import top_k

FAISS_MIN_ITEMS = 100_000  # brute force (one matrix product) is fast enough below this


@dataclass
class AddReport:
    added: int = 0  # new gallery entries
    embedded: int = 0  # images run through the model now
    from_cache: int = 0  # embeddings read from the disk cache
    duplicates: list[str] = field(default_factory=list)  # ids whose exact image was already in the gallery


@dataclass(frozen=True)
class SearchHit:
    id: str
    score: float  # cosine similarity
    position: int  # row in the index
    label: str | None = None


class ImageIndex:
    """A searchable gallery: ids, labels, thumbnails and one L2-normalised embedding per image.

    Embeddings are cached on disk by file hash (``folder``, default
    ``<cvdemo cache>/clip_index/<engine name>``; ``folder=False`` keeps them in memory only), so a
    gallery is embedded once and rebuilt instantly after a restart or page reload.
    """

    def __init__(self, engine: EmbeddingEngine, folder: Path | str | None | bool = None) -> None:
        self.engine = engine
        if folder is False:
            store_dir = None
        elif folder is None or folder is True:
            store_dir = default_index_dir(engine.name)
        else:
            store_dir = Path(folder)
        # The engine's store: the file is read once per process, not once per index (a page rerun, a session).
        self.store = EmbeddingStore(None, engine.name, engine.dim) if store_dir is None else engine.stored_vectors(store_dir)
        self.ids: list[str] = []
        self.labels: list[str | None] = []
        self.digests: list[str] = []
        self.thumbnails: list[Image.Image] = []
        self._rows: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None
        self._faiss = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def embeddings(self) -> np.ndarray:
        if self._matrix is None:
            self._matrix = (
                np.stack(self._rows).astype(np.float32) if self._rows else np.zeros((0, self.engine.dim), np.float32)
            )
        return self._matrix

    def use_engine(self, engine: EmbeddingEngine) -> None:
        """Answer queries with ``engine`` from now on: the same model in another runtime (the sidebar switch).

        Same engine name, same vector space: the gallery's embeddings stay valid, only queries change hands.
        """
        if engine.name != self.engine.name:
            raise ValueError(f"This index holds {self.engine.name} embeddings, not {engine.name} ones.")
        self.engine = engine

    def labeled(self) -> tuple[np.ndarray, list[str]]:
        """The embeddings of the images that have a label, and those labels (what evaluation needs)."""
        keep = [i for i, lab in enumerate(self.labels) if lab]
        return self.embeddings[keep], [self.labels[i] for i in keep]

    def cached_count(self, images: Sequence[GalleryImage]) -> int:
        """How many of ``images`` already have an embedding on disk (nothing to compute)."""
        return sum(img.digest in self.store for img in images)

    def add(
        self, images: Sequence[GalleryImage], batch_size: int = 32, progress: Progress | None = None
    ) -> AddReport:
        """Add images: cached embeddings are reused, the rest embedded in batches and saved."""
        report = AddReport()
        present = set(self.digests)
        fresh: list[GalleryImage] = []
        for img in images:
            if img.digest in present:
                report.duplicates.append(img.id)
                continue
            present.add(img.digest)
            fresh.append(img)
        if any(img.digest not in self.store for img in fresh):
            self.store.refresh()  # another session or server may have embedded them since the file was read
        todo = [img for img in fresh if img.digest not in self.store]
        if todo:
            vectors = self.engine.encode_images([img.image for img in todo], batch_size=batch_size, progress=progress)
            self.store.put([img.digest for img in todo], vectors)
        elif progress is not None:
            progress(len(fresh), len(fresh))
        taken = set(self.ids)
        for img in fresh:
            unique, n = img.id, 2
            while unique in taken:
                unique, n = f"{img.id} ({n})", n + 1
            taken.add(unique)
            self.ids.append(unique)
            self.labels.append(img.label)
            self.digests.append(img.digest)
            self.thumbnails.append(display_thumbnail(img.image))
            self._rows.append(self.store.vectors[img.digest])
        report.added = len(fresh)
        report.embedded = len(todo)
        report.from_cache = len(fresh) - len(todo)
        self._matrix, self._faiss = None, None
        return report

    def add_embeddings(
        self, ids: Sequence[str], vectors: np.ndarray, labels: Sequence[str | None] | None = None
    ) -> None:
        """Add precomputed embeddings (no images, no thumbnails, not persisted): for benchmarks and imports."""
        vectors = l2_normalize(np.atleast_2d(vectors))
        if vectors.shape != (len(ids), self.engine.dim):
            raise ClipInputError(f"Expected {len(ids)} vectors of {self.engine.dim} numbers, got {vectors.shape}.")
        blank = Image.new("RGB", (1, 1))
        self.ids.extend(ids)
        self.labels.extend(labels if labels is not None else [None] * len(ids))
        self.digests.extend("" for _ in ids)
        self.thumbnails.extend(blank for _ in ids)
        self._rows.extend(vectors)
        self._matrix, self._faiss = None, None

    def clear(self) -> None:
        self.ids, self.labels, self.digests, self.thumbnails, self._rows = [], [], [], [], []
        self._matrix, self._faiss = None, None

    def position(self, image_id: str) -> int:
        try:
            return self.ids.index(image_id)
        except ValueError:
            raise ClipInputError(f"“{image_id}” is not in the gallery.") from None

    def query_vector(self, query: str | Image.Image | np.ndarray) -> np.ndarray:
        if isinstance(query, str):
            text, _ = clean_query(query)
            if not self.engine.has_words(text):
                raise ClipInputError(
                    f"{quoted(text)} has no words the text encoder can read (emoji and symbols all become one "
                    "“unknown” token), so it would rank the gallery exactly like any other unreadable text. "
                    "Describe it in words, e.g. “a smiling face”."
                )
            return self.engine.encode_texts([text])[0]
        if isinstance(query, Image.Image):
            return self.engine.encode_images([query])[0]
        vector = np.asarray(query, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.engine.dim:
            raise ClipInputError(f"A query vector must have {self.engine.dim} numbers, not {vector.shape[0]}.")
        return l2_normalize(vector)

    def search(
        self, query: str | Image.Image | np.ndarray, k: int = 10, exclude: Iterable[str] = ()
    ) -> list[SearchHit]:
        """The ``k`` gallery images most similar to a text, an image or a vector, best first."""
        if not self.ids:
            raise ClipInputError("The gallery is empty: add images (samples, uploads or a zip) first.")
        vector = self.query_vector(query)
        scores, order = self._top(vector, min(len(self.ids), max(1, int(k)) + len(set(exclude))))
        skip = set(exclude)
        hits = [
            SearchHit(self.ids[i], float(s), int(i), self.labels[i])
            for s, i in zip(scores, order)
            if self.ids[i] not in skip
        ]
        return hits[: max(1, int(k))]

    def search_by_id(self, image_id: str, k: int = 10) -> list[SearchHit]:
        """Image -> image: the gallery ranked by similarity to one of its own images (itself first)."""
        return self.search(self.embeddings[self.position(image_id)], k)

    def _top(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.ids)
        if n >= FAISS_MIN_ITEMS and faiss_module() is not None:  # exact too (a flat index), on FAISS's kernels
            faiss = faiss_module()
            if self._faiss is None:
                self._faiss = faiss.IndexFlatIP(self.engine.dim)
                self._faiss.add(np.ascontiguousarray(self.embeddings))
            scores, order = self._faiss.search(vector.reshape(1, -1).astype(np.float32), k)
            return scores[0], order[0]
        order, scores = top_k(self.embeddings @ vector, k)
        return scores, order
