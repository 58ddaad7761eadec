"""Detection: YOLO on your photos, non-maximum suppression step by step, and mAP on a labeled set."""

from __future__ import annotations

from pathlib import PurePosixPath

import pandas as pd
import streamlit as st
from PIL import Image

from cvdemo.errors import CvdemoError
from cvdemo import catalog, datasets, ui, weights
from cvdemo.detection import (
    DETECTION_MODELS,
    FLOAT,
    IMAGE_SIZES,
    INT8,
    Detections,
    Detector,
    EvaluationState,
    draw_iou_pair,
    drop_duplicate_images,
    duplicates_note,
    has_int8_twin,
    page_default,
    pr_figure,
    sample_set,
    yolo_zip_set,
)
from cvdemo.images import fingerprint, is_image_name, jpeg_bytes

ui.page_header(
    "Object detection",
    "A one-stage detector (YOLO) scores thousands of candidate boxes in one pass; a confidence threshold "
    "and non-maximum suppression (NMS) turn them into a few detections, and mAP measures how good they are.",
)


# --- model and settings -------------------------------------------------------------------------


def _model_label(name: str) -> str:
    return name if weights.available(name) else f"{name} (weights missing)"


VARIANT_CHOICES = {FLOAT: "FP32 activations (default)", INT8: "INT8 (compressed twin)"}


def load_detector(name: str, variant: str) -> Detector | None:
    try:
        return ui.shared(Detector, name, accelerated=ui.accelerated(), variant=variant)
    except weights.WeightsUnavailable as exc:
        ui.weights_missing(exc)
    except Exception as exc:  # a damaged or foreign model file must not take the page down
        st.error(f"The model file for {name} could not be loaded: {exc}")
    return None


input_col, settings_col = st.columns([3, 2], gap="large")
with settings_col:
    default_model = page_default()
    model_name = st.selectbox(
        "Model",
        DETECTION_MODELS,
        index=DETECTION_MODELS.index(default_model) if default_model else 0,
        format_func=_model_label,
        key="det_model",
    )
    variant = FLOAT
    if has_int8_twin(model_name):
        variant = st.radio(
            "Precision",
            list(VARIANT_CHOICES),
            format_func=VARIANT_CHOICES.get,
            horizontal=True,
            key="det_variant",
            help="The classroom model file is INT8. By default the float-activation graph derived from it runs: "
            "float math gives the same boxes and scores on every CPU. INT8 runs the file as it is, with integer "
            "kernels that differ by CPU (AVX-512 VNNI vs AVX2), so scores can differ from machine to machine. "
            "The Compression page compares the two.",
        )
    detector = load_detector(model_name, variant)
    conf = st.slider(
        "Confidence threshold",
        0.01,
        0.95,
        catalog.DETECTION_CONF,
        0.01,
        key="det_conf",
        help="Boxes whose best class score is below this are dropped before NMS.",
    )
    iou = st.slider(
        "NMS IoU threshold",
        0.05,
        1.0,
        catalog.DETECTION_IOU,
        0.05,
        key="det_iou",
        help="Two boxes of the same class overlapping more than this: NMS keeps only the higher-scoring one.",
    )
    fixed = detector.fixed_imgsz if detector else None
    imgsz = st.select_slider(
        "Network input size (pixels)",
        sorted(set(IMAGE_SIZES) | ({fixed} if fixed else set())),
        value=fixed or catalog.DETECTION_IMGSZ,
        key="det_imgsz",
        disabled=fixed is not None,
        help=(
            f"This model file ({detector.path.name}) was exported with a fixed {fixed}×{fixed} input."
            if fixed and detector
            else "Larger finds smaller objects, but costs time roughly with the number of pixels."
        ),
    )
    class_names = list(detector.names.values()) if detector else []
    picked = st.multiselect(
        "Only these classes",
        class_names,
        key="det_classes",
        placeholder=f"All {len(class_names)} classes" if class_names else "All classes",
    )
    name_to_id = {n: i for i, n in (detector.names.items() if detector else [])}
    classes = tuple(sorted(name_to_id[n] for n in picked)) or None

