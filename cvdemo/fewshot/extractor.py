"""Few-shot classification from frozen pretrained features: embed once, then let neighbours vote.

The lecture's recipe: keep a pretrained network frozen, use it as a feature extractor, put a
simple classifier on top. Pieces, each usable without Streamlit:

* :class:`FeatureExtractor` — a timm backbone (or any object with an ``encode_images`` method,
  e.g. the CLIP page's image tower) turning images into L2-normalised vectors; ``layer`` picks
  an earlier stage (global-average pooled) to show that early features are generic.
* :class:`KNNClassifier` — k nearest neighbours with the neighbours exposed, because they are
  the explanation of each prediction; :func:`leave_one_out`, :func:`accuracy_vs_shots`,
  :func:`confusion_matrix`, :func:`linear_probe` for evaluation.
* :class:`ExampleSet` / :class:`EmbeddingCache` — the user's classes and a cache of vectors
  keyed by (extractor, image digest), so changing k never recomputes an embedding;
  :func:`export_zip` / :func:`import_zip` move both between machines.
* Plotly figure builders shared by the page and the Gradio demo.

torch, timm, scikit-learn and plotly are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from cvdemo import archives, runtime, weights
from cvdemo.backbones import BACKBONES, create_frozen
from cvdemo.images import ImageInputError, is_image_name, load_image

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go
    import torch

Progress = Callable[[int, int], None]  # (done, total)

METRICS = ("cosine", "euclidean")
WEIGHTINGS = ("uniform", "distance")
DEFAULT_BACKBONE = "efficientnet_lite0"
# Image towers of other pages that FeatureExtractor can wrap (registry names of cvdemo.weights).
ENCODER_BACKBONES: dict[str, str] = {
    "clip": "CLIP ViT-B/32 image tower",
    "mobileclip_s0": "MobileCLIP-S0 image tower",
}


# --- feature extraction ------------------------------------------------------------------


@runtime_checkable
class ImageEncoder(Protocol):
    """What :class:`FeatureExtractor` needs from a non-timm model (e.g. ``cvdemo.clip.ClipModel``).

    ``encode_images(images, batch_size=..., progress=...)`` returns an ``(N, D)`` array or tensor,
    one row per PIL image (normalised or not: the extractor L2-normalises it again). ``name``
    (optional, else the class name) goes into cache keys, so it must differ between models.
    ``FeatureExtractor("clip")`` builds ``cvdemo.clip.ClipModel("clip")`` itself.
    """

    name: str

    def encode_images(
        self, images: Sequence[Image.Image], batch_size: int = 32, progress: Progress | None = None
    ) -> Any: ...


@dataclass(frozen=True)
class LayerInfo:
    """One choice of feature layer: ``index`` into timm's ``feature_info`` or None for the head."""

    index: int | None
    label: str
    channels: int
    reduction: int | None  # input pixels per feature-map pixel (None: pooled head)


def _load_encoder(name: str, accelerated: bool = True) -> ImageEncoder:
    """The CLIP page's image encoder, once that page's module exists (``cvdemo.clip.ClipModel``)."""
    weights.resolve(name)  # missing weights: WeightsUnavailable with the registry's advice
    try:
        from cvdemo.clip import ClipModel  # type: ignore[import-not-found]
    except ImportError:
        raise weights.WeightsUnavailable(
            weights.get(name), "The CLIP module (cvdemo/clip.py) is not part of this installation yet."
        ) from None
    return ClipModel(name, accelerated=accelerated)


def _pooled_features_module(model: "torch.nn.Module") -> "torch.nn.Module":
    """Every stage's feature map (averaged over space) and the pooled head, from one forward pass.

    One exported graph then serves any layer choice on the page; the stage averages cost
    next to nothing beside the network itself.
    """
    import torch

    class PooledFeatures(torch.nn.Module):
        def __init__(self, backbone: torch.nn.Module) -> None:
            super().__init__()
            self.backbone = backbone
            self.stages = list(range(len(backbone.feature_info)))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            final, maps = self.backbone.forward_intermediates(x, indices=self.stages)
            return (*[fmap.mean(dim=(2, 3)) for fmap in maps], self.backbone.forward_head(final))

    return PooledFeatures(model).eval()


def _accelerated_backbone(name: str, pretrained: bool) -> "runtime.AcceleratedModel":
    """The backbone's pooled features behind an exported runtime (once per process and weights)."""
    import torch

    from cvdemo import cache

    pytorch = FeatureExtractor(name, pretrained=pretrained, accelerated=False)
    size = tuple(pytorch.data_config["input_size"])
    return runtime.accelerate(
        _pooled_features_module(cache.shared(create_frozen, name, pretrained, 0)),
        torch.zeros(1, *size),
        name=f"{name}-features" + ("" if pretrained else "-random-init"),
        parity_inputs=pytorch.preprocess(runtime.parity_images(), channels_last=False),
    )


