"""The on-disk embedding cache: key (a file's sha256, a picture's images.fingerprint, or a text's sha256) -> vector, one ``.npz`` per engine."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from cvdemo import weights
from cvdemo.files import atomic_write


def default_index_dir(engine_name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", engine_name)
    return weights.cache_root() / "clip_index" / safe


class EmbeddingStore:
    """Key (a file's sha256, a picture's images.fingerprint, or a text's sha256) -> embedding, persisted as one ``.npz`` per engine folder.

    Saving merges with what is on disk (other sessions may have added images) and replaces the
    file atomically, so a crash never leaves half a file.
    """

    def __init__(self, folder: Path | None, engine_name: str, dim: int, filename: str = "embeddings.npz") -> None:
        self.folder = Path(folder) if folder is not None else None
        self.filename = filename
        self.engine_name = engine_name
        self.dim = dim
        self.vectors: dict[str, np.ndarray] = {}
        self.notes: list[str] = []
        self._lock = threading.Lock()
        if self.folder is not None:
            self.vectors.update(self._read())

    @property
    def path(self) -> Path | None:
        return self.folder / self.filename if self.folder is not None else None

    def _read(self) -> dict[str, np.ndarray]:
        path = self.path
        if path is None or not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                digests, vectors = data["digests"], data["vectors"]
        except Exception as exc:  # a damaged cache is rebuilt, never fatal
            self.notes.append(f"The embedding cache {path} could not be read ({exc}); it will be rebuilt.")
            return {}
        if meta.get("engine") != self.engine_name or vectors.ndim != 2 or vectors.shape[1] != self.dim:
            self.notes.append(f"The embedding cache {path} belongs to another model; it will be rebuilt.")
            return {}
        return dict(zip(digests.tolist(), vectors.astype(np.float32)))

    def __contains__(self, digest: str) -> bool:
        return digest in self.vectors

    def __len__(self) -> int:
        return len(self.vectors)

    def refresh(self) -> None:
        """Take in what other sessions or processes saved since this store read the file."""
        if self.folder is None:
            return
        with self._lock:
            known = self.vectors
            self.vectors = {**self._read(), **known}

    def put(self, digests: Sequence[str], vectors: np.ndarray) -> None:
        with self._lock:
            self.vectors.update(zip(digests, np.asarray(vectors, dtype=np.float32)))
            self.save()

    def save(self) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        merged = {**self._read(), **self.vectors}
        self.vectors = merged
        digests = np.array(list(merged), dtype="<U64")
        vectors = np.stack(list(merged.values())) if merged else np.zeros((0, self.dim), np.float32)
        meta = json.dumps({"engine": self.engine_name, "dim": self.dim})
        with atomic_write(self.path, suffix=".npz.part") as fh:  # type: ignore[arg-type]
            np.savez(fh, digests=digests, vectors=vectors, meta=np.array(meta))
