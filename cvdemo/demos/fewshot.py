"""Shareable few-shot demo: ants vs bees examples preloaded; a query gets a vote and its neighbours,
and the transfer-learning ladder (kNN, linear probe, new head, unfreeze) runs on the same examples.

Same code as the Streamlit page (:mod:`cvdemo.fewshot`); the extractor, the embedded sample set and
each ladder run are built once per process through :mod:`cvdemo.cache`: a class pressing "Run" at
once watches one run, not thirty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import time
from typing import Iterator

import numpy as np

from cvdemo import cache
from cvdemo import fewshot as fs
from cvdemo.datasets import DataUnavailable
from cvdemo.images import ImageInputError, load_image
from cvdemo.demos import shows_errors

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


@shows_errors
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


@shows_errors
def training_examples() -> list[tuple[Any, str]]:
    try:
        gallery = cache.shared(build_gallery, PER_CLASS)
    except DataUnavailable:
        return []
    return [(e.thumb, label) for e, label in zip(gallery.items, gallery.labels)]


def start_ladder(head_epochs: int, unfreeze_epochs: int, lr_factor: float, start: str) -> fs.LadderRun:
    """The ladder on the sample (10 ants + 10 bees to learn from, the 153 validation images held out),
    started once per process and settings (:func:`fs.shared_ladder`, as on the page: a failed run is
    started afresh, not shown again)."""
    config = fs.LadderConfig(head_epochs=int(head_epochs), unfreeze_epochs=int(unfreeze_epochs),
                             lr_factor=float(lr_factor), start=str(start))
    gallery = cache.shared(build_gallery, PER_CLASS)
    held_out = cache.shared(fs.validation_images)
    return fs.shared_ladder(
        [(e.image, label) for e, label in zip(gallery.items, gallery.labels)],
        [(img, label) for img, label, _ in held_out],
        config,
        gallery.extractor,
        ([e.digest for e in gallery.items], [d for *_, d in held_out]),
    )


def ladder_outputs(run: fs.LadderRun) -> tuple[Any, Any, str]:
    """(table, curves, summary) as they stand now."""
    table = fs.display_table(run.results)
    baselines = {r.method: r.accuracy.value for r in run.results if r.method in ("knn", "linear_probe")}
    curves = fs.curves_figure(run.history, baselines, {"head": run.config.head_epochs,
                                                       "unfreeze": run.config.unfreeze_epochs})
    if run.running:
        summary = f"**Running** ({run.progress:.0%}): {run.phase} · {run.elapsed:.0f} s"
    elif run.error:
        summary = f"**Failed:** {run.error}"
    else:
        summary = "\n".join(f"- {line}" for line in fs.describe_results(run.results))
    return table, curves, summary


@shows_errors
def run_ladder(
    head_epochs: int = 15, unfreeze_epochs: int = 6, lr_factor: float = 10, start: str = "head"
) -> Iterator[tuple[Any, Any, str]]:
    """Start (or join) the ladder and stream the table and curves until it is done."""
    import gradio as gr

    try:
        run = start_ladder(head_epochs, unfreeze_epochs, lr_factor, start)
    except (fs.LadderError, DataUnavailable) as exc:
        raise gr.Error(str(exc)) from None
    while run.running:
        yield ladder_outputs(run)
        time.sleep(1.0)
    yield ladder_outputs(run)


def ladder_table(head_epochs: int = 15, unfreeze_epochs: int = 6, lr_factor: float = 10, start: str = "head"):
    """The finished ladder table (blocking): what the Gradio API and the tests read."""
    run = start_ladder(head_epochs, unfreeze_epochs, lr_factor, start)
    run.join()
    if run.error:
        raise RuntimeError(run.error)
    return run.table()


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
        with gr.Accordion("The transfer-learning ladder on these examples", open=True):
            gr.Markdown(
                "The same 20 examples, four ways to use the pretrained network: kNN and a linear probe keep it "
                "frozen; a new head is trained on the frozen base with augmentation; then the last 2 stages are "
                "unfrozen at a learning rate *factor* times lower than the head's. Accuracy on the 153 validation "
                "images, with n and a 95% interval."
            )
            with gr.Row():
                head_epochs = gr.Slider(1, 40, value=15, step=1, label="New head: epochs")
                unfreeze_epochs = gr.Slider(1, 20, value=6, step=1, label="Unfreeze: epochs")
                factor = gr.Slider(1, 30, value=10, step=1, label="Pretrained stages learn this many times slower")
                start = gr.Radio(list(fs.STARTS), value="head", label="Unfreeze starts from")
            go = gr.Button("Run the ladder", variant="primary")
            summary = gr.Markdown()
            table = gr.Dataframe(label="The ladder", wrap=True)
            curves = gr.Plot(label="Training curves")
            go.click(run_ladder, [head_epochs, unfreeze_epochs, factor, start], [table, curves, summary],
                     api_name="ladder")
        inputs = [query, k, metric, weighting]
        button.click(classify, inputs, [label, neighbours], api_name="classify")
        query.change(lambda *a: classify(*a) if a[0] is not None else (None, []), inputs, [label, neighbours])
        demo.load(training_examples, None, shown)
    return demo
