"""The lecture's model zoo: names -> untrained ``nn.Module`` builders (torchvision, timm, or built here).

Profiling needs architectures, not weights, so everything is built with ``pretrained=False`` and,
by default, with its parameters and buffers on PyTorch's ``meta`` device: they have shapes but no
storage, so even VGG-19 (144M parameters) is built in milliseconds and costs no memory. Only the
model's state goes to ``meta``: the arithmetic a builder does to size its layers (RegNet computes
its stage widths with torch and ``.tolist()``) runs on the CPU as usual.

Besides the curated :data:`ZOO`, :func:`build` accepts any torchvision classification model name
and any timm model name. This module stays light: torch, timm and torchvision are imported only
inside the builders.
"""

from __future__ import annotations

import contextlib
import difflib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from cvdemo.errors import CvdemoError

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

MAX_NAME_LENGTH = 120  # the longest timm name is under 60 characters; longer text is not a name
NAME_EXAMPLES = "resnet50, regnet_y_400mf, swin_t or convnext_tiny"


class UnknownModel(CvdemoError, ValueError):
    """A model name that is neither in the zoo, nor in torchvision, nor in timm."""


@dataclass(frozen=True)
class ZooModel:
    key: str  # name used across the app (and by ``complexity.profile``)
    label: str  # what the UI shows
    source: str  # "torchvision" | "timm" | "cvdemo"
    arch: str  # the builder's own name for it
    resolution: int  # native input size (square)
    year: int
    lesson: str  # what the lecture says about it, one sentence
    channels: int = 3
    fixed_resolution: bool = False  # True: the architecture only works at its native size


# Paper Table 1 of Howard et al. 2017 (MobileNets): (output channels at alpha = 1, stride) of each
# depthwise-separable block; the stem is a standard 3x3 conv with 32 filters and stride 2.
MOBILENET_V1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)  # fmt: skip
MOBILENET_V1_WIDTHS: dict[str, float] = {
    "mobilenetv1_100": 1.0,
    "mobilenetv1_075": 0.75,
    "mobilenetv1_050": 0.5,
    "mobilenetv1_025": 0.25,
}

# LeNet-5 (LeCun et al. 1998) in the typed-network language (``cvdemo.complexity.network_language``).
# C3 is fully connected to S2 here (the common modern variant); the paper's sparse C3 table has 1,516 weights.
LENET5_SPEC = """\
input 32x32x1
conv 6 5x5 padding valid   # C1
tanh
avgpool 2x2                # S2
conv 16 5x5 padding valid  # C3
tanh
avgpool 2x2                # S4
conv 120 5x5 padding valid # C5
tanh
flatten
dense 84                   # F6
tanh
dense 10                   # output
"""

