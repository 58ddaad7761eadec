"""Design rules shown with real counts: the depthwise-separable saving."""

from __future__ import annotations

from dataclasses import dataclass

from cvdemo.complexity.profiler import profile_spec
from cvdemo.complexity.results import Profile


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
