"""Plotly figures of the verification lesson: ROC curves (threshold marked), per-change bars, training loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from cvdemo.clip.verify import KindScore, VerificationEval

if TYPE_CHECKING:
    import plotly.graph_objects as go

_COLOURS = ["#4c78a8", "#f58518", "#54a24b", "#b279a2"]


def roc_figure(evaluations: Sequence[tuple[str, VerificationEval]], threshold: float | None = None) -> "go.Figure":
    """ROC curves (true-accept rate vs false-accept rate), one per named evaluation, with the point each
    reaches at ``threshold`` (the slider) and its equal-error point; hover shows the cosine threshold."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"},
                             name="chance (AUC 0.5)", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[1, 0], mode="lines", line={"dash": "dash", "color": "#ccc", "width": 1},
                             name="equal error: FAR = FRR", hoverinfo="skip"))
    for n, (name, ev) in enumerate(evaluations):
        colour = _COLOURS[n % len(_COLOURS)]
        fig.add_trace(go.Scatter(
            x=ev.fpr, y=ev.tpr, mode="lines", name=f"{name}: AUC {ev.auc:.3f}", line={"color": colour, "width": 3},
            customdata=ev.thresholds, hovertemplate="cosine ≥ %{customdata:.3f}<br>false accepts %{x:.1%}"
            "<br>true accepts %{y:.1%}<extra></extra>",
        ))
        fig.add_trace(go.Scatter(
            x=[ev.eer], y=[1 - ev.eer], mode="markers", marker={"size": 10, "color": colour, "symbol": "x"},
            name=f"{name}: EER {ev.eer:.1%} at cosine {ev.eer_threshold:.3f}",
            hovertemplate=f"equal-error rate {ev.eer:.1%} at cosine {ev.eer_threshold:.3f}<extra></extra>",
        ))
        if threshold is not None:
            far, tar = ev.rates_at(threshold)
            fig.add_trace(go.Scatter(
                x=[far], y=[tar], mode="markers",
                marker={"size": 16, "color": colour, "symbol": "circle-open", "line": {"width": 3}},
                name=f"{name}: your threshold {threshold:.2f}",
                hovertemplate=f"threshold {threshold:.2f}: false accepts {far:.1%}, true accepts {tar:.1%}<extra></extra>",
            ))
    fig.update_xaxes(title="false-accept rate (different pairs called “same”)", range=[-0.01, 1.01], tickformat=".0%")
    fig.update_yaxes(title="true-accept rate (same pairs called “same”)", range=[-0.01, 1.01], tickformat=".0%")
    fig.update_layout(height=460, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"yanchor": "bottom", "y": 0.02, "xanchor": "right", "x": 0.99, "bgcolor": "rgba(255,255,255,0.7)"})
    return fig


def kinds_figure(scores: Sequence[KindScore], threshold: float, what: str = "change") -> "go.Figure":
    """Per change (or class): the share of its same pairs accepted at ``threshold`` (worst at the top)."""
    import plotly.graph_objects as go

    rows = list(scores)[::-1]  # plotly draws the first bar at the bottom: worst on top
    fig = go.Figure(go.Bar(
        x=[r.accepted for r in rows], y=[r.kind for r in rows], orientation="h",
        marker_color=["#d62728" if r.accepted < 0.5 else "#f58518" if r.accepted < 0.9 else "#54a24b" for r in rows],
        text=[f"{r.accepted:.0%} · mean cos {r.mean_same:.2f}" for r in rows], textposition="auto",
        customdata=[[r.auc, r.pairs] for r in rows],
        hovertemplate="%{y}: %{x:.0%} of %{customdata[1]} same pairs accepted<br>AUC %{customdata[0]:.3f}<extra></extra>",
    ))
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title=f"same pairs accepted at cosine ≥ {threshold:.2f}")
    fig.update_yaxes(title=what, automargin=True)
    fig.update_layout(height=max(220, 36 * len(rows) + 90), margin={"l": 10, "r": 10, "t": 20, "b": 10})
    return fig


def loss_figure(losses: Sequence[float], loss_name: str) -> "go.Figure":
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=list(range(1, len(losses) + 1)), y=list(losses), mode="lines", name=loss_name))
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title="training loss", rangemode="tozero")
    fig.update_layout(height=260, margin={"l": 10, "r": 10, "t": 20, "b": 10}, showlegend=False)
    return fig
