"""Low-rank factorisation: a layer's weight matrix W = U S V replaced by two thin layers."""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
import torch.nn as nn

from cvdemo.compression.errors import CompressionError
from cvdemo.compression.layers import weighted_layers
from cvdemo.compression.variant import RUNTIME_TORCH, Variant


def _factorisable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers an SVD can split: Linear and non-grouped Conv2d."""
    return [(name, m) for name, m in weighted_layers(model) if isinstance(m, nn.Linear) or m.groups == 1]


def _rank_for_energy(singular: torch.Tensor, energy: float) -> int:
    share = torch.cumsum(singular**2, 0) / torch.sum(singular**2).clamp_min(1e-30)
    return int(torch.searchsorted(share, torch.tensor(energy - 1e-9, dtype=share.dtype)).item()) + 1


def _factorise(layer: nn.Module, u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, rank: int) -> nn.Sequential:
    """W ≈ (U_r S_r) V_r: a thin layer with ``rank`` outputs followed by a 1x1 / linear mix."""
    left = (u[:, :rank] * s[:rank]).contiguous()
    right = vh[:rank].contiguous()
    if isinstance(layer, nn.Linear):
        first = nn.Linear(layer.in_features, rank, bias=False)
        second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
        first.weight.data.copy_(right)
        second.weight.data.copy_(left)
    else:
        # A copy keeps the conv's own padding logic (timm's Conv2dSame pads dynamically).
        first = copy.deepcopy(layer)
        first.out_channels = rank
        first.weight = nn.Parameter(right.reshape(rank, *layer.weight.shape[1:]))
        first.bias = None
        second = nn.Conv2d(rank, layer.out_channels, 1, bias=layer.bias is not None)
        second.weight.data.copy_(left.reshape(layer.out_channels, rank, 1, 1))
    if layer.bias is not None:
        second.bias.data.copy_(layer.bias.data)
    return nn.Sequential(first, second)


def low_rank(
    model: nn.Module,
    energy: float = 0.9,
    rank: int | None = None,
    layers: Sequence[str] | None = None,
) -> Variant:
    """SVD factorisation of Linear and (non-grouped) Conv layers at a rank or an energy fraction.

    A ``out x in x k x k`` convolution is reshaped to an ``out x (in k k)`` matrix ``W = U S V``;
    keeping ``r`` singular values turns it into a ``k x k`` conv with ``r`` filters followed by
    a ``1 x 1`` conv with ``out`` filters. ``energy`` picks the smallest ``r`` keeping that share
    of ``sum(s^2)``; ``rank`` fixes it. A layer is only replaced when that saves parameters.
    Naming ``layers`` restricts the change to them, and then a rank they cannot have is an error.
    """
    if rank is not None:
        rank = int(rank)
        if rank < 1:
            raise CompressionError(f"Rank must be at least 1, not {rank}.")
    elif not 0 < energy <= 1:
        raise CompressionError(f"Energy must be a fraction in (0, 1], not {energy}.")
    factored = copy.deepcopy(model).eval()
    candidates = dict(_factorisable(factored))
    if layers:
        unknown = [name for name in layers if name not in candidates]
        if unknown:
            raise CompressionError(
                f"Layer {unknown[0]!r} is not a Linear or non-grouped Conv layer of this model, so it cannot be factorised."
            )
        candidates = {name: candidates[name] for name in layers}
    rows = []
    for name, layer in candidates.items():
        matrix = layer.weight.detach().reshape(layer.weight.shape[0], -1).double()
        out_dim, in_dim = matrix.shape
        full = min(out_dim, in_dim)
        if rank is not None and rank > full:
            if layers:
                raise CompressionError(
                    f"Rank {rank} is larger than layer {name!r} allows: its weight is a {out_dim} x {in_dim} "
                    f"matrix, so its rank is at most {full}."
                )
            rows.append(_rank_row(name, layer, out_dim, in_dim, full, None, None, f"skipped: rank {rank} > full rank {full}"))
            continue
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        r = rank if rank is not None else _rank_for_energy(s, energy)
        kept_energy = float((s[:r] ** 2).sum() / (s**2).sum().clamp_min(1e-30))
        if r * (out_dim + in_dim) >= out_dim * in_dim:
            rows.append(_rank_row(name, layer, out_dim, in_dim, full, r, kept_energy, "skipped: no parameter saving at this rank"))
            continue
        replacement = _factorise(layer, u.float(), s.float(), vh.float(), r)
        _set_submodule(factored, name, replacement)
        rows.append(_rank_row(name, layer, out_dim, in_dim, full, r, kept_energy, "factorised"))
    done = [r for r in rows if r["status"] == "factorised"]
    if not done:
        how = f"rank {rank}" if rank is not None else f"energy {energy:.0%}"
        raise CompressionError(
            f"No layer was factorised at {how}: every candidate would keep so many singular values that the two "
            "thin layers hold more weights than the original. Lower the energy or the rank."
        )
    before = sum(r["params before"] for r in done)
    after = sum(r["params after"] for r in done)
    knob = f"rank {rank}" if rank is not None else f"{energy:.0%} energy"
    return Variant(
        name=f"Low-rank SVD ({knob}), PyTorch",
        technique="low_rank",
        runtime=RUNTIME_TORCH,
        precision="FP32",
        module=factored,
        layers=rows,
        notes=[f"{len(done)} of {len(rows)} layers factorised: their weights {before:,} -> {after:,}."],
    )


def _rank_row(name, layer, out_dim, in_dim, full, r, kept_energy, status) -> dict[str, Any]:
    return {
        "layer": name,
        "kind": type(layer).__name__,
        "matrix": f"{out_dim} x {in_dim}",
        "full rank": full,
        "rank": r if r is not None else full,
        "energy kept": kept_energy if kept_energy is not None else 1.0,
        "params before": out_dim * in_dim,
        "params after": r * (out_dim + in_dim) if status == "factorised" else out_dim * in_dim,
        "status": status,
    }


def _set_submodule(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def factorisable_layers_of(model: nn.Module) -> list[str]:
    """Layers :func:`low_rank` can factorise (Linear and non-grouped Conv), last (classifier) first."""
    return [name for name, _ in _factorisable(model)][::-1]
