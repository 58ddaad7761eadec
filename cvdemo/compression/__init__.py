"""Model compression, measured on this machine: quantization, pruning, low-rank, distillation.

Every technique takes a model (and, where needed, a few images) and returns a :class:`Variant`:
the new network plus a record of what was done to which layer. :func:`compare` then measures
the original and the variants side by side on this CPU: file size, parameters and non-zeros,
MACs, latency at batch 1 and 8 (same thread count, interleaved runs, median), top-1 accuracy
and agreement with the original.

The point of the lesson is that savings depend on the hardware and on the runtime, so the
runtime's effect is kept apart from the compression's: FP32 in PyTorch, FP32 in ONNX Runtime and
INT8 in ONNX Runtime are separate rows. :func:`cpu_features` reads this CPU's instruction-set
flags so the page can say where a speed-up came from.

Where things live (``from cvdemo import compression as cx; cx.quantize_int8`` keeps working):

- errors.py — CompressionError, ModelFileError, the Progress callback type
- cpu.py — CpuFeatures and cpu_features() (CPUID / cpuinfo flags), thread count, OpenMP wait policy
- variant.py — Variant (a network in a runtime + what was done), original_variant, safetensors_bytes
- onnx_export.py — to_onnx_runtime (same FP32 network in ONNX Runtime), shape_computation_nodes
- quantize.py — static INT8 (Int8Recipe per CPU kind, quantize_int8), dynamic INT8, FP16/BF16 weights
- layers.py — weighted_layers: a model's Conv2d and Linear layers, the ones the techniques change
- prune.py — unstructured magnitude pruning and structured channel pruning
- lowrank.py — SVD factorisation (low_rank) and the layers it can factorise
- distill.py — distill(), augmented views, the recovery fine-tune towards the original
- students.py — tiny_cnn / make_student and the frozen-feature teacher
- evalset.py — EvalSet from a folder, files, a zip or a shipped set; ImageNet label matching
- measure.py — MACs, interleaved timing, predictions, compare() and its COLUMNS
- uploads.py — a user's ONNX / safetensors file as a Variant (pickle refused)
- explain.py — the lecture's point per technique vs this machine's numbers; the INT8 recipe text
- pretrained.py — the ImageNet models offered, built and exported to ONNX once per process
- registry.py — the technique registry (timm-style): Knob, Technique, register_technique, list_techniques, get_technique
- techniques.py — the seven registered techniques with their knobs and defaults; TechniqueSpec, make_variant
- runs.py — build_variants and run_comparison: one press of "Compress and measure"; finished runs kept in the
  run store (run_key, start/load/get_or_measure, the page's defaults for the warm start)
- cifar_distillation.py — the CIFAR-10 subset, its teacher, and the two-student distillation run
- detector.py — the Detection page's YOLO as FP32-activation graph vs INT8 file (not re-exported here:
  ``from cvdemo.compression import detector``)

Heavy package: torch is imported at the top (pages import it lazily); onnx, onnxruntime, timm and
torch_pruning load inside the functions that need them.
"""

from __future__ import annotations

from cvdemo.runtime import export_onnx
from cvdemo.compression.errors import CompressionError, ModelFileError, Progress
from cvdemo.compression.cpu import CpuFeatures, cpu_features, openmp_wait_policy, thread_count
from cvdemo.compression.variant import RUNTIME_ORT, RUNTIME_TORCH, Variant, original_variant, safetensors_bytes
from cvdemo.compression.onnx_export import shape_computation_nodes, to_onnx_runtime
from cvdemo.compression.quantize import (
    INT8_RECIPES,
    Int8Recipe,
    cast_weights,
    int8_recipe,
    quantize_dynamic_int8,
    quantize_int8,
    quantized_layers,
)
from cvdemo.compression.prune import prune_structured, prune_unstructured
from cvdemo.compression.lowrank import factorisable_layers_of, low_rank
from cvdemo.compression.distill import DistillResult, augmented_views, distill, fine_tune_to_original
from cvdemo.compression.students import FeatureTeacher, make_student, tiny_cnn, train_feature_teacher
from cvdemo.compression.evalset import (
    EVAL_SETS,
    EvalSet,
    eval_set_from_folder,
    eval_set_from_paths,
    eval_set_from_zip,
    imagenet_label_map,
    standard_eval_set,
    train_images,
)
from cvdemo.compression.measure import COLUMNS, compare, count_macs, predictions, results_csv, time_interleaved
from cvdemo.compression.uploads import PICKLE_SUFFIXES, load_model_file
from cvdemo.compression.explain import (
    INT8_MEASURED,
    LECTURE_POINTS,
    SATURATION_LESSON,
    accuracy_difference,
    explain,
    explain_distillation,
    int8_recipe_text,
    with_interval,
)
from cvdemo.compression.pretrained import (
    backbone,
    backbone_onnx,
    factorisable_layers,
    input_size_of,
    model_choices,
    transform_for,
)
from cvdemo.compression.registry import (
    TECHNIQUES,
    Knob,
    Technique,
    get_technique,
    is_technique,
    list_techniques,
    register_technique,
)
from cvdemo.compression.techniques import TechniqueSpec, default_layers, make_variant
from cvdemo.compression.runs import Run, build_variants, run_comparison
from cvdemo.compression.cifar_distillation import (
    CifarSplit,
    DistillationOutcome,
    cifar_split,
    cifar_teacher,
    labeled_mask,
    run_distillation,
)

__all__ = [
    # errors
    "CompressionError", "ModelFileError", "Progress",
    # this CPU
    "CpuFeatures", "cpu_features", "openmp_wait_policy", "thread_count",
    # variants and runtimes
    "RUNTIME_ORT", "RUNTIME_TORCH", "Variant", "original_variant", "safetensors_bytes",
    "export_onnx", "shape_computation_nodes", "to_onnx_runtime",
    # techniques
    "INT8_RECIPES", "Int8Recipe", "cast_weights", "int8_recipe", "quantize_dynamic_int8", "quantize_int8",
    "quantized_layers", "prune_structured", "prune_unstructured", "factorisable_layers_of", "low_rank",
    "DistillResult", "augmented_views", "distill", "fine_tune_to_original",
    "FeatureTeacher", "make_student", "tiny_cnn", "train_feature_teacher",
    # evaluation data and measuring
    "EVAL_SETS", "EvalSet", "eval_set_from_folder", "eval_set_from_paths", "eval_set_from_zip", "imagenet_label_map",
    "standard_eval_set", "train_images",
    "COLUMNS", "compare", "count_macs", "predictions", "results_csv", "time_interleaved",
    "PICKLE_SUFFIXES", "load_model_file",
    # explanations
    "INT8_MEASURED", "LECTURE_POINTS", "SATURATION_LESSON", "accuracy_difference", "explain", "explain_distillation",
    "int8_recipe_text", "with_interval",
    # pretrained models, techniques by name, ready-made runs
    "backbone", "backbone_onnx", "factorisable_layers", "input_size_of", "model_choices", "transform_for",
    "TECHNIQUES", "Knob", "Technique", "get_technique", "is_technique", "list_techniques", "register_technique",
    "TechniqueSpec", "default_layers", "make_variant", "Run", "build_variants", "run_comparison",
    "CifarSplit", "DistillationOutcome", "cifar_split", "cifar_teacher", "labeled_mask", "run_distillation",
]
