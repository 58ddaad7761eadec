"""How good is the classifier: leave-one-out, confusion matrix, a linear probe, accuracy vs shots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from cvdemo.fewshot.knn import KNNClassifier

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class LeaveOneOut:
    """Each training image classified by all the others."""

    accuracy: float
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray
    classes: np.ndarray


def leave_one_out(
    X: np.ndarray, y: Sequence[Any], k: int = 5, metric: str = "cosine", weighting: str = "uniform"
) -> LeaveOneOut:
    """Leave-one-out evaluation of kNN in one distance matrix (no refitting per image)."""
    y = np.asarray(y)
    if len(y) < 2:
        raise ValueError("Leave-one-out needs at least 2 images.")
    knn = KNNClassifier(k, metric, weighting).fit(X, y)
    dist, idx = knn.kneighbors(None)
    pred = knn._decide(dist, idx)
    return LeaveOneOut(float((pred == y).mean()), y, pred, knn._proba_from(dist, idx), knn.classes_)


def leave_one_out_accuracy(
    X: np.ndarray, y: Sequence[Any], k: int = 5, metric: str = "cosine", weighting: str = "uniform"
) -> float:
    return leave_one_out(X, y, k, metric, weighting).accuracy


def confusion_matrix(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any]) -> np.ndarray:
    """Rows = true class, columns = predicted class, in ``labels`` order (scikit-learn)."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    return sk_confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(labels))


def linear_probe(X: np.ndarray, y: Sequence[Any], C: float = 10.0):
    """Logistic regression on the frozen features: the other classic "classifier on top".

    Features are unit vectors, so the weights need room: C=10 (weak L2) is a sound default
    for a handful of images per class.
    """
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000).fit(np.asarray(X, np.float32), np.asarray(y))


def accuracy_vs_shots(
    X: np.ndarray,
    y: Sequence[Any],
    shots: Sequence[int] = (1, 2, 5, 10, 20),
    repeats: int = 10,
    k: int = 5,
    metric: str = "cosine",
    weighting: str = "uniform",
    X_test: np.ndarray | None = None,
    y_test: Sequence[Any] | None = None,
    probe: bool = True,
    seed: int = 0,
) -> "pd.DataFrame":
    """Learning curve: draw ``shots`` training images per class ``repeats`` times, score the rest.

    Without a test set, the images not drawn are the test set, so a shot count is kept only if
    every class has more images than that. kNN uses ``k = min(k, training images)``. Returns a
    tidy frame: ``shots, method, accuracy, std, runs, n_test``.
    """
    import pandas as pd

    X = np.asarray(X, np.float32)
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError("The learning curve needs at least 2 classes.")
    external = X_test is not None
    if external:
        X_test, y_test = np.asarray(X_test, np.float32), np.asarray(y_test)
    limit = counts.min() if external else counts.min() - 1
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y == c) for c in classes]
    rows = []
    for s in sorted({int(s) for s in shots if 1 <= s <= limit}):
        scores: dict[str, list[float]] = {"kNN": []} | ({"linear probe": []} if probe else {})
        n_test = 0
        for _ in range(repeats):
            train = np.concatenate([rng.choice(members, s, replace=False) for members in by_class])
            if external:
                Xt, yt = X_test, y_test
            else:
                rest = np.setdiff1d(np.arange(len(y)), train)
                Xt, yt = X[rest], y[rest]
            n_test = len(yt)
            knn = KNNClassifier(min(k, len(train)), metric, weighting).fit(X[train], y[train])
            scores["kNN"].append(float((knn.predict(Xt) == yt).mean()))
            if probe:
                scores["linear probe"].append(float((linear_probe(X[train], y[train]).predict(Xt) == yt).mean()))
        for method, values in scores.items():
            rows.append(
                {
                    "shots": s,
                    "method": method,
                    "accuracy": float(np.mean(values)),
                    "std": float(np.std(values)),
                    "runs": len(values),
                    "n_test": n_test,
                }
            )
    return pd.DataFrame(rows, columns=["shots", "method", "accuracy", "std", "runs", "n_test"])
