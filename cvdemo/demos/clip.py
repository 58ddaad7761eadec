"""Gradio twin of the CLIP page: zero-shot labels for a photo, and text -> image search in a sample gallery.

Same functions as ``app_pages/clip_search.py`` (:mod:`cvdemo.clip`); models and the gallery index are
built once per process through :func:`cvdemo.cache.shared`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Module level, not TYPE_CHECKING: Gradio evaluates similar()'s annotations to find gr.SelectData.
import gradio as gr
from PIL import Image

from cvdemo import cache, clip, weights
from cvdemo.images import ImageInputError, load_image
from cvdemo.demos import shows_errors

if TYPE_CHECKING:
    import plotly.graph_objects as go


def _error(message: str) -> Exception:
    return gr.Error(message)


def engine_key() -> str:
    keys = clip.available_engines()
    if not keys:
        raise _error(str(weights.WeightsUnavailable(weights.get("clip"))))
    return keys[0]


def engine() -> clip.EmbeddingEngine:
    return cache.shared(clip.create_engine, engine_key())


def default_threshold() -> float:
    """The active engine's default cosine threshold, without loading it."""
    keys = clip.available_engines()
    cls = clip.ClipModel if keys and keys[0] in clip.CLIP_MODELS else clip.ConSEEngine
    return float(cls.none_thresholds.get(clip.ENSEMBLE, cls.default_threshold))


def default_verification_threshold() -> float:
    keys = clip.available_engines()
    return clip.default_verification_threshold(keys[0]) if keys else 0.8


def build_sample_index(key: str, gallery_key: str) -> clip.ImageIndex:
    """A sample gallery embedded with engine ``key`` (from the disk cache after the first time)."""
    index = clip.ImageIndex(cache.shared(clip.create_engine, key))
    index.add(clip.sample_gallery(gallery_key).images)
    return index


def gallery_index() -> clip.ImageIndex:
    galleries = clip.available_sample_galleries()
    if not galleries:
        raise _error("No sample images on this machine: set $CVDEMO_DATA_DIR to the shared data folder.")
    return cache.shared(build_sample_index, engine_key(), galleries[0])


@shows_errors
def classify(
    image: Any, labels_text: str, template: str = clip.ENSEMBLE, temperature: float | None = None,
    threshold: float | None = None,
) -> tuple[dict[str, float], "go.Figure", str]:
    """Zero-shot: probabilities per label, the probability/cosine bar chart, and a verdict sentence."""
    if image is None:
        raise _error("Upload or pick an image first.")
    try:
        picture = load_image(image)
        labels, notes = clip.parse_labels(labels_text or "")
    except (ImageInputError, clip.ClipInputError) as exc:
        raise _error(str(exc)) from None
    model = engine()
    threshold = model.none_threshold(template) if threshold is None else float(threshold)
    result = clip.zero_shot(model, model.encode_images([picture])[0], labels, template, temperature or None)
    best = result.rows(0)[0]
    if result.none_of_the_above(threshold)[0]:
        verdict = (
            f"**None of the above**: the best label, {clip.quoted(best['label'])}, has cosine {best['cosine']:.3f} "
            f"< {threshold:.2f}, yet softmax gives it {best['probability']:.0%} (probabilities always sum to 1)."
        )
    else:
        verdict = (f"**{clip.md_literal(best['label'])}**: probability {best['probability']:.0%}, "
                   f"cosine {best['cosine']:.3f}.")
    verdict += f"\n\nEngine: {model.label}."
    if notes:
        verdict += "\n\n" + " ".join(notes)
    probabilities = {row["label"]: row["probability"] for row in result.rows(0)}
    return probabilities, clip.zero_shot_figure(result, 0, threshold), verdict


def _gallery_items(index: clip.ImageIndex, hits: list[clip.SearchHit]) -> list[tuple[Image.Image, str]]:
    return [(index.thumbnails[h.position], f"{h.score:.3f} · {h.label or h.id}") for h in hits]


@shows_errors
def search(query: str, k: int = 10) -> tuple[list[tuple[Image.Image, str]], list[str], str]:
    """Text -> image: the top-``k`` gallery images with their cosine, their ids, and a status line."""
    index = gallery_index()
    try:
        text, notes = clip.clean_query(query)
        hits = index.search(text, int(k))
    except clip.ClipInputError as exc:
        raise _error(str(exc)) from None
    status = f"Top {len(hits)} of {len(index)} gallery images for {clip.quoted(text)}. Click one to search by image."
    return _gallery_items(index, hits), [h.id for h in hits], " ".join([status, *notes])


@shows_errors
def similar(shown_ids: list[str], k: int, evt: gr.SelectData) -> tuple[list[tuple[Image.Image, str]], list[str], str]:
    """Image -> image: rank the gallery by similarity to the clicked result (it comes first)."""
    if not shown_ids or evt.index is None or int(evt.index) >= len(shown_ids):
        raise _error("Search first, then click a result.")
    index = gallery_index()
    query_id = shown_ids[int(evt.index)]
    hits = index.search_by_id(query_id, int(k))
    return _gallery_items(index, hits), [h.id for h in hits], f"Images most similar to {query_id} (itself first)."


def verification_embedder() -> clip.Embedder:
    """The active engine as a verification embedder (its vectors cached by image digest)."""
    return clip.embedder_for(engine())


