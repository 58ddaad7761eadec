"""Shareable few-shot kNN demo: ants vs bees examples preloaded; a query gets a vote and its neighbours.

Same code as the Streamlit page (:mod:`cvdemo.fewshot`); the extractor and the embedded sample
set are built once per process through :mod:`cvdemo.cache`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cvdemo import cache
from cvdemo import fewshot as fs
from cvdemo.datasets import DataUnavailable
from cvdemo.images import ImageInputError, load_image

if TYPE_CHECKING:
    import gradio as gr

PER_CLASS = 10  # training examples per class in the preloaded set


@dataclass
class SampleGallery:
    extractor: fs.FeatureExtractor
    items: list[fs.Example]
    labels: list[str]
    X: np.ndarray


def build_gallery(per_class: int = PER_CLASS) -> SampleGallery:
    """The ants/bees training examples embedded with EfficientNet-Lite0 (once per process)."""
    extractor = cache.shared(fs.FeatureExtractor, fs.DEFAULT_BACKBONE, None, True)
    items, labels = fs.load_sample_set(per_class).labelled()
    return SampleGallery(extractor, items, labels, extractor.embed([e.image for e in items]))


def classify(
    image: Any, k: int = 3, metric: str = "cosine", weighting: str = "uniform"
) -> tuple[dict[str, float], list[tuple[Any, str]]]:
    """Class probabilities (the neighbours' vote) and the k nearest examples with captions."""
    import gradio as gr

    if image is None:
        raise gr.Error("Upload an image (or pick an example) first.")
    try:
        query = load_image(image)
        gallery = cache.shared(build_gallery, PER_CLASS)
    except (ImageInputError, DataUnavailable) as exc:
        raise gr.Error(str(exc)) from None
    knn = fs.KNNClassifier(int(k), metric, weighting).fit(gallery.X, gallery.labels)
    vector = gallery.extractor.embed([query])
    proba = knn.predict_proba(vector)[0]
    dist, idx = knn.kneighbors(vector)
    neighbours = [
        (gallery.items[i].thumb, f"#{rank + 1} {gallery.labels[i]} · d = {d:.3f}")
        for rank, (d, i) in enumerate(zip(dist[0], idx[0]))
    ]
    return {str(c): float(p) for c, p in zip(knn.classes_, proba)}, neighbours


def training_examples() -> list[tuple[Any, str]]:
    try:
        gallery = cache.shared(build_gallery, PER_CLASS)
    except DataUnavailable:
        return []
    return [(e.thumb, label) for e, label in zip(gallery.items, gallery.labels)]


def build() -> "gr.Blocks":
    import gradio as gr

    try:
        samples = [str(p) for p in fs.query_samples(3).values()]
        note = ""
    except DataUnavailable as exc:  # query_samples itself tolerates this; keep the demo alive anyway
        samples, note = [], str(exc)
    with gr.Blocks(title="Few-shot kNN") as demo:
        gr.Markdown(
            "## Few-shot kNN: a classifier from frozen features\n"
            f"{PER_CLASS} ants and {PER_CLASS} bees (hymenoptera training split) are embedded by a frozen "
            "ImageNet EfficientNet-Lite0. A new image is classified by a vote of its k nearest examples: "
            "the neighbours *are* the explanation."
        )
        if note:
            gr.Markdown(f"**Sample set missing:** {note}")
        with gr.Row():
            with gr.Column():
                query = gr.Image(type="pil", label="Query image", sources=["upload", "webcam", "clipboard"])
                k = gr.Slider(1, 15, value=3, step=1, label="k: neighbours that vote")
                metric = gr.Radio(list(fs.METRICS), value="cosine", label="Distance")
                weighting = gr.Radio(list(fs.WEIGHTINGS), value="uniform", label="Vote weighting")
                button = gr.Button("Classify", variant="primary")
            with gr.Column():
                label = gr.Label(label="Class probabilities (share of the vote)")
                neighbours = gr.Gallery(label="Nearest examples", columns=5, height="auto")
        if samples:
            gr.Examples(samples, inputs=[query], label="Validation images (not in the training set)")
        with gr.Accordion("The training examples", open=False):
            shown = gr.Gallery(columns=10, height="auto", show_label=False)
        inputs = [query, k, metric, weighting]
        button.click(classify, inputs, [label, neighbours], api_name="classify")
        query.change(lambda *a: classify(*a) if a[0] is not None else (None, []), inputs, [label, neighbours])
        demo.load(training_examples, None, shown)
    return demo
