"""Architecture calculator: a zoo model or a typed network in, totals and a per-layer table out.

The Gradio twin of ``app_pages/architectures.py``; it calls the same :mod:`cvdemo.complexity`
functions. Profiles are shape-only (meta device), so no model is ever held in memory.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

from cvdemo import zoo

if TYPE_CHECKING:
    import gradio as gr
    import pandas as pd

    from cvdemo.complexity import Profile

SOURCES = ("Model zoo", "Typed network")
TABLE_COLUMNS = ["layer", "type", "input", "output", "params", "MACs", "% MACs", "activations", "note"]


def _literal(text: str) -> str:
    """User text (a model name, a spec line inside an error) shown as typed, not as markdown."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", text)


@lru_cache(maxsize=128)
def _zoo_profile(name: str, resolution: int) -> "Profile":
    from cvdemo import complexity as cx

    return cx.profile(name, (zoo.input_channels(name), resolution, resolution))


def _exact_and_compact(n: int) -> str:
    from cvdemo.complexity import compact

    return f"{n:,}" if n < 1000 else f"{n:,} ({compact(n)})"


def _totals(prof: "Profile", key: str | None) -> str:
    from cvdemo import complexity as cx
    from cvdemo.memory_budget import format_bytes

    memory = cx.memory_estimate(prof)
    lines = [
        f"### {_literal(prof.name)} at {cx.shape_text(prof.input_size)}",
        "| | count |",
        "|---|---:|",
        f"| parameters | {_exact_and_compact(prof.total_params)} |",
        f"| MACs (multiply-adds) | {_exact_and_compact(prof.total_macs)} |",
        f"| FLOPs (= 2 × MACs) | {_exact_and_compact(prof.total_flops)} |",
        f"| weights, float32 | {format_bytes(prof.total_params * 4)} |",
        f"| activations, float32 | {format_bytes(prof.activation_bytes)} |",
        f"| memory to run it once (estimate) | {format_bytes(memory.total)} |",
    ]
    if not memory.fits():
        lines += ["", _literal(f"{memory.sentence()} Counting from shapes, as here, needs none of it.")]
    refs = cx.references(key, prof) if key else []
    if refs:
        lines += ["", "**Published numbers**", "", "| source | params | MACs |", "|---|---:|---:|"]
        for r in refs:
            params = f"{r.params:,}" if r.params else "—"
            macs = f"{r.macs:,} ({r.called})" if r.macs else "—"
            lines.append(f"| {r.source} ({r.where}) | {params} | {macs} |")
    return "\n".join(lines)


def count(source: str, model: str, resolution: float, spec: str) -> tuple[str, "pd.DataFrame"]:
    """Main handler: (markdown totals with paper numbers, per-layer table). Errors become a message."""
    import pandas as pd

    from cvdemo import complexity as cx

    empty = pd.DataFrame(columns=TABLE_COLUMNS)
    try:
        if source == "Typed network":
            prof, key = cx.profile_spec(spec or ""), None
        else:
            if not isinstance(model, str) or not model.strip():
                return "**No model picked.** Pick one from the list.", empty
            if model not in zoo.ZOO:
                shown = model if len(model) <= 60 else model[:60] + "…"
                return f"**Unknown model** '{_literal(shown)}'. Pick one from the list.", empty
            entry = zoo.ZOO[model]
            size = entry.resolution if entry.fixed_resolution else int(resolution)
            prof, key = _zoo_profile(model, size), model
    except (cx.SpecError, cx.ProfileError, zoo.UnknownModel) as exc:
        return f"**Cannot count this network.** {_literal(str(exc))}", empty
    frame = prof.to_frame()[TABLE_COLUMNS]
    return _totals(prof, key), frame


def build() -> "gr.Blocks":
    import gradio as gr

    from cvdemo.complexity import SPEC_EXAMPLE, SPEC_HELP

    with gr.Blocks(title="Architecture calculator") as demo:
        gr.Markdown(
            "## Architecture calculator\nParameters, MACs and FLOPs of a famous network, or of one you "
            "type one layer a line. 1 MAC = one multiply-add = 2 FLOPs."
        )
        with gr.Row():
            with gr.Column(scale=1):
                source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Count")
                model = gr.Dropdown(
                    [(f"{m.label} ({m.year})", m.key) for m in zoo.ZOO.values()], value="alexnet", label="Model zoo"
                )
                resolution = gr.Slider(64, 512, value=224, step=32, label="Input resolution (zoo models)")
            with gr.Column(scale=1):
                spec = gr.Textbox(SPEC_EXAMPLE, lines=10, label="Typed network (one layer a line)")
                with gr.Accordion("Syntax", open=False):
                    gr.Markdown(f"```\n{SPEC_HELP}\n```")
        button = gr.Button("Count", variant="primary")
        totals = gr.Markdown(latex_delimiters=[])  # a typed "$" stays a dollar sign
        table = gr.Dataframe(label="Layer by layer", wrap=True, max_height=520)
        inputs = [source, model, resolution, spec]
        button.click(count, inputs, [totals, table])
        demo.load(count, inputs, [totals, table])
    return demo
