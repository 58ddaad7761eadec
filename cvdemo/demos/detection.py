"""Shareable Gradio demo: YOLO detection on one photo, with confidence and NMS IoU sliders.

Same code as the Streamlit page (:class:`cvdemo.detection.Detector`), same process-wide model.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd
from PIL import Image

from cvdemo import cache, catalog, datasets, weights
from cvdemo.detection import FLOAT, Detector
from cvdemo.images import ImageInputError
from cvdemo.demos import shows_errors

MODEL = "yolov8n"


@shows_errors
def detect_image(image: Image.Image | None, conf: float = catalog.DETECTION_CONF,
                 iou: float = catalog.DETECTION_IOU) -> tuple[Image.Image, pd.DataFrame, str]:
    """Annotated image, detections table and a one-line summary with the latency split."""
    if image is None:
        raise gr.Error("Add an image first (upload, webcam or an example).")
    try:
        # the same arguments as the Detection page's default: one shared model for both
        detector = cache.shared(Detector, MODEL, accelerated=True, variant=FLOAT)
    except weights.WeightsUnavailable as exc:
        raise gr.Error(str(exc)) from None
    try:
        det = detector.detect(image, conf=float(conf), iou=float(iou),
                              imgsz=detector.fixed_imgsz or catalog.DETECTION_IMGSZ, name="image")
    except ImageInputError as exc:
        raise gr.Error(str(exc)) from None
    counts = ", ".join(f"{n} {name}" for name, n in det.counts().items()) or "nothing"
    summary = f"**{len(det)} objects** ({counts}) · {det.latency.badge()} · {detector.description}"
    return det.annotated(), det.table().drop(columns=["class_id"]), summary


def build() -> gr.Blocks:
    examples = [[str(path)] for path in datasets.packaged_images().values()]
    with gr.Blocks(title="cvdemo · Detection") as demo:
        gr.Markdown(
            "## Object detection with YOLO\n"
            "The network scores thousands of boxes; boxes below the **confidence** threshold are dropped and "
            "**non-maximum suppression** removes same-class boxes that overlap a better one by more than the IoU."
        )
        with gr.Row():
            with gr.Column(scale=2):
                image = gr.Image(type="pil", label="Photo", sources=["upload", "webcam", "clipboard"])
                conf = gr.Slider(0.01, 0.95, value=catalog.DETECTION_CONF, step=0.01, label="Confidence threshold")
                iou = gr.Slider(0.05, 1.0, value=catalog.DETECTION_IOU, step=0.05, label="NMS IoU threshold")
                run = gr.Button("Detect", variant="primary")
                if examples:
                    gr.Examples(examples, inputs=[image], label="Examples")
            with gr.Column(scale=3):
                annotated = gr.Image(type="pil", label="Detections", interactive=False)
                summary = gr.Markdown()
        table = gr.Dataframe(label="Detections (pixels of the original image)", interactive=False)
        gr.on(
            [run.click, image.upload, conf.release, iou.release],
            detect_image,
            inputs=[image, conf, iou],
            outputs=[annotated, table, summary],
        )
    return demo
