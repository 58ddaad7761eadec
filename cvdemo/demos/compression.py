"""Shareable compression demo: pick a technique and its knob, run it on EfficientNet-Lite0, see the table.

Same code as the Streamlit page (:mod:`cvdemo.compression`): the techniques, their labels and knobs come
from its technique registry; the model, its ONNX export and the evaluation images are built once per
process through :mod:`cvdemo.cache`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cvdemo import cache
from cvdemo.datasets import DataUnavailable
from cvdemo.weights import WeightsUnavailable
from cvdemo.demos import shows_errors

if TYPE_CHECKING:
    import gradio as gr
    import pandas as pd

MODEL = "efficientnet_lite0"
NO_KNOB = ("(no knob)", 0, 1, 0, 1)


def knob_slider(technique: str) -> tuple[str, float, float, float, float]:
    """(label, min, max, default, step) of the demo's one slider for a registered technique, as shown."""
    from cvdemo.compression.registry import get_technique

    knob = get_technique(technique).demo_knob
    if knob is None:
        return NO_KNOB
    return (knob.label, knob.display(knob.low), knob.display(knob.high), knob.display(knob.default),
            knob.display(knob.step) if knob.step else 1)


def spec_for(technique: str, knob: float):
    """The page's TechniqueSpec for one technique and its single demo knob (plus the knobs the demo pins)."""
    from cvdemo import compression as cx

    registered = cx.get_technique(technique)
    knobs = dict(registered.demo_fixed)
    if registered.demo_knob is not None:
        knobs[registered.demo_knob.key] = registered.demo_knob.from_display(knob)
    return cx.TechniqueSpec(technique, knobs)


@shows_errors
def run(technique: str, knob: float, images: int = 32, repeats: int = 20) -> tuple[pd.DataFrame, str]:
    """Compress EfficientNet-Lite0 with one technique; the comparison table and the explanation."""
    import gradio as gr

    from cvdemo import compression as cx

    if not cx.is_technique(technique):
        raise gr.Error(f"Pick a technique: {', '.join(cx.TECHNIQUES.values())}.")
    try:
        eval_set = cache.shared(cx.standard_eval_set, MODEL, "hymenoptera", int(images))
        result = cx.run_comparison(MODEL, [spec_for(technique, knob)], eval_set, repeats=int(repeats))
    except (cx.CompressionError, DataUnavailable, WeightsUnavailable) as exc:
        raise gr.Error(str(exc)) from None
    if result.errors:
        raise gr.Error(" ".join(result.errors.values()))
    table = result.table.drop(columns=["technique"]).round(3)
    text = cx.explain(technique, result.table, result.cpu)
    return table, text


def _knob_update(technique: str):
    import gradio as gr

    label, low, high, default, step = knob_slider(technique)
    return gr.update(label=label, minimum=low, maximum=high, value=default, step=step, interactive=label != NO_KNOB[0])


def build() -> "gr.Blocks":
    import gradio as gr

    from cvdemo import compression as cx

    choices = [(cx.get_technique(key).label, key) for key in cx.list_techniques()]
    with gr.Blocks(title="Compression") as demo:
        gr.Markdown(
            "## Compression, measured on this computer\n"
            "EfficientNet-Lite0 (ImageNet) before and after one technique: file size, parameters, MACs, latency "
            "(median of timed runs, batch 1 and 8), top-1 on ants & bees and agreement with the original.\n\n"
            f"CPU: {cx.cpu_features().summary()}"
        )
        with gr.Row():
            technique = gr.Dropdown(choices, value="int8_static", label="Technique")
            label, low, high, default, step = knob_slider("int8_static")
            knob = gr.Slider(low, high, default, step=step, label=label)
            images = gr.Slider(8, 153, 32, step=1, label="Evaluation images")
        go = gr.Button("Compress and measure", variant="primary")
        table = gr.Dataframe(label="Original vs compressed")
        explanation = gr.Markdown()
        technique.change(_knob_update, technique, knob)
        go.click(run, [technique, knob, images], [table, explanation], api_name="compress")
    return demo
