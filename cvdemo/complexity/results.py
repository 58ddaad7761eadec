"""What a profile holds: one :class:`LayerRow` per layer and the :class:`Profile` totals, and how numbers are shown.

Conventions: 1 MAC = one multiply-add (what the ResNet and MobileNet papers call a FLOP or a
mult-add); ``total_flops = 2 x total_macs`` (torch's and most hardware specs' convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

BYTES_PER_ACTIVATION = 4  # float32


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


def human(n: float, unit: str = "") -> str:
    """1_234_567 -> "1.23M" (K, M, G, T; for slides)."""
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"


def _n(value: int) -> str:
    return f"{value:,}"
