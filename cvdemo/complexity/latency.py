"""Latency: FLOPs are not speed. Warm CPU timings of one image, within the memory budget."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

import cvdemo.complexity.memory_budget as memory_budget
from cvdemo import zoo
from cvdemo.complexity.profiler import _check_named, _cpu_model, _input_for, _named_input_size
from cvdemo.timing import Latency, time_interleaved


def measure_latency(model: nn.Module, input_size: Sequence[int], repeats: int = 10, warmup: int = 2) -> Latency:
    """Warm CPU latency of one image (batch 1): median and best of ``repeats`` timed runs."""
    device, dtype = _input_for(model)
    example = torch.randn((1, *input_size), device=device, dtype=dtype)
    model.eval()
    with torch.inference_mode():
        samples = time_interleaved({"model": lambda: model(example)}, repeats=repeats, warmup=warmup, pause=0.0)
    return Latency.from_seconds(samples["model"], torch.get_num_threads())


def latency_of(name: str, input_size: Sequence[int] | None = None, repeats: int = 10) -> Latency:
    """Build ``name`` untrained on the CPU, time it, and let it go (weights do not change speed).

    Refused with :class:`OverBudget` when the run would not fit the memory budget.
    """
    size = _named_input_size(name, input_size)
    _check_named(name, size, zoo.label(name))
    with memory_budget.run_slot():
        return measure_latency(_cpu_model(name, size), size, repeats=repeats)
