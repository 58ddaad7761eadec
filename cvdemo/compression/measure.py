"""Measuring: MACs, interleaved latency, predictions, and :func:`compare`'s one row per model."""

from __future__ import annotations

import statistics
import zlib
from contextlib import nullcontext
from typing import Callable, ContextManager, Sequence

import pandas as pd
import torch
import torch.nn as nn

from cvdemo.stats import wilson_interval
from cvdemo.timing import time_interleaved
from cvdemo.compression.errors import CompressionError, Progress
from cvdemo.compression.evalset import EvalSet
from cvdemo.compression.variant import Variant, original_variant


def count_macs(module: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (:func:`cvdemo.complexity.profile`)."""
    from cvdemo.complexity import profile

    return int(profile(module.eval(), input_size=input_size).total_macs)


def predictions(variant: Variant, eval_set: EvalSet, batch_size: int = 16, threads: int | None = None) -> torch.Tensor:
    return torch.cat(
        [variant.predict(eval_set.images[i : i + batch_size], threads).argmax(1) for i in range(0, len(eval_set), batch_size)]
    )


COLUMNS = [
    "model", "technique", "runtime", "precision", "file MB", "zipped MB", "params", "non-zeros",
    "MMACs", "latency b1 ms", "latency b8 ms", "speed-up b1", "top-1", "agreement",
    # sample sizes and 95 % Wilson intervals (cvdemo.stats): on a few dozen images they are wide
    "top-1 n", "top-1 low", "top-1 high", "agreement n", "agreement low", "agreement high",
    "runs b1", "runs b8",  # timed runs behind each median (fewer for very slow models: compare's time_budget)
]


def compare(
    original: Variant | nn.Module,
    compressed: Sequence[Variant],
    eval_set: EvalSet,
    repeats: int = 20,
    warmup: int = 3,
    batch_sizes: Sequence[int] = (1, 8),
    threads: int | None = None,
    progress: Progress | None = None,
    time_budget: float | None = 2.0,
    gate: Callable[[], ContextManager] | None = None,
) -> pd.DataFrame:
    """One row per model: size, parameters, MACs, CPU latency, top-1 and agreement with ``original``.

    Latency: every model runs with the same thread count (torch's and ONNX Runtime's), the
    models take turns, ``repeats`` runs after ``warmup`` per batch size; the median is reported.
    A model so slow that ``repeats`` runs would exceed ``time_budget`` seconds gets fewer (at least 5,
    see :func:`time_interleaved`); the ``runs b1`` / ``runs b8`` columns say how many each model got.
    Top-1 counts labeled images only (NaN when there are none); agreement is the share of all
    images where a model predicts the same class as the original. Both come with their n and a
    95 % Wilson interval (``top-1 low`` / ``top-1 high``, ...).

    ``gate``: a context manager factory held around each model's predictions and each batch size's
    timing (the warm start passes the compute gate's ``hold``, so the pages' requests go in between).
    """
    if not isinstance(original, Variant):
        original = original_variant(original)
    if eval_set is None or len(eval_set) == 0:
        raise CompressionError("The evaluation set is empty: add at least one image.")
    if repeats < 1:
        raise CompressionError("Latency needs at least one timed run.")
    threads = threads or torch.get_num_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    variants = [original, *compressed]
    input_size = tuple(eval_set.images.shape[1:])
    say = progress or (lambda fraction, text: None)
    gate = gate or nullcontext
    try:
        preds = {}
        for i, v in enumerate(variants):
            say(0.5 * i / len(variants), f"evaluating {v.name} on {len(eval_set)} images")
            with gate():
                preds[v.name] = predictions(v, eval_set, threads=threads)
        latency: dict[int, dict[str, float]] = {}
        runs: dict[int, dict[str, int]] = {}
        for j, batch in enumerate(batch_sizes):
            say(0.5 + 0.4 * j / len(batch_sizes), f"timing batch {batch}: up to {repeats} interleaved runs per model")
            x = torch.randn(batch, *input_size)
            with gate():
                samples = time_interleaved({v.name: v.runner(x, threads) for v in variants}, repeats, warmup,
                                           budget=time_budget)
            latency[batch] = {name: statistics.median(s) * 1e3 for name, s in samples.items()}
            runs[batch] = {name: len(s) for name, s in samples.items()}
        say(0.9, "counting parameters and MACs, sizing files")
        rows = []
        labeled = eval_set.labels >= 0
        reference = preds[original.name]
        first_batch = batch_sizes[0]
        for v in variants:
            params, nonzero = v.parameter_counts()
            blob = v.file_bytes()
            pred = preds[v.name]
            correct = int((pred[labeled] == eval_set.labels[labeled]).sum())
            same = int((pred == reference).sum())
            n_labeled = int(labeled.sum())
            row = {
                "model": v.name,
                "technique": v.technique,
                "runtime": v.runtime,
                "precision": v.precision,
                "file MB": len(blob) / 1e6,
                "zipped MB": len(zlib.compress(blob, 6)) / 1e6,
                "params": params,
                "non-zeros": nonzero,
                "MMACs": count_macs(v.module, input_size) / 1e6,
                "top-1": correct / n_labeled if n_labeled else float("nan"),
                "agreement": same / len(pred),
                "top-1 n": n_labeled,
                **dict(zip(("top-1 low", "top-1 high"), wilson_interval(correct, n_labeled))),
                "agreement n": len(pred),
                **dict(zip(("agreement low", "agreement high"), wilson_interval(same, len(pred)))),
            }
            for batch in batch_sizes:
                row[f"latency b{batch} ms"] = latency[batch][v.name]
                row[f"runs b{batch}"] = runs[batch][v.name]
            row[f"speed-up b{first_batch}"] = latency[first_batch][original.name] / latency[first_batch][v.name]
            rows.append(row)
        say(1.0, "done")
    finally:
        torch.set_num_threads(previous_threads)
    table = pd.DataFrame(rows)
    ordered = [c for c in COLUMNS if c in table.columns] + [c for c in table.columns if c not in COLUMNS]
    return table[ordered]


def results_csv(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False).encode()
