"""Design rules shown with real counts, as typed networks a student can open and change.

Each rule compares a few typed networks by parameters, MACs and receptive field: two 3×3
convolutions see as far as one 5×5 for fewer weights (VGG's argument); dilations 1-2-4 grow the
field to 15 px at the cost of three plain 3×3 convolutions, without pooling the map away; a
depthwise-separable convolution keeps the field of a standard one for 1/C_out + 1/k² of its MACs.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvdemo.complexity.profiler import profile_spec
from cvdemo.complexity.receptive_field import receptive_field
from cvdemo.complexity.results import Profile, shape_text


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


@dataclass(frozen=True)
class DesignRule:
    key: str
    title: str
    lesson: str  # what the numbers show, one sentence
    variants: tuple[tuple[str, str], ...]  # (label, typed network)


@dataclass(frozen=True)
class DesignRow:
    rule: str
    variant: str
    spec: str
    params: int
    macs: int
    field: float  # receptive field of the last layer, px
    stride: float  # its effective stride, px
    output: str  # output shape, channels first


_MAP = "input 56x56x64\n"
DESIGN_RULES: tuple[DesignRule, ...] = (
    DesignRule(
        "stacked", "Stacked 3×3 instead of one large kernel",
        "Two 3×3 convolutions see 5 px like one 5×5, three see 7 px like one 7×7, with 28% and 45% fewer "
        "parameters and MACs, and a nonlinearity between them.",
        (
            ("one 5×5", _MAP + "conv 64 5x5 padding same\nrelu"),
            ("two 3×3", _MAP + "conv 64 3x3 padding same\nrelu\nconv 64 3x3 padding same\nrelu"),
            ("one 7×7", _MAP + "conv 64 7x7 padding same\nrelu"),
            ("three 3×3", _MAP + "conv 64 3x3 padding same\nrelu\nconv 64 3x3 padding same\nrelu\n"
                                 "conv 64 3x3 padding same\nrelu"),
        ),
    ),
    DesignRule(
        "dilation", "Dilation 1-2-4",
        "Three 3×3 convolutions with dilations 1, 2, 4 see 15 px instead of 7 for the same parameters and MACs, "
        "and keep the full 56×56 map; one 15×15 kernel costs 8× more, pooling quarters the map.",
        (
            ("three 3×3", _MAP + "conv 64 3x3 padding same\nrelu\nconv 64 3x3 padding same\nrelu\n"
                                 "conv 64 3x3 padding same\nrelu"),
            ("dilations 1-2-4", _MAP + "conv 64 3x3 padding same\nrelu\nconv 64 3x3 dilation 2 padding same\nrelu\n"
                                       "conv 64 3x3 dilation 4 padding same\nrelu"),
            ("one 15×15", _MAP + "conv 64 15x15 padding same\nrelu"),
            ("3×3 with pooling", _MAP + "conv 64 3x3 padding same\nrelu\nmaxpool 2x2\nconv 64 3x3 padding same\n"
                                        "relu\nmaxpool 2x2\nconv 64 3x3 padding same\nrelu"),
        ),
    ),
    DesignRule(
        "separable", "Depthwise-separable convolution",
        "A depthwise 3×3 and a pointwise 1×1 see the same 3 px as a standard 3×3 convolution for "
        "1/C_out + 1/k² of its MACs (the sliders under Compare models change k and the channels).",
        (
            ("standard 3×3", _MAP + "conv 128 3x3 padding same nobias"),
            ("depthwise 3×3 + pointwise 1×1", _MAP + "dwconv 3x3 padding same nobias\nconv 128 1x1 nobias"),
        ),
    ),
)  # fmt: skip


def compare_design(rule: DesignRule) -> list[DesignRow]:
    """Each variant of ``rule`` profiled and traced: the numbers behind the rule."""
    rows = []
    for label, spec in rule.variants:
        prof, fields = profile_spec(spec), receptive_field(spec)
        last = fields.final
        rows.append(DesignRow(rule.key, label, spec, prof.total_params, prof.total_macs,
                              last.size if last and last.size else 0.0, last.stride if last and last.stride else 0.0,
                              shape_text(prof.layers[-1].output_shape)))  # fmt: skip
    return rows
