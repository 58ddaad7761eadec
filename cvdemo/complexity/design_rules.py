"""Design rules shown with real counts, as typed networks a student can open and change.

Each rule compares a few typed networks by parameters, MACs and receptive field: two 3×3
convolutions see as far as one 5×5 for fewer weights (VGG's argument); dilations 1-2-4 grow the
field to 15 px at the cost of three plain 3×3 convolutions, without pooling the map away; a
depthwise-separable convolution keeps the field of a standard one for 1/C_out + 1/k² of its MACs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from cvdemo.complexity.profiler import profile_spec
from cvdemo.complexity.receptive_field import number, receptive_field
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
class DesignRow:
    rule: str
    variant: str
    spec: str
    params: int
    macs: int
    field: float  # receptive field of the last layer, px
    stride: float  # its effective stride, px
    output: str  # output shape, channels first


@dataclass(frozen=True)
class DesignRule:
    key: str
    title: str
    lesson: Callable[[Mapping[str, DesignRow]], str]  # what the measured rows show, one sentence
    variants: tuple[tuple[str, str], ...]  # (label, typed network)


def _fewer(small: DesignRow, large: DesignRow) -> str:
    """"28% fewer parameters and MACs" (or both percentages when they differ), from the rows."""
    p, m = (round(100 * (1 - a / b)) for a, b in ((small.params, large.params), (small.macs, large.macs)))
    return f"{p}% fewer parameters and MACs" if p == m else f"{p}% fewer parameters and {m}% fewer MACs"


def _stacked(rows: Mapping[str, DesignRow]) -> str:
    one5, two3, one7, three3 = (rows[k] for k in ("one 5×5", "two 3×3", "one 7×7", "three 3×3"))
    return (f"Two 3×3 convolutions see {number(two3.field)} px like one 5×5 ({number(one5.field)} px) with "
            f"{_fewer(two3, one5)}; three see {number(three3.field)} px like one 7×7 ({number(one7.field)} px) with "
            f"{_fewer(three3, one7)}, and a nonlinearity between them.")  # fmt: skip


def _dilation(rows: Mapping[str, DesignRow]) -> str:
    plain, dilated, big, pooled = (rows[k] for k in ("three 3×3", "dilations 1-2-4", "one 15×15", "3×3 with pooling"))
    same = "the same" if (plain.params, plain.macs) == (dilated.params, dilated.macs) else "similar"
    return (f"Three 3×3 convolutions with dilations 1, 2, 4 see {number(dilated.field)} px instead of "
            f"{number(plain.field)} for {same} parameters and MACs, and keep the full {dilated.output} map; one "
            f"15×15 kernel sees {number(big.field)} px for {big.params / dilated.params:.1f}× the parameters; pooling "
            f"between plain 3×3s sees {number(pooled.field)} px but shrinks the map to {pooled.output}.")  # fmt: skip


def _separable(rows: Mapping[str, DesignRow]) -> str:
    standard, split = rows["standard 3×3"], rows["depthwise 3×3 + pointwise 1×1"]
    return (f"A depthwise 3×3 and a pointwise 1×1 see the same {number(split.field)} px as a standard 3×3 "
            f"convolution for {split.macs / standard.macs:.3f} of its MACs, the lecture's 1/C_out + 1/k² (the "
            "sliders under Compare models change k and the channels).")  # fmt: skip


_MAP = "input 56x56x64\n"
DESIGN_RULES: tuple[DesignRule, ...] = (
    DesignRule(
        "stacked", "Stacked 3×3 instead of one large kernel",
        _stacked,
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
        _dilation,
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
        _separable,
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


def design_lesson(rule: DesignRule, rows: list[DesignRow]) -> str:
    """What ``rule``'s measured rows show, one sentence with their numbers (nothing written in by hand)."""
    return rule.lesson({r.variant: r for r in rows})
