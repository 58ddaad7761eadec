"""Receptive-field rules, one per aten operator (Araujo et al. 2019, "Computing Receptive Fields
of Convolutional Neural Networks", Distill):

* convolution and pooling with kernel k, stride s, padding p, dilation d:
  ``r' = r + (k-1)·d·j``, ``j' = j·s``, ``start' = start + ((k-1)·d/2 - p)·j``;
* padding and cropping move the start; slicing with a step multiplies the jump;
* global pooling, means over positions, a dense layer on a flattened map, softmax or a matmul over
  positions (attention): every output then sees the union of all the positions' fields;
* reshapes, permutes and splits move the position labels (:mod:`cvdemo.complexity.field_layout`).

Pointwise operators, additions and concatenations merge their inputs; the tracer does that
(:mod:`cvdemo.complexity.field_trace`), since it names the paths.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable

import torch

from cvdemo.complexity.field_layout import (
    _axis_of,
    _dim,
    _permute,
    _relabel,
    _restride,
    _select,
    _slice,
    _split,
    _squeeze,
    _transpose,
    _unbind,
    _unsqueeze,
    _view,
    pair,
)
from cvdemo.complexity.field_types import CANNOT_FOLLOW, MAPS, POSITIONS, AxisField, CannotFollow, Fields, fields_of

Rule = Callable[[dict, Fields, Any, str], Any]  # (bound arguments, fields of the first input, output, module) -> fields


# --- rules: each gets the bound arguments, the first input's fields, the output and the running module ---


def _window_rule(f: Fields, x: torch.Tensor, out: torch.Tensor, kernel, stride, padding, dilation, op: str) -> Fields:
    """Convolution or pooling over the last len(kernel) dimensions."""
    n = len(kernel)
    g = f
    for i in range(n):
        dim = x.dim() - n + i
        label = f.labels[dim]
        if label is None:
            continue
        if label not in ("h", "w"):
            raise CannotFollow(op, "a window slides over a flattened list of positions")
        g = g.with_axis(label, g.axis(label).window(kernel[i], stride[i], padding[i], dilation[i], int(out.shape[dim])))
    return g


def _convolution(a: dict, f: Fields, out: Any, where: str) -> Fields:
    if a["transposed"]:
        raise CannotFollow("aten.convolution (transposed)", CANNOT_FOLLOW["aten.convolution (transposed)"])
    kernel = list(a["weight"].shape[2:])
    n = len(kernel)
    return _window_rule(f, a["input"], out, kernel, pair(a["stride"], n), pair(a["padding"], n),
                        pair(a["dilation"], n), "aten.convolution")  # fmt: skip


def _pool(a: dict, f: Fields, out: Any, where: str) -> Fields:
    kernel = pair(a["kernel_size"])
    stride = pair(a["stride"]) if a["stride"] else kernel
    dilation = pair(a.get("dilation") or 1)
    return _window_rule(f, a["self"], out[0] if isinstance(out, tuple) else out, kernel, stride,
                        pair(a["padding"]), dilation, "pooling")  # fmt: skip


def _adaptive_pool(a: dict, f: Fields, out: Any, where: str) -> Fields:
    x = a["self"]
    y = out[0] if isinstance(out, tuple) else out
    g, local = f, f.local
    for i in range(2):
        dim = x.dim() - 2 + i
        label = f.labels[dim]
        if label is None:
            continue
        if label not in ("h", "w"):
            raise CannotFollow("adaptive pooling", "pooling over a flattened list of positions")
        n_in, n_out = int(x.shape[dim]), int(y.shape[dim])
        axis = g.axis(label)
        if n_out == 1:
            axis, local = axis.union(), (local and n_in == 1)
        else:
            # PyTorch's windows: [floor(i·n/o), ceil((i+1)·n/o)); equal when o divides n.
            lengths = [math.ceil((i + 1) * n_in / n_out) - (i * n_in) // n_out for i in range(n_out)]
            axis = AxisField(
                axis.size + (max(lengths) - 1) * axis.jump, axis.jump * n_in / n_out,
                axis.start + (lengths[0] - 1) / 2 * axis.jump, n_out,
            )  # fmt: skip
        g = g.with_axis(label, axis)
    return replace(g, local=local)


def _reduce_dims(f: Fields, ndim: int, dims: list[int] | None, keepdim: bool) -> Fields:
    dims = list(range(ndim)) if not dims else [_dim(d, ndim) for d in dims]
    axes = "".join(_axis_of(f, f.labels[d]) for d in dims if f.labels[d] in POSITIONS)
    labels = tuple(
        (label if keepdim else "drop") if i in dims else label for i, label in enumerate(f.labels)
    )  # fmt: skip
    labels = tuple(label for label in labels if label != "drop")
    g = replace(f, labels=labels)
    return g.pooled(axes) if axes else g


def _reduction(a: dict, f: Fields, out: Any, where: str) -> Fields:
    x = a["self"]
    dims = a.get("dim")
    if isinstance(dims, int):
        dims = [dims]
    return _reduce_dims(f, x.dim(), list(dims) if dims else None, bool(a.get("keepdim")))


def _softmax(a: dict, f: Fields, out: Any, where: str) -> Fields:
    label = f.labels[_dim(a["dim"], a["self"].dim())]
    return f.pooled(_axis_of(f, label), keep_positions=True) if label in POSITIONS else f


def _norm(a: dict, f: Fields, out: Any, where: str) -> Fields:
    """Normalisation whose statistics span positions gives each value a summary of the whole map."""
    x = a["input"]
    if "normalized_shape" in a:
        spans = f.labels[x.dim() - len(a["normalized_shape"]):]
    else:  # group norm: statistics over channels of a group and every position
        spans = f.labels[2:]
    if any(label in POSITIONS for label in spans) and not f.context:
        return replace(f, context=where)
    return f


def _pad(a: dict, f: Fields, out: Any, where: str) -> Fields:
    x, pad = a["self"], [int(p) for p in (a.get("pad") or a.get("padding"))]
    for i in range(len(pad) // 2):
        dim = x.dim() - 1 - i
        label = f.labels[dim]
        if label in ("h", "w"):
            axis = f.axis(label)
            f = f.with_axis(label, replace(axis, start=axis.start - pad[2 * i] * axis.jump, count=int(out.shape[dim])))
        elif label in ("hw",) and pad[2 * i] + pad[2 * i + 1]:
            f = replace(f, labels=_relabel(f.labels, dim, "pos"))  # no longer a plain grid
    return f


def _upsample(a: dict, f: Fields, out: Any, bilinear: bool) -> Fields:
    x = a["self"]
    g = f
    for i in range(2):
        dim = x.dim() - 2 + i
        label = f.labels[dim]
        if label not in ("h", "w"):
            continue
        axis = g.axis(label)
        factor = int(out.shape[dim]) / int(x.shape[dim])
        # Nearest: output i copies input floor(i/f). Bilinear: it mixes two neighbours.
        g = g.with_axis(label, AxisField(axis.size + (axis.jump if bilinear else 0), axis.jump / factor,
                                         axis.start + (axis.jump / 2 if bilinear else 0), int(out.shape[dim])))  # fmt: skip
    return g


def _im2col(a: dict, f: Fields, out: Any, where: str) -> Fields:
    """``nn.Unfold``: each column holds one window; the columns are the output grid, row by row."""
    x = a["self"]
    if f.labels[-2:] != ("h", "w"):
        raise CannotFollow("aten.im2col", "unfolding windows of a map whose rows and columns it cannot name")
    kernel, dilation, padding, stride = (pair(a[k]) for k in ("kernel_size", "dilation", "padding", "stride"))
    counts = [(int(x.shape[-2 + i]) + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2)]
    h = f.h.window(kernel[0], stride[0], padding[0], dilation[0], counts[0])
    w = f.w.window(kernel[1], stride[1], padding[1], dilation[1], counts[1])
    return replace(f, h=h, w=w, labels=f.labels[:-3] + (None, "hw"))


def _bicubic(a: dict, f: Fields, out: Any, where: str) -> Fields:
    g = _upsample(a, f, out, bilinear=True)  # four neighbours instead of two: one more on each side
    return replace(g, h=replace(g.h, size=g.h.size + 2 * f.h.jump), w=replace(g.w, size=g.w.size + 2 * f.w.jump))


def _nearest(a: dict, f: Fields, out: Any, where: str) -> Fields:
    return _upsample(a, f, out, bilinear=False)


def _bilinear(a: dict, f: Fields, out: Any, where: str) -> Fields:
    return _upsample(a, f, out, bilinear=True)


def _matmul(a: dict, first: Fields, out: Any, where: str) -> Fields:
    """mm, addmm, bmm, baddbmm: a contraction over positions makes every output see them all."""
    names = [k for k in ("self", "mat1", "mat2", "batch1", "batch2", "input", "bias") if isinstance(a.get(k), torch.Tensor)]
    if "mat1" in a:
        left, right = a["mat1"], a["mat2"]
    elif "batch1" in a:
        left, right = a["batch1"], a["batch2"]
    else:
        left, right = a["self"], a["mat2"]
    fl, fr = fields_of(left), fields_of(right)
    contracted_left = isinstance(fl, Fields) and fl.labels[-1] in POSITIONS
    contracted_right = isinstance(fr, Fields) and fr.labels[-2] in POSITIONS
    if (isinstance(fl, Fields) and any(lb in POSITIONS for lb in fl.labels[:-1])
            and isinstance(fr, Fields) and fr.labels[-1] in POSITIONS):  # fmt: skip
        # Queries times keys: each score pairs two positions; softmax and the values make it global anyway.
        contracted_left = contracted_right = True
    labels: list[str | None] = [None] * out.dim()
    if isinstance(fl, Fields):
        labels[:-1] = list(fl.labels[:-1])
    elif isinstance(fr, Fields):
        labels[:-2] = list(fr.labels[:-2])
    if isinstance(fr, Fields) and fr.labels[-1] is not None:
        labels[-1] = fr.labels[-1]
    elif contracted_left and fl.labels[-1] in MAPS and not isinstance(fr, Fields):  # type: ignore[union-attr]
        labels[-1] = "pos"  # token mixing (MLP-Mixer): a dense layer across tokens; each output sees them all
    parts = []
    for f in (fl, fr):
        if isinstance(f, Fields):
            contracted = (f is fl and contracted_left) or (f is fr and contracted_right)
            parts.append(f.pooled(keep_positions=any(label in POSITIONS for label in labels)) if contracted else f)
    for k in names:
        f = fields_of(a[k])
        if k not in ("mat1", "mat2", "batch1", "batch2", "self") and isinstance(f, Fields):
            parts.append(f)
    widest = max(parts, key=lambda f: f.size)
    local = not (contracted_left or contracted_right) and all(f.local for f in parts)
    context = next((f.context for f in parts if f.context), "")
    grid = fl if isinstance(fl, Fields) and any(lb in POSITIONS for lb in fl.labels[:-1]) else fr
    result = replace(widest, labels=tuple(labels), local=local, context=context)
    return _on_grid(result, grid) if isinstance(grid, Fields) and not local else result


def _on_grid(seen: Fields, grid: Fields) -> Fields:
    """What ``seen`` sees, for every unit of ``grid``'s positions (queries attending to keys elsewhere)."""

    def axis(s: AxisField, g: AxisField) -> AxisField:
        return AxisField(s.size, g.jump, s.start, g.count, s.shared)

    return replace(seen, h=axis(seen.h, grid.h), w=axis(seen.w, grid.w))


