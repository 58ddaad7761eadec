"""Compression: one pretrained model before and after quantization, pruning, low-rank and distillation,
measured on this machine."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import plotly.express as px
import streamlit as st
from streamlit.errors import StreamlitAPIException

from cvdemo.errors import CvdemoError
from cvdemo import ui, weights
from cvdemo.stats import format_interval
from cvdemo.text import plot_literal
from cvdemo.catalog import PAGES
from cvdemo.weights import WeightsUnavailable

info = next(p for p in PAGES if p.path.endswith("compression.py"))
ui.page_header(
    info.title,
    "Shrink one pretrained network four ways and measure what really got smaller and faster on this CPU: "
    "file size, parameters, MACs, latency, accuracy and agreement with the original, side by side.",
)

from cvdemo import compression as cx  # noqa: E402  (after the header: the page shows while torch loads)
from cvdemo.compression import runs as cx_runs  # noqa: E402


@dataclass
class Measured:
    """What this session measured on the page, kept in session state across reruns."""

    run: cx.Run | None = None  # tab 1: the last "Compress and measure" (measured live, or watched)
    distillation: cx.DistillationOutcome | None = None  # tab 2: both students ...
    distillation_table: pd.DataFrame | None = None  # ... and their comparison with the teacher
    uploaded: pd.DataFrame | None = None  # tab 3: the uploaded model against its original


measured: Measured = st.session_state.setdefault("cx_measured", Measured())
cpu = cx.cpu_features()

with st.sidebar.expander("This CPU", icon=":material/memory:"):
    st.markdown(cpu.summary())
    st.caption("Instruction sets that matter here: " + (", ".join(cpu.relevant_flags) or f"none found in {cpu.source}"))
    st.caption(f"Every latency on this page uses {cx.thread_count()} thread(s), PyTorch and ONNX Runtime alike.")
    st.caption(
        f"OpenMP wait policy for PyTorch: {cx.openmp_wait_policy()}. Passive threads sleep between layers, which "
        "spares other sessions' cores but adds wake-up time to every small layer of PyTorch eager at batch 1; "
        "ONNX Runtime's threads do not spin either."
    )

tab_compress, tab_distill, tab_upload = st.tabs(
    ["Compress a pretrained model", "Distillation: teacher and student", "Measure your own compressed model"]
)

TABLE_CONFIG = {
    "model": st.column_config.TextColumn(width="medium"),
    "precision": st.column_config.TextColumn(width="small"),
    "file MB": st.column_config.NumberColumn(format="%.2f", width="small",
                                             help="Serialized size: safetensors, ONNX or torch.save"),
    "zipped MB": st.column_config.NumberColumn(format="%.2f", width="small",
                                               help="The file compressed with zlib: zeros compress"),
    "params": st.column_config.NumberColumn(format="localized", width="small"),
    "non-zeros": st.column_config.NumberColumn(format="localized", width="small"),
    "MMACs": st.column_config.NumberColumn(format="%.0f", width="small", help="Million multiply-accumulates per image"),
    "latency b1 ms": st.column_config.NumberColumn("b1 ms", format="%.1f", width="small",
                                                   help="Latency at batch 1: median of the timed runs"),
    "latency b8 ms": st.column_config.NumberColumn("b8 ms", format="%.1f", width="small",
                                                   help="Latency at batch 8: median of the timed runs"),
    "runs b1": st.column_config.NumberColumn(width="small", help="Timed runs behind the batch-1 median: fewer "
                                             "only for a model so slow that all of them would take over 2 s"),
    "runs b8": st.column_config.NumberColumn(width="small", help="Timed runs behind the batch-8 median (at least 5)"),
    "speed-up b1": st.column_config.NumberColumn("speed-up", format="%.2fx", width="small",
                                                 help="Original latency / this latency, batch 1"),
    "top-1": st.column_config.NumberColumn(format="percent", width="small"),
    "agreement": st.column_config.NumberColumn(format="percent", width="small",
                                               help="Share of images where it predicts the same class as the original"),
}


DISPLAY_ORDER = ["model", "latency b1 ms", "speed-up b1", "top-1", "top-1 CI", "agreement", "agreement CI", "file MB",
                 "MMACs", "non-zeros", "params", "latency b8 ms", "zipped MB", "precision", "runs b1", "runs b8"]


def sample_size(table: pd.DataFrame, column: str) -> int | None:
    """The n behind ``column`` (the same for every row of a run), or None for a table without it."""
    counts = table.get(f"{column} n")
    return None if counts is None or counts.empty else int(counts.max())


def show_table(table: pd.DataFrame) -> None:
    # What a lecturer points at first (latency, accuracy, size) comes first; the runtime is part of every
    # model name, and the CSV download keeps every column (the intervals' bounds too).
    shown = table.copy()
    config = dict(TABLE_CONFIG)
    for column in ("top-1", "agreement"):
        n = sample_size(table, column)
        if n is None:
            continue
        shown[f"{column} CI"] = [format_interval(lo, hi) for lo, hi in zip(table[f"{column} low"], table[f"{column} high"])]
        config[f"{column} CI"] = st.column_config.TextColumn(
            f"95 % CI (n={n})", width="small",
            help=f"Wilson 95 % interval of the {column} share on these {n} images: "
            "differences inside overlapping intervals may be chance")
    st.dataframe(shown, hide_index=True, column_config=config,
                 column_order=[c for c in DISPLAY_ORDER if c in shown.columns])
    n_top1, n_agree = sample_size(table, "top-1"), sample_size(table, "agreement")
    if n_agree:
        st.caption(
            (f"top-1 on {n_top1} labeled image(s), " if n_top1 else "no labeled images (no top-1), ")
            + f"agreement on {n_agree} image(s). On a few dozen images a single image moves an accuracy by "
            f"{100 / max(n_top1 or n_agree, 1):.1f} points: read the 95 % intervals before calling a winner."
        )


def trade_off_chart(table: pd.DataFrame) -> None:
    accuracy = "top-1" if table["top-1"].notna().any() else "agreement"
    points = table.assign(model=table["model"].map(plot_literal))  # names may hold user text (file names)
    n = sample_size(table, accuracy)
    error = {}
    if n:  # 95 % Wilson intervals as asymmetric error bars
        points["above"] = table[f"{accuracy} high"] - table[accuracy]
        points["below"] = table[accuracy] - table[f"{accuracy} low"]
        error = {"error_y": "above", "error_y_minus": "below"}
    fig = px.scatter(
        points,
        x="latency b1 ms",
        y=accuracy,
        color="model",
        size="file MB",
        size_max=26,
        log_x=True,
        hover_name="model",
        hover_data={"model": False, "file MB": ":.2f", "MMACs": ":.0f", "agreement": ":.0%",
                    **({"above": False, "below": False} if error else {})},
        **error,
    )
    fig.update_layout(yaxis_tickformat=".1%", height=480, legend_orientation="h", legend_y=-0.25, margin_t=30,
                      legend_title_text="", xaxis_title="latency at batch 1, ms (log scale)")
    st.markdown(f"**Latency vs {accuracy}**: up and to the left is better; marker size = file size"
                + (f"; bars = 95 % interval on n = {n} images" if n else ""))
    st.plotly_chart(fig)


def size_chart(table: pd.DataFrame) -> None:
    sizes = table.assign(model=table["model"].map(plot_literal)).melt(
        id_vars="model", value_vars=["file MB", "zipped MB"], var_name="stored as", value_name="MB")
    fig = px.bar(sizes, x="MB", y="model", color="stored as", barmode="group", orientation="h")
    fig.update_layout(height=max(440, 140 + 50 * len(table)), yaxis_title=None, legend_orientation="h",
                      legend_y=-0.15, margin_t=30)
    st.markdown("**Size on disk**: as saved, and zipped (zeros compress, so only sparsity shows there)")
    st.plotly_chart(fig)


def layer_chart(variant: cx.Variant) -> None:
    layers = pd.DataFrame(variant.layers)
    if layers.empty:
        st.caption("This technique changes no individual layer.")
        return
    if "sparsity" in layers:
        fig = px.bar(layers, x="layer", y="sparsity", color="kind", title="Share of zero weights per layer")
        fig.update_layout(yaxis_tickformat=".0%")
    elif "kept" in layers:
        fig = px.bar(layers, x="layer", y=["channels before", "channels after"], barmode="overlay",
                     title="Output channels per layer, before and after pruning")
    elif "full rank" in layers:
        fig = px.bar(layers, x="layer", y=["full rank", "rank"], barmode="overlay", hover_data=["status", "energy kept"],
                     title="Rank kept per layer (overlay on the full rank)")
    else:
        layers["precision"] = layers["quantized"].map({True: "INT8", False: "FP32"})
        fig = px.histogram(layers, x="op", color="precision", text_auto=True, title="Layers by operator and precision")
    fig.update_layout(height=380, xaxis_tickangle=-60, legend_orientation="h", legend_y=1.12)
    st.plotly_chart(fig)
    with st.expander("Layer table"):
        st.dataframe(layers, hide_index=True)


def downloads(run_variants: list[cx.Variant], table: pd.DataFrame, key: str, input_size) -> None:
    cols = st.columns([2, 2, 1])
    # compressed models first: they are what one wants to take away
    ordered = sorted(run_variants, key=lambda v: v.technique == "onnx_fp32")
    choices = {v.name: v for v in ordered if v.downloads(input_size)}
    cols[2].download_button("Results (CSV)", cx.results_csv(table), "compression_results.csv", "text/csv",
                            on_click="ignore", key=f"{key}_csv", icon=":material/table:")
    if not choices:
        cols[0].caption("No variant of this run can be saved as safetensors or ONNX.")
        return
    picked = cols[0].selectbox("Model to download", list(choices), key=f"{key}_pick")
    formats = choices[picked].downloads(input_size)
    fmt = cols[1].selectbox("Format", list(formats), key=f"{key}_fmt")
    suffix, make = formats[fmt]
    slug = "".join(c if c.isalnum() else "_" for c in picked.lower()).strip("_")
    st.download_button(f"Download {picked} ({fmt})", make, slug + suffix, "application/octet-stream",
                       on_click="ignore", key=f"{key}_dl", icon=":material/download:")
    if fmt.startswith("safetensors") and choices[picked].technique in ("prune_structured", "low_rank"):
        st.caption("Safetensors holds weights only: a pruned or factorised network needs its changed architecture. "
                   "ONNX carries both.")


def stored_downloads(run: cx.Run) -> list[cx.Variant] | None:
    """A stored run keeps numbers, not networks: the models are rebuilt with its settings when asked for."""
    rebuilt = st.session_state.get("cx_rebuilt")
    if rebuilt is not None and rebuilt[0] == run.key:
        return rebuilt[1]
    offer = st.empty()  # replaced by the usual download panel once the models are built
    cols = offer.container().columns([2, 2, 1])
    cols[2].download_button("Results (CSV)", cx.results_csv(run.table), "compression_results.csv", "text/csv",
                            on_click="ignore", key="cx_csv_stored", icon=":material/table:")
    cols[0].caption("The stored run keeps its numbers, not its networks: to download a compressed model, build "
                    "it again with exactly these settings (the table's numbers stay those of the stored run).")
    if not cols[1].button("Build the models to download", key="cx_rebuild", icon=":material/build:"):
        return None
    offer.empty()
    with st.spinner("Building the compressed models with these settings…", show_time=True):
        variants, _ = cx.build_variants(run.model_name, run.specs, run.deploy_ort)
    st.session_state.cx_rebuilt = (run.key, variants)
    return variants


def knob_widget(knob: cx.Knob, model_name: str):
    """One registered knob as its widget (the registry says which); the value comes back in the knob's unit."""
    common = {"key": knob.widget_key, "help": knob.help}
    if knob.kind == "toggle":
        return st.toggle(knob.label, knob.default, **common)
    if knob.kind == "choice":
        return st.radio(knob.label, list(knob.choices), knob.choices.index(knob.default), horizontal=True,
                        format_func=knob.choice_labels.get, **common)
    if knob.kind == "steps":
        return st.select_slider(knob.label, list(knob.choices), knob.default, **common)
    if knob.kind == "layers":
        options = cx.factorisable_layers(model_name)
        return st.multiselect(knob.label, options, default=cx.default_layers(knob, options), **common)
    low, high, default = knob.display(knob.low), knob.display(knob.high), knob.display(knob.default)
    if knob.kind == "number":
        return knob.from_display(st.number_input(knob.label, low, high, default, **common))
    step = knob.display(knob.step) if knob.step else None
    return knob.from_display(st.slider(knob.label, low, high, default, step, **common))


