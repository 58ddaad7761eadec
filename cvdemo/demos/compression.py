"""Shareable compression demo: pick a technique and its knob, run it on EfficientNet-Lite0, see the table.

Same code as the Streamlit page (:mod:`cvdemo.compression`): the model, its ONNX export and the
evaluation images are built once per process through :mod:`cvdemo.cache`.
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

# technique key -> (knob label, min, max, default, step); spec_for() turns the knob into the technique's argument
KNOBS: dict[str, tuple[str, float, float, float, float]] = {
    "int8_static": ("Calibration images", 2, 64, 16, 1),
    "int8_dynamic": ("(no knob)", 0, 1, 0, 1),
    "fp16": ("(no knob)", 0, 1, 0, 1),
    "bf16": ("(no knob)", 0, 1, 0, 1),
    "prune_unstructured": ("Sparsity %", 0, 100, 30, 5),
    "prune_structured": ("Channels removed %", 0, 100, 30, 5),
    "low_rank": ("Rank of the classifier", 1, 1280, 256, 1),
}


def spec_for(technique: str, knob: float):
    """The page's TechniqueSpec for one technique and its single demo knob."""
    from cvdemo import compression as cx

    if technique == "int8_static":
        return cx.TechniqueSpec(technique, {"calibration_images": int(knob)})
    if technique == "prune_unstructured":
        return cx.TechniqueSpec(technique, {"amount": float(knob) / 100, "scope": "global"})
    if technique == "prune_structured":
        return cx.TechniqueSpec(technique, {"amount": float(knob) / 100, "fine_tune_epochs": 0})
    if technique == "low_rank":
        return cx.TechniqueSpec(technique, {"rank": int(knob), "layers": ["classifier"]})
    return cx.TechniqueSpec(technique, {})


@shows_errors
def run(technique: str, knob: float, images: int = 32, repeats: int = 20) -> tuple[pd.DataFrame, str]:
    """Compress EfficientNet-Lite0 with one technique; the comparison table and the explanation."""
    import gradio as gr

    from cvdemo import compression as cx

    if technique not in cx.TECHNIQUES:
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

    label, low, high, default, step = KNOBS[technique]
    return gr.update(label=label, minimum=low, maximum=high, value=default, step=step, interactive=label != "(no knob)")


def build() -> "gr.Blocks":
    import gradio as gr

    from cvdemo import compression as cx

    choices = [(label, key) for key, label in cx.TECHNIQUES.items()]
    with gr.Blocks(title="Compression") as demo:
        gr.Markdown(
            "## Compression, measured on this computer\n"
            "EfficientNet-Lite0 (ImageNet) before and after one technique: file size, parameters, MACs, latency "
            "(median of timed runs, batch 1 and 8), top-1 on ants & bees and agreement with the original.\n\n"
            f"CPU: {cx.cpu_features().summary()}"
        )
        with gr.Row():
            technique = gr.Dropdown(choices, value="int8_static", label="Technique")
            label, low, high, default, step = KNOBS["int8_static"]
            knob = gr.Slider(low, high, default, step=step, label=label)
            images = gr.Slider(8, 153, 32, step=1, label="Evaluation images")
        go = gr.Button("Compress and measure", variant="primary")
        table = gr.Dataframe(label="Original vs compressed")
        explanation = gr.Markdown()
        technique.change(_knob_update, technique, knob)
        go.click(run, [technique, knob, images], [table, explanation], api_name="compress")
    return demo
