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
estimates its memory from the shapes (:mod:`cvdemo.memory_budget`) and refuses with
:class:`OverBudget` when it is over the per-run budget; the counts from shapes stay available.

``profile_spec(text)`` builds a network from the one-layer-a-line notation students use on
paper (see :func:`build_spec`).
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
import threading
import time
import warnings
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from cvdemo import memory_budget, zoo

aten = torch.ops.aten

# torch.utils.flop_counter's formulas, plus the fused attention kernel PyTorch picks on CPU,
# which FlopCounterMode has no formula for (it would count ViT attention as zero).
_FORMULAS: dict[Any, Callable[..., int]] = {
    **flop_registry,
    aten._scaled_dot_product_flash_attention_for_cpu: flop_registry[aten._scaled_dot_product_flash_attention],
}
# Metadata queries the dispatcher routes through modes; they compute nothing (as in FlopCounterMode).
_QUERIES = {
    aten.sym_is_contiguous.default, aten.is_contiguous.default, aten.is_contiguous.memory_format,
    aten.is_strides_like_format.default, aten.is_non_overlapping_and_dense.default,
    aten.size.default, aten.sym_size.default, aten.stride.default, aten.sym_stride.default,
    aten.storage_offset.default, aten.sym_storage_offset.default, aten.numel.default,
    aten.sym_numel.default, aten.dim.default, torch.ops.prim.layout.default,
}  # fmt: skip
BYTES_PER_ACTIVATION = 4  # float32

_module_lock = threading.Lock()  # hooks on a caller's module must not interleave across threads


class ProfileError(ValueError):
    """The model could not be profiled; the message says why in one sentence."""


class OverBudget(ProfileError):
    """A real run would need more memory than one run may use; ``estimate`` says how much."""

    def __init__(self, estimate: memory_budget.MemoryEstimate, what: str = "This network"):
        super().__init__(
            f"{estimate.sentence(what)} So it is not run for real here; its parameters and MACs are "
            "still counted from shapes alone (no forward pass)."
        )
        self.estimate = estimate


