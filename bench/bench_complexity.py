"""Profile ResNet-50 with cvdemo.complexity vs fvcore's FlopCountAnalysis, same model, same run.

Goal: ours <= 1.0x fvcore, and under 1 s. Both see the same torchvision ResNet-50 on the CPU
(a real forward pass on zeros; fvcore adds a torch.jit trace). Also printed: profiling by name,
which builds the model on the meta device and never computes anything.

Run: python -m bench.bench_complexity
"""

from __future__ import annotations

import logging
import os
import warnings

# Time the profiler, not the process-wide result cache (a named model's repeat would be a cache hit).
os.environ.setdefault("CVDEMO_RESULT_CACHE_MB", "0")

import torch  # noqa: E402
import torchvision  # noqa: E402
from fvcore.nn import FlopCountAnalysis  # noqa: E402

from bench.timing import compare, report
from cvdemo import complexity as cx


def main() -> None:
    warnings.simplefilter("ignore")
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    model = torchvision.models.resnet50().eval()
    example = torch.zeros(1, 3, 224, 224)

    def fvcore_count() -> int:
        analysis = FlopCountAnalysis(model, example)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        return int(analysis.total())

    ours = cx.profile(model, (3, 224, 224))
    print(f"ResNet-50: ours {ours.total_macs:,} MACs, fvcore {fvcore_count():,} 'flops' (adds BatchNorm and pooling)")
    print(f"torch threads: {torch.get_num_threads()}")
    timings = compare(
        {
            "fvcore FlopCountAnalysis": fvcore_count,
            "cvdemo profile(module)": lambda: cx.profile(model, (3, 224, 224)),
            "cvdemo profile('resnet50'), meta": lambda: cx.profile("resnet50"),
        },
        repeats=5,
        warmup=1,
    )
    report(timings, reference="fvcore FlopCountAnalysis", goal=1.0)
    best = timings["cvdemo profile(module)"].best
    print(f"cvdemo profile(module) best {best:.3f} s (goal < 1 s: {'OK' if best < 1 else 'MISSED'})")


if __name__ == "__main__":
    main()