def _attention(a: dict, first: Fields, out: Any, where: str) -> Fields:
    """Fused attention: every query position sees every key and value position."""
    fq = fields_of(a["query"])
    parts = [f for f in (fields_of(a["query"]), fields_of(a["key"]), fields_of(a["value"])) if isinstance(f, Fields)]
    widest = max((f.pooled(keep_positions=True) if f.has_positions else f for f in parts), key=lambda f: f.size)
    labels = fq.labels if isinstance(fq, Fields) else (None,) * out[0].dim()
    result = replace(widest, labels=labels, local=False)
    return _on_grid(result, fq) if isinstance(fq, Fields) else result


RULES: dict[str, Rule] = {
    "aten.convolution": _convolution,
    "aten.max_pool2d_with_indices": _pool,
    "aten.max_pool2d": _pool,
    "aten.avg_pool2d": _pool,
    "aten._adaptive_avg_pool2d": _adaptive_pool,
    "aten.adaptive_avg_pool2d": _adaptive_pool,
    "aten.adaptive_max_pool2d": _adaptive_pool,
    "aten.mean": _reduction,
    "aten.sum": _reduction,
    "aten.amax": _reduction,
    "aten.amin": _reduction,
    "aten.max": _reduction,
    "aten.var": _reduction,
    "aten.std": _reduction,
    "aten.var_mean": _reduction,
    "aten.linalg_vector_norm": _reduction,
    "aten.norm": _reduction,
    "aten._softmax": _softmax,
    "aten._safe_softmax": _softmax,
    "aten._log_softmax": _softmax,
    "aten.native_layer_norm": _norm,
    "aten.native_group_norm": _norm,
    "aten.constant_pad_nd": _pad,
    "aten.reflection_pad2d": _pad,
    "aten.replication_pad2d": _pad,
    "aten.slice": _slice,
    "aten.select": _select,
    "aten.split": _split,
    "aten.split_with_sizes": _split,
    "aten.unbind": _unbind,
    "aten.view": _view,
    "aten._unsafe_view": _view,
    "aten.reshape": _view,
    "aten.permute": _permute,
    "aten.as_strided_": _restride,
    "aten.unsqueeze": _unsqueeze,
    "aten.squeeze": _squeeze,
    "aten.transpose": _transpose,
    "aten.t": _transpose,
    "aten.upsample_nearest2d": _nearest,
    "aten._upsample_nearest_exact2d": _nearest,
    "aten.upsample_bilinear2d": _bilinear,
    "aten.upsample_bicubic2d": _bicubic,
    "aten.im2col": _im2col,
    "aten.mm": _matmul,
    "aten.addmm": _matmul,
    "aten.bmm": _matmul,
    "aten.baddbmm": _matmul,
    "aten._scaled_dot_product_flash_attention_for_cpu": _attention,
    "aten._scaled_dot_product_flash_attention": _attention,
    "aten._scaled_dot_product_efficient_attention": _attention,
}
# Operators that keep every value where it is (batch norm in eval, copies, dropout, activations
# PyTorch does not tag as pointwise): merged like pointwise operators.
SAME_FIELD = {
    "aten.native_batch_norm", "aten._native_batch_norm_legit_no_training", "aten._native_batch_norm_legit",
    "aten.hardswish", "aten.hardswish_", "aten.copy_", "aten._to_copy", "aten.alias", "aten.detach",
    "aten.lift_fresh", "aten.native_dropout", "aten.dropout", "aten.contiguous", "aten.expand",
    "aten.prelu", "aten._prelu_kernel",
    "aten.cat", "aten.stack",
}  # fmt: skip
# Operators whose output does not depend on the values of their inputs (only on their shapes).
CREATES = {
    "aten.zeros_like", "aten.ones_like", "aten.empty_like", "aten.full_like", "aten.new_zeros",
    "aten.new_ones", "aten.new_empty", "aten.new_full", "aten.rand_like", "aten.randn_like",
}  # fmt: skip
