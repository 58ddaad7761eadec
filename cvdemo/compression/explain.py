"""Explaining the numbers: the lecture's point per technique and what this machine's measurements say."""

from __future__ import annotations

import pandas as pd

from cvdemo.stats import format_interval, intervals_overlap
from cvdemo.compression.cpu import CpuFeatures
from cvdemo.compression.quantize import int8_recipe
from cvdemo.compression.variant import RUNTIME_ORT


LECTURE_POINTS: dict[str, str] = {
    "onnx_fp32": "FLOPs are not latency: the same FP32 network can run several times faster in an inference "
    "runtime that fuses layers and picks kernels for this CPU.",
    "int8_static": "Static INT8 stores weights in 8 bits (4x smaller) and, with activation ranges calibrated "
    "beforehand, runs convolutions as integer arithmetic: 2-4x faster only where the CPU has fast int8 dot products.",
    "int8_dynamic": "Dynamic quantization converts only Linear (and LSTM) weights; activations are quantized on the "
    "fly. Convolutions stay FP32, so a conv net barely changes.",
    "fp16": "Half-precision weights halve the file; arithmetic is faster only on hardware with native FP16 math "
    "(GPUs, some ARM CPUs).",
    "bf16": "BF16 keeps FP32's range with 8 bits of mantissa: half the file; faster only where the CPU has BF16 dot "
    "products (AVX512-BF16, AMX).",
    "prune_unstructured": "Magnitude pruning zeroes individual weights: sparsity without speed-up, because dense "
    "kernels multiply the zeros too and the tensors keep their shapes. It pays off with sparse storage (zip) or "
    "sparse hardware.",
    "prune_structured": "Structured pruning removes whole channels, so tensors and MACs really shrink and any "
    "runtime gets faster, at a larger accuracy cost that fine-tuning recovers.",
    "low_rank": "Low-rank factorisation replaces a weight matrix W by two thin ones (U S)(V): fewer parameters and "
    "MACs when the rank is small, but two small layers are not always faster than one big one.",
    "distill": "Distillation trains a small student on the teacher's softened outputs (temperature T), which carry "
    "'dark knowledge' about class similarities that hard labels lack.",
}


def _row(table: pd.DataFrame, technique: str, runtime: str | None = None) -> pd.Series | None:
    """The first row of ``technique`` (in ``runtime``, when given), or None."""
    hits = table[table["technique"] == technique]
    if runtime is not None:
        hits = hits[hits["runtime"] == runtime]
    return hits.iloc[0] if len(hits) else None


def _times(ratio: float, better: str, worse: str, same: str = "the same") -> str:
    """"3.2x faster", "1.5x slower" or "about the same" for a ratio where > 1 is better."""
    if 0.95 <= ratio <= 1.05:
        return f"about {same}"
    return f"{ratio:.2f}x {better}" if ratio > 1 else f"{1 / ratio:.2f}x {worse}"


def _than(ratio: float, better: str, worse: str, same: str) -> str:
    """"3.2x faster than", "1.5x slower than" or "about as fast as" (followed by what is compared)."""
    return f"about {same}" if 0.95 <= ratio <= 1.05 else _times(ratio, better, worse) + " than"


def with_interval(row: pd.Series, column: str = "top-1") -> str:
    """``"82.8 % (95 % CI 72–90 %, n = 64)"``: an accuracy with what it can be trusted to."""
    value = f"{row[column]:.1%}"
    if f"{column} n" not in row or pd.isna(row[f"{column} low"]):
        return value
    return f"{value} (95 % CI {format_interval(row[f'{column} low'], row[f'{column} high'])}, n = {int(row[f'{column} n'])})"


