"""Few-shot kNN: a classifier in seconds from frozen pretrained features and a neighbour vote."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import streamlit as st

from cvdemo import fewshot as fs
from cvdemo import ui
from cvdemo.archives import ArchiveError
from cvdemo.catalog import PAGES
from cvdemo.datasets import DataUnavailable, available as data_available
from cvdemo.weights import WeightsUnavailable

info = next(p for p in PAGES if p.path.endswith("fewshot.py"))
ui.page_header(
    info.title,
    "Keep a pretrained network frozen, use it to turn each image into a vector, and classify a new "
    "image by a vote of its nearest examples. No training loop: adding an example is the training.",
)

state = st.session_state
examples: fs.ExampleSet = state.setdefault("fewshot_set", fs.ExampleSet())
cache: fs.EmbeddingCache = state.setdefault("fewshot_cache", fs.EmbeddingCache())
state.setdefault("fewshot_notes", [])  # (level, sentence) written by callbacks, shown once
state.setdefault("fewshot_gen", 0)  # bumped to give upload widgets a fresh (empty) key


def note(level: str, message: str) -> None:
    state["fewshot_notes"].append((level, message))


def report(added: int, messages: list[str], where: str) -> None:
    if added:
        note("success", f"Added {added} image{'s' * (added != 1)} {where}.")
    for message in messages:
        note("warning" if "skipped" in message or "already" in message else "error", message)


# --- callbacks: they run before the script, so the page below already shows their result ----------


def load_sample() -> None:
    try:
        added, messages = examples.merge(fs.load_sample_set(int(state["fewshot_per_class"])))
    except DataUnavailable as exc:
        note("error", str(exc))
        return
    report(added, messages, "from the ants/bees sample set")


def add_class() -> None:
    try:
        name = examples.add_class(state.get("fewshot_new_class", ""))
        note("success", f"Class '{name}' created: now add images to it.")
    except fs.ExampleSetError as exc:
        note("error", str(exc))


def upload_to(class_name: str, key: str) -> None:
    files = state.get(key) or []
    added, messages = examples.add_images(class_name, [(f.name, f) for f in files])
    report(added, messages, f"to '{class_name}'")
    state["fewshot_gen"] += 1  # empties the uploader: the images now live in the example set


def snapshot(key: str) -> None:
    photo = state.get(key)
    target = state.get("fewshot_camera_class")
    if photo is None or target not in examples.classes:
        return
    added, messages = examples.add_images(target, [(f"camera {len(examples.classes[target]) + 1}.jpg", photo)])
    report(added, messages, f"to '{target}' from the camera")


def import_zip(key: str) -> None:
    upload = state.get(key)
    state["fewshot_gen"] += 1
    if upload is None:
        return
    try:
        result = fs.import_zip(upload.getvalue())
    except ArchiveError as exc:
        note("error", f"{upload.name}: {exc}")
        return
    added, messages = examples.merge(result.examples)
    for (key_, digest), vector in result.embeddings.items():
        cache.put(key_, digest, vector)
    report(added, result.messages + messages, f"from {upload.name}")
    if result.embeddings:
        note(
            "info",
            f"{upload.name} carried {len(result.embeddings)} precomputed embeddings: "
            "those images are not embedded again.",
        )


def remove_image(class_name: str, uid: int) -> None:
    examples.remove_image(class_name, uid)


def remove_class(class_name: str) -> None:
    examples.remove_class(class_name)


def start_over() -> None:
    examples.clear()
    note("info", "The example set is empty again (computed features stay cached).")


# --- 0 · the frozen feature extractor ---------------------------------------------------------------

st.subheader("The frozen feature extractor")
statuses = fs.backbone_status()
ready = [s for s in statuses if s.available]
labels = {s.name: s.label for s in statuses}
col_backbone, col_layer = st.columns([1, 2])
backbone = col_backbone.selectbox(
    "Backbone (ImageNet-pretrained)", [s.name for s in ready], format_func=labels.get, key="fewshot_backbone"
)
pretrained = not col_backbone.toggle(
    "Random weights instead", key="fewshot_random",
    help="Same architecture, untrained (seeded random init): shows what the pretraining is worth.",
)
missing = [s for s in statuses if not s.available]
if missing:
    with st.expander(f"{len(missing)} more backbones are not on this machine"):
        for s in missing:
            st.markdown(f"**{s.label}** — {s.reason}")

extractor: fs.FeatureExtractor | None = None
if backbone is None:
    st.error("No backbone has its weights on this machine; see the list above for what to install.")
else:
    try:
        head = ui.shared(fs.FeatureExtractor, backbone, None, pretrained, ui.accelerated())
        layer_infos = head.layers()
        short = {i: ("head" if info.index is None else f"stage {info.index + 1}") for i, info in enumerate(layer_infos)}
        choice = col_layer.segmented_control(
            "Features from layer (early = generic, late = specific)",
            options=list(short),
            default=len(layer_infos) - 1,
            format_func=short.get,
            key=f"fewshot_layer_{backbone}",
            help="Earlier stages see edges, colours and textures: generic. The head sees object parts: "
            "specific to what the network was trained on. A stage's feature map is averaged over space.",
        )
        choice = len(layer_infos) - 1 if choice is None else choice
        col_layer.caption(
            f"{layer_infos[choice].label}"
            + ("" if layer_infos[choice].index is None else ", averaged over space")
            + f" → one {layer_infos[choice].channels}-d vector per image."
        )
        layer = layer_infos[choice].index
        extractor = head if layer is None else ui.shared(fs.FeatureExtractor, backbone, layer, pretrained, ui.accelerated())
    except WeightsUnavailable as exc:
        ui.weights_missing(exc)
    except Exception as exc:  # e.g. an image tower whose module changed: say so, keep the page alive
        st.error(f"{labels.get(backbone, backbone)} could not be loaded: {exc}")

# --- 1 · examples ---------------------------------------------------------------------------------------

st.subheader("1 · Examples")
col_new, col_sample, col_zip = st.columns(3)
with col_new, st.form("fewshot_add_class", border=False, clear_on_submit=True):  # Enter or the button submits
    st.text_input("New class name", key="fewshot_new_class", placeholder="e.g. thumbs up")
    st.form_submit_button("Add class", on_click=add_class, icon=":material/add:")
with col_sample:
    has_sample = data_available(fs.SAMPLE_SET)
    st.number_input("Sample images per class", 1, 120, 10, key="fewshot_per_class", disabled=not has_sample)
    st.button(
        "Load ants vs bees (train split)",
        on_click=load_sample,
        disabled=not has_sample,
        icon=":material/download:",
        help=None if has_sample else f"The '{fs.SAMPLE_SET}' data set is not on this machine.",
    )
with col_zip:
    zip_key = f"fewshot_zip_{state['fewshot_gen']}"
    st.file_uploader(
        "Import a zip (class folders, or an exported set)",
        type=["zip"],
        key=zip_key,
        on_change=import_zip,
        args=(zip_key,),
        help="`<class>/<image>` folders inside a zip; an export from this page also restores its features.",
    )

for level, message in state["fewshot_notes"]:
    getattr(st, level)(message)
state["fewshot_notes"] = []

for class_name, items in list(examples.classes.items()):
    with st.container(border=True):
        head_col, remove_col = st.columns([5, 1])
        head_col.markdown(f"**{class_name}** · {len(items)} image{'s' * (len(items) != 1)}")
        remove_col.button(
            "Remove class", key=f"fewshot_rmclass_{class_name}", on_click=remove_class, args=(class_name,),
            type="tertiary", icon=":material/delete:",
        )
        if items:
            per_row = 10
            with st.container(height=250 if len(items) > 2 * per_row else "content"):
                columns = st.columns(per_row)
                for i, example in enumerate(items):
                    with columns[i % per_row]:
                        st.image(example.thumb, width="stretch")
                        st.button(
                            "", key=f"fewshot_rm_{example.uid}", on_click=remove_image, args=(class_name, example.uid),
                            type="tertiary", icon=":material/close:", help=f"Remove {example.name}",
                        )
        else:
            st.caption("No images yet: upload some below or use the camera.")
        upload_key = f"fewshot_up_{class_name}_{state['fewshot_gen']}"
        st.file_uploader(
            f"Add images to '{class_name}'", accept_multiple_files=True, key=upload_key,
            on_change=upload_to, args=(class_name, upload_key),
        )

if examples.classes:
    col_cam, col_export, col_clear = st.columns([2, 1.3, 0.9])
    with col_cam:
        if st.toggle("Add snapshots from the camera", key="fewshot_camera_on"):
            st.selectbox("Snapshots go to class", list(examples.classes), key="fewshot_camera_class")
            camera_key = "fewshot_camera"
            st.camera_input("Take a picture", key=camera_key, on_change=snapshot, args=(camera_key,))
    with col_export:
        st.download_button(
            "Export set + features (.zip)",
            data=lambda: fs.export_zip(examples, cache),
            file_name="fewshot_examples.zip",
            mime="application/zip",
            icon=":material/archive:",
            disabled=not len(examples),
            on_click="ignore",
            help="Images in class folders, manifest.json and embeddings.npz: "
            "prepare a demo at home, import it in class.",
        )
    col_clear.button("Start over", on_click=start_over, icon=":material/restart_alt:")

problems = examples.problems()
for empty in examples.empty_classes():
    if not problems:
        st.warning(f"Class '{empty}' has no images yet, so it is left out until you add some.")
if problems:
    st.info(problems[0], icon=":material/info:")

# --- features (once per image and feature space) ------------------------------------------------------

X: np.ndarray | None = None
items, y = examples.labelled()
if not problems and extractor is not None:
    digests = [e.digest for e in items]
    todo = len(set(digests[i] for i in cache.missing(extractor.key, digests)))
    bar = st.progress(0.0, text=f"Embedding {todo} images with {extractor.key}…") if todo else None

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.progress(done / max(total, 1), text=f"Embedding images with {extractor.key}: {done}/{total}")

    started = time.perf_counter()
    X = cache.embed(extractor, [e.image for e in items], digests, progress=progress)
    if bar is not None:
        bar.empty()
        state["fewshot_embed_speed"] = (1000 * (time.perf_counter() - started) / todo, extractor.runtime_info)
    speed = state.get("fewshot_embed_speed")
    st.caption(
        f"{len(items)} examples → {X.shape[1]}-d vectors from `{extractor.key}` "
        f"(each image embedded once; {cache.computed} images embedded in this session)"
        + (" " + ui.latency_badge(speed[0], speed[1], "last embedding run: ", " per image") if speed else "")
    )
    ui.runtime_note(extractor.runtime_info)


# --- 2 + 3 · classify and evaluate: a fragment, so moving k reruns only this part --------------------


@st.cache_data(max_entries=16, show_spinner="Drawing training sets and scoring them…")
def shots_curve(X: np.ndarray, y: tuple[str, ...], k: int, metric: str, weighting: str) -> Any:
    counts = np.unique(np.asarray(y), return_counts=True)[1]
    shots = [s for s in (1, 2, 3, 5, 10, 20, 50) if s < counts.min()]
    return fs.accuracy_vs_shots(X, list(y), shots, repeats=10, k=k, metric=metric, weighting=weighting)


@st.cache_data(ttl=600, show_spinner=False)
def query_samples() -> dict[str, Any]:
    return fs.query_samples()


@st.cache_data(max_entries=16, show_spinner="Projecting the features to 2-D…")
def feature_map(X: np.ndarray, method: str) -> np.ndarray:
    return fs.project_2d(X, method)


@st.fragment
def classify_and_evaluate(extractor: fs.FeatureExtractor, X: np.ndarray, items: list, y: list[str]) -> None:
    n = len(y)
    st.subheader("2 · Classify a new image")
    col_k, col_metric, col_weight = st.columns(3)
    k = col_k.slider("k: neighbours that vote", 1, max(2, min(25, n)), min(3, n), key="fewshot_k", disabled=n < 2)
    metric = col_metric.radio("Distance", fs.METRICS, horizontal=True, key="fewshot_metric")
    weighting = col_weight.radio(
        "Vote weighting", fs.WEIGHTINGS, horizontal=True, key="fewshot_weighting",
        format_func=lambda w: {"uniform": "one vote each", "distance": "closer counts more (1/d)"}[w],
    )
    knn = fs.KNNClassifier(min(k, n), metric, weighting).fit(X, y)

    queries = ui.image_input("fewshot_query", "Query", samples=query_samples())
    query_vec = None
    if queries:
        name, image = queries[0]
        info = extractor.runtime_info  # in the key: flipping the runtime switch re-embeds and re-times
        query_vec, elapsed_ms = ui.remembered(
            ("fewshot_query", extractor.key, info, fs.image_digest(image)), lambda: extractor.embed([image])
        )
        proba = knn.predict_proba(query_vec)[0]
        dist, idx = knn.kneighbors(query_vec)
        best = int(np.argmax(proba))
        col_query, col_proba = st.columns([1, 2])
        col_query.image(image, caption=name, width="stretch")
        col_query.markdown(ui.latency_badge(elapsed_ms, info, "query embedded in "))
        with col_proba:
            st.markdown(f"#### Prediction: **{knn.classes_[best]}** ({proba[best]:.0%} of the vote)")
            st.plotly_chart(fs.probability_figure(list(knn.classes_), proba), key="fewshot_proba")
        typical = knn.typical_distances()
        if len(typical) and dist[0, 0] > typical.max():
            st.warning(
                f"This image is farther from every example (nearest at d = {dist[0, 0]:.3f}) than any example is "
                f"from its own nearest neighbour (at most {typical.max():.3f}). kNN still has to pick one of your "
                "classes: it cannot say \"none of these\".",
                icon=":material/help:",
            )
        st.markdown(f"**Why:** the {len(idx[0])} nearest examples ({metric} distance, smaller = more similar)")
        columns = st.columns(8)
        for rank, (d, i) in enumerate(zip(dist[0], idx[0])):
            with columns[rank % 8]:
                st.image(items[i].thumb, width="stretch")
                st.caption(f"#{rank + 1} **{y[i]}** · d = {d:.3f}")

    st.subheader("3 · How good is it?")
    tab_loo, tab_shots, tab_map, tab_layers = st.tabs(
        ["Leave-one-out", "Accuracy vs shots", "Feature map", "Early vs late layers"],
        on_change="rerun", key="fewshot_tab",
    )
    if tab_loo.open is not False:
        with tab_loo:
            if n < 3:
                st.info("Leave-one-out needs at least 3 examples.")
            else:
                loo = fs.leave_one_out(X, y, min(k, n - 1), metric, weighting)
                classes = [c for c in examples.classes if c in set(y)]  # the user's order, not alphabetical
                st.metric(
                    "Leave-one-out accuracy", f"{loo.accuracy:.1%}", help="Each example classified by all the others."
                )
                col_cm, col_wrong = st.columns([1, 1])
                matrix = fs.confusion_matrix(y, loo.y_pred, classes)
                col_cm.plotly_chart(fs.confusion_figure(matrix, classes), key="fewshot_cm")
                wrong = np.flatnonzero(loo.y_pred != loo.y_true)
                with col_wrong:
                    st.markdown(f"**Misclassified: {len(wrong)}**")
                    cols = st.columns(4)
                    for j, i in enumerate(wrong[:24]):
                        cols[j % 4].image(items[i].thumb, caption=f"{y[i]} → {loo.y_pred[i]}", width="stretch")
    if tab_shots.open:
        with tab_shots:
            counts = np.unique(np.asarray(y), return_counts=True)[1]
            if counts.min() < 2:
                st.info("The learning curve needs at least 2 images in every class (one to train, one to test).")
            else:
                curve = shots_curve(X, tuple(y), k, metric, weighting)
                st.plotly_chart(fs.shots_figure(curve, chance=1 / len(counts)), key="fewshot_shots")
                st.caption(
                    "For each number of training images per class, 10 random draws; the examples not drawn are "
                    "the test set. kNN vs a linear probe (logistic regression on the same frozen features)."
                )
    if tab_map.open:
        with tab_map:
            col_method, col_pics = st.columns(2)
            method = col_method.radio(
                "Projection", ["pca", "tsne"], horizontal=True, key="fewshot_map_method",
                format_func={"pca": "PCA (linear)", "tsne": "t-SNE (neighbourhoods)"}.get,
            )
            pictures = col_pics.toggle("Show the pictures on the map", value=n <= 60, key="fewshot_map_pics")
            points = X if query_vec is None else np.vstack([X, query_vec])
            if len(points) < (4 if method == "tsne" else 2):
                st.info("The map needs at least 4 images.")
            else:
                xy = feature_map(points, method)
                fig = fs.embedding_figure(
                    xy[:n], y, [e.name for e in items], [e.thumb for e in items] if pictures else None,
                    query_xy=xy[n] if query_vec is not None else None,
                )
                event = st.plotly_chart(
                    fig, key="fewshot_map", on_select="rerun", selection_mode=("points", "box", "lasso")
                )
                selected = event.selection.points if event else []
                chosen = [p["customdata"][0] for p in selected if p.get("customdata")]  # the query star has none
                st.caption(
                    "Hover a point for its file name; select points (click, box or lasso) to see their pictures."
                )
                if chosen:
                    cols = st.columns(8)
                    for j, i in enumerate(chosen[:32]):
                        cols[j % 8].image(items[i].thumb, caption=f"{y[i]}: {items[i].name[:16]}", width="stretch")
    if tab_layers.open:
        with tab_layers:
            layer_infos = extractor.layers()
            if len(layer_infos) < 2:
                st.info("This backbone gives only its final embedding.")
            elif n < 3:
                st.info("Comparing layers needs at least 3 examples.")
            else:
                st.caption(
                    "One forward pass gives every stage's feature map; each is averaged over space and scored "
                    "by leave-one-out kNN with the settings above."
                )
                digests = [e.digest for e in items]
                layers = [info.index for info in layer_infos]
                cached = not any(cache.missing(extractor.key_for(layer), digests) for layer in layers)
                compare_now = cached or st.button(
                    "Compare all layers", key="fewshot_layers_go", icon=":material/stacked_bar_chart:"
                )
                if compare_now:
                    bar = st.progress(0.0, text="Running every stage…") if not cached else None

                    def progress(done: int, total: int) -> None:
                        if bar is not None:
                            bar.progress(done / max(total, 1), text=f"Running every stage: {done}/{total}")

                    images = [e.image for e in items]
                    per_layer = cache.embed_layers(extractor, images, digests, layers, progress=progress)
                    if bar is not None:
                        bar.empty()
                    k_loo = min(k, n - 1)
                    rows = [
                        (
                            info.label.split(":")[0],
                            fs.leave_one_out_accuracy(per_layer[info.index], y, k_loo, metric, weighting),
                        )
                        for info in layer_infos
                    ]
                    st.plotly_chart(fs.layers_figure(rows, chance=1 / len(set(y))), key="fewshot_layers")


if X is not None and extractor is not None:
    classify_and_evaluate(extractor, X, items, y)

ui.share_section("fewshot", height=1000)
