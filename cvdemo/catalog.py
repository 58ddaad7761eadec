"""The app's pages as data: the navigation and the Home cards are both built from this, and what the
model pages show first (their widgets' defaults, which :mod:`cvdemo.warmup` precomputes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageInfo:
    path: str  # script under app_pages/
    title: str
    icon: str
    lesson: str  # what you learn there, one sentence


PAGES: list[PageInfo] = [
    PageInfo(
        "app_pages/architectures.py",
        "Architectures",
        ":material/account_tree:",
        "Count parameters, MACs and FLOPs layer by layer for LeNet to ViT, and see why papers disagree.",
    ),
    PageInfo(
        "app_pages/fewshot.py",
        "Few-shot kNN",
        ":material/school:",
        "Build an image classifier in seconds from frozen pretrained features and a k-nearest-neighbour vote.",
    ),
    PageInfo(
        "app_pages/segmentation.py",
        "Segmentation",
        ":material/texture:",
        "Train a U-Net with a pretrained encoder on your CPU and paint every pixel with a class.",
    ),
    PageInfo(
        "app_pages/detection.py",
        "Detection",
        ":material/center_focus_strong:",
        "Run YOLO on your photos, watch non-maximum suppression prune boxes, and measure mAP.",
    ),
    PageInfo(
        "app_pages/clip_search.py",
        "CLIP search",
        ":material/image_search:",
        "Turn any list of words into a classifier and any sentence into an image search.",
    ),
    PageInfo(
        "app_pages/compression.py",
        "Compression",
        ":material/compress:",
        "Prune, quantize, factorise and distil one model, then measure what really got smaller and faster.",
    ),
]


# --- what the model pages show first: the pages' widget defaults and the warm start read these ---------
DETECTION_CONF = 0.25  # confidence threshold
DETECTION_IOU = 0.45  # NMS IoU threshold
DETECTION_IMGSZ = 640  # network input size, unless the model file fixes one
DETECTION_SAMPLE_SETS = ("coco8", "coco128")  # the sample photos and labeled sets the Detection page offers
ARCHITECTURE_MODEL = "alexnet"  # the lecture zoo's first pick, at its native resolution
# CLIP's text tower needs about a minute on a CPU for 80 prompts x 7 labels, so CLIP starts on one
# sentence; ConSE's small text encoder starts on the 80-prompt ensemble (cvdemo.clip.ENSEMBLE).
CLIP_TEMPLATE = "a photo of a {}."
CONSE_TEMPLATE = "ensemble"


def zero_shot_template(is_clip: bool) -> str:
    """The CLIP page's first prompt template for an engine (CLIP or ConSE)."""
    return CLIP_TEMPLATE if is_clip else CONSE_TEMPLATE
