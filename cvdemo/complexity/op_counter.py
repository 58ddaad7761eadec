"""Pricing every aten operator of a forward pass, and replaying when its outputs are alive.

:class:`_MacCounter` is a ``TorchDispatchMode``: it sees every aten operator and prices it with the
formulas of ``torch.utils.flop_counter`` (convolution, mm/addmm/bmm, scaled-dot-product attention, ...);
:class:`_LiveBytes` replays, on shapes, when eager PyTorch allocates and frees each output (the
memory estimate). The profiler charges each price to the innermost module running.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

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


def _tensors(obj: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(obj)[0] if isinstance(t, torch.Tensor)]
