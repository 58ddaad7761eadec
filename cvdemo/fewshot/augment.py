"""Data augmentation with ``torchvision.transforms.v2``: new views of the same few photos, against overfitting.

:class:`AugmentConfig` holds what the page's sliders set; :func:`build_augmentation` turns it into
a v2 pipeline; :func:`augmented_view` draws one view, seeded by (seed, image digest, view index),
so the same view comes out every time (a run is reproducible, and frozen outputs of a view can be
cached across methods and draws).

A view is a square of the size timm's eval transform resizes to (256 px for a 224 px network); the
network then sees its centre crop, exactly as for an unaugmented photo. With augmentation off the
view *is* the eval view: Resize + CenterCrop, nothing random.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

from PIL import Image

# v2 transforms draw from torch's global generator: seeding it for one view must not interleave
# with another thread doing the same (two sessions training at once).
_RNG_LOCK = threading.Lock()


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each augmentation; 0 (or 1.0 for ``crop_scale``) switches one off."""

    flip: float = 0.5  # probability of a horizontal flip
    crop_scale: float = 0.6  # random resized crop keeps between this share of the area and all of it
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.0  # hue rotation is slow on PIL and odd on animals; the colour cast covers colour shifts
    colour_cast: float = 0.1  # each of R, G, B scaled by a random gain in [1 - s, 1 + s]
    rotation: float = 10.0  # degrees, either way
    perspective: float = 0.0  # distortion scale (0..1), applied to half the views
    elastic: float = 0.0  # displacement strength in pixels (alpha of ElasticTransform)
    erasing: float = 0.0  # probability of a cut-out rectangle (random erasing)

    def __post_init__(self) -> None:
        checks = {
            "flip": 0 <= self.flip <= 1,
            "crop_scale": 0.05 <= self.crop_scale <= 1,
            "brightness": 0 <= self.brightness <= 1,
            "contrast": 0 <= self.contrast <= 1,
            "saturation": 0 <= self.saturation <= 1,
            "hue": 0 <= self.hue <= 0.5,
            "colour_cast": 0 <= self.colour_cast <= 1,
            "rotation": 0 <= self.rotation <= 180,
            "perspective": 0 <= self.perspective <= 1,
            "elastic": 0 <= self.elastic <= 500,
            "erasing": 0 <= self.erasing <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"Augmentation setting out of range: {', '.join(bad)}.")

    @property
    def is_identity(self) -> bool:
        """No randomness at all: every view is the eval view."""
        return self == NO_AUGMENTATION

    @property
    def key(self) -> str:
        """Identifies the pipeline in cache keys."""
        return hashlib.sha1(repr(sorted(asdict(self).items())).encode()).hexdigest()[:12]

    def describe(self) -> str:
        if self.is_identity:
            return "no augmentation"
        parts = []
        if self.flip:
            parts.append(f"flip {self.flip:.0%}")
        if self.crop_scale < 1:
            parts.append(f"crop {self.crop_scale:.0%}–100% of the area")
        if self.brightness or self.contrast or self.saturation or self.hue:
            parts.append("colour jitter")
        if self.colour_cast:
            parts.append(f"colour cast ±{self.colour_cast:.0%}")
        if self.rotation:
            parts.append(f"rotation ±{self.rotation:g}°")
        if self.perspective:
            parts.append(f"perspective {self.perspective:g}")
        if self.elastic:
            parts.append(f"elastic {self.elastic:g} px")
        if self.erasing:
            parts.append(f"cut-out {self.erasing:.0%}")
        return ", ".join(parts)


