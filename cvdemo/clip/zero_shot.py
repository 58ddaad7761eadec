"""Zero-shot classification: labels become prompts, prompts become text vectors, images go to the nearest label.

Raw cosine (can say "none of the above") and a temperature-scaled softmax (always sums to 1), per image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from cvdemo.clip._common import ClipInputError, _l2_normalize
from cvdemo.clip.embedding_engine import EmbeddingEngine
from cvdemo.clip.prompts import ENSEMBLE, parse_labels, template_list


def class_text_embeddings(
    engine: EmbeddingEngine, labels: Sequence[str], templates: str | Sequence[str] = ENSEMBLE
) -> np.ndarray:
    """(L, dim): per label, the mean of its normalised prompt embeddings, renormalised (CLIP's recipe)."""
    prompts = template_list(templates)
    texts = [t.replace("{}", label) for label in labels for t in prompts]
    emb = engine.encode_texts(texts).reshape(len(labels), len(prompts), -1)
    return _l2_normalize(emb.mean(axis=1))


def softmax(cosine: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of ``cosine / temperature`` over the last axis (numerically stable)."""
    if temperature <= 0:
        raise ClipInputError("The temperature must be positive.")
    logits = np.asarray(cosine, dtype=np.float64) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclass
class ZeroShotResult:
    """Zero-shot scores for N images over L labels."""

    labels: list[str]
    cosine: np.ndarray  # (N, L) raw cosine similarity image . label
    probs: np.ndarray  # (N, L) softmax(cosine / temperature)
    temperature: float
    notes: list[str] = field(default_factory=list)

    @property
    def best_index(self) -> np.ndarray:
        return self.cosine.argmax(axis=1)

    @property
    def best(self) -> list[str]:
        return [self.labels[i] for i in self.best_index]

    def with_temperature(self, temperature: float) -> "ZeroShotResult":
        return ZeroShotResult(self.labels, self.cosine, softmax(self.cosine, temperature), temperature, self.notes)

    def none_of_the_above(self, threshold: float) -> np.ndarray:
        """(N,) True where even the best label's cosine is below ``threshold``."""
        return self.cosine.max(axis=1) < threshold

    def rows(self, i: int = 0) -> list[dict[str, Any]]:
        """Image ``i``'s labels as table rows, best first."""
        order = np.argsort(-self.cosine[i])
        return [
            {"label": self.labels[j], "probability": float(self.probs[i, j]), "cosine": float(self.cosine[i, j])}
            for j in order
        ]


def zero_shot(
    engine: EmbeddingEngine,
    image_emb: np.ndarray,
    labels: str | Sequence[str],
    templates: str | Sequence[str] = ENSEMBLE,
    temperature: float | None = None,
) -> ZeroShotResult:
    """Classify image embeddings ((dim,) or (N, dim)) among ``labels`` with prompt ``templates``.

    Returns raw cosine similarities, softmax probabilities at ``temperature`` (default: the
    engine's, for CLIP its learned ``1/logit_scale``) and the best label per image.
    """
    clean, notes = parse_labels(labels)
    image_emb = np.atleast_2d(np.asarray(image_emb, dtype=np.float32))
    text_emb = class_text_embeddings(engine, clean, templates)
    cosine = _l2_normalize(image_emb) @ text_emb.T
    temperature = engine.default_temperature if temperature is None else float(temperature)
    return ZeroShotResult(clean, cosine, softmax(cosine, temperature), temperature, notes)
