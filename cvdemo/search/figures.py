"""The recall-vs-latency picture of the Fast search tab (plotly)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


def recall_latency_figure(sweep: "pd.DataFrame", compared: "pd.DataFrame | None" = None,
                          current: tuple[int, int] | None = None, k: int = 10) -> "go.Figure":
    """LSH's grid as one line per bits-per-table (points: 1, 2, 4, ... tables), the slider's setting
    ringed, and brute force / FAISS from ``compared`` as single markers. Latency on a log axis."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for bits, part in sweep.groupby("bits", sort=True):
        part = part.sort_values("tables")
        fig.add_trace(go.Scatter(
            x=part["query_ms"], y=part["recall_at_k"], mode="lines+markers", name=f"LSH {bits} bits",
            customdata=part[["tables", "candidates_per_query"]].to_numpy() if "candidates_per_query" in part else part[["tables"]].to_numpy(),
            hovertemplate=f"{bits} bits × %{{customdata[0]}} tables<br>recall@{k} %{{y:.3f}}<br>%{{x:.3f}} ms/query<extra></extra>",
        ))
    if current is not None:
        here = sweep[(sweep["bits"] == current[0]) & (sweep["tables"] == current[1])]
        if len(here):
            fig.add_trace(go.Scatter(
                x=here["query_ms"], y=here["recall_at_k"], mode="markers", name="your sliders",
                marker={"size": 18, "symbol": "circle-open", "color": "#d62728", "line": {"width": 3, "color": "#d62728"}},
                hovertemplate=f"{current[0]} bits × {current[1]} tables<extra>your sliders</extra>",
            ))
    if compared is not None:
        symbols = {"brute": "square", "FAISS": "diamond"}
        for _, row in compared.iterrows():
            if str(row["method"]).startswith("LSH"):
                continue
            symbol = next((s for key, s in symbols.items() if key in str(row["method"])), "x")
            fig.add_trace(go.Scatter(
                x=[row["query_ms"]], y=[row["recall_at_k"]], mode="markers", name=str(row["method"]),
                marker={"size": 14, "symbol": symbol, "color": "black" if symbol == "square" else "#2ca02c"},
                hovertemplate=f"recall@{k} %{{y:.3f}}<br>%{{x:.3f}} ms/query<extra>%{{fullData.name}}</extra>",
            ))
    fig.update_xaxes(type="log", title="query latency (ms, log scale) — left is faster")
    fig.update_yaxes(title=f"recall@{k} vs brute force — up is better", range=[-0.02, 1.05])
    fig.update_layout(height=460, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "v"})
    return fig


