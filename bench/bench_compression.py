"""Compression goals of issue 8 on this machine, printed as ratios from one run.

    python -m bench.bench_compression [--repeats 15] [--images 153] [--threads N]

EfficientNet-Lite0 (ImageNet weights) at batch 1 and 8, every candidate with the same thread
count, interleaved (A, B, C, A, B, C, ...), best of the repeats (the machine is shared and noisy):

* the deployable static INT8 model (ONNX Runtime) vs PyTorch eager FP32: goal <= 0.6x at batch 1,
  with agreement >= 95% on the ants & bees validation images;
* INT8 vs FP32 in the same runtime (ONNX Runtime): reported as it is, no goal;
* the runtime alone (ONNX Runtime FP32 vs PyTorch FP32): reported;
* 50% structured channel pruning vs the unpruned model in the same runtime: goal <= 0.7x.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("CVDEMO_OFFLINE", "1")

from cvdemo import compression as cx  # noqa: E402  (cvdemo first: it sets the OpenMP wait policy the app uses)

import torch  # noqa: E402

from bench.timing import compare  # noqa: E402

MODEL = "efficientnet_lite0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--images", type=int, default=153, help="evaluation images (ants & bees val, max 153)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cpu = cx.cpu_features()
    print(f"CPU: {cpu.summary()}; {args.threads} thread(s) for PyTorch and ONNX Runtime")

    model = cx.backbone(MODEL)
    size = cx.input_size_of(model)
    eval_set = cx.standard_eval_set(MODEL, "hymenoptera", args.images)
    original = cx.original_variant(model)
    fp32_ort = cx.to_onnx_runtime(model, size, onnx_model=cx.backbone_onnx(MODEL))
    int8 = cx.quantize_int8(model, cx.train_images(MODEL, 16), size, onnx_model=fp32_ort.onnx_model, cpu=cpu)
    pruned = cx.prune_structured(model, 0.5, torch.randn(1, *size), round_to=8)
    pruned_ort = cx.to_onnx_runtime(pruned.module, size, like=pruned)
    print(int8.notes[0])

    reference = cx.predictions(original, eval_set, threads=args.threads)
    labels = eval_set.labels
    int8_pred = cx.predictions(int8, eval_set, threads=args.threads)
    agreement = float((int8_pred == reference).float().mean())
    print(f"top-1 on {len(eval_set)} ants & bees images (1000-way): FP32 {float((reference == labels).float().mean()):.3f}, "
          f"INT8 {float((int8_pred == labels).float().mean()):.3f}; INT8 agreement with FP32 {agreement:.3f} "
          f"(goal >= 0.95: {'OK' if agreement >= 0.95 else 'MISSED'})")

    candidates = {
        "PyTorch FP32": original,
        "ONNX Runtime FP32": fp32_ort,
        "ONNX Runtime INT8 (quantize_int8)": int8,
        "ONNX Runtime FP32, 50% channels pruned": pruned_ort,
        "PyTorch FP32, 50% channels pruned": pruned,
    }
    for batch in (1, 8):
        x = torch.randn(batch, *size)
        runners = {name: v.runner(x, args.threads) for name, v in candidates.items()}
        print(f"\n--- batch {batch} ---")
        timings = compare(runners, repeats=args.repeats, warmup=3)
        for timing in timings.values():
            print(timing)

        def ratio(a: str, b: str, goal: float | None = None) -> None:
            value = timings[a].best / timings[b].best
            verdict = "" if goal is None else f"   goal <= {goal:.2f}x: {'OK' if value <= goal else 'MISSED'}"
            print(f"ratio {a} / {b}: {value:.3f}x{verdict}")

        ratio("ONNX Runtime INT8 (quantize_int8)", "PyTorch FP32", 0.6 if batch == 1 else None)
        ratio("ONNX Runtime FP32", "PyTorch FP32")
        ratio("ONNX Runtime INT8 (quantize_int8)", "ONNX Runtime FP32")
        ratio("ONNX Runtime FP32, 50% channels pruned", "ONNX Runtime FP32", 0.7 if batch == 1 else None)
        ratio("PyTorch FP32, 50% channels pruned", "PyTorch FP32")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
