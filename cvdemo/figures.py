"""Plotly figures more than one lesson draws (pages and Gradio demos alike).

Lesson-specific figures stay in their package (``cvdemo/<lesson>/figures.py``); a chart two lessons
show (a classifier's confusion matrix) lives here once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from cvdemo.text import plot_literal

if TYPE_CHECKING:
    import plotly.graph_objects as go


def unique_labels(labels: list[str]) -> list[str]:
    """Shortened labels can collide ("a very long label …" twice): plotly would merge their bars or rows."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def confusion_figure(
    matrix: np.ndarray, labels: Sequence[str], height: int | None = None, max_label_chars: int | None = None
) -> "go.Figure":
    """Counts heat map, rows = true class, columns = predicted; class names (user text) shown as typed,
    shortened to ``max_label_chars``; ``height`` defaults to 50 px a class."""
    import plotly.express as px

    names = unique_labels([plot_literal(label, max_label_chars) for label in labels])
    fig = px.imshow(
        matrix, x=names, y=names, text_auto=True,
        color_continuous_scale="Blues", labels={"x": "predicted", "y": "true", "color": "images"},
    )
    fig.update_layout(height=height or max(260, 80 + 50 * len(names)), margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig
