"""Plotly figures shared by the page and the Gradio demo: zero-shot bars (the confusion matrix: cvdemo.figures)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cvdemo.text import plot_literal
from cvdemo.clip.zero_shot import ZeroShotResult
from cvdemo.figures import unique_labels

if TYPE_CHECKING:
    import plotly.graph_objects as go


def zero_shot_figure(result: ZeroShotResult, i: int = 0, threshold: float | None = None) -> "go.Figure":
    """Two bar charts per label: softmax probability (sums to 1) and raw cosine (with the threshold)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = result.rows(i)[::-1]  # plotly draws the first bar at the bottom
    # user text, shown as typed (plotly would render <b> or <br>) and short enough not to overlap the bars
    labels = unique_labels([plot_literal(r["label"], 40) for r in rows])
    cosine_title = "raw cosine" + (f"<br>dashed: threshold {threshold:.2f}" if threshold is not None else "")
    # Titles under each axis, not above the pair: above, two long titles ran into each other.
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06)
    fig.add_trace(
        go.Bar(x=[r["probability"] for r in rows], y=labels, orientation="h", marker_color="#4c78a8",
               text=[f"{r['probability']:.0%}" for r in rows], textposition="auto", name="probability",
               insidetextanchor="end", constraintext="both", cliponaxis=False),
        row=1, col=1,
    )
    below = [threshold is not None and r["cosine"] < threshold for r in rows]
    fig.add_trace(
        go.Bar(x=[r["cosine"] for r in rows], y=labels, orientation="h",
               marker_color=["#bbbbbb" if b else "#f58518" for b in below],
               text=[f"{r['cosine']:.3f}" for r in rows], textposition="auto", name="cosine",
               insidetextanchor="end", constraintext="both"),
        row=1, col=2,
    )
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dash", line_color="#d62728", row=1, col=2)
    fig.update_xaxes(range=[0, 1], tickvals=[0, 0.25, 0.5, 0.75], tickformat=".0%", row=1, col=1,
                     title={"text": f"softmax probability<br>T = {result.temperature:g}", "font": {"size": 12}})
    fig.update_xaxes(title={"text": cosine_title, "font": {"size": 12}}, row=1, col=2)
    low = min(0.0, min(r["cosine"] for r in rows))
    fig.update_xaxes(range=[low, max(1e-3, max(max(r["cosine"] for r in rows), threshold or 0) * 1.15)], row=1, col=2)
    fig.update_yaxes(automargin=True, tickfont={"size": 12 if len(rows) <= 30 else 10})
    fig.update_layout(
        showlegend=False, height=max(220, (34 if len(rows) <= 30 else 22) * len(rows) + 100),
        margin={"l": 10, "r": 10, "t": 10, "b": 10}, uniformtext={"minsize": 9, "mode": "hide"},
    )
    return fig
