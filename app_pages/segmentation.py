"""Segmentation: train a U-Net with transfer learning on the CPU, then paint every pixel of a photo."""

from __future__ import annotations

import weakref
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image, ImageOps

from cvdemo import backbones, datasets, ui, weights
from cvdemo import segmentation as seg
from cvdemo.images import fingerprint, to_png_bytes
from cvdemo.run_store import stored_when
from cvdemo.segmentation.page_state import RunRecord
from cvdemo.segmentation.page_state import record_run as record_run_once

ui.page_header(
    "Semantic segmentation",
    "A classifier says what is in the photo; a segmentation network gives every pixel a class. A U-Net reuses "
    "an ImageNet encoder and learns only how to paint: freeze the encoder first, then fine-tune it gently.",
)

TAB_TRAIN, TAB_PREDICT, TAB_INSTANCE = "Train a U-Net", "Predict", "Instance vs semantic"
SAMPLE_LABEL = f"Sample: {seg.SAMPLE_DATASET} (Oxford pets: background / cat / dog)"
SERVER_MODEL = "Pets U-Net trained on this server"


# --- cached data ----------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Reading image/mask pairs…", max_entries=8)
def _dataset(kind: str, blob: bytes | None = None, name: str = "") -> seg.SegDataset:
    # Read once per server (sample) or per uploaded zip; the object is only read afterwards.
    return seg.load_sample() if kind == "sample" else seg.load_zip(blob, name)


def pick_dataset() -> seg.SegDataset | None:
    choices = [SAMPLE_LABEL, "Your zip of images and masks"]
    source = st.radio("Data", choices, horizontal=True, key="seg_data_source")
    if source == SAMPLE_LABEL:
        try:
            return _dataset("sample")
        except datasets.DataUnavailable as exc:
            st.warning(ui.literal(exc), icon="📂")
            return None
    with st.expander("Zip layout", expanded=False):
        st.markdown(
            "- `images/<name>.jpg` (or .png …) and `masks/<name>.png` with the **same name and size**\n"
            "- a mask holds one **class index per pixel**: 0 = background, 1, 2, … and **255 = ignore** "
            "(mode L or P PNG, like PASCAL VOC)\n"
            "- optional `classes.txt`: one class name per line, line 1 = value 0"
        )
    upload = st.file_uploader("Zip of images/ and masks/", type=["zip"], key="seg_zip")
    if upload is None:
        st.info("Upload a zip to train on your own data, or pick the sample.", icon="🗂️")
        return None
    try:
        return _dataset("zip", upload.getvalue(), upload.name)
    except seg.SegDataError as exc:  # names files of the zip: shown as typed
        st.error(ui.literal(exc), icon="🗂️")
        return None