def accuracy_difference(row: pd.Series, base: pd.Series, column: str = "top-1") -> str:
    """What a difference in accuracy on this many images shows: a sentence, or "" without intervals."""
    if f"{column} n" not in row or pd.isna(row[f"{column} low"]) or pd.isna(base[f"{column} low"]):
        return ""
    ours, theirs = (row[f"{column} low"], row[f"{column} high"]), (base[f"{column} low"], base[f"{column} high"])
    if row[column] == base[column]:
        return ""
    if intervals_overlap(ours, theirs):
        return (f" The 95 % intervals overlap: on {int(row[f'{column} n'])} images a {abs(row[column] - base[column]):.1%} "
                "difference is within noise, so neither is shown to be better.")
    return " The 95 % intervals do not overlap: a real difference on these images."


SATURATION_LESSON = (
    "Integer arithmetic is exact only if no intermediate sum overflows: x86 CPUs without VNNI multiply 8-bit "
    "activations by signed 8-bit weights with VPMADDUBSW, which adds two products into a 16-bit register that "
    "clips at 32,767 (255 x 127 x 2 = 64,770), so the same INT8 file can answer differently on an AVX2 laptop."
)

# Where the numbers below come from: EfficientNet-Lite0, 16 calibration images, 153 ants & bees val images;
# the VNNI CPU directly, the AVX2 kernels under `qemu-x86_64 -cpu Haswell` (bench/bench_compression.py).
INT8_MEASURED = (
    "Measured on an Intel Xeon @ 2.80 GHz with AVX-512 VNNI (2 cores), EfficientNet-Lite0, 153 ants & bees images: "
    "agreement with FP32 0.987 with the VNNI recipe (0.961 with every layer in signed INT8). With the AVX2 kernels "
    "(emulated Haswell) signed 8-bit weights fell to 0.89, 7-bit weights (reduce_range) gave 0.94, and the "
    "unsigned-weight recipe 0.967, the same as on the VNNI CPU; there it runs at about FP32 speed, the VNNI recipe "
    "at 0.35-0.5x."
)


def int8_recipe_text(cpu: CpuFeatures) -> str:
    """Which INT8 recipe :func:`quantize_int8` uses on ``cpu`` and why, for the page (markdown)."""
    recipe = int8_recipe(cpu)
    seen = ", ".join(cpu.int8_flags) or "none of avx2, avx512bw, avx512_vnni, avx_vnni, amx_int8"
    has = "has" if cpu.vnni else "has no"
    return (
        f"**Recipe used here:** {recipe.label}, the first convolution kept in FP32 (it sees the raw pixels and "
        f"is one small layer), MinMax calibration. Chosen because this CPU {has} VNNI (INT8 flags seen in "
        f"{cpu.source}: {seen}). {recipe.why} {SATURATION_LESSON if cpu.vnni else ''}".rstrip()
        + f"\n\n*{INT8_MEASURED}*"
    )


