"""The feature map: features projected to 2-D (PCA or t-SNE) so similar images land together."""

from __future__ import annotations

import numpy as np


def project_2d(X: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``(N, 2)`` map of the features: PCA (linear, fast) or t-SNE (neighbourhoods, slower)."""
    X = np.asarray(X, np.float32)
    n = len(X)
    if n < 2:
        raise ValueError("A map needs at least 2 images.")
    if method == "pca":
        from sklearn.decomposition import PCA

        out = PCA(n_components=min(2, n, X.shape[1]), random_state=seed).fit_transform(X)
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    if method == "tsne":
        if n < 4:
            raise ValueError("t-SNE needs at least 4 images; use PCA.")
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (n - 1) / 3))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine", random_state=seed)
        return tsne.fit_transform(X)
    raise ValueError(f"method must be 'pca' or 'tsne', not {method!r}")