def technique_knobs(technique: cx.Technique, model_name: str) -> dict:
    """The knobs of one technique, laid out inside its card in the registry's order."""
    if not technique.knobs:
        st.caption(technique.description)
    knobs: dict = {}
    for knob in technique.knobs:
        if knob.shown(knobs):  # e.g. the energy slider only while "Keep" is an energy fraction
            knobs[knob.key] = knob_widget(knob, model_name)
    return knobs


# Settings cards in rows of at most this many: with all seven techniques one row squeezed each card to
# ~120 px at 1280 px (titles broke mid-word, the layer picker became a blob); three keep ~290 px.
CARDS_PER_ROW = 3


def technique_cards(picked: list[str], model_name: str) -> list[cx.TechniqueSpec]:
    specs = []
    for first in range(0, len(picked), CARDS_PER_ROW):
        row = picked[first : first + CARDS_PER_ROW]
        for col, key in zip(st.columns(CARDS_PER_ROW), row):
            technique = cx.get_technique(key)
            with col.container(border=True, height="stretch"):
                st.markdown(f"**{technique.label}**")
                specs.append(cx.TechniqueSpec(key, technique_knobs(technique, model_name)))
    return specs


# --- 1 · compress a pretrained model ---------------------------------------------------------------------

with tab_compress:
    models = cx.model_choices()
    ready = [m for m in models if m["available"]]
    missing = [m for m in models if not m["available"]]
    if missing:
        with st.expander(f"{len(missing)} model(s) not on this machine"):
            for m in missing:
                st.markdown(f"**{m['label']}**: {m['reason']}")
    if not ready:
        ui.weights_missing(WeightsUnavailable(weights.get("efficientnet_lite0")))
    else:
        labels = {m["name"]: m["label"] for m in ready}
        left, right = st.columns([1, 1])
        model_name = left.selectbox("Model (ImageNet-pretrained)", list(labels), format_func=labels.get, key="cx_model")
        eval_options = [*cx.EVAL_SETS, "zip"]
        eval_choice = right.radio("Evaluation images", eval_options, eval_options.index(cx_runs.PAGE_EVAL_SET),
                                  horizontal=False, key="cx_eval",
                                  format_func=lambda k: cx.EVAL_SETS.get(k, "Your labeled zip (<class>/<image>)"))
        zip_file = None
        if eval_choice == "zip":
            zip_file = right.file_uploader("Labeled zip: folder names are matched to ImageNet class names", type=["zip"],
                                           key="cx_zip")

        # The defaults are the warm start's run (cvdemo/compression/runs.py): shown at once when it is stored.
        picked = st.multiselect("Techniques", cx.list_techniques(), default=list(cx_runs.PAGE_TECHNIQUES),
                                format_func=cx.TECHNIQUES.get, key="cx_techniques")
        specs = technique_cards(picked, model_name)

        with st.expander("Measurement settings"):
            m1, m2, m3 = st.columns(3)
            limit = m1.slider("Evaluation images", 8, 153, cx_runs.PAGE_EVAL_LIMIT, key="cx_limit")
            repeats = m2.number_input("Timed runs per batch size (median)", 3, 100, cx_runs.PAGE_REPEATS,
                                      key="cx_repeats",
                                      help="The lecture's rule: at least 20 runs after a warm-up. A model so slow "
                                      "that they would take over 2 s (FP16 without FP16 hardware) gets fewer, "
                                      "at least 5: the table's runs columns say how many.")
            deploy_ort = m3.toggle("Also deploy pruned / factorised models in ONNX Runtime", cx_runs.PAGE_DEPLOY_ORT,
                                   key="cx_deploy",
                                   help="Adds one row per PyTorch variant exported to ONNX Runtime (a few seconds each).")

        # The run store key of these settings (shipped sets: a zip is only read on a click), to show a stored run.
        current_key = None
        if specs and eval_choice != "zip":
            try:
                current_key = cx_runs.run_key(model_name, specs, ui.shared(cx.standard_eval_set, model_name, eval_choice,
                                                                            limit), deploy_ort, int(repeats))
            except (CvdemoError, WeightsUnavailable):
                current_key = None  # the click says why
        st.session_state.cx_settings_key = current_key

        clicked = st.button("Compress and measure", type="primary", disabled=not specs, key="cx_run",
                            icon=":material/speed:")
        live = st.session_state.pop("cx_measure_live", False)  # "Measure again" under a stored run
        if clicked or live:
            eval_set = None
            try:
                if eval_choice == "zip":
                    if zip_file is None:
                        st.warning("Upload a zip of <class>/<image> folders first, or pick a shipped evaluation set.")
                    else:
                        eval_set = cx.eval_set_from_zip(zip_file.getvalue(), cx.transform_for(model_name),
                                                        cx.imagenet_label_map, limit)
                else:
                    with st.spinner("Loading evaluation images…"):
                        eval_set = ui.shared(cx.standard_eval_set, model_name, eval_choice, limit)
            except CvdemoError as exc:  # may name files of the zip
                st.error(ui.literal(exc))
            except WeightsUnavailable as exc:
                ui.weights_missing(exc)
            if eval_set is not None:
                try:
                    ui.shared(cx.backbone, model_name)
                except WeightsUnavailable as exc:
                    ui.weights_missing(exc)
                    eval_set = None
            if eval_set is not None:
                with st.status(f"Compressing {labels[model_name]} and measuring on {eval_set.description}…",
                               expanded=True) as status:
                    bar = st.progress(0.0)
                    # The same settings being measured already (another student, the warm start) are watched,
                    # not measured twice; the run is stored for everyone when it ends.
                    job, started_here = cx_runs.start(model_name, specs, eval_set, deploy_ort, int(repeats))
                    if not started_here:
                        st.caption("This server is already measuring exactly these settings (for another student or "
                                   "at its start): you are watching that run.")
                    while job.running:
                        bar.progress(job.progress, job.phase or "starting")
                        time.sleep(0.25)
                    if job.status != "done" or job.outcome is None:
                        status.update(label="Stopped", state="error")
                        st.error(ui.literal(job.error or "The measurement stopped."))
                    else:
                        run = measured.run = job.outcome
                        status.update(label=f"Done: {len(run.variants)} variant(s) measured", state="complete",
                                      expanded=False)
                for label, message in ({} if measured.run is None else measured.run.errors).items():
                    st.error(f"**{label}**: {ui.literal(message)}")
                if eval_set.skipped:
                    st.warning(f"{len(eval_set.skipped)} file(s) of the zip were skipped: "
                               + ui.literal("; ".join(eval_set.skipped[:5])))
                if eval_set.labeled == 0:
                    st.info("No image of this set has an ImageNet label, so top-1 is blank; agreement still counts.")

        run = measured.run
        if current_key is not None and (run is None or run.key != current_key) and not (clicked or live):
            if cx_runs.running(current_key) is not None:
                st.info("This server is measuring exactly these settings right now (at its start or for another "
                        "student): press **Compress and measure** to watch that run.", icon=":material/hourglass_top:")
            run = cx_runs.load(current_key) or run  # measured earlier on this server with exactly these settings
        if run is not None:
            st.subheader("Original vs compressed, measured here")
            if run.stored_at is not None:
                st.info(f"Measured at {run.stored_text()} on this server with exactly these settings; latencies are "
                        "from that run. **Measure again** to watch it live.", icon=":material/history:")
                if st.button("Measure again", key="cx_remeasure", icon=":material/replay:"):
                    st.session_state.cx_measure_live = True
                    st.rerun()  # the whole page: it measures the current settings live
            st.caption(f"{run.model_name} · {run.eval_description} · {cpu.summary()}")
            show_table(run.table)

            @st.fragment
            def charts() -> None:
                c1, c2 = st.columns(2)
                with c1:
                    trade_off_chart(run.table)
                with c2:
                    size_chart(run.table)
                with_layers = [v for v in run.variants if v.layers]
                if with_layers:
                    pick = st.selectbox("Per-layer view", [v.name for v in with_layers], key="cx_layer_pick")
                    layer_chart(next(v for v in with_layers if v.name == pick))

            charts()
            st.subheader("What the lecture says, and what this machine says")
            shown = [t for t in dict.fromkeys(run.table["technique"]) if t != "original"]
            for tech in shown:
                with st.expander(cx.TECHNIQUES.get(tech, "ONNX Runtime, FP32 (runtime only)"), expanded=True):
                    st.markdown(cx.explain(tech, run.table, run.cpu))
                    for v in run.variants:
                        if v.technique == tech:
                            for note in v.notes:
                                st.caption(ui.literal(f"{v.name}: {note}"))

            @st.fragment
            def download_panel() -> None:
                st.subheader("Downloads")
                variants = run.variants if run.stored_at is None else stored_downloads(run)
                if variants is not None:
                    downloads(variants, run.table, "cx", cx.input_size_of(cx.backbone(run.model_name)))

            download_panel()


