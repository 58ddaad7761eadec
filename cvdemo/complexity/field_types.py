"""What a tensor's values see of the input image: the types the receptive-field trace carries.

Every tensor that depends on the input image carries a :class:`Fields`: for each image axis an
:class:`AxisField` (size r, jump j, start of the first unit's field, number of positions), and a
label per tensor dimension saying which one holds image rows ("h"), columns ("w"), both in
row-major order ("hw", e.g. ViT tokens), positions in an order it cannot name ("pos": tokens with a
class token in front) or positions flattened together with channels ("flat": a C×H×W vector).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

POSITIONS = ("h", "w", "hw", "pos", "flat")  # dimension labels that hold image positions
MAPS = ("h", "w", "hw", "pos")  # ... as a feature map or tokens ("flat": flattened together with channels)

# What the tracer knows it cannot follow, in words for the page (operator -> why).
CANNOT_FOLLOW: dict[str, str] = {
    "aten.roll": "a cyclic shift moves pixels across the map, as Swin's shifted windows do",
    "aten.index": "indexing picks positions by value (gathers, deformable sampling)",
    "aten.gather": "indexing picks positions by value",
    "aten.grid_sampler_2d": "sampling positions computed from the data",
    "aten.convolution (transposed)": "a transposed convolution spreads each unit over several outputs",
    "aten.pixel_shuffle": "pixel shuffle moves channels into positions",
    "aten.pixel_unshuffle": "pixel unshuffle moves positions into channels",
    "aten.view (windows)": "a reshape splits the image grid into windows, as window attention does",
    "aten._fft_r2c": "a Fourier transform mixes all positions in a way the tracer does not model",
    "aten.col2im": "folding windows back into a map (nn.Fold)",
}


class CannotFollow(Exception):
    """An operator the tracer has no rule for; ``op`` and ``why`` are shown to the student."""

    def __init__(self, op: str, why: str):
        super().__init__(f"{op}: {why}")
        self.op, self.why = op, why


@dataclass(frozen=True)
class AxisField:
    """The receptive field along one image axis, in input pixels (pixel i's centre at i).

    ``size``: how many input pixels one unit sees; ``jump``: input pixels between neighbouring
    units (the effective stride); ``start``: centre of the first unit's field (negative when it
    reaches into the padding); ``count``: number of units along the axis; ``shared``: every unit
    sees the same pixels (after pooling or attention over all positions).
    """

    size: float = 1.0
    jump: float = 1.0
    start: float = 0.0
    count: int = 1
    shared: bool = False

    def window(self, kernel: int, stride: float, padding: float, dilation: int, count: int) -> AxisField:
        """After a convolution or pooling window (the Distill article's recurrences)."""
        return AxisField(
            size=self.size + (kernel - 1) * dilation * self.jump,
            jump=self.jump * stride,
            start=self.start + ((kernel - 1) * dilation / 2 - padding) * self.jump,
            count=count,
            shared=self.shared,
        )

    def union(self) -> AxisField:
        """One unit that sees what all ``count`` units see (global pooling, attention)."""
        if self.shared:  # they all see the same pixels already
            return replace(self, count=1)
        n = self.count
        return AxisField(self.size + (n - 1) * self.jump, self.jump * n, self.start + (n - 1) * self.jump / 2, 1, True)

    @property
    def first(self) -> float:
        """Left (top) edge of the first unit's field, in pixel indices."""
        return self.start - (self.size - 1) / 2


@dataclass(frozen=True)
class Fields:
    """What one tensor's values see of the input image."""

    h: AxisField
    w: AxisField
    labels: tuple[str | None, ...]  # per tensor dimension: "h", "w", "hw", "pos" or None
    local: bool = True  # False: every value sees the union of all positions' fields
    context: str = ""  # the layer where a whole-image summary (SE gating, GroupNorm) was first mixed in
    via: str = ""  # the layer that produced it (module path), for naming paths at merges

    @property
    def has_positions(self) -> bool:
        return any(label in POSITIONS for label in self.labels)

    @property
    def is_map(self) -> bool:
        """Values still laid out by position (a feature map or tokens), not flattened with channels."""
        return any(label in MAPS for label in self.labels)

    @property
    def size(self) -> float:
        return max(self.h.size, self.w.size)

    def axis(self, label: str) -> AxisField:
        """The field along image axis ``label``: "h" (rows) or "w" (columns)."""
        return self.h if label == "h" else self.w

    def with_axis(self, label: str, axis: AxisField) -> Fields:
        """These fields with ``axis`` along image axis ``label`` ("h" or "w")."""
        return replace(self, h=axis) if label == "h" else replace(self, w=axis)

    def pooled(self, axes: str = "hw", keep_positions: bool = False) -> Fields:
        """Every value now sees the union along ``axes``.

        ``keep_positions``: the positions remain (attention, softmax over positions), each seeing the
        union; otherwise they were summed away (global pooling) and one unit is left.
        """

        def union(axis: AxisField) -> AxisField:
            whole = axis.union()
            return replace(whole, jump=axis.jump, count=axis.count) if keep_positions else whole

        return replace(
            self,
            h=union(self.h) if "h" in axes else self.h,
            w=union(self.w) if "w" in axes else self.w,
            local=False,
        )


@dataclass(frozen=True)
class Merge:
    """Inputs of different fields combined (residual addition, concatenation, gating)."""

    where: str  # the module whose forward() combined them
    op: str  # "add", "cat", "mul", ...
    inputs: tuple[tuple[str, float], ...]  # (path, field size) of each input with positions
    widest: str  # the path whose field the result takes


UNKNOWN = "unknown"  # field of a tensor computed after an operator the tracer cannot follow
_TAG = "_cvdemo_fields"


def fields_of(t: Any) -> Fields | str | None:
    return getattr(t, _TAG, None) if isinstance(t, torch.Tensor) else None


def set_fields(t: torch.Tensor, f: Fields | str | None) -> None:
    try:
        setattr(t, _TAG, f)
    except (AttributeError, RuntimeError):  # a tensor subclass without attributes: not followed
        pass


def image_fields(height: int, width: int, dims: int = 4) -> Fields:
    """The input image: every pixel sees itself."""
    labels = (None,) * (dims - 2) + ("h", "w")
    return Fields(AxisField(1, 1, 0, height), AxisField(1, 1, 0, width), labels, via="input")
