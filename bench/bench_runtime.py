"""Exported runtimes vs PyTorch: batch-1 latency and images/s per backbone, from one interleaved run.

Run: python -m bench.bench_runtime [--backbones efficientnet_lite0 resnet18] [--all] [--compile]
                                   [--repeats 20] [--batch 32]

For each backbone (the ImageNet classifier, as cvdemo.backbones builds it): PyTorch eager,
PyTorch channels-last, and every accelerated backend (OpenVINO, ONNX Runtime; torch.compile with
``--compile``, which compiles for about a minute per model), all on the same inputs, interleaved,
best of ``--repeats``. Then the app's own path: ``FeatureExtractor.embed([image])`` against the
bare accelerated session on the same image (timm's transform + one session call).

Goals on this machine: accelerated <= 0.35x PyTorch eager latency for EfficientNet-Lite0 at
batch 1, and the app's embed within 1.1x of the bare accelerated session.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
SHARED = Path(__file__).resolve().parents[2] / "shared"
os.environ.setdefault("CVDEMO_WEIGHTS_DIR", str(SHARED / "weights"))
os.environ.setdefault("CVDEMO_DATA_DIR", str(SHARED / "data"))
os.environ.setdefault("CVDEMO_OFFLINE", "1")

import numpy as np  # noqa: E402

from bench.timing import compare, report  # noqa: E402
from cvdemo import runtime  # noqa: E402
from cvdemo import fewshot as fs  # noqa: E402
from cvdemo.backbones import BACKBONES, available_backbones, create_backbone, eval_transform  # noqa: E402


def bench_backbone(name: str, pretrained: bool, repeats: int, batch: int, with_compile: bool) -> dict[str, float]:
    import torch

    model = create_backbone(name, pretrained=pretrained)
    channels_last = create_backbone(name, pretrained=pretrained).to(memory_format=torch.channels_last)
    transform = eval_transform(model)
    photos = runtime.parity_images(4)
    real = torch.stack([transform(img) for img in photos])
    one = real[:1]
    many = real.repeat((batch + len(real) - 1) // len(real), 1, 1, 1)[:batch]

    backends = list(runtime.AUTO_BACKENDS) + ([runtime.TORCH_COMPILE] if with_compile else [])
    accelerated = {}
    for backend in backends:
        fast = runtime.accelerate(model, one, backend, name=f"bench-{name}", parity_inputs=real, classifier=True)
        if fast.accelerated:
            accelerated[runtime.BACKEND_LABELS[backend]] = fast
        else:
            print(f"  {runtime.BACKEND_LABELS[backend]} not used: {fast.reason}")

    def eager(x):
        return lambda: model(x)

    def cl(x):
        x = x.contiguous(memory_format=torch.channels_last)
        return lambda: channels_last(x)

    ratios = {}
    for label, x in (("batch 1", one), (f"batch {batch}", many)):
        candidates = {"PyTorch eager": eager(x), "PyTorch channels-last": cl(x)}
        candidates.update({lab: (lambda f=f, x=x: f(x)) for lab, f in accelerated.items()})
        print(f"\n== {name} ({'ImageNet' if pretrained else 'random'} weights), {label}, "
              f"{torch.get_num_threads()} torch threads, {runtime.cpu_threads()} runtime threads ==")
        with torch.inference_mode():
            timings = compare(candidates, repeats=repeats if x is one else max(3, repeats // 4), warmup=2)
        report(timings, "PyTorch eager")
        n = len(x)
        print("images/s: " + ", ".join(f"{k} {n / t.best:,.0f}" for k, t in timings.items()))
        if x is one:
            ratios = {k: t.best / timings["PyTorch eager"].best for k, t in timings.items()}
            fastest = min((k for k in accelerated), key=ratios.get, default=None)
            if fastest and name == "efficientnet_lite0":  # the app's "auto" keeps the fastest backend
                verdict = "OK" if ratios[fastest] <= 0.35 else "MISSED"
                print(f"goal: accelerated ({fastest}) / PyTorch eager = {ratios[fastest]:.3f}x <= 0.35x: {verdict}")
    return ratios


def bench_embed_overhead(repeats: int) -> float:
    """The app's FeatureExtractor.embed on one photo vs the bare session it runs on."""
    import torch

    extractor = fs.FeatureExtractor("efficientnet_lite0")
    fast = extractor._accelerated
    if not fast.accelerated:
        print(f"\nembed overhead: skipped, the extractor runs in PyTorch ({fast.reason})")
        return float("nan")
    photo = runtime.parity_images(1)[0]
    transform = eval_transform(extractor._model)
    runner = fast._runner

    def bare() -> None:
        runner(np.ascontiguousarray(transform(photo).unsqueeze(0).numpy()))

    print(f"\n== FeatureExtractor.embed([photo]) vs bare {fast.label} session (transform + one call) ==")
    with torch.inference_mode():
        timings = compare(
            {"bare session": bare, "FeatureExtractor.embed": lambda: extractor.embed([photo])},
            repeats=repeats * 2,
            warmup=3,
        )
    return report(timings, "bare session", goal=1.10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="*", help="registry names (default: those with weights here)")
    parser.add_argument("--all", action="store_true", help="every backbone; random weights where none are here")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (slow to compile)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    have = set(available_backbones())
    names = args.backbones or (list(BACKBONES) if args.all else sorted(have))
    summary = {}
    for name in names:
        summary[name] = bench_backbone(name, name in have, args.repeats, args.batch, args.compile)
    overhead = bench_embed_overhead(args.repeats) if "efficientnet_lite0" in have else float("nan")
    print("\n== summary: batch-1 latency / PyTorch eager (best of repeats) ==")
    for name, ratios in summary.items():
        print(f"{name:<24} " + "   ".join(f"{k} {v:.3f}x" for k, v in ratios.items() if k != "PyTorch eager"))
    print(f"FeatureExtractor.embed / bare session: {overhead:.3f}x (goal <= 1.10x)")


if __name__ == "__main__":
    main()
