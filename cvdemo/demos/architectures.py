"""Architecture calculator: a zoo model or a typed network in, totals, receptive field and a per-layer
table out; and the classroom quiz.

The Gradio twin of ``app_pages/architectures.py``; it calls the same :mod:`cvdemo.complexity`
functions. Profiles and receptive fields are shape-only (meta device), so no model is ever held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cvdemo import zoo
from cvdemo.text import md_literal_punctuation as _literal

if TYPE_CHECKING:
    import gradio as gr
    import pandas as pd

    from cvdemo.complexity import Profile, QuizState, ReceptiveField

SOURCES = ("Model zoo", "Typed network")
TABLE_COLUMNS = ["layer", "type", "input", "output", "params", "MACs", "% MACs", "field (px)", "jump (px)",
                 "activations", "note"]  # fmt: skip


def _fields(source: str, model: str, size: int, spec: str) -> "ReceptiveField | None":
    """The receptive fields, or None when they cannot be traced (the counts still stand)."""
    from cvdemo import complexity as cx

    try:
        # Profiles and fields are kept once per process by cvdemo.complexity, shared with the page.
        if source == "Typed network":
            return cx.receptive_field(spec)
        return cx.receptive_field(model, (zoo.input_channels(model), size, size))
    except (cx.SpecError, cx.ProfileError, zoo.UnknownModel):
        return None


def _exact_and_compact(n: int) -> str:
    from cvdemo.complexity import compact

    return f"{n:,}" if n < 1000 else f"{n:,} ({compact(n)})"


def _totals(prof: "Profile", key: str | None, fields: "ReceptiveField | None" = None) -> str:
    from cvdemo import complexity as cx
    from cvdemo.complexity.memory_budget import format_bytes
    from cvdemo.complexity.receptive_field import number

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
    final = fields.final if fields else None
    if final is not None:
        seen = "whole image" if not final.local else f"{final.size_text} px"
        lines.append(f"| receptive field of the last feature map | {seen}, effective stride {number(final.stride or 0)} px |")
    if fields is not None:
        lines += ["", _literal(fields.sentence())]
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
            prof, key = cx.profile(model, (zoo.input_channels(model), size, size)), model
    except (cx.SpecError, cx.ProfileError, zoo.UnknownModel) as exc:
        return f"**Cannot count this network.** {_literal(str(exc))}", empty
    fields = _fields(source, key or "", prof.input_size[-1], spec or "")
    return _totals(prof, key, fields), cx.layer_frame(prof, fields)[TABLE_COLUMNS]


# --- the quiz -----------------------------------------------------------------------------------------


@dataclass
class QuizSession:
    """One visitor's quiz: the questions and answers, and which question is shown."""

    quiz: "QuizState"
    current: int = 1  # question number


def _question_markdown(session: QuizSession, reveal: bool = False) -> str:
    from cvdemo import complexity as cx

    q = session.quiz.questions[session.current - 1]
    lines = [f"### Question {q.number} of {len(session.quiz.questions)} · {cx.KINDS[q.kind]}",
             f"*{_literal(q.source)}*", ""] + [f"- {_literal(line)}" for line in q.given] + ["", q.prompt]  # fmt: skip
    attempt = session.quiz.attempts.get(q.number)
    if reveal or (attempt is not None and (attempt.correct or attempt.tries >= 2)):
        lines += ["", "```", q.symbols, q.worked, f"answer: {q.answer_text}", "```"]
    return "\n".join(lines)


def _feedback(session: QuizSession) -> str:
    attempt = session.quiz.attempts.get(session.current)
    if attempt is None:
        return ""
    if attempt.correct:
        return f"**Right** — read as {_literal(attempt.read_as)}."
    return f"**Not quite** — you wrote “{_literal(attempt.text)}”, read as {_literal(attempt.read_as)}. {_literal(attempt.hint)}"


def quiz_start(seed: float, count: float, kinds: list[str] | None) -> tuple[QuizSession, str, str, str]:
    """A new quiz: (session, question, feedback, score). Same code and settings, same questions."""
    from cvdemo import complexity as cx

    session = QuizSession(cx.make_quiz(int(seed or 0), int(count or 8), kinds or list(cx.KINDS)))
    return session, _question_markdown(session), "", _literal(session.quiz.score())


