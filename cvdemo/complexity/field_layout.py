"""Where the image positions are: reshapes, permutes, slices and splits move the labels that say which
tensor dimension holds rows ("h"), columns ("w"), both ("hw"), or positions in an unknown order.

Slicing a row or column with a step multiplies the jump and moves the start; reshaping rows and
columns into windows (window attention) is not followed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cvdemo.complexity.field_types import CANNOT_FOLLOW, POSITIONS, AxisField, CannotFollow, Fields


def _bind(func: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Arguments by their schema names, defaults filled in."""
    out: dict[str, Any] = {}
    for i, a in enumerate(func._schema.arguments):
        if i < len(args) and not a.kwarg_only:
            out[a.name] = args[i]
        elif a.name in kwargs:
            out[a.name] = kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
        else:
            out[a.name] = None
    return out


def _dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


def pair(value: Any, n: int = 2) -> list[int]:
    """A layer argument per spatial axis: ``3`` -> ``[3, 3]``, ``(3, 5)`` -> ``[3, 5]``."""
    values = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
    return values * n if len(values) == 1 else values


def _axis_of(f: Fields, label: str) -> str:
    return {"h": "h", "w": "w"}.get(label, "hw")


def _slice(a: dict, f: Fields, out: Any, where: str) -> Fields:
    x = a["self"]
    dim = _dim(a["dim"], x.dim())
    label = f.labels[dim]
    if label not in ("h", "w"):
        return replace(f, labels=_relabel(f.labels, dim, "pos" if label in POSITIONS else label))
    start = a["start"] or 0
    start = start + x.shape[dim] if start < 0 else min(start, x.shape[dim])
    old = f.axis(label)
    return f.with_axis(label, AxisField(old.size, old.jump * a["step"], old.start + start * old.jump, int(out.shape[dim])))


def _relabel(labels: tuple, dim: int, label: str | None) -> tuple:
    return labels[:dim] + (label,) + labels[dim + 1 :]


def _select(a: dict, f: Fields, out: Any, where: str) -> Fields:
    x = a["self"]
    dim = _dim(a["dim"], x.dim())
    label = f.labels[dim]
    labels = f.labels[:dim] + f.labels[dim + 1 :]
    index = int(a["index"]) % int(x.shape[dim])
    if label in ("h", "w"):
        axis = f.axis(label)
        return replace(f.with_axis(label, replace(axis, start=axis.start + index * axis.jump, count=1)), labels=labels)
    if label == "hw":
        row, col = divmod(index, max(1, f.w.count))
        return replace(f, labels=labels, h=replace(f.h, start=f.h.start + row * f.h.jump, count=1),
                       w=replace(f.w, start=f.w.start + col * f.w.jump, count=1))  # fmt: skip
    if label == "pos":  # which position is unknown (a class token): what all positions see
        return replace(f.pooled(), labels=labels)
    return replace(f, labels=labels)


def _split(a: dict, f: Fields, out: Any, where: str) -> list[Fields]:
    x = a["self"]
    dim = _dim(a.get("dim", 0), x.dim())
    label = f.labels[dim]
    if label in ("h", "w"):
        pieces, offset = [], 0
        axis = f.axis(label)
        for piece in out:
            moved = replace(axis, start=axis.start + offset * axis.jump, count=int(piece.shape[dim]))
            pieces.append(f.with_axis(label, moved))
            offset += int(piece.shape[dim])
        return pieces
    if label in POSITIONS:
        return [replace(f, labels=_relabel(f.labels, dim, "pos")) for _ in out]
    return [f for _ in out]


def _unbind(a: dict, f: Fields, out: Any, where: str) -> list[Fields]:
    x = a["self"]
    dim = _dim(a.get("dim", 0), x.dim())
    if f.labels[dim] in POSITIONS:
        raise CannotFollow("aten.unbind", "splitting the map into single rows or columns")
    labels = f.labels[:dim] + f.labels[dim + 1 :]
    return [replace(f, labels=labels) for _ in out]


