"""Receptive fields layer by layer, for any network the page profiles: size, effective stride, start.

``receptive_field("vgg16").size == 212``: the last feature map of VGG-16 sees 212 px of its
224 px input, with an effective stride (jump) of 32 px. The field is carried along the real data
flow of one forward pass on the meta device (:mod:`cvdemo.complexity.field_trace`), so residual
additions, concatenations and the code inside ``forward()`` are followed, not only a chain of
layers: at a merge the widest input sets the field, and :attr:`ReceptiveField.merges` says which.

Conventions (Araujo et al. 2019): pixel i of the input has its centre at i; a unit's field is
``size`` pixels wide around ``start + index × stride``; fields reach into the zero padding, so the
size can exceed the image (ResNet-50's 427 px on a 224 px image: units near the centre see all of it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from cvdemo import zoo
from cvdemo.complexity.field_trace import FieldTracer
from cvdemo.complexity.hooks import call_hooks
from cvdemo.complexity.field_types import UNKNOWN, AxisField, Merge, fields_of, image_fields, set_fields
from cvdemo.complexity.network_language import SpecNetwork, build_spec
from cvdemo.complexity.op_counter import _tensors
from cvdemo.complexity.results import Profile
from cvdemo.complexity.profiler import (
    ProfileError,
    _check_input_size,
    _layer_attrs,
    _named_input_size,
    _on_named,
    _profile_module,
)


@dataclass(frozen=True)
class FieldRow:
    """One module's output: what one of its units sees of the input image."""

    name: str  # module path, "(model)" for the whole network
    type: str
    leaf: bool
    output_shape: tuple[int, ...] | None  # per sample
    height: AxisField | None  # None: unknown (computed after an operator the tracer cannot follow)
    width: AxisField | None
    input_height: AxisField | None  # the field of its input, for the formula
    input_width: AxisField | None
    local: bool = True  # False: every unit sees the union of all positions (pooled, dense, attention)
    spatial: bool = True  # the output still has image positions (a feature map or tokens)
    context: str = ""  # where a whole-image summary was first mixed in, if anywhere before
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    note: str = ""

    @property
    def known(self) -> bool:
        return self.height is not None and self.width is not None

    @property
    def size(self) -> float | None:
        """Field size in input pixels (the larger side when height and width differ)."""
        return None if not self.known else max(self.height.size, self.width.size)  # type: ignore[union-attr]

    @property
    def stride(self) -> float | None:
        """Effective stride (jump): input pixels between neighbouring units."""
        return None if not self.known else max(self.height.jump, self.width.jump)  # type: ignore[union-attr]

    @property
    def start(self) -> float | None:
        """Centre of the first unit's field along the height, in input pixels."""
        return None if not self.known else self.height.start  # type: ignore[union-attr]

    @property
    def size_text(self) -> str:
        if not self.known:
            return "—"
        h, w = self.height.size, self.width.size  # type: ignore[union-attr]
        return number(h) if h == w else f"{number(h)}×{number(w)}"