# --- 2 · distillation ---------------------------------------------------------------------------------------

with tab_distill:
    st.markdown(
        "A **teacher** (frozen EfficientNet-Lite0 features + a linear head, fed 32x32 images upsampled to 160) "
        "gives soft probabilities; the same randomly initialised **student** is trained twice: with the teacher's "
        "soft targets (temperature T, hard-label weight alpha) and with hard labels only. Data: the CIFAR-10 "
        "subset, 30 training and 20 test images per class; only some training images keep their label."
    )
    d1, d2, d3 = st.columns(3)
    student_kind = d1.radio("Student", ["tiny_cnn", "mobilenetv3_small"], key="kd_student",
                            format_func={"tiny_cnn": "Tiny CNN (~25k params)",
                                         "mobilenetv3_small": "MobileNetV3-Small (1.5M, random init)"}.get)
    labeled = d1.slider("Labeled training images per class", 1, 30, 10, key="kd_labeled",
                        help="The teacher's head is fitted on these too.")
    transfer = d3.toggle("Transfer set", True, key="kd_transfer",
                         help="Hinton's transfer set: the teacher also labels the training images that have no label, "
                         "and the distilled student learns from them; the hard-label student cannot use them.")
    temperature = d2.slider("Temperature T", 1.0, 10.0, 4.0, 0.5, key="kd_t",
                            help="Softens both distributions: higher T shows more of the teacher's 'dark knowledge'.")
    alpha = d2.slider("alpha (weight of the hard labels)", 0.0, 1.0, 0.5, 0.05, key="kd_alpha")
    epochs = d3.slider("Epochs", 5, 60, 30, 5, key="kd_epochs")
    d3.caption("Both students see the same 4 augmented views of each image (original, mirror, 2 shifted crops).")
    if st.button("Train both students", type="primary", key="kd_run", icon=":material/school:"):
        with st.status("Distilling…", expanded=True) as status:
            bar = st.progress(0.0, "teacher: features + linear head (once per server and labeled count)")
            try:
                split = ui.shared(cx.cifar_split)
                teacher = ui.shared(cx.cifar_teacher, int(labeled))
                outcome = cx.run_distillation(teacher, split, student_kind, temperature, alpha, int(epochs),
                                              labeled_per_class=int(labeled), transfer=transfer,
                                              progress=lambda f, t: bar.progress(min(0.05 + 0.85 * f, 1.0), t))
                reference, students = outcome.variants()
                table = cx.compare(reference, students, split.test, repeats=20,
                                   progress=lambda f, t: bar.progress(min(0.9 + 0.1 * f, 1.0), t))
            except CvdemoError as exc:
                status.update(label="Stopped", state="error")
                st.error(ui.literal(exc))
            except WeightsUnavailable as exc:
                status.update(label="Stopped", state="error")
                ui.weights_missing(exc)
            else:
                measured.distillation, measured.distillation_table = outcome, table
                status.update(label="Done", state="complete", expanded=False)
    if measured.distillation is not None:
        outcome, table = measured.distillation, measured.distillation_table
        show_table(table)
        distilled_name = f"distilled (T={outcome.distilled.temperature:g}, alpha={outcome.distilled.alpha:g})"
        history = pd.concat([outcome.distilled.history.assign(student=distilled_name),
                             outcome.hard_only.history.assign(student="hard labels only")])
        losses = history.melt(id_vars=["epoch", "student"], value_vars=["hard-label loss", "soft-target loss"],
                              var_name="term", value_name="value").dropna()
        c1, c2 = st.columns(2)
        c1.plotly_chart(px.line(losses, x="epoch", y="value", color="student", line_dash="term", markers=True,
                                title="Training losses: cross-entropy on labels, T²·KL to the teacher")
                        .update_layout(legend_orientation="h", legend_y=-0.25, legend_title_text="", yaxis_title="loss"))
        c2.plotly_chart(px.line(history, x="epoch", y="train accuracy", color="student", markers=True,
                                title="Accuracy on the labeled training images")
                        .update_layout(yaxis_tickformat=".0%", legend_orientation="h", legend_y=-0.25))
        st.markdown(cx.explain_distillation(table, outcome.labeled, outcome.transfer))
        st.download_button("Results (CSV)", cx.results_csv(table), "distillation_results.csv", "text/csv",
                           on_click="ignore", key="kd_csv", icon=":material/table:")


