"""Zero-shot classification and image search in a joint image-text embedding space.

Two engines share one small API (``name``, ``label``, ``dim``, ``encode_images``, ``encode_texts``):
:class:`ClipModel` (a real CLIP on open_clip) and :class:`ConSEEngine` (the offline stand-in, ConSE,
Norouzi et al. 2014). On top of any engine: zero-shot classification, a gallery index persisted on disk
by file hash, a 2-D map and evaluation. Heavy libraries (torch, open_clip, timm, sentence-transformers)
are imported lazily. This package is the stable door: ``from cvdemo import clip; clip.ImageIndex``.

Where things are:

- ``embedding_engine.py`` — :class:`EmbeddingEngine`, the shared engine API (batching, latency worker, text cache)
- ``clip_model.py`` — :class:`ClipModel` on open_clip, :data:`CLIP_MODELS`
- ``conse.py`` — :class:`ConSEEngine`, ImageNet classifier + sentence embeddings
- ``engines.py`` — choosing an engine: :func:`available_engines`, :func:`create_engine`, :func:`load_engine`
- ``prompts.py`` — labels, prompt templates (80-prompt ensemble), queries, presets and their limits; user text shown literally
- ``zero_shot.py`` — :func:`zero_shot`, :class:`ZeroShotResult`, :func:`class_text_embeddings` (cached per engine and
  template), :func:`warm_text_cache`, :func:`calibrate_none_threshold`, :func:`softmax`
- ``gallery.py`` — :class:`Gallery` from files, a zip or a folder; :func:`display_thumbnail` (pictures keyed by :func:`cvdemo.images.fingerprint`)
- ``samples.py`` — sample galleries and zero-shot sample photos on this machine
- ``embedding_store.py`` — :class:`EmbeddingStore`, the on-disk embedding cache (``.npz`` per engine)
- ``image_index.py`` — :class:`ImageIndex`, the searchable gallery index (:class:`SearchHit`, :class:`AddReport`)
- ``embedding_map.py`` — the 2-D map: :func:`map_projection` (PCA from :mod:`cvdemo.projection`), :func:`map_figure`
- ``evaluation.py`` — :func:`evaluate_zero_shot`, :func:`knn_few_shot` on a labeled gallery
- ``figures.py`` — :func:`zero_shot_figure` (the confusion matrix: :func:`cvdemo.figures.confusion_figure`)
- ``pairs.py`` — verification pairs: :data:`CHANGES` (crop, resize, JPEG, ...), :func:`build_pairs`, :class:`PairSet`
- ``verify.py`` — :class:`Embedder` (engine or few-shot backbone), :func:`verify`, :func:`evaluate_pairs` (ROC, AUC, EER)
- ``verification_head.py`` — :func:`train_for_verification`: a projection head with the (corrected) pair or triplet loss
- ``verification_figures.py`` — :func:`roc_figure`, :func:`kinds_figure`, :func:`loss_figure`
- ``page_state.py`` — the CLIP page's session state as typed dataclasses
- ``_common.py`` — :class:`ClipInputError` (student-worded), the progress callback type, L2 normalisation
"""

from __future__ import annotations

