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
- ``design_rules.py`` — :func:`separable_saving`: depthwise-separable vs standard convolution
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
from cvdemo.complexity.design_rules import SeparableSaving, separable_saving
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
    # counters, latency, papers
    "CounterReading", "CounterComparison", "compare_counters", "compare_spec_counters",
    "Latency", "measure_latency", "latency_of",
    "Reference", "paper_numbers", "paper_facts", "references", "torchvision_card",
]  # fmt: skip