def explain(technique: str, table: pd.DataFrame, cpu: CpuFeatures) -> str:
    """The lecture's key point plus where this machine's measured numbers agree or disagree."""
    point = LECTURE_POINTS.get(technique, "")
    base = _row(table, "original")
    row = _row(table, technique)
    if base is None or row is None:
        return point
    b1 = "latency b1 ms"
    speed = base[b1] / row[b1]
    size = base["file MB"] / row["file MB"]
    lines = [f"**Lecture:** {point}", ""]
    measured = (
        f"**Here:** {row[b1]:.1f} ms vs {base[b1]:.1f} ms at batch 1 ({_than(speed, 'faster', 'slower', 'as fast as')} "
        f"the original), file {row['file MB']:.1f} MB vs {base['file MB']:.1f} MB ({_times(size, 'smaller', 'larger', 'same size')}), "
        f"agreement with the original {row['agreement']:.0%}"
        + (f", top-1 {with_interval(row)} vs {with_interval(base)}.{accuracy_difference(row, base)}"
           if not pd.isna(row["top-1"]) else ".")
    )
    lines.append(measured)
    verdict = ""
    if technique == "onnx_fp32":
        verdict = (
            f"This is the runtime's effect alone, no compression: {speed:.1f}x from graph optimisation and kernels "
            f"({'AVX-512' if cpu.avx512 else 'AVX2' if cpu.avx2 else 'SSE'} FP32 on this CPU)."
        )
    elif technique == "int8_static":
        ort = _row(table, "onnx_fp32")
        flags = (
            "This CPU has an INT8 dot-product instruction (VNNI: one VPDPBUSD multiplies and accumulates 4 byte pairs "
            "per 32-bit lane), so INT8 convolutions can beat FP32 clearly."
            if cpu.vnni
            else "This CPU has no VNNI: INT8 dot products take two instructions (VPMADDUBSW + VPMADDWD, or 16-bit "
            "VPMADDWD alone for the unsigned weights used here), so INT8 gains little over well-tuned FP32."
        )
        if ort is not None:
            runtime_gain = base[b1] / ort[b1]
            int8_gain = ort[b1] / row[b1]
            verdict = (
                f"Of the {speed:.1f}x total speed-up, the runtime (PyTorch -> ONNX Runtime, both FP32) gave "
                f"{runtime_gain:.1f}x and INT8 in the same runtime gave {int8_gain:.2f}x. {flags} "
                + (
                    "Here INT8 itself is within the lecture's 2-4x."
                    if int8_gain >= 2
                    else "Here INT8 itself gives less than the lecture's 2-4x: most of the win is the runtime; "
                    "for a small depthwise net memory traffic and the fused FP32 kernels are already efficient."
                )
            )
        else:
            verdict = flags + " Add the FP32 ONNX Runtime row to separate the runtime's share from INT8's."
        verdict += "\n\n" + int8_recipe_text(cpu)
    elif technique == "int8_dynamic":
        verdict = (
            f"{'Agrees' if speed < 1.2 else 'Disagrees'} with the lecture: latency is {_times(speed, 'faster', 'slower')}, "
            "because in a CNN the convolutions do almost all the work and they stayed FP32; the file shrinks only by "
            f"the Linear weights ({base['file MB']:.1f} -> {row['file MB']:.1f} MB)."
        )
    elif technique in ("fp16", "bf16"):
        label = technique.upper()
        hardware = (
            "this CPU has BF16 dot-product instructions (AVX512-BF16), which PyTorch's oneDNN convolutions use"
            if technique == "bf16" and cpu.bf16
            else f"this CPU has no {label} arithmetic instructions"
            + (" (AVX512-FP16 is missing), so every FP16 layer falls back to slow converting kernels" if technique == "fp16"
               else ", so BF16 layers convert to FP32 and back")
        )
        verdict = f"The file halves as promised. Latency is {_times(speed, 'faster', 'slower')}: {hardware}."
        if technique == "bf16" and cpu.bf16 and speed < 0.95:
            verdict += " Layers without a BF16 kernel (depthwise convolutions, BatchNorm) still convert, which costs more here."
    elif technique == "prune_unstructured":
        sparsity = 1 - row["non-zeros"] / row["params"]
        verdict = (
            f"{sparsity:.0%} of the parameters are zero, yet MACs ({row['MMACs']:.0f} M) and the dense file are "
            f"unchanged and latency is {_times(speed, 'faster', 'slower')}"
            f"{': as the lecture says' if speed < 1.15 else ' (noise: nothing skips the zeros)'}. "
            f"Only the zipped file shrinks ({base['zipped MB']:.1f} -> {row['zipped MB']:.1f} MB)."
        )
    elif technique == "prune_structured":
        mac_ratio = base["MMACs"] / max(row["MMACs"], 1e-9)
        verdict = (
            f"MACs {base['MMACs']:.0f} M -> {row['MMACs']:.0f} M ({mac_ratio:.1f}x fewer) made it "
            f"{_times(speed, 'faster', 'slower')} at batch 1: "
            + ("latency followed the MACs less than proportionally (overheads, memory-bound depthwise layers)."
               if speed < 0.8 * mac_ratio else "latency followed the MACs.")
        )
        ort_base, ort_row = _row(table, "onnx_fp32", RUNTIME_ORT), _row(table, technique, RUNTIME_ORT)
        if ort_base is not None and ort_row is not None:
            verdict += (f" In ONNX Runtime the pruned model is {_times(ort_base[b1] / ort_row[b1], 'faster', 'slower')} "
                        "than the unpruned one: structured pruning speeds up every runtime.")
    elif technique == "low_rank":
        mac_ratio = base["MMACs"] / max(row["MMACs"], 1e-9)
        verdict = (
            f"Parameters {base['params']:,} -> {row['params']:,}, MACs {_times(mac_ratio, 'fewer', 'more')}, "
            f"latency {_times(speed, 'faster', 'slower')}: "
            + ("the saved arithmetic is too small to measure through the noise." if 0.95 <= speed <= 1.05
               else "the extra layer costs more than the saved arithmetic here." if speed < 1 else "a real saving here.")
        )
    if verdict:
        lines += ["", verdict]
    return "\n".join(lines)