from cvdemo.clip._common import ClipInputError, Progress
from cvdemo.clip.clip_model import CLIP_MODELS, ClipModel, ClipSpec
from cvdemo.clip.conse import ConSEEngine
from cvdemo.clip.embedding_engine import SMALL_BATCH, EmbeddingEngine
from cvdemo.clip.embedding_map import Projection, map_figure, map_projection
from cvdemo.clip.embedding_store import EmbeddingStore, default_index_dir
from cvdemo.clip.engines import (
    ENGINE_LABELS,
    ENGINE_ORDER,
    available_engines,
    create_engine,
    engine_available,
    load_engine,
)
from cvdemo.clip.evaluation import FewShotScore, ZeroShotEval, evaluate_zero_shot, knn_few_shot
from cvdemo.clip.figures import zero_shot_figure
from cvdemo.clip.gallery import (
    THUMB_SIZE,
    Gallery,
    GalleryImage,
    display_thumbnail,
    gallery_from_files,
    gallery_from_folder,
    gallery_from_zip,
)
from cvdemo.clip.image_index import FAISS_MIN_ITEMS, AddReport, ImageIndex, SearchHit
from cvdemo.clip.prompts import (
    ENSEMBLE,
    LABEL_PRESETS,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_QUERY_CHARS,
    TEMPLATE_CHOICES,
    clean_query,
    imagenet_templates,
    md_literal,
    plot_literal,
    quoted,
    parse_labels,
    template_list,
)
from cvdemo.clip.samples import (
    SAMPLE_GALLERIES,
    SampleGallery,
    available_sample_galleries,
    sample_gallery,
    zero_shot_samples,
)
from cvdemo.clip.page_state import (
    FastSearchData,
    FastSearchState,
    GalleryState,
    HeadState,
    MapMemo,
    VerificationState,
    ZeroShotEvalState,
)
from cvdemo.clip.pairs import CHANGE_HELP, CHANGES, CLASS, LEVELS, PHOTO, PairSet, apply_change, build_pairs
from cvdemo.clip.verification_figures import kinds_figure, loss_figure, roc_figure
from cvdemo.clip.verification_head import LOSSES, PAIR, TRIPLET, HeadTraining, split_photos, train_for_verification, train_head
from cvdemo.clip.verify import (
    VERIFICATION_THRESHOLDS,
    Embedder,
    KindScore,
    VerificationEval,
    Verdict,
    default_verification_threshold,
    embedder_choices,
    embedder_for,
    evaluate_cosines,
    evaluate_pairs,
    verdict_text,
    verify,
)
from cvdemo.clip.zero_shot import (
    ZeroShotResult,
    calibrate_none_threshold,
    class_text_embeddings,
    labels_without_words,
    prompt_count,
    softmax,
    warm_text_cache,
    zero_shot,
)

__all__ = [
    # errors and types
    "ClipInputError", "Progress",
    # engines
    "EmbeddingEngine", "SMALL_BATCH", "ClipModel", "ClipSpec", "CLIP_MODELS", "ConSEEngine",
    "ENGINE_ORDER", "ENGINE_LABELS", "engine_available", "available_engines", "create_engine", "load_engine",
    # prompts and zero-shot
    "ENSEMBLE", "TEMPLATE_CHOICES", "LABEL_PRESETS", "MAX_LABELS", "MAX_LABEL_CHARS", "MAX_QUERY_CHARS",
    "imagenet_templates", "template_list", "parse_labels", "clean_query", "md_literal", "quoted", "plot_literal",
    "ZeroShotResult", "class_text_embeddings", "softmax", "zero_shot", "prompt_count", "warm_text_cache",
    "labels_without_words", "calibrate_none_threshold",
    # galleries, samples, the index
    "Gallery", "GalleryImage", "THUMB_SIZE", "display_thumbnail",
    "gallery_from_files", "gallery_from_zip", "gallery_from_folder",
    "SampleGallery", "SAMPLE_GALLERIES", "available_sample_galleries", "sample_gallery", "zero_shot_samples",
    "EmbeddingStore", "default_index_dir",
    "ImageIndex", "AddReport", "SearchHit", "FAISS_MIN_ITEMS",
    # map, evaluation, figures
    "Projection", "map_projection", "map_figure",
    "ZeroShotEval", "FewShotScore", "evaluate_zero_shot", "knn_few_shot",
    "zero_shot_figure",
    # verification
    "CHANGES", "CHANGE_HELP", "LEVELS", "PHOTO", "CLASS", "PairSet", "apply_change", "build_pairs",
    "Embedder", "embedder_for", "embedder_choices", "Verdict", "verify", "verdict_text", "VERIFICATION_THRESHOLDS", "default_verification_threshold", "KindScore", "VerificationEval", "evaluate_cosines", "evaluate_pairs",
    "LOSSES", "PAIR", "TRIPLET", "HeadTraining", "split_photos", "train_head", "train_for_verification",
    "roc_figure", "kinds_figure", "loss_figure",
    # the page's session state
    "GalleryState", "ZeroShotEvalState", "MapMemo", "VerificationState", "HeadState", "FastSearchData",
    "FastSearchState",
]
