"""Parameters, MACs and FLOPs of a network, layer by layer, counted with PyTorch's own machinery.

``profile(model)`` runs one forward pass of batch 1 with

* forward hooks on every module (input/output shapes, which module is running), and
* a ``TorchDispatchMode`` that sees every aten operator and prices it with the formulas of
  ``torch.utils.flop_counter`` (convolution, mm/addmm/bmm, scaled-dot-product attention, ...),
  charging each operator to the innermost module running it.

Conventions: 1 MAC = one multiply-add (what the ResNet and MobileNet papers call a FLOP or a
mult-add); ``total_flops = 2 x total_macs`` (torch's and most hardware specs' convention).
Biases, BatchNorm, activations, pooling and residual additions cost no MACs. Parameters are
the model's ``nn.Parameter`` elements (BatchNorm's affine weights included, running statistics
not), each shared tensor counted once.

Models given by name are built untrained on the ``meta`` device: shapes without storage, so
VGG-19 is profiled in milliseconds without allocating its 548 MB. A module you pass in is run
for real on zeros (under ``torch.inference_mode``) and left as it was; a module that lives on the
meta device is profiled from shapes alone.

What runs a named or typed network for real (the three counters, the latency timer) first
estimates its memory from the shapes (:mod:`cvdemo.complexity.memory_budget`) and refuses with
:class:`OverBudget` when it is over the per-run budget; the counts from shapes stay available.

``profile_spec(text)`` builds a network from the one-layer-a-line notation students use on
paper (see :mod:`cvdemo.complexity.network_language`).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

import cvdemo.complexity.memory_budget as memory_budget
from cvdemo.errors import CvdemoError
from cvdemo import zoo
from cvdemo.complexity.hooks import call_hooks
from cvdemo.complexity.network_language import build_spec
from cvdemo.complexity.op_counter import _MacCounter, _tensors
from cvdemo.complexity.results import LayerRow, Profile

_module_lock = threading.Lock()  # hooks on a caller's module must not interleave across threads


class ProfileError(CvdemoError, ValueError):
    """The model could not be profiled; the message says why in one sentence."""


class OverBudget(ProfileError):
    """A real run would need more memory than one run may use; ``estimate`` says how much."""

    def __init__(self, estimate: memory_budget.MemoryEstimate, what: str = "This network"):
        super().__init__(
            f"{estimate.sentence(what)} So it is not run for real here; its parameters and MACs are "
            "still counted from shapes alone (no forward pass)."
        )
        self.estimate = estimate


def memory_estimate(prof: Profile) -> memory_budget.MemoryEstimate:
    """Memory one real forward pass of the profiled network needs (weights, activations, working)."""
    return memory_budget.estimate(prof.total_params, prof.total_buffers, prof.peak_activation_bytes, prof.peak_working_bytes)


@dataclass
class _Stats:
    order: int | None = None
    calls: int = 0
    input_shape: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None
    activations: int = 0
    inplace: bool = True
    macs: int = 0
    macs_at_entry: int = 0
    inputs: list = field(default_factory=list)


def _per_sample(shape: torch.Size) -> tuple[int, ...]:
    dims = tuple(int(s) for s in shape)
    return dims[1:] if len(dims) > 1 and dims[0] == 1 else dims


def _packed_weights(module: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Weight and bias of quantized layers, which keep them packed rather than as nn.Parameters."""
    weight = getattr(module, "weight", None)
    if callable(weight) and not isinstance(weight, torch.Tensor):
        try:
            w = weight()
            b = module.bias() if callable(getattr(module, "bias", None)) else None
            return (w if isinstance(w, torch.Tensor) else None), (b if isinstance(b, torch.Tensor) else None)
        except Exception:
            return None, None
    return None, None


def _layer_attrs(module: nn.Module) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for key in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                "in_features", "out_features"):  # fmt: skip
        value = getattr(module, key, None)
        if isinstance(value, (int, tuple, str)) and not callable(value):
            attrs[key] = value
    if "in_channels" in attrs or "in_features" in attrs:
        bias = getattr(module, "bias", None)
        if callable(bias) and not isinstance(bias, torch.Tensor):
            _, bias = _packed_weights(module)
        attrs["bias"] = bias is not None
    return attrs


def _quantized_macs(module: nn.Module, inputs: list[torch.Tensor], output: list[torch.Tensor]) -> int:
    """torch has no flop formula for quantized kernels: price them like their float twins."""
    weight, _ = _packed_weights(module)
    if weight is None or not inputs or not output:
        return 0
    x, y = inputs[0], output[0]
    if weight.dim() == 2:  # linear: one multiply-add per weight per input row
        return int(y.numel() * weight.shape[1])
    if weight.dim() >= 3:
        from torch.utils.flop_counter import conv_flop_count

        return conv_flop_count(list(x.shape), list(weight.shape), list(y.shape)) // 2
    return 0


