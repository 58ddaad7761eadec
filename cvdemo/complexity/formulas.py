"""A conv or dense layer's parameters and MACs worked out by the lecture's formulas, with its numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cvdemo.complexity.results import LayerRow, _n


@dataclass(frozen=True)
class Formula:
    layer: str
    kind: str  # "standard conv", "depthwise conv", "grouped conv", "dense"
    params_symbols: str
    params_numbers: str
    params: int
    macs_symbols: str
    macs_numbers: str
    macs: int


def formula(row: LayerRow) -> Formula | None:
    """A conv or dense layer's parameters and MACs worked out by the lecture's formulas, with its numbers."""
    a = row.attrs
    if row.output_shape is None:
        return None
    bias = bool(a.get("bias"))
    if "in_channels" in a and "kernel_size" in a and isinstance(a.get("padding"), (tuple, str)):
        c_in, c_out, groups = a["in_channels"], a["out_channels"], a.get("groups", 1)
        kernel = tuple(a["kernel_size"])
        k_text = "·".join(str(k) for k in kernel)
        spatial = row.output_shape[1:]
        out_text = "·".join(str(s) for s in spatial)
        per_filter = math.prod(kernel) * (c_in // groups)
        params = per_filter * c_out + (c_out if bias else 0)
        macs = per_filter * c_out * math.prod(spatial) * row.calls
        if groups == 1:
            kind = "standard conv"
        elif groups == c_in and c_out % c_in == 0:
            kind = "depthwise conv"
        else:
            kind = "grouped conv"
        k_sym = "·".join(["k"] * len(kernel))
        hw_sym = "·".join(["H_out", "W_out", "D_out"][: len(spatial)])
        g_sym = "(C_in/groups)" if groups > 1 else "C_in"
        g_num = f"({c_in}/{groups})" if groups > 1 else str(c_in)
        calls = f" · {row.calls} calls" if row.calls > 1 else ""
        return Formula(
            layer=row.name,
            kind=kind,
            params_symbols=f"{k_sym}·{g_sym}·C_out" + (" + C_out" if bias else "  (no bias)"),
            params_numbers=f"{k_text}·{g_num}·{c_out}" + (f" + {c_out}" if bias else "") + f" = {_n(params)}",
            params=params,
            macs_symbols=f"{k_sym}·{g_sym}·C_out·{hw_sym}" + (" · calls" if row.calls > 1 else ""),
            macs_numbers=f"{k_text}·{g_num}·{c_out}·{out_text}{calls} = {_n(macs)}",
            macs=macs,
        )
    if "in_features" in a and "out_features" in a:
        c_in, c_out = a["in_features"], a["out_features"]
        rows = math.prod(row.output_shape[:-1]) if len(row.output_shape) > 1 else 1
        params = c_in * c_out + (c_out if bias else 0)
        macs = c_in * c_out * rows * row.calls
        tokens = f"·{rows}" if rows > 1 else ""
        return Formula(
            layer=row.name,
            kind="dense",
            params_symbols="C_in·C_out" + (" + C_out" if bias else "  (no bias)"),
            params_numbers=f"{c_in}·{c_out}" + (f" + {c_out}" if bias else "") + f" = {_n(params)}",
            params=params,
            macs_symbols="C_in·C_out" + (" · tokens" if rows > 1 else "") + (" · calls" if row.calls > 1 else ""),
            macs_numbers=f"{c_in}·{c_out}{tokens}" + (f"·{row.calls}" if row.calls > 1 else "") + f" = {_n(macs)}",
            macs=macs,
        )
    return None