def explain_distillation(table: pd.DataFrame, labeled: int, transfer: int) -> str:
    """The lecture's point on distillation and what the two students measured here show.

    ``labeled``: training images with a label; ``transfer``: images the distilled student saw.
    """
    teacher, kd, hard = (_row(table, t) for t in ("teacher", "distill", "hard_labels"))
    if teacher is None or kd is None or hard is None:
        return LECTURE_POINTS["distill"]
    gain = kd["top-1"] - hard["top-1"]
    unlabeled = transfer - labeled
    source = (f"the teacher also labeled {unlabeled} images that have no label" if unlabeled > 0
              else "both students saw the same labeled images")
    within_noise = "overlap:" in accuracy_difference(kd, hard)  # the two 95 % intervals share values
    if abs(gain) > 0.02 and within_noise:
        # a few points on a few hundred test images can be chance: say so rather than claim a verdict
        verdict = (f"{'Leans towards' if gain > 0 else 'Leans against'} the lecture: the distilled student is "
                   f"{gain:+.1%} {'ahead' if gain > 0 else 'behind'} ({source}), but the 95 % intervals overlap, "
                   f"so on {int(kd['top-1 n'])} test images this is not yet evidence. With more labeled images "
                   "or epochs, see whether the sign holds.")
    elif gain > 0.02:
        verdict = f"Agrees with the lecture: distillation added {gain:+.1%} top-1 over hard labels alone ({source})."
    elif gain < -0.02:
        verdict = (f"Disagrees this time: the distilled student is {gain:+.1%} behind ({source}). The teacher is only "
                   f"{teacher['top-1']:.0%} accurate and its mistakes are soft targets too; try another T or alpha.")
    else:
        verdict = f"No clear difference ({gain:+.1%}, {source}): within the run-to-run noise of a few hundred images."
    if unlabeled <= 0:
        verdict += (" On this small set the soft targets alone rarely help much; where distillation pays is a "
                    "transfer set: switch on 'teacher labels the unlabeled images'.")
    return "\n".join([
        f"**Lecture:** {LECTURE_POINTS['distill']}",
        "",
        f"**Here:** teacher top-1 {teacher['top-1']:.0%} with {teacher['params']:,} parameters and "
        f"{teacher['latency b1 ms']:.1f} ms per image; student {kd['params']:,} parameters "
        f"({teacher['params'] / kd['params']:.0f}x fewer), {kd['latency b1 ms']:.1f} ms. "
        f"Distilled student top-1 {with_interval(kd)} (agrees with the teacher on {kd['agreement']:.0%}), "
        f"hard-label student {with_interval(hard)} ({hard['agreement']:.0%}). Labeled training images: {labeled}; "
        f"images the distilled student learned from: {transfer}.",
        "",
        verdict,
    ])
