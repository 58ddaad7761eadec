"""What the Architectures page keeps in a browser session between reruns, as typed records (not string-keyed dicts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cvdemo.complexity.counters import CounterComparison
from cvdemo.timing import Latency

# What the counters ran on: (zoo or timm name, resolution, typed network or None).
CountersRequest = tuple[str, int, "str | None"]


@dataclass
class CountersRun:
    """The last "Run the three counters" press: shown while the page still counts the same network."""

    request: CountersRequest
    comparison: CounterComparison


@dataclass
class ArchitecturesState:
    counters: CountersRun | None = None
    latencies: dict[str, Latency] = field(default_factory=dict)  # zoo key -> its timing ("FLOPs ≠ speed")