ZOO: dict[str, ZooModel] = {
    m.key: m
    for m in [
        ZooModel("lenet5", "LeNet-5", "cvdemo", "lenet5", 32, 1998,
                 "Conv, pool, conv, pool, dense: the template every CNN since has followed.",
                 channels=1, fixed_resolution=True),
        ZooModel("alexnet", "AlexNet", "torchvision", "alexnet", 224, 2012,
                 "Parameters live in the fully connected layers, compute in the convolutions."),
        ZooModel("vgg16", "VGG-16", "torchvision", "vgg16", 224, 2014,
                 "Only 3x3 convs; 138M parameters, 124M of them in the three FC layers."),
        ZooModel("vgg19", "VGG-19", "torchvision", "vgg19", 224, 2014,
                 "Three more 3x3 conv layers than VGG-16: +4% parameters, +27% MACs."),
        ZooModel("googlenet", "GoogLeNet (Inception v1)", "torchvision", "googlenet", 224, 2014,
                 "1x1 bottlenecks inside Inception modules keep it at ~1.5G multiply-adds."),
        ZooModel("inception_v3", "Inception v3", "torchvision", "inception_v3", 299, 2015,
                 "Factorised convolutions (nxn -> 1xn + nx1) at 299x299 input."),
        ZooModel("resnet18", "ResNet-18", "torchvision", "resnet18", 224, 2015,
                 "Residual connections: basic blocks of two 3x3 convs."),
        ZooModel("resnet50", "ResNet-50", "torchvision", "resnet50", 224, 2015,
                 "Bottleneck blocks (1x1, 3x3, 1x1) make 50 layers cheaper than VGG-16."),
        ZooModel("resnext50_32x4d", "ResNeXt-50 (32x4d)", "torchvision", "resnext50_32x4d", 224, 2017,
                 "Grouped 3x3 convs (32 groups): same budget as ResNet-50, more paths."),
        ZooModel("seresnet50", "SE-ResNet-50", "timm", "seresnet50", 224, 2018,
                 "Squeeze-and-excitation adds 10% parameters for well under 1% more MACs."),
        ZooModel("densenet121", "DenseNet-121", "torchvision", "densenet121", 224, 2017,
                 "Each layer sees all earlier feature maps: few parameters, much memory traffic."),
        ZooModel("mobilenetv1_100", "MobileNetV1 1.0", "cvdemo", "mobilenetv1_100", 224, 2017,
                 "Depthwise-separable convs: 1x1 convs hold 95% of the MACs."),
        ZooModel("mobilenetv1_075", "MobileNetV1 0.75", "cvdemo", "mobilenetv1_075", 224, 2017,
                 "Width multiplier alpha = 0.75: about alpha^2 of the MACs."),
        ZooModel("mobilenetv1_050", "MobileNetV1 0.5", "cvdemo", "mobilenetv1_050", 224, 2017,
                 "Width multiplier alpha = 0.5."),
        ZooModel("mobilenetv1_025", "MobileNetV1 0.25", "cvdemo", "mobilenetv1_025", 224, 2017,
                 "Width multiplier alpha = 0.25."),
        ZooModel("mobilenetv2_100", "MobileNetV2", "timm", "mobilenetv2_100", 224, 2018,
                 "Inverted residuals with linear bottlenecks."),
        ZooModel("mobilenetv3_large_100", "MobileNetV3-Large", "timm", "mobilenetv3_large_100", 224, 2019,
                 "Architecture search, squeeze-excite and hard-swish."),
        ZooModel("mobilenetv3_small_100", "MobileNetV3-Small", "timm", "mobilenetv3_small_100", 224, 2019,
                 "The small search target: ~56M multiply-adds."),
        ZooModel("shufflenet_v2_x1_0", "ShuffleNet V2 1.0x", "torchvision", "shufflenet_v2_x1_0", 224, 2018,
                 "Channel split and shuffle, designed for measured speed rather than FLOPs."),
        ZooModel("xception", "Xception", "timm", "legacy_xception", 299, 2017,
                 "Inception taken to the extreme: depthwise-separable convs everywhere."),
        ZooModel("efficientnet_b0", "EfficientNet-B0", "timm", "efficientnet_b0", 224, 2019,
                 "Searched MBConv baseline that compound scaling grows into B1-B7."),
        ZooModel("dpn68", "DPN-68", "timm", "dpn68", 224, 2017,
                 "Dual path: a residual path and a dense path in every block."),
        ZooModel("nasnetalarge", "NASNet-A Large", "timm", "nasnetalarge", 331, 2018,
                 "Cells found by reinforcement-learning architecture search, at 331x331."),
        ZooModel("convnext_tiny", "ConvNeXt-T", "timm", "convnext_tiny", 224, 2022,
                 "A ResNet modernised with transformer design choices: 7x7 depthwise, LayerNorm, GELU."),
        ZooModel("deit_tiny_patch16_224", "ViT-Ti/16 (DeiT-Tiny)", "timm", "deit_tiny_patch16_224", 224, 2021,
                 "A small vision transformer: 196 patch tokens + 1 class token."),
        ZooModel("vit_base_patch16_224", "ViT-B/16", "timm", "vit_base_patch16_224", 224, 2021,
                 "Attention matmuls grow with the square of the number of patches."),
    ]
}  # fmt: skip


def _squash(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "").replace("/", "")


def torchvision_names() -> list[str]:
    """torchvision's image-classification architectures."""
    from torchvision import models

    return models.list_models(module=models)