with input_col:
    images = ui.image_input(
        "det",
        "Images",
        multiple=True,
        samples=datasets.sample_images(include_sets=catalog.DETECTION_SAMPLE_SETS),
    )
    images, repeats = drop_duplicate_images(images) if len(images) > 1 else (images, [])  # one photo: no hashing
    if repeats:  # one message for all of them, names shown exactly as the files are called
        st.warning(ui.literal(duplicates_note(repeats)), icon=":material/content_copy:")


# --- detections ----------------------------------------------------------------------------------


def show_detections(det: Detections, image: Image.Image, key: str) -> None:
    w, h = det.image_size
    st.markdown(
        f":blue-badge[:material/center_focus_strong: {len(det)} objects] "
        f":green-badge[:material/timer: {det.latency.badge()}"
        + (f" · {det.runtime_info.name}] " if det.runtime_info else "] ")
        + f":gray-badge[input {det.input_shape[1]}×{det.input_shape[0]}]"
    )
    if det.runtime_info:
        st.caption(f"Network run by {det.runtime_info.label}.")
    left, right = st.columns(2)
    left.image(jpeg_bytes(image), caption=f"Original · {w}×{h}", width="stretch")  # encoded once per server
    right.image(jpeg_bytes(det.annotated()), caption=f"{len(det)} detections (confidence ≥ {det.conf:.2f})", width="stretch")
    table_col, count_col = st.columns([3, 1])
    with table_col:
        st.dataframe(
            det.table().drop(columns=["class_id", "width", "height"]),  # all of them are in the CSV
            hide_index=True,
            column_config={
                "score": st.column_config.ProgressColumn("score", min_value=0.0, max_value=1.0, format="%.2f"),
                "area": st.column_config.NumberColumn("area (px²)", format="%d"),
            },
            height=min(38 + 35 * max(len(det), 1), 320),
        )
    with count_col:
        counts = det.counts()
        if counts:
            st.dataframe(
                pd.DataFrame({"class": list(counts), "count": list(counts.values())}),
                hide_index=True,
                height=min(38 + 35 * len(counts), 320),
            )
        else:
            st.caption("Nothing above the confidence threshold.")
    stem = PurePosixPath(det.image_name).stem or "image"
    with st.container(horizontal=True):
        downloads = [
            ("Annotated PNG", det.png, "png", "image/png", ":material/image:"),  # PNG encoded only when clicked
            ("Detections JSON", det.to_json(), "json", "application/json", ":material/data_object:"),
            ("Detections CSV", det.to_csv(), "csv", "text/csv", ":material/table:"),
        ]
        for label, data, ext, mime, icon in downloads:
            st.download_button(
                label,
                data=data,
                file_name=f"{stem}_detections.{ext}",
                mime=mime,
                on_click="ignore",
                icon=icon,
                key=f"{key}_{ext}",
            )


if detector is None:
    st.info("Detection needs a model: see the message above.")
elif not images:
    st.info("Pick a sample, upload photos or take a snapshot to see the detections.")
