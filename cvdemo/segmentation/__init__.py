"""Semantic segmentation: train a U-Net with a pretrained encoder on the CPU, then paint every pixel.

The lecture's transfer-learning recipe, runnable in a minute on two cores:

* data: image + mask pairs (``images/<name>.jpg`` + ``masks/<name>.png``, class index per pixel,
  255 = ignore) from the data folder or a user's zip, validated pair by pair;
* model: ``segmentation_models_pytorch`` U-Net / FPN / DeepLabV3+ on a timm encoder whose
  ImageNet weights come from :mod:`cvdemo.weights` (EfficientNet-Lite0 works offline);
* training: stage 1 trains the decoder with the encoder frozen, stage 2 unfreezes the encoder with
  a lower (differential) learning rate; augmentations from ``torchvision.transforms.v2``;
* evaluation: per-class IoU from a confusion matrix on held-out images;
* prediction: mask, overlay, legend, % of pixels per class, mask PNG; pretrained semantic models
  (SegFormer-B0 ADE20K, LR-ASPP VOC) and YOLO-seg instances when their weights are on the machine.

Models are saved as safetensors with their config (JSON) in the file's metadata: never pickle.

Where things are (``from cvdemo import segmentation as seg`` reaches every name below):

* ``dataset.py``    — image/mask pairs from a folder or a zip, validated; ``split`` holds some out
* ``display.py``    — class palette, overlay, display copy, mask PNG, per-class shares and legend
* ``metrics.py``    — pixel confusion matrix, ``SegMetrics`` (IoUs, pixel accuracy), ``evaluate``
* ``segmenter.py``  — ``Segmenter`` (image in, class per pixel out) and ``labels_at_size``
* ``encoders.py``   — the timm encoder under smp's ``tu-`` name and its ImageNet weights
* ``model.py``      — ``ModelConfig``, ``build_network``, ``SegModel`` (predict, safetensors save/load)
* ``training.py``   — the two-stage recipe: ``Trainer``, ``train_model``, ``sample_model`` and its held-out pets
* ``runs.py``       — finished training runs in the run store: ``runs.start`` / ``runs.load`` / ``runs.get_or_train``
* ``page_state.py`` — what the page keeps per session: ``RunRecord`` ("Your runs")
* ``pretrained.py`` — published models: SegFormer-B0 ADE20K, LR-ASPP MobileNetV3 VOC
* ``yolo_seg.py``   — YOLO-seg instances and the semantic mask they merge into
"""

from cvdemo.segmentation.dataset import (
    CLASSES_FILE,
    IGNORE_INDEX,
    IMAGE_DIRS,
    MASK_DIRS,
    MAX_CLASSES,
    MAX_PAIRS,
    SAMPLE_CLASSES,
    SAMPLE_DATASET,
    SegDataError,
    SegDataset,
    SegSample,
    load_folder,
    load_sample,
    load_zip,
    pair_files,
    split,
)
from cvdemo.segmentation.display import (
    MAX_DISPLAY_SIDE,
    ClassShare,
    class_shares,
    colorize,
    display_copy,
    legend_html,
    mask_png,
    overlay,
    palette,
)
from cvdemo.segmentation.encoders import encoder_choices, load_encoder_weights, smp_encoder_name
from cvdemo.segmentation.metrics import SegMetrics, confusion, evaluate
from cvdemo.segmentation.model import (
    ARCHITECTURES,
    FORMAT_KEY,
    ModelConfig,
    ModelFileError,
    SegModel,
    build_network,
)
from cvdemo.segmentation.pretrained import ADE20K_CLASSES, PRETRAINED, PretrainedSegmenter
from cvdemo.segmentation.segmenter import MAX_UPSAMPLED_VALUES, Segmenter, labels_at_size
from cvdemo.segmentation.training import (
    SAMPLE_HELD_OUT,
    EpochRecord,
    TrainConfig,
    Trainer,
    augmentation,
    sample_held_out,
    sample_model,
    train_model,
)
from cvdemo.segmentation.yolo_seg import Instance, InstanceResult, instances, load_instance_model
from cvdemo.segmentation import runs  # noqa: E402 - after the modules it uses

__all__ = [
    # dataset
    "CLASSES_FILE",
    "IGNORE_INDEX",
    "IMAGE_DIRS",
    "MASK_DIRS",
    "MAX_CLASSES",
    "MAX_PAIRS",
    "SAMPLE_CLASSES",
    "SAMPLE_DATASET",
    "SegDataError",
    "SegDataset",
    "SegSample",
    "load_folder",
    "load_sample",
    "load_zip",
    "pair_files",
    "split",
    # display
    "MAX_DISPLAY_SIDE",
    "ClassShare",
    "class_shares",
    "colorize",
    "display_copy",
    "legend_html",
    "mask_png",
    "overlay",
    "palette",
    # metrics
    "SegMetrics",
    "confusion",
    "evaluate",
    # segmenter
    "MAX_UPSAMPLED_VALUES",
    "Segmenter",
    "labels_at_size",
    # encoders
    "encoder_choices",
    "load_encoder_weights",
    "smp_encoder_name",
    # model
    "ARCHITECTURES",
    "FORMAT_KEY",
    "ModelConfig",
    "ModelFileError",
    "SegModel",
    "build_network",
    # training
    "SAMPLE_HELD_OUT",
    "EpochRecord",
    "TrainConfig",
    "Trainer",
    "augmentation",
    "sample_held_out",
    "sample_model",
    "train_model",
    # pretrained
    "ADE20K_CLASSES",
    "PRETRAINED",
    "PretrainedSegmenter",
    # yolo_seg
    "Instance",
    "InstanceResult",
    "instances",
    "load_instance_model",
    # stored runs
    "runs",
]