def quiz_check(session: QuizSession | None, text: str) -> tuple[QuizSession | None, str, str, str]:
    """Check the typed answer to the question shown: (session, question, feedback, score)."""
    from cvdemo import complexity as cx

    if session is None:
        return None, "Press **Start** first.", "", ""
    if not (text or "").strip():
        return session, _question_markdown(session), "Type an answer first.", _literal(session.quiz.score())
    try:
        session.quiz.answer(session.current, text)
    except cx.AnswerError as exc:
        return session, _question_markdown(session), _literal(str(exc)), _literal(session.quiz.score())
    return session, _question_markdown(session), _feedback(session), _literal(session.quiz.score())


def quiz_move(session: QuizSession | None, step: int, reveal: bool = False) -> tuple[QuizSession | None, str, str, str]:
    """Show the next (step 1) or previous (step -1) question: (session, question, feedback, score)."""
    if session is None:
        return None, "Press **Start** first.", "", ""
    session.current = min(max(1, session.current + step), len(session.quiz.questions))
    return session, _question_markdown(session, reveal), _feedback(session), _literal(session.quiz.score())


def build() -> "gr.Blocks":
    import gradio as gr

    from cvdemo.complexity import KINDS, SPEC_EXAMPLE, SPEC_HELP, TOLERANCE

    with gr.Blocks(title="Architecture calculator") as demo:
        gr.Markdown(
            "## Architecture calculator\nParameters, MACs, FLOPs and receptive fields of a famous network, or of "
            "one you type one layer a line. 1 MAC = one multiply-add = 2 FLOPs."
        )
        with gr.Tab("Calculator"):
            _calculator(gr, SPEC_EXAMPLE, SPEC_HELP, demo)
        with gr.Tab("Quiz"):
            gr.Markdown("Work out one number of one layer by hand. The same quiz code gives everyone the same questions. "
                        + _literal(TOLERANCE))  # fmt: skip
            with gr.Row():
                seed = gr.Number(1, precision=0, minimum=0, maximum=9999, label="Quiz code")
                count = gr.Slider(3, 15, value=8, step=1, label="Questions")
                kinds = gr.CheckboxGroup([(v, k) for k, v in KINDS.items()], value=list(KINDS), label="Ask for")
                start = gr.Button("Start", variant="primary")
            state = gr.State(None)
            question = gr.Markdown(latex_delimiters=[])
            with gr.Row():
                answer = gr.Textbox(label="Your answer", placeholder="e.g. 55x55x96, 34,944 or 105M", scale=4)
                check = gr.Button("Check", variant="primary", scale=1)
            feedback = gr.Markdown(latex_delimiters=[])
            with gr.Row():
                previous = gr.Button("◀ Previous")
                following = gr.Button("Next ▶")
                reveal = gr.Button("Lecturer: reveal the answer")
            score = gr.Markdown()
            outputs = [state, question, feedback, score]
            start.click(quiz_start, [seed, count, kinds], outputs)
            check.click(quiz_check, [state, answer], outputs)
            answer.submit(quiz_check, [state, answer], outputs)
            previous.click(lambda s: quiz_move(s, -1), [state], outputs)
            following.click(lambda s: quiz_move(s, 1), [state], outputs)
            reveal.click(lambda s: quiz_move(s, 0, reveal=True), [state], outputs)
    return demo


def _calculator(gr, spec_example: str, spec_help: str, demo: "gr.Blocks") -> None:  # noqa: ANN001 (the gradio module)
    """The counting tab: a zoo model or a typed network in, totals and the per-layer table out."""
    with gr.Row():
        with gr.Column(scale=1):
            source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Count")
            model = gr.Dropdown(
                [(f"{m.label} ({m.year})", m.key) for m in zoo.ZOO.values()], value="alexnet", label="Model zoo"
            )
            resolution = gr.Slider(64, 512, value=224, step=32, label="Input resolution (zoo models)")
        with gr.Column(scale=1):
            spec = gr.Textbox(spec_example, lines=10, label="Typed network (one layer a line)")
            with gr.Accordion("Syntax", open=False):
                gr.Markdown(f"```\n{spec_help}\n```")
    button = gr.Button("Count", variant="primary")
    totals = gr.Markdown(latex_delimiters=[])  # a typed "$" stays a dollar sign
    table = gr.Dataframe(label="Layer by layer", wrap=True, max_height=520)
    inputs = [source, model, resolution, spec]
    button.click(count, inputs, [totals, table])
    demo.load(count, inputs, [totals, table])