def view_labels(f: Fields, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[str | None, ...]:
    """Labels of a reshape's output: dimensions grouped where their sizes multiply to the same number."""
    in_shape, out_shape = tuple(int(s) for s in in_shape), tuple(int(s) for s in out_shape)
    labels: list[str | None] = [None] * len(out_shape)
    i = j = 0
    while i < len(in_shape) and j < len(out_shape):
        group_in, group_out = [i], [j]
        p_in, p_out = in_shape[i], out_shape[j]
        while p_in != p_out:
            if p_in < p_out and i + 1 < len(in_shape):
                i += 1
                group_in.append(i)
                p_in *= in_shape[i]
            elif j + 1 < len(out_shape):
                j += 1
                group_out.append(j)
                p_out *= out_shape[j]
            else:
                break
        i, j = i + 1, j + 1
        held = [f.labels[k] for k in group_in if in_shape[k] > 1 and f.labels[k] is not None]
        if not any(label in POSITIONS for label in held):
            continue
        wide = [k for k in group_out if out_shape[k] > 1]
        if len(wide) <= 1:
            merged = held[0] if len(held) == 1 else ("hw" if held == ["h", "w"] else "pos")
            if len(held) != len([k for k in group_in if in_shape[k] > 1]) or "flat" in held:
                merged = "flat"  # positions flattened together with channels
            for k in wide or group_out[-1:]:
                labels[k] = merged
            continue
        # A split: a list of positions back into its grid (tokens -> rows x columns) is followed; a list
        # in no known order stays one (each piece holds positions); rows or columns cut into windows are not.
        sizes = [out_shape[k] for k in wide]
        if len(held) == 1 and held[0] in ("hw", "pos", "flat") and sizes[-2:] == [f.h.count, f.w.count]:
            labels[wide[-2]], labels[wide[-1]] = "h", "w"
            continue
        if len(held) == 1 and held[0] in ("pos", "flat"):
            for k in wide:
                labels[k] = held[0]
            continue
        raise CannotFollow("aten.view (windows)", CANNOT_FOLLOW["aten.view (windows)"])
    return tuple(labels)


def _unsqueeze(a: dict, f: Fields, out: Any, where: str) -> Fields:
    dim = _dim(a["dim"], out.dim())
    return replace(f, labels=f.labels[:dim] + (None,) + f.labels[dim:])


def _squeeze(a: dict, f: Fields, out: Any, where: str) -> Fields:
    x = a["self"]
    dims = a.get("dim")
    dims = range(x.dim()) if dims is None else ([dims] if isinstance(dims, int) else dims)
    gone = {_dim(d, x.dim()) for d in dims if x.shape[_dim(d, x.dim())] == 1}
    return replace(f, labels=tuple(label for i, label in enumerate(f.labels) if i not in gone))


def _restride(a: dict, f: Fields, out: Any, where: str) -> Fields:
    """In-place restriding that keeps the shape (a memory-format change in meta kernels)."""
    if tuple(int(s) for s in a["size"]) != tuple(a["self"].shape):
        raise CannotFollow("aten.as_strided_", "an arbitrary restriding of memory")
    return f


def _view(a: dict, f: Fields, out: Any, where: str) -> Fields:
    return replace(f, labels=view_labels(f, tuple(a["self"].shape), tuple(out.shape)))


def _permute(a: dict, f: Fields, out: Any, where: str) -> Fields:
    return replace(f, labels=tuple(f.labels[_dim(d, len(f.labels))] for d in a["dims"]))


def _transpose(a: dict, f: Fields, out: Any, where: str) -> Fields:
    n = len(f.labels)
    d0, d1 = (_dim(a["dim0"], n), _dim(a["dim1"], n)) if "dim0" in a else (0, 1)
    labels = list(f.labels)
    if n >= 2:
        labels[d0], labels[d1] = labels[d1], labels[d0]
    return replace(f, labels=tuple(labels))
