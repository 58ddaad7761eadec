"""Plotly figures of the transfer-learning ladder, shared by the page and the Gradio demo."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from cvdemo.fewshot.figures import CLASS_COLOURS, shots_figure
from cvdemo.fewshot.ladder import METHOD_LABELS, METHODS

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from cvdemo.fewshot.ladder import RungResult
    from cvdemo.fewshot.ood import OODRule
    from cvdemo.fewshot.training import EpochRecord

RUNG_COLOURS = dict(zip(METHODS, CLASS_COLOURS))


def _colour(method: str) -> str:
    return RUNG_COLOURS.get(method.split(" ")[0], "#7f7f7f")


def curves_figure(
    history: Sequence["EpochRecord"], baselines: dict[str, float] | None = None, epochs: dict[str, int] | None = None
) -> "go.Figure":
    """Training loss (left) and held-out accuracy (right) per epoch of each trained rung; the untrained
    rungs' held-out accuracy as dotted lines."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss (augmented views)", "held-out accuracy"),
                        horizontal_spacing=0.1)
    methods = list(dict.fromkeys(r.method for r in history))
    for method in methods:
        rows = [r for r in history if r.method == method]
        name = METHOD_LABELS.get(method, method)
        style = dict(color=_colour(method))
        fig.add_trace(go.Scatter(x=[r.epoch for r in rows], y=[r.train_loss for r in rows], mode="lines+markers",
                                 name=name, legendgroup=method, line=style, showlegend=False), row=1, col=1)
        fig.add_trace(go.Scatter(x=[r.epoch for r in rows], y=[r.test_accuracy for r in rows], mode="lines+markers",
                                 name=name, legendgroup=method, line=style), row=1, col=2)
    for method, accuracy in (baselines or {}).items():
        fig.add_trace(go.Scatter(x=[0.5, max((epochs or {}).values(), default=1) + 0.5], y=[accuracy, accuracy],
                                 mode="lines", line=dict(color=_colour(method), dash="dot"),
                                 name=f"{METHOD_LABELS[method]} (no epochs)"), row=1, col=2)
    last = max([*(epochs or {}).values(), *(r.epoch for r in history), 1])
    fig.update_xaxes(title_text="epoch", range=[0.5, last + 0.5], tickmode="linear", tick0=1, dtick=max(1, last // 10))
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=2)
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
    return fig


def ladder_figure(results: Sequence["RungResult"]) -> "go.Figure":
    """Held-out accuracy per rung with its 95% interval, labelled with what it is out of."""
    import plotly.graph_objects as go

    labels = [METHOD_LABELS[r.method] for r in results]
    values = [r.accuracy.value for r in results]
    fig = go.Figure(go.Bar(
        x=values, y=labels, orientation="h",
        marker_color=[_colour(r.method) for r in results],
        error_x=dict(type="data", symmetric=False, array=[r.accuracy.high - r.accuracy.value for r in results],
                     arrayminus=[r.accuracy.value - r.accuracy.low for r in results], color="#444"),
        text=[f"{r.accuracy.value:.0%} ({r.accuracy.correct}/{r.accuracy.n})" for r in results],
        textposition="inside", insidetextanchor="start",
        hovertext=[r.accuracy.describe() for r in results], hoverinfo="text",
    ))
    fig.update_layout(
        xaxis=dict(range=[0, 1.0001], tickformat=".0%", title="held-out accuracy (bars: 95% confidence interval)"),
        yaxis=dict(autorange="reversed"),
        height=80 + 45 * max(1, len(results)), margin=dict(l=10, r=20, t=10, b=40),
    )
    return fig


def ladder_shots_figure(curve: "pd.DataFrame", chance: float | None = None) -> "go.Figure":
    """Accuracy vs training images per class for each rung: mean of the draws, bars = spread (s.d.)."""
    return shots_figure(curve, chance, label=lambda m: METHOD_LABELS.get(m, str(m)), colour=_colour,
                        y_title="held-out accuracy", height=380)


def effect_figure(table: "pd.DataFrame") -> "go.Figure":
    """Held-out accuracy without vs with augmentation, per method, with 95% intervals."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for when, colour in (("off", "#9ecae1"), ("on", "#1f77b4")):
        part = table[table["augmented"] == (when == "on")]
        fig.add_trace(go.Bar(
            x=[METHOD_LABELS.get(m, m) for m in part["method"]], y=part["accuracy"], name=f"augmentation {when}",
            marker_color=colour,
            error_y=dict(type="data", symmetric=False, array=part["ci_high"] - part["accuracy"],
                         arrayminus=part["accuracy"] - part["ci_low"]),
            text=[f"{a:.0%} (n={n})" for a, n in zip(part["accuracy"], part["n"])], textposition="inside",
            insidetextanchor="start",  # at the bar's foot, clear of the interval's whisker at its top
        ))
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1.02], tickformat=".0%", title="held-out accuracy"),
                      height=340, margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h", y=-0.15))
    return fig


def ood_figure(rule: "OODRule", query_score: float | None = None) -> "go.Figure":
    """How the "unlike every example" threshold was set: held-out scores of the examples (in-distribution)
    and of unrelated photos (out-of-distribution), the threshold, and the query."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for scores, name, colour in ((rule.example_scores, "your examples (each left out)", "#1f77b4"),
                                 (rule.reference_scores, "unrelated photos (each left out)", "#7f7f7f")):
        fig.add_trace(go.Histogram(x=scores, name=f"{name}: {len(scores)}", marker_color=colour, opacity=0.65,
                                   xbins=dict(size=0.02), histnorm="percent"))
    fig.add_vline(x=rule.threshold, line_dash="dash", line_color="#d62728", annotation_text="threshold",
                  annotation_position="top left")
    if query_score is not None:
        fig.add_vline(x=query_score, line_color="black", line_width=3, annotation_text="query",
                      annotation_position="top right")
    fig.update_layout(
        barmode="overlay", height=300, margin=dict(l=10, r=10, t=30, b=10),
        xaxis_title="d(nearest example) − d(nearest unrelated photo)   (← like your examples · unlike them →)",
        yaxis_title="% of each group", legend=dict(orientation="h", yanchor="top", y=-0.3, x=0),
    )
    return fig
