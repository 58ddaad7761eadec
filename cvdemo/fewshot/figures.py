"""Plotly figure builders shared by the page and the Gradio demo."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


CLASS_COLOURS = [  # D3's category10: distinct hues, unlike the theme's shades of one colour
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]


def probability_figure(classes: Sequence[str], proba: Sequence[float]) -> "go.Figure":
    import plotly.graph_objects as go

    order = np.argsort(proba)
    fig = go.Figure(
        go.Bar(
            x=[float(proba[i]) for i in order],
            y=[str(classes[i]) for i in order],
            orientation="h",
            text=[f"{proba[i]:.0%}" for i in order],
            textposition="auto",
            marker_color=["#1f77b4" if i == order[-1] else "#9ecae1" for i in order],
        )
    )
    fig.update_layout(
        xaxis=dict(range=[0, 1], tickformat=".0%", title="share of the k neighbours' vote"),
        height=max(160, 60 + 40 * len(classes)),
        margin=dict(l=10, r=10, t=10, b=40),
    )
    return fig


def confusion_figure(matrix: np.ndarray, labels: Sequence[str]) -> "go.Figure":
    import plotly.express as px

    fig = px.imshow(
        matrix,
        x=[str(label) for label in labels],
        y=[str(label) for label in labels],
        text_auto=True,
        color_continuous_scale="Blues",
        labels=dict(x="predicted", y="true", color="images"),
    )
    fig.update_layout(height=max(260, 80 + 50 * len(labels)), margin=dict(l=10, r=10, t=10, b=10))
    return fig


def shots_figure(curve: "pd.DataFrame", chance: float | None = None) -> "go.Figure":
    import plotly.graph_objects as go

    fig = go.Figure()
    for (method, part), colour in zip(curve.groupby("method", sort=False), CLASS_COLOURS):
        fig.add_trace(
            go.Scatter(
                x=part["shots"],
                y=part["accuracy"],
                error_y=dict(type="data", array=part["std"], visible=True),
                mode="lines+markers",
                name=str(method),
                line_color=colour,
            )
        )
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dot", annotation_text="chance", line_color="gray")
    fig.update_layout(
        xaxis_title="training images per class",
        yaxis=dict(title="accuracy on the other images", range=[0, 1.02], tickformat=".0%"),
        height=360,
        margin=dict(l=10, r=10, t=10, b=10),
        legend=dict(orientation="h", y=1.08),
    )
    return fig


def embedding_figure(
    xy: np.ndarray,
    labels: Sequence[str],
    names: Sequence[str],
    thumbs: Sequence[Image.Image] | None = None,
    query_xy: np.ndarray | None = None,
) -> "go.Figure":
    """Scatter coloured by class; with ``thumbs`` each point also shows its picture on the map."""
    import plotly.express as px

    xy = np.asarray(xy, np.float32)
    fig = px.scatter(
        x=xy[:, 0],
        y=xy[:, 1],
        color=[str(label) for label in labels],
        hover_name=list(names),
        custom_data=[np.arange(len(xy))],  # the example's index, returned by selections
        labels=dict(x="dimension 1", y="dimension 2", color="class"),
        color_discrete_sequence=CLASS_COLOURS,
    )
    fig.update_traces(marker=dict(size=11, line=dict(width=1, color="white")))
    if thumbs is not None and len(xy):
        span = float(max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]), 1e-6))
        size = span / max(6.0, math.sqrt(len(xy)) * 1.6)
        for (x, y), thumb in zip(xy, thumbs):
            fig.add_layout_image(
                source=thumb, x=float(x), y=float(y), xref="x", yref="y", sizex=size, sizey=size,
                xanchor="center", yanchor="middle", layer="below", opacity=0.9,
            )
    if query_xy is not None:
        fig.add_scatter(
            x=[float(query_xy[0])], y=[float(query_xy[1])], mode="markers", name="query",
            marker=dict(symbol="star", size=20, color="black"),
        )
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def layers_figure(rows: Sequence[tuple[str, float]], chance: float | None = None) -> "go.Figure":
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=[r[0] for r in rows], y=[r[1] for r in rows], text=[f"{r[1]:.0%}" for r in rows]))
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dot", annotation_text="chance", line_color="gray")
    fig.update_layout(
        yaxis=dict(title="leave-one-out accuracy", range=[0, 1.02], tickformat=".0%"),
        height=320,
        margin=dict(l=10, r=10, t=10, b=10),
    )
    return fig