def resolve(name: str) -> tuple[str, str]:
    """``(source, arch)`` for a model name: zoo key or label, then torchvision, then timm.

    Exact names first (zoo key, torchvision, timm), then loose matches on zoo keys and labels and
    torchvision names ("ResNet-50", "VGG16", "MobileNetV2"). Prefixes ``tv:``/``torchvision:`` and
    ``timm:`` pick the library.
    Raises :class:`UnknownModel` with suggestions (or saying what a name looks like, for an
    empty or overlong one).
    """
    if not isinstance(name, str) or not name.strip():
        raise UnknownModel(f"No model name given: type one, e.g. {NAME_EXAMPLES}.")
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise UnknownModel(
            f"That name is {len(name):,} characters long; model names are short "
            f"(at most {MAX_NAME_LENGTH}), e.g. {NAME_EXAMPLES}."
        )
    if ":" in name:
        prefix, arch = name.split(":", 1)
        if prefix in ("tv", "torchvision"):
            if arch in torchvision_names():
                return "torchvision", arch
            raise UnknownModel(f"torchvision has no classification model '{arch}'.")
        if prefix == "timm":
            import timm

            if timm.is_model(arch):
                return "timm", arch
            raise UnknownModel(f"timm has no model '{arch}'.")
    import timm

    tv_names = torchvision_names()
    if name in ZOO:
        return ZOO[name].source, ZOO[name].arch
    if name in tv_names:
        return "torchvision", name
    if timm.is_model(name):
        return "timm", name
    squashed = _squash(name)
    for model in ZOO.values():
        if squashed in (_squash(model.key), _squash(model.label)):
            return model.source, model.arch
    tv = {_squash(n): n for n in tv_names}
    if squashed in tv:
        return "torchvision", tv[squashed]
    known = list(dict.fromkeys([*ZOO, *tv.values(), *timm.list_models()]))  # resnet50 is in all three
    close = difflib.get_close_matches(name.lower(), known, n=4, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownModel(f"Unknown model '{name}': not in the zoo, torchvision or timm.{hint}")


def native_resolution(name: str) -> int:
    """The input size the architecture was designed for (224 when unknown)."""
    source, arch = resolve(name)
    for model in ZOO.values():
        if model.arch == arch and model.source == source:
            return model.resolution
    if source == "timm":
        import timm

        return int(timm.get_pretrained_cfg(arch).input_size[-1]) if timm.get_pretrained_cfg(arch) else 224
    return 299 if arch == "inception_v3" else 224


def input_channels(name: str) -> int:
    source, arch = resolve(name)
    return 1 if (source, arch) == ("cvdemo", "lenet5") else 3


def mobilenet_v1(width: float = 1.0, num_classes: int = 1000) -> "nn.Sequential":
    """MobileNetV1 exactly as Table 1 of Howard et al. 2017, thinned by width multiplier ``width``.

    Every conv is followed by BatchNorm and ReLU; a global average pool and one FC layer end it.
    (timm ships only ``width = 1.0``; this builds any alpha.)
    """
    from collections import OrderedDict

    from torch import nn

    def channels(c: int) -> int:
        return max(1, int(c * width))

    def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
        return nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
                bn=nn.BatchNorm2d(c_out),
                relu=nn.ReLU(inplace=True),
            )
        )

    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=conv_bn_relu(3, channels(32), 3, 2))
    c_in = channels(32)
    for i, (c_out, stride) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        c_out = channels(c_out)
        layers[f"block{i}"] = nn.Sequential(
            OrderedDict(
                dw=conv_bn_relu(c_in, c_in, 3, stride, groups=c_in),  # depthwise 3x3
                pw=conv_bn_relu(c_in, c_out, 1, 1),  # pointwise 1x1
            )
        )
        c_in = c_out
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(c_in, num_classes)
    return nn.Sequential(layers)


_building = threading.local()  # the device this thread's build puts parameters and buffers on
_hooks_lock = threading.Lock()
_hooks_installed = False


