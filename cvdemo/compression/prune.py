"""Pruning: magnitude (unstructured) zeros with torch.nn.utils.prune, whole channels with Torch-Pruning."""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn as nn

from cvdemo.compression.errors import CompressionError
from cvdemo.compression.layers import weighted_layers
from cvdemo.compression.variant import RUNTIME_TORCH, Variant


def _check_fraction(amount: float, what: str) -> float:
    amount = float(amount)
    if not math.isfinite(amount) or amount <= 0:
        raise CompressionError(f"{what} of {amount:.0%} removes nothing: choose a value above 0%.")
    if amount >= 1:
        raise CompressionError(
            f"{what} of {amount:.0%} would remove every weight and leave a network that outputs a constant: "
            "choose a value below 100%."
        )
    return amount


def prune_unstructured(model: nn.Module, amount: float, scope: str = "global") -> Variant:
    """Magnitude pruning with ``torch.nn.utils.prune``: the smallest weights become exactly 0.

    ``scope="global"`` (the default, as on the page) ranks all weights of the network together;
    ``"layer"`` removes ``amount`` of every layer's weights. The zeros are baked in (``prune.remove``), the tensors
    stay dense: same shapes, same MACs for a dense kernel.
    """
    from torch.nn.utils import prune

    amount = _check_fraction(amount, "Sparsity")
    if scope not in ("layer", "global"):
        raise CompressionError(f"Pruning scope must be 'layer' or 'global', not {scope!r}.")
    pruned = copy.deepcopy(model).eval()
    targets = weighted_layers(pruned)
    if not targets:
        raise CompressionError("The model has no Conv2d or Linear layer to prune.")
    if scope == "global":
        prune.global_unstructured([(m, "weight") for _, m in targets], pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for _, m in targets:
            prune.l1_unstructured(m, "weight", amount=amount)
    layers = []
    for name, m in targets:
        prune.remove(m, "weight")
        weights = m.weight.numel()
        zeros = weights - int(torch.count_nonzero(m.weight))
        layers.append({"layer": name, "kind": type(m).__name__, "weights": weights, "zeros": zeros, "sparsity": zeros / weights})
    total = sum(r["weights"] for r in layers)
    zeros = sum(r["zeros"] for r in layers)
    return Variant(
        name=f"Unstructured {amount:.0%} ({scope}), PyTorch",
        technique="prune_unstructured",
        runtime=RUNTIME_TORCH,
        precision="FP32",
        module=pruned,
        layers=layers,
        notes=[f"{zeros:,} of {total:,} conv/linear weights are zero ({zeros / total:.1%}); tensors keep their shapes."],
    )


def _outputs(layer: nn.Module) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


def _classifier_layers(model: nn.Module) -> list[nn.Module]:
    """The output layer(s): pruning them would change the number of classes."""
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        if isinstance(head, nn.Module) and weighted_layers(head):
            return [head]
    weighted = weighted_layers(model)
    return [weighted[-1][1]] if weighted else []


def prune_structured(
    model: nn.Module,
    amount: float,
    example_input: torch.Tensor,
    round_to: int | None = None,
) -> Variant:
    """Channel pruning with Torch-Pruning: whole filters are removed, tensors get smaller.

    Channels are ranked by the L2 norm of their weights (summed over each dependency group, so
    residual additions and depthwise convolutions stay consistent); the classifier keeps its
    outputs. ``round_to=8`` keeps channel counts multiples of 8, which SIMD kernels like, but it
    removes at least 8 channels from every layer: a 16-channel layer of a mobile net loses half.
    """
    import torch_pruning as tp

    amount = _check_fraction(amount, "Channel sparsity")
    pruned = copy.deepcopy(model).eval()
    before = {name: _outputs(m) for name, m in weighted_layers(pruned)}
    importance = tp.importance.MagnitudeImportance(p=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(
            pruned,
            example_input,
            importance=importance,
            pruning_ratio=amount,
            ignored_layers=_classifier_layers(pruned),
            round_to=round_to,
        )
        pruner.step()
    layers = []
    for name, m in weighted_layers(pruned):
        after = _outputs(m)
        layers.append(
            {
                "layer": name,
                "kind": "depthwise conv" if isinstance(m, nn.Conv2d) and m.groups > 1 else type(m).__name__,
                "channels before": before.get(name, after),
                "channels after": after,
                "kept": after / max(before.get(name, after), 1),
            }
        )
    params_before = sum(p.numel() for p in model.parameters())
    params_after = sum(p.numel() for p in pruned.parameters())
    return Variant(
        name=f"Structured {amount:.0%} channels, PyTorch",
        technique="prune_structured",
        runtime=RUNTIME_TORCH,
        precision="FP32",
        module=pruned,
        layers=layers,
        notes=[f"Channels physically removed: {params_before:,} -> {params_after:,} parameters."],
    )
