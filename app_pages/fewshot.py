"""Few-shot learning: kNN on frozen features, then the whole transfer-learning ladder on the same examples."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from cvdemo import cache as shared_objects
from cvdemo import fewshot as fs
from cvdemo import ui
from cvdemo.archives import ArchiveError
from cvdemo.catalog import PAGES
from cvdemo.images import fingerprint
from cvdemo.text import md_literal_light as md
from cvdemo.datasets import DataUnavailable, available as data_available
from cvdemo.weights import WeightsUnavailable

info = next(p for p in PAGES if p.path.endswith("fewshot.py"))
ui.page_header(
    info.title,
    "Keep a pretrained network frozen, use it to turn each image into a vector, and classify a new "
    "image by a vote of its nearest examples. No training loop: adding an example is the training. "
    "Then climb the transfer-learning ladder on the same examples: linear probe, new head, unfreezing.",
)

state: fs.FewshotSession = st.session_state.setdefault("fewshot", fs.FewshotSession())
examples = state.examples
cache = state.cache


def report(added: int, messages: list[str], where: str) -> None:
    if added:
        state.note("success", f"Added {added} image{'s' * (added != 1)} {where}.")
    for message in fs.summarise_notes(messages):
        state.note("warning" if "skipped" in message or "already" in message else "error", message)


def show(level: str, text: str) -> None:
    """A message with the user's text (class and file names) shown literally."""
    getattr(st, level)(md(text))


# --- callbacks: they run before the script, so the page below already shows their result ----------


def load_sample() -> None:
    try:
        added, messages = examples.merge(fs.load_sample_set(int(st.session_state["fewshot_per_class"])))
    except DataUnavailable as exc:
        state.note("error", str(exc))
        return
    report(added, messages, "from the ants/bees sample set")


def add_class() -> None:
    try:
        name = examples.add_class(st.session_state.get("fewshot_new_class", ""))
        state.note("success", f"Class '{name}' created: now add images to it.")
    except fs.ExampleSetError as exc:
        state.note("error", str(exc))


def upload_to(class_name: str, key: str) -> None:
    files = st.session_state.get(key) or []
    added, messages = examples.add_images(class_name, [(f.name, f) for f in files])
    report(added, messages, f"to '{class_name}'")
    state.upload_generation += 1  # empties the uploader: the images now live in the example set


def snapshot(key: str) -> None:
    photo = st.session_state.get(key)
    target = st.session_state.get("fewshot_camera_class")
    if photo is None or target not in examples.classes:
        return
    added, messages = examples.add_images(target, [(f"camera {len(examples.classes[target]) + 1}.jpg", photo)])
    report(added, messages, f"to '{target}' from the camera")


def import_zip(key: str) -> None:
    upload = st.session_state.get(key)
    state.upload_generation += 1
    if upload is None:
        return
    try:
        result = fs.import_zip(upload.getvalue())
    except ArchiveError as exc:
        state.note("error", f"{upload.name}: {exc}")
        return
    added, messages = examples.merge(result.examples)
    for (key_, digest), vector in result.embeddings.items():
        cache.put(key_, digest, vector)
    report(added, result.messages + messages, f"from {upload.name}")
    if result.embeddings:
        state.note(
            "info",
            f"{upload.name} carried {len(result.embeddings)} precomputed embeddings: "
            "those images are not embedded again.",
        )


def remove_image(class_name: str, uid: int) -> None:
    examples.remove_image(class_name, uid)


def remove_class(class_name: str) -> None:
    examples.remove_class(class_name)


def start_over() -> None:
    state.stop_all()
    examples.clear()
    state.note("info", "The example set is empty again (computed features stay cached).")


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
head_extractor: fs.FeatureExtractor | None = None
if backbone is None:
    st.error("No backbone has its weights on this machine; see the list above for what to install.")
