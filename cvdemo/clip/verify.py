"""Verification: are two images the same (photo or class)? The cosine of their vectors against a threshold.

Any of the lesson's image embeddings works: the page's engine (CLIP, ConSE) or a few-shot backbone's
pooled features. :class:`Embedder` gives them one face (``embed``), caches vectors by pixel digest
(in memory and on disk), and :func:`evaluate_pairs` turns a :class:`PairSet` into an ROC curve, its AUC,
the equal-error rate, and which changes (or classes) the threshold fails on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from cvdemo.clip._common import ClipInputError, Progress
from cvdemo.vectors import l2_normalize
from cvdemo.clip.embedding_store import EmbeddingStore, default_index_dir
from cvdemo.clip.pairs import PairSet
from cvdemo.images import fingerprint, rgb

FEWSHOT_PREFIX = "fewshot:"  # embedder keys: an engine's name, or "fewshot:<backbone>"

# Default "same if cosine >= t": the equal-error threshold of photo-level pairs (48 COCO128 photos x 6
# changes, sources=40, seed 0) measured on this machine's models. For the class level, or another set,
# evaluate and use the EER threshold the evaluation reports: it moves a lot (ConSE: 0.58 on COCO128 photos,
# 0.91 on ants/bees photos, 0.54 on CIFAR-10 classes). CLIP's weights are not on the machine where these were
# measured, so its value is the typical near-duplicate cosine of CLIP image embeddings, not a calibration.
VERIFICATION_THRESHOLDS: dict[str, float] = {"conse": 0.58, f"{FEWSHOT_PREFIX}efficientnet_lite0": 0.53, "clip": 0.85,
                                             "mobileclip": 0.85}


def default_verification_threshold(name: str) -> float:
    """The default threshold for an engine key or an embedder name (see :data:`VERIFICATION_THRESHOLDS`)."""
    for prefix, value in VERIFICATION_THRESHOLDS.items():
        if str(name).startswith(prefix):
            return value
    return 0.8


class Embedder:
    """Images -> unit vectors, from an engine (``encode_images``) or a few-shot extractor (``embed``).

    Vectors are cached by image digest in memory and on disk, in the same file as the gallery index of
    the model (``embeddings.npz``), so photos already embedded for search are not run again.
    """

    def __init__(self, model: Any, name: str, label: str, dim: int | None = None, cache_dir: Any = None) -> None:
        self.model, self.name, self.label = model, name, label
        self.dim = int(dim if dim is not None else getattr(model, "dim", 0))
        folder = None if cache_dir is False else (default_index_dir(name) if cache_dir in (None, True) else cache_dir)
        self.store = EmbeddingStore(folder, name, self.dim) if self.dim else None
        self._lock = threading.Lock()

    @classmethod
    def for_engine(cls, engine: Any, cache_dir: Any = None) -> "Embedder":
        return cls(engine, engine.name, engine.label.split(":")[0], engine.dim, cache_dir)

    @classmethod
    def for_backbone(cls, backbone: str, accelerated: bool = True, cache_dir: Any = None) -> "Embedder":
        """A few-shot page backbone's pooled ImageNet features (its head), shared process-wide."""
        from cvdemo import cache
        from cvdemo.backbones import BACKBONES
        from cvdemo.fewshot import FeatureExtractor

        extractor = cache.shared(FeatureExtractor, backbone, None, True, accelerated)
        dim = extractor.layers()[-1].channels
        label = f"{BACKBONES[backbone].label.split(' (')[0]} features (few-shot backbone)"
        return cls(extractor, f"{FEWSHOT_PREFIX}{extractor.key}", label, dim, cache_dir)

    @property
    def runtime_info(self):
        from cvdemo import runtime

        return getattr(self.model, "runtime_info", runtime.PYTORCH_RUNTIME)

    def _run(self, images: list[Image.Image], progress: Progress | None) -> np.ndarray:
        if hasattr(self.model, "encode_images"):  # the CLIP page's engines: the one door to the model
            return np.asarray(self.model.encode_images(images, progress=progress))
        return np.asarray(self.model.embed(images, progress=progress))  # cvdemo.fewshot.FeatureExtractor

    def embed(
        self, images: Sequence[Image.Image], progress: Progress | None = None, digests: Sequence[str] | None = None
    ) -> np.ndarray:
        """(N, dim) unit vectors; images seen before (same digest) are not run again.

        ``digests``: the images' cache keys when known (a gallery file's sha256); default: their images.fingerprint.
        """
        images = [rgb(img) for img in images]  # the same objects: their fingerprints are remembered
        digests = [fingerprint(img) for img in images] if digests is None else list(digests)
        known = self.store.vectors if self.store is not None else {}
        if self.store is not None and any(d not in known for d in digests):
            self.store.refresh()  # another session (or the search tab) may have embedded them meanwhile
            known = self.store.vectors
        todo = list({d: i for i, d in reversed(list(enumerate(digests))) if d not in known}.items())
        if todo:
            vectors = l2_normalize(self._run([images[i] for _, i in todo], progress))
            if self.store is None:  # dim unknown until the first vectors
                self.dim = vectors.shape[1]
                self.store = EmbeddingStore(None, self.name, self.dim)
            with self._lock:
                self.store.put([d for d, _ in todo], vectors)
        elif progress is not None:
            progress(len(images), len(images))
        return np.stack([self.store.vectors[d] for d in digests]).astype(np.float32)