@shows_errors
def verify_images(first: Any, second: Any, threshold: float | None = None) -> tuple[str, float]:
    """Same or different? The verdict sentence and the cosine of the two images' embeddings."""
    if first is None or second is None:
        raise _error("Verification compares two images: give both.")
    try:
        a, b = load_image(first), load_image(second)
    except ImageInputError as exc:
        raise _error(str(exc)) from None
    embedder = verification_embedder()
    threshold = clip.default_verification_threshold(embedder.name) if threshold is None else float(threshold)
    verdict = clip.verify(embedder, a, b, threshold)
    return clip.verdict_text(verdict) + f"\n\nEngine: {embedder.label}.", verdict.cosine


@shows_errors
def evaluate_verification(level: str, threshold: float) -> tuple["go.Figure", str]:
    """ROC of the active engine on pairs from a sample set, the threshold marked, which changes break."""
    sets = clip.available_sample_galleries(labeled_only=level == clip.CLASS)
    if not sets:
        raise _error("No sample images on this machine: set $CVDEMO_DATA_DIR to the shared data folder.")
    embedder = verification_embedder()
    try:
        pairs = clip.build_pairs(clip.sample_gallery(sets[0]).images, level, sources=24 if level == clip.PHOTO else 60)
    except clip.ClipInputError as exc:
        raise _error(str(exc)) from None
    evaluation, _ = clip.evaluate_pairs(embedder, pairs)
    kinds = evaluation.by_kind(float(threshold))
    worst = ", ".join(f"{k.kind} ({k.accepted:.0%} accepted)" for k in kinds[:3])
    text = (f"**AUC {evaluation.auc:.3f}**, equal-error rate {evaluation.eer:.1%} at cosine "
            f"{evaluation.eer_threshold:.3f}, on {len(pairs)} pairs from {sets[0]}. Hardest at {float(threshold):.2f}: {worst}.")
    return clip.roc_figure([(embedder.label, evaluation)], float(threshold)), text


def build() -> gr.Blocks:
    from cvdemo.datasets import packaged_images

    samples = packaged_images()
    with gr.Blocks(title="CLIP: zero-shot and search") as demo:
        gr.Markdown(
            "## Words become classifiers, sentences become searches\n"
            "Images and texts are vectors in one space; similarity is their cosine. Without CLIP weights the "
            "offline **ConSE** engine is used (ImageNet classifier + sentence embeddings, not CLIP)."
        )
        with gr.Tab("Zero-shot"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(type="pil", label="Image", height=320)
                    labels = gr.Textbox(
                        label="Labels (comma-separated)", value=", ".join(clip.LABEL_PRESETS["Street scene"])
                    )
                    template = gr.Dropdown(
                        [(name, key) for key, name in clip.TEMPLATE_CHOICES.items()], value=clip.ENSEMBLE,
                        label="Prompt template",
                    )
                    with gr.Row():
                        temperature = gr.Slider(
                            0.0, 1.0, value=0.0, step=0.001, label="Temperature (0 = engine default)"
                        )
                        threshold = gr.Slider(
                            -0.2, 1.0, value=default_threshold(), step=0.01, label="None-of-the-above cosine"
                        )
                    run = gr.Button("Classify", variant="primary")
                with gr.Column():
                    verdict = gr.Markdown()
                    probabilities = gr.Label(num_top_classes=10, label="Softmax probabilities")
                    bars = gr.Plot(label="Probability and raw cosine")
            if samples:
                gr.Examples(
                    [[str(path), ", ".join(clip.LABEL_PRESETS["Street scene"])] for path in samples.values()],
                    inputs=[image, labels],
                )
            run.click(
                classify, [image, labels, template, temperature, threshold], [probabilities, bars, verdict],
                api_name="classify",
            )
        with gr.Tab("Search"):
            with gr.Row():
                query = gr.Textbox(label="Describe what you are looking for", value="a photo of a ship", scale=4)
                k = gr.Slider(1, 30, value=10, step=1, label="Results", scale=1)
            go_button = gr.Button("Search", variant="primary")
            status = gr.Markdown()
            results = gr.Gallery(label="Results (click one: more like this)", columns=5, height="auto")
            shown = gr.State([])
            go_button.click(search, [query, k], [results, shown, status], api_name="search")
            query.submit(search, [query, k], [results, shown, status])
            results.select(similar, [shown, k], [results, shown, status])
        with gr.Tab("Verify"):
            gr.Markdown("Are two images the same? Their embeddings' cosine against a threshold.")
            with gr.Row():
                first = gr.Image(type="pil", label="First image", height=260)
                second = gr.Image(type="pil", label="Second image", height=260)
            with gr.Row():
                verify_threshold = gr.Slider(-0.2, 1.0, value=default_verification_threshold(), step=0.01,
                                             label="Same if cosine ≥", scale=3)
                check = gr.Button("Verify", variant="primary", scale=1)
            verify_verdict = gr.Markdown()
            verify_cosine = gr.Number(label="cosine", precision=3)
            check.click(verify_images, [first, second, verify_threshold], [verify_verdict, verify_cosine],
                        api_name="verify")
            if samples:
                gr.Examples([[str(p), str(p)] for p in list(samples.values())[:2]], inputs=[first, second])
            with gr.Accordion("How good is this threshold? ROC on sample pairs", open=False):
                level = gr.Radio([(name, key) for key, name in clip.LEVELS.items()], value=clip.PHOTO, label="Same means")
                evaluate = gr.Button("Evaluate")
                roc = gr.Plot(label="ROC")
                roc_text = gr.Markdown()
                evaluate.click(evaluate_verification, [level, verify_threshold], [roc, roc_text],
                               api_name="evaluate_verification")
    return demo
