"""Few-shot classification from frozen pretrained features: embed once, then let neighbours vote.

The lecture's recipe: keep a pretrained network frozen, use it as a feature extractor, put a
simple classifier on top. Each piece is usable without Streamlit; this package's ``__init__``
is the door (``from cvdemo import fewshot as fs; fs.KNNClassifier``), one concept per file:

* ``extractor.py`` — :class:`FeatureExtractor`: a timm backbone (any stage, pooled, or the head;
  optionally behind an exported runtime) or another page's image tower (:class:`ImageEncoder`)
  turning images into L2-normalised vectors; :func:`backbone_status` says which backbones exist here.
* ``knn.py`` — :class:`KNNClassifier`: k nearest neighbours with the neighbours exposed, because
  they are the explanation of each prediction; :func:`pairwise_distances`.
* ``evaluation.py`` — :func:`leave_one_out`, :func:`accuracy_vs_shots`, :func:`confusion_matrix`,
  :func:`linear_probe`.
* ``projection.py`` — :func:`project_2d`: the feature map (PCA or t-SNE).
* ``examples.py`` — :class:`ExampleSet`: the user's classes of decoded images, keyed by
  :func:`image_digest`.
* ``embedding_cache.py`` — :class:`EmbeddingCache`: vectors keyed by (extractor, image digest),
  so changing k never recomputes an embedding.
* ``zipio.py`` — :func:`export_zip` / :func:`import_zip` move a set and its features between machines.
* ``samples.py`` — the ants/bees sample set and query images to try.
* ``figures.py`` — Plotly figure builders shared by the page and the Gradio demo.

torch, timm, scikit-learn and plotly are imported inside the functions that need them.
"""

from cvdemo.fewshot.embedding_cache import EmbeddingCache
from cvdemo.fewshot.evaluation import (
    LeaveOneOut,
    accuracy_vs_shots,
    confusion_matrix,
    leave_one_out,
    leave_one_out_accuracy,
    linear_probe,
)
from cvdemo.fewshot.examples import (
    MAX_CLASS_NAME,
    STORE_MAX_SIDE,
    Example,
    ExampleSet,
    ExampleSetError,
    clean_class_name,
    image_digest,
)
from cvdemo.fewshot.extractor import (
    DEFAULT_BACKBONE,
    ENCODER_BACKBONES,
    BackboneStatus,
    FeatureExtractor,
    ImageEncoder,
    LayerInfo,
    Progress,
    backbone_status,
    layer_key,
)
from cvdemo.fewshot.figures import (
    CLASS_COLOURS,
    confusion_figure,
    embedding_figure,
    layers_figure,
    probability_figure,
    shots_figure,
)
from cvdemo.fewshot.knn import METRICS, WEIGHTINGS, KNNClassifier, pairwise_distances
from cvdemo.fewshot.projection import project_2d
from cvdemo.fewshot.samples import SAMPLE_SET, load_sample_set, query_samples, sample_examples
from cvdemo.fewshot.zipio import EXPORT_FORMAT, EXPORT_VERSION, ImportResult, export_zip, import_zip

__all__ = [
    # extractor
    "DEFAULT_BACKBONE",
    "ENCODER_BACKBONES",
    "BackboneStatus",
    "FeatureExtractor",
    "ImageEncoder",
    "LayerInfo",
    "Progress",
    "backbone_status",
    "layer_key",
    # knn
    "METRICS",
    "WEIGHTINGS",
    "KNNClassifier",
    "pairwise_distances",
    # evaluation
    "LeaveOneOut",
    "accuracy_vs_shots",
    "confusion_matrix",
    "leave_one_out",
    "leave_one_out_accuracy",
    "linear_probe",
    # projection
    "project_2d",
    # examples
    "MAX_CLASS_NAME",
    "STORE_MAX_SIDE",
    "Example",
    "ExampleSet",
    "ExampleSetError",
    "clean_class_name",
    "image_digest",
    # embedding_cache
    "EmbeddingCache",
    # zipio
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ImportResult",
    "export_zip",
    "import_zip",
    # samples
    "SAMPLE_SET",
    "load_sample_set",
    "query_samples",
    "sample_examples",
    # figures
    "CLASS_COLOURS",
    "confusion_figure",
    "embedding_figure",
    "layers_figure",
    "probability_figure",
    "shots_figure",
]