def _run(model: nn.Module, example: torch.Tensor, label: str, input_size: tuple[int, ...], method: str) -> Profile:
    modules = dict(model.named_modules())  # shared modules appear once, under their first name
    # Leaves: modules without children, and quantized layers (whose packed weights sit in a child).
    leaves = {
        id(m) for m in modules.values() if next(m.children(), None) is None or _packed_weights(m)[0] is not None
    }
    stats: dict[int, _Stats] = {}
    stack: list[nn.Module] = []
    ops: dict[str, int] = {}
    order = itertools.count()

    def stat(module: nn.Module) -> _Stats:
        return stats.setdefault(id(module), _Stats())

    def charge(op: str, macs: int) -> None:
        owner = stat(stack[-1] if stack else model)
        if owner.order is None:
            owner.order = next(order)
        owner.macs += macs
        ops[op] = ops.get(op, 0) + macs

    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        s = stat(module)
        s.calls += 1
        inputs = _tensors((args, kwargs))
        s.inputs, s.macs_at_entry = inputs, s.macs
        if s.input_shape is None and inputs:
            s.input_shape = _per_sample(inputs[0].shape)
        if s.order is None and (id(module) in leaves or any(True for _ in module.parameters(recurse=False))):
            s.order = next(order)
        stack.append(module)

    def post_hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if stack and stack[-1] is module:
            stack.pop()
        s = stat(module)
        outputs = _tensors(output)
        if s.output_shape is None and outputs:
            s.output_shape = _per_sample(outputs[0].shape)
        s.activations += sum(int(t.numel()) // max(1, int(example.shape[0])) for t in outputs)
        s.inplace = s.inplace and bool(outputs) and all(any(o is i for i in s.inputs) for o in outputs)
        if id(module) in leaves and s.macs == s.macs_at_entry:  # nothing priced during this call
            quantized = _quantized_macs(module, s.inputs, outputs)
            if quantized:
                s.macs += quantized
                ops["quantized"] = ops.get("quantized", 0) + quantized
        s.inputs = []

    counter = _MacCounter(charge)
    with call_hooks(modules.values(), pre_hook, post_hook), counter:
        model(example)

    seen: set[int] = set()
    rows: list[tuple[float, LayerRow]] = []
    total_macs = sum(s.macs for s in stats.values())
    for position, (name, module) in enumerate(modules.items()):
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        params = sum(p.numel() for p in own)
        packed_w, packed_b = _packed_weights(module)
        params += sum(t.numel() for t in (packed_w, packed_b) if t is not None)
        s = stats.get(id(module), _Stats())
        is_leaf = id(module) in leaves
        if not ((is_leaf and s.calls) or params or s.macs):
            continue
        note = "" if is_leaf or not s.macs else "operations in its own forward() (e.g. attention matmuls)"
        row = LayerRow(
            name=name or "(model)",
            type=type(module).__name__,
            input_shape=s.input_shape,
            output_shape=s.output_shape,
            params=int(params),
            macs=int(s.macs),
            activations=int(s.activations),
            pct_macs=100.0 * s.macs / total_macs if total_macs else 0.0,
            calls=s.calls,
            inplace=bool(s.calls) and s.inplace,
            attrs=_layer_attrs(module) if is_leaf else {},
            note=note if s.calls else "never called in forward()",
        )
        rows.append((s.order if s.order is not None else 1e9 + position, row))
    layers = tuple(row for _, row in sorted(rows, key=lambda item: item[0]))
    return Profile(
        name=label,
        input_size=tuple(input_size),
        total_params=sum(r.params for r in layers),
        total_macs=int(total_macs),
        layers=layers,
        ops=ops,
        method=method,
        total_buffers=sum(int(b.numel()) for b in model.buffers()),
        peak_activation_bytes=int(example.numel() * example.element_size() + counter.memory.peak),
        peak_working_bytes=int(example.numel() * example.element_size() + counter.memory.peak_working),
    )


def check_budget(estimate: memory_budget.MemoryEstimate, what: str = "This network") -> None:
    """Raise :class:`OverBudget` when a real run would need more than one run may use."""
    if not estimate.fits():
        raise OverBudget(estimate, what)


def _resolution_of(size: tuple[int, ...]) -> Any:
    return size[-1] if len(size) < 3 or size[-1] == size[-2] else (size[-2], size[-1])


def _check_named(name: str, size: tuple[int, ...], label: str) -> None:
    """Refuse (:class:`OverBudget`) a real run of ``name`` whose shapes-only estimate is over the budget."""
    check_budget(memory_estimate(profile(name, size, name=label)), label)


def _cpu_model(name: str, size: tuple[int, ...]) -> nn.Module:
    """``name`` built untrained on the CPU (check the budget first, build inside a run slot)."""
    return zoo.build(name, resolution=_resolution_of(size), device="cpu")


def _input_for(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) < 300 else text[:297] + "…"


Runner = Callable[[nn.Module, torch.Tensor, str, tuple[int, ...], str], Any]  # (model, example, label, size, method)


def _profile_module(model: nn.Module, input_size: tuple[int, ...], label: str, run: Runner | None = None) -> Any:
    """Profile a caller's module with one forward pass on zeros (on its own device), restoring its modes.

    ``run`` replaces the profiler's own pass (:func:`_run`), e.g. by the receptive-field trace.
    """
    run = run or _run
    device, dtype = _input_for(model)
    modes = {m: m.training for m in model.modules()}
    with _module_lock:
        model.eval()
        try:
            with torch.inference_mode():
                example = torch.zeros((1, *input_size), device=device, dtype=dtype)
                method = "meta" if device.type == "meta" else "forward"
                return run(model, example, label, input_size, method)
        except ProfileError:
            raise
        except Exception as exc:
            raise ProfileError(f"{label} cannot run on a {'×'.join(map(str, input_size))} input: {_short(exc)}") from exc
        finally:
            for module, training in modes.items():
                module.training = training


def _named_input_size(name: str, input_size: tuple[int, ...] | None) -> tuple[int, ...]:
    """``input_size``, or the zoo architecture's own channels and native resolution."""
    try:
        channels, native = zoo.input_channels(name), zoo.native_resolution(name)
    except zoo.UnknownModel as exc:
        raise ProfileError(str(exc)) from None
    return _check_input_size(input_size or (channels, native, native))


def _check_input_size(input_size: Sequence[int]) -> tuple[int, ...]:
    size = tuple(int(s) for s in input_size)
    if len(size) < 1 or any(s <= 0 for s in size):
        raise ProfileError(f"Input size must be positive numbers like (3, 224, 224), not {tuple(input_size)}.")
    return size


def profile(model: "nn.Module | str", input_size: Sequence[int] | None = None, *, name: str | None = None) -> Profile:
    """Per-layer parameters, MACs and activations of ``model`` for one input of ``input_size`` (C, H, W).

    ``model`` is an ``nn.Module`` (run for real, left unchanged), or a name: a zoo key
    (:data:`cvdemo.zoo.ZOO`, including ``mobilenetv1_025`` ... ``mobilenetv1_100``), a torchvision
    classification model ("resnet50", "VGG-16") or a timm model, built untrained on the meta
    device. ``input_size`` defaults to the architecture's native size for names, (3, 224, 224)
    for modules. Raises :class:`ProfileError` with a readable message.
    """
    if isinstance(model, str):
        size = _named_input_size(model, input_size)
        label = name or zoo.label(model)
        from cvdemo import results  # a named architecture is profiled once per process, for every session

        return results.cached(results.key("profile", model, tuple(size), label), lambda: _on_named(model, size, label))
    if not isinstance(model, nn.Module):
        raise ProfileError(f"Expected an nn.Module or a model name, got {type(model).__name__}.")
    size = _check_input_size(input_size or (3, 224, 224))
    return _profile_module(model, size, name or type(model).__name__)


def _on_named(model: str, size: tuple[int, ...], label: str, run: Runner | None = None) -> Any:
    """``run`` (default: the profiler's pass) on zoo/torchvision/timm model ``model``, built untrained on meta."""
    run = run or _run
    try:
        module = zoo.build(model, resolution=_resolution_of(size), device="meta")
    except Exception as exc:
        raise ProfileError(f"{label} could not be built for a {'×'.join(map(str, size))} input: {_short(exc)}") from exc
    try:
        with torch.no_grad():
            return run(module, torch.zeros((1, *size), device="meta"), label, size, "meta")
    except Exception:
        pass
    # A few architectures need real values in forward() (e.g. .item()): run those for real, if
    # their weights fit (their activations cannot be known before running).
    params, buffers = (sum(t.numel() for t in ts) for ts in (module.parameters(), module.buffers()))
    check_budget(memory_budget.estimate(params, buffers, None), label)
    del module
    with memory_budget.run_slot():
        return _profile_module(_cpu_model(model, size), size, label, run)


def profile_spec(text: str, input_size: Sequence[int] | None = None) -> Profile:
    """Profile a typed network (see :data:`SPEC_HELP`); rows carry their spec line in ``note``.

    Once per process for each text: the page, its counters' budget check and the picture panel ask for the same.
    """
    from cvdemo import results

    size = None if input_size is None else tuple(input_size)
    return results.cached(results.key("profile spec", text, size), lambda: _profile_spec(text, size))


def _profile_spec(text: str, input_size: Sequence[int] | None) -> Profile:
    with torch.device("meta"):
        net = build_spec(text, input_size)
    with torch.no_grad():
        result = _run(net.model, torch.zeros((1, *net.input_size), device="meta"), "typed network", net.input_size, "meta")
    notes = {layer.name: f"line {layer.line}: {layer.text}" for layer in net.layers}
    rows = tuple(dataclasses.replace(r, note=notes.get(r.name, r.note)) for r in result.layers)
    return dataclasses.replace(result, layers=rows)
