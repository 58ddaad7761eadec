"""Published semantic-segmentation models (SegFormer-B0 ADE20K, LR-ASPP VOC), when their weights are here."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cvdemo import weights
from cvdemo.segmentation.model import ModelFileError
from cvdemo.segmentation.segmenter import Segmenter, labels_at_size

ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)


PRETRAINED: dict[str, str] = {
    "segformer_b0_ade": "SegFormer-B0, ADE20K (150 classes: scenes and things)",
    "lraspp_mobilenet_v3": "LR-ASPP MobileNetV3-Large, PASCAL VOC (20 classes + background)",
}


class PretrainedSegmenter(Segmenter):
    """A published semantic-segmentation model, weights resolved through :mod:`cvdemo.weights`.

    Raises :class:`cvdemo.weights.WeightsUnavailable` (naming the missing file) when absent.
    """

    def __init__(self, name: str):
        if name not in PRETRAINED:
            raise KeyError(f"Unknown pretrained segmenter '{name}' (known: {', '.join(PRETRAINED)}).")
        self.name = name
        self.title = PRETRAINED[name]
        path = weights.resolve(name)
        stat = path.stat()
        self.weights_identity = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        state = weights.load_state_dict(path)
        if name == "segformer_b0_ade":
            import segmentation_models_pytorch as smp

            # smp-hub/segformer-b0-512x512-ade-160k config: mit_b0 encoder, 150 classes, 512 px input.
            self.network = smp.Segformer(encoder_name="mit_b0", encoder_weights=None, classes=150)
            self.class_names = list(ADE20K_CLASSES)
            self.background = None
            self.size: tuple[int, int] | int = (512, 512)
        else:
            from torchvision.models.segmentation import LRASPP_MobileNet_V3_Large_Weights, lraspp_mobilenet_v3_large

            self.network = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
            meta = LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1.meta["categories"]
            self.class_names = ["background" if c == "__background__" else c for c in meta]
            self.background = 0
            self.size = 520  # torchvision's preset: shorter side to 520
        try:
            self.network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"{path.name} does not fit {self.title}: {str(exc)[:200]}") from None
        self.network.eval()

    def predict(self, image: Image.Image) -> np.ndarray:
        """Class index per pixel; once per process per picture (the mask is shared: read-only)."""
        from cvdemo import results

        return results.cached(results.key("segment", self.name, self.weights_identity, image), lambda: self._predict(image))

    def _predict(self, image: Image.Image) -> np.ndarray:
        import torch

        from cvdemo.scheduler import compute_gate

        if isinstance(self.size, tuple):
            resized = image.resize(self.size, Image.BILINEAR)
        else:
            scale = self.size / min(image.size)
            resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                   Image.BILINEAR)
        x = torch.from_numpy(np.asarray(resized.convert("RGB")).copy()).permute(2, 0, 1)[None].float() / 255
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # ImageNet statistics, both models
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        with torch.inference_mode(), compute_gate().hold():
            out = self.network((x - mean) / std)
            out = out["out"] if isinstance(out, dict) else out
            return labels_at_size(out, image.width, image.height)
