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
* :func:`project_2d` (from :mod:`cvdemo.projection`, the app's one 2-D projection): the feature map (PCA or t-SNE).
* ``examples.py`` — :class:`ExampleSet`: the user's classes of decoded images, keyed by
  :func:`cvdemo.images.fingerprint`.
* ``embedding_cache.py`` — :class:`EmbeddingCache`: vectors keyed by (extractor, image digest),
  so changing k never recomputes an embedding.
* ``zipio.py`` — :func:`export_zip` / :func:`import_zip` move a set and its features between machines.
* ``samples.py`` — the ants/bees sample set and query images to try.
* ``figures.py`` — Plotly figure builders shared by the page and the Gradio demo.
* ``intervals.py`` — :func:`accuracy_estimate`: every accuracy with its n and a 95% (Wilson) interval.

The transfer-learning ladder (kNN → linear probe → new head → unfreeze with lower learning rates):

* ``augment.py`` — :class:`AugmentConfig` and the ``torchvision.transforms.v2`` pipeline; seeded views.
* ``network.py`` — a timm backbone cut into stages, :func:`classifier_head`, :func:`fine_tune_network`
  with per-stage parameter groups (base LR = head LR / factor); :class:`LadderError`.
* ``training.py`` — :func:`fit`: the shared AdamW loop with per-epoch held-out accuracy.
* ``view_bank.py`` — :class:`ViewBank`: frozen outputs of augmented views, computed once for every rung.
* :class:`BackgroundJob` (from :mod:`cvdemo.jobs`, the app's one job type): long work in a thread, observable and stoppable.
* ``ladder.py`` — :class:`LadderConfig`, :class:`LadderRun`, :func:`transfer_ladder` (the table).
* ``evaluation_plan.py`` — :func:`plan_evaluation` (held-out split or cross-validation),
  :func:`held_out_data` (the images each side, as the page chose), :class:`CrossValidatedLadder`.
* ``ladder_shots.py`` — :class:`ShotsRun` / :func:`ladder_vs_shots` (accuracy vs shots for every
  rung) and :func:`augmentation_effect` (with vs without augmentation).
* ``model_io.py`` — :class:`FineTunedClassifier`: export to safetensors / ONNX (accelerated runtime,
  parity-checked) and :func:`load_classifier` (pickles refused, self-check on load).
* ``ood.py`` — :func:`calibrate_ood`: the "unlike every example" warning calibrated on held-out data.
* ``ladder_figures.py`` — the ladder's figures (curves, table bars, shots, augmentation, OOD).
* ``session.py`` — :class:`FewshotSession`: the page's typed session state.

torch, timm, scikit-learn and plotly are imported inside the functions that need them.
"""

from cvdemo.fewshot.augment import (
    DEFAULT_AUGMENTATION,
    NO_AUGMENTATION,
    AugmentConfig,
    augmented_view,
    augmented_views,
    build_augmentation,
    view_grid,
)
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
    DuplicateNote,
    Example,
    ExampleSet,
    ExampleSetError,
    clean_class_name,
    summarise_notes,
)
from cvdemo.fewshot.evaluation_plan import (
    CrossValidatedLadder,
    EvaluationPlan,
    HeldOutData,
    held_out_data,
    plan_evaluation,
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
from cvdemo.figures import confusion_figure  # the app's one (CLIP's evaluation draws it too)
from cvdemo.fewshot.figures import (
    CLASS_COLOURS,
    embedding_figure,
    integer_shot_axis,
    layers_figure,
    probability_figure,
    shots_figure,
)
from cvdemo.fewshot.intervals import (
    AccuracyEstimate,
    Spread,
    accuracy_estimate,
    estimate_from,
    per_class_estimates,
    spread,
)
from cvdemo.jobs import BackgroundJob
from cvdemo.fewshot.knn import METRICS, WEIGHTINGS, KNNClassifier, pairwise_distances
from cvdemo.fewshot.ladder import (
    METHOD_LABELS,
    METHODS,
    STARTS,
    LadderConfig,
    LadderRun,
    RungResult,
    check_data,
    describe_results,
    display_table,
    shared_ladder,
    transfer_ladder,
)
from cvdemo.fewshot.ladder_figures import curves_figure, effect_figure, ladder_figure, ladder_shots_figure, ood_figure
from cvdemo.fewshot.ladder_shots import SHOTS, ShotsRun, augmentation_effect, describe_curve, ladder_vs_shots
from cvdemo.fewshot.model_io import (
    ClassifierSpec,
    FineTunedClassifier,
    ModelFileError,
    OnnxClassifier,
    load_classifier,
)
from cvdemo.fewshot.network import (
    LadderError,
    backbone_stages,
    classifier_head,
    count_parameters,
    fine_tune_network,
    head_from_linear_probe,
)
from cvdemo.fewshot.ood import OODRule, calibrate_ood, nearest_distance_rule, reference_bank, reference_photos
from cvdemo.projection import project_2d
from cvdemo.fewshot.samples import (
    SAMPLE_SET,
    is_sample_classes,
    load_sample_set,
    query_samples,
    sample_examples,
    validation_images,
)
from cvdemo.fewshot.session import EffectResult, EmbedSpeed, FewshotSession, LadderSession, LoadedModel, Note
from cvdemo.fewshot.training import EpochRecord, FitSettings, fit
from cvdemo.fewshot.view_bank import ViewBank
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
    "DuplicateNote",
    "summarise_notes",
    "Example",
    "ExampleSet",
    "ExampleSetError",
    "clean_class_name",
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
    "validation_images",
    "is_sample_classes",
    # figures
    "CLASS_COLOURS",
    "confusion_figure",
    "embedding_figure",
    "layers_figure",
    "probability_figure",
    "shots_figure",
    "integer_shot_axis",
    # intervals
    "AccuracyEstimate",
    "Spread",
    "accuracy_estimate",
    "estimate_from",
    "per_class_estimates",
    "spread",
    # augment
    "AugmentConfig",
    "DEFAULT_AUGMENTATION",
    "NO_AUGMENTATION",
    "augmented_view",
    "augmented_views",
    "build_augmentation",
    "view_grid",
    # network
    "LadderError",
    "backbone_stages",
    "classifier_head",
    "count_parameters",
    "fine_tune_network",
    "head_from_linear_probe",
    # training
    "EpochRecord",
    "FitSettings",
    "fit",
    # view_bank
    "ViewBank",
    # jobs (cvdemo.jobs)
    "BackgroundJob",
    # ladder
    "METHODS",
    "METHOD_LABELS",
    "STARTS",
    "LadderConfig",
    "LadderRun",
    "RungResult",
    "check_data",
    "describe_results",
    "display_table",
    "shared_ladder",
    "transfer_ladder",
    # evaluation_plan
    "CrossValidatedLadder",
    "EvaluationPlan",
    "HeldOutData",
    "held_out_data",
    "plan_evaluation",
    # ladder_shots
    "SHOTS",
    "ShotsRun",
    "augmentation_effect",
    "describe_curve",
    "ladder_vs_shots",
    # model_io
    "ClassifierSpec",
    "FineTunedClassifier",
    "ModelFileError",
    "OnnxClassifier",
    "load_classifier",
    # ood
    "OODRule",
    "calibrate_ood",
    "nearest_distance_rule",
    "reference_bank",
    "reference_photos",
    # ladder_figures
    "curves_figure",
    "effect_figure",
    "ladder_figure",
    "ladder_shots_figure",
    "ood_figure",
    # session
    "EffectResult",
    "EmbedSpeed",
    "FewshotSession",
    "LadderSession",
    "LoadedModel",
    "Note",
]