def number(x: float) -> str:
    """212.0 -> "212", 7.5 -> "7.5", 4.6666 -> "4.67"."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.3g}" if abs(x) < 100 else f"{x:,.1f}"


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive fields of every layer of one network, and of its last feature map."""

    name: str
    input_size: tuple[int, ...]  # (C, H, W)
    layers: tuple[FieldRow, ...]  # in the order the layers finished
    final: FieldRow | None  # the last feature map (None: the network keeps no map, or the trace stopped)
    reached_at: str  # the first layer with the final field
    merges: tuple[Merge, ...]
    cannot_follow: str = ""  # "aten.roll in layers.1.blocks.0 (why)": fields after it are unknown
    context: str = ""  # first layer that mixes in a whole-image summary (SE, GroupNorm), if any
    last_known: FieldRow | None = None  # when the trace stopped: the last map whose field is known

    @property
    def size(self) -> float | None:
        return self.final.size if self.final else None

    @property
    def stride(self) -> float | None:
        return self.final.stride if self.final else None

    @property
    def start(self) -> float | None:
        return self.final.start if self.final else None

    @property
    def complete(self) -> bool:
        return not self.cannot_follow

    def layer(self, name: str) -> FieldRow:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(name)

    def by_name(self) -> dict[str, FieldRow]:
        return {row.name: row for row in self.layers}

    def growth(self) -> list[FieldRow]:
        """Leaf layers where the field or the stride changes: the points of the field-vs-depth chart.

        Along the widest path: a side path narrower than the field already reached (a ResNet's
        shortcut, an Inception 1×1 branch) is left out, so the curve never dips.
        """
        out: list[FieldRow] = []
        last: tuple | None = None
        widest = 0.0
        for row in self.layers:
            if not (row.leaf and row.known and row.spatial):  # maps and tokens, not flattened vectors
                continue
            if (row.size or 0) < widest:
                continue
            key = (row.size, row.stride, row.local)
            if key != last:
                out.append(row)
                last = key
            widest = max(widest, row.size or 0)
        return out

    def sentence(self) -> str:
        """The summary a student reads: what the last layer sees of the image."""
        image = self.input_size[-1] if self.input_size[-1] == self.input_size[-2] else self.input_size[-2]
        image_text = f"{number(image)} px" if self.input_size[-1] == self.input_size[-2] else \
            f"{self.input_size[-2]}×{self.input_size[-1]} px"  # fmt: skip
        parts: list[str] = []
        if self.cannot_follow:
            parts.append(f"The tracer cannot follow {self.cannot_follow}, so the fields after it are unknown (—).")
            if self.last_known is not None:
                k = self.last_known
                parts.append(f"Up to there they are known: {k.name} sees {k.size_text} px with an effective "
                             f"stride of {number(k.stride or 0)} px.")  # fmt: skip
        elif self.final is None or not self.final.known:
            parts.append("This network keeps no image map: every output sees the whole input.")
        else:
            f = self.final
            where = f.name + (f", {'×'.join(map(str, f.output_shape))}," if f.output_shape else "")
            size = f.size or 0
            if not f.local:
                parts.append(f"Every unit of the last feature map ({f.name}) sees the whole {image_text} image "
                             f"(a {number(size)} px field through attention or pooling over all positions).")  # fmt: skip
            elif size > image:
                parts.append(f"The last feature map, {where} sees {number(size)} px, more than the {image_text} "
                             "image: units near the centre see all of it, and the field reaches into the padding.")  # fmt: skip
            elif size == image:
                parts.append(f"The last feature map, {where} sees all {number(size)} px of the {image_text} image.")
            else:
                parts.append(f"The last feature map, {where} sees {number(size)} px of the {image_text} image.")
            parts.append(f"Effective stride {number(f.stride or 0)} px"
                         + (f"; the field reaches this size at {self.reached_at}." if self.reached_at != f.name else "."))  # fmt: skip
        if self.context:
            parts.append(f"From {self.context} on, every unit also gets a summary of the whole image "
                         "(squeeze-and-excitation gating or normalisation over all positions), "
                         "which the field sizes here leave out.")  # fmt: skip
        return " ".join(parts)

    def merge_sentences(self, limit: int = 12) -> list[str]:
        """Which path sets the field at each merge, e.g. "layer1.0 (add): layer1.0.bn2 27 px vs maxpool 11 px"."""
        out = []
        for m in self.merges[:limit]:
            inputs = " vs ".join(f"{path or 'input'} {number(size)} px" for path, size in m.inputs)
            out.append(f"{m.where or '(model)'} ({m.op}): {inputs}; the widest, {m.widest or 'input'}, sets the field.")
        if len(self.merges) > limit:
            out.append(f"… and {len(self.merges) - limit} more merges.")
        return out


def layer_frame(prof: Profile, fields: ReceptiveField | None):
    """``prof``'s per-layer table with each layer's field and jump in px (None where unknown or untraced)."""
    frame = prof.to_frame()
    by_name = fields.by_name() if fields else {}
    frame["field (px)"] = [by_name[n].size if n in by_name else None for n in frame["layer"]]
    frame["jump (px)"] = [by_name[n].stride if n in by_name else None for n in frame["layer"]]
    return frame


def field_formula(row: FieldRow) -> tuple[str, str] | None:
    """(symbols, numbers) of a conv or pooling layer's field, e.g. ("r = r_in + (k−1)·d·j_in", "= 3 + 2·1·1 = 5")."""
    a = row.attrs
    if not (row.known and row.input_height and "kernel_size" in a and row.local):
        return None
    k, s, d = (_first(a.get(key, 1)) for key in ("kernel_size", "stride", "dilation"))
    s = s or k  # pooling's default stride is its window
    r_in, j_in = row.input_height.size, row.input_height.jump
    r, j = r_in + (k - 1) * d * j_in, j_in * s
    if (r, j) != (row.height.size, row.height.jump):  # type: ignore[union-attr]
        return None  # not a plain window along the height (adaptive pooling, a 1×k kernel, ...)
    d_sym, d_num = ("·d", f"·{d}") if d != 1 else ("", "")
    return (
        f"r = r_in + (k − 1){d_sym}·j_in     j = j_in·s",
        f"r = {number(r_in)} + ({k} − 1){d_num}·{number(j_in)} = {number(r)}     "
        f"j = {number(j_in)}·{s} = {number(j)}",
    )


