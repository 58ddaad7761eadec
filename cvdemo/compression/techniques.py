"""The seven techniques the page and the demo offer, registered with their knobs, and how a spec is applied.

Each ``@register_technique`` below is the single place that says a technique's label, knobs and defaults
(see :mod:`cvdemo.compression.registry`); :func:`make_variant` fills a spec's missing knobs from there.
The defaults are the page's: what a lecturer gets without touching a knob.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from cvdemo.compression.distill import fine_tune_to_original
from cvdemo.compression.errors import Progress
from cvdemo.compression.evalset import train_images
from cvdemo.compression.lowrank import factorisable_layers_of, low_rank
from cvdemo.compression.onnx_export import to_onnx_runtime
from cvdemo.compression.pretrained import backbone, backbone_onnx, input_size_of
from cvdemo.compression.prune import prune_structured, prune_unstructured
from cvdemo.compression.quantize import cast_weights, quantize_dynamic_int8, quantize_int8
from cvdemo.compression.registry import TECHNIQUES, Knob, get_technique, register_technique
from cvdemo.compression.variant import Variant

# --- quantization ---------------------------------------------------------------------------------------------

CALIBRATION = Knob("calibration_images", "Calibration images", "slider", 16, 2, 64, widget_key="cx_calib")


@register_technique(
    "int8_static", "Quantization: INT8 static (ONNX Runtime)",
    "Weights and activations in 8 bits, activation ranges calibrated on a few images; runs in ONNX Runtime.",
    knobs=(CALIBRATION, Knob("per_channel", "Per-channel weight scales", "toggle", True, widget_key="cx_perchannel")),
    demo_knob=CALIBRATION,
)
def _int8_static(name: str, knobs: dict[str, Any], progress: Progress | None = None) -> Variant:
    model = backbone(name)
    return quantize_int8(model, train_images(name, int(knobs["calibration_images"])), input_size_of(model),
                         per_channel=bool(knobs["per_channel"]), onnx_model=backbone_onnx(name))


@register_technique(
    "int8_dynamic", "Quantization: INT8 dynamic (PyTorch, Linear only)",
    "No knobs: Linear weights go to INT8, activations are quantized on the fly.",
)
def _int8_dynamic(name: str, knobs: dict[str, Any], progress: Progress | None = None) -> Variant:
    return quantize_dynamic_int8(backbone(name))


@register_technique("fp16", "Quantization: FP16 weights", "16 bits per weight instead of 32; computed in that precision.")
def _fp16(name: str, knobs: dict[str, Any], progress: Progress | None = None) -> Variant:
    return cast_weights(backbone(name), torch.float16)


@register_technique("bf16", "Quantization: BF16 weights", "16 bits per weight instead of 32; computed in that precision.")
def _bf16(name: str, knobs: dict[str, Any], progress: Progress | None = None) -> Variant:
    return cast_weights(backbone(name), torch.bfloat16)


# --- pruning --------------------------------------------------------------------------------------------------

SPARSITY = Knob("amount", "Sparsity %", "percent", 0.3, 0.0, 1.0, 0.05, widget_key="cx_sparsity")


@register_technique(
    "prune_unstructured", "Pruning: unstructured (magnitude)",
    "The smallest weights become exactly zero; tensors keep their shapes and MACs.",
    knobs=(
        SPARSITY,
        # "global" is what the page teaches (one threshold for the whole network, like the lecture's magnitude
        # pruning); prune_unstructured's own default says the same
        Knob("scope", "Rank weights", "choice", "global", choices=("global", "layer"),
             choice_labels={"global": "across the network", "layer": "per layer"}, widget_key="cx_scope"),
    ),
    demo_knob=SPARSITY,
)
def _prune_unstructured(name: str, knobs: dict[str, Any], progress: Progress | None = None) -> Variant:
    return prune_unstructured(backbone(name), float(knobs["amount"]), str(knobs["scope"]))


CHANNELS = Knob("amount", "Channels removed %", "percent", 0.3, 0.0, 1.0, 0.05, widget_key="cx_channels")


@register_technique(
    "prune_structured", "Pruning: structured channels",
    "Whole channels are removed, so tensors and MACs shrink; a short fine-tune recovers accuracy.",
    knobs=(
        CHANNELS,
        # Default: one short epoch. Three epochs on all 244 images were 40 % of an all-techniques run
        # (about 90 of 219 s on 2 cores); more of both recovers more accuracy, for whoever can wait.
        Knob("fine_tune_epochs", "Recovery fine-tune epochs", "slider", 1, 0, 6, widget_key="cx_ft_epochs",
             help="The original teaches the pruned copy on unlabeled images (hymenoptera train, mirrored). "
             "Cost grows with epochs x images: 1 epoch on 128 images takes about 15 s on 2 cores, "
             "3 epochs on 244 about a minute and a half."),
        Knob("fine_tune_images", "Fine-tune images", "steps", 128, choices=(32, 64, 128, 244), widget_key="cx_ft_n"),
    ),
    demo_knob=CHANNELS,
    demo_fixed={"fine_tune_epochs": 0},  # the shared demo stays a few seconds long
)
def _prune_structured(name: str, knobs: dict[str, Any], progress: Progress | None = None) -> Variant:
    model = backbone(name)
    size = input_size_of(model)
    variant = prune_structured(model, float(knobs["amount"]), torch.randn(1, *size), round_to=knobs.get("round_to"))
    epochs = int(knobs["fine_tune_epochs"])
    if epochs > 0:
        images = train_images(name, int(knobs["fine_tune_images"]))
        teacher = to_onnx_runtime(model, size, onnx_model=backbone_onnx(name))  # faster teacher, same logits
        variant.module = fine_tune_to_original(teacher.predict, variant.module, images, epochs=epochs, progress=progress)
        variant.name = variant.name.replace(", PyTorch", f" + {epochs} epoch fine-tune, PyTorch")
        variant.notes.append(
            f"Fine-tuned {epochs} epoch(s) on {len(images)} unlabeled hymenoptera train images to match the original's outputs."
        )
    return variant


# --- low-rank ---------------------------------------------------------------------------------------------------

LAYERS = Knob("layers", "Layers (empty = all)", "layers", ("classifier",), widget_key="cx_lr_layers")


@register_technique(
    "low_rank", "Low-rank: SVD factorisation",
    "A layer's weight matrix is replaced by two thin ones from its singular value decomposition.",
    knobs=(
        Knob("keep", "Keep", "choice", "rank", choices=("rank", "energy"),
             choice_labels={"energy": "an energy fraction", "rank": "a fixed rank"}, widget_key="cx_lr_mode"),
        Knob("energy", "Energy kept %", "percent", 0.9, 0.5, 1.0, when=("keep", "energy"), widget_key="cx_energy"),
        Knob("rank", "Rank", "number", 256, 1, 8192, when=("keep", "rank"), widget_key="cx_rank"),
        LAYERS,
    ),
    demo_knob=Knob("rank", "Rank of the classifier", "number", 256, 1, 1280, 1),
    demo_fixed={"layers": ["classifier"]},
)
def _low_rank(name: str, knobs: dict[str, Any], progress: Progress | None = None) -> Variant:
    model = backbone(name)
    layers = list(knobs["layers"] or [])
    if tuple(layers) == LAYERS.default:  # the default names the classifier: a model may call it otherwise
        layers = default_layers(LAYERS, factorisable_layers_of(model))
    if knobs["keep"] == "rank":
        return low_rank(model, rank=int(knobs["rank"]), layers=layers or None)
    return low_rank(model, energy=float(knobs["energy"]), layers=layers or None)


def default_layers(knob: Knob, options: list[str]) -> list[str]:
    """A layers knob's default among the layers this model has (ResNet's classifier is ``fc``: none)."""
    return [layer for layer in knob.default if layer in options]


# --- applying a spec -----------------------------------------------------------------------------------------


@dataclass
class TechniqueSpec:
    """One technique to apply and its knobs (see :func:`make_variant`); missing knobs take the registry's defaults."""

    technique: str
    knobs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return TECHNIQUES.get(self.technique, self.technique)


def make_variant(name: str, spec: TechniqueSpec, progress: Progress | None = None) -> Variant:
    """Apply one technique to pretrained model ``name`` with the spec's knobs (defaults from the registry)."""
    technique = get_technique(spec.technique)
    return technique.apply(name, technique.resolve(spec.knobs), progress)
