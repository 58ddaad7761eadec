"""The memory one real forward pass needs, estimated from shapes before anything is allocated.

Counting parameters and MACs needs no memory: :mod:`cvdemo.complexity` works from shapes on
PyTorch's meta device. Running a network for real does: the three counters (ours,
``FlopCounterMode`` and fvcore's jit trace, one after another, so the peak is one forward pass),
the latency timer, and the rare model whose ``forward()`` needs real values. A server shared by a
class (a 16 GB Space) refuses such a run when its estimate is over :data:`RUN_BUDGET_BYTES`, and at
most :data:`RUNS_AT_ONCE` real runs go at the same time, so the page never uses more than about
``RUNS_AT_ONCE x RUN_BUDGET_BYTES`` beyond the models the app keeps loaded.

The estimate, replayed on shapes by :func:`cvdemo.complexity.profile` (nothing is computed):

* weights: every parameter and buffer, float32;
* activations: the most tensor memory alive at once during ``forward()``, input included. Each
  operator output is tracked until the last tensor viewing it dies, as eager PyTorch frees it;
* working memory: that peak again, taken while two more copies of the operator's output exist
  (oneDNN convolves in a blocked layout, copying the input in and the output back; freed blocks
  are not returned to the system at once), plus :data:`RUNTIME_BYTES` for kernel caches and
  fvcore's trace.

Measured peak RSS growth of the three counters over this estimate, on an Intel Xeon (AVX-512,
2 cores, torch 2.14): 0.8 to 0.98 for zoo models at 224 to 512 px (VGG-16, ResNet-18,
DenseNet-121, MobileNetV2, ConvNeXt-T, ViT-B/16, NASNet-A Large), 0.37 to 1.0 for typed networks
with very large inputs (where the allocator returns big blocks at once).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Iterator

BYTES_PER_VALUE = 4  # float32
RUN_BUDGET_BYTES = 2**30  # 1 GB per real run: VGG-19 at 224 px needs ~0.7 GB; a 16 GB Space serves a class
RUNS_AT_ONCE = 2  # real runs at the same time (the machine has 2 cores; more would only queue in the CPU)
RUNTIME_BYTES = 64 * 2**20  # oneDNN's kernel cache, fvcore's trace: measured 30-40 MB on top of the tensors

_slots = threading.BoundedSemaphore(RUNS_AT_ONCE)


def format_bytes(n: float) -> str:
    """2_400_000_000 -> "2.24 GB" (binary units, three significant digits)."""
    for size, suffix in ((2**40, "TB"), (2**30, "GB"), (2**20, "MB"), (2**10, "KB")):
        if abs(n) >= size * 1000 / 1024:  # 1,008 MB reads better as 0.984 GB
            value = n / size
            return f"{value:,.0f} {suffix}" if value >= 1000 else f"{value:.3g} {suffix}"
    return f"{n:.0f} bytes"


@dataclass(frozen=True)
class MemoryEstimate:
    """What one forward pass of batch 1 needs, in bytes."""

    weights: int  # parameters and buffers
    activations: int  # the most activation memory alive at once, input included
    working: int  # working copies of the operator being computed, allocator slack, runtime caches
    activations_known: bool = True  # False: the model could not be run from shapes; weights only

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.working

    def fits(self, budget: int | None = None) -> bool:
        return self.total <= (RUN_BUDGET_BYTES if budget is None else budget)

    def sentence(self, what: str = "This network", budget: int | None = None) -> str:
        """"This network needs ~9.6 GB for weights and activations (...); the limit here is 1 GB per run." """
        limit = RUN_BUDGET_BYTES if budget is None else budget
        parts = f"weights {format_bytes(self.weights)}"
        if self.activations_known:
            parts += f", activations and working memory {format_bytes(self.activations + self.working)}"
        else:
            parts += ", activations unknown until it runs"
        return (
            f"{what} needs ~{format_bytes(self.total)} for weights and activations ({parts}); "
            f"the limit here is {format_bytes(limit)} per run."
        )


def estimate(params: int, buffers: int, peak_activations: int | None, peak_working: int = 0) -> MemoryEstimate:
    """The estimate from counts: values of weights, and bytes of the replayed peaks (None: unknown)."""
    weights = (params + buffers) * BYTES_PER_VALUE
    if peak_activations is None:
        return MemoryEstimate(weights, 0, RUNTIME_BYTES, activations_known=False)
    return MemoryEstimate(weights, peak_activations, max(peak_working, peak_activations) + RUNTIME_BYTES)


@contextlib.contextmanager
def run_slot() -> Iterator[None]:
    """One of the :data:`RUNS_AT_ONCE` real runs; waits for a free one."""
    with _slots:
        yield