# --- 3 · your own compressed model ----------------------------------------------------------------------------

with tab_upload:
    st.markdown(
        "Compressed a model elsewhere? Upload it and it is measured against the pretrained original on the same "
        "images. Accepted: **ONNX** (any graph with one image input and ImageNet logits out) or **safetensors** "
        "(weights for the chosen architecture). Pickle checkpoints (.pt/.pth) are refused: loading them can run code."
    )
    ready = [m for m in cx.model_choices() if m["available"]]
    if ready:
        names = {m["name"]: m["label"] for m in ready}
        u1, u2 = st.columns(2)
        ref_name = u1.selectbox("Architecture / original", list(names), format_func=names.get, key="up_model")
        upload = u2.file_uploader("Model file (.onnx or .safetensors)", key="up_file")
        up_limit = u1.slider("Evaluation images (ants & bees)", 8, 153, 32, key="up_limit")
        if upload is not None and st.button("Measure the uploaded model", key="up_run"):
            try:
                original = ui.shared(cx.backbone, ref_name)
                variant = cx.load_model_file(upload.name, upload.getvalue(), original, cx.input_size_of(original))
                eval_set = ui.shared(cx.standard_eval_set, ref_name, "hymenoptera", up_limit)
                with st.spinner("Measuring…"):
                    measured.uploaded = cx.compare(original, [variant], eval_set, repeats=20)
            except CvdemoError as exc:  # names the uploaded file
                st.error(ui.literal(exc))
            except WeightsUnavailable as exc:
                ui.weights_missing(exc)
        if measured.uploaded is not None:
            show_table(measured.uploaded)



