"""Counters that disagree: the same model through our profiler, ``FlopCounterMode`` and fvcore, with reasons."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

import cvdemo.complexity.memory_budget as memory_budget
from cvdemo import zoo
from cvdemo.complexity.network_language import build_spec
from cvdemo.complexity.profiler import (
    _check_input_size,
    _check_named,
    _cpu_model,
    _input_for,
    _named_input_size,
    _profile_module,
    _short,
    check_budget,
    memory_estimate,
    profile_spec,
)
from cvdemo.complexity.results import Profile, _n


@dataclass(frozen=True)
class CounterReading:
    tool: str
    reported: int  # the number the tool prints
    unit: str  # what the tool calls it
    as_macs: float  # the same number in multiply-adds
    by_op: dict[str, int]
    skipped: dict[str, int]  # operators the tool saw and did not count
    seconds: float


@dataclass(frozen=True)
class CounterComparison:
    model: str
    input_size: tuple[int, ...]
    readings: tuple[CounterReading, ...]
    explanations: tuple[str, ...]

    def reading(self, tool_prefix: str) -> CounterReading:
        return next(r for r in self.readings if r.tool.startswith(tool_prefix))


_FVCORE_MAC_OPS = {"conv", "linear", "matmul", "bmm", "addmm", "mm", "einsum", "baddbmm"}
_FVCORE_EXTRA = {
    "batch_norm": "it charges BatchNorm 2 operations per output element (scale and shift, eval mode); "
    "we and FlopCounterMode charge nothing, since BN folds into the previous conv at inference",
    "layer_norm": "it charges LayerNorm 5 operations per element (mean, variance, normalise, scale, shift); "
    "these are not multiply-adds of weights, so we leave them out",
    "group_norm": "it charges GroupNorm 5 operations per element; not multiply-adds of weights",
    "instance_norm": "it charges InstanceNorm 5 operations per element; not multiply-adds of weights",
    "adaptive_avg_pool2d": "it charges adaptive average pooling 1 addition per input element; "
    "pooling has no weights, so we count no MACs for it",
    "upsample_nearest2d": "it charges nearest upsampling 1 per output element",
    "upsample_bilinear2d": "it charges bilinear upsampling 4 per output element",
    "grid_sampler": "it charges grid sampling 4 per output element",
}


def _fvcore_reading(model: nn.Module, example: torch.Tensor) -> CounterReading:
    import logging

    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, example)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        total = int(analysis.total())
        by_op = {k: int(v) for k, v in analysis.by_operator().items()}
        skipped = {k: int(v) for k, v in analysis.unsupported_ops().items()}
    return CounterReading(
        "fvcore FlopCountAnalysis", total, "“flops” (really MACs, plus norms and pooling)", float(total),
        by_op, skipped, time.perf_counter() - start,
    )  # fmt: skip


def _torch_reading(model: nn.Module, example: torch.Tensor) -> CounterReading:
    from torch.utils.flop_counter import FlopCounterMode

    start = time.perf_counter()
    with FlopCounterMode(display=False) as counter:
        model(example)
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    total = int(counter.get_total_flops())
    return CounterReading(
        "torch.utils.flop_counter.FlopCounterMode", total, "FLOPs (2 per multiply-add)", total / 2,
        by_op, {}, time.perf_counter() - start,
    )  # fmt: skip


def _explain(ours: Profile, torch_r: CounterReading, fv: CounterReading | None) -> list[str]:
    out: list[str] = []
    m = ours.total_macs
    if torch_r.reported == 2 * m:
        out.append(
            f"FlopCounterMode reports {_n(torch_r.reported)} FLOPs, exactly 2 × our {_n(m)} MACs: it counts a "
            "multiply-add as two floating-point operations. Papers that say “FLOPs” for ResNet (3.8G) or "
            "“mult-adds” for MobileNet mean one multiply-add, i.e. our MACs."
        )
    else:
        out.append(
            f"FlopCounterMode reports {_n(torch_r.reported)} FLOPs = {_n(int(torch_r.as_macs))} multiply-adds "
            f"(it counts 2 FLOPs per multiply-add); we count {_n(m)} MACs."
        )
        for op, macs in sorted(ours.ops.items(), key=lambda kv: -kv[1]):
            theirs = torch_r.by_op.get(op, 0) // 2
            if theirs >= macs:
                continue
            if "scaled_dot_product" in op or "attention" in op:
                out.append(
                    f"FlopCounterMode has no formula for `{op}`, the fused attention kernel PyTorch runs on CPU, "
                    f"so it misses {_n(macs - theirs)} MACs of attention matmuls (Q·Kᵀ and softmax·V). "
                    "We price it with torch's own attention formula."
                )
            elif op == "quantized":
                out.append(
                    f"FlopCounterMode has no formulas for quantized kernels and misses {_n(macs - theirs)} MACs; "
                    "we price quantized layers like their float versions."
                )
            else:
                out.append(f"FlopCounterMode counts {_n(theirs)} MACs for `{op}` where we count {_n(macs)}.")
    if fv is None:
        return out
    mac_like = sum(v for k, v in fv.by_op.items() if k in _FVCORE_MAC_OPS)
    extra = {k: v for k, v in fv.by_op.items() if k not in _FVCORE_MAC_OPS}
    if mac_like == m:
        out.append(
            f"fvcore calls its numbers “flops” but counts one per multiply-add: its conv/linear/matmul total "
            f"{_n(mac_like)} equals our MACs exactly."
        )
    else:
        missing = m - mac_like
        attention = {k: v for k, v in fv.skipped.items() if "scaled_dot_product" in k or "attention" in k}
        if attention and missing > 0:
            calls = sum(attention.values())
            out.append(
                f"fvcore counts one per multiply-add, but it has no handler for "
                f"{', '.join(f'`{k}`' for k in attention)} (seen {calls}×) and skips it: "
                f"{_n(missing)} MACs of attention matmuls are missing from its total."
            )
        else:
            out.append(
                f"fvcore's conv/linear/matmul “flops” add up to {_n(mac_like)}, ours to {_n(m)} MACs "
                f"(difference {_n(missing)})."
            )
    for op, value in sorted(extra.items(), key=lambda kv: -kv[1]):
        reason = _FVCORE_EXTRA.get(op, "an operation we do not count as a multiply-add")
        out.append(f"fvcore adds {_n(value)} for {op}: {reason}.")
    others = {k: v for k, v in fv.skipped.items() if not ("scaled_dot_product" in k or "attention" in k)}
    if others:
        listed = ", ".join(f"`{k}` ×{v}" for k, v in sorted(others.items(), key=lambda kv: -kv[1])[:6])
        out.append(
            f"fvcore skipped operators it has no formula for ({listed}) and warns about them; they are "
            "additions, activations or pooling, which none of the three counts as multiply-adds."
        )
    return out


def compare_counters(model: "nn.Module | str", input_size: Sequence[int] | None = None) -> CounterComparison:
    """The same model through our profiler, ``torch.utils.flop_counter`` and fvcore, with reasons.

    All three see a real CPU forward pass (fvcore traces with ``torch.jit``), as a student
    running them on their laptop would. Names are built untrained on the CPU, after checking
    that the run fits the memory budget (else :class:`OverBudget`); a module you pass in is
    already in memory and is run as it is.
    """
    if isinstance(model, str):
        size = _named_input_size(model, input_size)
        label = zoo.label(model)
        _check_named(model, size, label)
        with memory_budget.run_slot():
            return _compare(_cpu_model(model, size), size, label)
    size = _check_input_size(input_size or (3, 224, 224))
    with memory_budget.run_slot():
        return _compare(model, size, type(model).__name__)


def compare_spec_counters(text: str) -> CounterComparison:
    """:func:`compare_counters` for a typed network: refused (:class:`OverBudget`) before anything is allocated."""
    check_budget(memory_estimate(profile_spec(text)), "This network")
    with memory_budget.run_slot():
        net = build_spec(text)
        return _compare(net.model, net.input_size, "typed network")


def _compare(module: nn.Module, size: tuple[int, ...], label: str) -> CounterComparison:
    start = time.perf_counter()
    ours = _profile_module(module, size, label)
    ours_seconds = time.perf_counter() - start
    readings = [
        CounterReading("cvdemo profile (this page)", ours.total_macs, "MACs", float(ours.total_macs),
                       dict(ours.ops), {}, ours_seconds)
    ]  # fmt: skip
    device, dtype = _input_for(module)
    modes = {m: m.training for m in module.modules()}
    fv: CounterReading | None = None
    try:
        module.eval()
        example = torch.zeros((1, *size), device=device, dtype=dtype)
        with torch.inference_mode():
            torch_r = _torch_reading(module, example)
        readings.append(torch_r)
        with torch.no_grad():
            try:
                fv = _fvcore_reading(module, example)
                readings.append(fv)
            except Exception as exc:  # fvcore's jit trace cannot follow every model
                readings.append(CounterReading(f"fvcore FlopCountAnalysis (failed: {_short(exc)})", 0, "", 0.0, {}, {}, 0.0))
    finally:
        for m, training in modes.items():
            m.training = training
    return CounterComparison(label, size, tuple(readings), tuple(_explain(ours, torch_r, fv)))