def _first(value: Any) -> int:
    return int(value[0] if isinstance(value, (tuple, list)) else value)


def _trace(model: nn.Module, example: torch.Tensor, label: str, input_size: tuple[int, ...], method: str) -> ReceptiveField:
    """One forward pass with module hooks (rows) inside a :class:`FieldTracer` (the data flow)."""
    names = {id(m): name or "(model)" for name, m in model.named_modules()}
    leaves = {id(m) for m in model.modules() if next(m.children(), None) is None}
    stack: list[str] = []
    rows: dict[str, FieldRow] = {}
    order: dict[str, int] = {}  # when the call a row describes finished
    finished = [0]
    first_input: dict[int, Any] = {}

    def where() -> str:
        return stack[-1] if stack else "(model)"

    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        name = names.get(id(module), type(module).__name__)
        stack.append(name)
        first_input[id(module)] = next((fields_of(t) for t in _tensors((args, kwargs)) if fields_of(t) is not None), None)

    def post_hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if stack:
            stack.pop()
        name = names.get(id(module), type(module).__name__)
        outputs = _tensors(output)
        f = next((fields_of(t) for t in outputs if fields_of(t) is not None), None)
        for t in outputs:  # name the path: a later merge says which layer its inputs came from
            g = fields_of(t)
            if g is not None and g != UNKNOWN:
                set_fields(t, dataclasses.replace(g, via=name))
        if f is None:
            return
        f_in = first_input.pop(id(module), None)
        known, known_in = f != UNKNOWN, f_in not in (None, UNKNOWN)
        row = FieldRow(
            name=name, type=type(module).__name__, leaf=id(module) in leaves,
            output_shape=tuple(int(s) for s in outputs[0].shape[1:]) if outputs else None,
            height=f.h if known else None, width=f.w if known else None,
            input_height=f_in.h if known_in else None, input_width=f_in.w if known_in else None,
            local=f.local if known else True, spatial=f.is_map and (f.local or max(f.h.count, f.w.count) > 1) if known else False,
            context=f.context if known else "", attrs=_layer_attrs(module) if id(module) in leaves else {},
        )  # fmt: skip
        finished[0] += 1
        previous = rows.get(name)
        if previous is None or (row.size or 0) > (previous.size or 0):  # a shared module: its widest call
            rows[name], order[name] = row, finished[0]

    tracer = FieldTracer(where)
    with call_hooks(model.modules(), pre_hook, post_hook):
        try:
            if example.dim() != 4:
                raise ProfileError("Receptive fields need an image input (channels, height, width).")
            set_fields(example, image_fields(int(example.shape[-2]), int(example.shape[-1])))
            with tracer:
                model(example)
        finally:
            set_fields(example, None)
    layers = tuple(sorted(rows.values(), key=lambda r: order[r.name]))
    return _result(label, input_size, layers, tracer)


def _result(label: str, input_size: tuple[int, ...], layers: tuple[FieldRow, ...], tracer: FieldTracer) -> ReceptiveField:
    maps = [r for r in layers if r.known and r.spatial and r.name != "(model)"]
    leaf_maps = [r for r in maps if r.leaf] or maps
    final = leaf_maps[-1] if leaf_maps else None
    if final is not None and maps[-1].output_shape != final.output_shape:
        final = maps[-1]  # the network ends in a block's merge (Inception's concatenation), not in one branch
    last_known = None
    if tracer.stopped is not None:  # the map the network ends with is unknown
        last_known, final = final, None
    reached = final.name if final else ""
    if final is not None:
        reached = next((r.name for r in leaf_maps if (r.height, r.width, r.local) == (final.height, final.width, final.local)), final.name)
    merges_by_module: dict[str, list[Merge]] = {}
    for m in tracer.merges:
        merges_by_module.setdefault(m.where, []).append(m)
    notes = {
        where: "; ".join(f"{m.op}: widest input {m.widest} ({number(max(s for _, s in m.inputs))} px)" for m in ms)
        for where, ms in merges_by_module.items()
    }
    layers = tuple(dataclasses.replace(r, note=notes.get(r.name, r.note)) for r in layers)
    final = next((r for r in layers if final is not None and r.name == final.name), None)
    cannot = ""
    if tracer.stopped is not None:
        cannot = f"{tracer.stopped.op} in {tracer.stopped_in} ({tracer.stopped.why})"
    context = next((r.context for r in layers if r.context), "")
    last_known = next((r for r in layers if last_known is not None and r.name == last_known.name), None)
    return ReceptiveField(label, tuple(input_size), layers, final, reached, tuple(tracer.merges), cannot, context,
                          last_known)  # fmt: skip


