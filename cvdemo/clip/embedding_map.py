"""The map: a 2-D projection (PCA) of image and text embeddings together, drawn as a plotly scatter."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

from cvdemo.clip._common import ClipInputError
from cvdemo.text import plot_literal
from cvdemo.projection import pca_2d

if TYPE_CHECKING:
    import plotly.graph_objects as go


@dataclass
class Projection:
    image_xy: np.ndarray  # (N, 2)
    text_xy: np.ndarray  # (M, 2)
    explained: tuple[float, float]  # fraction of variance along each axis


def map_projection(image_emb: np.ndarray, text_emb: np.ndarray | None = None) -> Projection:
    """PCA of images and texts together (:func:`cvdemo.projection.pca_2d`), so both land in one 2-D picture."""
    image_emb = np.atleast_2d(image_emb)
    text_emb = np.zeros((0, image_emb.shape[1]), np.float32) if text_emb is None else np.atleast_2d(text_emb)
    both = np.concatenate([image_emb, text_emb])
    if len(both) < 3:
        raise ClipInputError("The map needs at least 3 points (images plus texts).")
    xy, explained = pca_2d(both, seed=0)
    return Projection(xy[: len(image_emb)], xy[len(image_emb) :], explained)


def _jpeg_data_uri(img: Image.Image) -> str:
    import base64

    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def map_figure(
    projection: Projection,
    image_ids: Sequence[str],
    image_labels: Sequence[str | None],
    texts: Sequence[str],
    thumbnails: Sequence[Image.Image] | None = None,
    max_thumbnails: int = 500,
) -> "go.Figure":
    """Plotly scatter: images as dots (coloured by label), texts as stars; optional thumbnails on the dots."""
    import plotly.graph_objects as go

    fig = go.Figure()
    labels = [lab if lab is not None else "image" for lab in image_labels]
    for label in dict.fromkeys(labels):
        idx = [i for i, lab in enumerate(labels) if lab == label]
        fig.add_trace(
            go.Scatter(
                x=projection.image_xy[idx, 0],
                y=projection.image_xy[idx, 1],
                mode="markers",
                name=plot_literal(label, 30),  # user text (folder names) shown as typed
                marker={"size": 9, "opacity": 0.8},
                # [escaped id, position]: ids and labels go through data, never into the template itself
                customdata=[[plot_literal(image_ids[i]), i] for i in idx],
                hovertemplate="%{customdata[0]}<extra>%{fullData.name}</extra>",
            )
        )
    if len(texts):
        fig.add_trace(
            go.Scatter(
                x=projection.text_xy[:, 0],
                y=projection.text_xy[:, 1],
                mode="markers+text",
                name="texts",
                text=[plot_literal(t, 30) for t in texts],
                # alternate above / below so neighbouring words do not print over each other
                textposition=["top center" if i % 2 == 0 else "bottom center" for i in range(len(texts))],
                textfont={"size": 15, "color": "black"},
                marker={"size": 18, "symbol": "star", "color": "black", "line": {"width": 1, "color": "white"}},
                hovertemplate="text: %{text}<extra></extra>",
            )
        )
    if thumbnails is not None and len(thumbnails) and len(thumbnails) <= max_thumbnails:
        all_xy = np.concatenate([projection.image_xy, projection.text_xy])
        span = float(max(np.ptp(all_xy[:, 0]), np.ptp(all_xy[:, 1]), 1e-6))
        size = span / max(12.0, np.sqrt(len(thumbnails)) * 2.5)
        images = []
        for (x, y), thumb in zip(projection.image_xy, thumbnails):
            small = thumb.copy()
            small.thumbnail((40, 40))  # ~1.5 kB each as JPEG: 500 of them stay light for the browser
            images.append(
                {"source": _jpeg_data_uri(small), "x": float(x), "y": float(y), "xref": "x", "yref": "y",
                 "sizex": size, "sizey": size, "xanchor": "center", "yanchor": "middle", "layer": "above",
                 "opacity": 0.95}
            )
        fig.update_layout(images=images)  # one update: add_layout_image per image is quadratic in plotly
    ex, ey = projection.explained
    fig.update_layout(
        xaxis_title=f"PC 1 ({ex:.0%} of variance)",
        yaxis_title=f"PC 2 ({ey:.0%} of variance)",
        legend_title_text="label",
        height=620,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig
