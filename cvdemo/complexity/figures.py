"""Plotly figures shared by the Architectures page and its Gradio twin.

The receptive field against depth (with the image size drawn), a unit's field on the picture, the
effective field measured by gradients, and label placement for scatter plots whose points crowd.
Text that may come from the user (typed layer lines, model names) is escaped: plotly renders a
little HTML in labels and hovers.
"""

from __future__ import annotations

import html
import math
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

from cvdemo.complexity.receptive_field import ReceptiveField, number

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from PIL import Image

    from cvdemo.complexity.effective_field import EffectiveField

FIELD_COLOR, SHARED_COLOR, IMAGE_COLOR, STRIDE_COLOR = "#F58518", "#B279A2", "#4C78A8", "#9D9D9D"


def field_depth_figure(fields: ReceptiveField) -> "go.Figure":
    """Receptive field (px) of every layer that grows it, in order, with the input image's size as a line."""
    import plotly.graph_objects as go

    rows = fields.growth()
    image = fields.input_size[-1]
    fig = go.Figure()
    if not rows:
        fig.update_layout(height=200, annotations=[dict(text="No layer with a known field.", showarrow=False)])
        return fig
    xs = list(range(1, len(rows) + 1))
    sizes = [float(r.size or 0) for r in rows]
    hover = [
        f"{html.escape(r.name)} ({html.escape(r.type)})<br>field {r.size_text} px, stride {number(r.stride or 0)} px"
        + ("" if r.local else "<br>every unit sees all positions") + (f"<br>{html.escape(r.note)}" if r.note else "")
        for r in rows
    ]
    fig.add_scatter(
        x=xs, y=sizes, mode="lines+markers", name="receptive field", line=dict(color=FIELD_COLOR, shape="hv"),
        marker=dict(size=7, color=[FIELD_COLOR if r.local else SHARED_COLOR for r in rows]),
        hovertext=hover, hoverinfo="text",
    )  # fmt: skip
    fig.add_scatter(
        x=xs, y=[float(r.stride or 0) for r in rows], mode="lines", name="effective stride",
        line=dict(color=STRIDE_COLOR, dash="dot", shape="hv"), yaxis="y2", hoverinfo="skip",
    )  # fmt: skip
    top = max(max(sizes), image) * 1.15
    largest = max(float(r.stride or 0) for r in rows)
    strides = [0] + [2**k for k in range(0, 12) if largest / 8 <= 2**k <= largest * 1.01]  # readable: 0, 4, 8, 16, 32
    if largest not in strides:  # a stride of 3 or 6 (typed networks) still gets its own tick
        strides.append(largest)
    fig.add_hline(y=image, line_dash="dash", line_color=IMAGE_COLOR)
    fig.add_annotation(x=0, xref="paper", xanchor="left", y=image, yanchor="bottom", showarrow=False,
                       text=f"input image: {number(image)} px", font=dict(color=IMAGE_COLOR))  # fmt: skip
    final = fields.final
    title = ""
    if final is not None and final.size is not None:
        index = next((i for i, r in enumerate(rows) if r.name == fields.reached_at), len(rows) - 1)
        # As the chart's title: a title overlaps no point or line.
        if not final.local or final.size == image:
            title = f"The last layer sees the whole {number(image)} px image"
        elif final.size > image:
            title = f"The last layer's field is {number(final.size)} px, wider than the {number(image)} px image"
        else:
            title = f"The last layer sees {number(final.size)} px of a {number(image)} px image"
        fig.add_scatter(x=[xs[index]], y=[sizes[index]], mode="markers", hoverinfo="skip", showlegend=False,
                        marker=dict(size=16, color="rgba(0,0,0,0)", line=dict(color=FIELD_COLOR, width=2)))  # fmt: skip
    fig.update_layout(
        title=dict(text=title, font=dict(size=15)), height=420, margin=dict(t=50, b=10, l=10, r=10), hovermode="closest",
        legend=dict(orientation="h", y=-0.2, yanchor="top", x=0), xaxis=dict(title="layers that grow the field, in order", dtick=1 if len(xs) <= 12 else None),
        yaxis=dict(title="receptive field (px)", range=[0, top], rangemode="tozero"),
        yaxis2=dict(title="effective stride (px)", overlaying="y", side="right", showgrid=False,
                    range=[0, largest * 1.5], tickvals=strides),  # the last step ends below the image line and the title
    )  # fmt: skip
    return fig


def _box_shapes(fig: "go.Figure", box: tuple[float, float, float, float], width: int, height: int, color: str,
                name: str, dash: str = "solid") -> None:  # fmt: skip
    top, left, bottom, right = box
    clipped = (max(top, 0), max(left, 0), min(bottom, height), min(right, width))
    if (clipped[0], clipped[1], clipped[2], clipped[3]) != (top, left, bottom, right):
        fig.add_shape(type="rect", x0=left - 0.5, y0=top - 0.5, x1=right - 0.5, y1=bottom - 0.5,
                      line=dict(color=color, width=1.5, dash="dot"))  # fmt: skip
    fig.add_shape(type="rect", x0=clipped[1] - 0.5, y0=clipped[0] - 0.5, x1=clipped[3] - 0.5, y1=clipped[2] - 0.5,
                  line=dict(color=color, width=3, dash=dash), name=name)  # fmt: skip


def _frame(fig: "go.Figure", box: tuple[float, float, float, float], width: int, height: int, title: str) -> None:
    top, left, bottom, right = box
    pad = 6
    fig.update_xaxes(range=[min(0, left) - pad, max(width, right) + pad], visible=False, constrain="domain")
    fig.update_yaxes(range=[max(height, bottom) + pad, min(0, top) - pad], visible=False, scaleanchor="x")
    fig.update_layout(height=380, margin=dict(t=36, b=4, l=4, r=4), title=dict(text=title, font=dict(size=14)),
                      plot_bgcolor="#f0f0f0", showlegend=False)  # fmt: skip


