"""Parameters, MACs and FLOPs of a network, layer by layer, counted with PyTorch's own machinery.

``profile(model)`` runs one forward pass of batch 1 (on the meta device for names and typed
networks: shapes only, nothing computed) and charges every aten operator, priced by
``torch.utils.flop_counter``'s formulas, to the innermost module running it. 1 MAC = one
multiply-add; FLOPs = 2 x MACs. This package is the stable door: ``from cvdemo import complexity
as cx; cx.profile("resnet50")``.

Where things are:

- ``results.py`` — :class:`Profile` and :class:`LayerRow` (what a profile holds), number formatting
- ``profiler.py`` — :func:`profile`, :func:`profile_spec`, :class:`ProfileError`, :class:`OverBudget`
- ``op_counter.py`` — the dispatch mode that prices every aten operator and replays live memory
- ``network_language.py`` — typed networks, one layer a line: :func:`build_spec`, :data:`SPEC_HELP`
- ``memory_budget.py`` — the memory one real run needs, estimated from shapes; the per-run budget
- ``formulas.py`` — :func:`formula`: a conv or dense layer worked out by the lecture's formulas
- ``breakdown.py`` — :func:`breakdown`: where parameters, MACs and activation memory live
- ``design_rules.py`` — :data:`DESIGN_RULES` as typed networks (stacked 3×3, dilation 1-2-4, separable),
  :func:`design_lesson`: what their measured rows show
- ``hooks.py`` — :func:`call_hooks`: before/after every module call (the profiler and the field trace)
- ``page_state.py`` — :class:`ArchitecturesState`: the Architectures page's session results as typed records
- ``receptive_field.py`` — :func:`receptive_field`: size, effective stride and start of every layer;
  :func:`layer_frame`: a profile's layer table with each layer's field
- ``field_types.py`` / ``field_rules.py`` / ``field_trace.py`` — the fields a tensor carries, one rule
  per aten operator, and the dispatch mode that follows the real data flow (merges, what it cannot follow)
- ``field_layout.py`` — which tensor dimension is height, width or tokens through reshapes and permutes
- ``effective_field.py`` — a unit's field on a picture and its effective field measured by gradients
- ``answers.py`` — reading typed answers forgivingly ("55 × 55 × 96", "105M", "1.05e8") with a stated tolerance
- ``quiz.py`` — :func:`make_quiz`: seeded classroom questions with worked formulas; :class:`QuizState`
- ``figures.py`` — plotly figures: field vs depth, the field on a picture, non-overlapping scatter labels
- ``counters.py`` — :func:`compare_counters`: ours vs ``FlopCounterMode`` vs fvcore, with reasons
- ``latency.py`` — :func:`measure_latency`, :func:`latency_of`: FLOPs are not speed
- ``references.py`` — published counts (:func:`paper_facts`, :func:`references`, :func:`torchvision_card`)

The model zoo (names -> untrained builders) is :mod:`cvdemo.zoo`; it uses the network language
(LeNet-5 is written in it) and nothing else from here.
"""

from __future__ import annotations

from cvdemo.complexity import memory_budget
from cvdemo.complexity.breakdown import Group, breakdown
from cvdemo.complexity.counters import CounterComparison, CounterReading, compare_counters, compare_spec_counters
from cvdemo.complexity.answers import TOLERANCE, AnswerError, Verdict
from cvdemo.complexity.design_rules import (
    DESIGN_RULES,
    DesignRow,
    DesignRule,
    SeparableSaving,
    compare_design,
    design_lesson,
    separable_saving,
)
from cvdemo.complexity.effective_field import (
    PRETRAINED_LABEL,
    EffectiveField,
    PictureNetwork,
    default_layer,
    effective_field,
    crop_for,
    picture_layers,
    prepare,
    pretrained_network,
    random_network,
    spec_network,
    to_tensor,
)
from cvdemo.complexity.field_types import CANNOT_FOLLOW, AxisField, Merge
from cvdemo.complexity.formulas import Formula, formula
from cvdemo.complexity.latency import Latency, latency_of, measure_latency
from cvdemo.complexity.memory_budget import MemoryEstimate, format_bytes
from cvdemo.complexity.network_language import (
    SPEC_EXAMPLE,
    SPEC_HELP,
    GlobalAvgPool,
    SpecError,
    SpecLayer,
    SpecNetwork,
    build_spec,
)
from cvdemo.complexity.op_counter import WORKING_COPIES
from cvdemo.complexity.profiler import OverBudget, ProfileError, check_budget, memory_estimate, profile, profile_spec
from cvdemo.complexity.quiz import KINDS, LECTURE_EXERCISES, Attempt, Question, QuizState, make_quiz
from cvdemo.complexity.receptive_field import (
    FieldRow,
    ReceptiveField,
    clip_fraction,
    field_box,
    field_formula,
    grid_of,
    layer_frame,
    receptive_field,
)
from cvdemo.complexity.references import Reference, paper_facts, paper_numbers, references, torchvision_card
from cvdemo.complexity.results import BYTES_PER_ACTIVATION, LayerRow, Profile, compact, human, shape_text

__all__ = [
    # profiling and its results
    "profile", "profile_spec", "Profile", "LayerRow", "ProfileError", "OverBudget", "BYTES_PER_ACTIVATION",
    "shape_text", "compact", "human",
    # typed networks
    "build_spec", "SpecNetwork", "SpecLayer", "SpecError", "GlobalAvgPool", "SPEC_HELP", "SPEC_EXAMPLE",
    # memory
    "memory_budget", "MemoryEstimate", "format_bytes", "memory_estimate", "check_budget", "WORKING_COPIES",
    # formulas, where things live, design rules
    "Formula", "formula", "Group", "breakdown", "SeparableSaving", "separable_saving",
    "DESIGN_RULES", "DesignRule", "DesignRow", "compare_design", "design_lesson",
    # receptive fields, on a picture
    "receptive_field", "ReceptiveField", "FieldRow", "layer_frame", "AxisField", "Merge", "CANNOT_FOLLOW", "field_formula",
    "field_box", "clip_fraction", "grid_of", "PictureNetwork", "EffectiveField", "PRETRAINED_LABEL", "pretrained_network",
    "random_network", "spec_network", "prepare", "crop_for", "to_tensor", "effective_field", "picture_layers",
    "default_layer",
    # the quiz
    "KINDS", "LECTURE_EXERCISES", "Question", "Attempt", "QuizState", "make_quiz", "TOLERANCE", "AnswerError",
    "Verdict",
    # counters, latency, papers
    "CounterReading", "CounterComparison", "compare_counters", "compare_spec_counters",
    "Latency", "measure_latency", "latency_of",
    "Reference", "paper_numbers", "paper_facts", "references", "torchvision_card",
]  # fmt: skip
