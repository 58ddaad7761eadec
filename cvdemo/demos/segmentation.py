"""Gradio demo: upload a photo, see every pixel painted with a class.

Models: the pets U-Net fine-tuned once per process on the sample data (the page's recipe), a
U-Net you trained on the page and downloaded (.safetensors), or a published semantic model when
its weights are on the machine. Same ``cvdemo.segmentation`` functions as the Streamlit page.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd
from PIL import Image

from cvdemo import cache, datasets, weights
from cvdemo import segmentation as seg
from cvdemo.text import html_literal
from cvdemo.demos import shows_errors

SERVER_MODEL = "Pets U-Net (fine-tuned on this server, about a minute the first time)"


def model_choices() -> list[str]:
    """The server's U-Net plus every published model whose weights are here."""
    return [SERVER_MODEL] + [title for name, title in seg.PRETRAINED.items() if weights.available(name)]


def get_model(choice: str, model_file: str | None = None) -> seg.Segmenter:
    """The segmenter for a dropdown choice, or the uploaded .safetensors when one is given."""
    if model_file:
        path = Path(model_file)
        try:
            return seg.SegModel.from_bytes(path.read_bytes(), name=path.name)
        except seg.ModelFileError as exc:
            raise gr.Error(str(exc)) from None
    try:
        if choice == SERVER_MODEL:
            return cache.shared(seg.sample_model)
        name = next((n for n, title in seg.PRETRAINED.items() if title == choice), None)
        if name is None:
            raise gr.Error(f"Unknown model '{choice}'.")
        return cache.shared(seg.PretrainedSegmenter, name)
    except (weights.WeightsUnavailable, datasets.DataUnavailable, seg.ModelFileError) as exc:
        raise gr.Error(str(exc)) from None


@shows_errors
def segment(
    image: Image.Image | None,
    opacity: float = 0.55,
    choice: str = SERVER_MODEL,
    model_file: str | None = None,
) -> tuple[Image.Image, str, pd.DataFrame, str]:
    """Overlay, legend (HTML), % of pixels per class, and the path of the mask PNG."""
    if image is None:
        raise gr.Error("Upload a photo first.")
    model = get_model(choice, model_file)
    image = seg.display_copy(image.convert("RGB"))
    mask = model.predict(image)
    skip = () if model.background is None else (model.background,)
    painted = seg.overlay(image, mask, len(model.class_names), opacity, skip=skip)
    shares = seg.class_shares(mask, model.class_names)
    table = pd.DataFrame(
        [{"class": s.name, "index": s.index, "% of pixels": round(100 * s.fraction, 2)} for s in shares]
    )
    with tempfile.NamedTemporaryFile(prefix="cvdemo-mask-", suffix=".png", delete=False) as fh:
        fh.write(seg.mask_png(mask, len(model.class_names)))
    legend = seg.legend_html(shares[:12]) + f"<p style='opacity:.7'>{html_literal(model.title)}</p>"
    return painted, legend, table, fh.name


def _examples() -> list[list[str]]:
    """Pets the server's U-Net never trained on (its held-out split), then a street it has never seen."""
    paths: list[str] = []
    try:
        held_out = seg.sample_held_out(seg.load_sample().samples)
        root = datasets.dataset_path(seg.SAMPLE_DATASET) / "images"
        paths = [str(p) for s in held_out[:3] for p in root.glob(f"{s.name}.*")]
    except datasets.DataUnavailable:
        pass
    paths += [str(p) for name, p in datasets.packaged_images().items() if name == "bus.jpg"]
    return [[p] for p in paths]


def build() -> gr.Blocks:
    with gr.Blocks(title="cvdemo · segmentation") as demo:
        gr.Markdown(
            "## Semantic segmentation\nEvery pixel gets a class. The default model is a U-Net whose "
            "ImageNet encoder was frozen, then fine-tuned, on 20 photos of cats and dogs — on this CPU."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", label="Photo", sources=["upload", "webcam", "clipboard"])
                choice = gr.Dropdown(model_choices(), value=SERVER_MODEL, label="Model")
                model_file = gr.File(label="…or your trained model (.safetensors from the page)",
                                     file_types=[".safetensors"], type="filepath")
                opacity = gr.Slider(0.0, 1.0, value=0.55, step=0.05, label="Mask opacity")
                run = gr.Button("Segment", variant="primary")
            with gr.Column():
                painted = gr.Image(type="pil", label="Mask overlay")
                legend = gr.HTML()
                table = gr.Dataframe(label="% of pixels per class", interactive=False)
                mask_file = gr.File(label="Mask PNG (pixel value = class index)")
        inputs = [image, opacity, choice, model_file]
        outputs = [painted, legend, table, mask_file]
        run.click(segment, inputs, outputs, api_name="segment")
        opacity.release(segment, inputs, outputs, api_name=False)
        examples = _examples()
        if examples:
            gr.Examples(examples, inputs=[image], label="Held-out pets (never trained on) and a street")
    return demo