class FeatureExtractor:
    """Images -> L2-normalised feature vectors from a frozen pretrained model.

    ``backbone`` is a name from :data:`cvdemo.backbones.BACKBONES` (timm; ImageNet weights via
    :mod:`cvdemo.weights`), a name from :data:`ENCODER_BACKBONES`, or any :class:`ImageEncoder`.
    ``layer`` (timm backbones only) is an index into the model's ``feature_info`` stages: that
    stage's feature map is global-average pooled; ``None`` is the model's own pooled head.
    ``accelerated`` runs the network through :func:`cvdemo.runtime.accelerate` (exported once,
    parity-checked; PyTorch when that is refused); ``backend_label`` says which runs.
    Raises :class:`cvdemo.weights.WeightsUnavailable` when pretrained weights are missing.
    """

    def __init__(
        self,
        backbone: str | ImageEncoder = DEFAULT_BACKBONE,
        layer: int | None = None,
        pretrained: bool = True,
        accelerated: bool = True,
    ):
        from cvdemo import cache

        self.layer = layer
        self.pretrained = pretrained
        self._model = None
        self._accelerated: runtime.AcceleratedModel | None = None
        self._encoder: ImageEncoder | None = None
        if isinstance(backbone, str):
            self.backbone = backbone
            if backbone in ENCODER_BACKBONES:
                self._encoder = cache.shared(_load_encoder, backbone, accelerated)
            elif backbone in BACKBONES:
                # num_classes=0: pooled features, no classifier; one copy shared by every layer's extractor
                self._model = cache.shared(create_frozen, backbone, pretrained, 0)
                self._prepare_preprocessing()
                if accelerated:  # shared by every layer's extractor: one export, one session
                    self._accelerated = cache.shared(_accelerated_backbone, backbone, pretrained)
            else:
                raise KeyError(f"Unknown backbone '{backbone}'. Known: {', '.join([*BACKBONES, *ENCODER_BACKBONES])}")
        elif callable(getattr(backbone, "encode_images", None)):  # duck typing: ``name`` is optional
            self._encoder = backbone
            self.backbone = str(getattr(backbone, "name", type(backbone).__name__))
        else:
            raise TypeError("backbone must be a backbone name or an object with encode_images(images, ...).")
        if self._encoder is not None and layer is not None:
            raise ValueError("Layer choice needs a timm backbone; an image encoder only gives its final embedding.")
        if layer is not None and not 0 <= layer < len(self.layers()) - 1:
            raise ValueError(f"Layer {layer} does not exist; choose 0..{len(self.layers()) - 2} or None (head).")

    def _prepare_preprocessing(self) -> None:
        """timm's eval transform in its prefetcher form: resize + crop per image to uint8, then
        normalise the whole batch at once. Per-image float ops on small tensors are slow when
        torch's threads compete with other processes; one batched op is not."""
        import timm
        import torch

        from cvdemo.backbones import data_config

        config = data_config(self._model)
        self._transform = timm.data.create_transform(**config, is_training=False, use_prefetcher=True)
        self._mean = torch.tensor(config["mean"]).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(config["std"]).view(1, 3, 1, 1) * 255

    def preprocess(self, images: Sequence[Image.Image], channels_last: bool = True) -> "torch.Tensor":
        """A normalised float batch exactly as timm's eval pipeline prepares it.

        Channels-last suits PyTorch's CPU convolutions; exported runtimes take plain NCHW.
        """
        import torch

        batch = torch.stack([self._transform(img) for img in images]).float()
        batch = batch.sub_(self._mean).div_(self._std)
        return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch

    @property
    def runtime_info(self) -> runtime.RuntimeInfo:
        """What computes the features, for the latency badge."""
        if self._encoder is not None:
            return getattr(self._encoder, "runtime_info", runtime.PYTORCH_RUNTIME)
        return self._accelerated.runtime_info if self._accelerated is not None else runtime.PYTORCH_RUNTIME

    @property
    def backend_label(self) -> str:
        """E.g. "OpenVINO", "PyTorch", or "PyTorch (accelerated path off: …)"."""
        return self.runtime_info.label

    @property
    def key(self) -> str:
        """Identifies the feature space: embeddings under different keys are not comparable."""
        return self.key_for(self.layer)

    def key_for(self, layer: int | None) -> str:
        return f"{self.backbone}/{layer_key(layer)}" + ("" if self.pretrained else "/random-init")

    def layers(self) -> list[LayerInfo]:
        """Stages from timm's ``feature_info`` (early = generic) then the pooled head (specific)."""
        if self._model is None:
            return [LayerInfo(None, "final embedding", 0, None)]
        stages = [
            LayerInfo(
                i,
                f"stage {i + 1}: {info['num_chs']} ch at 1/{info['reduction']} size",
                info["num_chs"],
                info["reduction"],
            )
            for i, info in enumerate(self._model.feature_info)
        ]
        head = LayerInfo(None, f"head: pooled {self._model.num_features}-d features", self._model.num_features, None)
        return [*stages, head]

    @property
    def data_config(self) -> dict:
        from cvdemo.backbones import data_config

        return data_config(self._model) if self._model is not None else {}

    def embed(self, images: Sequence[Any], batch_size: int = 32, progress: Progress | None = None) -> np.ndarray:
        """``(N, D)`` float32 L2-normalised features; images are PIL (or anything ``load_image`` reads)."""
        return self.embed_layers(images, [self.layer], batch_size, progress)[self.layer]

    def embed_layers(
        self,
        images: Sequence[Any],
        layers: Sequence[int | None],
        batch_size: int = 32,
        progress: Progress | None = None,
    ) -> dict[int | None, np.ndarray]:
        """Features of several layers from ONE forward pass per batch (for comparing layers)."""
        images = [img if isinstance(img, Image.Image) else load_image(img) for img in images]
        if self._encoder is not None:
            if list(layers) != [None]:
                raise ValueError("An image encoder only gives its final embedding (layer None).")
            vectors = np.asarray(self._encoder.encode_images(images, batch_size=batch_size, progress=progress))
            return {None: _l2_normalise(vectors.astype(np.float32, copy=False).reshape(len(images), -1))}
        import torch

        layers = list(dict.fromkeys(layers))
        chunks: dict[int | None, list[np.ndarray]] = {layer: [] for layer in layers}
        total = len(images)
        if progress:
            progress(0, total)
        exported = self._accelerated is not None and self._accelerated.accelerated
        with torch.inference_mode():
            for start in range(0, total, batch_size):
                batch = images[start : start + batch_size]
                x = self.preprocess(batch, channels_last=not exported)
                for layer, feats in self._forward(x, layers).items():
                    chunks[layer].append(torch.nn.functional.normalize(feats.float(), dim=1).numpy())
                if progress:
                    progress(min(start + batch_size, total), total)
        width = {layer: info.channels for info in self.layers() for layer in [info.index]}
        return {
            layer: np.concatenate(parts) if parts else np.zeros((0, width[layer]), np.float32)
            for layer, parts in chunks.items()
        }

    def _forward(self, x: "torch.Tensor", layers: list[int | None]) -> dict[int | None, "torch.Tensor"]:
        if self._accelerated is not None and self._accelerated.accelerated:
            outputs = self._accelerated(x)  # (stage 1, ..., stage n, head), all pooled
            return {layer: outputs[-1 if layer is None else layer] for layer in layers}
        model = self._model
        stages = sorted(layer for layer in layers if layer is not None)
        if not stages:
            return {None: model(x)}  # num_classes=0: the pooled pre-logits features
        if None in layers:
            final, maps = model.forward_intermediates(x, indices=stages)
            out: dict[int | None, torch.Tensor] = {None: model.forward_head(final)}
        else:  # no need to run the deeper blocks
            maps = model.forward_intermediates(x, indices=stages, intermediates_only=True, stop_early=True)
            out = {}
        for layer, fmap in zip(stages, maps):
            out[layer] = fmap.mean(dim=(2, 3))  # global average pool over the feature map
        return out


