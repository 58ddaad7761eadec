"""Plotly figure builders shared by the page and the Gradio demo."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from PIL import Image

from cvdemo.text import plot_literal as literal

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
            y=[literal(classes[i]) for i in order],
            orientation="h",
            text=[f"{proba[i]:.0%}" for i in order],
            textposition="auto",
            marker_color=["#1f77b4" if i == order[-1] else "#9ecae1" for i in order],
        )
    )
    fig.update_layout(
        xaxis=dict(range=[0, 1.0001], tickformat=".0%", title="share of the k neighbours' vote"),  # 1.0001: the 100% tick shows
        height=max(160, 60 + 40 * len(classes)),
        margin=dict(l=10, r=10, t=10, b=40),
    )
    return fig


def integer_shot_axis(fig: "go.Figure", shots: Sequence[int]) -> None:
    """Ticks only at the shot counts measured (never "1.5 shots"); log-spaced once they reach 10."""
    shots = sorted({int(s) for s in shots}) or [1]
    fig.update_xaxes(title_text="training images per class", type="log" if max(shots) >= 10 else "linear",
                     tickmode="array", tickvals=shots, ticktext=[str(s) for s in shots])


def shots_figure(
    curve: "pd.DataFrame",
    chance: float | None = None,
    label: Callable[[str], str] = str,
    colour: Callable[[str], str] | None = None,
    y_title: str = "accuracy on the other images",
    height: int = 360,
) -> "go.Figure":
    """Accuracy vs training images per class, one line per ``method`` (named by ``label``, coloured by
    ``colour``, default: one class colour each): mean over the draws, error bars = spread (s.d.),
    the number of draws and test images in the hover. The kNN lesson and the ladder both draw it."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for (method, part), default_colour in zip(curve.groupby("method", sort=False), itertools.cycle(CLASS_COLOURS)):
        fig.add_trace(
            go.Scatter(
                x=part["shots"],
                y=part["accuracy"],
                error_y=dict(type="data", array=part["std"], visible=True),
                mode="lines+markers",
                name=label(method),
                line_color=colour(str(method)) if colour else default_colour,
                customdata=np.stack([part["std"], part["runs"], part["n_test"]], axis=1),
                hovertemplate="%{x} per class: %{y:.1%} ± %{customdata[0]:.1%} "
                "(%{customdata[1]} draws, %{customdata[2]} test images each)<extra>%{fullData.name}</extra>",
            )
        )
    integer_shot_axis(fig, curve["shots"] if len(curve) else [1])
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dot", annotation_text="chance", annotation_position="bottom right",
                      line_color="gray")
    fig.update_layout(
        yaxis=dict(title=y_title, range=[0, 1.02], tickformat=".0%"),
        height=height,
        margin=dict(l=10, r=10, t=10, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
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
        color=[literal(label) for label in labels],
        hover_name=[literal(name) for name in names],
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


def layers_figure(
    rows: Sequence[tuple[str, float]], chance: float | None = None, n: int | None = None
) -> "go.Figure":
    """Leave-one-out accuracy per layer; with ``n`` (images scored) each bar shows its 95% interval."""
    import plotly.graph_objects as go

    from cvdemo.fewshot.intervals import accuracy_estimate

    bar = dict(x=[r[0] for r in rows], y=[r[1] for r in rows], text=[f"{r[1]:.0%}" for r in rows])
    if n:
        estimates = [accuracy_estimate(round(r[1] * n), n) for r in rows]
        bar["text"] = [f"{e.value:.0%} ({e.correct}/{e.n})" for e in estimates]
        bar["error_y"] = dict(type="data", symmetric=False, array=[e.high - e.value for e in estimates],
                              arrayminus=[e.value - e.low for e in estimates], color="#444")
        bar["hovertext"] = [e.describe() for e in estimates]
    fig = go.Figure(go.Bar(**bar, textposition="inside", insidetextanchor="start"))
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dot", annotation_text="chance", annotation_position="bottom right",
                      line_color="gray")
    fig.update_layout(
        yaxis=dict(title="leave-one-out accuracy" + (" (bars: 95% CI)" if n else ""), range=[0, 1.02],
                   tickformat=".0%"),
        height=320,
        margin=dict(l=10, r=10, t=10, b=10),
    )
    return fig
