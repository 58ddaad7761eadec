"""Evaluation on a labeled gallery: zero-shot top-1 accuracy and confusion, kNN with a few labeled shots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cvdemo.clip._common import ClipInputError
from cvdemo.clip.embedding_engine import EmbeddingEngine
from cvdemo.clip.prompts import ENSEMBLE
from cvdemo.clip.zero_shot import zero_shot


@dataclass
class ZeroShotEval:
    template: str
    accuracy: float
    classes: list[str]
    confusion: np.ndarray  # (C, C) rows = true class, columns = predicted
    predictions: list[str]


def evaluate_zero_shot(
    engine: EmbeddingEngine,
    embeddings: np.ndarray,
    true_labels: Sequence[str],
    classes: Sequence[str] | None = None,
    templates: str | Sequence[str] = ENSEMBLE,
) -> ZeroShotEval:
    """Top-1 zero-shot accuracy of image ``embeddings`` against their ``true_labels`` used as prompts."""
    from sklearn.metrics import confusion_matrix

    if len(embeddings) == 0 or len(embeddings) != len(true_labels):
        raise ClipInputError("Evaluation needs labeled images (one label per embedding).")
    classes = sorted(set(true_labels)) if classes is None else list(classes)
    result = zero_shot(engine, embeddings, classes, templates)
    predicted = result.best
    accuracy = float(np.mean([p == t for p, t in zip(predicted, true_labels)]))
    confusion = confusion_matrix(list(true_labels), predicted, labels=result.labels)
    name = templates if isinstance(templates, str) else " | ".join(templates)
    return ZeroShotEval(name, accuracy, result.labels, confusion, predicted)


@dataclass
class FewShotScore:
    shots: int
    accuracy: float  # mean over trials
    std: float
    n_query: int
    trials: int


def knn_few_shot(
    embeddings: np.ndarray,
    labels: Sequence[str],
    shots: Sequence[int] = (1, 5, 10),
    trials: int = 5,
    neighbors: int = 1,
    seed: int = 0,
) -> list[FewShotScore]:
    """kNN with ``shots`` labeled examples per class (the rest are queries), averaged over random draws."""
    from sklearn.neighbors import KNeighborsClassifier

    labels_arr = np.asarray(list(labels), dtype=object)
    classes = sorted(set(labels_arr.tolist()))
    rng = np.random.default_rng(seed)
    scores = []
    for s in shots:
        per_class = {c: np.flatnonzero(labels_arr == c) for c in classes}
        if any(len(idx) <= s for idx in per_class.values()):
            continue  # not enough images left to query
        accs, n_query = [], 0
        for _ in range(trials):
            support = np.concatenate([rng.choice(idx, s, replace=False) for idx in per_class.values()])
            query = np.setdiff1d(np.arange(len(labels_arr)), support)
            knn = KNeighborsClassifier(n_neighbors=min(neighbors, len(support)), metric="cosine", algorithm="brute")
            knn.fit(embeddings[support], labels_arr[support])
            accs.append(float((knn.predict(embeddings[query]) == labels_arr[query]).mean()))
            n_query = len(query)
        scores.append(FewShotScore(int(s), float(np.mean(accs)), float(np.std(accs)), n_query, trials))
    return scores