def layer_key(layer: int | None) -> str:
    return "head" if layer is None else f"stage{layer + 1}"


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class BackboneStatus:
    name: str
    label: str
    available: bool
    reason: str  # why not available (empty when it is)


def backbone_status() -> list[BackboneStatus]:
    """Every backbone the page can offer, and for the missing ones the sentence saying why."""
    rows = []
    entries = [(name, spec.label) for name, spec in BACKBONES.items()] + list(ENCODER_BACKBONES.items())
    for name, label in entries:
        try:
            weights.resolve(name, download=False)
            reason = ""
            if name in ENCODER_BACKBONES:
                from importlib.util import find_spec

                if find_spec("cvdemo.clip") is None:
                    reason = "The CLIP module (cvdemo/clip.py) is not part of this installation yet."
        except weights.WeightsUnavailable as exc:
            reason = str(exc)
        except KeyError:
            reason = "Not in the weights registry."
        rows.append(BackboneStatus(name, label, not reason, reason))
    return rows


# --- k nearest neighbours ------------------------------------------------------------------


def pairwise_distances(queries: np.ndarray, gallery: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """``(Q, N)`` distances: cosine distance ``1 - cos`` or Euclidean, computed by one matrix product."""
    queries = np.asarray(queries, np.float32)
    gallery = np.asarray(gallery, np.float32)
    if metric == "cosine":
        return 1.0 - _l2_normalise(queries) @ _l2_normalise(gallery).T
    if metric == "euclidean":
        sq = (queries**2).sum(1)[:, None] + (gallery**2).sum(1)[None, :] - 2.0 * queries @ gallery.T
        return np.sqrt(np.maximum(sq, 0.0))
    raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")


def _vote(distances: np.ndarray, codes: np.ndarray, n_classes: int, weighting: str) -> np.ndarray:
    """Class probabilities from neighbour labels (scikit-learn's rule, including zero distances)."""
    if weighting == "uniform":
        w = np.ones_like(distances, dtype=np.float64)
    else:
        with np.errstate(divide="ignore"):
            w = 1.0 / distances.astype(np.float64)
        exact = np.isinf(w)
        hit = exact.any(axis=1)  # a neighbour at distance 0 decides alone, as in scikit-learn
        w[hit] = exact[hit]
    proba = np.zeros((len(distances), n_classes))
    rows = np.repeat(np.arange(len(distances)), distances.shape[1])
    np.add.at(proba, (rows, codes.ravel()), w.ravel())
    return proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-300)