else:
    results = [detector.detect(img, conf=conf, iou=iou, classes=classes, imgsz=imgsz, name=n) for n, img in images]
    total = sum(len(r) for r in results)
    median = sorted(r.latency.total for r in results)[len(results) // 2]
    st.subheader(f"{total} detections in {len(results)} image{'s' * (len(results) > 1)}")
    st.caption(f"{detector.description} · about {median:.0f} ms per image on this CPU")
    places = st.tabs([n for n, _ in images]) if len(images) > 1 else [st.container()]
    for i, (place, det, (_, img)) in enumerate(zip(places, results, images)):
        with place:
            show_detections(det, img, key=f"det_{i}")


# --- NMS lesson -----------------------------------------------------------------------------------


@st.fragment
def nms_lesson_section(
    detector: Detector,
    images: list[tuple[str, Image.Image]],
    conf: float,
    classes: tuple[int, ...] | None,
    imgsz: int,
    iou: float,
) -> None:
    names = [n for n, _ in images]
    picked = st.selectbox("Image", names, key="nms_image") if len(names) > 1 else names[0]
    image = dict(images)[picked]
    # One forward pass per (image, settings) in the server (cvdemo.results): IoU changes reuse it.
    lesson = detector.nms_lesson(image, conf=conf, classes=classes, imgsz=imgsz)
    nms_iou = st.slider(
        "IoU threshold for this lesson",
        0.05,
        1.0,
        iou,
        0.05,
        key="nms_iou",
        help="Move it and watch boxes come back (higher) or disappear (lower). 1.0 switches NMS off.",
    )
    kept = lesson.survivors(nms_iou)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Boxes the network proposed", f"{lesson.n_proposals:,}", help="One per grid cell at 3 scales.")
    m2.metric(f"Score ≥ {conf:.2f}", len(lesson), help="The candidates NMS receives.")
    m3.metric("Kept by NMS", len(kept))
    m4.metric("Removed by NMS", len(lesson) - len(kept))
    before, after = st.columns(2)
    before.image(lesson.plot(labels=False), caption=f"Before NMS: {len(lesson)} candidates", width="stretch")
    after.image(lesson.plot(kept), caption=f"After NMS at IoU {nms_iou:.2f}: {len(kept)} boxes", width="stretch")
    with st.expander(f"All {len(lesson)} candidates: kept, or removed by which box"):
        st.dataframe(lesson.table(nms_iou), hide_index=True, height=300)

    if len(lesson) < 2:
        st.caption("Lower the confidence threshold to get at least two candidate boxes for the IoU example.")
        return
    st.markdown("##### IoU of two boxes, by the formula")
    default_a, default_b = lesson.default_pair(nms_iou)
    options = list(range(len(lesson)))
    pair_key = f"{fingerprint(image)}_{conf}_{classes}_{imgsz}"  # new lesson: back to the default pair
    pick_a, pick_b, _ = st.columns([1, 1, 1])
    a = pick_a.selectbox("Box A (blue)", options, index=default_a, format_func=lesson.label, key=f"nms_a_{pair_key}")
    b = pick_b.selectbox("Box B (orange)", options, index=default_b, format_func=lesson.label, key=f"nms_b_{pair_key}")
    working = lesson.pair_iou(a, b)
    picture, formula = st.columns([1, 2])
    picture.image(draw_iou_pair(lesson.image, working), caption="Intersection in yellow", width="stretch")
    with formula:
        st.latex(r"\text{IoU}(A,B) = \frac{|A \cap B|}{|A \cup B|} = \frac{|A \cap B|}{|A| + |B| - |A \cap B|}")
        st.latex(r"\begin{aligned}" + r"\\".join(step.replace("=", "&=", 1) for step in working.steps()) + r"\end{aligned}")
        st.info(lesson.explain_pair(a, b, nms_iou), icon=":material/lightbulb:")


st.divider()
st.subheader("Non-maximum suppression, step by step")
st.caption(
    "A detector scores a box at every grid cell, so one object gets many overlapping boxes. NMS sorts them "
    "by score, keeps the best, removes every box of the same class that overlaps it by more than the IoU "
    "threshold, and repeats."
)
if st.toggle("Show the boxes before and after NMS", key="nms_on"):
    if detector is None or not images:
        st.info("The lesson needs a model and an image (above).")
    else:
        try:
            nms_lesson_section(detector, images, conf, classes, imgsz, iou)
        except ValueError as exc:  # e.g. an end-to-end model without NMS
            st.warning(str(exc))


# --- evaluation -----------------------------------------------------------------------------------

ZIP_SOURCE = "Your YOLO-format zip"


def _eval_sources() -> dict[str, str | None]:
    sources: dict[str, str | None] = {}
    for name in catalog.DETECTION_SAMPLE_SETS:
        if datasets.available(name):
            root = datasets.dataset_path(name) / "images"
            count = sum(1 for p in root.rglob("*") if is_image_name(p.name))
            sources[f"{name} ({count} images)"] = name
    sources[ZIP_SOURCE] = None
    return sources


def show_evaluation(stored: EvaluationState) -> None:
    ev = stored.evaluation
    st.markdown(f"**{ev.dataset}** · {ev.model_name} · {ev.seconds:.1f} s")
    cols = st.columns(6)
    cols[0].metric("mAP50", f"{ev.map50:.3f}", help="Average precision at IoU ≥ 0.5, mean over classes.")
    cols[1].metric("mAP50-95", f"{ev.map50_95:.3f}", help="Mean of AP at IoU 0.50, 0.55, …, 0.95 (COCO's metric).")
    cols[2].metric("Precision", f"{ev.precision:.3f}", help="At the confidence that maximizes F1.")
    cols[3].metric("Recall", f"{ev.recall:.3f}", help="At the confidence that maximizes F1.")
    cols[4].metric("Images / boxes", f"{ev.n_images} / {ev.n_instances}")
    cols[5].metric("Inference per image", f"{ev.speed_ms.get('inference', 0):.0f} ms")
    for note in stored.notes:
        st.info(note, icon=":material/info:")
    if stored.problems:
        with st.expander(f"{len(stored.problems)} problem(s) in the zip: what was left out", expanded=True):
            st.markdown("\n".join(f"- {p}" for p in stored.problems[:50]))
            if len(stored.problems) > 50:
                st.caption(f"… and {len(stored.problems) - 50} more.")
    curve, table = st.columns([3, 2])
    curve.plotly_chart(pr_figure(ev), key="det_pr_curve")
    columns = ["Class", "Instances", "mAP50", "mAP50-95", "Box-P", "Box-R", "Images"]
    table.dataframe(
        ev.per_class[[c for c in columns if c in ev.per_class.columns]].rename(
            columns={"Box-P": "precision", "Box-R": "recall", "Instances": "boxes"}
        ),
        hide_index=True,
        height=420,
    )


@st.fragment
def evaluation_section(detector: Detector, imgsz: int) -> None:
    sources = _eval_sources()
    choice = st.radio("Labeled set", list(sources), horizontal=True, key="eval_source")
    upload = None
    if sources[choice] is None:
        upload = st.file_uploader("YOLO-format zip", type=["zip"], key="eval_zip")
        st.caption(
            "Layout: `images/<split>/<name>.jpg` with `labels/<split>/<name>.txt` (or the .txt beside each image); "
            "one line per box: `class x_center y_center width height`, normalized to 0..1. Class names from "
            "`data.yaml` (`names:`) or `classes.txt`; otherwise the model's classes."
        )
    if st.button("Evaluate", type="primary", icon=":material/play_arrow:", disabled=sources[choice] is None and upload is None):
        bar = st.progress(0.0, text="Preparing the data…")
        try:
            labeled = sample_set(sources[choice]) if sources[choice] else yolo_zip_set(upload.getvalue(), detector.names)
        except CvdemoError as exc:
            bar.empty()
            st.error(str(exc), icon=":material/folder_zip:")
            return
        with labeled:
            bar.progress(0.0, text=f"Evaluating {labeled.description}…")
            try:
                evaluation = detector.evaluate(
                    labeled, imgsz=imgsz, progress=lambda done, total: bar.progress(done / total, f"Image {done} of {total}")
                )
            except Exception as exc:  # ultralytics' validator on unusual data: report, don't crash
                bar.empty()
                st.error(f"The evaluation stopped: {exc}")
                return
        bar.empty()
        st.session_state["det_eval"] = EvaluationState(evaluation, labeled.problems, labeled.notes)
    stored: EvaluationState | None = st.session_state.get("det_eval")
    if stored:
        show_evaluation(stored)


st.divider()
st.subheader("Evaluation: mAP on a labeled set")
st.caption(
    "ultralytics' validator runs the model on every image at a very low confidence (0.001), matches boxes to the "
    "ground truth by IoU, and traces the precision–recall curve; its area is the average precision (AP)."
)
if detector is None:
    st.info("The evaluation needs a model: see the message at the top.")
else:
    evaluation_section(detector, imgsz)

st.divider()
ui.share_section("detection")
