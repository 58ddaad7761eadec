"""Architectures: parameters, MACs and FLOPs layer by layer, reconciled with the papers."""

from __future__ import annotations

import math
import re

import streamlit as st

from cvdemo import ui
from cvdemo.catalog import PAGES

info = next(p for p in PAGES if p.path.endswith("architectures.py"))
ui.page_header(info.title, info.lesson)

with st.spinner("Loading PyTorch…"):
    import pandas as pd
    import plotly.graph_objects as go

    from cvdemo import complexity as cx
    from cvdemo import memory_budget, zoo

RESOLUTIONS = [96, 128, 160, 192, 224, 256, 288, 320, 384, 448, 512]
DEFAULT_COMPARE = ["alexnet", "vgg16", "googlenet", "resnet18", "resnet50", "mobilenetv1_100", "mobilenetv2_100",
                   "shufflenet_v2_x1_0", "efficientnet_b0", "convnext_tiny", "vit_base_patch16_224"]  # fmt: skip
DEFAULT_LATENCY = ["resnet18", "mobilenetv1_100", "mobilenetv2_100", "shufflenet_v2_x1_0", "efficientnet_b0"]
COLORS = {"params": "#4C78A8", "compute": "#F58518", "memory": "#54A24B"}


# --- cached computations (all pure functions in cvdemo.complexity) --------------------------------


@st.cache_data(show_spinner=False, max_entries=256)
def zoo_profile(name: str, resolution: int) -> cx.Profile:
    return cx.profile(name, (zoo.input_channels(name), resolution, resolution))


@st.cache_data(show_spinner=False, max_entries=64)
def spec_profile(text: str) -> cx.Profile:
    return cx.profile_spec(text)


@st.cache_data(show_spinner=False, max_entries=32)
def counters(name: str, resolution: int, spec: str | None) -> cx.CounterComparison:
    # Real CPU runs; both refuse (cx.OverBudget) before allocating when over the memory budget.
    if spec is not None:
        return cx.compare_spec_counters(spec)
    return cx.compare_counters(name, (zoo.input_channels(name), resolution, resolution))


@st.cache_data(show_spinner=False, max_entries=128)
def latency(name: str, resolution: int) -> cx.Latency:
    # Built, timed and released: keeping every zoo model in RAM for a timing would cost gigabytes.
    return cx.latency_of(name, (zoo.input_channels(name), resolution, resolution))


@st.cache_data(show_spinner=False)
def separable(kernel: int, c_in: int, c_out: int, size: int) -> cx.SeparableSaving:
    return cx.separable_saving(kernel, c_in, c_out, size)


def log_axes(fig: go.Figure, xs: list[float], ys: list[float]) -> None:
    """Log axes with ticks at powers of ten (K, M, G) and room for the point labels."""
    for axis, values in (("x", xs), ("y", ys)):
        low, high = math.log10(max(min(values), 1e-9)), math.log10(max(max(values), 1e-9))
        pad = max(0.15, 0.08 * (high - low))
        update = fig.update_xaxes if axis == "x" else fig.update_yaxes
        update(type="log", exponentformat="SI", range=[low - pad, high + 2 * pad if axis == "y" else high + pad])
        if high - low >= 2:  # many decades: label powers of ten only
            update(dtick=1)


def fmt(n: float | None) -> str:
    return "—" if n is None else f"{n:,.0f}"


def ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"  # a source that gives no number shows a dash, not "None"