def embedder_choices(engine: Any) -> dict[str, str]:
    """What the Verify tab offers: the engine (by name), then each few-shot backbone with weights here
    (``fewshot:<name>``; the CLIP towers the few-shot page can also wrap are engines already)."""
    from cvdemo.fewshot import ENCODER_BACKBONES, backbone_status

    options = {engine.name: f"{engine.label.split(':')[0]} (this page's engine)"}
    for status in backbone_status():
        if status.available and status.name not in ENCODER_BACKBONES:
            options[f"{FEWSHOT_PREFIX}{status.name}"] = f"{status.label.split(' (')[0]} features (few-shot backbone)"
    return options


def embedder_for(engine: Any) -> Embedder:
    """The engine's embedder, one per engine object for the whole process (its memory cache is shared)."""
    from cvdemo import cache

    return cache.shared(Embedder.for_engine, engine)


@dataclass(frozen=True)
class Verdict:
    cosine: float
    threshold: float
    identical: bool  # the very same pixels: cosine 1 by definition, nothing learned

    @property
    def same(self) -> bool:
        return self.cosine >= self.threshold

    @property
    def margin(self) -> float:
        return self.cosine - self.threshold


def verdict_text(verdict: Verdict) -> str:
    """The verdict as a sentence (markdown; it contains no user text)."""
    if verdict.identical:
        return (f"**Same — the two images are identical** (the same pixels): cosine {verdict.cosine:.3f}. "
                "That says nothing about the model; try a changed copy (crop, JPEG, colour) or another photo.")
    if verdict.same:
        return f"**Same** — cosine {verdict.cosine:.3f} ≥ threshold {verdict.threshold:.2f} (margin {verdict.margin:+.3f})."
    return f"**Different** — cosine {verdict.cosine:.3f} < threshold {verdict.threshold:.2f} (margin {verdict.margin:+.3f})."


def verify(embedder: Embedder, first: Image.Image, second: Image.Image, threshold: float) -> Verdict:
    """Embed two images and compare their cosine with ``threshold``."""
    if first is None or second is None:
        raise ClipInputError("Verification compares two images: pick a second one.")
    vectors = embedder.embed([first, second])
    identical = fingerprint(first) == fingerprint(second)
    return Verdict(float(np.clip(vectors[0] @ vectors[1], -1, 1)), float(threshold), identical)


@dataclass
class KindScore:
    """How one change (or class) fares: positives accepted at the threshold, their mean cosine, own AUC."""

    kind: str
    pairs: int
    accepted: float  # share of its positive pairs with cosine >= threshold (true-positive rate)
    mean_same: float  # mean cosine of its positive pairs
    auc: float  # its positives against all negatives


@dataclass
class VerificationEval:
    level: str
    embedder: str
    cosine: np.ndarray  # (P,)
    same: np.ndarray  # (P,) bool
    kinds: list[str]
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float
    eer: float  # where false accepts = false rejects
    eer_threshold: float
    notes: list[str] = field(default_factory=list)

    @property
    def positives(self) -> int:
        return int(self.same.sum())

    @property
    def negatives(self) -> int:
        return int((~self.same).sum())

    def rates_at(self, threshold: float) -> tuple[float, float]:
        """(false-accept rate, true-accept rate) of the rule "same if cosine >= threshold"."""
        accept = self.cosine >= threshold
        return float(accept[~self.same].mean()), float(accept[self.same].mean())

    def by_kind(self, threshold: float) -> list[KindScore]:
        """Per change (or class), worst first: which ones break verification at ``threshold``."""
        from sklearn.metrics import roc_auc_score

        kinds = np.asarray(self.kinds, dtype=object)
        negatives = self.cosine[~self.same]
        rows = []
        for kind in dict.fromkeys(self.kinds):
            pos = self.cosine[self.same & (kinds == kind)]
            if not len(pos):
                continue
            scores = np.concatenate([pos, negatives])
            truth = np.concatenate([np.ones(len(pos)), np.zeros(len(negatives))])
            rows.append(KindScore(kind, len(pos), float((pos >= threshold).mean()), float(pos.mean()),
                                  float(roc_auc_score(truth, scores))))
        return sorted(rows, key=lambda r: (r.accepted, r.auc))


def pair_cosines(vectors: np.ndarray, pairs: PairSet) -> np.ndarray:
    return np.einsum("pd,pd->p", vectors[pairs.a], vectors[pairs.b]).astype(np.float32)


def evaluate_cosines(cosine: np.ndarray, same: np.ndarray, kinds: Sequence[str], level: str, embedder: str) -> VerificationEval:
    """ROC, AUC and equal-error rate of "same if cosine >= t" over every threshold t."""
    from sklearn.metrics import roc_auc_score, roc_curve

    same = np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise ClipInputError("An ROC curve needs both same and different pairs.")
    fpr, tpr, thresholds = roc_curve(same, cosine)
    fnr = 1 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    eer = float((fpr[i] + fnr[i]) / 2)
    thresholds = np.clip(thresholds, -1.0, 1.0)  # sklearn's first threshold is +inf ("accept nothing")
    return VerificationEval(level, embedder, np.asarray(cosine, np.float32), same, list(kinds), fpr, tpr, thresholds,
                            float(roc_auc_score(same, cosine)), eer, float(thresholds[i]))


def evaluate_pairs(embedder: Embedder, pairs: PairSet, progress: Progress | None = None) -> tuple[VerificationEval, np.ndarray]:
    """Embed the pair set's images once, then score every pair: the evaluation and the vectors."""
    vectors = embedder.embed(pairs.images, progress=progress, digests=pairs.digests)
    evaluation = evaluate_cosines(pair_cosines(vectors, pairs), pairs.same, pairs.kind, pairs.level, embedder.label)
    evaluation.notes = list(pairs.notes)
    return evaluation, vectors