else:
    try:
        head_extractor = ui.shared(fs.FeatureExtractor, backbone, None, pretrained, ui.accelerated())
        layer_infos = head_extractor.layers()
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
        extractor = (
            head_extractor
            if layer is None
            else ui.shared(fs.FeatureExtractor, backbone, layer, pretrained, ui.accelerated())
        )
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
    zip_key = f"fewshot_zip_{state.upload_generation}"
    st.file_uploader(
        "Import a zip (class folders, or an exported set)",
        type=["zip"],
        key=zip_key,
        on_change=import_zip,
        args=(zip_key,),
        help="`<class>/<image>` folders inside a zip; an export from this page also restores its features.",
    )

for note in state.take_notes():
    show(note.level, note.text)

for class_name, items in list(examples.classes.items()):
    with st.container(border=True):
        head_col, remove_col = st.columns([5, 1])
        head_col.markdown(f"**{md(class_name)}** · {len(items)} image{'s' * (len(items) != 1)}")
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
                            type="tertiary", icon=":material/close:", help=f"Remove {md(example.name)}",
                        )
        else:
            st.caption("No images yet: upload some below or use the camera.")
        upload_key = f"fewshot_up_{class_name}_{state.upload_generation}"
        st.file_uploader(
            f"Add images to '{md(class_name)}'", accept_multiple_files=True, key=upload_key,
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
        show("warning", f"Class '{empty}' has no images yet, so it is left out until you add some.")
if problems:
    st.info(md(problems[0]), icon=":material/info:")

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
        state.embed_speed = fs.EmbedSpeed(1000 * (time.perf_counter() - started) / todo, extractor.runtime_info)
    speed = state.embed_speed
    st.caption(
        f"{len(items)} examples → {X.shape[1]}-d vectors from `{extractor.key}` "
        f"(each image embedded once; {cache.computed} images embedded in this session)"
        + (" " + ui.latency_badge(speed.ms_per_image, speed.runtime, "last embedding run: ", " per image")
           if speed else "")
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


def reference_bank(extractor: fs.FeatureExtractor) -> np.ndarray | None:
    """The unrelated photos' vectors (once per server and feature space), None when too few are here."""
    with st.spinner("Embedding the unrelated reference photos for the \"unlike every example\" check "
                    "(once per server)…", show_time=True):
        return fs.reference_bank(extractor)


def unlike_every_example(extractor: fs.FeatureExtractor, X: np.ndarray, query_vec: np.ndarray, dist0: float) -> None:
    bank = reference_bank(extractor)
    if bank is None:  # no data sets here: the plain rule, said as such
        limit = fs.nearest_distance_rule(X)
        if dist0 > limit:
            st.warning(
                f"This image is farther from every example (nearest at d = {dist0:.3f}) than any example is from "
                f"its own nearest neighbour (at most {limit:.3f}). kNN still has to pick one of your classes: it "
                "cannot say \"none of these\". (Uncalibrated rule: no unrelated photos on this machine.)",
                icon=":material/help:",
            )
        return
    rule = fs.calibrate_ood(X, bank)
    score = float(rule.score(query_vec)[0])
    flagged = score > rule.threshold
    rank = rule.rank_of(score)
    if flagged:
        st.warning(
            f"This image looks unlike every example: it is closer to an unrelated photo than to any of your "
            f"examples (score {score:+.3f} > threshold {rule.threshold:+.3f}; {rank} of {len(rule.example_scores)} "
            "left-out examples score as high). kNN still has to pick one of your classes: it cannot say "
            "\"none of these\".",
            icon=":material/help:",
        )
    with st.expander("How the \"unlike every example\" check was set" + (" (this query: flagged)" if flagged else
                                                                         " (this query: like the examples)")):
        st.caption(
            "Score = distance to the nearest example − distance to the nearest of "
            f"{len(rule.reference_scores)} unrelated photos on this machine (COCO, CIFAR-10, pets, sample photos). "
            + rule.describe()
        )
        st.plotly_chart(fs.ood_figure(rule, score), key="fewshot_ood", config={"displayModeBar": False})


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
    state.query = queries[0] if queries else None
    query_vec = None
    if queries:
        name, image = queries[0]
        info = extractor.runtime_info  # in the key: flipping the runtime switch re-embeds and re-times
        query_vec, elapsed_ms = ui.remembered(
            ("fewshot_query", extractor.key, info, fingerprint(image)), lambda: extractor.embed([image])
        )
        proba = knn.predict_proba(query_vec)[0]
        dist, idx = knn.kneighbors(query_vec)
        best = int(np.argmax(proba))
        col_query, col_proba = st.columns([1, 2])
        col_query.image(image, caption=md(name), width="stretch")
        col_query.markdown(ui.latency_badge(elapsed_ms, info, "query embedded in "))
        with col_proba:
            st.markdown(f"#### Prediction: **{md(knn.classes_[best])}** ({proba[best]:.0%} of the vote)")
            st.plotly_chart(fs.probability_figure(list(knn.classes_), proba), key="fewshot_proba")
        if n >= 2:
            unlike_every_example(extractor, X, query_vec, float(dist[0, 0]))
        st.markdown(f"**Why:** the {len(idx[0])} nearest examples ({metric} distance, smaller = more similar)")
        columns = st.columns(8)
        for rank, (d, i) in enumerate(zip(dist[0], idx[0])):
            with columns[rank % 8]:
                st.image(items[i].thumb, width="stretch")
                st.caption(f"#{rank + 1} **{md(y[i])}** · d = {d:.3f}")

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
                estimate = fs.estimate_from(loo.y_true, loo.y_pred)
                classes = [c for c in examples.classes if c in set(y)]  # the user's order, not alphabetical
                st.metric(
                    "Leave-one-out accuracy", f"{loo.accuracy:.1%}",
                    delta=f"{estimate.correct}/{estimate.n} · 95% CI {estimate.interval}", delta_color="off", delta_arrow="off",
                    help="Each example classified by all the others. The interval says how much this number could "
                    "move with other images of the same kind: few examples, wide interval.",
                )
                col_cm, col_wrong = st.columns([1, 1])
                matrix = fs.confusion_matrix(y, loo.y_pred, classes)
                col_cm.plotly_chart(fs.confusion_figure(matrix, classes), key="fewshot_cm")
                wrong = np.flatnonzero(loo.y_pred != loo.y_true)
                with col_wrong:
                    st.markdown(f"**Misclassified: {len(wrong)}**")
                    cols = st.columns(4)
                    for j, i in enumerate(wrong[:24]):
                        cols[j % 4].image(items[i].thumb, caption=md(f"{y[i]} → {loo.y_pred[i]}"), width="stretch")
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
                    "the test set. kNN vs a linear probe (logistic regression on the same frozen features). "
                    "Points: mean accuracy; bars: spread (s.d.) over the draws; hover for the test size."
                )
                table = curve.assign(accuracy=curve["accuracy"].map("{:.1%}".format),
                                     std=curve["std"].map("±{:.1%}".format))
                st.dataframe(table.rename(columns={"std": "spread (s.d.)", "runs": "draws", "n_test": "test images"}),
                             hide_index=True, width="stretch")
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
                        cols[j % 8].image(items[i].thumb, caption=md(f"{y[i]}: {items[i].name[:16]}"), width="stretch")
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
                    f"by leave-one-out kNN with the settings above, on all {n} examples (bars: 95% interval)."
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
                    st.plotly_chart(fs.layers_figure(rows, chance=1 / len(set(y)), n=n), key="fewshot_layers")


if X is not None and extractor is not None:
    classify_and_evaluate(extractor, X, items, y)

# --- 4 · beyond kNN: the transfer-learning ladder -------------------------------------------------------


def validation_images() -> list:
    # in cvdemo.cache, not st.cache_resource: the Gradio twin (same process) holds the same 153 decoded images
    with st.spinner("Loading the ants/bees validation images (once per server)…"):
        return shared_objects.shared(fs.validation_images)


def held_out_data(items: list, y: list[str]) -> fs.HeldOutData | None:
    """The training and held-out images the ladder uses, as the user chose; None (after a message) if impossible."""
    classes = list(dict.fromkeys(y))
    sample_ok = fs.is_sample_classes(classes) and data_available(fs.SAMPLE_SET)
    options = (["validation"] if sample_ok else []) + ["split"]
    choice = st.radio(
        "Held-out images (never trained on)", options, horizontal=True, key="fewshot_heldout",
        format_func={"validation": "the ants/bees validation split", "split": "a share of my examples"}.get,
        help="Accuracy on images the model never saw. With few examples, a share is held out once; with "
        "fewer than 5 in a class, every image is held out once by cross-validation.",
    )
    try:
        return fs.held_out_data(
            [e.image for e in items], y, [e.digest for e in items],
            validation=validation_images() if choice == "validation" else None,
            seed=int(st.session_state.get("fewshot_seed", 0)),
        )
    except fs.LadderError as exc:
        st.info(md(str(exc)), icon=":material/info:")
        return None


def augmentation_controls() -> fs.AugmentConfig:
    d = fs.DEFAULT_AUGMENTATION
    st.caption("Each epoch, every example is seen as a new random view: the same object, a different photo. "
               "Slide to 0 to switch one off.")
    c1, c2, c3, c4 = st.columns(4)
    values = dict(
        flip=c1.slider("Horizontal flip (probability)", 0.0, 1.0, d.flip, 0.1, key="fewshot_aug_flip"),
        crop_scale=c1.slider("Random crop: smallest area kept", 0.2, 1.0, d.crop_scale, 0.05, key="fewshot_aug_crop",
                             help="Each view keeps between this share of the photo's area and all of it. "
                             "1.0 = no crop (the whole photo, centre square)."),
        rotation=c1.slider("Rotation (± degrees)", 0, 45, int(d.rotation), key="fewshot_aug_rotation"),
        brightness=c2.slider("Brightness jitter", 0.0, 0.8, d.brightness, 0.05, key="fewshot_aug_brightness"),
        contrast=c2.slider("Contrast jitter", 0.0, 0.8, d.contrast, 0.05, key="fewshot_aug_contrast"),
        saturation=c2.slider("Saturation jitter", 0.0, 0.8, d.saturation, 0.05, key="fewshot_aug_saturation"),
        hue=c3.slider("Hue shift", 0.0, 0.5, d.hue, 0.01, key="fewshot_aug_hue", help="Slow on a CPU; try the cast."),
        colour_cast=c3.slider("Colour cast (± gain per channel)", 0.0, 0.5, d.colour_cast, 0.05, key="fewshot_aug_cast"),
        perspective=c3.slider("Perspective distortion", 0.0, 0.8, d.perspective, 0.05, key="fewshot_aug_persp"),
        elastic=c4.slider("Elastic distortion (px)", 0.0, 200.0, d.elastic, 10.0, key="fewshot_aug_elastic",
                          help="torchvision's ElasticTransform: about half a second per view on a CPU."),
        erasing=c4.slider("Cut-out (probability)", 0.0, 1.0, d.erasing, 0.1, key="fewshot_aug_erasing"),
    )
    return fs.AugmentConfig(**values)


def augmentation_viewer(config: fs.AugmentConfig, items: list, y: list[str]) -> None:
    names = {f"{label}: {e.name}": e for e, label in zip(items, y)}
    col_pick, col_seed = st.columns([3, 1])
    picked = col_pick.selectbox("One of your examples", list(names), key="fewshot_aug_image")
    seed = col_seed.number_input("View seed", 0, 10_000, 0, key="fewshot_aug_seed")
    if picked is None:
        return
    image = names[picked].image
    # once per photo, settings and seed: every rerun of the page draws this tab (elastic: ~1.5 s for 8 views)
    views, elapsed = ui.remembered(("fewshot_aug_views", fingerprint(image), config, int(seed)),
                                   lambda: fs.view_grid(image, config, count=8, seed=int(seed)))
    elapsed /= 8
    for column, (i, view) in zip(st.columns(len(views)), enumerate(views)):
        column.image(view, caption=f"view {i + 1}", width="stretch")
    st.caption(f"What the network sees (the 224 px centre of each view): {config.describe()}. "
               f"{elapsed:.0f} ms per view on this CPU.")


def ladder_controls(config_aug: fs.AugmentConfig, stages: list[str]) -> fs.LadderConfig | None:
    methods = st.pills("Rungs", list(fs.METHODS), selection_mode="multi", default=list(fs.METHODS),
                       format_func=fs.METHOD_LABELS.get, key="fewshot_methods")
    c1, c2, c3, c4 = st.columns(4)
    head_epochs = c1.slider("New head: epochs", 0, 40, 15, key="fewshot_head_epochs")
    lr = c1.select_slider("New head: learning rate", [1e-3, 3e-3, 1e-2, 3e-2], 3e-3, key="fewshot_lr",
                          format_func=lambda v: f"{v:g}")
    unfreeze_epochs = c2.slider("Unfreeze: epochs", 0, 20, 6, key="fewshot_unfreeze_epochs")
    unfreeze_stages = c2.slider(f"Unfreeze: last stages (of {len(stages)})", 1, len(stages), min(2, len(stages)),
                                key="fewshot_unfreeze_stages", help="From the end: " + ", ".join(reversed(stages)))
    finetune_lr = c3.select_slider("Unfreeze: head learning rate", [1e-4, 3e-4, 1e-3, 3e-3], 3e-4,
                                   key="fewshot_finetune_lr", format_func=lambda v: f"{v:g}")
    factor = c3.select_slider("Learning-rate factor (head ÷ base)", [0.5, 1, 2, 3, 5, 10, 20, 30], 10,
                              key="fewshot_lr_factor",
                              help="Differential learning rates: the unfrozen pretrained stages learn this many times "
                              "slower than the head (the lecture's 3-10x). Base LR = head LR / factor.")
    start = c4.radio("Unfreeze starts from", list(fs.STARTS), format_func=fs.STARTS.get, key="fewshot_start",
                     help="LP-FT (Kumar et al., 2022): start from the linear probe's weights so the first "
                     "updates do not distort good features with a random head's large gradients.")
    seed = c4.number_input("Seed", 0, 10_000, 0, key="fewshot_seed")
    st.caption(f"Unfrozen: {', '.join(stages[len(stages) - unfreeze_stages:])} at {finetune_lr:g} / {factor:g} = "
               f"{finetune_lr / factor:.2g}; new head at {finetune_lr:g}. BatchNorm keeps ImageNet's statistics.")
    try:
        config = fs.LadderConfig(
            methods=tuple(m for m in fs.METHODS if m in (methods or [])), seed=int(seed), lr=lr,
            finetune_lr=finetune_lr, lr_factor=float(factor), head_epochs=head_epochs,
            unfreeze_epochs=unfreeze_epochs, unfreeze_stages=unfreeze_stages, start=start, augmentation=config_aug,
        )
        config.check()
    except fs.LadderError as exc:
        st.warning(md(str(exc)), icon=":material/block:")
        return None
    return config


def start_ladder(extractor: fs.FeatureExtractor, data: fs.HeldOutData, config: fs.LadderConfig) -> None:
    state.stop_all()
    bank = state.bank_for(extractor)
    shared = not data.cross_validated
    try:
        if not shared:
            job = fs.CrossValidatedLadder(data.images, data.labels, data.digests, data.plan, config,
                                          extractor=extractor, bank=bank)
            parity = data.images[:8]
        else:
            # the same images and settings in another session: watch that run instead of starting one more
            job = fs.shared_ladder(data.train, data.test, config, extractor,
                                   (data.train_digests, data.test_digests), bank)
            parity = [img for img, _ in data.test[:8]]
    except fs.LadderError as exc:
        state.note("error", str(exc))
        return
    state.ladder = fs.LadderSession(job, data.description, extractor.key, parity, shared=shared)
    job.start()  # no-op for a shared run that is already going


def _ladder_panel() -> None:
    session = state.ladder
    was_running = st.session_state.get("fewshot_ladder_was_running", False)
    running = session is not None and session.job.running
    st.session_state["fewshot_ladder_was_running"] = running
    if was_running and not running:
        st.rerun()  # the whole page: stop polling, offer the trained model for export
    if session is None:
        st.info("Press **Run the ladder**: the table and the curves fill in rung by rung.", icon=":material/stairs:")
        return
    job = session.job
    if job.status == "running":
        st.progress(job.progress, text=f"{job.phase} · {job.elapsed:.0f} s")
        st.button("Stop", key="fewshot_ladder_stop", icon=":material/stop_circle:", on_click=job.stop,
                  help="Stops after the current batch; what was done is kept.")
    elif job.status == "failed":
        st.error(md(f"The ladder stopped with an error: {job.error}"))
    else:
        word = "Stopped" if job.status == "stopped" else "Finished"
        st.success(md(f"{word} in {job.seconds:.0f} s on this CPU. {session.held_out}."), icon=":material/check:")
    if job.results:
        st.dataframe(fs.display_table(job.results), hide_index=True, width="stretch")
        st.caption(f"Frozen features of every image: {job.feature_seconds:.1f} s, shared by all rungs "
                   "(accelerated runtime, cached). Train time is each rung's own work.")
    if job.history:
        baselines = {r.method: r.accuracy.value for r in job.results if r.method in ("knn", "linear_probe")}
        epochs = {"head": job.config.head_epochs, "unfreeze": job.config.unfreeze_epochs}
        st.plotly_chart(fs.curves_figure(job.history, baselines, epochs), key="fewshot_ladder_curves",
                        config={"displayModeBar": False})
    if running or not job.results:
        return
    for line in fs.describe_results(job.results):
        st.markdown(f"- {md(line)}")
    col_bars, col_cm = st.columns([3, 2])
    col_bars.plotly_chart(fs.ladder_figure(job.results), key="fewshot_ladder_bars", config={"displayModeBar": False})
    with col_cm:
        method = st.selectbox("Confusion matrix of", [r.method for r in job.results], key="fewshot_ladder_cm_method",
                              format_func=fs.METHOD_LABELS.get)
        result = next(r for r in job.results if r.method == method)
        st.plotly_chart(fs.confusion_figure(result.confusion, result.classes), key="fewshot_ladder_cm")
    unfrozen = next((r for r in job.results if r.method == "unfreeze"), None)
    if unfrozen is not None:
        st.markdown("**Optimizer parameter groups of the unfreeze rung**")
        st.dataframe(pd.DataFrame(unfrozen.groups, columns=["group", "learning rate", "parameters"]),
                     hide_index=True)


def shots_controls_and_panel(extractor: fs.FeatureExtractor, data: fs.HeldOutData,
                             config: fs.LadderConfig | None) -> None:
    st.caption("Draw 1, 2, 5, 10, 20 training images per class (where your examples allow) several times and "
               "run every rung on each draw. Where the curves cross is the lesson: measured here, not assumed.")
    external = data.test if data.plan is None else None
    c1, c2 = st.columns([3, 1])
    shots = c1.pills("Images per class", list(fs.SHOTS), selection_mode="multi", default=list(fs.SHOTS),
                     key="fewshot_ladder_shots")
    repeats = c2.slider("Draws per point", 1, 5, 3, key="fewshot_ladder_repeats")
    if st.button("Run accuracy vs shots", icon=":material/show_chart:", disabled=config is None,
                 key="fewshot_ladder_shots_go"):
        state.stop_all()
        try:
            run = fs.ShotsRun(
                list(zip(data.images, data.labels)), data.digests,
                external, data.test_digests if external is not None else None,
                shots=shots or fs.SHOTS, repeats=repeats, config=config, extractor=extractor,
                bank=state.bank_for(extractor),
            )
        except fs.LadderError as exc:
            show("error", str(exc))
        else:
            state.shots = run
            state.shots_held_out = (f"{len(external)} held-out images" if external is not None
                                    else "the examples not drawn (each draw)")
            run.start()
    running = state.shots is not None and state.shots.running
    st.fragment(run_every=1.0 if running else None)(_shots_panel)()


def _shots_panel() -> None:
    run = state.shots
    if run is None:
        return
    if run.status == "running":
        st.progress(run.progress, text=f"{run.phase} · {run.elapsed:.0f} s")
        st.button("Stop", key="fewshot_shots_stop", icon=":material/stop_circle:", on_click=run.stop)
    elif run.status == "failed":
        st.error(md(f"Accuracy vs shots stopped with an error: {run.error}"))
    curve = run.curve()
    if curve.empty:
        return
    st.plotly_chart(fs.ladder_shots_figure(curve, chance=1 / len(run.classes)), key="fewshot_ladder_shots_fig")
    st.caption(f"Mean held-out accuracy over the draws; bars: spread (s.d.); tested on {md(state.shots_held_out)}.")
    if run.status != "running":  # what the curves show, once they are complete
        for line in fs.describe_curve(curve):
            st.markdown(f"- {md(line)}")
    table = curve.assign(rung=curve["method"].map(fs.METHOD_LABELS), accuracy=curve["accuracy"].map("{:.1%}".format),
                         std=curve["std"].map("±{:.1%}".format))
    st.dataframe(table[["shots", "rung", "accuracy", "std", "runs", "n_test"]].rename(
        columns={"std": "spread (s.d.)", "runs": "draws", "n_test": "test images"}), hide_index=True, width="stretch")


def effect_section(extractor: fs.FeatureExtractor, data: fs.HeldOutData, config: fs.LadderConfig | None) -> None:
    st.markdown("**The measured effect on held-out accuracy**")
    if data.cross_validated:
        st.info("Measuring the effect needs a held-out split: add at least 5 images to every class "
                "(or use the ants/bees validation split).")
        return
    if st.button("Measure: with vs without augmentation", icon=":material/compare:", key="fewshot_effect_go",
                 disabled=config is None):
        try:
            with st.spinner("Training kNN with augmented copies and the new head, with and without augmentation…",
                            show_time=True):
                table = fs.augmentation_effect(data.train, data.test, config, copies=4, extractor=extractor,
                                               bank=state.bank_for(extractor),
                                               digests=(data.train_digests, data.test_digests))
            state.effect = fs.EffectResult(table, data.description, config.augmentation.describe())
        except fs.LadderError as exc:
            show("error", str(exc))
    if state.effect is not None:
        effect = state.effect
        st.plotly_chart(fs.effect_figure(effect.table), key="fewshot_effect_fig", config={"displayModeBar": False})
        shown = effect.table.assign(
            rung=effect.table["method"].map(fs.METHOD_LABELS),
            accuracy=[f"{a:.1%} ({round(a * n)}/{n})" for a, n in zip(effect.table["accuracy"], effect.table["n"])],
            interval=[f"{lo:.0%}–{hi:.0%}" for lo, hi in zip(effect.table["ci_low"], effect.table["ci_high"])],
        )
        st.dataframe(shown[["rung", "augmentation", "accuracy", "interval"]].rename(columns={"interval": "95% CI"}),
                     hide_index=True, width="stretch")
        st.caption(md(f"Held out: {effect.held_out}. Augmentation measured: {effect.settings}."))


def load_model(key: str) -> None:
    upload = st.session_state.get(key)
    if upload is None:
        return
    state.upload_generation += 1  # a fresh, empty uploader: the model now lives in the session
    try:
        model = fs.load_classifier(upload.getvalue(), upload.name)
    except fs.ModelFileError as exc:
        state.model_note = fs.Note("error", str(exc))
        return
    state.loaded = fs.LoadedModel(upload.name, model)
    state.model_note = fs.Note(
        "success", f"Loaded {upload.name}: classes {', '.join(model.classes)}; it reproduces the probabilities "
        f"recorded at export (max difference {model.check_difference:.1e}).")


def export_section() -> None:
    session = state.ladder
    job = session.job if session is not None else None
    if job is None or job.running or not job.results:
        st.info("Run the ladder first: the most fine-tuned model of the run can then be downloaded here.")
    else:
        if session.classifier is None:
            session.classifier = job.classifier()
        classifier = session.classifier
        if classifier is None:
            st.info("This run trained no network (kNN and the linear probe only): nothing to export.")
        else:
            st.caption(md(f"The fine-tuned model of this run ({fs.METHOD_LABELS[classifier.spec.method]}: "
                          f"{classifier.spec.description}) for the classes {', '.join(classifier.classes)}."))
            c1, c2 = st.columns(2)
            c1.download_button(
                "Download (.safetensors)", data=classifier.to_safetensors, on_click="ignore",
                file_name=f"fewshot_{classifier.spec.backbone}_{classifier.spec.method}.safetensors",
                mime="application/octet-stream", icon=":material/download:", key="fewshot_dl_safetensors",
                help="The weights and, as metadata, the classes and preprocessing: no code, never a pickle.",
            )
            with c2:
                if session.onnx is None:
                    if st.button("Export to ONNX (accelerated runtime + parity check)", key="fewshot_onnx_go",
                                 icon=":material/bolt:"):
                        try:
                            with st.spinner("Exporting to ONNX and checking it against PyTorch on held-out "
                                            "photos…", show_time=True):
                                session.onnx = classifier.to_onnx(session.parity_images)
                            accelerated = classifier.accelerate()
                            session.onnx_note = (f"Runs in {accelerated.runtime_info.label}; parity with PyTorch: "
                                                 f"{accelerated.parity.describe()}." if accelerated.parity else "")
                        except fs.ModelFileError as exc:
                            show("error", str(exc))
                if session.onnx is not None:
                    st.download_button(
                        "Download (.onnx)", data=session.onnx, on_click="ignore",
                        file_name=f"fewshot_{classifier.spec.backbone}_{classifier.spec.method}.onnx",
                        mime="application/octet-stream", icon=":material/download:", key="fewshot_dl_onnx",
                    )
                    st.caption(session.onnx_note)
    st.markdown("**Load a model exported here**")
    key = f"fewshot_model_{state.upload_generation}"
    st.file_uploader("A .safetensors or .onnx file from this page", type=None, key=key, on_change=load_model,
                     args=(key,), help="Pickled files (.pt, .pth, .pkl) are refused unread: they can run code.")
    if state.model_note is not None:
        show(state.model_note.level, state.model_note.text)
    if state.loaded is not None:
        loaded = state.loaded
        st.caption(md(f"{loaded.name}: {', '.join(loaded.model.classes)} · runs in {loaded.model.runtime_info.label}"))
        if state.query is not None:
            name, image = state.query
            proba = loaded.model.predict_proba([image])[0]
            best = int(np.argmax(proba))
            st.markdown(f"The query **{md(name)}** → **{md(loaded.model.classes[best])}** ({proba[best]:.0%})")
            st.plotly_chart(fs.probability_figure(loaded.model.classes, proba), key="fewshot_loaded_proba",
                            config={"displayModeBar": False})


def ladder_section(extractor: fs.FeatureExtractor, items: list, y: list[str]) -> None:
    st.subheader("4 · Beyond kNN: the transfer-learning ladder")
    st.caption(
        "The same examples, four ways to use the pretrained network: kNN and a linear probe keep it frozen; a "
        "new head is trained on the frozen base with augmentation; then the last stages are unfrozen with a "
        "learning rate 3-10x lower than the head's. Every accuracy comes with its n and a 95% interval."
    )
    data = held_out_data(items, y)
    if data is None:
        return
    st.caption(md(data.description))
    tab_ladder, tab_shots, tab_aug, tab_export = st.tabs(
        ["The ladder", "Accuracy vs shots", "Augmentation", "Export & import"]
    )
    with tab_aug:
        augmentation = augmentation_controls()
        augmentation_viewer(augmentation, items, y)
    stages = fs.backbone_stages(extractor.timm_model)[0] if extractor.timm_model is not None else []
    with tab_ladder:
        config = ladder_controls(augmentation, [s.name for s in stages]) if stages else None
        if not stages:
            st.info("This backbone is a fixed image encoder: the ladder needs a timm backbone.")
        if st.button("Run the ladder", type="primary", icon=":material/play_arrow:", disabled=config is None,
                     key="fewshot_ladder_go"):
            start_ladder(extractor, data, config)
            for note in state.take_notes():
                show(note.level, note.text)
        running = state.ladder is not None and state.ladder.job.running
        st.fragment(run_every=1.0 if running else None)(_ladder_panel)()
    with tab_shots:
        shots_controls_and_panel(extractor, data, config)
    with tab_aug:
        effect_section(extractor, data, config)
    with tab_export:
        export_section()


if not problems and head_extractor is not None and len(items) >= 2:
    ladder_section(head_extractor, items, y)

ui.share_section("fewshot", height=1000)
