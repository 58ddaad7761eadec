"""Ready-made runs for the page and the Gradio demo: build the chosen variants, measure them against the original."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from cvdemo.compression.cpu import CpuFeatures, cpu_features
from cvdemo.compression.errors import CompressionError, Progress
from cvdemo.compression.evalset import EvalSet
from cvdemo.compression.measure import compare
from cvdemo.compression.onnx_export import to_onnx_runtime
from cvdemo.compression.pretrained import backbone, backbone_onnx, input_size_of
from cvdemo.compression.techniques import TechniqueSpec, make_variant
from cvdemo.compression.variant import RUNTIME_TORCH, Variant, original_variant


@dataclass
class Run:
    """Everything one press of 'Compress and measure' produced."""

    model_name: str
    variants: list[Variant]
    table: pd.DataFrame
    errors: dict[str, str]
    eval_description: str
    cpu: CpuFeatures


def build_variants(
    name: str, specs: Sequence[TechniqueSpec], deploy_ort: bool = False, progress: Progress | None = None
) -> tuple[list[Variant], dict[str, str]]:
    """The compressed variants of ``name`` plus the FP32 ONNX Runtime row whenever a variant runs there.

    A technique whose knobs cannot work is reported in ``errors`` (label -> sentence), the others go on.
    """
    say = progress or (lambda fraction, text: None)
    model = backbone(name)
    size = input_size_of(model)
    variants: list[Variant] = []
    errors: dict[str, str] = {}
    if deploy_ort or any(s.technique == "int8_static" for s in specs):
        say(0.0, "exporting the original to ONNX (once per server)")
        variants.append(to_onnx_runtime(model, size, onnx_model=backbone_onnx(name)))
    for i, spec in enumerate(specs):
        start, span = (i + 0.1) / len(specs), 0.9 / len(specs)
        say(start, f"applying {spec.label}")
        try:
            variant = make_variant(name, spec, progress=lambda f, text: say(start + span * f, f"{spec.label}: {text}"))
        except CompressionError as exc:
            errors[spec.label] = str(exc)
            continue
        variants.append(variant)
        if deploy_ort and variant.runtime == RUNTIME_TORCH and variant.run_module is None:
            say(start + span * 0.9, f"exporting {variant.name} to ONNX Runtime")
            variants.append(to_onnx_runtime(variant.module, size, like=variant))
    return variants, errors


def run_comparison(
    name: str,
    specs: Sequence[TechniqueSpec],
    eval_set: EvalSet,
    deploy_ort: bool = False,
    repeats: int = 20,
    progress: Progress | None = None,
) -> Run:
    """Build the variants (first 40% of the progress) and measure them against the original."""
    say = progress or (lambda fraction, text: None)
    variants, errors = build_variants(name, specs, deploy_ort, lambda f, t: say(0.4 * f, t))
    if errors and not any(v.technique != "onnx_fp32" for v in variants):
        raise CompressionError(" ".join(f"{label}: {message}" for label, message in errors.items()))
    table = compare(
        original_variant(backbone(name)), variants, eval_set, repeats=repeats, progress=lambda f, t: say(0.4 + 0.6 * f, t)
    )
    return Run(name, variants, table, errors, eval_set.description, cpu_features())
