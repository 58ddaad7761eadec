"""Zero-shot classification: labels become prompts, prompts become text vectors, images go to the nearest label.

Raw cosine (can say "none of the above") and a temperature-scaled softmax (always sums to 1), per image.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from cvdemo.clip._common import ClipInputError, Progress
from cvdemo.vectors import l2_normalize
from cvdemo.clip.embedding_engine import EmbeddingEngine
from cvdemo.clip.prompts import ENSEMBLE, LABEL_PRESETS, TEMPLATE_CHOICES, parse_labels, quoted, template_list

# (engine name, template tuple, label) -> the label's class vector, shared by every session of the process
_class_vectors: dict[tuple[str, tuple[str, ...], str], np.ndarray] = {}
_class_lock = threading.Lock()
_CLASS_CACHE_SIZE = 20_000
# From this many prompts on (e.g. 5 labels with the 80-prompt ensemble) the class vectors also go to the
# run store on disk: a restarted server reads them back instead of encoding the prompts again.
STORED_FROM_PROMPTS = 400
CLASS_VECTORS_VERSION = "1"  # bump when the class-vector recipe changes


def class_text_embeddings(
    engine: EmbeddingEngine, labels: Sequence[str], templates: str | Sequence[str] = ENSEMBLE,
    progress: Progress | None = None,
) -> np.ndarray:
    """(L, dim): per label, the mean of its normalised prompt embeddings, renormalised (CLIP's recipe).

    Class vectors are cached per engine and template set for the whole process; the prompts of new
    labels are encoded in one batch (``progress(done, total)`` over those prompts).
    """
    prompts = tuple(template_list(templates))
    keys = [(engine.name, prompts, str(label)) for label in labels]
    missing = [label for label, key in zip(labels, keys) if key not in _class_vectors]
    if missing:
        missing = list(dict.fromkeys(missing))
        vectors = _stored_class_vectors(engine, missing, prompts, progress)
        with _class_lock:
            if len(_class_vectors) + len(missing) > _CLASS_CACHE_SIZE:
                _class_vectors.clear()
            _class_vectors.update({(engine.name, prompts, str(label)): v for label, v in zip(missing, vectors)})
    elif progress is not None:
        progress(1, 1)
    return np.stack([_class_vectors[key] for key in keys]).astype(np.float32)


def _encode_class_vectors(engine: EmbeddingEngine, labels: list[str], prompts: tuple[str, ...],
                          progress: Progress | None) -> np.ndarray:
    texts = [t.replace("{}", label) for label in labels for t in prompts]
    emb = engine.encode_texts(texts, progress=progress).reshape(len(labels), len(prompts), -1)
    return l2_normalize(emb.mean(axis=1))


def _stored_class_vectors(engine: EmbeddingEngine, labels: list[str], prompts: tuple[str, ...],
                          progress: Progress | None) -> np.ndarray:
    """Class vectors of many prompts through the run store (keyed by engine, labels and templates)."""
    if len(labels) * len(prompts) < STORED_FROM_PROMPTS or engine.name.endswith("-random-init"):
        # few prompts: quick to encode again; a random-init model: its weights differ in every process
        return _encode_class_vectors(engine, labels, prompts, progress)
    from importlib.metadata import version

    from cvdemo import run_store

    key = run_store.run_key("clip-class-vectors", {"labels": labels, "templates": list(prompts)}, data="",
                            model=f"{engine.name} · torch {version('torch')}", version=CLASS_VECTORS_VERSION)
    run = run_store.store().get_or_compute(
        key, "clip-class-vectors",
        lambda: ({"labels": labels}, {"vectors": _encode_class_vectors(engine, labels, prompts, progress)}),
    )
    vectors = run.arrays.get("vectors")
    if vectors is None or vectors.shape[0] != len(labels):  # not what this key should hold: encode again
        return _encode_class_vectors(engine, labels, prompts, progress)
    if progress is not None:
        progress(1, 1)
    return vectors


def prompt_count(labels: Sequence[str], templates: str | Sequence[str]) -> int:
    return len(labels) * len(template_list(templates))


def warm_text_cache(engine: EmbeddingEngine, label_sets: Iterable[Sequence[str]] | None = None,
                    templates: Iterable[str] | None = None) -> int:
    """Encode the presets' (and CIFAR-10's) class vectors ahead of time; returns how many labels.

    For a warm-start step (none exists in cvdemo yet): run it once per server after the engine loads, so
    the first student to pick a preset with the 80-prompt ensemble does not wait for its prompts.
    """
    label_sets = list(LABEL_PRESETS.values()) if label_sets is None else list(label_sets)
    labels = list(dict.fromkeys(label for labels in label_sets for label in labels))
    for template in (TEMPLATE_CHOICES if templates is None else templates):
        class_text_embeddings(engine, labels, template)
    return len(labels)


def labels_without_words(engine: EmbeddingEngine, labels: Sequence[str]) -> list[str]:
    """Labels (or queries) in which the engine's text encoder finds no word, e.g. emoji only."""
    return [label for label in labels if not engine.has_words(label)]


def calibrate_none_threshold(
    engine: EmbeddingEngine, embedding_sets: Sequence[np.ndarray], template: str,
    unrelated: Sequence[str] = ("chair", "banana", "spaceship", "violin", "toothbrush", "umbrella", "pizza",
                                "keyboard", "lamp", "clock"),
    quantile: float = 0.9,
) -> float:
    """The cosine that at most ``1 − quantile`` of photos reach when no label fits: the ``quantile`` of
    each photo's best cosine among ``unrelated`` labels (photos chosen so none of those labels fits)."""
    best = np.concatenate([zero_shot(engine, e, list(unrelated), template).cosine.max(axis=1) for e in embedding_sets])
    return float(np.quantile(best, quantile))


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
    progress: Progress | None = None,
) -> ZeroShotResult:
    """Classify image embeddings ((dim,) or (N, dim)) among ``labels`` with prompt ``templates``.

    Returns raw cosine similarities, softmax probabilities at ``temperature`` (default: the
    engine's, for CLIP its learned ``1/logit_scale``) and the best label per image.
    """
    clean, notes = parse_labels(labels)
    wordless = labels_without_words(engine, clean)
    if wordless:
        notes.append(
            f"{', '.join(quoted(w) for w in wordless)} had no words the text encoder can read (emoji and symbols "
            "become one “unknown” token): such a label scores like any other unknown text, not like its meaning."
        )
    image_emb = np.atleast_2d(np.asarray(image_emb, dtype=np.float32))
    text_emb = class_text_embeddings(engine, clean, templates, progress)
    cosine = l2_normalize(image_emb) @ text_emb.T
    temperature = engine.default_temperature if temperature is None else float(temperature)
    return ZeroShotResult(clean, cosine, softmax(cosine, temperature), temperature, notes)