# --- 4 · the detector: FP32 activations vs INT8 ---------------------------------------------------------------

from cvdemo.compression import detector as dc  # noqa: E402

DETECTOR_MODEL = "yolov8n"
DETECTOR_TABLE_CONFIG = {
    "model": st.column_config.TextColumn(width="medium"),
    "file MB": st.column_config.NumberColumn(format="%.1f", width="small"),
    "inference ms": st.column_config.NumberColumn(format="%.1f", width="small",
                                                  help="Network time per image (ultralytics' split): median of the runs"),
    "best ms": st.column_config.NumberColumn(format="%.1f", width="small", help="Fastest of the timed runs"),
    "per image ms": st.column_config.NumberColumn(format="%.0f", width="small",
                                                  help="Whole detect call: letterbox, network, NMS (median)"),
    "speed-up": st.column_config.NumberColumn(format="%.2fx", width="small",
                                              help="Median inference time of FP32 activations in ONNX Runtime / this one"),
    "mAP50": st.column_config.NumberColumn(format="%.3f", width="small"),
    "mAP50-95": st.column_config.NumberColumn(format="%.3f", width="small", help="COCO's metric: AP at IoU 0.50 … 0.95"),
}


def show_detector_comparison(result: dc.DetectorComparison) -> None:
    table, agree = result.table, result.agreement
    st.caption(f"{result.model_name} · latency on {result.image_name}, accuracy and agreement on {result.dataset} · "
               f"{result.cpu.summary()} · measured once for this server in {result.seconds:.0f} s")
    st.dataframe(table, hide_index=True, column_config=DETECTOR_TABLE_CONFIG,
                 column_order=["model", "inference ms", "speed-up", "mAP50-95", "mAP50", "file MB", "best ms",
                               "per image ms"])
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("INT8 speed-up here", f"{result.speedup:.2f}x", help="Median inference, both in ONNX Runtime")
    m2.metric("mAP50-95, INT8 vs float", f"{table.loc['int8', 'mAP50-95']:.3f}",
              delta=f"{table.loc['int8', 'mAP50-95'] - table.loc['float', 'mAP50-95']:+.3f}")
    m3.metric("Box agreement (F1)", f"{agree.f1:.2f}",
              help=f"INT8 boxes matched to float boxes: same class, IoU ≥ {agree.min_iou:.1f}, "
                   f"confidence ≥ {agree.conf:.2f}")
    m4.metric("INT8 boxes matched", f"{agree.matched} / {agree.int8_boxes}",
              help=f"INT8 boxes with a float box of the same class at IoU ≥ {agree.min_iou:.1f}; the float graph "
                   f"found {agree.float_boxes} boxes")
    samples = pd.DataFrame([{"model": table.loc[k, "model"], "inference ms": ms}
                            for k, values in result.latency_samples_ms.items() for ms in values])
    fig = px.box(samples, x="inference ms", y="model", points="all", color="model")
    fig.update_layout(height=120 + 60 * len(table), showlegend=False, yaxis_title=None, margin_t=30,
                      xaxis_title=f"inference ms per image, {len(samples) // len(table)} interleaved runs each")
    st.plotly_chart(fig, key="dx_latency")
    st.markdown(dc.explain(result))
    with st.expander(f"Boxes image by image ({agree.images} images)"):
        st.dataframe(agree.per_image, hide_index=True, height=min(38 + 35 * agree.images, 420))