def show_dataset(data: seg.SegDataset) -> None:
    shares = data.pixel_shares()
    st.markdown(
        f"**{len(data.samples)} image/mask pairs** · classes: "
        + ", ".join(f"`{i}` {ui.literal(n)} ({100 * shares[n]:.0f}% of pixels)" for i, n in enumerate(data.class_names))
    )
    if data.problems:
        with st.expander(f"{len(data.problems)} file(s) skipped — why", expanded=len(data.problems) <= 3):
            for problem in data.problems:
                st.warning(ui.literal(problem), icon="⚠️")
    columns = st.columns(6)
    n = len(data.class_names)
    for column, sample in zip(columns, data.samples[:: max(1, len(data.samples) // 6)][:6]):
        painted = seg.overlay(sample.image, sample.mask, n, 0.55)
        column.image(ImageOps.fit(painted, (240, 180)), caption=ui.literal(sample.name))


# --- training ---------------------------------------------------------------------------------------


def _curves(trainer: seg.Trainer, runs: list[RunRecord]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Training loss (CE + Dice)", "Held-out IoU"))
    for run in runs[-4:]:  # earlier runs, faint, for comparison
        fig.add_trace(
            go.Scatter(x=run.curve_epochs, y=run.curve_foreground_iou, mode="lines",
                       line=dict(color="#bbbbbb", dash="dot"), name=f"run {run.number}: {run.encoder_weights}",
                       legendgroup="old"),
            row=1, col=2,
        )
    epochs = [r.epoch for r in trainer.history]
    fig.add_trace(go.Scatter(x=epochs, y=[r.train_loss for r in trainer.history], mode="lines+markers",
                             name="train loss", line=dict(color="#d62728")), row=1, col=1)
    fig.add_trace(go.Scatter(x=epochs, y=[r.val_foreground_iou for r in trainer.history], mode="lines+markers",
                             name="foreground IoU", line=dict(color="#1f77b4")), row=1, col=2)
    fig.add_trace(go.Scatter(x=epochs, y=[r.val_miou for r in trainer.history], mode="lines+markers",
                             name="mean IoU (all classes)", line=dict(color="#2ca02c")), row=1, col=2)
    boundary = trainer.config.frozen_epochs
    if boundary and trainer.model.config.pretrained_encoder:
        for col in (1, 2):
            fig.add_vline(x=boundary + 0.5, line_dash="dash", line_color="#888", row=1, col=col)
        fig.add_annotation(x=boundary + 0.5, y=0.03, yref="y2 domain", xref="x2", text=" encoder unfrozen →",
                           showarrow=False, xanchor="left", font=dict(size=12, color="#555"))
    fig.update_xaxes(title_text="epoch", range=[0.5, trainer.total_epochs + 0.5], dtick=1)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_layout(height=330, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def start_training(data: seg.SegDataset, n_val: int, model_config: seg.ModelConfig, train_config: seg.TrainConfig):
    old = st.session_state.get("seg_trainer")
    if old is not None and old.running and st.session_state.get("seg_started_here"):
        old.stop()
    try:
        with st.spinner("Building the network and loading the encoder's ImageNet weights…"):
            # The same run already training (another student, the warm start) is watched, not trained twice.
            trainer, started_here = seg.runs.start(data, n_val, model_config, train_config)
    except weights.WeightsUnavailable as exc:
        ui.weights_missing(exc)
        return
    st.session_state.seg_trainer = trainer
    st.session_state.seg_started_here = started_here


def show_stored_run(data: seg.SegDataset, n_val: int, model_config: seg.ModelConfig,
                    train_config: seg.TrainConfig) -> None:
    """With no run of its own for these settings, the session shows the stored one (or the one training now)."""
    trainer = st.session_state.get("seg_trainer")
    if trainer is not None and (trainer.running or trainer.run_key == st.session_state.get("seg_settings_key")):
        return
    found = seg.runs.running(data, n_val, model_config, train_config) or seg.runs.load(data, n_val, model_config,
                                                                                       train_config)
    if found is not None:
        st.session_state.seg_trainer = found
        st.session_state.seg_started_here = False


def record_run(trainer: seg.Trainer) -> None:
    """Remember a finished run once, for the comparison table."""
    record_run_once(st.session_state.setdefault("seg_runs", []), trainer)


def training_panel() -> None:
    trainer: seg.Trainer | None = st.session_state.get("seg_trainer")
    if trainer is None:
        st.info("Pick the settings and press **Train**: the curves appear here, epoch by epoch.", icon="📈")
        return
    runs = [r for r in st.session_state.get("seg_runs", []) if not r.is_of(trainer)]
    done_epochs = len(trainer.history)
    if trainer.status == "running":
        st.progress(trainer.progress, text=f"Training… epoch {min(done_epochs + 1, trainer.total_epochs)} of "
                                           f"{trainer.total_epochs} ({trainer.elapsed:.0f} s so far)")
        if st.session_state.get("seg_started_here"):
            st.button("Stop", key="seg_stop", icon=":material/stop_circle:", on_click=trainer.stop)
        else:
            st.caption("This server is already training exactly these settings (for another student or at its "
                       "start): you are watching that run, which is stored for everyone when it ends.")
    elif trainer.status == "failed":
        st.error(f"Training failed: {ui.literal(trainer.error)}")
    elif trainer.stored_at is not None and trainer.run_key != st.session_state.get("seg_settings_key"):
        st.info(f"This stored run was trained at {_when(trainer)} on this server with other settings than the "
                "ones above: press **Train** to train these.", icon="🗄️")
    elif trainer.stored_at is not None:
        st.info(f"This run was trained at {_when(trainer)} on this server with exactly these settings "
                f"({done_epochs} epochs in {trainer.seconds:.0f} s on {ui.literal(trainer.label)}); "
                "**Train again** to watch it live.", icon="🗄️")
        if st.button("Train again", key="seg_retrain", icon=":material/replay:"):
            st.session_state.seg_train_live = True
            st.rerun()  # the whole page: it starts the run with the current settings
    else:
        word = "Stopped" if trainer.status == "stopped" else "Finished"
        st.success(f"{word} after {done_epochs} of {trainer.total_epochs} epochs in {trainer.seconds:.0f} s "
                   f"on {ui.literal(trainer.label)}.", icon="✅")
    st.plotly_chart(_curves(trainer, runs), key="seg_curves", config={"displayModeBar": False})
    if trainer.running:
        return
    record_run(trainer)
    if trainer.metrics is None:
        st.info("No epoch finished, so there is nothing to evaluate yet.")
        return
    show_results(trainer)


def _when(trainer: seg.Trainer) -> str:
    return stored_when(trainer.stored_at)


def tile(img: Image.Image) -> Image.Image:
    """Same-size tiles for a grid, nothing cropped."""
    return ImageOps.pad(img, (400, 300), color=(255, 255, 255))


def show_results(trainer: seg.Trainer) -> None:
    metrics = trainer.metrics
    model = trainer.model
    n_images = len(trainer.val_samples)
    st.markdown(f"#### Held-out images (n = {n_images}, never trained on)")
    n = len(model.class_names)
    views = trainer.held_out_views  # every held-out image once per run, for the spread and the views
    per_image = [iou for _, _, iou in views]
    a, b, c = st.columns(3)
    a.metric(f"Foreground IoU (n = {n_images})", f"{metrics.foreground_iou:.3f}",
             help="pet vs background, all object classes merged, over every pixel of the held-out images")
    b.metric("Mean IoU", f"{metrics.miou:.3f}", help="average of the per-class IoUs below")
    c.metric("Pixel accuracy", f"{metrics.pixel_accuracy:.3f}", help="easy to inflate: background is most pixels")
    if len(per_image) > 1:
        st.caption(
            f"Per image, the foreground IoU runs from {min(per_image):.2f} to {max(per_image):.2f} over these "
            f"{n_images} images: with so few, one image more or less moves the total, so compare runs by more "
            "than a few hundredths (or hold out more images)."
        )
    st.dataframe(pd.DataFrame(metrics.table()), hide_index=True, width="stretch")
    for sample, pred, iou in views[:3]:
        left, mid, right = st.columns(3)
        left.image(tile(sample.image), caption=ui.literal(sample.name))
        mid.image(tile(seg.overlay(sample.image, sample.mask, n, 0.6)), caption="truth")
        right.image(tile(seg.overlay(sample.image, pred, n, 0.6)), caption=f"prediction · foreground IoU {iou:.2f}")
    runs = st.session_state.get("seg_runs", [])
    if runs:
        st.markdown("#### Your runs")
        st.caption("Train again with **Start from ImageNet weights** off: same network, same data, random encoder.")
        table = pd.DataFrame([r.row() for r in runs])
        st.dataframe(table, hide_index=True, width="stretch")
    st.download_button(
        "Download the trained model (.safetensors)",
        data=model.to_bytes,  # built only when clicked
        file_name=f"{model.config.architecture.lower()}_{model.config.encoder}.safetensors",
        mime="application/octet-stream",
        icon=":material/download:",
        key="seg_save",
    )
    st.download_button(
        "Download its config (.json)",
        data=model.config.to_json(),
        file_name=f"{model.config.architecture.lower()}_{model.config.encoder}.json",
        mime="application/json",
        key="seg_save_json",
    )


def train_tab() -> None:
    st.markdown("##### 1 · Data")
    data = pick_dataset()
    if data is not None:
        show_dataset(data)
    st.markdown("##### 2 · Network and recipe")
    encoders = seg.encoder_choices()
    ready = backbones.available_backbones()
    c1, c2, c3 = st.columns(3)
    architecture = c1.selectbox("Architecture", list(seg.ARCHITECTURES), format_func=seg.ARCHITECTURES.get,
                                key="seg_arch")
    encoder = c2.selectbox("Encoder (timm, via smp's tu- wrapper)", list(encoders), format_func=encoders.get,
                           index=list(encoders).index(ready[0]) if ready else 0, key="seg_encoder")
    with c3:
        st.write("")  # align the toggle with the select boxes
        pretrained = st.toggle("Start from ImageNet weights", value=encoder in ready, key="seg_pretrained",
                               help="Off: the same network with a random encoder, trained the same way "
                               "(nothing to freeze, so every epoch trains all layers).")
    if pretrained and encoder not in ready:
        try:
            weights.resolve(encoder, download=False)
        except weights.WeightsUnavailable as exc:
            ui.weights_missing(exc)
    c1, c2, c3 = st.columns(3)
    default = seg.runs.PAGE_TRAIN  # the run the warm start stores (cvdemo/segmentation/runs.py)
    frozen = c1.slider("Stage 1: epochs with the encoder frozen", 0, 20, default.frozen_epochs, key="seg_frozen")
    finetune = c2.slider("Stage 2: epochs fine-tuning everything", 0, 40, default.finetune_epochs, key="seg_finetune")
    # Default 96 px: the default recipe then costs half of 160 px's (93 s on 2 cores before), for a held-out
    # foreground IoU of 0.78 instead of 0.87 on the sample pets (measured on this machine; see the help).
    img_size = c3.select_slider("Training image size (px)", [96, 128, 160, 192, 224], value=seg.runs.PAGE_IMG_SIZE,
                                key="seg_size",
                                help="Smaller trains faster on a CPU; predictions are upsampled to the photo's size. "
                                "On the sample pets (3 + 5 epochs): 96 px trains in about half the time of 160 px, "
                                "160 px paints sharper masks (held-out foreground IoU about 0.87 vs 0.78).")
    c1, c2, c3 = st.columns(3)
    lr = c1.select_slider("Learning rate (decoder)", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], value=default.lr, key="seg_lr",
                          format_func=lambda v: f"{v:g}")
    factor = c2.select_slider("Stage 2 encoder learning rate (× decoder's)", [0.01, 0.03, 0.1, 0.3, 1.0],
                              value=default.encoder_lr_factor, key="seg_factor", disabled=not pretrained,
                              help="Differential learning rate: pretrained features need only small nudges.")
    n_val = 1
    if data is not None and len(data.samples) == 2:  # a slider needs two values to choose from
        c3.caption("Held-out images: 1 (of 2 pairs: one to learn from, one to check on).")
    elif data is not None and len(data.samples) > 2:
        default_val = seg.SAMPLE_HELD_OUT if len(data.samples) == 26 else max(1, len(data.samples) // 4)
        n_val = c3.slider("Held-out images (never trained on)", 1, max(1, len(data.samples) - 1),
                          min(default_val, len(data.samples) - 1), key="seg_nval")
    augment = st.toggle("Augment: random crop, flip and colour jitter every epoch", value=default.augment,
                        key="seg_augment")
    total = frozen + finetune
    if not pretrained:
        st.caption(f"Random encoder: nothing worth freezing, so all {total} epochs train every layer at the "
                   "decoder's learning rate — the same number of epochs as a transfer-learning run.")
    can_train = data is not None and len(data.samples) >= 2 and total > 0 and (encoder in ready or not pretrained)
    if data is not None and len(data.samples) < 2:
        st.warning("Training needs at least 2 image/mask pairs (one to learn from, one to check on).")
    clicked = st.button("Train", type="primary", icon=":material/model_training:", disabled=not can_train,
                        key="seg_train")
    live = st.session_state.pop("seg_train_live", False)  # "Train again" under a stored run
    st.session_state.seg_settings_key = None
    if can_train:
        model_config = seg.ModelConfig(architecture=architecture, encoder=encoder, class_names=list(data.class_names),
                                       img_size=img_size, pretrained_encoder=pretrained)
        train_config = seg.TrainConfig(frozen_epochs=frozen, finetune_epochs=finetune, lr=lr,
                                       encoder_lr_factor=factor, augment=augment)
        st.session_state.seg_settings_key = seg.runs.run_key(data, n_val, model_config, train_config)
        if clicked or live:
            start_training(data, n_val, model_config, train_config)
        else:
            show_stored_run(data, n_val, model_config, train_config)
    trainer: seg.Trainer | None = st.session_state.get("seg_trainer")
    st.markdown("##### 3 · Training")
    running = trainer is not None and trainer.running
    # While a run is going the panel polls the trainer once a second; only the panel reruns.
    panel = st.fragment(run_every=1.0 if running else None)(_polling_panel)
    panel()
    with st.expander("Load a saved model (.safetensors)"):
        load_model_section()


def _polling_panel() -> None:
    trainer = st.session_state.get("seg_trainer")
    was_running = st.session_state.get("seg_was_running", False)
    training_panel()
    now_running = trainer is not None and trainer.running
    st.session_state.seg_was_running = now_running
    if was_running and not now_running:
        st.rerun()  # the whole page: stop polling, offer the finished model everywhere


def load_model_section() -> None:
    st.caption("Only .safetensors files (tensors, no code) are accepted; the config travels inside the file.")
    files = st.file_uploader("Model file (+ optional .json config)", type=["safetensors", "json"],
                             accept_multiple_files=True, key="seg_load")
    if not files:
        return
    model_files = [f for f in files if f.name.lower().endswith(".safetensors")]
    json_files = [f for f in files if f.name.lower().endswith(".json")]
    if not model_files:
        st.warning("Add the .safetensors file of the model (the .json alone holds no weights).")
        return
    upload = model_files[0]
    # Streamlit gives each upload its own id: no need to hash the whole file on every rerun
    loaded = st.session_state.get("seg_uploaded")
    if loaded is not None and loaded[0] == upload.file_id:
        st.success(f"Loaded {ui.literal(upload.name)}: {ui.literal(loaded[1].title)}, "
                   f"classes {ui.literal(', '.join(loaded[1].class_names))}.")
        return
    try:
        config_json = json_files[0].getvalue().decode("utf-8", errors="replace") if json_files else None
        with st.spinner("Loading…"):
            model = seg.SegModel.from_bytes(upload.getvalue(), config_json, upload.name)
    except seg.ModelFileError as exc:
        st.error(ui.literal(exc), icon="🚫")
        return
    model.title = f"{upload.name} ({model.config.architecture} + {model.config.encoder})"
    st.session_state.seg_uploaded = (upload.file_id, model)
    st.success(f"Loaded {ui.literal(upload.name)}: {ui.literal(model.title)}, "
               f"classes {ui.literal(', '.join(model.class_names))}. Use it in **Predict**.")


# --- predict ----------------------------------------------------------------------------------------


def model_options() -> dict[str, str]:
    """label -> kind. Session models first, then the server's pets U-Net, then published models."""
    options: dict[str, str] = {}
    trainer = st.session_state.get("seg_trainer")
    if trainer is not None and not trainer.running and trainer.history:
        options[f"Your {trainer.model.title} (trained in this session)"] = "trained"
    if st.session_state.get("seg_uploaded") is not None:
        options[f"Uploaded: {st.session_state.seg_uploaded[1].title}"] = "uploaded"
    options[f"{SERVER_MODEL} (once, about a minute)"] = "server"
    for name, title in seg.PRETRAINED.items():
        options[title + ("" if weights.available(name) else " — weights missing")] = name
    return options


def get_segmenter(kind: str) -> seg.Segmenter | None:
    if kind == "trained":
        return st.session_state.seg_trainer.model
    if kind == "uploaded":
        return st.session_state.seg_uploaded[1]
    try:
        if kind == "server":
            return ui.shared(seg.sample_model)
        return ui.shared(seg.PretrainedSegmenter, kind)
    except weights.WeightsUnavailable as exc:
        ui.weights_missing(exc)
    except datasets.DataUnavailable as exc:
        st.warning(f"The server model trains on the sample pets, which are missing here. {ui.literal(exc)}")
    except seg.ModelFileError as exc:
        st.error(ui.literal(exc))
    return None


def predicted_mask(model: seg.Segmenter, name: str, image: Image.Image) -> np.ndarray:
    """Predictions cached per (model, image) in the session: sliders do not recompute them."""
    # A weak reference, not id(model): a model trained later can get a freed one's address. The whole
    # picture's fingerprint: two photos with the same corner differ.
    key = ("seg_prediction", weakref.ref(model), name, fingerprint(image))

    def predict() -> np.ndarray:
        with st.spinner(f"Segmenting with {ui.literal(model.title)}…"):
            return model.predict(image)

    return ui.remembered(key, predict, max_entries=8)[0]  # a session holds a handful of pictures


@st.fragment
def show_prediction(model: seg.Segmenter, name: str, image: Image.Image, mask: np.ndarray, key: str) -> None:
    n = len(model.class_names)
    opacity = st.slider("Mask opacity", 0.0, 1.0, 0.55, 0.05, key=f"{key}_opacity")
    skip = () if model.background is None else (model.background,)
    left, right = st.columns(2)
    left.image(image, caption=ui.literal(name), width="stretch")
    painted = seg.overlay(image, mask, n, opacity, skip=skip)
    right.image(painted, caption=ui.literal(model.title), width="stretch")
    shares = seg.class_shares(mask, model.class_names)
    st.html(seg.legend_html(shares[:12]))
    table = pd.DataFrame(
        [{"class": s.name, "index": s.index, "% of pixels": round(100 * s.fraction, 2), "pixels": s.pixels}
         for s in shares]
    )
    st.dataframe(table, hide_index=True, width="stretch", height=min(38 + 35 * len(table), 300))
    stem = PurePosixPath(name).stem
    d1, d2 = st.columns(2)
    d1.download_button("Mask PNG (pixel value = class index)", seg.mask_png(mask, n), f"{stem}_mask.png",
                       "image/png", icon=":material/download:", key=f"{key}_mask_png")
    d2.download_button("Overlay PNG", to_png_bytes(painted), f"{stem}_overlay.png", "image/png",
                       icon=":material/download:", key=f"{key}_overlay_png")


def predict_tab() -> None:
    options = model_options()
    missing = [n for n in seg.PRETRAINED if not weights.available(n)]
    choice = st.selectbox("Model", list(options), key="seg_predict_model")
    if missing:
        names = ", ".join(f"`{weights.get(n).filename}`" for n in missing)
        st.caption(f"Published models not on this machine (file missing in the weights folder): {names}.")
    model = get_segmenter(options[choice])
    if model is not None and len(model.class_names) <= 12:
        st.caption(f"This model knows only **{ui.literal(', '.join(model.class_names))}**: every pixel of any photo becomes "
                   "one of them — try it on people.")
    # Pets first: the trained U-Net's own world; the packaged street photos show what it has never seen.
    samples = datasets.sample_images()
    samples = dict(sorted(samples.items(), key=lambda kv: not kv[0].startswith(seg.SAMPLE_DATASET)))
    images = ui.image_input("seg_predict", label="Photo", multiple=False, samples=samples)
    if model is None or not images:
        return
    name, image = images[0]
    image = seg.display_copy(image)  # segmented and shown at most 2048 px wide
    if options[choice] == "server" and name.startswith(seg.SAMPLE_DATASET + "/"):
        held_out = seg.sample_held_out(_dataset("sample").samples)
        stem = PurePosixPath(name).stem
        seen = "was **held out** (never trained on)" if stem in {s.name for s in held_out} else \
            "was in its **training set** (pick a held-out one for an honest look)"
        st.caption(f"{ui.literal(stem)} {seen}. Held out: {ui.literal(', '.join(s.name for s in held_out))}.")
    mask = predicted_mask(model, name, image)
    show_prediction(model, name, image, mask, key="seg_pred")


# --- instance vs semantic -----------------------------------------------------------------------------


def instance_tab() -> None:
    st.markdown(
        "**Semantic** segmentation gives each pixel a class: two cats side by side become one blob of the same colour. "
        "**Instance** segmentation (YOLO-seg, Mask R-CNN) finds each object separately, with its own mask, "
        "box and score — and you can always merge instances back into a semantic mask, but not the reverse."
    )
    images = ui.image_input("seg_instance", label="Photo", multiple=False)
    if not images:
        return
    name, image = images[0]
    image = seg.display_copy(image)
    left, right = st.columns(2)
    with left:
        st.markdown("###### Instance: YOLOv8n-seg")
        try:
            yolo = ui.shared(seg.load_instance_model, "yolov8n-seg")
        except weights.WeightsUnavailable as exc:
            ui.weights_missing(exc)
            st.caption("With that file, this column shows every person and the bus as its own mask with a "
                       "score, and the same masks merged per class: a semantic mask made from instances.")
            yolo = None
        except Exception as exc:  # a damaged model file must not take the page down
            st.error(f"The YOLO-seg model could not be loaded: {ui.literal(exc)}")
            yolo = None
        if yolo is not None:
            conf = st.slider("Confidence", 0.05, 0.95, 0.25, 0.05, key="seg_inst_conf")
            result = seg.instances(yolo, image, conf=conf)
            st.image(result.annotated, caption=f"{len(result.instances)} instances", width="stretch")
            if result.instances:
                st.dataframe(pd.DataFrame([{"class": i.class_name, "score": round(i.score, 2), "pixels": i.pixels}
                                           for i in result.instances]), hide_index=True, width="stretch")
            st.image(seg.overlay(image, result.semantic, len(result.class_names), 0.6), width="stretch",
                     caption="the same instances merged per class = a semantic mask")
    with right:
        st.markdown("###### Semantic")
        options = model_options()
        choice = st.selectbox("Semantic model", list(options), key="seg_instance_model")
        model = get_segmenter(options[choice])
        if model is not None:
            mask = predicted_mask(model, name, image)
            skip = () if model.background is None else (model.background,)
            st.image(seg.overlay(image, mask, len(model.class_names), 0.6, skip=skip), width="stretch",
                     caption=ui.literal(model.title))
            st.html(seg.legend_html(seg.class_shares(mask, model.class_names)[:8]))


# A section switcher rather than st.tabs: only the chosen section runs (training, the server model and
# YOLO stay untouched until asked for). Stateful st.tabs(on_change="rerun") would do the same, but in
# Streamlit 1.67 its first rerun drops the st.navigation shell when the page URL is opened directly.
SECTIONS = {TAB_TRAIN: train_tab, TAB_PREDICT: predict_tab, TAB_INSTANCE: instance_tab}
section = st.segmented_control("Section", list(SECTIONS), default=TAB_TRAIN, key="seg_section", required=True,
                               label_visibility="collapsed") or TAB_TRAIN
SECTIONS[section]()

st.divider()
ui.share_section("segmentation", height=900)