def _state_to_build_device(module: "nn.Module", name: str, tensor: "torch.Tensor | None") -> Any:
    """Registration hook: a new parameter or buffer goes to the device of this thread's build, if any."""
    from torch import nn

    device = getattr(_building, "device", None)
    if device is None or tensor is None or isinstance(tensor, nn.parameter.UninitializedTensorMixin):
        return None
    if isinstance(tensor, nn.Parameter):
        return type(tensor)(tensor.to(device), requires_grad=tensor.requires_grad)
    return tensor.to(device)


def _install_hooks() -> None:
    # Installed once and kept: adding or removing a global hook while another thread registers a
    # parameter (a session loading a real model) would change the dict that thread is iterating.
    global _hooks_installed
    with _hooks_lock:
        if not _hooks_installed:
            from torch.nn.modules import module as torch_module

            torch_module.register_module_parameter_registration_hook(_state_to_build_device)
            torch_module.register_module_buffer_registration_hook(_state_to_build_device)
            _hooks_installed = True


@contextlib.contextmanager
def state_on(device: str) -> Iterator[None]:
    """Parameters and buffers registered in this thread go to ``device``; other tensors stay on the CPU.

    ``with torch.device("meta")`` would put every tensor on meta, including the ones a builder
    computes its architecture from (RegNet's widths, ``.tolist()``: "Cannot copy out of meta
    tensor"). Hooking registration moves only the model's state, so weights are never filled in
    (their CPU tensors are created uninitialised and dropped at once). torch's registration hooks
    are global; ours acts only in the thread inside this context, so other sessions building real
    models at the same time are untouched.
    """
    _install_hooks()
    previous = getattr(_building, "device", None)
    _building.device = device
    try:
        yield
    finally:
        _building.device = previous


def build(name: str, resolution: int | None = None, device: str = "meta") -> "nn.Module":
    """An untrained model in eval mode, on ``device`` ("meta": shapes only, no memory).

    ``resolution`` matters only for architectures with a fixed token grid (ViTs), which are
    built for that size. Raises :class:`UnknownModel`.

    On "meta", every tensor the builder creates goes to meta (``with torch.device("meta")``), so
    nothing is allocated; builders that size their layers from tensor values (torchvision's
    RegNets) fail there and are built again with only their parameters and buffers on meta
    (:func:`state_on`). The first way is kept first because some builders run a dummy input
    through the layers they just made (timm's ViTamin), which needs everything on one device.
    """
    import torch

    source, arch = resolve(name)
    if device != "meta":
        with torch.device(device):
            return _build(source, arch, resolution).eval()
    try:
        with torch.device("meta"):
            return _build(source, arch, resolution).eval()
    except Exception as everything_on_meta:
        try:
            with state_on("meta"):
                model = _build(source, arch, resolution)
        except Exception:
            raise everything_on_meta from None
    # Tensors a builder assigns to an existing buffer (not through registration) follow here.
    return model.to("meta").eval()


def _build(source: str, arch: str, resolution: int | None) -> "nn.Module":
    if source == "cvdemo":
        if arch == "lenet5":
            from cvdemo.complexity.network_language import build_spec

            return build_spec(LENET5_SPEC).model
        return mobilenet_v1(MOBILENET_V1_WIDTHS[arch])
    if source == "torchvision":
        from torchvision import models

        kwargs: dict = {}
        if arch in ("googlenet", "inception_v3"):
            # Auxiliary classifiers only exist for training; the papers' counts leave them out.
            kwargs = {"aux_logits": False, "init_weights": True}
        if arch.startswith("vit_") and resolution:
            kwargs["image_size"] = resolution
        return models.get_model(arch, weights=None, **kwargs)
    import timm

    native = (timm.get_pretrained_cfg(arch).input_size[-1]) if timm.get_pretrained_cfg(arch) else None
    if resolution and native and resolution != native:
        try:  # transformers have a fixed patch grid: build them for this size
            return timm.create_model(arch, pretrained=False, img_size=resolution)
        except TypeError:  # convnets take any size and have no img_size argument
            pass
    return timm.create_model(arch, pretrained=False)


def zoo_keys() -> list[str]:
    return list(ZOO)


def label(name: str) -> str:
    """The zoo label for a key, else the name itself."""
    return ZOO[name].label if name in ZOO else name