class KNNClassifier:
    """k-nearest-neighbour vote over stored feature vectors.

    The brute-force search is one matrix product: scikit-learn's ``NearestNeighbors`` gives the
    same answers but re-validates and re-normalises the whole gallery per query (≈75 ms for
    10,000 x 1280 here, vs ≈1 ms). Votes follow ``KNeighborsClassifier`` exactly; ``predict``
    additionally breaks ties in favour of the class of the nearer neighbours.
    """

    def __init__(self, k: int = 5, metric: str = "cosine", weighting: str = "uniform"):
        if k < 1:
            raise ValueError("k must be at least 1.")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {weighting!r}")
        self.k, self.metric, self.weighting = k, metric, weighting

    def fit(self, X: np.ndarray, y: Sequence[Any]) -> "KNNClassifier":
        X = np.asarray(X, np.float32)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y) or len(X) == 0:
            raise ValueError(f"Need X of shape (N, D) and N labels; got {X.shape} and {len(y)} labels.")
        self.classes_, self._codes = np.unique(y, return_inverse=True)
        self._X = _l2_normalise(X) if self.metric == "cosine" else X
        self._sq = (X**2).sum(1)
        return self

    @property
    def n_samples(self) -> int:
        return len(self._X)

    def _distances(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, np.float32).reshape(-1, self._X.shape[1])
        if self.metric == "cosine":
            return 1.0 - _l2_normalise(X) @ self._X.T
        sq = (X**2).sum(1)[:, None] + self._sq[None, :] - 2.0 * X @ self._X.T
        return np.sqrt(np.maximum(sq, 0.0))

    def kneighbors(
        self, X: np.ndarray | None = None, n_neighbors: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)`` of the nearest training vectors, nearest first.

        ``X=None`` queries the training set itself, each point excluding itself (leave-one-out),
        as in scikit-learn.
        """
        self_query = X is None
        d = self._distances(self._X if self_query else X)
        available = self.n_samples - (1 if self_query else 0)
        k = min(n_neighbors or self.k, available)
        if k < 1:
            raise ValueError("Not enough training vectors to find a neighbour.")
        if self_query:
            np.fill_diagonal(d, np.inf)
        if k < d.shape[1]:
            part = np.argpartition(d, k - 1, axis=1)[:, :k]
        else:
            part = np.tile(np.arange(d.shape[1]), (len(d), 1))
        if self.metric == "euclidean":
            # |q|²+|g|²-2q·g loses precision near 0 in float32: recompute the k winners exactly
            queries = self._X if self_query else np.asarray(X, np.float32).reshape(-1, self._X.shape[1])
            pd_ = np.linalg.norm(self._X[part] - queries[:, None, :], axis=2)
        else:
            pd_ = np.maximum(np.take_along_axis(d, part, axis=1), 0.0)
        order = np.lexsort((part, pd_), axis=1)  # by distance, then index: deterministic ties
        return np.take_along_axis(pd_, order, axis=1).astype(np.float32), np.take_along_axis(part, order, axis=1)

    def typical_distances(self) -> np.ndarray:
        """Each training vector's distance to its nearest other training vector: the yardstick
        for "this query is unlike every example" (kNN always answers with one of the classes)."""
        if self.n_samples < 2:
            return np.zeros(0, np.float32)
        return self.kneighbors(None, 1)[0][:, 0]

    def _proba_from(self, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return _vote(dist, self._codes[idx], len(self.classes_), self.weighting)

    def predict_proba(self, X: np.ndarray | None = None) -> np.ndarray:
        """``(N, C)`` vote shares, columns in ``classes_`` order."""
        return self._proba_from(*self.kneighbors(X))

    def predict(self, X: np.ndarray | None = None) -> np.ndarray:
        dist, idx = self.kneighbors(X)
        return self._decide(dist, idx)

    def _decide(self, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
        proba = self._proba_from(dist, idx)
        # Tie-break: a tiny bonus for the class owning the nearer neighbours (1-NN among tied).
        rank_bonus = np.zeros_like(proba)
        ranks = np.arange(idx.shape[1], 0, -1, dtype=np.float64)[None, :].repeat(len(idx), 0)
        rows = np.repeat(np.arange(len(idx)), idx.shape[1])
        np.add.at(rank_bonus, (rows, self._codes[idx].ravel()), ranks.ravel())
        score = proba + 1e-9 * rank_bonus / max(idx.shape[1] ** 2, 1)
        return self.classes_[score.argmax(axis=1)]


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


# --- the user's example set ----------------------------------------------------------------

STORE_MAX_SIDE = 1024  # larger photos are stored downscaled: every backbone resizes to <= ~300 px
MAX_CLASS_NAME = 40
_uid = itertools.count(1)


class ExampleSetError(ValueError):
    """A request on the example set that cannot be done; the message is shown as is."""


def image_digest(img: Image.Image) -> str:
    """Content hash of the decoded pixels: the same picture gets the same key however it was encoded."""
    h = hashlib.sha256(f"{img.mode}{img.size}".encode())
    h.update(img.tobytes())
    return h.hexdigest()[:24]


@dataclass
class Example:
    """One training image: its file bytes (for export), decoded RGB image and pixel digest."""

    name: str
    data: bytes
    image: Image.Image
    digest: str
    uid: int = field(default_factory=lambda: next(_uid))
    _thumb: Image.Image | None = field(default=None, repr=False)

    @classmethod
    def from_source(cls, name: str, src: Any) -> "Example":
        """Decode ``src`` (bytes, path, file, PIL, array); raises ImageInputError with a clear message."""
        raw: bytes | None = None
        if isinstance(src, (str, Path)):
            img = load_image(src)
            raw = Path(src).read_bytes()
        elif isinstance(src, (bytes, bytearray, memoryview)) or hasattr(src, "read"):
            if hasattr(src, "read"):
                if hasattr(src, "seek"):
                    src.seek(0)
                src = src.read()
            raw = bytes(src)
            buffer = io.BytesIO(raw)
            buffer.name = name  # so load_image's messages name the file
            img = load_image(buffer)
        else:
            img = load_image(src)
        if max(img.size) > STORE_MAX_SIDE:
            img = img.copy()
            img.thumbnail((STORE_MAX_SIDE, STORE_MAX_SIDE), Image.Resampling.LANCZOS)
            raw = None
        if raw is None:  # keep the invariant: decoding ``data`` gives exactly ``image``
            raw = _encode_png(img)
            img = load_image(raw)
        return cls(name=name, data=raw, image=img, digest=image_digest(img))

    @property
    def thumb(self) -> Image.Image:
        """A 160 px square (centre crop) so class grids line up."""
        if self._thumb is None:
            from PIL import ImageOps

            self._thumb = ImageOps.fit(self.image, (160, 160), Image.Resampling.BICUBIC)
        return self._thumb


def _encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def clean_class_name(name: str) -> str:
    """A class name as stored, or ExampleSetError saying what is wrong with it."""
    name = " ".join(str(name).split())
    if not name:
        raise ExampleSetError("Give the class a name.")
    if len(name) > MAX_CLASS_NAME:
        raise ExampleSetError(f"Class names can be at most {MAX_CLASS_NAME} characters.")
    if re.search(r"[/\\:]", name) or name in (".", ".."):
        raise ExampleSetError(f"'{name}': class names cannot contain / \\ or : (they become folder names in exports).")
    return name


class ExampleSet:
    """Named classes of example images, in the order the user created them."""

    def __init__(self) -> None:
        self.classes: dict[str, list[Example]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self.classes.values())

    def find_class(self, name: str) -> str | None:
        folded = " ".join(str(name).split()).casefold()
        return next((c for c in self.classes if c.casefold() == folded), None)

    def add_class(self, name: str) -> str:
        name = clean_class_name(name)
        existing = self.find_class(name)
        if existing is not None:
            raise ExampleSetError(f"There is already a class called '{existing}'; class names must be unique.")
        self.classes[name] = []
        return name

    def ensure_class(self, name: str) -> str:
        existing = self.find_class(name)
        return existing if existing is not None else self.add_class(name)

    def rename_class(self, old: str, new: str) -> str:
        if old not in self.classes:
            raise ExampleSetError(f"There is no class '{old}'.")
        new = clean_class_name(new)
        clash = self.find_class(new)
        if clash is not None and clash != old:
            raise ExampleSetError(f"There is already a class called '{clash}'; class names must be unique.")
        self.classes = {(new if c == old else c): v for c, v in self.classes.items()}
        return new

    def remove_class(self, name: str) -> None:
        self.classes.pop(name, None)

    def clear(self) -> None:
        self.classes.clear()

    def add_example(self, class_name: str, example: Example) -> str | None:
        """Add one decoded example; returns a note when it was a duplicate (and skipped)."""
        items = self.classes[class_name]
        if any(e.digest == example.digest for e in items):
            return f"{example.name} is already in '{class_name}', skipped."
        items.append(example)
        return None

    def add_images(self, class_name: str, sources: Iterable[tuple[str, Any]]) -> tuple[int, list[str]]:
        """Add ``(name, source)`` images to a class; bad ones are skipped with a sentence each.

        Returns (number added, messages). The class is created if needed.
        """
        class_name = self.ensure_class(class_name)
        added, messages = 0, []
        for name, src in sources:
            try:
                example = Example.from_source(name, src)
            except ImageInputError as exc:
                messages.append(f"'{class_name}': {exc}")
                continue
            note = self.add_example(class_name, example)
            if note:
                messages.append(note)
            else:
                added += 1
        return added, messages

    def remove_image(self, class_name: str, uid: int) -> None:
        if class_name in self.classes:
            self.classes[class_name] = [e for e in self.classes[class_name] if e.uid != uid]

    def problems(self) -> list[str]:
        """Why this set cannot train a classifier yet (empty list: ready)."""
        filled = [c for c, items in self.classes.items() if items]
        if len(filled) >= 2:
            return []
        if not self.classes:
            return ["Add at least 2 classes with at least 1 image each (or load the sample set)."]
        if len(filled) == 1:
            others = [c for c in self.classes if not self.classes[c]]
            hint = f" ('{others[0]}' is still empty)" if others else ""
            return [
                f"Only one class ('{filled[0]}') has images{hint}: a classifier needs at least 2 classes with images."
            ]
        return ["No class has images yet: add at least 1 image to each of at least 2 classes."]

    def empty_classes(self) -> list[str]:
        return [c for c, items in self.classes.items() if not items]

    def labelled(self) -> tuple[list[Example], list[str]]:
        """Examples and their labels, classes with images only, in class order."""
        examples, labels = [], []
        for c, items in self.classes.items():
            examples.extend(items)
            labels.extend([c] * len(items))
        return examples, labels

    def merge(self, other: "ExampleSet") -> tuple[int, list[str]]:
        added, messages = 0, []
        for c, items in other.classes.items():
            target = self.ensure_class(c)
            for example in items:
                note = self.add_example(target, example)
                if note:
                    messages.append(note)
                else:
                    added += 1
        return added, messages


class EmbeddingCache:
    """Vectors per (extractor key, image digest): each image is embedded once per feature space."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self._store: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.max_entries = max_entries
        self.computed = 0  # how many images were actually run through a network (for tests/UI)

    def __len__(self) -> int:
        return len(self._store)

    def get(self, key: str, digest: str) -> np.ndarray | None:
        vec = self._store.get((key, digest))
        if vec is not None:
            self._store.move_to_end((key, digest))
        return vec

    def put(self, key: str, digest: str, vector: np.ndarray) -> None:
        self._store[(key, digest)] = np.asarray(vector, np.float32)
        self._store.move_to_end((key, digest))
        while len(self._store) > self.max_entries:
            self._store.popitem(last=False)

    def missing(self, key: str, digests: Sequence[str]) -> list[int]:
        return [i for i, d in enumerate(digests) if (key, d) not in self._store]

    def embed(
        self,
        extractor: FeatureExtractor,
        images: Sequence[Image.Image],
        digests: Sequence[str] | None = None,
        batch_size: int = 32,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """``(N, D)`` features, computing only the images this extractor has not seen."""
        digests = list(digests) if digests is not None else [image_digest(img) for img in images]
        found = {d: v for d in digests if (v := self.get(extractor.key, d)) is not None}
        # the same picture twice in one call is embedded once
        todo = list(dict.fromkeys(d for d in digests if d not in found))
        if todo:
            first = {d: i for i, d in reversed(list(enumerate(digests)))}
            vectors = extractor.embed([images[first[d]] for d in todo], batch_size=batch_size, progress=progress)
            for d, v in zip(todo, vectors):
                self.put(extractor.key, d, v)
                found[d] = v
            self.computed += len(todo)
        if not digests:
            return np.zeros((0, 0), np.float32)
        return np.stack([found[d] for d in digests]).astype(np.float32, copy=False)

    def embed_layers(
        self,
        extractor: FeatureExtractor,
        images: Sequence[Image.Image],
        digests: Sequence[str],
        layers: Sequence[int | None],
        batch_size: int = 32,
        progress: Progress | None = None,
    ) -> dict[int | None, np.ndarray]:
        """Like :meth:`embed` for several layers: images missing any layer go through ONE pass."""
        keys = {layer: extractor.key_for(layer) for layer in layers}
        found = {(key, d): v for key in keys.values() for d in digests if (v := self.get(key, d)) is not None}
        todo = sorted({i for i, d in enumerate(digests) for key in keys.values() if (key, d) not in found})
        if todo:
            computed = extractor.embed_layers([images[i] for i in todo], list(layers), batch_size, progress)
            for layer, vectors in computed.items():
                for i, v in zip(todo, vectors):
                    self.put(keys[layer], digests[i], v)
                    found[(keys[layer], digests[i])] = v
            self.computed += len(todo)
        return {layer: np.stack([found[(key, d)] for d in digests]) for layer, key in keys.items()}

    def keys_for(self, digests: Iterable[str]) -> dict[str, dict[str, np.ndarray]]:
        """Every feature space with vectors for some of these digests: ``{key: {digest: vector}}``."""
        wanted = set(digests)
        out: dict[str, dict[str, np.ndarray]] = {}
        for (key, digest), vec in self._store.items():
            if digest in wanted:
                out.setdefault(key, {})[digest] = vec
        return out


# --- export / import -------------------------------------------------------------------------

EXPORT_FORMAT = "cvdemo-fewshot"
EXPORT_VERSION = 1
_SAFE_FILE = re.compile(r"[^A-Za-z0-9._ -]+")


def _export_name(example: Example, used: set[str]) -> str:
    stem = _SAFE_FILE.sub("_", PurePosixPath(example.name).stem)[:60] or "image"
    suffix = PurePosixPath(example.name).suffix.lower()
    if example.data[:8] == b"\x89PNG\r\n\x1a\n":
        suffix = ".png"
    elif not is_image_name(f"x{suffix}"):
        suffix = ".img"
    name = f"{stem}{suffix}"
    for n in itertools.count(2):
        if name not in used:
            break
        name = f"{stem}_{n}{suffix}"
    used.add(name)
    return name


def export_zip(examples: ExampleSet, cache: EmbeddingCache | None = None) -> bytes:
    """A zip a lecturer can import elsewhere: ``<class>/<image>`` folders (so any tool can read it),
    ``manifest.json`` (classes, files, digests) and ``embeddings.npz`` (every cached feature space)."""
    import zipfile

    manifest: dict[str, Any] = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "classes": {}, "embeddings": {}}
    arrays: dict[str, np.ndarray] = {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as archive:  # images are compressed already
        all_digests = []
        for class_name, items in examples.classes.items():
            used: set[str] = set()
            entries = []
            for example in items:
                path = f"{class_name}/{_export_name(example, used)}"
                archive.writestr(path, example.data)
                entries.append({"file": path, "name": example.name, "digest": example.digest})
                all_digests.append(example.digest)
            manifest["classes"][class_name] = entries
        if cache is not None:
            for i, (key, vectors) in enumerate(sorted(cache.keys_for(all_digests).items())):
                digests = sorted(vectors)
                arrays[f"vectors_{i}"] = np.stack([vectors[d] for d in digests]).astype(np.float32)
                arrays[f"digests_{i}"] = np.array(digests, dtype="U24")
                dim = int(arrays[f"vectors_{i}"].shape[1])
                manifest["embeddings"][key] = {"array": i, "count": len(digests), "dim": dim}
            if arrays:
                npz = io.BytesIO()
                np.savez_compressed(npz, **arrays)
                archive.writestr("embeddings.npz", npz.getvalue())
        archive.writestr("manifest.json", json.dumps(manifest, indent=1))
    return buf.getvalue()


@dataclass
class ImportResult:
    examples: ExampleSet
    embeddings: dict[tuple[str, str], np.ndarray]  # (extractor key, digest) -> vector
    messages: list[str]


def import_zip(src: bytes | Any) -> ImportResult:
    """Read an exported example set or any zip of ``<class>/<image>`` folders.

    Unsafe members (``../``, absolute paths, symlinks) are skipped and reported; a zip bomb or a
    non-zip raises :class:`cvdemo.archives.ArchiveError`. Embeddings are accepted only for images
    in the zip whose pixels match their digest, with a consistent shape and finite values.
    """
    contents = archives.read_zip(src)
    messages = list(contents.skipped)
    files = dict(contents.files)
    manifest_path = next((p for p in files if PurePosixPath(p).name == "manifest.json"), None)
    prefix = ""
    manifest: dict[str, Any] | None = None
    if manifest_path is not None:
        try:
            manifest = json.loads(files.pop(manifest_path).decode("utf-8"))
            if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            messages.append("manifest.json is not a cvdemo few-shot manifest; reading the class folders instead.")
            manifest = None
        prefix = str(PurePosixPath(manifest_path).parent)
        prefix = "" if prefix == "." else prefix + "/"
    npz_blob = files.pop(prefix + "embeddings.npz", None)
    result = ExampleSet()
    if manifest is not None:
        _import_manifest(manifest, files, prefix, result, messages)
    else:
        groups = archives.class_folders(archives.ZipContents(files, messages))
        for class_name, members in groups.items():
            members = {p: b for p, b in members.items() if not PurePosixPath(p).name.startswith(".")}  # .DS_Store & co
            if not members:
                continue
            try:
                target = result.ensure_class(class_name)
            except ExampleSetError as exc:
                messages.append(str(exc))
                continue
            _, notes = result.add_images(target, [(PurePosixPath(p).name, blob) for p, blob in sorted(members.items())])
            messages.extend(notes)
    embeddings = _import_embeddings(manifest, npz_blob, result, messages) if manifest is not None else {}
    if not len(result):
        messages.append("The zip holds no usable images in class folders (expected <class>/<image> inside the zip).")
    return ImportResult(result, embeddings, messages)


def _import_manifest(
    manifest: dict, files: dict[str, bytes], prefix: str, out: ExampleSet, messages: list[str]
) -> None:
    classes = manifest.get("classes")
    if not isinstance(classes, dict):
        messages.append("manifest.json lists no classes.")
        return
    for class_name, entries in classes.items():
        try:
            target = out.ensure_class(str(class_name))
        except ExampleSetError as exc:
            messages.append(str(exc))
            continue
        for entry in entries if isinstance(entries, list) else []:
            path = str(entry.get("file", "")) if isinstance(entry, dict) else ""
            blob = files.get(prefix + path)
            if blob is None:
                messages.append(
                    f"{path or 'an entry'} is listed in manifest.json but is not in the zip (or was unsafe)."
                )
                continue
            name = str(entry.get("name") or PurePosixPath(path).name)
            _, notes = out.add_images(target, [(name, blob)])
            messages.extend(notes)


def _import_embeddings(
    manifest: dict, npz_blob: bytes | None, examples: ExampleSet, messages: list[str]
) -> dict[tuple[str, str], np.ndarray]:
    spaces = manifest.get("embeddings") or {}
    if not spaces or npz_blob is None:
        return {}
    try:
        npz = np.load(io.BytesIO(npz_blob), allow_pickle=False)  # never unpickle objects from a user file
    except Exception:
        messages.append("embeddings.npz cannot be read; the features will be recomputed.")
        return {}
    present = {e.digest for items in examples.classes.values() for e in items}
    out: dict[tuple[str, str], np.ndarray] = {}
    with npz:
        for key, info in spaces.items():
            try:
                i = int(info["array"])
                vectors = np.asarray(npz[f"vectors_{i}"])
                digests = np.asarray(npz[f"digests_{i}"])
                well_formed = vectors.dtype.kind == "f" and vectors.ndim == 2
                if not well_formed or digests.dtype.kind != "U" or len(digests) != len(vectors):
                    raise ValueError("shapes")
                if not np.isfinite(vectors).all():
                    raise ValueError("non-finite")
            except Exception:
                messages.append(f"Embeddings for {key} are malformed and were ignored (they will be recomputed).")
                continue
            for digest, vector in zip(digests.tolist(), vectors.astype(np.float32)):
                if digest in present:
                    out[(str(key), digest)] = vector
    return out


# --- sample data -------------------------------------------------------------------------------

SAMPLE_SET = "hymenoptera_data"


def sample_examples(per_class: int = 10, split: str = "train") -> list[tuple[str, Path]]:
    """``(class, path)`` pairs from the ants/bees set, spread evenly over each sorted class folder.

    Raises :class:`cvdemo.datasets.DataUnavailable` when the data set is not on this machine.
    """
    from cvdemo.datasets import dataset_path, image_folder

    pairs = image_folder(dataset_path(SAMPLE_SET) / split)
    out = []
    for label in dict.fromkeys(label for _, label in pairs):
        paths = [p for p, lab in pairs if lab == label]
        take = np.unique(np.linspace(0, len(paths) - 1, min(per_class, len(paths))).round().astype(int))
        out.extend((label, paths[i]) for i in take)
    return out


def query_samples(per_class: int = 3) -> dict[str, Path]:
    """Images to try as queries: validation ants/bees (never in the sample training set) and
    the photos installed packages ship."""
    from cvdemo.datasets import DataUnavailable, packaged_images

    out: dict[str, Path] = {}
    try:
        for label, path in sample_examples(per_class, "val"):
            out[f"{label} (val): {path.name}"] = path
    except DataUnavailable:
        pass
    return out | packaged_images()


def load_sample_set(per_class: int = 10, split: str = "train") -> ExampleSet:
    examples = ExampleSet()
    for label, path in sample_examples(per_class, split):
        examples.add_images(label, [(path.name, path)])
    return examples


# --- figures (plotly; shared by the page and the Gradio demo) ---------------------------------


CLASS_COLOURS = [  # D3's category10: distinct hues, unlike the theme's shades of one colour
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]


def probability_figure(classes: Sequence[str], proba: Sequence[float]) -> "go.Figure":
    import plotly.graph_objects as go

    order = np.argsort(proba)
    fig = go.Figure(
        go.Bar(
            x=[float(proba[i]) for i in order],
            y=[str(classes[i]) for i in order],
            orientation="h",
            text=[f"{proba[i]:.0%}" for i in order],
            textposition="auto",
            marker_color=["#1f77b4" if i == order[-1] else "#9ecae1" for i in order],
        )
    )
    fig.update_layout(
        xaxis=dict(range=[0, 1], tickformat=".0%", title="share of the k neighbours' vote"),
        height=max(160, 60 + 40 * len(classes)),
        margin=dict(l=10, r=10, t=10, b=40),
    )
    return fig


def confusion_figure(matrix: np.ndarray, labels: Sequence[str]) -> "go.Figure":
    import plotly.express as px

    fig = px.imshow(
        matrix,
        x=[str(label) for label in labels],
        y=[str(label) for label in labels],
        text_auto=True,
        color_continuous_scale="Blues",
        labels=dict(x="predicted", y="true", color="images"),
    )
    fig.update_layout(height=max(260, 80 + 50 * len(labels)), margin=dict(l=10, r=10, t=10, b=10))
    return fig


def shots_figure(curve: "pd.DataFrame", chance: float | None = None) -> "go.Figure":
    import plotly.graph_objects as go

    fig = go.Figure()
    for (method, part), colour in zip(curve.groupby("method", sort=False), CLASS_COLOURS):
        fig.add_trace(
            go.Scatter(
                x=part["shots"],
                y=part["accuracy"],
                error_y=dict(type="data", array=part["std"], visible=True),
                mode="lines+markers",
                name=str(method),
                line_color=colour,
            )
        )
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dot", annotation_text="chance", line_color="gray")
    fig.update_layout(
        xaxis_title="training images per class",
        yaxis=dict(title="accuracy on the other images", range=[0, 1.02], tickformat=".0%"),
        height=360,
        margin=dict(l=10, r=10, t=10, b=10),
        legend=dict(orientation="h", y=1.08),
    )
    return fig


def embedding_figure(
    xy: np.ndarray,
    labels: Sequence[str],
    names: Sequence[str],
    thumbs: Sequence[Image.Image] | None = None,
    query_xy: np.ndarray | None = None,
) -> "go.Figure":
    """Scatter coloured by class; with ``thumbs`` each point also shows its picture on the map."""
    import plotly.express as px

    xy = np.asarray(xy, np.float32)
    fig = px.scatter(
        x=xy[:, 0],
        y=xy[:, 1],
        color=[str(label) for label in labels],
        hover_name=list(names),
        custom_data=[np.arange(len(xy))],  # the example's index, returned by selections
        labels=dict(x="dimension 1", y="dimension 2", color="class"),
        color_discrete_sequence=CLASS_COLOURS,
    )
    fig.update_traces(marker=dict(size=11, line=dict(width=1, color="white")))
    if thumbs is not None and len(xy):
        span = float(max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]), 1e-6))
        size = span / max(6.0, math.sqrt(len(xy)) * 1.6)
        for (x, y), thumb in zip(xy, thumbs):
            fig.add_layout_image(
                source=thumb, x=float(x), y=float(y), xref="x", yref="y", sizex=size, sizey=size,
                xanchor="center", yanchor="middle", layer="below", opacity=0.9,
            )
    if query_xy is not None:
        fig.add_scatter(
            x=[float(query_xy[0])], y=[float(query_xy[1])], mode="markers", name="query",
            marker=dict(symbol="star", size=20, color="black"),
        )
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def layers_figure(rows: Sequence[tuple[str, float]], chance: float | None = None) -> "go.Figure":
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=[r[0] for r in rows], y=[r[1] for r in rows], text=[f"{r[1]:.0%}" for r in rows]))
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dot", annotation_text="chance", line_color="gray")
    fig.update_layout(
        yaxis=dict(title="leave-one-out accuracy", range=[0, 1.02], tickformat=".0%"),
        height=320,
        margin=dict(l=10, r=10, t=10, b=10),
    )
    return fig
