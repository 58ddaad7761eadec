"""Feature maps: vectors projected to 2-D (PCA or t-SNE) so similar images land together.

The one projection of the app: the Few-shot page's feature map and the CLIP page's image-and-text map
(:func:`cvdemo.clip.map_projection`) both come from here.
"""

from __future__ import annotations

import numpy as np


def pca_2d(X: np.ndarray, seed: int = 0) -> tuple[np.ndarray, tuple[float, float]]:
    """``(N, 2)`` PCA coordinates and the fraction of variance along each axis (0 for an axis the data lack)."""
    from sklearn.decomposition import PCA

    X = np.asarray(X, np.float32)
    pca = PCA(n_components=min(2, len(X), X.shape[1]), random_state=seed)
    xy = pca.fit_transform(X)
    ratio = [float(r) for r in pca.explained_variance_ratio_] + [0.0, 0.0]
    return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))), (ratio[0], ratio[1])


def project_2d(X: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``(N, 2)`` map of the features: PCA (linear, fast) or t-SNE (neighbourhoods, slower)."""
    X = np.asarray(X, np.float32)
    n = len(X)
    if n < 2:
        raise ValueError("A map needs at least 2 images.")
    if method == "pca":
        return pca_2d(X, seed)[0]
    if method == "tsne":
        if n < 4:
            raise ValueError("t-SNE needs at least 4 images; use PCA.")
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (n - 1) / 3))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine", random_state=seed)
        return tsne.fit_transform(X)
    raise ValueError(f"method must be 'pca' or 'tsne', not {method!r}")