class SpecError(ValueError):
    """A typed network has a bad line; ``line`` is its 1-based number (None: the whole spec)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerRow:
    """One leaf layer (or a container's own work, e.g. the matmuls inside an attention block)."""

    name: str  # module path, "(model)" for the top level
    type: str  # module class
    input_shape: tuple[int, ...] | None  # per sample (batch dimension dropped); None: never ran
    output_shape: tuple[int, ...] | None
    params: int
    macs: int
    activations: int  # output elements per sample, summed over calls
    pct_macs: float  # share of the model's MACs, in percent
    calls: int = 1
    inplace: bool = False  # the output is the input tensor (in-place ReLU, Identity): no new memory
    attrs: dict[str, Any] = field(default_factory=dict)  # conv/linear hyper-parameters for formulas
    note: str = ""  # e.g. the spec line this layer came from

    @property
    def activation_bytes(self) -> int:
        return 0 if self.inplace else self.activations * BYTES_PER_ACTIVATION


@dataclass(frozen=True)
class Profile:
    name: str
    input_size: tuple[int, ...]  # (C, H, W)
    total_params: int
    total_macs: int
    layers: tuple[LayerRow, ...]
    ops: dict[str, int] = field(default_factory=dict)  # MACs per aten operator, e.g. aten.convolution
    method: str = "meta"  # "meta": shapes only; "forward": a real forward pass on zeros
    total_buffers: int = 0  # elements of every buffer (BatchNorm's running statistics, ...)
    peak_activation_bytes: int = 0  # most activation memory alive at once in forward(), input included
    peak_working_bytes: int = 0  # the same with a working copy of the operator being computed

    @property
    def total_flops(self) -> int:
        return 2 * self.total_macs

    @property
    def total_activations(self) -> int:
        return sum(r.activations for r in self.layers if not r.inplace)

    @property
    def activation_bytes(self) -> int:
        return sum(r.activation_bytes for r in self.layers)

    def layer(self, name: str) -> LayerRow:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_frame(self):
        """The per-layer table as a pandas DataFrame (shapes as "CxHxW" text)."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "layer": r.name,
                    "type": r.type,
                    "input": shape_text(r.input_shape),
                    "output": shape_text(r.output_shape),
                    "params": r.params,
                    "MACs": r.macs,
                    "FLOPs": 2 * r.macs,
                    "activations": r.activations,
                    "% MACs": round(r.pct_macs, 3),
                    "calls": r.calls,
                    "note": r.note,
                }
                for r in self.layers
            ]
        )


def shape_text(shape: Sequence[int] | None) -> str:
    """(64, 112, 112) -> "64×112×112" (channels first, as PyTorch stores it)."""
    return "—" if shape is None else "×".join(str(s) for s in shape) or "scalar"


def compact(n: float) -> str:
    """15_470_264_320 -> "15.47 G": four significant digits with K, M, G, T (headline numbers)."""
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            value = n / size
            return f"{value:.4g} {suffix}" if value < 1000 else f"{value:,.0f} {suffix}"
    return f"{n:,.0f}"


def memory_estimate(prof: Profile) -> memory_budget.MemoryEstimate:
    """Memory one real forward pass of the profiled network needs (weights, activations, working)."""
    return memory_budget.estimate(prof.total_params, prof.total_buffers, prof.peak_activation_bytes, prof.peak_working_bytes)


def human(n: float, unit: str = "") -> str:
    """1_234_567 -> "1.23M" (K, M, G, T; for slides)."""
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"


# ----------------------------------------------------------------------------------------------
# The counter
# ----------------------------------------------------------------------------------------------


class _Allocation:
    """The bytes one operator output holds; freed when the last tensor holding it (it or a view) dies."""

    __slots__ = ("meter", "nbytes")

    def __init__(self, meter: "_LiveBytes", nbytes: int):
        self.meter, self.nbytes = meter, nbytes
        meter.allocate(nbytes)

    def __del__(self) -> None:
        self.meter.live -= self.nbytes


class _LiveBytes:
    """When eager PyTorch allocates and frees the tensors of a forward pass, replayed on shapes.

    Every operator output that is not a view or an in-place result gets an :class:`_Allocation`;
    views share their source's. Python frees a (meta) tensor exactly when it would free the real
    one, so ``peak`` is the most activation memory alive at once, without computing anything.
    """

    _TAG = "_cvdemo_allocation"

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0  # most bytes alive at once
        self.peak_working = 0  # most bytes alive at once plus a working copy of the op being computed

    def allocate(self, nbytes: int) -> None:
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        self.peak_working = max(self.peak_working, self.live + WORKING_COPIES * nbytes)

    def track(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        aliased_args, aliased_returns = _aliasing(func)
        shared: list[_Allocation] = []
        for i, name in aliased_args:
            for t in _tensors(args[i] if i < len(args) else kwargs.get(name)):
                shared.extend(getattr(t, self._TAG, ()))
        values = out if len(aliased_returns) > 1 else (out,)
        for is_alias, value in zip(aliased_returns, values):
            for t in _tensors(value):
                if hasattr(t, self._TAG):
                    continue
                try:
                    if is_alias:
                        setattr(t, self._TAG, tuple(shared))
                    else:
                        setattr(t, self._TAG, (_Allocation(self, t.numel() * t.element_size()),))
                except (AttributeError, RuntimeError):  # a tensor subclass without attributes: not tracked
                    pass


_ALIASING: dict[Any, tuple[tuple[tuple[int, str], ...], tuple[bool, ...]]] = {}


def _aliasing(func: Any) -> tuple[tuple[tuple[int, str], ...], tuple[bool, ...]]:
    """(position, name) of the arguments an operator's outputs may view, and which outputs are views."""
    if func not in _ALIASING:
        schema = func._schema
        _ALIASING[func] = (
            tuple((i, a.name) for i, a in enumerate(schema.arguments) if a.alias_info is not None),
            tuple(r.alias_info is not None for r in schema.returns),
        )
    return _ALIASING[func]


WORKING_COPIES = 2  # oneDNN convolves in a blocked layout: the input copied in, the output copied back


class _MacCounter(TorchDispatchMode):
    """Prices every aten operator with torch.utils.flop_counter's formulas (FLOPs = 2 x MACs).

    It also replays which outputs are alive when (:class:`_LiveBytes`), for the memory estimate.
    """

    def __init__(self, charge: Callable[[str, int], None]):
        super().__init__()
        self.charge = charge
        self.memory = _LiveBytes()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _QUERIES:
            return NotImplemented
        if isinstance(func, torch._ops.HigherOrderOperator):
            return NotImplemented
        packet = func._overloadpacket
        if packet not in _FORMULAS and func is not torch.ops.prim.device.default:
            # A composite op without a formula may decompose into ones with formulas (as FlopCounterMode does).
            with self:
                out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    return out
        out = func(*args, **kwargs)
        self.memory.track(func, args, kwargs, out)
        if packet in _FORMULAS:
            flops = _FORMULAS[packet](*args, **kwargs, out_val=out)
            self.charge(str(packet), int(flops) // 2)
        return out


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


def _tensors(obj: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(obj)[0] if isinstance(t, torch.Tensor)]


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

    handles = []
    for module in modules.values():
        handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(module.register_forward_hook(post_hook, with_kwargs=True, always_call=True))
    counter = _MacCounter(charge)
    try:
        with counter:
            model(example)
    finally:
        for handle in handles:
            handle.remove()

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


def _profile_module(model: nn.Module, input_size: tuple[int, ...], label: str) -> Profile:
    """Profile a caller's module with one forward pass on zeros (on its own device), restoring its modes."""
    device, dtype = _input_for(model)
    modes = {m: m.training for m in model.modules()}
    with _module_lock:
        model.eval()
        try:
            with torch.inference_mode():
                example = torch.zeros((1, *input_size), device=device, dtype=dtype)
                method = "meta" if device.type == "meta" else "forward"
                return _run(model, example, label, input_size, method)
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

        return results.cached(results.key("profile", model, tuple(size), label), lambda: _profile_named(model, size, label))
    if not isinstance(model, nn.Module):
        raise ProfileError(f"Expected an nn.Module or a model name, got {type(model).__name__}.")
    size = _check_input_size(input_size or (3, 224, 224))
    return _profile_module(model, size, name or type(model).__name__)


def _profile_named(model: str, size: tuple[int, ...], label: str) -> Profile:
    resolution = _resolution_of(size)
    try:
        module = zoo.build(model, resolution=resolution, device="meta")
    except Exception as exc:
        raise ProfileError(f"{label} could not be built for a {'×'.join(map(str, size))} input: {_short(exc)}") from exc
    try:
        with torch.no_grad():
            return _run(module, torch.zeros((1, *size), device="meta"), label, size, "meta")
    except Exception:
        pass
    # A few architectures need real values in forward() (e.g. .item()): run those for real, if
    # their weights fit (their activations cannot be known before running).
    params, buffers = (sum(t.numel() for t in ts) for ts in (module.parameters(), module.buffers()))
    check_budget(memory_budget.estimate(params, buffers, None), label)
    del module
    with memory_budget.run_slot():
        return _profile_module(_cpu_model(model, size), size, label)


# ----------------------------------------------------------------------------------------------
# Typed networks: one layer a line
# ----------------------------------------------------------------------------------------------

SPEC_HELP = """\
input HxWxC          first line, e.g. input 32x32x3
conv N KxK [stride S] [padding same|valid|P]
       [groups G] [dilation D] [nobias]
dwconv KxK [stride S] [padding ...] [nobias]
maxpool KxK [stride S] [padding P]  (stride = K)
avgpool KxK [stride S] [padding P]
globalavgpool        HxWxC -> C
flatten              HxWxC -> H*W*C
dense N [nobias]     also: fc, linear
bn  relu  tanh  sigmoid  softmax  dropout [p]
# comments and blank lines are ignored"""

SPEC_EXAMPLE = """\
input 32x32x3
conv 8 3x3 stride 1 padding same
conv 16 5x5 stride 2 padding same
maxpool 2x2 stride 2
dwconv 3x3 stride 1 padding same
conv 64 1x1 groups 4
flatten
dense 512
dense 4
"""

_KEYWORDS = ("input", "conv", "dwconv", "maxpool", "avgpool", "globalavgpool", "flatten", "dense",
             "bn", "relu", "tanh", "sigmoid", "softmax", "dropout")  # fmt: skip
_ALIASES = {"conv2d": "conv", "depthwise": "dwconv", "dwconv2d": "dwconv", "fc": "dense", "linear": "dense",
            "gap": "globalavgpool", "globalavgpool2d": "globalavgpool", "batchnorm": "bn", "pool": "maxpool",
            "maxpool2d": "maxpool", "avgpool2d": "avgpool"}  # fmt: skip


class GlobalAvgPool(nn.Module):
    """HxWxC feature map -> C vector (Keras' GlobalAveragePooling2D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


@dataclass(frozen=True)
class SpecLayer:
    line: int
    text: str
    kind: str
    name: str  # module name in the built nn.Sequential
    output: tuple[int, ...]  # (C, H, W) or (F,)


def _pair(token: str, what: str, line: int, text: str) -> tuple[int, int]:
    parts = token.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise SpecError(f"Line {line} ('{text}'): expected {what} like 3x3 or 3, got '{token}'.", line)
    values = [int(p) for p in parts]
    return (values[0], values[-1])


def _int(token: str | None, what: str, line: int, text: str, minimum: int = 1) -> int:
    if token is None or not token.isdigit() or int(token) < minimum:
        raise SpecError(f"Line {line} ('{text}'): expected {what} (a whole number ≥ {minimum}), got '{token or ''}'.", line)
    return int(token)


def _options(tokens: list[str], allowed: set[str], line: int, text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        key = tokens[i]
        if key in ("nobias", "bias") and "bias" in allowed:
            options["bias"] = "no" if key == "nobias" else "yes"
            i += 1
            continue
        if key not in allowed:
            expected = ", ".join(sorted(a for a in allowed if a != "bias"))
            raise SpecError(f"Line {line} ('{text}'): unexpected '{key}'; expected one of: {expected}.", line)
        if i + 1 >= len(tokens):
            raise SpecError(f"Line {line} ('{text}'): '{key}' needs a value.", line)
        options[key] = tokens[i + 1]
        i += 2
    return options


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True)
class SpecNetwork:
    model: nn.Sequential
    layers: tuple[SpecLayer, ...]  # what each layer line became
    input_size: tuple[int, int, int]  # (C, H, W)


def build_spec(text: str, input_size: Sequence[int] | None = None) -> SpecNetwork:
    """An ``nn.Sequential`` from a typed network (see :data:`SPEC_HELP`), and what each line became.

    ``input_size`` (C, H, W) replaces the spec's ``input`` line. Raises :class:`SpecError` naming
    the line and what was expected, or which layer does not fit its input and why.
    """
    lines = [(n, raw.split("#", 1)[0].strip()) for n, raw in enumerate(text.splitlines(), start=1)]
    lines = [(n, t) for n, t in lines if t]
    if not lines:
        raise SpecError("The network is empty: write one layer a line, starting with 'input HxWxC'.")
    shape: tuple[int, ...] | None = None
    if input_size is not None:
        c, h, w = (int(s) for s in input_size)
        shape = (c, h, w)
    first_shape = shape
    modules: dict[str, nn.Module] = {}
    layers: list[SpecLayer] = []
    counts: dict[str, int] = {}

    for index, (line, text_line) in enumerate(lines):
        tokens = text_line.lower().replace(",", " ").split()
        kind = _ALIASES.get(tokens[0], tokens[0])
        args = tokens[1:]
        if kind not in _KEYWORDS:
            raise SpecError(f"Line {line} ('{text_line}'): unknown layer '{tokens[0]}'. Expected one of: {', '.join(_KEYWORDS)}.", line)
        if kind == "input":
            if index != 0:
                raise SpecError(f"Line {line} ('{text_line}'): 'input' must be the first line.", line)
            if len(args) != 1 or not re.fullmatch(r"\d+x\d+x\d+", args[0]):
                raise SpecError(f"Line {line} ('{text_line}'): expected 'input HxWxC', e.g. 'input 32x32x3'.", line)
            h, w, c = (int(v) for v in args[0].split("x"))
            if min(h, w, c) <= 0:
                raise SpecError(f"Line {line} ('{text_line}'): height, width and channels must be positive.", line)
            if input_size is None:
                shape = first_shape = (c, h, w)
            continue
        if shape is None:
            raise SpecError(f"Line {line} ('{text_line}'): start the network with 'input HxWxC', e.g. 'input 32x32x3'.", line)
        where = f"Line {line} ('{text_line}')"
        is_map = len(shape) == 3
        module: nn.Module

        if kind in ("conv", "dwconv"):
            if not is_map:
                raise SpecError(f"{where}: {kind} needs an HxWxC feature map, but its input is a vector of {shape[0]} values.", line)
            c_in, h, w = shape
            if kind == "conv":
                if len(args) < 2:
                    raise SpecError(f"{where}: expected 'conv N KxK', e.g. 'conv 16 3x3'.", line)
                c_out = _int(args[0], "the number of filters N", line, text_line)
                kernel = _pair(args[1], "a kernel size", line, text_line)
                opts = _options(args[2:], {"stride", "padding", "groups", "dilation", "bias"}, line, text_line)
                groups = _int(opts.get("groups", "1"), "groups", line, text_line)
            else:
                if len(args) < 1:
                    raise SpecError(f"{where}: expected 'dwconv KxK', e.g. 'dwconv 3x3'.", line)
                kernel = _pair(args[0], "a kernel size", line, text_line)
                opts = _options(args[1:], {"stride", "padding", "dilation", "bias"}, line, text_line)
                c_out, groups = c_in, c_in
            stride = _pair(opts.get("stride", "1"), "a stride", line, text_line)
            dilation = _int(opts.get("dilation", "1"), "dilation", line, text_line)
            if c_in % groups or c_out % groups:
                raise SpecError(f"{where}: groups={groups} must divide both the {c_in} input channels and the {c_out} filters.", line)
            padding_word = opts.get("padding", "valid")
            padding: Any
            if padding_word == "same":
                if all((k - 1) * dilation % 2 == 0 for k in kernel):
                    padding = tuple((k - 1) * dilation // 2 for k in kernel)
                elif stride == (1, 1):
                    padding = "same"  # even kernel: PyTorch pads one more on the far side
                else:
                    raise SpecError(f"{where}: 'padding same' with an even kernel and stride > 1 needs uneven padding; write 'padding P' instead.", line)
            elif padding_word == "valid":
                padding = (0, 0)
            else:
                p = _int(padding_word, "padding (same, valid or a number)", line, text_line, minimum=0)
                padding = (p, p)
            pads = padding if isinstance(padding, tuple) else tuple(((k - 1) * dilation) // 2 for k in kernel)
            h_out = h if padding == "same" else _conv_out(h, kernel[0], stride[0], pads[0], dilation)
            w_out = w if padding == "same" else _conv_out(w, kernel[1], stride[1], pads[1], dilation)
            if h_out < 1 or w_out < 1:
                raise SpecError(
                    f"{where}: the {kernel[0]}x{kernel[1]} kernel"
                    + (f" (dilation {dilation})" if dilation > 1 else "")
                    + f" does not fit its {h}x{w}x{c_in} input with padding {pads[0]}: "
                    f"the output would be {h_out}x{w_out}.",
                    line,
                )
            module = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias=opts.get("bias") != "no")
            shape = (c_out, h_out, w_out)
        elif kind in ("maxpool", "avgpool"):
            if not is_map:
                raise SpecError(f"{where}: {kind} needs an HxWxC feature map, but its input is a vector of {shape[0]} values.", line)
            if not args:
                raise SpecError(f"{where}: expected '{kind} KxK', e.g. '{kind} 2x2'.", line)
            c_in, h, w = shape
            kernel = _pair(args[0], "a pooling window", line, text_line)
            opts = _options(args[1:], {"stride", "padding"}, line, text_line)
            stride = _pair(opts["stride"], "a stride", line, text_line) if "stride" in opts else kernel
            p = _int(opts.get("padding", "0"), "padding", line, text_line, minimum=0)
            if p * 2 > min(kernel):
                raise SpecError(f"{where}: padding {p} is more than half the {kernel[0]}x{kernel[1]} window.", line)
            h_out, w_out = _conv_out(h, kernel[0], stride[0], p, 1), _conv_out(w, kernel[1], stride[1], p, 1)
            if h_out < 1 or w_out < 1:
                raise SpecError(f"{where}: the {kernel[0]}x{kernel[1]} window is larger than its {h}x{w}x{c_in} input.", line)
            cls = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
            module = cls(kernel, stride, p)
            shape = (c_in, h_out, w_out)
        elif kind == "globalavgpool":
            if not is_map:
                raise SpecError(f"{where}: globalavgpool needs an HxWxC feature map, but its input is a vector.", line)
            _options(args, set(), line, text_line)
            module, shape = GlobalAvgPool(), (shape[0],)
        elif kind == "flatten":
            _options(args, set(), line, text_line)
            module, shape = nn.Flatten(), (math.prod(shape),)
        elif kind == "dense":
            if not args:
                raise SpecError(f"{where}: expected 'dense N', e.g. 'dense 10'.", line)
            units = _int(args[0], "the number of units N", line, text_line)
            opts = _options(args[1:], {"bias"}, line, text_line)
            if is_map:
                c_in, h, w = shape
                raise SpecError(f"{where}: the input is a {h}x{w}x{c_in} feature map; add 'flatten' (or 'globalavgpool') before 'dense'.", line)
            module, shape = nn.Linear(shape[0], units, bias=opts.get("bias") != "no"), (units,)
        elif kind == "bn":
            _options(args, set(), line, text_line)
            module = nn.BatchNorm2d(shape[0]) if is_map else nn.BatchNorm1d(shape[0])
        elif kind == "dropout":
            p = float(args[0]) if args and re.fullmatch(r"0?\.\d+|0|1", args[0]) else 0.5
            if len(args) > 1 or (args and not re.fullmatch(r"0?\.\d+|0|1", args[0])):
                raise SpecError(f"{where}: expected 'dropout' or 'dropout P' with 0 ≤ P ≤ 1.", line)
            module = nn.Dropout(p)
        else:  # activations
            _options(args, set(), line, text_line)
            module = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}.get(kind, lambda: nn.Softmax(dim=1))()
        counts[kind] = counts.get(kind, 0) + 1
        name = f"{kind}{counts[kind]}"
        modules[name] = module
        layers.append(SpecLayer(line, text_line, kind, name, tuple(shape)))
        if math.prod(shape) > 2**40:
            raise SpecError(f"{where}: the output would have {math.prod(shape):,} values; that is beyond any real network.", line)

    if shape is None:
        raise SpecError("Start the network with 'input HxWxC', e.g. 'input 32x32x3'.", 1)
    if not modules:
        line, text_line = lines[-1]
        raise SpecError(f"Line {line} ('{text_line}'): the network has an input but no layers; add one a line below it.", line)
    from collections import OrderedDict

    assert first_shape is not None
    return SpecNetwork(nn.Sequential(OrderedDict(modules)), tuple(layers), first_shape)  # type: ignore[arg-type]


def profile_spec(text: str, input_size: Sequence[int] | None = None) -> Profile:
    """Profile a typed network (see :data:`SPEC_HELP`); rows carry their spec line in ``note``."""
    with torch.device("meta"):
        net = build_spec(text, input_size)
    with torch.no_grad():
        result = _run(net.model, torch.zeros((1, *net.input_size), device="meta"), "typed network", net.input_size, "meta")
    notes = {layer.name: f"line {layer.line}: {layer.text}" for layer in net.layers}
    rows = tuple(dataclasses.replace(r, note=notes.get(r.name, r.note)) for r in result.layers)
    return dataclasses.replace(result, layers=rows)


# ----------------------------------------------------------------------------------------------
# Formulas, breakdowns, separable convs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Formula:
    layer: str
    kind: str  # "standard conv", "depthwise conv", "grouped conv", "dense"
    params_symbols: str
    params_numbers: str
    params: int
    macs_symbols: str
    macs_numbers: str
    macs: int


def _n(value: int) -> str:
    return f"{value:,}"


def formula(row: LayerRow) -> Formula | None:
    """A conv or dense layer's parameters and MACs worked out by the lecture's formulas, with its numbers."""
    a = row.attrs
    if row.output_shape is None:
        return None
    bias = bool(a.get("bias"))
    if "in_channels" in a and "kernel_size" in a and isinstance(a.get("padding"), (tuple, str)):
        c_in, c_out, groups = a["in_channels"], a["out_channels"], a.get("groups", 1)
        kernel = tuple(a["kernel_size"])
        k_text = "·".join(str(k) for k in kernel)
        spatial = row.output_shape[1:]
        out_text = "·".join(str(s) for s in spatial)
        per_filter = math.prod(kernel) * (c_in // groups)
        params = per_filter * c_out + (c_out if bias else 0)
        macs = per_filter * c_out * math.prod(spatial) * row.calls
        if groups == 1:
            kind = "standard conv"
        elif groups == c_in and c_out % c_in == 0:
            kind = "depthwise conv"
        else:
            kind = "grouped conv"
        k_sym = "·".join(["k"] * len(kernel))
        hw_sym = "·".join(["H_out", "W_out", "D_out"][: len(spatial)])
        g_sym = "(C_in/groups)" if groups > 1 else "C_in"
        g_num = f"({c_in}/{groups})" if groups > 1 else str(c_in)
        calls = f" · {row.calls} calls" if row.calls > 1 else ""
        return Formula(
            layer=row.name,
            kind=kind,
            params_symbols=f"{k_sym}·{g_sym}·C_out" + (" + C_out" if bias else "  (no bias)"),
            params_numbers=f"{k_text}·{g_num}·{c_out}" + (f" + {c_out}" if bias else "") + f" = {_n(params)}",
            params=params,
            macs_symbols=f"{k_sym}·{g_sym}·C_out·{hw_sym}" + (" · calls" if row.calls > 1 else ""),
            macs_numbers=f"{k_text}·{g_num}·{c_out}·{out_text}{calls} = {_n(macs)}",
            macs=macs,
        )
    if "in_features" in a and "out_features" in a:
        c_in, c_out = a["in_features"], a["out_features"]
        rows = math.prod(row.output_shape[:-1]) if len(row.output_shape) > 1 else 1
        params = c_in * c_out + (c_out if bias else 0)
        macs = c_in * c_out * rows * row.calls
        tokens = f"·{rows}" if rows > 1 else ""
        return Formula(
            layer=row.name,
            kind="dense",
            params_symbols="C_in·C_out" + (" + C_out" if bias else "  (no bias)"),
            params_numbers=f"{c_in}·{c_out}" + (f" + {c_out}" if bias else "") + f" = {_n(params)}",
            params=params,
            macs_symbols="C_in·C_out" + (" · tokens" if rows > 1 else "") + (" · calls" if row.calls > 1 else ""),
            macs_numbers=f"{c_in}·{c_out}{tokens}" + (f"·{row.calls}" if row.calls > 1 else "") + f" = {_n(macs)}",
            macs=macs,
        )
    return None


@dataclass(frozen=True)
class Group:
    name: str
    label: str  # name plus what the layer is, e.g. "features.0 · conv 11×11, 64"
    params: int
    macs: int
    activation_bytes: int
    layers: int


def breakdown(prof: Profile, max_groups: int = 40) -> list[Group]:
    """Where parameters, MACs and activation memory live, in at most ``max_groups`` groups in order.

    Small nets: one group per conv/dense layer, with the BatchNorm, activation and pooling layers
    after it. Big nets: layers grouped by module path prefix (e.g. ``layer1.0``), the finest that fits.
    """
    rows = list(prof.layers)
    if not rows:
        return []
    computing = [r for r in rows if r.macs]
    keys: list[str]
    if len(computing) <= max_groups:
        keys, current = [], computing[0].name if computing else rows[0].name
        for r in rows:
            if r.macs:
                current = r.name
            keys.append(current)
    else:
        depth = 1
        for d in range(1, 8):
            if len({".".join(r.name.split(".")[:d]) for r in rows}) <= max_groups:
                depth = d
            else:
                break
        keys = [".".join(r.name.split(".")[:depth]) for r in rows]
    groups: dict[str, list[LayerRow]] = {}
    for key, r in zip(keys, rows):
        groups.setdefault(key, []).append(r)
    return [
        Group(
            key,
            _group_label(key, rs),
            sum(r.params for r in rs),
            sum(r.macs for r in rs),
            sum(r.activation_bytes for r in rs),
            len(rs),
        )
        for key, rs in groups.items()
    ]


def _group_label(key: str, rows: list[LayerRow]) -> str:
    head = next((r for r in rows if r.name == key), None)
    if head is None:
        return key
    a = head.attrs
    if "kernel_size" in a and "out_channels" in a:
        kind = "dwconv" if a.get("groups", 1) == a.get("in_channels") != 1 else "conv"
        return f"{key} · {kind} {'×'.join(map(str, a['kernel_size']))}, {a['out_channels']}"
    if "out_features" in a:
        return f"{key} · dense {a['out_features']}"
    return f"{key} · {head.type}"


@dataclass(frozen=True)
class SeparableSaving:
    standard: Profile
    separable: Profile
    formula_ratio: float  # 1/C_out + 1/k^2
    measured_ratio: float  # separable MACs / standard MACs, from the profiles


def separable_saving(kernel: int, c_in: int, c_out: int, size: int) -> SeparableSaving:
    """A KxK conv vs depthwise KxK + pointwise 1x1 (no biases), both profiled, and the lecture's ratio."""
    head = f"input {size}x{size}x{c_in}\n"
    standard = profile_spec(head + f"conv {c_out} {kernel}x{kernel} padding same nobias")
    separable = profile_spec(head + f"dwconv {kernel}x{kernel} padding same nobias\nconv {c_out} 1x1 nobias")
    return SeparableSaving(
        standard,
        separable,
        1 / c_out + 1 / kernel**2,
        separable.total_macs / standard.total_macs,
    )


# ----------------------------------------------------------------------------------------------
# Counters that disagree
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Latency: FLOPs are not speed
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    median_ms: float
    best_ms: float
    repeats: int
    threads: int


def measure_latency(model: nn.Module, input_size: Sequence[int], repeats: int = 10, warmup: int = 2) -> Latency:
    """Warm CPU latency of one image (batch 1): median and best of ``repeats`` timed runs."""
    device, dtype = _input_for(model)
    example = torch.randn((1, *input_size), device=device, dtype=dtype)
    model.eval()
    samples: list[float] = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(example)
            if i >= warmup:
                samples.append((time.perf_counter() - start) * 1e3)
    return Latency(statistics.median(samples), min(samples), repeats, torch.get_num_threads())


def latency_of(name: str, input_size: Sequence[int] | None = None, repeats: int = 10) -> Latency:
    """Build ``name`` untrained on the CPU, time it, and let it go (weights do not change speed).

    Refused with :class:`OverBudget` when the run would not fit the memory budget.
    """
    size = _named_input_size(name, input_size)
    _check_named(name, size, zoo.label(name))
    with memory_budget.run_slot():
        return measure_latency(_cpu_model(name, size), size, repeats=repeats)


def paper_numbers() -> dict[str, Any]:
    """``assets/paper_numbers.json``: published parameter and multiply-add counts with citations."""
    import json
    from pathlib import Path

    return json.loads((Path(__file__).resolve().parents[1] / "assets" / "paper_numbers.json").read_text())


def paper_facts(key: str, resolution: int | None = None) -> list[dict[str, Any]]:
    """Published numbers for zoo model ``key`` (at ``resolution`` when the paper gives one)."""
    data = paper_numbers()
    facts = [f for f in data["facts"] if f["model"] == key]
    if resolution is not None:
        facts = [f for f in facts if f.get("resolution") in (None, resolution)]
    return [{**f, "citation": data["sources"][f["source"]]} for f in facts]


@dataclass(frozen=True)
class Reference:
    """A published (or library-reported) count beside ours."""

    source: str  # full citation
    where: str  # table / section
    called: str  # the source's own word for the compute number
    params: int | None
    macs: int | None
    ours_params: int
    ours_macs: int
    url: str = ""
    note: str = ""
    short: str = ""  # e.g. "He et al. 2016"

    @property
    def params_ratio(self) -> float | None:
        return self.ours_params / self.params if self.params else None

    @property
    def macs_ratio(self) -> float | None:
        return self.ours_macs / self.macs if self.macs else None


def torchvision_card(name: str) -> dict[str, Any] | None:
    """torchvision's own metadata for its pretrained weights: parameters and "GFLOPS" (which are GMACs)."""
    try:
        source, arch = zoo.resolve(name)
    except zoo.UnknownModel:
        return None
    if source != "torchvision":
        return None
    from torchvision.models import get_model_weights

    weights = list(get_model_weights(arch))
    if not weights:
        return None
    meta = weights[0].meta
    size = meta.get("min_size")
    transforms = weights[0].transforms()
    crop = getattr(transforms, "crop_size", None)
    resolution = int(crop[0]) if crop else (int(size[0]) if size else None)
    return {"weights": str(weights[0]), "params": meta.get("num_params"), "gmacs": meta.get("_ops"), "resolution": resolution}


_CARD_NOTES = {
    "inception_v3": "Its parameter count includes the auxiliary classifier used only in training, which the zoo leaves out.",
}


def references(key: str, prof: Profile) -> list[Reference]:
    """Paper numbers for zoo model ``key`` at the profiled resolution, and torchvision's model card."""
    resolution = prof.input_size[-1]
    out = [
        Reference(
            source=f["citation"]["cite"], where=f["where"], called=f["called"], params=f["params"], macs=f["macs"],
            ours_params=prof.total_params, ours_macs=prof.total_macs, url=f["citation"].get("url", ""), note=f.get("note", ""),
            short=f["citation"].get("short", f["source"]),
        )
        for f in paper_facts(key, resolution)
    ]  # fmt: skip
    card = torchvision_card(key)
    if card and card["resolution"] == resolution and card["gmacs"]:
        out.append(
            Reference(
                source=f"torchvision model card ({card['weights']})", where="weights.meta: num_params, _ops",
                called="GFLOPS (really GMACs)", params=card["params"], macs=round(card["gmacs"] * 1e9),
                ours_params=prof.total_params, ours_macs=prof.total_macs,
                url="https://pytorch.org/vision/stable/models.html",
                note=_CARD_NOTES.get(zoo.resolve(key)[1], "Printed to 3 decimals in G."),
                short="torchvision model card",
            )
        )  # fmt: skip
    return out