@st.fragment
def detector_section() -> None:
    st.subheader("The detector: FP32 activations vs INT8")
    st.caption(
        "The Detection page's YOLOv8n ships as a static INT8 file. Its float twin has the same weights with float "
        "activations (the quantize/dequantize steps between layers removed). Both run here on the same photos: "
        "speed on this CPU, mAP on a labeled set, and whether they find the same boxes."
    )
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    dataset = left.radio("Accuracy and agreement measured on", list(dc.DATASETS), format_func=dc.DATASETS.get,
                         horizontal=True, key="dx_dataset")
    done = dc.has_result(DETECTOR_MODEL, dataset)
    clicked = right.button("Measure again" if done else "Compare float and INT8", key="dx_run",
                           type="secondary" if done else "primary", icon=":material/compare_arrows:")
    if clicked:
        with st.status(f"Measuring the detector on {dataset}…", expanded=True) as status:
            bar = st.progress(0.0)
            try:
                dc.remembered(DETECTOR_MODEL, dataset, refresh=done,
                              progress=lambda f, text: bar.progress(min(max(f, 0.0), 1.0), text))
            except CvdemoError as exc:
                status.update(label="Stopped", state="error")
                st.error(str(exc))
                return
            except WeightsUnavailable as exc:
                status.update(label="Stopped", state="error")
                ui.weights_missing(exc)
                return
            status.update(label="Done", state="complete", expanded=False)
        try:
            st.rerun(scope="fragment")  # the button now reads "Measure again"
        except StreamlitAPIException:  # the click came with a whole-page run (not a fragment rerun): rerun it all
            st.rerun()
    if dc.has_result(DETECTOR_MODEL, dataset):
        show_detector_comparison(dc.remembered(DETECTOR_MODEL, dataset))
    else:
        st.info("Not measured on this server yet: press the button (the result is kept for everyone).")


st.divider()
detector_section()

st.divider()
ui.share_section("compression", height=900)