def _is_spec(text: str) -> bool:
    stripped = text.strip().lower()
    return "\n" in stripped or stripped.startswith("input ")


def receptive_field(model: "nn.Module | str | SpecNetwork", input_size: Sequence[int] | None = None) -> ReceptiveField:
    """Receptive field of every layer of ``model`` and of its last feature map.

    ``model``: a zoo / torchvision / timm name (built untrained on the meta device, at its native
    size unless ``input_size`` (C, H, W) is given), a typed network's text (see
    :data:`cvdemo.complexity.SPEC_HELP`), or an ``nn.Module`` (run once on zeros, left unchanged).
    Bad names raise :class:`ProfileError`, bad typed lines :class:`SpecError`; an operator the
    tracer cannot follow does not raise: :attr:`ReceptiveField.cannot_follow` names it.
    """
    if isinstance(model, str):  # once per process: every session, and a picture network's fields(), ask again
        from cvdemo import results

        text, size = model, None if input_size is None else tuple(input_size)
        return results.cached(results.key("receptive field", text, size), lambda: _receptive_field(text, size))
    return _receptive_field(model, input_size)


def _receptive_field(model: "nn.Module | str | SpecNetwork", input_size: Sequence[int] | None) -> ReceptiveField:
    if isinstance(model, str) and _is_spec(model):
        with torch.device("meta"):
            model = build_spec(model, input_size)
    if isinstance(model, SpecNetwork):
        size = model.input_size
        with torch.no_grad():
            result = _trace(model.model, torch.zeros((1, *size), device="meta"), "typed network", size, "meta")
        notes = {layer.name: f"line {layer.line}: {layer.text}" for layer in model.layers}
        rows = tuple(dataclasses.replace(r, note="; ".join(x for x in (notes.get(r.name, ""), r.note) if x)) for r in result.layers)
        named = {r.name: r for r in rows}
        return dataclasses.replace(
            result, layers=rows, final=named.get(result.final.name) if result.final else None,
            last_known=named.get(result.last_known.name) if result.last_known else None,
        )  # fmt: skip
    if isinstance(model, str):
        size = _named_input_size(model, input_size)
        _check_image(size)
        return _on_named(model, size, zoo.label(model), _trace)
    if not isinstance(model, nn.Module):
        raise ProfileError(f"Expected an nn.Module, a model name or a typed network, got {type(model).__name__}.")
    size = _check_image(_check_input_size(input_size or (3, 224, 224)))
    return _profile_module(model, size, type(model).__name__, _trace)


def _check_image(size: tuple[int, ...]) -> tuple[int, ...]:
    if len(size) != 3:
        raise ProfileError(f"Receptive fields need an image input (channels, height, width), not {tuple(size)}.")
    return size


def field_box(row: FieldRow, y: int, x: int) -> tuple[float, float, float, float]:
    """(top, left, bottom, right) in input pixels (edges, may lie outside the image) of unit (y, x)'s field."""
    h, w = row.height, row.width
    if h is None or w is None:
        raise ValueError(f"{row.name}: its field is unknown.")
    if not row.local:  # every unit sees the union: the same box for all
        y = x = 0
    cy, cx = h.start + y * h.jump, w.start + x * w.jump
    return (cy - h.size / 2 + 0.5, cx - w.size / 2 + 0.5, cy + h.size / 2 + 0.5, cx + w.size / 2 + 0.5)


def grid_of(row: FieldRow) -> tuple[int, int]:
    """Number of units along the height and width of a layer's map."""
    if row.height is None or row.width is None:
        return (1, 1)
    return (max(1, row.height.count), max(1, row.width.count))


def clip_fraction(box: tuple[float, float, float, float], height: int, width: int) -> float:
    """Share of a field's area that lies on the image (the rest is zero padding)."""
    top, left, bottom, right = box
    inside = max(0.0, min(bottom, height) - max(top, 0)) * max(0.0, min(right, width) - max(left, 0))
    return inside / max(1e-9, (bottom - top) * (right - left))