def literal(text: str) -> str:
    """``text`` shown as typed in Streamlit's markdown: every ASCII punctuation mark escaped."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", text)


# --- what to count --------------------------------------------------------------------------------

source = st.segmented_control(
    "What to count",
    ["Lecture zoo", "Any timm / torchvision model", "Type a network"],
    default="Lecture zoo",
    required=True,
    key="arch_source",
)
controls = st.columns([4, 7, 3] if source == "Type a network" else [4, 4, 3])  # spec: room for the syntax card
spec_text: str | None = None
model_key = ""
resolution = 224
if source == "Type a network":
    with controls[0]:
        spec_text = st.text_area("One layer a line", cx.SPEC_EXAMPLE, height=260, key="arch_spec")
    with controls[1]:
        st.markdown("**Syntax**")
        st.code(cx.SPEC_HELP, language=None)
else:
    with controls[0]:
        if source == "Lecture zoo":
            model_key = st.selectbox(
                "Architecture",
                list(zoo.ZOO),
                index=list(zoo.ZOO).index("alexnet"),
                format_func=lambda k: f"{zoo.ZOO[k].label} ({zoo.ZOO[k].year})",
                key="arch_model",
            )
            st.caption(zoo.ZOO[model_key].lesson)
        else:
            model_key = st.text_input(
                "timm or torchvision model name", "regnet_y_400mf", key="arch_name", max_chars=zoo.MAX_NAME_LENGTH,
                help="Any torchvision classification model (e.g. squeezenet1_0, swin_t) or timm model (e.g. resnet26d).",
            ).strip()  # fmt: skip
    if not model_key:
        st.info(f"Type a model name above, e.g. {zoo.NAME_EXAMPLES}.", icon=":material/keyboard:")
        st.stop()
    try:
        native = zoo.native_resolution(model_key)
    except zoo.UnknownModel as exc:
        st.error(literal(str(exc)))
        st.stop()
    with controls[1]:
        fixed = model_key in zoo.ZOO and zoo.ZOO[model_key].fixed_resolution
        options = [native] if fixed else sorted({*RESOLUTIONS, native})
        resolution = st.select_slider(
            "Input resolution (px)",
            options,
            value=native,
            disabled=fixed,
            key=f"arch_res_{model_key}",
            help="MobileNet's resolution multiplier ρ: MACs scale with ρ², parameters do not change.",
        )
        if fixed:
            st.caption(f"{zoo.label(model_key)} only works at {native}×{native}.")
with controls[2]:
    unit = st.segmented_control("Compute unit", ["MACs", "FLOPs"], default="MACs", required=True, key="arch_unit")
    st.caption("1 MAC = one multiply-add = 2 FLOPs.")
factor = 1 if unit == "MACs" else 2

try:
    with st.spinner("Counting…"):
        prof = spec_profile(spec_text) if spec_text is not None else zoo_profile(model_key, resolution)
except cx.SpecError as exc:
    st.error(literal(str(exc)), icon=":material/edit_note:")
    st.stop()
except (cx.ProfileError, zoo.UnknownModel) as exc:
    st.error(literal(str(exc)))
    st.stop()

# --- totals and the papers ------------------------------------------------------------------------

title = "Your network" if spec_text is not None else prof.name
st.subheader(literal(f"{title} at {cx.shape_text(prof.input_size)}"))
if spec_text is not None:
    c, h, w = prof.input_size
    st.caption(f"Shapes are per image and channels first, as PyTorch stores them: your {h}x{w}x{c} is {c}×{h}×{w} here.")
# Compact headline numbers (15.47 G) fit a quarter of a narrow window; the exact figure is on hover
# and in the layer table.
cols = st.columns(4)
cols[0].metric(
    "Parameters", cx.compact(prof.total_params),
    help=f"Exactly {fmt(prof.total_params)}: elements of every nn.Parameter (BatchNorm γ/β included).",
)  # fmt: skip
cols[1].metric(
    unit, cx.compact(prof.total_macs * factor),
    help=f"Exactly {fmt(prof.total_macs * factor)} {unit}: conv, dense and attention matmuls, one image."
    + (" 1 MAC = one multiply-add." if unit == "MACs" else " FLOPs = 2 × MACs."),
)  # fmt: skip
cols[2].metric(
    "Weights", memory_budget.format_bytes(prof.total_params * 4),
    help=f"float32: {fmt(prof.total_params)} parameters × 4 bytes = {fmt(prof.total_params * 4)} bytes.",
)  # fmt: skip
cols[3].metric(
    "Activations",
    memory_budget.format_bytes(prof.activation_bytes),
    help=f"float32: {fmt(prof.activation_bytes)} bytes, the sum of every layer's output for one image (in-place layers "
    f"not counted twice). At most {memory_budget.format_bytes(prof.peak_activation_bytes)} of it is alive at "
    "once in a forward pass, since PyTorch frees an output when nothing needs it any more.",
)

if spec_text is None:
    refs = cx.references(model_key, prof)
    if refs:
        st.markdown("**Published numbers beside ours** (as printed, rounded)")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "source": r.short,
                        "where": r.where,
                        "they call it": r.called,
                        "params": cx.human(r.params) if r.params else "—",
                        "ours / theirs (params)": ratio(r.params_ratio),
                        unit: cx.human(r.macs * factor) if r.macs else "—",
                        f"ours / theirs ({unit})": ratio(r.macs_ratio),
                        "note": r.note,
                        "paper": r.url,
                    }
                    for r in refs
                ]
            ),
            hide_index=True,
            column_config={
                "paper": st.column_config.LinkColumn(display_text="open"),
                "note": st.column_config.TextColumn(width="large"),
            },
        )
    elif model_key in zoo.ZOO:
        st.caption("No published count on file for this model at this resolution (papers report their native size).")

# Lazy tabs: only the open tab's content runs, so a model change costs one profile, not five panels.
tab_layers, tab_where, tab_counters, tab_compare, tab_speed = st.tabs(
    ["Layer by layer", "Where it lives", "Counters disagree", "Compare models", "FLOPs ≠ speed"],
    on_change="rerun",
    key="arch_tab",
)


# --- layer table + formula view -------------------------------------------------------------------


@st.fragment
def layer_table(prof: cx.Profile, unit: str, factor: int) -> None:
    frame = prof.to_frame()
    frame[unit] = frame["MACs"] * factor
    columns = ["layer", "type", "input", "output", "params", unit, "% MACs", "activations", "calls", "note"]
    if not frame["note"].astype(bool).any():
        columns.remove("note")
    st.caption("Click a conv or dense row to see its numbers worked out by formula. Column headers sort.")
    event = st.dataframe(
        frame[columns],
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="arch_table",
        height=420 if len(frame) > 12 else "auto",
        column_config={
            "params": st.column_config.NumberColumn(format="localized"),
            unit: st.column_config.NumberColumn(format="localized"),
            "activations": st.column_config.NumberColumn(format="localized"),
            "% MACs": st.column_config.ProgressColumn(format="%.2f%%", min_value=0, max_value=100),
        },
    )
    st.download_button(
        "Download CSV", frame.to_csv(index=False).encode(), file_name=f"{prof.name.replace(' ', '_')}_layers.csv",
        mime="text/csv", icon=":material/download:",
    )  # fmt: skip
    chosen = event.selection.rows if event is not None else []
    rows = list(prof.layers)
    row = rows[chosen[0]] if chosen else next((r for r in rows if cx.formula(r)), None)
    f = cx.formula(row) if row else None
    if row is None:
        return
    if f is None:
        st.info(f"`{row.name}` ({row.type}) has no weights to multiply: {fmt(row.params)} parameters, "
                f"{fmt(row.macs * factor)} {unit}. Pick a conv or dense row.")  # fmt: skip
        return
    st.markdown(f"#### `{row.name}`: {f.kind}, {cx.shape_text(row.input_shape)} → {cx.shape_text(row.output_shape)}")
    a, b = st.columns(2)
    with a:
        st.markdown("**Parameters**")
        st.code(f"{f.params_symbols}\n= {f.params_numbers}", language=None)
    with b:
        st.markdown(f"**{unit}**")
        macs_line = f"{f.macs_symbols}\n= {f.macs_numbers}"
        if factor == 2:
            macs_line += f"\nFLOPs = 2 × MACs = {fmt(2 * f.macs)}"
        st.code(macs_line, language=None)
    agree = f.params == row.params and f.macs == row.macs
    (st.success if agree else st.warning)(
        f"The profiler measured {fmt(row.params)} parameters and {fmt(row.macs)} MACs for this layer: "
        + ("the formula agrees." if agree else "the formula differs (this layer is unusual).")
    )


if tab_layers.open:
    with tab_layers:
        layer_table(prof, unit, factor)


# --- where params, compute and memory live ----------------------------------------------------------


def where_it_lives(prof: cx.Profile) -> None:
    groups = cx.breakdown(prof)
    total_p, total_m, total_a = (max(1, sum(getattr(g, k) for g in groups)) for k in ("params", "macs", "activation_bytes"))
    fig = go.Figure()
    names = [g.label for g in groups]
    fig.add_bar(x=names, y=[100 * g.params / total_p for g in groups], name="parameters", marker_color=COLORS["params"])
    fig.add_bar(x=names, y=[100 * g.macs / total_m for g in groups], name="compute (MACs)", marker_color=COLORS["compute"])
    fig.add_bar(x=names, y=[100 * g.activation_bytes / total_a for g in groups], name="activation memory",
                marker_color=COLORS["memory"])  # fmt: skip
    fig.update_layout(barmode="group", yaxis_title="% of the model's total", height=430, margin=dict(t=30, b=10),
                      legend=dict(orientation="h", y=1.08), xaxis_tickangle=-45)  # fmt: skip
    st.plotly_chart(fig)
    dense_p = sum(r.params for r in prof.layers if r.type == "Linear")
    dense_m = sum(r.macs for r in prof.layers if r.type == "Linear")
    conv_m = sum(r.macs for r in prof.layers if r.type.startswith("Conv"))
    early = groups[: max(1, len(groups) // 3)]
    st.markdown(
        f"- Dense (fully connected) layers hold **{100 * dense_p / max(1, prof.total_params):.0f}%** of the parameters "
        f"and do **{100 * dense_m / max(1, prof.total_macs):.0f}%** of the MACs; convolutions do "
        f"**{100 * conv_m / max(1, prof.total_macs):.0f}%**.\n"
        f"- The first third of the network produces **{100 * sum(g.activation_bytes for g in early) / total_a:.0f}%** "
        "of the activation memory: big feature maps, few channels."
    )
    st.caption("Groups: each conv/dense layer with the BatchNorm, activation and pooling after it; "
               "big networks are grouped by block.")  # fmt: skip


if tab_where.open:
    with tab_where:
        where_it_lives(prof)


# --- counters disagree ----------------------------------------------------------------------------


@st.fragment
def counters_panel(prof: cx.Profile, model_key: str, resolution: int, spec: str | None) -> None:
    st.markdown(
        "The same model, one CPU forward pass, three tools: this page's profiler, PyTorch's "
        "`torch.utils.flop_counter.FlopCounterMode` and fvcore's `FlopCountAnalysis`."
    )
    request = (model_key, resolution, spec)
    memory = cx.memory_estimate(prof)
    if not memory.fits():  # refused before anything is built; the counts from shapes stand above
        st.warning(
            literal(f"{memory.sentence()} So the three counters, which run it for real, are off here. The parameters "
            f"({fmt(prof.total_params)}) and MACs ({fmt(prof.total_macs)}) above are counted from shapes alone, "
            "with no forward pass. A smaller input or fewer units brings it under the limit."),
            icon=":material/memory:",
        )
    if st.button("Run the three counters", icon=":material/play_arrow:", key="arch_counters_run", disabled=not memory.fits()):
        with st.status("Building the model on the CPU and running three counters…", expanded=False) as status:
            try:
                st.session_state["arch_counters"] = (request, counters(model_key, resolution, spec))
                status.update(label="Counted.", state="complete")
            except cx.OverBudget as exc:
                status.update(label="Not run: too big for this server.", state="error")
                st.warning(literal(str(exc)), icon=":material/memory:")
                return
            except Exception as exc:  # a model a tool cannot follow must not break the page
                status.update(label="A counter failed.", state="error")
                st.error(literal(f"Counting failed: {exc}"))
                return
    stored = st.session_state.get("arch_counters")
    if not stored or stored[0] != request:
        if memory.fits():
            st.caption(
                f"Runs a real forward pass (seconds for VGG-sized models; about {memory_budget.format_bytes(memory.total)} "
                f"of memory, the limit per run here is {memory_budget.format_bytes(memory_budget.RUN_BUDGET_BYTES)}); "
                "results are cached."
            )
        return
    comparison: cx.CounterComparison = stored[1]
    st.dataframe(
        pd.DataFrame(
            [
                {"tool": r.tool, "reports": fmt(r.reported), "which it calls": r.unit,
                 "in multiply-adds": fmt(r.as_macs), "seconds": round(r.seconds, 2)}
                for r in comparison.readings
            ]
        ),
        hide_index=True,
    )  # fmt: skip
    st.markdown("\n".join(f"- {sentence}" for sentence in comparison.explanations))


if tab_counters.open:
    with tab_counters:
        counters_panel(prof, model_key, resolution, spec_text)


# --- compare models + depthwise separable saving --------------------------------------------------


@st.fragment
def compare_models(unit: str, factor: int) -> None:
    picked = st.multiselect(
        "Models", list(zoo.ZOO), default=DEFAULT_COMPARE, format_func=zoo.label, key="arch_compare"
    )
    if not picked:
        st.info("Pick at least one model.")
        return
    bar = st.progress(0.0, text="Profiling…")
    points = []
    for i, key in enumerate(picked):
        bar.progress(i / len(picked), text=f"Profiling {zoo.label(key)}…")
        p = zoo_profile(key, zoo.ZOO[key].resolution)
        points.append((key, p))
    bar.empty()
    fig = go.Figure()
    fig.add_scatter(
        x=[p.total_params for _, p in points],
        y=[p.total_macs * factor for _, p in points],
        text=[zoo.label(k) for k, _ in points],
        mode="markers+text",
        textposition="top center",
        marker=dict(size=11, color=COLORS["compute"]),
        name="ours",
        hovertemplate="%{text}<br>%{x:,} parameters<br>%{y:,} " + unit + "<extra></extra>",
    )
    log_axes(fig, [p.total_params for _, p in points], [p.total_macs * factor for _, p in points])
    fig.update_xaxes(title="parameters")
    fig.update_yaxes(title=f"{unit} per image (native resolution)")
    fig.update_layout(height=480, margin=dict(t=20), showlegend=False)
    st.plotly_chart(fig)


@st.fragment
def separable_view() -> None:
    st.markdown("#### Depthwise-separable vs standard convolution")
    a, b, c, d = st.columns(4)
    kernel = a.select_slider("Kernel k", [1, 3, 5, 7], value=3, key="sep_k")
    c_in = b.select_slider("C_in", [8, 16, 32, 64, 128, 256, 512], value=128, key="sep_cin")
    c_out = c.select_slider("C_out", [8, 16, 32, 64, 128, 256, 512, 1024], value=256, key="sep_cout")
    size = d.select_slider("Feature map H = W", [7, 14, 28, 56, 112], value=56, key="sep_size")
    s = separable(kernel, c_in, c_out, size)
    st.dataframe(
        pd.DataFrame(
            [
                {"layer": f"standard {kernel}×{kernel} conv", "parameters": s.standard.total_params,
                 "MACs": s.standard.total_macs},
                {"layer": f"depthwise {kernel}×{kernel} + pointwise 1×1", "parameters": s.separable.total_params,
                 "MACs": s.separable.total_macs},
            ]
        ),
        hide_index=True,
        column_config={"parameters": st.column_config.NumberColumn(format="localized"),
                       "MACs": st.column_config.NumberColumn(format="localized")},
    )  # fmt: skip
    st.markdown(
        f"Measured ratio separable / standard: **{s.measured_ratio:.4f}** "
        f"(**{1 / s.measured_ratio:.1f}× fewer MACs**). "
        f"The lecture's formula 1/C_out + 1/k² = 1/{c_out} + 1/{kernel * kernel} = **{s.formula_ratio:.4f}**."
    )


@st.fragment
def mobilenet_grid(unit: str, factor: int) -> None:
    st.markdown("#### MobileNetV1: width multiplier α × resolution multiplier ρ")
    widths = list(zoo.MOBILENET_V1_WIDTHS.items())
    sizes = [224, 192, 160, 128]
    rows = []
    for key, alpha in widths:
        row: dict[str, object] = {"α": alpha, "params": f"{zoo_profile(key, 224).total_params / 1e6:.2f}M"}
        for size in sizes:
            ours = zoo_profile(key, size).total_macs * factor / 1e6
            paper = next((f["macs"] for f in cx.paper_facts(key, size) if f["macs"]), None)
            row[f"{size} px"] = f"{ours:,.0f}M" + (f" (paper {paper * factor / 1e6:,.0f}M)" if paper else "")
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption(f"{unit} per image, ours and (where printed) Howard et al. 2017, Tables 6–7. "
               "α thins every layer (cost ≈ α²); ρ shrinks every feature map (cost ≈ ρ², parameters unchanged).")  # fmt: skip


if tab_compare.open:
    with tab_compare:
        compare_models(unit, factor)
        separable_view()
        mobilenet_grid(unit, factor)


# --- FLOPs are not speed ----------------------------------------------------------------------------


@st.fragment
def speed_panel(unit: str, factor: int, current: str) -> None:
    st.markdown(
        "MACs count arithmetic; time also depends on memory traffic, how well each layer type is "
        "optimised on this CPU, and how many layers run one after another. Untrained weights, "
        "batch of 1, warm runs, median of 10."
    )
    default = ([current] if current in zoo.ZOO and current not in DEFAULT_LATENCY else []) + DEFAULT_LATENCY
    picked = st.multiselect("Models to time", list(zoo.ZOO), default=default, format_func=zoo.label, key="arch_speed")
    if st.button("Measure latency on this CPU", icon=":material/timer:", key="arch_speed_run") and picked:
        bar = st.progress(0.0, text="Timing…")
        results, refused = {}, []
        for i, key in enumerate(picked):
            bar.progress(i / len(picked), text=f"Building and timing {zoo.label(key)} ({i + 1}/{len(picked)})…")
            try:
                results[key] = latency(key, zoo.ZOO[key].resolution)
            except cx.OverBudget as exc:  # refused before building: nothing allocated
                refused.append(str(exc))
        bar.empty()
        st.session_state["arch_speed_results"] = results
        for message in refused:
            st.warning(literal(message), icon=":material/memory:")
    results = st.session_state.get("arch_speed_results")
    if not results:
        st.caption("Nothing timed yet: pick models and press the button.")
        return
    rows = []
    for key, lat in results.items():
        macs = zoo_profile(key, zoo.ZOO[key].resolution).total_macs
        rows.append({"model": zoo.label(key), unit: macs * factor, "median ms": round(lat.median_ms, 2),
                     "best ms": round(lat.best_ms, 2), f"G{unit} per second": round(macs * factor / lat.median_ms / 1e6, 1)})  # fmt: skip
    frame = pd.DataFrame(rows)
    fig = go.Figure()
    fig.add_scatter(x=frame[unit], y=frame["median ms"], text=frame["model"], mode="markers+text",
                    textposition="top center", marker=dict(size=11, color=COLORS["memory"]))  # fmt: skip
    log_axes(fig, list(frame[unit]), list(frame["median ms"]))
    fig.update_xaxes(title=f"{unit} per image")
    fig.update_yaxes(title="median latency (ms)")
    fig.update_layout(height=420, margin=dict(t=20))
    st.plotly_chart(fig)
    st.dataframe(frame, hide_index=True, column_config={unit: st.column_config.NumberColumn(format="localized")})
    lat_values = list(results.values())
    st.caption(f"{lat_values[0].threads} torch threads on this machine. If MACs were speed, every model would "
               f"reach the same G{unit}/s; the last column shows how far from that they are.")  # fmt: skip


if tab_speed.open:
    with tab_speed:
        speed_panel(unit, factor, model_key)

st.divider()
ui.share_section("architectures")