NO_AUGMENTATION = AugmentConfig(0, 1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
DEFAULT_AUGMENTATION = AugmentConfig()


def without(config: AugmentConfig, *names: str) -> AugmentConfig:
    """``config`` with some augmentations switched off (crop_scale back to 1.0)."""
    return replace(config, **{n: (1.0 if n == "crop_scale" else 0) for n in names})


def _colour_cast_class():
    import torch
    from torchvision.transforms import v2
    class ColourCast(v2.Transform):
        """A random colour cast (white balance gone wrong): R, G and B each scaled by its own gain."""

        def __init__(self, strength: float) -> None:
            super().__init__()
            self.strength = float(strength)

        def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
            return {"gains": 1 + (torch.rand(3) * 2 - 1) * self.strength}

        def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
            gains = params["gains"].tolist()
            if isinstance(inpt, Image.Image):  # a lookup table per channel: far faster than a float round trip
                lut = [min(255, int(v * g + 0.5)) for g in gains for v in range(256)]
                return inpt.point(lut)
            return (inpt.float() * params["gains"].view(3, 1, 1)).clamp(0, 255).to(inpt.dtype)

    return ColourCast


def build_augmentation(config: AugmentConfig, size: int = 256):
    """The v2 pipeline for ``config``: PIL in, ``size`` x ``size`` PIL view out."""
    from torchvision.transforms import v2

    steps: list[Any] = []
    if config.crop_scale < 1:
        steps.append(v2.RandomResizedCrop(size, scale=(config.crop_scale, 1.0), antialias=True))
    else:  # exactly the eval view: shorter side to size, centre square
        steps += [v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC), v2.CenterCrop(size)]
    if config.flip:
        steps.append(v2.RandomHorizontalFlip(config.flip))
    if config.rotation:
        steps.append(v2.RandomRotation(config.rotation, interpolation=v2.InterpolationMode.BILINEAR))
    if config.perspective:
        steps.append(v2.RandomPerspective(config.perspective, p=0.5))
    if config.elastic:
        steps.append(v2.ElasticTransform(alpha=config.elastic, sigma=5.0))
    if config.brightness or config.contrast or config.saturation or config.hue:
        steps.append(v2.ColorJitter(config.brightness, config.contrast, config.saturation, config.hue))
    if config.colour_cast:
        steps.append(_colour_cast_class()(config.colour_cast))
    if config.erasing:
        steps.append(v2.RandomErasing(p=config.erasing, scale=(0.02, 0.2), value=0))
    return v2.Compose(steps)


def view_seed(seed: int, digest: str, index: int) -> int:
    """The seed of view ``index`` of one image: independent of which other images are in the batch."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{digest}/{index}".encode()).digest()[:7], "little")


def augmented_view(
    image: Image.Image, config: AugmentConfig, seed: int, digest: str, index: int, size: int = 256, pipeline=None
) -> Image.Image:
    """View ``index`` of ``image`` (deterministic). ``pipeline`` reuses a built :func:`build_augmentation`."""
    import torch

    pipeline = pipeline or build_augmentation(config, size)
    if config.is_identity:
        return pipeline(image)
    with _RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(view_seed(seed, digest, index))
        return pipeline(image)


def augmented_views(
    images: Sequence[Image.Image],
    digests: Sequence[str],
    config: AugmentConfig,
    seed: int,
    index: int,
    size: int = 256,
) -> list[Image.Image]:
    """View ``index`` of each image."""
    pipeline = build_augmentation(config, size)
    return [augmented_view(img, config, seed, d, index, size, pipeline) for img, d in zip(images, digests)]


def view_size(data_config: dict) -> int:
    """The square side timm's eval transform resizes to before its centre crop (256 for 224 / 0.875)."""
    import math

    side = int(data_config["input_size"][-1])
    return int(math.floor(side / float(data_config.get("crop_pct", 0.875))))


def view_grid(
    image: Image.Image, config: AugmentConfig, count: int = 8, seed: int = 0, size: int = 256, crop: int = 224
) -> list[Image.Image]:
    """``count`` augmented views of one photo as the network sees them: the centre ``crop`` of each view."""
    from cvdemo.images import fingerprint

    digest = fingerprint(image)
    pipeline = build_augmentation(config, size)
    margin = (size - crop) // 2
    box = (margin, margin, margin + crop, margin + crop)
    return [augmented_view(image, config, seed, digest, i, size, pipeline).crop(box) for i in range(count)]
