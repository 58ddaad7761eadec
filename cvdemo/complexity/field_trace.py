"""Carrying receptive fields along the real data flow of one forward pass.

:class:`FieldTracer` is a ``TorchDispatchMode``: it sees every aten operator of a forward pass and
applies that operator's rule (:mod:`cvdemo.complexity.field_rules`) to the fields the inputs carry
(:mod:`cvdemo.complexity.field_types`). Pointwise operators, additions and concatenations merge
their inputs here: the field of a merge is the widest of its inputs, and :attr:`FieldTracer.merges`
records which path set it; a whole-image summary multiplied in (squeeze-and-excitation gating,
GroupNorm statistics) is noted as global context.

Operators it cannot follow end the trace with a sentence naming the operator and the layer
(:data:`~cvdemo.complexity.field_types.CANNOT_FOLLOW` lists the known ones); tensors computed after
that have unknown fields. A composite operator without a rule is first decomposed into simpler ones.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from cvdemo.complexity.field_layout import _bind, _dim, _relabel
from cvdemo.complexity.field_rules import CREATES, RULES, SAME_FIELD
from cvdemo.complexity.field_types import (
    CANNOT_FOLLOW,
    POSITIONS,
    UNKNOWN,
    CannotFollow,
    Fields,
    Merge,
    fields_of,
    set_fields,
)
from cvdemo.complexity.op_counter import _tensors

aten = torch.ops.aten


class FieldTracer(TorchDispatchMode):
    """Carries :class:`Fields` through every aten operator; ``where()`` names the running module."""

    def __init__(self, where: Callable[[], str]):
        super().__init__()
        self.where = where
        self.merges: list[Merge] = []
        self.stopped: CannotFollow | None = None
        self.stopped_in = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = _tensors((args, kwargs))
        known = [fields_of(t) for t in inputs]
        if not any(k is not None for k in known):
            return func(*args, **kwargs)  # weights, constants: nothing to follow
        if self.stopped is not None or any(k == UNKNOWN for k in known):
            out = func(*args, **kwargs)
            self._mark(out, UNKNOWN)
            return out
        packet = str(func._overloadpacket)
        rule = None if torch.Tag.pointwise in func.tags else RULES.get(packet)
        if rule is None and not (torch.Tag.pointwise in func.tags or packet in SAME_FIELD):
            if packet in CREATES:
                out = func(*args, **kwargs)
                self._mark(out, None)
                return out
            with self:  # a composite operator may decompose into ones with rules
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
            out = func(*args, **kwargs)
            self._stop(CannotFollow(packet, CANNOT_FOLLOW.get(packet, "the tracer has no rule for this operator")))
            self._mark(out, UNKNOWN)
            return out
        out = func(*args, **kwargs)
        try:
            if rule is None:
                result: Any = self._merge(func, args, kwargs, out)
            else:
                a = _bind(func, args, kwargs)
                first = next(k for k in known if isinstance(k, Fields))
                result = rule(a, first, out, self.where())
        except CannotFollow as exc:
            self._stop(exc)
            self._mark(out, UNKNOWN)
            return out
        if isinstance(result, list):
            for piece, fields in zip(out, result):
                set_fields(piece, fields)
        else:
            self._mark(out, result)
        return out

    def _stop(self, exc: CannotFollow) -> None:
        if self.stopped is None:
            self.stopped, self.stopped_in = exc, self.where()

    @staticmethod
    def _mark(out: Any, fields: Fields | str | None) -> None:
        for t in _tensors(out):
            set_fields(t, fields)

    def _merge(self, func: Any, args: tuple, kwargs: dict, out: Any) -> Fields | None:
        """Pointwise and broadcasting operators, and concatenation: the widest input sets the field."""
        packet = func._overloadpacket
        if packet in (aten.cat, aten.stack):
            a = _bind(func, args, kwargs)
            tensors = list(a["tensors"])
            y = out
            dim = _dim(a.get("dim", 0), y.dim())
            aligned = []
            for t in tensors:
                f = fields_of(t)
                if isinstance(f, Fields):
                    labels = f.labels if packet is aten.cat else f.labels[:dim] + (None,) + f.labels[dim:]
                    if packet is aten.cat and labels[dim] in POSITIONS:
                        labels = _relabel(labels, dim, "pos")  # e.g. a class token put in front of the patches
                    aligned.append((t, replace(f, labels=labels), True))
            return self._combine(aligned, y, "cat")
        y = out[0] if isinstance(out, (tuple, list)) else out
        if not isinstance(y, torch.Tensor):
            return None
        aligned = []
        for t in _tensors((args, kwargs)):
            f = fields_of(t)
            if not isinstance(f, Fields):
                continue
            pad = y.dim() - t.dim()
            labels: list[str | None] = [None] * y.dim()
            spread = False  # positions along a dimension of size 1, broadcast over the map
            for i, label in enumerate(f.labels):
                if i + pad < 0:
                    continue
                if t.shape[i] == y.shape[i + pad]:
                    labels[i + pad] = label
                elif label in POSITIONS or int(t.shape[i]) == 1:
                    spread = True
            aligned.append((t, replace(f, labels=tuple(labels)), not spread or any(lb in POSITIONS for lb in labels)))
        name = str(packet).split(".")[-1].rstrip("_")
        return self._combine(aligned, y, name)

    def _combine(self, aligned: list[tuple[torch.Tensor, Fields, bool]], y: torch.Tensor, op: str) -> Fields | None:
        if not aligned:
            return None
        labels: list[str | None] = [None] * y.dim()
        for _, f, _ in aligned:
            for i, label in enumerate(f.labels[: y.dim()]):
                if label is None:
                    continue
                if labels[i] not in (None, label):
                    if {labels[i], label} == {"h", "w"} or not {labels[i], label} <= set(POSITIONS):
                        raise CannotFollow(f"aten.{op}", "its inputs hold image positions along different dimensions")
                    label = "pos"  # positions both, in orders that differ: keep them as positions
                labels[i] = label
        spatial = [f for _, f, full in aligned if full and f.has_positions]
        context = [f for _, f, full in aligned if not (full and f.has_positions)]
        if not spatial:  # vectors only: what the widest sees
            widest = max((f for _, f, _ in aligned), key=lambda f: f.size)
            return replace(widest, labels=tuple(labels))
        widest = max(spatial, key=lambda f: f.size)
        result = replace(widest, labels=tuple(labels), local=all(f.local for f in spatial))
        for f in spatial + context:
            if f.context and not result.context:
                result = replace(result, context=f.context)
        for f in context:
            if not f.local and not result.context:  # a summary of the whole map multiplied in (SE gating)
                result = replace(result, context=self.where())
        paths = {f.via for f in spatial}
        if len(spatial) > 1 and len(paths) > 1 and len({f.size for f in spatial}) > 1:  # a path sets it
            self.merges.append(Merge(self.where(), op, tuple((f.via, f.size) for f in spatial), widest.via))
        return result