def field_on_image_figure(crop: "Image.Image", box: tuple[float, float, float, float], layer: str,
                          unit: tuple[int, int]) -> "go.Figure":  # fmt: skip
    """The picture the network sees, with the theoretical field of one unit (dotted where it leaves the image)."""
    import plotly.graph_objects as go

    array = np.asarray(crop.convert("RGB"))
    height, width = array.shape[:2]
    fig = go.Figure(go.Image(z=array, hoverinfo="skip"))
    _box_shapes(fig, box, width, height, FIELD_COLOR, "theoretical field")
    cy, cx = (box[0] + box[2]) / 2 - 0.5, (box[1] + box[3]) / 2 - 0.5
    fig.add_scatter(x=[cx], y=[cy], mode="markers", marker=dict(symbol="x", size=10, color=FIELD_COLOR),
                    hovertext=[f"unit {unit} of {html.escape(layer)}"], hoverinfo="text")  # fmt: skip
    side = box[2] - box[0]
    _frame(fig, box, width, height, f"Theoretical field: {number(side)} px")
    return fig


def effective_field_figure(erf: "EffectiveField") -> "go.Figure":
    """|gradient| of the unit w.r.t. each input pixel, with the theoretical square and the 95% square."""
    import plotly.graph_objects as go

    height, width = erf.gradient.shape
    # Coloured here, as an image: a heatmap's colours would follow the host's chart theme (Streamlit's).
    fig = go.Figure(go.Image(z=_inferno(np.sqrt(erf.gradient)), hoverinfo="skip"))
    _box_shapes(fig, erf.box, width, height, FIELD_COLOR, "theoretical field", dash="dash")
    cy, cx = erf.centre
    half = erf.side / 2
    fig.add_shape(type="rect", x0=cx - half, y0=cy - half, x1=cx + half, y1=cy + half,
                  line=dict(color="#4FD1C5", width=2.5))  # fmt: skip
    weights = "trained" if erf.pretrained else "random"
    # Zoomed on the theoretical field (a margin around it), so the blob inside is visible.
    top, left, bottom, right = erf.box
    margin = 0.12 * (bottom - top)
    view = (max(top - margin, 0), max(left - margin, 0), min(bottom + margin, height), min(right + margin, width))
    _frame(fig, erf.box, width, height, f"Effective ({weights}): 95% in {erf.side} px")
    fig.update_xaxes(range=[view[1] - 0.5, view[3] - 0.5])
    fig.update_yaxes(range=[view[2] - 0.5, view[0] - 0.5])
    return fig


def _inferno(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as RGB with plotly's Inferno scale (black, purple, orange, yellow)."""
    return _inferno_lut()[np.clip(np.round(values * 255), 0, 255).astype(np.intp)]


@lru_cache(maxsize=1)
def _inferno_lut() -> np.ndarray:
    """256 Inferno colours, sampled once per process rather than on every figure."""
    from plotly.colors import sample_colorscale, unlabel_rgb

    lut = np.array([unlabel_rgb(c) for c in sample_colorscale("Inferno", list(np.linspace(0, 1, 256)))], np.uint8)
    lut.flags.writeable = False  # shared by every session
    return lut


def spread_labels(xs: Sequence[float], ys: Sequence[float], texts: Sequence[str], *, log_x: bool = True,
                  log_y: bool = True, width_px: int = 520, height_px: int = 420) -> list[str]:  # fmt: skip
    """A plotly ``textposition`` per point so that labels overlap neither each other, nor other points, nor the edges.

    Greedy: points from left to right take the first position whose label box (estimated from the
    text length) is free; a point whose every position collides keeps the least crowded one. The
    default width is a narrow window's plot (a 1000 px browser): labels that fit there fit wider ones.
    """
    if not xs:
        return []

    def scale(values: Sequence[float], log: bool, size: int) -> list[float]:
        v = [math.log10(max(x, 1e-12)) if log else float(x) for x in values]
        low, high = min(v), max(v)
        span = (high - low) or 1.0
        return [(x - low) / span * size * 0.8 + size * 0.1 for x in v]

    px, py = scale(xs, log_x, width_px), scale(ys, log_y, height_px)
    char, line, gap = 7.0, 14.0, 6.0
    options = ("top center", "bottom center", "middle right", "middle left", "top right", "top left",
               "bottom right", "bottom left")  # fmt: skip
    placed: list[tuple[float, float, float, float]] = [(x - 6, y - 6, x + 6, y + 6) for x, y in zip(px, py)]
    result = [""] * len(xs)
    for i in sorted(range(len(xs)), key=lambda k: px[k]):
        w = char * len(texts[i])
        best, best_hits = options[0], None
        for option in options:
            vertical, horizontal = option.split()
            cx = px[i] + {"center": 0, "right": w / 2 + gap, "left": -w / 2 - gap}[horizontal]
            cy = py[i] + {"top": line / 2 + gap, "middle": 0, "bottom": -line / 2 - gap}[vertical]
            rect = (cx - w / 2, cy - line / 2, cx + w / 2, cy + line / 2)
            hits = sum(1 for j, r in enumerate(placed) if j != i and _overlap(rect, r))
            hits += 2 * (rect[0] < 0 or rect[2] > width_px or rect[1] < 0 or rect[3] > height_px)  # cut off at an edge
            if best_hits is None or hits < best_hits:
                best, best_hits, best_rect = option, hits, rect
            if hits == 0:
                break
        result[i] = best
        placed.append(best_rect)
    return result


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
